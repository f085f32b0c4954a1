//! Request arguments: path, query and JSON-body parameters checked against an
//! operation's declared [`Param`]s before any handler runs.
//!
//! Invariants: a handler only ever sees parameters its operation declares, with
//! required ones present, integers and booleans well-formed, enumerated values
//! among the allowed ones, and defaults filled in. Anything else is a 400 with
//! a message naming the parameter.

use std::collections::HashMap;

use serde_json::Value;

use super::error::AriError;
use super::spec::{DataType, Operation, Param, ParamType};

/// The checked arguments of one request.
#[derive(Debug, Default, Clone)]
pub struct Args {
    scalars: HashMap<&'static str, String>,
    lists: HashMap<&'static str, Vec<String>>,
    bodies: HashMap<&'static str, Value>,
}

impl Args {
    /// Checks a request against `op`.
    ///
    /// `path` holds the path parameters, `query` the decoded query pairs
    /// (without `api_key`), `body` the raw request body.
    pub fn parse(
        op: &Operation,
        path: Vec<(String, String)>,
        query: Vec<(String, String)>,
        body: &[u8],
    ) -> Result<Args, AriError> {
        let mut raw: HashMap<&'static str, Vec<String>> = HashMap::new();
        let mut bodies = HashMap::new();
        for (name, value) in path {
            if let Some(p) = find(op, &name, ParamType::Path) {
                raw.entry(p.name).or_default().push(value);
            }
        }
        for (name, value) in query {
            let Some(p) = find(op, &name, ParamType::Query) else {
                return Err(refused(op, &name).unwrap_or_else(|| {
                    AriError::bad_request(format!(
                        "Unknown parameter '{name}' for {} (see api-docs)",
                        op.nickname
                    ))
                }));
            };
            raw.entry(p.name).or_default().push(value);
        }
        if body.iter().any(|b| !b.is_ascii_whitespace()) {
            let json: Value = serde_json::from_slice(body)
                .map_err(|e| AriError::bad_request(format!("Malformed JSON body: {e}")))?;
            let Value::Object(fields) = json else {
                return Err(AriError::bad_request(
                    "The request body must be a JSON object",
                ));
            };
            // An `object` body parameter is the whole body (as Asterisk's eventFilter).
            let whole = op
                .params
                .iter()
                .find(|p| p.param_type == ParamType::Body && p.data_type == DataType::Object);
            if let Some(p) = whole {
                bodies.insert(p.name, Value::Object(fields));
                return Args::finish(op, raw, bodies);
            }
            for (key, value) in fields {
                if let Some(p) = find(op, &key, ParamType::Body) {
                    check_body(p, &value)?;
                    bodies.insert(p.name, value);
                } else if let Some(p) = find(op, &key, ParamType::Query) {
                    // Asterisk also reads query parameters from a JSON body.
                    if raw.contains_key(p.name) {
                        continue;
                    }
                    raw.insert(p.name, vec![json_to_param(p, &value)?]);
                } else {
                    return Err(refused(op, &key).unwrap_or_else(|| {
                        AriError::bad_request(format!(
                            "Unknown field '{key}' in the request body for {}",
                            op.nickname
                        ))
                    }));
                }
            }
        }

        Args::finish(op, raw, bodies)
    }

    /// Applies defaults and checks values once every source has been read.
    fn finish(
        op: &Operation,
        mut raw: HashMap<&'static str, Vec<String>>,
        bodies: HashMap<&'static str, Value>,
    ) -> Result<Args, AriError> {
        let mut args = Args {
            bodies,
            ..Args::default()
        };
        for p in op.params {
            if p.param_type == ParamType::Body {
                if p.required && !args.bodies.contains_key(p.name) {
                    return Err(missing(p));
                }
                continue;
            }
            let values = match raw.remove(p.name) {
                Some(v) => v,
                None => match p.default {
                    Some(d) => vec![d.to_string()],
                    None if p.required => return Err(missing(p)),
                    None => continue,
                },
            };
            if p.allow_multiple {
                let items: Vec<String> = values
                    .iter()
                    .flat_map(|v| v.split(','))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                if items.is_empty() && p.required {
                    return Err(missing(p));
                }
                for item in &items {
                    check_value(p, item)?;
                }
                args.lists.insert(p.name, items);
            } else {
                // A repeated single-valued parameter: the last one wins.
                let value = values.into_iter().next_back().unwrap_or_default();
                check_value(p, &value)?;
                args.scalars.insert(p.name, value);
            }
        }
        Ok(args)
    }

    /// A string parameter, if given (possibly empty).
    pub fn str(&self, name: &str) -> Option<&str> {
        self.scalars.get(name).map(String::as_str)
    }

    /// A string parameter that is given and not empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.str(name).filter(|s| !s.is_empty())
    }

    /// A path parameter (always present once routed).
    pub fn path(&self, name: &str) -> &str {
        self.str(name).unwrap_or_default()
    }

    /// A boolean parameter (false when absent and without default).
    pub fn bool(&self, name: &str) -> bool {
        self.str(name).is_some_and(parse_bool_true)
    }

    /// An integer parameter.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.str(name).and_then(|s| s.trim().parse().ok())
    }

    /// A comma-separated list parameter.
    pub fn list(&self, name: &str) -> &[String] {
        self.lists.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A JSON body parameter.
    pub fn body(&self, name: &str) -> Option<&Value> {
        self.bodies.get(name)
    }
}

fn find<'a>(op: &'a Operation, name: &str, kind: ParamType) -> Option<&'a Param> {
    op.params
        .iter()
        .find(|p| p.param_type == kind && p.name == name)
}

/// The 400 for a parameter Asterisk takes and crossbar refuses, naming why.
fn refused(op: &Operation, name: &str) -> Option<AriError> {
    op.refused
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, reason)| {
            AriError::bad_request(format!(
                "Parameter '{n}' of {} is not supported by crossbar: {reason}",
                op.nickname
            ))
        })
}

fn missing(p: &Param) -> AriError {
    AriError::bad_request(
        p.missing
            .map(str::to_string)
            .unwrap_or_else(|| format!("Missing parameter {}", p.name)),
    )
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" | "y" | "t" => Some(true),
        "false" | "no" | "0" | "off" | "n" | "f" => Some(false),
        _ => None,
    }
}

fn parse_bool_true(s: &str) -> bool {
    parse_bool(s) == Some(true)
}

fn check_value(p: &Param, value: &str) -> Result<(), AriError> {
    match p.data_type {
        DataType::Int | DataType::Long if value.trim().parse::<i64>().is_err() => {
            return Err(AriError::bad_request(format!(
                "Invalid value '{value}' for parameter {}: expected an integer",
                p.name
            )));
        }
        DataType::Boolean if parse_bool(value).is_none() => {
            return Err(AriError::bad_request(format!(
                "Invalid value '{value}' for parameter {}: expected true or false",
                p.name
            )));
        }
        _ => {}
    }
    if let Some(min) = p.min {
        if value.trim().parse::<i64>().is_ok_and(|v| v < min) {
            return Err(AriError::bad_request(format!(
                "Invalid value '{value}' for parameter {}: expected at least {min}",
                p.name
            )));
        }
    }
    if let Some(allowed) = p.allowable {
        if !allowed.contains(&value) {
            return Err(AriError::bad_request(format!(
                "Invalid value '{value}' for parameter {}: expected one of {}",
                p.name,
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn check_body(p: &Param, value: &Value) -> Result<(), AriError> {
    if !value.is_object() {
        return Err(AriError::bad_request(format!(
            "The '{}' field must be a JSON object",
            p.name
        )));
    }
    Ok(())
}

/// A query parameter given as a JSON body field, as its string form.
fn json_to_param(p: &Param, value: &Value) -> Result<String, AriError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Array(items) if p.allow_multiple => items
            .iter()
            .map(|v| {
                json_to_param(
                    &Param {
                        allow_multiple: false,
                        ..*p
                    },
                    v,
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(",")),
        _ => Err(AriError::bad_request(format!(
            "Invalid type for field '{}' in the request body",
            p.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ari::spec::Method;

    const PARAMS: &[Param] = &[
        Param::path("bridgeId", "bridge"),
        Param::query("channel", "channels").required().multiple(),
        Param::query("mute", "mute")
            .typed(DataType::Boolean)
            .default("false"),
        Param::query("timeout", "t")
            .typed(DataType::Int)
            .at_least(0),
        Param::query("direction", "d").one_of(&["in", "out", "both"]),
        Param::body("variables", "vars", DataType::Containers),
    ];
    const OP: Operation = Operation {
        method: Method::Post,
        nickname: "addChannel",
        summary: "",
        response_class: "void",
        params: PARAMS,
        errors: &[],
        upgrade: None,
        handler: None,
        refused: &[(
            "inhibitConnectedLineUpdates",
            "no connected-line updates here",
        )],
    };

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn path() -> Vec<(String, String)> {
        q(&[("bridgeId", "b1")])
    }

    #[test]
    fn parses_lists_defaults_and_bodies() {
        let a = Args::parse(
            &OP,
            path(),
            q(&[("channel", "a,b"), ("channel", "c")]),
            br#"{"variables":{"X":"1"},"timeout":5}"#,
        )
        .unwrap();
        assert_eq!(a.path("bridgeId"), "b1");
        assert_eq!(a.list("channel"), ["a", "b", "c"]);
        assert!(!a.bool("mute"));
        assert_eq!(a.int("timeout"), Some(5));
        assert_eq!(a.body("variables").unwrap()["X"], "1");
    }

    #[test]
    fn refuses_bad_input_with_clear_messages() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8], &'a str);
        let cases: &[Case] = &[
            (&[], b"", "Missing parameter channel"),
            (
                &[("channel", "a"), ("bogus", "1")],
                b"",
                "Unknown parameter 'bogus'",
            ),
            (
                &[("channel", "a"), ("mute", "maybe")],
                b"",
                "expected true or false",
            ),
            (
                &[("channel", "a"), ("timeout", "ten")],
                b"",
                "expected an integer",
            ),
            (
                &[("channel", "a"), ("timeout", "-1")],
                b"",
                "Invalid value '-1' for parameter timeout: expected at least 0",
            ),
            (
                &[("channel", "a"), ("inhibitConnectedLineUpdates", "false")],
                b"",
                "Parameter 'inhibitConnectedLineUpdates' of addChannel is not supported by crossbar: no connected-line updates here",
            ),
            (
                &[("channel", "a")],
                br#"{"inhibitConnectedLineUpdates":true}"#,
                "Parameter 'inhibitConnectedLineUpdates' of addChannel is not supported by crossbar: no connected-line updates here",
            ),
            (
                &[("channel", "a"), ("direction", "up")],
                b"",
                "expected one of in, out, both",
            ),
            (&[("channel", "a")], b"{not json", "Malformed JSON body"),
            (&[("channel", "a")], b"[1]", "must be a JSON object"),
            (
                &[("channel", "a")],
                br#"{"variables":"x"}"#,
                "'variables' field must be a JSON object",
            ),
            (
                &[("channel", "a")],
                br#"{"nope":1}"#,
                "Unknown field 'nope'",
            ),
        ];
        for (query, body, want) in cases {
            let err = Args::parse(&OP, path(), q(query), body).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains(want), "{query:?}: {}", err.message);
        }
    }
}
