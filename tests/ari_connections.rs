//! The control socket's connection limits against the real binary (issue 12,
//! "Connections"): idle connections beyond `ari.max_connections` do not lock
//! out an authenticated client, a slowloris request is cut after
//! `ari.header_timeout_ms`, an idle keep-alive connection is closed after
//! `ari.idle_timeout_ms` (an events WebSocket is not), the per-source cap
//! refuses with 503, and the counters of all that move. Only 127.0.0.0/8;
//! other source addresses are 127.0.0.2 and up. Every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{basic, Server, PASS, USER};

/// A TCP connection to the server from `source` (a 127.x address).
fn connect_from(source: &str, port: u16) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let stream = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind(format!("{source}:0").parse::<SocketAddr>().unwrap())
            .expect("bind source");
        sock.connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("connect")
    });
    let std = stream.into_std().expect("into_std");
    std.set_nonblocking(false).expect("blocking");
    std.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    std
}

/// Reads one HTTP response (status, body) from `s`.
fn read_response(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
            return Some((status, body));
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn get_on(s: &mut TcpStream, path: &str) -> Option<(u16, String)> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\n\r\n",
        basic(USER, PASS)
    );
    s.write_all(req.as_bytes()).ok()?;
    read_response(s)
}

/// One authenticated GET on a fresh connection from `source`.
fn get_from(source: &str, port: u16, path: &str) -> (u16, String) {
    let mut s = connect_from(source, port);
    get_on(&mut s, path).unwrap_or_else(|| panic!("no answer to GET {path} from {source}"))
}

/// The value of metric `name`.
fn metric(port: u16, name: &str) -> u64 {
    let (status, text) = get_from("127.0.0.1", port, "/metrics");
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits (bounded by `within`) until the peer closes `s`; true if it did.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 256];
    let deadline = Instant::now() + within;
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

#[test]
fn idle_connections_beyond_the_limit_do_not_lock_out_a_ping() {
    let s = Server::start_with(&[
        ("CROSSBAR_ARI_MAX_CONNECTIONS", "50"),
        ("CROSSBAR_ARI_MAX_CONNECTIONS_PER_SOURCE", "50"),
        ("CROSSBAR_ARI_HEADER_TIMEOUT_MS", "60000"),
        ("CROSSBAR_ARI_IDLE_TIMEOUT_MS", "60000"),
    ]);
    let evicted_before = metric(s.port, "crossbar_http_connections_evicted_total");
    // 50 idle connections that never send a byte, then 30 more from other
    // sources: the node is full of idle connections throughout.
    let mut idle: Vec<TcpStream> = (0..50).map(|_| connect_from("127.0.0.2", s.port)).collect();
    idle.extend((0..30).map(|_| connect_from("127.0.0.3", s.port)));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let (status, body) = get_from("127.0.0.1", s.port, "/ari/asterisk/ping");
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The first ones, idle the longest, were closed to admit the others.
    assert!(closed_within(&mut idle[0], Duration::from_secs(2)));
    assert!(closed_within(&mut idle[30], Duration::from_secs(2)));
    // The newest are still open.
    assert!(!closed_within(&mut idle[79], Duration::from_millis(200)));
    let evicted = metric(s.port, "crossbar_http_connections_evicted_total") - evicted_before;
    assert!(evicted >= 31, "evicted {evicted}");
    assert!(metric(s.port, "crossbar_http_connections_open") <= 51);
}

#[test]
fn slowloris_request_is_cut_after_the_header_timeout() {
    let s = Server::start_with(&[
        ("CROSSBAR_ARI_HEADER_TIMEOUT_MS", "500"),
        ("CROSSBAR_ARI_IDLE_TIMEOUT_MS", "60000"),
    ]);
    let before = metric(s.port, "crossbar_http_header_timeouts_total");
    // Headers one byte per 50 ms: 40 bytes would take 2 s.
    let mut slow = connect_from("127.0.0.2", s.port);
    let started = Instant::now();
    let mut cut = None;
    for b in b"GET /ari/asterisk/ping HTTP/1.1\r\nHost: x\r\n" {
        if slow.write_all(&[*b]).is_err() {
            cut = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if started.elapsed() > Duration::from_millis(700) {
            break;
        }
    }
    if cut.is_none() {
        assert!(closed_within(&mut slow, Duration::from_secs(2)));
        cut = Some(started.elapsed());
    }
    let cut = cut.unwrap();
    assert!(
        cut >= Duration::from_millis(400) && cut < Duration::from_millis(2000),
        "cut after {cut:?}"
    );
    // A connection that never sends a byte is cut as well.
    let mut silent = connect_from("127.0.0.2", s.port);
    assert!(closed_within(&mut silent, Duration::from_secs(2)));
    assert!(metric(s.port, "crossbar_http_header_timeouts_total") >= before + 2);
    // The node serves on.
    assert_eq!(get_from("127.0.0.1", s.port, "/ari/asterisk/ping").0, 200);
}

#[test]
fn idle_keep_alive_connection_is_closed_but_websocket_is_not() {
    let s = Server::start_with(&[
        ("CROSSBAR_ARI_HEADER_TIMEOUT_MS", "5000"),
        ("CROSSBAR_ARI_IDLE_TIMEOUT_MS", "500"),
    ]);
    let mut ws = s.ws("conn-idle");
    let before = metric(s.port, "crossbar_http_idle_closed_total");
    let mut c = connect_from("127.0.0.2", s.port);
    // Keep-alive: two requests on one connection, then silence.
    assert_eq!(get_on(&mut c, "/ari/asterisk/ping").unwrap().0, 200);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get_on(&mut c, "/ari/asterisk/ping").unwrap().0, 200);
    let started = Instant::now();
    assert!(closed_within(&mut c, Duration::from_secs(3)));
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(400) && idle < Duration::from_millis(2000),
        "closed after {idle:?}"
    );
    assert!(metric(s.port, "crossbar_http_idle_closed_total") > before);
    // The events WebSocket outlived the idle timeout by far: still open
    // (next_within panics if it closed) and its application registered.
    std::thread::sleep(Duration::from_millis(1000));
    assert!(ws.next_within(Duration::from_millis(100)).is_none());
    assert_eq!(
        get_from("127.0.0.1", s.port, "/ari/applications/conn-idle").0,
        200
    );
}

#[test]
fn per_source_cap_refuses_with_503() {
    let s = Server::start_with(&[
        ("CROSSBAR_ARI_MAX_CONNECTIONS", "100"),
        ("CROSSBAR_ARI_MAX_CONNECTIONS_PER_SOURCE", "5"),
        ("CROSSBAR_ARI_HEADER_TIMEOUT_MS", "60000"),
    ]);
    let before = metric(s.port, "crossbar_http_connections_refused_total");
    let mut held: Vec<TcpStream> = (0..5).map(|_| connect_from("127.0.0.2", s.port)).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut extra = connect_from("127.0.0.2", s.port);
    let (status, body) = read_response(&mut extra).expect("a 503 reply");
    assert_eq!(status, 503);
    assert!(
        body.contains("Too many connections from this address"),
        "{body}"
    );
    assert!(closed_within(&mut extra, Duration::from_secs(2)));
    // Other addresses are not affected, and the five still work.
    assert_eq!(get_from("127.0.0.1", s.port, "/ari/asterisk/ping").0, 200);
    assert_eq!(get_on(&mut held[4], "/ari/asterisk/ping").unwrap().0, 200);
    assert!(metric(s.port, "crossbar_http_connections_refused_total") > before);
    // One closed frees a place.
    drop(held.remove(0));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get_from("127.0.0.2", s.port, "/ari/asterisk/ping").0, 200);
    assert!(s
        .log_text()
        .contains("Too many connections from this address"));
}

#[test]
fn open_file_limit_is_raised_to_the_hard_limit() {
    // The server inherits a soft limit below the hard one (when the hard one
    // allows; restored right after the start).
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write only the local struct.
    let lowered = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_max > 1024 && {
            let low = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: lim.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &low) == 0
        }
    };
    let s = Server::start();
    if lowered {
        // SAFETY: as above; restores the test process's own limit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums[0], nums[1], "soft limit not raised: {line}");
}

#[test]
fn out_of_descriptors_the_node_makes_room_and_never_answers_500() {
    let s = Server::start_with(&[
        ("CROSSBAR_ARI_MAX_CONNECTIONS", "1000"),
        ("CROSSBAR_ARI_MAX_CONNECTIONS_PER_SOURCE", "1000"),
        ("CROSSBAR_ARI_HEADER_TIMEOUT_MS", "60000"),
    ]);
    let _ws = s.ws("fd");
    let used = std::fs::read_dir(format!("/proc/{}/fd", s.pid()))
        .unwrap()
        .count();
    let limit = used + 20;
    let ok = std::process::Command::new("prlimit")
        .args([
            format!("--pid={}", s.pid()),
            format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .is_ok_and(|st| st.success());
    if !ok {
        eprintln!("prlimit not available: skipped");
        return;
    }
    // Far more idle connections than descriptors: the kernel completes the
    // handshakes, the node's accept fails with EMFILE.
    let _idle: Vec<TcpStream> = (0..80).map(|_| connect_from("127.0.0.2", s.port)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (status, body) = get_from("127.0.0.1", s.port, "/ari/asterisk/ping");
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // A leg create (the shard needs sockets) is answered, 503 at worst.
    let mut c = connect_from("127.0.0.1", s.port);
    let req = format!(
        "POST /ari/channels/externalMedia?app=fd&external_host=127.0.0.1:40000&format=ulaw HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 0\r\n\r\n",
        basic(USER, PASS)
    );
    c.write_all(req.as_bytes()).unwrap();
    let (status, body) = read_response(&mut c).expect("an answer");
    eprintln!("leg create under exhaustion: {status} {body}");
    assert!(status == 200 || status == 503, "{status} {body}");
    assert!(metric(s.port, "crossbar_http_accept_fd_exhausted_total") > 0);
    let log = s.log_text();
    assert_eq!(
        log.matches("ARI cannot accept connections").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("500"), "{log}");
}
