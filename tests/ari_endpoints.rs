//! The `endpoints` resource over real HTTP: the configured `[[sip.endpoint]]`
//! tables as Asterisk's PJSIP endpoints (technology `SIP`, `PJSIP` an alias),
//! their state, Asterisk's 404s, and the api-docs that declare them.
//!
//! No SIP channel can be made here yet, so `channel_ids` is always empty.

mod common;

use common::Server;
use serde_json::{json, Value};

const CONFIG: &str = r#"
[sip]
bind = "off"

[[sip.endpoint]]
name = "alice"
match = ["192.0.2.10/32"]
contact = "sip:alice@192.0.2.10:5060"

[[sip.endpoint]]
name = "trunk"
match = ["198.51.100.0/24"]
"#;

fn alice() -> Value {
    json!({"technology": "SIP", "resource": "alice", "state": "online", "channel_ids": []})
}

fn trunk() -> Value {
    json!({"technology": "SIP", "resource": "trunk", "state": "offline", "channel_ids": []})
}

#[test]
fn list_gives_every_configured_endpoint_in_asterisks_field_order() {
    let s = Server::start_with_config(CONFIG);
    let r = s.get("/ari/endpoints");
    assert_eq!(r.ok(), &json!([alice(), trunk()]));
    assert_eq!(
        r.text,
        r#"[{"technology":"SIP","resource":"alice","state":"online","channel_ids":[]},{"technology":"SIP","resource":"trunk","state":"offline","channel_ids":[]}]"#
    );
}

#[test]
fn list_by_tech_answers_sip_and_its_pjsip_alias() {
    let s = Server::start_with_config(CONFIG);
    assert_eq!(s.get("/ari/endpoints/SIP").ok(), &json!([alice(), trunk()]));
    assert_eq!(
        s.get("/ari/endpoints/PJSIP").ok(),
        &json!([alice(), trunk()])
    );
}

#[test]
fn list_by_tech_of_an_unknown_tech_is_404() {
    let s = Server::start_with_config(CONFIG);
    s.get("/ari/endpoints/IAX2")
        .assert_error(404, "No Endpoints found - invalid tech IAX2");
    // Asterisk looks the technology up case-sensitively
    s.get("/ari/endpoints/pjsip")
        .assert_error(404, "No Endpoints found - invalid tech pjsip");
}

#[test]
fn get_finds_an_endpoint_by_sip_or_pjsip() {
    let s = Server::start_with_config(CONFIG);
    assert_eq!(s.get("/ari/endpoints/SIP/alice").ok(), &alice());
    assert_eq!(s.get("/ari/endpoints/PJSIP/alice").ok(), &alice());
    assert_eq!(s.get("/ari/endpoints/PJSIP/trunk").ok(), &trunk());
    // Asterisk upper-cases the technology of a get (ast_tech_to_upper)
    assert_eq!(s.get("/ari/endpoints/pjsip/trunk").ok(), &trunk());
}

#[test]
fn get_of_an_unknown_endpoint_or_tech_is_404_endpoint_not_found() {
    let s = Server::start_with_config(CONFIG);
    s.get("/ari/endpoints/SIP/bob")
        .assert_error(404, "Endpoint not found");
    // the resource is matched exactly
    s.get("/ari/endpoints/SIP/Alice")
        .assert_error(404, "Endpoint not found");
    s.get("/ari/endpoints/IAX2/alice")
        .assert_error(404, "Endpoint not found");
}

#[test]
fn without_endpoints_the_list_is_empty_and_sip_is_unknown() {
    let s = Server::start();
    assert_eq!(s.get("/ari/endpoints").ok(), &json!([]));
    s.get("/ari/endpoints/SIP")
        .assert_error(404, "No Endpoints found - invalid tech SIP");
    s.get("/ari/endpoints/SIP/alice")
        .assert_error(404, "Endpoint not found");
}

#[test]
fn other_methods_are_405_and_other_operations_are_not_served() {
    let s = Server::start_with_config(CONFIG);
    s.post("/ari/endpoints").assert_error(405, "Invalid method");
    s.delete("/ari/endpoints/SIP/alice")
        .assert_error(405, "Invalid method");
    s.get("/ari/endpoints/SIP/alice/sendMessage")
        .assert_error(404, "Resource not found");
}

#[test]
fn api_docs_declare_the_three_operations_and_the_endpoint_model() {
    let s = Server::start_with_config(CONFIG);
    let listing = s.get("/ari/api-docs/resources.json");
    let paths: Vec<&str> = listing.ok()["apis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/api-docs/endpoints.{format}"), "{paths:?}");

    let doc = s.get("/ari/api-docs/endpoints.json");
    let doc = doc.ok();
    let ops: Vec<(String, String, String)> = doc["apis"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|api| {
            api["operations"].as_array().unwrap().iter().map(|op| {
                (
                    api["path"].as_str().unwrap().to_string(),
                    op["httpMethod"].as_str().unwrap().to_string(),
                    op["nickname"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect();
    let expected = [
        ("/endpoints", "GET", "list"),
        ("/endpoints/{tech}", "GET", "listByTech"),
        ("/endpoints/{tech}/{resource}", "GET", "get"),
    ];
    assert_eq!(
        ops,
        expected
            .iter()
            .map(|(p, m, n)| (p.to_string(), m.to_string(), n.to_string()))
            .collect::<Vec<_>>()
    );
    let model = &doc["models"]["Endpoint"];
    assert_eq!(model["id"], "Endpoint");
    let props: Vec<&String> = model["properties"].as_object().unwrap().keys().collect();
    assert_eq!(
        props,
        ["technology", "resource", "state", "channel_ids"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(model["properties"]["channel_ids"]["type"], "List[string]");
}
