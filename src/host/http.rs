//! The HTTP side of the control socket: authentication, api-docs, routing of
//! `/ari/...` requests through the route table, and the upgrade of
//! `/ari/events` to a WebSocket.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, FromRequestParts, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use base64::Engine;

use super::Node;
use crate::ari::args::Args;
use crate::ari::error::{reason_phrase, AriError};
use crate::ari::spec::{match_path, Method, Operation, Reply};
use crate::ari::{docs, routes};

/// Largest message on an events WebSocket is twice this (`session.rs`);
/// HTTP request bodies are limited by `ari.max_body_bytes`.
pub(super) const MAX_BODY: usize = 1 << 20;

/// A reply as the transport sends it: a status and an optional JSON body.
#[derive(Debug)]
pub struct Outcome {
    pub status: u16,
    pub body: Option<String>,
    /// The `Location` of a resource a 201 made (Asterisk's
    /// `ast_ari_response_created`).
    pub location: Option<String>,
    /// A body that is not JSON, with its `Content-Type` (`Reply::File`).
    pub file: Option<(&'static str, Vec<u8>)>,
}

impl Outcome {
    fn error(e: &AriError) -> Outcome {
        Outcome {
            status: e.status,
            body: Some(e.body()),
            location: None,
            file: None,
        }
    }
}

/// Serves the control socket on `listener` until the future is dropped.
/// Connections have Nagle's algorithm off: a small reply waiting for the
/// client's delayed ACK cost 40 ms of call setup (`crossbar-load sip`).
/// Connection limits and timeouts are `host::conn`'s; requests reach
/// [`entry`] with the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    node: Arc<Node>,
    listener: tokio::net::TcpListener,
    tls: Option<super::tls::TlsAcceptor>,
) -> std::io::Result<()> {
    let app = Router::new().fallback(entry).with_state(node.clone());
    super::conn::run(node, listener, app, tls).await
}

async fn entry(State(node): State<Arc<Node>>, req: Request<Body>) -> Response<Body> {
    // Without connect info (a router served otherwise) all requests are
    // one source.
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    if let Some(refused) = oversized_head(&node, &req) {
        return refused;
    }
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let Some(method) = Method::parse(parts.method.as_str()) else {
        return respond(&node, Outcome::error(&AriError::new(405, "Invalid method")));
    };

    let access = match authenticate(&node, source, &parts.headers, &query).await {
        Ok(access) => access,
        Err(refused) => return refused,
    };
    if let Some(e) = access.refuses(method) {
        node.metrics.inc(&node.metrics.auth_read_only_refused);
        return respond(&node, Outcome::error(&e));
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
        let scheme = if node.config.ari.tls_cert.is_empty() {
            "http"
        } else {
            "https"
        };
        let base = format!("{scheme}://{host}/ari");
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
                    location: None,
                    file: None,
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
        let max = node.config.ari.max_event_sockets;
        let Some(permit) = super::session::SocketPermit::take(&node.ws_open, max) else {
            node.metrics.inc(&node.metrics.ws_refused_total);
            super::session::log_refused(max);
            return respond(
                &node,
                Outcome::error(&AriError::new(503, "Too many event WebSockets")),
            );
        };
        node.metrics.count_status(101);
        return super::session::upgrade(node.clone(), upgrade, args, permit, access);
    }
    let body = match read_body(body, node.config.ari.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return respond(&node, Outcome::error(&e)),
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
            location: None,
            file: None,
        },
        Ok(Reply::Created(v, location)) => Outcome {
            status: 201,
            body: Some(v.to_string()),
            location: Some(location),
            file: None,
        },
        Ok(Reply::NoContent) => Outcome {
            status: 204,
            body: None,
            location: None,
            file: None,
        },
        Ok(Reply::File(content_type, bytes)) => Outcome {
            status: 200,
            body: None,
            location: None,
            file: Some((content_type, bytes)),
        },
        Ok(Reply::JsonText(text)) => Outcome {
            status: 200,
            body: Some(text),
            location: None,
            file: None,
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
    if let Some((content_type, bytes)) = outcome.file {
        return Response::builder()
            .status(StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::OK))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(bytes))
            .unwrap_or_default();
    }
    let mut response = json_response(outcome.status, outcome.body);
    if let Some(location) = outcome
        .location
        .and_then(|l| header::HeaderValue::from_str(&l).ok())
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
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

/// 414 for a request-target over `ari.max_uri_bytes`, 431 for headers over
/// `ari.max_header_bytes` (names, values and their `: ` and CRLF), checked
/// before authentication. hyper's own limits stand behind these (a URI over
/// 65534 bytes, over 100 headers, a head over ~400 KiB: bare 414/431).
fn oversized_head(node: &Node, req: &Request<Body>) -> Option<Response<Body>> {
    let ari = &node.config.ari;
    let uri = req.uri();
    let uri_len = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if uri_len > ari.max_uri_bytes {
        return Some(respond(
            node,
            Outcome::error(&AriError::new(
                414,
                format!("Request URI longer than {} bytes", ari.max_uri_bytes),
            )),
        ));
    }
    let header_len: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_len > ari.max_header_bytes {
        return Some(respond(
            node,
            Outcome::error(&AriError::new(
                431,
                format!(
                    "Request header fields larger than {} bytes",
                    ari.max_header_bytes
                ),
            )),
        ));
    }
    None
}

/// Reads a request body of at most `limit` bytes: 413 beyond (at once when
/// Content-Length says so), 400 if it cannot be read.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, AriError> {
    let too_large = || AriError::new(413, format!("Request body larger than {limit} bytes"));
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    let mut data = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|_| AriError::bad_request("Request body unreadable"))?;
        if let Ok(chunk) = frame.into_data() {
            if data.len() + chunk.len() > limit {
                return Err(too_large());
            }
            data.extend_from_slice(&chunk);
        }
    }
    Ok(Bytes::from(data))
}

/// Credentials as presented: `Some("user:pass")` from `api_key` or Basic
/// authorization (`Some("")` for an Authorization header that is not valid
/// Basic), `None` when the request carries none.
fn presented(headers: &HeaderMap, query: &[(String, String)]) -> Option<String> {
    if let Some((_, key)) = query.iter().find(|(k, _)| k == "api_key") {
        return Some(key.clone());
    }
    let auth = headers.get(header::AUTHORIZATION)?;
    let decoded = auth
        .to_str()
        .ok()
        .and_then(|a| {
            a.strip_prefix("Basic ")
                .or_else(|| a.strip_prefix("basic "))
        })
        .and_then(|enc| {
            base64::engine::general_purpose::STANDARD
                .decode(enc.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    Some(decoded.unwrap_or_default())
}

/// The user whose credentials `cred` (`user:pass`) are: `Some(read_only)`.
/// Every configured user is compared, name and password both, each in
/// constant time, with no early exit on a match.
fn credentials_match(node: &Node, cred: &str) -> Option<bool> {
    let (user, pass) = cred.split_once(':').unwrap_or((cred, ""));
    let mut found = None;
    for (name, password, read_only) in node.config.ari_users() {
        let user_ok = super::auth::constant_eq(user.as_bytes(), name.as_bytes());
        let pass_ok = super::auth::constant_eq(pass.as_bytes(), password.as_bytes());
        if std::hint::black_box(user_ok & pass_ok & cred.contains(':')) {
            found = Some(read_only);
        }
    }
    found
}

/// Who a request authenticated as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Full,
    /// `read_only` (`[[ari.user]]`): GET only, as in Asterisk.
    ReadOnly,
}

impl Access {
    /// Asterisk's refusal of a read-only user's write (`res_ari.c`): 403
    /// "Write access denied" for any method but GET (and OPTIONS).
    pub fn refuses(self, method: Method) -> Option<AriError> {
        (self == Access::ReadOnly && method != Method::Get)
            .then(|| AriError::new(403, "Write access denied"))
    }
}

/// Checks a request's credentials, slowing sources with repeated failures
/// (see [`super::auth`]); the refusal to send otherwise: 401, or 429 for a
/// throttled source whose wait would be too long.
async fn authenticate(
    node: &Node,
    source: IpAddr,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Access, Response<Body>> {
    use super::auth::Admit;
    let Some(cred) = presented(headers, query) else {
        return Err(unauthorized(node));
    };
    match node.auth.admit(source, Instant::now()) {
        Admit::Now => {}
        Admit::After(wait) => tokio::time::sleep(wait).await,
        Admit::Refuse(retry) => {
            node.metrics.inc(&node.metrics.auth_throttled);
            node.metrics.count_status(429);
            let mut r = json_response(
                429,
                Some(AriError::new(429, "Too many failed logins from this address").body()),
            );
            if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Err(r);
        }
    }
    if let Some(read_only) = credentials_match(node, &cred) {
        node.auth.succeeded(source);
        return Ok(if read_only {
            Access::ReadOnly
        } else {
            Access::Full
        });
    }
    if let Some(failures) = node.auth.failed(source, Instant::now()) {
        let user: String = cred
            .split_once(':')
            .map_or("", |(u, _)| u)
            .chars()
            .take(64)
            .collect();
        tracing::warn!(
            source = %source,
            user = ?user,
            failures,
            throttled = node.auth.throttled(source),
            "ARI login failed ({failures} failed logins from this source since its last report, at most one report per {} s)",
            super::auth::LOG_INTERVAL.as_secs()
        );
    }
    Err(unauthorized(node))
}

/// 401 with the Basic challenge, counted.
fn unauthorized(node: &Node) -> Response<Body> {
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
    r
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
    let channels = ctl.reg.channel_count() as u64;
    let bridges = ctl.reg.bridge_count() as u64;
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
        (
            "crossbar_ws_open",
            "Events WebSockets open now",
            node.ws_open.load(std::sync::atomic::Ordering::Relaxed) as u64,
        ),
        (
            "crossbar_ws_queued_bytes",
            "Bytes of events queued to events WebSockets now, across clients",
            node.ws_budget.total() as u64,
        ),
    ]);
    text.push_str(&shard_metrics(&node.dataplane.shards_up()));
    if let Some((free, total)) = node.dataplane.rtp_port_pairs() {
        text.push_str(&format!(
            "# HELP crossbar_rtp_port_pairs_free RTP/RTCP port pairs free in the pool now\n\
             # TYPE crossbar_rtp_port_pairs_free gauge\n\
             crossbar_rtp_port_pairs_free {free}\n\
             # HELP crossbar_rtp_port_pairs RTP/RTCP port pairs in rtp.port_min..rtp.port_max\n\
             # TYPE crossbar_rtp_port_pairs gauge\n\
             crossbar_rtp_port_pairs {total}\n"
        ));
    }
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
