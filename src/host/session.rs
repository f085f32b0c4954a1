//! One events WebSocket (`/ari/events?app=...`): it holds its applications for
//! as long as it is open, carries their events out, and answers REST requests
//! sent over it (`RESTRequest` → `RESTResponse`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::WebSocketUpgrade;
use axum::http::Response;
use axum::response::IntoResponse;
use serde_json::{json, Value};

use super::http::{invoke, parse_query, phrase, route, MAX_BODY};
use super::{EventSink, Node};
use crate::ari::args::Args;
use crate::ari::spec::Method;

/// Largest message a client may send: a `RESTRequest` carrying a body of up
/// to [`MAX_BODY`], escaped. (The library's default, 64 MiB, lets one message
/// of `[0,0,...]` grow to gigabytes as a JSON value.) A larger message ends
/// the session.
const MAX_MESSAGE: usize = 2 * MAX_BODY;

/// Accepts the upgrade and runs the session.
pub fn upgrade(node: Arc<Node>, upgrade: WebSocketUpgrade, args: Args) -> Response<Body> {
    let apps: Vec<String> = args.list("app").to_vec();
    let subscribe_all = args.bool("subscribeAll");
    upgrade
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .protocols(["ari"])
        .on_upgrade(move |socket| run(node, socket, apps, subscribe_all))
        .into_response()
}

async fn run(node: Arc<Node>, mut socket: WebSocket, apps: Vec<String>, subscribe_all: bool) {
    node.metrics.inc(&node.metrics.ws_sessions);
    let (sink, mut rx) = EventSink::new(node.config.ari.ws_queue_events);
    let overflow = sink.overflow.clone();
    // The session keeps its own sender: when another socket replaces all of
    // its applications, the registry drops theirs, and the socket must stay
    // open (as in Asterisk, it only stops receiving events) instead of ending
    // without a close frame, which clients answer by reconnecting.
    let sid = node
        .lock()
        .await
        .attach(node.now(), &apps, subscribe_all, sink.clone());
    tracing::info!(apps = ?apps, "events WebSocket opened");
    loop {
        tokio::select! {
            _ = overflow.notified() => {
                close_overflowed(&mut socket, &apps).await;
                break;
            }
            out = rx.recv() => {
                let Some(text) = out else { break };
                // A client that stops reading blocks this write: the overflow
                // signal must still end the session.
                tokio::select! {
                    sent = socket.send(Message::Text(text.into())) => {
                        if sent.is_err() {
                            break;
                        }
                    }
                    _ = overflow.notified() => {
                        close_overflowed(&mut socket, &apps).await;
                        break;
                    }
                }
            }
            incoming = socket.recv() => {
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let reply = rest_over_ws(&node, text.as_str()).await;
                        if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        node.metrics.inc(&node.metrics.ws_bad_messages);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                }
            }
        }
    }
    node.lock().await.detach(sid, &apps);
    tracing::info!(apps = ?apps, "events WebSocket closed");
}

/// Ends a session whose client stopped reading: a close frame (1008) if it
/// can still be written within a second, then the connection is dropped.
async fn close_overflowed(socket: &mut WebSocket, apps: &[String]) {
    tracing::warn!(apps = ?apps, "events WebSocket closed: the client is not reading its events");
    let frame = CloseFrame {
        code: 1008,
        reason: "event queue overflow".into(),
    };
    let close = socket.send(Message::Close(Some(frame)));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), close).await;
}

/// Answers one `RESTRequest` message.
async fn rest_over_ws(node: &Node, text: &str) -> Value {
    let bad = |tid: &Value, rid: &Value, why: &str| {
        json!({
            "type": "RESTResponse",
            "transaction_id": tid,
            "request_id": rid,
            "status_code": 400,
            "reason_phrase": why,
            "uri": "",
        })
    };
    let Ok(msg) = serde_json::from_str::<Value>(text) else {
        node.metrics.inc(&node.metrics.ws_bad_messages);
        return bad(
            &json!(""),
            &json!(""),
            "Failed to parse request message JSON",
        );
    };
    let tid = msg.get("transaction_id").cloned().unwrap_or(json!(""));
    let rid = msg.get("request_id").cloned().unwrap_or(json!(""));
    if msg["type"] != "RESTRequest" {
        node.metrics.inc(&node.metrics.ws_bad_messages);
        return bad(&tid, &rid, "Unknown message type; expected RESTRequest");
    }
    let Some(method) = msg["method"].as_str().and_then(Method::parse) else {
        node.metrics.inc(&node.metrics.ws_bad_messages);
        return bad(&tid, &rid, "Missing or unknown 'method' property");
    };
    let Some(uri) = msg["uri"].as_str().filter(|u| !u.is_empty()) else {
        node.metrics.inc(&node.metrics.ws_bad_messages);
        return bad(&tid, &rid, "Empty or missing 'uri' property.");
    };
    let (path, query_text) = uri.split_once('?').unwrap_or((uri, ""));
    let path = path.trim_start_matches('/');
    let path = format!("/{}", path.strip_prefix("ari/").unwrap_or(path));
    let mut query = parse_query(query_text);
    if let Some(list) = msg.get("query_strings").and_then(Value::as_array) {
        for item in list {
            if let (Some(n), Some(v)) = (item["name"].as_str(), item["value"].as_str()) {
                query.push((n.to_string(), v.to_string()));
            }
        }
    }
    query.retain(|(k, _)| k != "api_key");
    let mut body = Vec::new();
    if let Some(message_body) = msg.get("message_body").and_then(Value::as_str) {
        match msg["content_type"].as_str() {
            Some("application/x-www-form-urlencoded") => query.extend(parse_query(message_body)),
            Some("application/json") => body = message_body.as_bytes().to_vec(),
            _ if message_body.is_empty() => {}
            _ => return bad(&tid, &rid, "No 'content_type' for 'message_body'."),
        }
    }
    let outcome = match route(method, &path) {
        Ok(op) if op.0.upgrade.is_none() => invoke(node, op, query, &body).await,
        Ok(_) => super::http::Outcome {
            status: 400,
            body: Some(
                json!({"message": "The events resource cannot be used over a WebSocket"})
                    .to_string(),
            ),
            location: None,
            file: None,
        },
        Err(e) => super::http::Outcome {
            status: e.status,
            body: Some(e.body()),
            location: None,
            file: None,
        },
    };
    node.metrics.count_status(outcome.status);
    let mut reply = json!({
        "type": "RESTResponse",
        "transaction_id": tid,
        "request_id": rid,
        "status_code": outcome.status,
        "reason_phrase": phrase(outcome.status),
        "uri": path.trim_start_matches('/'),
    });
    if let Some(b) = outcome.body {
        reply["content_type"] = json!("application/json");
        reply["message_body"] = json!(b);
    }
    reply
}
