//! ARI over TLS against the real binary: a self-signed certificate made at
//! test time with the openssl CLI, an authenticated GET over HTTPS and the
//! events WebSocket over WSS (a rustls client trusting that certificate),
//! plain HTTP to the TLS port refused and counted, and bad certificate or
//! key files refused at start with exit 2 and the key at fault.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{basic, crossbar_command, free_port, run_to_exit, temp_path, Server, PASS, USER};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tungstenite::Message;

/// A self-signed P-256 certificate for 127.0.0.1 and its key, as PEM files.
fn make_cert(tag: &str) -> (PathBuf, PathBuf) {
    let cert = temp_path(&format!("{tag}-cert.pem"));
    let key = temp_path(&format!("{tag}-key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "2", "-subj", "/CN=crossbar-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        // A leaf, not a CA (openssl's -x509 default), as rustls insists.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "keyUsage=digitalSignature"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// A rustls client trusting only `cert`.
fn client_config(cert: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).expect("read cert") {
        roots.add(c.expect("PEM cert")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to the node (server name 127.0.0.1), handshake done.
fn tls_connect(port: u16, config: &Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(common::WAIT)).expect("timeout");
    tcp.set_write_timeout(Some(common::WAIT)).expect("timeout");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let conn = rustls::ClientConnection::new(config.clone(), name).expect("client connection");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("TLS handshake with the node");
    }
    tls
}

/// One HTTPS request (`Connection: close`): the status and the body.
fn https(
    port: u16,
    config: &Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    user: &str,
    pass: &str,
) -> (u16, String) {
    let mut tls = tls_connect(port, config);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
        basic(user, pass)
    );
    tls.write_all(head.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    // The node may close without close_notify: what arrived is the reply.
    let mut buf = [0u8; 16 * 1024];
    for _ in 0..10_000 {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

fn tls_config(cert: &Path, key: &Path) -> String {
    format!(
        "[ari]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

#[test]
fn https_and_wss_with_a_self_signed_certificate() {
    let (cert, key) = make_cert("ok");
    let s = Server::start_with_config(&tls_config(&cert, &key));
    assert!(s.tls);
    let client = client_config(&cert);

    // Authenticated GET over HTTPS, and the credentials still checked.
    let (status, body) = https(s.port, &client, "GET", "/ari/asterisk/ping", USER, PASS);
    assert_eq!(status, 200, "{body}");
    let ping: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(ping["ping"], "pong");
    let (status, _) = https(s.port, &client, "GET", "/ari/asterisk/ping", USER, "nope");
    assert_eq!(status, 401);
    // api-docs name the https base.
    let (status, body) = https(
        s.port,
        &client,
        "GET",
        "/ari/api-docs/resources.json",
        USER,
        PASS,
    );
    assert_eq!(status, 200);
    let docs: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        docs["basePath"],
        format!("https://127.0.0.1:{}/ari", s.port).as_str()
    );

    // The events WebSocket over WSS carries events.
    let tls = tls_connect(s.port, &client);
    let url = format!(
        "wss://127.0.0.1:{}/ari/events?app=secure&subscribeAll=true&api_key={USER}:{PASS}",
        s.port
    );
    let (mut ws, resp) = tungstenite::client(url.as_str(), tls).expect("WSS handshake");
    assert_eq!(resp.status().as_u16(), 101);
    // Wait for the application, then create a bridge over HTTPS.
    let deadline = Instant::now() + common::WAIT;
    while https(
        s.port,
        &client,
        "GET",
        "/ari/applications/secure",
        USER,
        PASS,
    )
    .0 != 200
    {
        assert!(Instant::now() < deadline, "application never registered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = https(s.port, &client, "POST", "/ari/bridges", USER, PASS);
    assert_eq!(status, 200, "{body}");
    let bridge: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let mut got = None;
    for _ in 0..100 {
        match ws.read().expect("WSS read") {
            Message::Text(t) => {
                let e: serde_json::Value = serde_json::from_str(t.as_str()).expect("JSON");
                if e["type"] == "BridgeCreated" {
                    got = Some(e);
                    break;
                }
            }
            Message::Close(f) => panic!("WSS closed: {f:?}"),
            _ => {}
        }
    }
    let got = got.expect("BridgeCreated over WSS");
    assert_eq!(got["bridge"]["id"], bridge["id"]);
    ws.close(None).expect("close");

    // Plain HTTP to the TLS port gets no HTTP reply, and is counted.
    let mut plain = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    plain.set_read_timeout(Some(common::WAIT)).expect("timeout");
    plain
        .write_all(
            format!(
                "GET /ari/asterisk/ping HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
                basic(USER, PASS)
            )
            .as_bytes(),
        )
        .expect("write");
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(
        !reply.starts_with(b"HTTP/"),
        "plain HTTP answered on the TLS port: {:?}",
        String::from_utf8_lossy(&reply)
    );
    let (_, metrics) = https(s.port, &client, "GET", "/metrics", USER, PASS);
    assert!(metric(&metrics, "crossbar_tls_handshake_failures_total") >= 1);
    for f in [&cert, &key] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn bad_certificate_or_key_files_refuse_to_start() {
    let (cert, key) = make_cert("a");
    let (_other_cert, other_key) = make_cert("b");
    let missing = temp_path("missing.pem");
    let garbage = temp_path("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").expect("write");
    let cases: Vec<(String, String)> = vec![
        (
            tls_config(&missing, &key),
            format!(
                "ari.tls_cert: cannot read {}: No such file or directory (os error 2)",
                missing.display()
            ),
        ),
        (
            tls_config(&garbage, &key),
            format!(
                "ari.tls_cert: {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                garbage.display()
            ),
        ),
        (
            tls_config(&cert, &garbage),
            format!(
                "ari.tls_key: cannot read a PEM private key from {}: no PEM item of that kind in it",
                garbage.display()
            ),
        ),
        (
            tls_config(&cert, &other_key),
            format!(
                "ari.tls_key: {} is not usable with the certificate of {}",
                other_key.display(),
                cert.display()
            ),
        ),
        (
            format!("[ari]\ntls_cert = \"{}\"\n", cert.display()),
            "ari.tls_key: ari.tls_cert and ari.tls_key are set together (both, or neither)"
                .to_string(),
        ),
    ];
    let file = temp_path("tls.toml");
    for (toml, want) in cases {
        std::fs::write(&file, &toml).expect("write config");
        let out = run_to_exit(
            crossbar_command()
                .arg("--config")
                .arg(&file)
                .env("CROSSBAR_ARI_BIND", format!("127.0.0.1:{}", free_port())),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {stderr}");
        let want = format!("crossbar: bad configuration: {want}");
        assert!(
            stderr.trim_end().starts_with(&want),
            "{toml}:\n{stderr}\nwant {want}"
        );
    }
    for f in [&cert, &key, &_other_cert, &other_key, &garbage, &file] {
        let _ = std::fs::remove_file(f);
    }
}
