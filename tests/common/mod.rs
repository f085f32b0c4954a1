//! Harness for the integration tests: starts the real `crossbar` binary on a
//! free 127.0.0.1 port, talks to it over HTTP (`ureq`) and the events
//! WebSocket (`tungstenite`), and kills it when dropped.
//!
//! Every wait is bounded: HTTP calls have a global timeout, WebSocket reads a
//! read timeout on the socket and a deadline per helper.

#![allow(dead_code)]

#[path = "../common_driver/mod.rs"]
pub mod driver;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The development credentials the binary runs with by default.
pub const USER: &str = "asterisk";
pub const PASS: &str = "asterisk";
/// The default entity id (`asterisk_id`).
pub const ENTITY_ID: &str = "02:fc:00:00:00:01";
/// Longest a test waits for any one thing.
pub const WAIT: Duration = Duration::from_secs(5);

/// The ARI ports of test servers: 9000–9999, below the kernel's ephemeral
/// range (`net.ipv4.ip_local_port_range`, 32768–60999 here), so a port
/// handed out here is never taken meanwhile by another test's outgoing
/// connection; apart from [`sip_port`] (32000–32767), the RTP slots of
/// [`rtp_range`] (10000–31999) and `tests/clients.sh` (18088, 18089).
pub const ARI_PORTS: (u16, u16) = (9000, 9999);

/// A port for a test server's ARI (or any TCP/UDP listener a test needs)
/// from [`ARI_PORTS`]: a counter per test process, offset by the process id
/// (test binaries run one after another, tests of one binary in parallel),
/// skipping ports that cannot be bound now (another process holds them).
/// What still races — another process binding the port between this check
/// and the server's bind — is retried where the harness starts a server
/// (`Server::launch`).
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let span = u64::from(ARI_PORTS.1 - ARI_PORTS.0) + 1;
    let base = u64::from(std::process::id()) * 61;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = ARI_PORTS.0 + ((base + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {ARI_PORTS:?}");
}

/// A port for SIP (a node's `sip.bind`, a SIPp or baresip agent, a proxy)
/// or for a SIP agent's media, from 32000–32767: below the ephemeral range
/// (so it never meets a port the kernel hands out while the test runs) and
/// above the RTP slots of [`rtp_range`]. Successive calls in one test
/// process step by 4 (SIPp takes its media port and the one two above it),
/// offset by the process id; test binaries run one after another.
pub fn sip_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let slot = (u64::from(std::process::id()) * 4 + n * 4) % 764;
    32_000 + slot as u16
}

/// An RTP port range of 100 ports for one test server, below the ephemeral
/// range (so it never meets the ARI ports of parallel tests) and distinct for
/// every server this test process starts (a counter, offset by the process id
/// so consecutive test binaries do not start on the same slot; the counter
/// alone decides within a process, so no two servers of one test binary
/// share a slot). `_ari_port` is not used.
pub fn rtp_range(_ari_port: u16) -> (u16, u16) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let slot = (u64::from(std::process::id()) * 37 + n) % 220;
    let min = 10_000 + slot as u16 * 100;
    (min, min + 99)
}

/// A unique scratch path in the temp directory.
pub fn temp_path(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("crossbar-it-{}-{n}-{tag}", std::process::id()))
}

/// Reads one HTTP reply from a raw connection (until it closes, a read
/// fails or times out, or the Content-Length is complete; at most 64
/// reads): its status and body.
pub fn read_http_reply(stream: &mut impl std::io::Read) -> (u16, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    for _ in 0..64 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&got);
        if let Some((h, b)) = text.split_once("\r\n\r\n") {
            let len = h
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if b.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Runs the binary to completion: its output (killed, and the test
/// failed, after 10 s).
pub fn run_to_exit(cmd: &mut Command) -> std::process::Output {
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn crossbar");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "crossbar did not exit: stderr {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A command for the binary with no `CROSSBAR_*` variables inherited but
/// the driver's (see `common_driver`).
pub fn crossbar_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crossbar"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CROSSBAR_") && !driver::VARS.contains(&k.as_str()) {
            cmd.env_remove(k);
        }
    }
    // Recordings go to a scratch directory, not the working one (the node
    // creates `recordings.path` at start).
    cmd.env("CROSSBAR_RECORDINGS_PATH", temp_path("recordings"));
    // SIP off unless a test turns it on (its default port, 5060, is one
    // machine-wide port that a running node, or a soak's RTP pool, may hold).
    cmd.env("CROSSBAR_SIP_BIND", "off");
    cmd
}

/// A reply: status, headers, and the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub json: Option<Value>,
    pub text: String,
}

impl Resp {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `message` of an error body.
    pub fn message(&self) -> &str {
        self.json
            .as_ref()
            .and_then(|j| j["message"].as_str())
            .unwrap_or_else(|| panic!("no JSON message in reply: {self:?}"))
    }

    /// Asserts an ARI error: status, exact message, JSON content type.
    #[track_caller]
    pub fn assert_error(&self, status: u16, message: &str) {
        assert_eq!(self.status, status, "status of {self:?}");
        assert_eq!(self.message(), message, "message of {self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "content type of {self:?}"
        );
    }

    /// Asserts an ARI error whose message starts with `prefix`.
    #[track_caller]
    pub fn assert_error_prefix(&self, status: u16, prefix: &str) {
        assert_eq!(self.status, status, "status of {self:?}");
        assert!(
            self.message().starts_with(prefix),
            "message of {self:?} should start with {prefix:?}"
        );
    }

    /// The JSON body of a success reply.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "expected 200: {self:?}");
        self.json.as_ref().expect("JSON body")
    }

    #[track_caller]
    pub fn no_content(&self) {
        assert_eq!(self.status, 204, "expected 204: {self:?}");
        assert!(self.text.is_empty(), "204 with a body: {self:?}");
    }
}

/// How a request authenticates.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    ApiKey(&'a str),
}

/// A running `crossbar`, killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    pub rtp: (u16, u16),
    log: PathBuf,
    agent: ureq::Agent,
    user_events: AtomicU64,
    /// ARI speaks TLS only (`ari.tls_cert` in the config file).
    pub tls: bool,
}

impl Server {
    /// Starts the binary with the harness's settings.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts the binary with extra environment variables.
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        Server::launch(None, rtp_range(0), env, None)
    }

    /// Starts the binary with its ARI on `port` (the test chooses the bind
    /// address with `CROSSBAR_ARI_BIND` in `env`; requests still go to
    /// 127.0.0.1:`port`).
    pub fn start_on(port: u16, env: &[(&str, &str)]) -> Server {
        Server::launch(Some(port), rtp_range(port), env, None)
    }

    /// Starts the binary on the RTP ports `rtp.0..=rtp.1` (instead of
    /// [`rtp_range`]) with extra environment variables.
    pub fn start_with_rtp(rtp: (u16, u16), env: &[(&str, &str)]) -> Server {
        Server::launch(None, rtp, env, None)
    }

    /// Starts the binary with `--config FILE`, FILE holding `toml` (for what
    /// environment variables cannot say, such as `[[sip.endpoint]]` tables).
    pub fn start_with_config(toml: &str) -> Server {
        Server::start_with_config_env(toml, &[])
    }

    /// Starts the binary with a config file and environment variables
    /// (which override the file).
    pub fn start_with_config_env(toml: &str, env: &[(&str, &str)]) -> Server {
        let file = temp_path("config.toml");
        std::fs::write(&file, toml).expect("write config file");
        Server::launch(None, rtp_range(0), env, Some(&file))
    }

    /// Starts the binary on `port`, or on a port of [`free_port`]'s when
    /// `None`; then, should another process bind that port first (the node
    /// exits with "cannot listen on …"), on the next one (at most 10 tries).
    fn launch(
        port: Option<u16>,
        rtp: (u16, u16),
        env: &[(&str, &str)],
        config: Option<&std::path::Path>,
    ) -> Server {
        for _ in 0..10 {
            let port = port.unwrap_or_else(free_port);
            match Server::launch_once(port, rtp, env, config) {
                Ok(server) => return server,
                Err(log) if port_taken(&log) && !binds_ari(env) => {
                    eprintln!("ARI port {port} was taken meanwhile; retrying on another");
                }
                Err(log) => panic!("crossbar exited early:\n{log}"),
            }
        }
        panic!("crossbar could not listen on any of 10 ports");
    }

    fn launch_once(
        port: u16,
        rtp: (u16, u16),
        env: &[(&str, &str)],
        config: Option<&std::path::Path>,
    ) -> Result<Server, String> {
        let log = temp_path("server.log");
        let log_file = std::fs::File::create(&log).expect("create server log");
        let mut cmd = crossbar_command();
        if let Some(file) = config {
            cmd.arg("--config").arg(file);
        }
        cmd.env("CROSSBAR_ARI_BIND", format!("127.0.0.1:{port}"))
            .env("CROSSBAR_RTP_PORT_MIN", rtp.0.to_string())
            .env("CROSSBAR_RTP_PORT_MAX", rtp.1.to_string())
            .env("CROSSBAR_DATAPLANE_SHARDS", "1")
            .env("CROSSBAR_DATAPLANE_PIN", "false")
            .env("CROSSBAR_LOG_LEVEL", "warn")
            // SIP is off unless a test gives it an address (tests run in
            // parallel: no two may take 127.0.0.1:5060).
            .env("CROSSBAR_SIP_BIND", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let tls = config
            .and_then(|f| std::fs::read_to_string(f).ok())
            .is_some_and(|t| t.contains("tls_cert"));
        let child = cmd.spawn().expect("spawn crossbar");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(WAIT))
            .build()
            .new_agent();
        let mut server = Server {
            child,
            port,
            rtp,
            log,
            agent,
            user_events: AtomicU64::new(0),
            tls,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Waits until the node answers a ping; its log if it exited first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("({status})\n{}", self.log_text()));
            }
            let ready = if self.tls {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                self.answers_ping()
            };
            if ready {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "crossbar did not answer ping on port {}:\n{}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the node answers a ping with any HTTP reply (401 with other
    /// credentials). A TLS node (`ari.tls_cert`) refuses plain HTTP: it is
    /// ready once it accepts a TCP connection.
    fn answers_ping(&self) -> bool {
        self.agent
            .get(self.url("/ari/asterisk/ping"))
            .header("Authorization", basic(USER, PASS))
            .config()
            .timeout_global(Some(Duration::from_millis(500)))
            .build()
            .call()
            .is_ok_and(|r| r.status() == 200 || r.status() == 401)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// One request; 4xx/5xx are replies, not errors.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>, auth: Auth) -> Resp {
        let url = self.url(path);
        let mut req = match method {
            "GET" => self.agent.get(&url).force_send_body(),
            "DELETE" => self.agent.delete(&url).force_send_body(),
            "POST" => self.agent.post(&url),
            "PUT" => self.agent.put(&url),
            other => panic!("method {other} not supported by the harness"),
        };
        req = match auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.header("Authorization", basic(u, p)),
            Auth::ApiKey(_) => req,
        };
        if let Auth::ApiKey(key) = auth {
            req = req.query("api_key", key);
        }
        let result = match body {
            Some(b) => req.header("Content-Type", "application/json").send(b),
            None => req.send_empty(),
        };
        let mut resp = result.unwrap_or_else(|e| {
            panic!("{method} {path}: transport error {e}\n{}", self.log_text())
        });
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {path}: body: {e}"));
        let json = serde_json::from_str(&text).ok();
        Resp {
            status,
            headers,
            json,
            text,
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None, Auth::Basic(USER, PASS))
    }
    pub fn post(&self, path: &str) -> Resp {
        self.request("POST", path, None, Auth::Basic(USER, PASS))
    }
    pub fn post_json(&self, path: &str, body: &str) -> Resp {
        self.request("POST", path, Some(body), Auth::Basic(USER, PASS))
    }
    pub fn put_json(&self, path: &str, body: &str) -> Resp {
        self.request("PUT", path, Some(body), Auth::Basic(USER, PASS))
    }
    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None, Auth::Basic(USER, PASS))
    }

    /// Opens the events WebSocket for `app` (comma list allowed) and waits
    /// until every app is registered.
    pub fn ws(&self, app: &str) -> Ws {
        self.ws_query(app, "")
    }

    /// Same with `subscribeAll=true`.
    pub fn ws_all(&self, app: &str) -> Ws {
        self.ws_query(app, "&subscribeAll=true")
    }

    /// Opens the events WebSocket with `extra` appended to the query.
    pub fn ws_query(&self, app: &str, extra: &str) -> Ws {
        self.ws_as(app, &format!("{USER}:{PASS}"), extra)
    }

    /// Opens the events WebSocket as `api_key` (`user:password`).
    pub fn ws_as(&self, app: &str, api_key: &str, extra: &str) -> Ws {
        let ws = self.ws_raw(&format!("/ari/events?app={app}&api_key={api_key}{extra}"));
        let first = app.split(',').next().unwrap_or(app).to_string();
        for name in app.split(',') {
            self.wait_app(name);
        }
        Ws {
            socket: ws,
            app: first,
            port: self.port,
        }
    }

    /// A WebSocket to `path_and_query`, without waiting for anything.
    pub fn ws_raw(&self, path_and_query: &str) -> WebSocket<MaybeTlsStream<TcpStream>> {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        stream.set_write_timeout(Some(WAIT)).expect("write timeout");
        let url = format!("ws://127.0.0.1:{}{path_and_query}", self.port);
        let deadline = Instant::now() + WAIT;
        let mut pending = match tungstenite::client(url.as_str(), MaybeTlsStream::Plain(stream)) {
            Ok((ws, _)) => return ws,
            Err(tungstenite::HandshakeError::Interrupted(mid)) => mid,
            Err(tungstenite::HandshakeError::Failure(e)) => panic!("WebSocket {url}: {e}"),
        };
        loop {
            assert!(Instant::now() < deadline, "WebSocket handshake timed out");
            match pending.handshake() {
                Ok((ws, _)) => return ws,
                Err(tungstenite::HandshakeError::Interrupted(mid)) => pending = mid,
                Err(tungstenite::HandshakeError::Failure(e)) => panic!("WebSocket {url}: {e}"),
            }
        }
    }

    /// Waits until `GET /applications/{app}` answers 200.
    pub fn wait_app(&self, app: &str) {
        let deadline = Instant::now() + WAIT;
        while self.get(&format!("/ari/applications/{app}")).status != 200 {
            assert!(
                Instant::now() < deadline,
                "application {app} never registered"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Creates an externalMedia channel in `app` and returns its JSON.
    pub fn external_media(&self, app: &str, extra: &str) -> Value {
        self.post(&format!(
            "/ari/channels/externalMedia?app={app}&external_host=127.0.0.1:40000&format=ulaw{extra}"
        ))
        .ok()
        .clone()
    }

    /// An externalMedia μ-law channel in `app` whose remote is a UDP socket
    /// of the test's (reads time out after `read_timeout`): the socket, the
    /// channel's id and the node's RTP address for it (the socket must send
    /// from itself: the leg accepts media only from its remote).
    pub fn udp_leg(
        &self,
        app: &str,
        read_timeout: Duration,
    ) -> (std::net::UdpSocket, String, std::net::SocketAddr) {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        sock.set_read_timeout(Some(read_timeout))
            .expect("a read timeout");
        let ch = self
            .post(&format!(
                "/ari/channels/externalMedia?app={app}&external_host={}&format=ulaw",
                sock.local_addr().expect("a local address")
            ))
            .ok()
            .clone();
        let port: u16 = ch["channelvars"]["UNICASTRTP_LOCAL_PORT"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .expect("UNICASTRTP_LOCAL_PORT");
        let id = ch["id"].as_str().expect("channel id").to_string();
        (
            sock,
            id,
            format!("127.0.0.1:{port}").parse().expect("an address"),
        )
    }

    /// Creates a bridge and returns its id.
    pub fn bridge(&self, query: &str) -> String {
        let r = self.post(&format!("/ari/bridges{query}"));
        r.ok()["id"].as_str().expect("bridge id").to_string()
    }

    /// Adds `channel` to `bridge` (204 expected).
    pub fn add(&self, bridge: &str, channel: &str) {
        self.post(&format!(
            "/ari/bridges/{bridge}/addChannel?channel={channel}"
        ))
        .no_content();
    }

    /// A counter from `/metrics`.
    pub fn metric(&self, name: &str) -> u64 {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "{r:?}");
        r.text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing in:\n{}", r.text))
    }

    /// Sends a `ChannelUserevent` marker to `app` so that a reader can take
    /// exactly the events queued before it (see [`Ws::sync`]).
    pub fn mark(&self, app: &str) -> String {
        let n = self.user_events.fetch_add(1, Ordering::Relaxed);
        let name = format!("sync-{n}");
        self.post(&format!("/ari/events/user/{name}?application={app}"))
            .no_content();
        name
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- crossbar log (port {}) ----\n{}",
                self.port,
                self.log_text()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `Basic base64(user:pass)`.
pub fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// An events WebSocket.
pub struct Ws {
    pub socket: WebSocket<MaybeTlsStream<TcpStream>>,
    /// The first application it holds (the one [`Ws::sync`] marks).
    pub app: String,
    port: u16,
}

impl Ws {
    /// The next JSON message, or `None` if nothing arrives within `within`.
    /// Panics if the socket closes.
    pub fn next_within(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            match self.socket.read() {
                Ok(Message::Text(text)) => {
                    return Some(
                        serde_json::from_str(text.as_str())
                            .unwrap_or_else(|e| panic!("event is not JSON ({e}): {text}")),
                    )
                }
                Ok(Message::Close(frame)) => panic!("events WebSocket closed: {frame:?}"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("events WebSocket read: {e}"),
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// The next message (bounded by [`WAIT`]).
    #[track_caller]
    pub fn next(&mut self) -> Value {
        self.next_within(WAIT)
            .unwrap_or_else(|| panic!("no event within {WAIT:?} on app {}", self.app))
    }

    /// The next message of type `ty`, skipping others (bounded by [`WAIT`]).
    #[track_caller]
    pub fn next_event(&mut self, ty: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left) {
                Some(e) if e["type"] == ty => return e,
                Some(e) => skipped.push(e["type"].as_str().unwrap_or("?").to_string()),
                None => panic!(
                    "no {ty} within {WAIT:?} on app {}; skipped {skipped:?}",
                    self.app
                ),
            }
        }
    }

    /// Every message up to and including the first of type `ty`.
    #[track_caller]
    pub fn events_until(&mut self, ty: &str) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left) {
                Some(e) => {
                    let done = e["type"] == ty;
                    out.push(e);
                    if done {
                        return out;
                    }
                }
                None => panic!(
                    "no {ty} within {WAIT:?} on app {}; got {:?}",
                    self.app,
                    types(&out)
                ),
            }
        }
    }

    /// Exactly the events queued for this socket's first app until now:
    /// sends a user-event marker and returns what came before it.
    #[track_caller]
    pub fn sync(&mut self, server: &Server) -> Vec<Value> {
        assert_eq!(server.port, self.port, "socket of another server");
        let name = server.mark(&self.app);
        let mut events = self.events_until("ChannelUserevent");
        let marker = events.pop().expect("marker");
        assert_eq!(marker["eventname"], name.as_str(), "unexpected user event");
        events
    }

    /// Every message that arrives until `quiet` passes with none (at most
    /// 10 000).
    pub fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < 10_000 {
            match self.next_within(quiet) {
                Some(e) => out.push(e),
                None => break,
            }
        }
        out
    }

    /// Asserts that nothing arrives within `within`.
    #[track_caller]
    pub fn assert_quiet(&mut self, within: Duration) {
        if let Some(e) = self.next_within(within) {
            panic!("unexpected event on app {}: {e}", self.app);
        }
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.into()))
            .expect("WebSocket send");
    }
}

/// The `type` of each event.
pub fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect()
}

/// Whether `s` looks like `2026-11-22T14:44:56.270+0000`.
pub fn is_ari_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 28
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && &s[23..] == "+0000"
}

/// Whether a node's log says its ARI port was taken.
fn port_taken(log: &str) -> bool {
    log.contains("cannot listen on") && log.contains("in use")
}

/// Whether the test's `env` chooses the ARI address itself.
fn binds_ari(env: &[(&str, &str)]) -> bool {
    env.iter().any(|(k, _)| *k == "CROSSBAR_ARI_BIND")
}

/// Reads a child's pipe to a string (for `Command::output` alternatives).
pub fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

/// Builds `crossbar-load` (the tools crate) once per test process and returns
/// the binary's path.
pub fn load_tool() -> &'static PathBuf {
    static TOOL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TOOL.get_or_init(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "crossbar-tools", "--bin", "crossbar-load"])
            .current_dir(&manifest)
            .status()
            .expect("run cargo build for crossbar-tools");
        assert!(status.success(), "building crossbar-load failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .or_else(|| std::env::var_os("CARGO_BUILD_TARGET_DIR"))
            .map(PathBuf::from)
            .map(|p| if p.is_absolute() { p } else { manifest.join(p) })
            .unwrap_or_else(|| manifest.join("target"));
        let tool = target.join("debug").join("crossbar-load");
        assert!(tool.exists(), "{} was not built", tool.display());
        tool
    })
}
