//! The HTTP side of the control socket: authentication, api-docs, routing of
//! `/ari/...` requests through the route table, and the upgrade of
//! `/ari/events` to a WebSocket.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequestParts, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use base64::Engine;

use super::Node;
use crate::ari::args::Args;
use crate::ari::error::{reason_phrase, AriError};
use crate::ari::spec::{match_path, Method, Operation, Reply};
use crate::ari::{docs, routes};

/// Largest request body accepted.
pub(super) const MAX_BODY: usize = 1 << 20;

/// A reply as the transport sends it: a status and an optional JSON body.
#[derive(Debug)]
pub struct Outcome {
    pub status: u16,
    pub body: Option<String>,
}

impl Outcome {
    fn error(e: &AriError) -> Outcome {
        Outcome {
            status: e.status,
            body: Some(e.body()),
        }
    }
}

/// Serves the control socket on `listener` until the future is dropped.
/// Connections have Nagle's algorithm off: a small reply waiting for the
/// client's delayed ACK cost 40 ms of call setup (`crossbar-load sip`).
/// Connection limits and timeouts are `host::conn`'s; requests reach
/// [`entry`] with the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(node: Arc<Node>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = Router::new().fallback(entry).with_state(node.clone());
    super::conn::run(node, listener, app).await
}

async fn entry(State(node): State<Arc<Node>>, req: Request<Body>) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let Some(method) = Method::parse(parts.method.as_str()) else {
        return respond(&node, Outcome::error(&AriError::new(405, "Invalid method")));
    };

    if !authorized(&node, &parts.headers, &query) {
        node.metrics.inc(&node.metrics.auth_failures);
        node.metrics.count_status(401);
        let mut r = json_response(
            401,
            Some(AriError::new(401, "Authentication required").body()),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Asterisk REST Interface\""),
        );
        return r;
    }
    let query: Vec<(String, String)> = query.into_iter().filter(|(k, _)| k != "api_key").collect();

    if path == "/metrics" && method == Method::Get {
        let mut text = render_metrics(&node).await;
        if let Some(d) = node.dataplane.driver() {
            text.push_str(&driver_metric(d));
        }
        return Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(Body::from(text))
            .unwrap_or_default();
    }

    let Some(rest) = path.strip_prefix("/ari") else {
        return respond(
            &node,
            Outcome::error(&AriError::not_found("Resource not found")),
        );
    };

    if let Some(file) = rest.strip_prefix("/api-docs/") {
        if method != Method::Get {
            return respond(&node, Outcome::error(&AriError::new(405, "Invalid method")));
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| node.config.ari.bind.to_string());
        let base = format!("http://{host}/ari");
        let doc = match file {
            "resources.json" => Some(docs::resources_listing(&base)),
            other => other
                .strip_suffix(".json")
                .and_then(|name| docs::resource_doc(name, &base)),
        };
        return respond(
            &node,
            match doc {
                Some(v) => Outcome {
                    status: 200,
                    body: Some(v.to_string()),
                },
                None => Outcome::error(&AriError::not_found("Resource not found")),
            },
        );
    }

    let op = match route(method, rest) {
        Ok(found) => found,
        Err(e) => return respond(&node, Outcome::error(&e)),
    };
    if op.0.upgrade.is_some() {
        let args = match Args::parse(op.0, op.1, query, &[]) {
            Ok(a) => a,
            Err(e) => return respond(&node, Outcome::error(&e)),
        };
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &node).await {
            Ok(u) => u,
            Err(_) => {
                return respond(
                    &node,
                    Outcome::error(&AriError::new(426, "Upgrade Required")),
                )
            }
        };
        node.metrics.count_status(101);
        return super::session::upgrade(node.clone(), upgrade, args);
    }
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return respond(
                &node,
                Outcome::error(&AriError::bad_request(
                    "Request body too large or unreadable",
                )),
            )
        }
    };
    // The operation runs in a task of its own: hyper drops this future when
    // the client disconnects, and an operation cut off between a data-plane
    // reply and its registry update would leave the two disagreeing (or a
    // leg detached from one shard and never attached to another).
    let task = tokio::spawn({
        let node = node.clone();
        async move { invoke(&node, op, query, &body).await }
    });
    let outcome = match task.await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!("ARI operation failed: {e}");
            Outcome::error(&AriError::internal("Internal error"))
        }
    };
    respond(&node, outcome)
}

/// An operation found for a request, with its path parameters.
pub type Routed = (&'static Operation, Vec<(String, String)>);

/// Finds the operation for `method` on `path` (relative to `/ari`).
pub fn route(method: Method, path: &str) -> Result<Routed, AriError> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let mut path_known = false;
    for resource in routes::RESOURCES {
        for api in resource.apis {
            if let Some(params) = match_path(api.path, path) {
                path_known = true;
                if let Some(op) = api.operations.iter().find(|o| o.method == method) {
                    return Ok((op, params));
                }
            }
        }
    }
    Err(if path_known {
        AriError::new(405, "Invalid method")
    } else {
        AriError::not_found("Resource not found")
    })
}

/// Runs an operation: checks its arguments, then its handler.
pub async fn invoke(
    node: &Node,
    (op, path_params): Routed,
    query: Vec<(String, String)>,
    body: &[u8],
) -> Outcome {
    let args = match Args::parse(op, path_params, query, body) {
        Ok(a) => a,
        Err(e) => return Outcome::error(&e),
    };
    let Some(handler) = op.handler else {
        return Outcome::error(&AriError::new(501, "Not implemented"));
    };
    match handler(node, args).await {
        Ok(Reply::Json(v)) => Outcome {
            status: 200,
            body: Some(v.to_string()),
        },
        Ok(Reply::NoContent) => Outcome {
            status: 204,
            body: None,
        },
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(operation = op.nickname, "{}", e.message);
            }
            Outcome::error(&e)
        }
    }
}

fn respond(node: &Node, outcome: Outcome) -> Response<Body> {
    node.metrics.count_status(outcome.status);
    json_response(outcome.status, outcome.body)
}

fn json_response(status: u16, body: Option<String>) -> Response<Body> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    let body = match body {
        Some(text) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(text)
        }
        None => Body::empty(),
    };
    builder.body(body).unwrap_or_default()
}

/// Decodes a query string into pairs (`+` and `%XX` decoded).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn authorized(node: &Node, headers: &HeaderMap, query: &[(String, String)]) -> bool {
    let want_user = node.config.ari.username.as_str();
    let want_pass = node.config.ari.password.as_str();
    let check = |cred: &str| {
        cred.split_once(':')
            .is_some_and(|(u, p)| constant_eq(u, want_user) & constant_eq(p, want_pass))
    };
    if let Some((_, key)) = query.iter().find(|(k, _)| k == "api_key") {
        return check(key);
    }
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = auth
        .strip_prefix("Basic ")
        .or_else(|| auth.strip_prefix("basic "))
    else {
        return false;
    };
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|cred| check(&cred))
}

/// Compares without an early exit on the first differing byte.
fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `crossbar_dataplane_driver`: 1 for the driver in use, labelled with its
/// name and the reason it was chosen.
fn driver_metric(d: &crate::driver::DriverChoice) -> String {
    // Label values escape backslash, quote and newline (exposition format).
    let reason = d
        .reason
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!(
        "# HELP crossbar_dataplane_driver The data plane's I/O driver (1 = in use) and why it was chosen\n\
         # TYPE crossbar_dataplane_driver gauge\n\
         crossbar_dataplane_driver{{driver=\"{}\",reason=\"{reason}\"}} 1\n",
        d.kind.name()
    )
}

pub(super) async fn render_metrics(node: &Node) -> String {
    let ctl = node.lock().await;
    let channels = ctl.reg.channels_sorted().len() as u64;
    let bridges = ctl.reg.bridges_sorted().len() as u64;
    let apps = ctl.reg.app_names().len() as u64;
    let sip = ctl.sip.as_ref().map(|s| {
        (
            s.agent.counters().clone(),
            s.agent.call_count(),
            s.agent.transaction_count(),
        )
    });
    drop(ctl);
    let mut text = node.metrics.render(&[
        ("crossbar_channels", "Channels that exist now", channels),
        ("crossbar_bridges", "Bridges that exist now", bridges),
        (
            "crossbar_applications",
            "Stasis applications registered now",
            apps,
        ),
        (
            "crossbar_shards",
            "Data plane shards",
            node.dataplane.shard_count() as u64,
        ),
    ]);
    text.push_str(&shard_metrics(&node.dataplane.shards_up()));
    if let Some((counters, calls, transactions)) = sip {
        text.push_str(&sip_metrics(&counters, calls, transactions));
    }
    text
}

/// The SIP agent's counters: messages taken, dropped (by reason), responses
/// sent (by status), requests sent, calls and transactions alive.
fn sip_metrics(
    counters: &std::collections::BTreeMap<&'static str, u64>,
    calls: usize,
    transactions: usize,
) -> String {
    use std::fmt::Write;
    fn family(text: &mut String, name: &str, kind: &str, help: &str) {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    let mut text = String::new();
    family(
        &mut text,
        "crossbar_sip_received_total",
        "counter",
        "SIP messages received and parsed",
    );
    let received = counters.get("rx_messages").copied().unwrap_or(0);
    let _ = writeln!(text, "crossbar_sip_received_total {received}");
    family(
        &mut text,
        "crossbar_sip_dropped_total",
        "counter",
        "SIP input dropped or refused before a transaction, by reason",
    );
    for (name, n) in counters
        .iter()
        .filter(|(k, _)| k.starts_with("rx_") && **k != "rx_messages")
    {
        let _ = writeln!(text, "crossbar_sip_dropped_total{{reason=\"{name}\"}} {n}");
    }
    family(
        &mut text,
        "crossbar_sip_responses_total",
        "counter",
        "SIP responses sent, by status (2xx and 3xx by class)",
    );
    for (name, n) in counters.iter() {
        if let Some(status) = name
            .strip_prefix("tx_")
            .filter(|s| s.starts_with(|c: char| c.is_ascii_digit()))
        {
            let _ = writeln!(
                text,
                "crossbar_sip_responses_total{{status=\"{status}\"}} {n}"
            );
        }
    }
    family(&mut text, "crossbar_sip_calls", "gauge", "SIP calls alive");
    let _ = writeln!(text, "crossbar_sip_calls {calls}");
    family(
        &mut text,
        "crossbar_sip_transactions",
        "gauge",
        "SIP transactions alive",
    );
    let _ = writeln!(text, "crossbar_sip_transactions {transactions}");
    text
}

/// `crossbar_shard_up{shard="N"}` per shard and `crossbar_healthy`: 1 while
/// every shard is alive.
fn shard_metrics(up: &[bool]) -> String {
    let mut text = String::from(
        "# HELP crossbar_shard_up Whether a data plane shard is alive (0 once declared dead)\n\
         # TYPE crossbar_shard_up gauge\n",
    );
    for (shard, alive) in up.iter().enumerate() {
        text.push_str(&format!(
            "crossbar_shard_up{{shard=\"{shard}\"}} {}\n",
            u8::from(*alive)
        ));
    }
    text.push_str(&format!(
        "# HELP crossbar_healthy 1 while every data plane shard is alive, 0 once one has died (the node needs a restart)\n\
         # TYPE crossbar_healthy gauge\n\
         crossbar_healthy {}\n",
        u8::from(up.iter().all(|u| *u))
    ));
    text
}

/// The status line text of a status code.
pub fn phrase(status: u16) -> &'static str {
    reason_phrase(status)
}
