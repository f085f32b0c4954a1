//! One events WebSocket (`/ari/events?app=...`): it holds its applications for
//! as long as it is open, carries their events out, and answers REST requests
//! sent over it (`RESTRequest` → `RESTResponse`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::WebSocketUpgrade;
use axum::http::Response;
use axum::response::IntoResponse;
use serde_json::{json, Value};

use super::http::{invoke, parse_query, phrase, route, Access, MAX_BODY};
use super::{EventSink, Node};
use crate::ari::args::Args;
use crate::ari::error::AriError;
use crate::ari::spec::Method;

/// Largest message a client may send: a `RESTRequest` carrying a body of up
/// to [`MAX_BODY`], escaped. (The library's default, 64 MiB, lets one message
/// of `[0,0,...]` grow to gigabytes as a JSON value.) A larger message ends
/// the session.
const MAX_MESSAGE: usize = 2 * MAX_BODY;

/// Time a close frame (1008) to a client that stopped reading may take to
/// be written; then the connection is dropped without it.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// One of the `ari.max_event_sockets` places, held by an events WebSocket
/// from its upgrade to its end (given back on drop, also when the upgrade
/// never completes).
pub struct SocketPermit(Arc<AtomicUsize>);

impl SocketPermit {
    /// A place if fewer than `max` are taken.
    pub fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<SocketPermit> {
        open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| SocketPermit(open.clone()))
    }
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Logs a refused upgrade at most once per 10 s, with the count since.
pub fn log_refused(max: usize) {
    static LAST: Mutex<(Option<Instant>, u64)> = Mutex::new((None, 0));
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    last.1 += 1;
    if last
        .0
        .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10))
    {
        tracing::warn!(
            refused = last.1,
            "events WebSocket refused with 503: ari.max_event_sockets ({max}) are open (at most one such line per 10 s)"
        );
        *last = (Some(Instant::now()), 0);
    }
}

/// Accepts the upgrade and runs the session, which holds `permit`.
pub fn upgrade(
    node: Arc<Node>,
    upgrade: WebSocketUpgrade,
    args: Args,
    permit: SocketPermit,
    access: Access,
) -> Response<Body> {
    let apps: Vec<String> = args.list("app").to_vec();
    let subscribe_all = args.bool("subscribeAll");
    upgrade
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .protocols(["ari"])
        .on_upgrade(move |socket| run(node, socket, apps, subscribe_all, permit, access))
        .into_response()
}

async fn run(
    node: Arc<Node>,
    mut socket: WebSocket,
    apps: Vec<String>,
    subscribe_all: bool,
    permit: SocketPermit,
    access: Access,
) {
    let _permit = permit;
    node.metrics.inc(&node.metrics.ws_sessions);
    let (sink, mut rx) =
        EventSink::with_budget(node.config.ari.ws_queue_events, node.ws_budget.clone());
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
    // Bounded by the client: ends when it closes, fails, or stops reading.
    let slow = loop {
        tokio::select! {
            _ = overflow.notified() => break true,
            out = rx.recv() => {
                let Some(text) = out else { break false };
                sink.taken(&text);
                // A client that stops reading blocks this write: the overflow
                // signal must still end the session.
                tokio::select! {
                    sent = socket.send(Message::Text(text.into())) => {
                        if sent.is_err() {
                            break false;
                        }
                    }
                    _ = overflow.notified() => break true,
                }
            }
            incoming = socket.recv() => {
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let reply = rest_over_ws(&node, text.as_str(), access).await;
                        if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                            break false;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        node.metrics.inc(&node.metrics.ws_bad_messages);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break false,
                }
            }
        }
    };
    // The queue goes at once, before the close frame waits for the client:
    // its events no longer count toward the total, and their memory is freed.
    let closed_by_node = sink.closed();
    sink.close();
    drop(rx);
    node.lock().await.detach(sid, &apps);
    drop(sink);
    if slow {
        if !closed_by_node {
            // Over its bound while another socket took its applications.
            node.metrics.inc(&node.metrics.ws_slow_closed_total);
        }
        release_memory();
        close_overflowed(&mut socket, &apps).await;
    }
    tracing::info!(apps = ?apps, "events WebSocket closed");
}

/// Gives the heap's free memory back to the system after a big queue was
/// dropped (glibc keeps freed small blocks otherwise), so that the node's
/// resident size returns to its level before the slow client.
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it takes no pointers
    // and is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Ends a session whose client stopped reading: a close frame (1008) if it
/// can still be written within [`CLOSE_WAIT`], then the connection is dropped.
async fn close_overflowed(socket: &mut WebSocket, apps: &[String]) {
    tracing::debug!(apps = ?apps, "events WebSocket closing (1008): the client is not reading its events");
    let frame = CloseFrame {
        code: 1008,
        reason: "event queue overflow".into(),
    };
    let close = socket.send(Message::Close(Some(frame)));
    let _ = tokio::time::timeout(CLOSE_WAIT, close).await;
}

/// Answers one `RESTRequest` message.
async fn rest_over_ws(node: &Node, text: &str, access: Access) -> Value {
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
    // A read-only user's socket carries its reads only.
    let refused = access.refuses(method);
    let outcome = match route(method, &path) {
        _ if refused.is_some() => {
            node.metrics.inc(&node.metrics.auth_read_only_refused);
            let body = refused.map(|e: AriError| e.body());
            super::http::Outcome {
                status: 403,
                body,
                location: None,
                file: None,
            }
        }
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
    // A file (a stored recording's) is not sent over the socket: 406, as
    // Asterisk's ari_websocket_requests.c answers.
    let (status, reason) = match outcome.file {
        Some(_) => (406, "Not Acceptable.  Use HTTP GET"),
        None => (outcome.status, phrase(outcome.status)),
    };
    node.metrics.count_status(status);
    let mut reply = json!({
        "type": "RESTResponse",
        "transaction_id": tid,
        "request_id": rid,
        "status_code": status,
        "reason_phrase": reason,
        "uri": path.trim_start_matches('/'),
    });
    if let Some(b) = outcome.body {
        reply["content_type"] = json!("application/json");
        reply["message_body"] = json!(b);
    }
    reply
}
