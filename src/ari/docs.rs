//! api-docs generation: `resources.json` and one Swagger 1.2 declaration per
//! resource, built from the same route table that serves requests.
//!
//! Invariants: `basePath` is built from the address the client used (the Host
//! header), since asyncari attaches credentials only to that host; every
//! parameter carries `required`, `allowMultiple` and `dataType`; every model
//! property carries a `type`.

use serde_json::{json, Map, Value};

use super::models::{models_of, Model};
use super::routes::RESOURCES;
use super::spec::{Operation, Param, ParamType, Resource};

/// The ARI version crossbar follows.
pub const API_VERSION: &str = "2.0.0";

/// `GET /ari/api-docs/resources.json`.
pub fn resources_listing(base_path: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "swaggerVersion": "1.1",
        "basePath": base_path,
        "apis": RESOURCES.iter().map(|r| json!({
            "path": format!("/api-docs/{}.{{format}}", r.name),
            "description": r.description,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /ari/api-docs/{name}.json`, or `None` for an unknown resource.
pub fn resource_doc(name: &str, base_path: &str) -> Option<Value> {
    let resource = RESOURCES.iter().find(|r| r.name == name)?;
    Some(declaration(resource, base_path))
}

fn declaration(resource: &Resource, base_path: &str) -> Value {
    let apis: Vec<Value> = resource
        .apis
        .iter()
        .map(|api| {
            json!({
                "path": api.path,
                "description": api.description,
                "operations": api.operations.iter().map(operation).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut models = Map::new();
    for model in models_of(resource.name) {
        models.insert(model.id.to_string(), model_doc(model));
    }
    json!({
        "apiVersion": API_VERSION,
        "swaggerVersion": "1.2",
        "basePath": base_path,
        "resourcePath": format!("/api-docs/{}.{{format}}", resource.name),
        "apis": apis,
        "models": models,
    })
}

fn operation(op: &Operation) -> Value {
    let mut v = json!({
        "httpMethod": op.method.name(),
        "summary": op.summary,
        "nickname": op.nickname,
        "responseClass": op.response_class,
        "parameters": op.params.iter().map(param).collect::<Vec<_>>(),
        "errorResponses": op.errors.iter().map(|(code, reason)| json!({
            "code": code,
            "reason": reason,
        })).collect::<Vec<_>>(),
    });
    if let Some(upgrade) = op.upgrade {
        v["upgrade"] = json!(upgrade);
        v["websocketProtocol"] = json!("ari");
    }
    v
}

fn param(p: &Param) -> Value {
    let mut v = json!({
        "name": p.name,
        "description": p.description,
        "paramType": p.param_type.name(),
        "required": p.required || p.param_type == ParamType::Path,
        "allowMultiple": p.allow_multiple,
        "dataType": p.data_type.name(),
    });
    if let Some(d) = p.default {
        v["defaultValue"] = json!(d);
    }
    if let Some(values) = p.allowable {
        v["allowableValues"] = json!({ "valueType": "LIST", "values": values });
    }
    if let Some(min) = p.min {
        v["allowableValues"] = json!({ "valueType": "RANGE", "min": min });
    }
    v
}

fn model_doc(model: &Model) -> Value {
    let mut props = Map::new();
    for (name, ty, required, description) in model.all_props() {
        props.insert(
            name.to_string(),
            json!({ "required": required, "type": ty, "description": description }),
        );
    }
    let mut v = json!({
        "id": model.id,
        "description": model.description,
        "properties": props,
    });
    if !model.sub_types.is_empty() {
        v["subTypes"] = json!(model.sub_types);
        v["discriminator"] = json!("type");
    }
    v
}
