//! ARI hardening against the real binary: no start with the development
//! credentials on a non-loopback address, request size limits (413, 414,
//! 431 with ARI error bodies), failed logins logged, counted and slowed per
//! source while right credentials still get in.
//!
//! Non-loopback binds use 0.0.0.0 (listening only); every request goes to
//! 127.0.0.0/8.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use common::{basic, crossbar_command, free_port, run_to_exit, Auth, Server, PASS, USER};

#[test]
fn default_credentials_on_a_non_loopback_address_refuse_to_start() {
    let bind = format!("0.0.0.0:{}", free_port());
    let out = run_to_exit(crossbar_command().env("CROSSBAR_ARI_BIND", &bind));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "crossbar: bad configuration: ari.password: the development credentials \
             asterisk/asterisk are refused when ari.bind ({bind}) is not a loopback address: \
             set ari.username and ari.password (CROSSBAR_ARI_USERNAME, CROSSBAR_ARI_PASSWORD)"
        )
    );
    // an empty password is refused wherever ARI listens
    let out = run_to_exit(
        crossbar_command()
            .env("CROSSBAR_ARI_BIND", format!("127.0.0.1:{}", free_port()))
            .env("CROSSBAR_ARI_PASSWORD", ""),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "crossbar: bad configuration: ari.password: must not be empty"
    );
}

#[test]
fn a_non_loopback_address_with_a_real_password_starts() {
    // `free_port` hands out ports below the ephemeral range: no other
    // test's outgoing connection takes it before the node binds 0.0.0.0.
    let port = free_port();
    let bind = format!("0.0.0.0:{port}");
    let s = Server::start_on(
        port,
        &[
            ("CROSSBAR_ARI_BIND", &bind),
            ("CROSSBAR_ARI_PASSWORD", "s3cret"),
        ],
    );
    let r = s.request(
        "GET",
        "/ari/asterisk/ping",
        None,
        Auth::Basic(USER, "s3cret"),
    );
    assert_eq!(r.ok()["ping"], "pong");
    s.get("/ari/asterisk/ping")
        .assert_error(401, "Authentication required");
}

/// A TCP connection to 127.0.0.1:`port` from `src` (any 127.0.0.0/8
/// address), so that a test can be another source.
fn connect_from(src: Ipv4Addr, port: u16) -> TcpStream {
    // SAFETY: plain socket calls on a descriptor this function owns; it is
    // handed to TcpStream (which closes it) or closed on failure.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let addr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = addr(src, 0);
        let remote = addr(Ipv4Addr::LOCALHOST, port);
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            panic!("connect from {src}: {e}");
        }
        TcpStream::from_raw_fd(fd)
    }
}

/// Sends `head` (and `body`) on a fresh connection from `src` and returns
/// the status and the body of the reply (read until the connection closes
/// or the Content-Length is complete).
fn raw_from(src: Ipv4Addr, port: u16, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = connect_from(src, port);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream.write_all(head.as_bytes()).expect("write head");
    // the body is best effort: the node may answer and close before it
    let _ = stream.write_all(body);
    common::read_http_reply(&mut stream)
}

fn raw(port: u16, head: &str, body: &[u8]) -> (u16, String) {
    raw_from(Ipv4Addr::LOCALHOST, port, head, body)
}

fn message(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    v["message"].as_str().expect("message").to_string()
}

#[test]
fn oversized_bodies_get_413() {
    let s = Server::start_with(&[("CROSSBAR_ARI_MAX_BODY_BYTES", "4096")]);
    let auth = basic(USER, PASS);
    // announced by Content-Length: refused before the body is read
    let (status, body) = raw(
        s.port,
        &format!(
            "POST /ari/bridges HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n"
        ),
        b"",
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(message(&body), "Request body larger than 4096 bytes");
    // streamed in chunks: refused once the limit is crossed
    let mut chunked = Vec::new();
    for _ in 0..5 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b' '; 0x400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw(
        s.port,
        &format!(
            "POST /ari/bridges HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        &chunked,
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(message(&body), "Request body larger than 4096 bytes");
    // through the harness's client too, and a body within the limit is read
    let big = format!("{{\"variables\":{{\"X\":\"{}\"}}}}", "a".repeat(5000));
    s.post_json("/ari/bridges", &big)
        .assert_error(413, "Request body larger than 4096 bytes");
    let ok = s.post_json("/ari/bridges", "{}");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(s.metric("crossbar_http_client_errors_total") >= 3);
}

#[test]
fn oversized_uris_get_414_and_headers_431() {
    let s = Server::start_with(&[
        ("CROSSBAR_ARI_MAX_URI_BYTES", "2048"),
        ("CROSSBAR_ARI_MAX_HEADER_BYTES", "4096"),
    ]);
    let long = "a".repeat(3000);
    s.get(&format!("/ari/asterisk/ping?x={long}"))
        .assert_error(414, "Request URI longer than 2048 bytes");
    // refused before authentication
    s.request(
        "GET",
        &format!("/ari/asterisk/ping?x={long}"),
        None,
        Auth::None,
    )
    .assert_error(414, "Request URI longer than 2048 bytes");
    let auth = basic(USER, PASS);
    let (status, body) = raw(
        s.port,
        &format!(
            "GET /ari/asterisk/ping HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             X-Big: {}\r\n\r\n",
            "b".repeat(5000)
        ),
        b"",
    );
    assert_eq!(status, 431, "{body}");
    assert_eq!(
        message(&body),
        "Request header fields larger than 4096 bytes"
    );
    // within the limits all is well
    assert_eq!(s.get("/ari/asterisk/ping").ok()["ping"], "pong");
    // beyond hyper's own limits: its bare 414 (URI over 65534 bytes) and 431
    // (over 100 headers)
    let (status, _) = raw(
        s.port,
        &format!(
            "GET /ari/asterisk/ping?x={} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(70_000)
        ),
        b"",
    );
    assert_eq!(status, 414);
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (status, _) = raw(
        s.port,
        &format!("GET /ari/asterisk/ping HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
        b"",
    );
    assert_eq!(status, 431);
}

#[test]
fn failed_logins_are_logged_counted_and_slowed_per_source() {
    let s = Server::start();
    let fast = Duration::from_millis(700);
    let base = s.metric("crossbar_auth_failures_total");
    let wrong = |s: &Server| {
        let t = Instant::now();
        let r = s.request("GET", "/ari/asterisk/ping", None, Auth::Basic(USER, "nope"));
        (r, t.elapsed())
    };
    // the first ten wrong passwords within a minute are answered at once
    for i in 0..10 {
        let (r, took) = wrong(&s);
        r.assert_error(401, "Authentication required");
        assert!(took < fast, "attempt {i} took {took:?}");
    }
    // then this source's credentials are checked once a second
    let (r, took) = wrong(&s);
    r.assert_error(401, "Authentication required");
    assert!(took >= Duration::from_millis(800), "took {took:?}");
    // requests without credentials guess nothing and are not slowed
    let t = Instant::now();
    s.request("GET", "/ari/asterisk/ping", None, Auth::None)
        .assert_error(401, "Authentication required");
    assert!(t.elapsed() < fast);
    // another source (127.0.0.2) is not slowed, right or wrong
    let head = |auth: &str| {
        format!("GET /ari/asterisk/ping HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n")
    };
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let t = Instant::now();
    assert_eq!(
        raw_from(other, s.port, &head(&basic(USER, "nope")), b"").0,
        401
    );
    assert_eq!(
        raw_from(other, s.port, &head(&basic(USER, PASS)), b"").0,
        200
    );
    assert!(t.elapsed() < fast, "other source took {:?}", t.elapsed());
    // a burst from the throttled source: slots up to 3 s away wait, the
    // rest get 429 unchecked
    let burst: Vec<_> = (0..6)
        .map(|_| {
            let port = s.port;
            std::thread::spawn(move || {
                raw_from(
                    Ipv4Addr::LOCALHOST,
                    port,
                    &format!(
                        "GET /ari/asterisk/ping HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
                        basic(USER, "nope")
                    ),
                    b"",
                )
            })
        })
        .collect();
    let statuses: Vec<(u16, String)> = burst.into_iter().map(|h| h.join().expect("join")).collect();
    let refused: Vec<_> = statuses.iter().filter(|(st, _)| *st == 429).collect();
    assert!(
        !refused.is_empty() && statuses.iter().all(|(st, _)| *st == 401 || *st == 429),
        "{statuses:?}"
    );
    assert_eq!(
        message(&refused[0].1),
        "Too many failed logins from this address"
    );
    // once the burst is over, the right password gets in (after one slot)
    // and ends the slowdown for its source
    let t = Instant::now();
    assert_eq!(s.get("/ari/asterisk/ping").ok()["ping"], "pong");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    assert_eq!(s.get("/ari/asterisk/ping").ok()["ping"], "pong");
    assert!(t.elapsed() < fast, "took {:?}", t.elapsed());
    // counted: every 401 (the one without credentials too) and every 429
    let failures = s.metric("crossbar_auth_failures_total") - base;
    let throttled = s.metric("crossbar_auth_throttled_total");
    assert_eq!(
        failures + throttled,
        10 + 1 + 1 + 1 + 6,
        "failures {failures}, throttled {throttled}"
    );
    assert_eq!(throttled, refused.len() as u64);
    // logged with the source, at most one line per source per 10 s (the
    // harness's readiness probe is not a failure: it has the right password)
    let log = s.log_text();
    let lines: Vec<_> = log
        .lines()
        .filter(|l| l.contains("ARI login failed"))
        .collect();
    let local: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("source=127.0.0.1 "))
        .collect();
    assert!(!local.is_empty() && local.len() <= 2, "{log}");
    assert!(local[0].contains("failures=1"), "{log}");
    assert!(
        lines.iter().any(|l| l.contains("source=127.0.0.2 ")),
        "{log}"
    );
}

const USERS: &str = "[ari]\n\
    [[ari.user]]\nname = \"ops\"\npassword = \"ops-pw\"\n\
    [[ari.user]]\nname = \"watch\"\npassword = \"watch-pw\"\nread_only = true\n";

#[test]
fn several_users_and_a_read_only_one() {
    let s = Server::start_with_config(USERS);
    // The single user of ari.username keeps working; a further user too.
    assert_eq!(s.get("/ari/asterisk/ping").ok()["ping"], "pong");
    let ops = Auth::Basic("ops", "ops-pw");
    let watch = Auth::Basic("watch", "watch-pw");
    let created = s.request("POST", "/ari/bridges", None, ops);
    let id = created.ok()["id"].as_str().expect("bridge id").to_string();

    // The read-only user reads, also /metrics and with api_key.
    let listed = s.request("GET", "/ari/bridges", None, watch);
    assert_eq!(listed.ok()[0]["id"], id.as_str());
    assert_eq!(s.request("GET", "/metrics", None, watch).status, 200);
    let key = s.request(
        "GET",
        "/ari/asterisk/ping",
        None,
        Auth::ApiKey("watch:watch-pw"),
    );
    assert_eq!(key.ok()["ping"], "pong");
    // ...and nothing else: Asterisk's 403 for a read_only user, before
    // routing (an unknown path too).
    let writes = [
        ("POST", "/ari/bridges".to_string(), watch),
        ("DELETE", format!("/ari/bridges/{id}"), watch),
        ("POST", "/ari/nowhere".to_string(), watch),
        (
            "PUT",
            "/ari/asterisk/config/dynamic/x/y/z".to_string(),
            watch,
        ),
        (
            "POST",
            "/ari/bridges".to_string(),
            Auth::ApiKey("watch:watch-pw"),
        ),
    ];
    for (method, path, auth) in &writes {
        s.request(method, path, None, *auth)
            .assert_error(403, "Write access denied");
    }
    assert_eq!(
        s.get(&format!("/ari/bridges/{id}")).status,
        200,
        "not destroyed"
    );
    // Wrong passwords: 401, each user its own password.
    for auth in [
        Auth::Basic("watch", "ops-pw"),
        Auth::Basic("ops", "watch-pw"),
        Auth::Basic("watch", ""),
        Auth::Basic("nobody", "watch-pw"),
    ] {
        s.request("GET", "/ari/asterisk/ping", None, auth)
            .assert_error(401, "Authentication required");
    }

    // Its events WebSocket opens and carries events; REST over it reads only.
    let mut ws = s.ws_as("mon", "watch:watch-pw", "&subscribeAll=true");
    let other = s.request("POST", "/ari/bridges", None, ops).ok()["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        ws.next_event("BridgeCreated")["bridge"]["id"],
        other.as_str()
    );
    ws.send_text(r#"{"type":"RESTRequest","transaction_id":"t1","request_id":"r1","method":"GET","uri":"asterisk/ping"}"#);
    let reply = ws.next_event("RESTResponse");
    assert_eq!(reply["status_code"], 200, "{reply}");
    ws.send_text(r#"{"type":"RESTRequest","transaction_id":"t2","request_id":"r2","method":"DELETE","uri":"bridges/x"}"#);
    let reply = ws.next_event("RESTResponse");
    assert_eq!(reply["status_code"], 403, "{reply}");
    assert_eq!(
        reply["message_body"].as_str().map(message),
        Some("Write access denied".to_string())
    );
    assert_eq!(
        s.metric("crossbar_auth_read_only_refused_total"),
        writes.len() as u64 + 1
    );
    assert_eq!(s.metric("crossbar_auth_failures_total"), 4);
}

#[test]
fn every_user_is_refused_the_default_or_an_empty_password() {
    let file = common::temp_path("users.toml");
    let cases = [
        (
            "0.0.0.0",
            "[ari]\nusername = \"admin\"\npassword = \"s3cret\"\n\
             [[ari.user]]\nname = \"asterisk\"\npassword = \"asterisk\"\nread_only = true\n",
            "ari.user[0].password: the development credentials asterisk/asterisk are refused \
             when ari.bind (0.0.0.0:PORT) is not a loopback address",
        ),
        (
            "127.0.0.1",
            "[ari]\n[[ari.user]]\nname = \"watch\"\npassword = \"\"\n",
            "ari.user[0].password: must not be empty",
        ),
    ];
    for (ip, toml, want) in cases {
        std::fs::write(&file, toml).expect("write config");
        let port = free_port();
        let out = run_to_exit(
            crossbar_command()
                .arg("--config")
                .arg(&file)
                .env("CROSSBAR_ARI_BIND", format!("{ip}:{port}")),
        );
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim_end(),
            format!(
                "crossbar: bad configuration: {}",
                want.replace("PORT", &port.to_string())
            )
        );
    }
    let _ = std::fs::remove_file(&file);
}
