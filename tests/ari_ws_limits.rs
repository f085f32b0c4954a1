//! The events WebSockets' limits against the real binary: sockets beyond
//! `ari.max_event_sockets` refused with 503 and counted; a `subscribeAll`
//! client that stops reading closed with 1008 once its queue holds
//! `ari.ws_queue_bytes`, while a reading client keeps its events; the
//! counter moved, the queued bytes returned to zero and the node's resident
//! size stayed within a stated bound of its idle level.
//!
//! Every loop is bounded in count and every wait in time; nothing asserts
//! on wall-clock durations.

mod common;

use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, Ws, PASS, USER};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// A TCP connection to 127.0.0.1:`port` whose receive buffer is `rcvbuf`
/// bytes (set before connecting, so the window stays small): a client that
/// stops reading then holds little in the kernel and the node's queue grows.
fn connect_small(port: u16, rcvbuf: libc::c_int) -> TcpStream {
    // SAFETY: plain socket calls on a descriptor this function owns; it is
    // handed to TcpStream (which closes it) or closed on failure.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let set = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const libc::c_int).cast(),
            len,
        );
        let remote = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let alen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if set != 0 || libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), alen) != 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            panic!("connect: {e}");
        }
        TcpStream::from_raw_fd(fd)
    }
}

/// The WebSocket handshake on `stream`: the socket, or the HTTP status and
/// body of a refusal.
fn handshake(
    stream: TcpStream,
    port: u16,
    query: &str,
) -> Result<WebSocket<MaybeTlsStream<TcpStream>>, (u16, String)> {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(common::WAIT))
        .expect("write timeout");
    let url = format!("ws://127.0.0.1:{port}/ari/events?api_key={USER}:{PASS}&{query}");
    let deadline = Instant::now() + common::WAIT;
    let mut pending = match tungstenite::client(url.as_str(), MaybeTlsStream::Plain(stream)) {
        Ok((ws, _)) => return Ok(ws),
        Err(tungstenite::HandshakeError::Interrupted(mid)) => mid,
        Err(tungstenite::HandshakeError::Failure(e)) => return Err(refusal(e)),
    };
    loop {
        assert!(Instant::now() < deadline, "WebSocket handshake timed out");
        match pending.handshake() {
            Ok((ws, _)) => return Ok(ws),
            Err(tungstenite::HandshakeError::Interrupted(mid)) => pending = mid,
            Err(tungstenite::HandshakeError::Failure(e)) => return Err(refusal(e)),
        }
    }
}

fn refusal(e: tungstenite::Error) -> (u16, String) {
    match e {
        tungstenite::Error::Http(resp) => (
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        other => panic!("WebSocket handshake failed: {other}"),
    }
}

/// `VmRSS` or `VmHWM` of a process, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing"))
}

/// Polls `cond` every 20 ms for at most `within`.
fn wait_for(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn event_sockets_beyond_the_limit_are_refused_with_503() {
    let s = Server::start_with_config("[ari]\nmax_event_sockets = 4\n");
    let mut open: Vec<Ws> = (0..4).map(|i| s.ws(&format!("app{i}"))).collect();
    for i in 0..3 {
        let stream = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
        let (status, body) = handshake(stream, s.port, &format!("app=over{i}"))
            .expect_err("a fifth events WebSocket is refused");
        assert_eq!(status, 503, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(json["message"], "Too many event WebSockets");
    }
    assert_eq!(s.metric("crossbar_ws_refused_total"), 3);
    assert_eq!(s.metric("crossbar_ws_open"), 4);
    assert_eq!(
        s.get("/ari/applications/over0").status,
        404,
        "a refused socket registers nothing"
    );
    // Plain requests are not affected, and a place freed is taken again.
    assert_eq!(s.get("/ari/asterisk/ping").ok()["ping"], "pong");
    let mut gone = open.pop().expect("a socket");
    gone.socket.close(None).expect("close");
    let _ = gone.socket.flush();
    drop(gone);
    assert!(
        wait_for(common::WAIT, || s.metric("crossbar_ws_open") == 3),
        "the closed socket's place is given back"
    );
    open.push(s.ws("again"));
    assert_eq!(s.metric("crossbar_ws_refused_total"), 3);
    assert!(s.log_text().contains("events WebSocket refused with 503"));
}

/// Reads `ws` on a thread until `stop`, recording the ids of the bridges
/// created that it saw; panics on a close.
fn reader(
    mut ws: Ws,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Some(e) = ws.next_within(Duration::from_millis(50)) {
                if e["type"] == "BridgeCreated" {
                    let id = e["bridge"]["id"].as_str().unwrap_or("").to_string();
                    seen.lock().unwrap().push(id);
                }
            }
        }
    })
}

#[test]
fn a_client_that_stops_reading_is_closed_with_1008_and_memory_returns() {
    const QUEUE: u64 = 1 << 20;
    let s = Server::start_with_config(&format!(
        "[ari]\nws_queue_bytes = {QUEUE}\nws_queue_total_bytes = {}\n",
        8 * QUEUE
    ));
    let blob = "x".repeat(16 * 1024);
    let big_event = format!("{{\"variables\":{{\"blob\":\"{blob}\"}}}}");
    // Warm up (allocator pools, the first bridges and user events), then
    // take the idle level with a reading client open.
    let warm = s.ws("warm");
    for _ in 0..20 {
        let id = s.bridge("");
        s.delete(&format!("/ari/bridges/{id}")).no_content();
        s.post_json("/ari/events/user/warm?application=warm", &big_event)
            .no_content();
    }
    drop(warm);
    let fast = s.ws_all("fast");
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fast_thread = reader(fast, stop.clone(), seen.clone());
    std::thread::sleep(Duration::from_millis(200));
    let idle_kib = status_kib(s.pid(), "VmRSS");

    let stream = connect_small(s.port, 4096);
    let mut slow = handshake(stream, s.port, "app=slow&subscribeAll=true").expect("slow socket");
    s.wait_app("slow");
    // The slow client reads nothing from here on. Bounded: 1 MiB fills in
    // ~70 rounds of 16 KiB; 1000 rounds is the cap.
    let mut rounds = 0;
    let mut closed = false;
    while rounds < 1000 {
        rounds += 1;
        let id = s.bridge("");
        s.delete(&format!("/ari/bridges/{id}")).no_content();
        // 404 once the node has closed the slow client (its application
        // is gone).
        let sent = s.post_json("/ari/events/user/big?application=slow", &big_event);
        if sent.status == 404 || rounds % 5 == 0 {
            closed = s.metric("crossbar_ws_slow_closed_total") == 1;
            if closed {
                break;
            }
        }
        sent.no_content();
    }
    assert!(closed, "the slow client was not closed in {rounds} rounds");
    let peak_kib = status_kib(s.pid(), "VmHWM");
    // Its applications are released at once.
    assert_eq!(s.get("/ari/applications/slow").status, 404);

    // Reading again: what the kernel held, then a close frame with 1008.
    let deadline = Instant::now() + common::WAIT;
    let mut close_code = None;
    for _ in 0..100_000 {
        if Instant::now() >= deadline {
            break;
        }
        match slow.read() {
            Ok(Message::Close(frame)) => {
                close_code = Some(frame.map(|f| u16::from(f.code)));
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("slow socket ended without a close frame: {e}"),
        }
    }
    assert_eq!(
        close_code,
        Some(Some(1008)),
        "close frame of the slow client"
    );
    assert!(s
        .log_text()
        .contains("the client is not reading its events"));

    // The reading client kept its events, and still gets them.
    let after = s.bridge("");
    assert!(
        wait_for(common::WAIT, || seen.lock().unwrap().contains(&after)),
        "the reading client stopped receiving"
    );
    assert!(seen.lock().unwrap().len() as u64 >= rounds, "missed events");
    stop.store(true, Ordering::Relaxed);
    fast_thread.join().expect("reader thread");

    // Memory: nothing stays queued, and the resident size is back near the
    // idle level. Bounds: the peak within 8 MiB of idle (a 1 MiB queue, the
    // requests' buffers and the allocator's slack; ~1 MiB measured), and
    // afterwards within 2 MiB of idle (the slow client's queue gone; ~0.2
    // MiB measured).
    assert!(
        wait_for(common::WAIT, || s.metric("crossbar_ws_queued_bytes")
            < 64 * 1024),
        "queued bytes did not return"
    );
    let after_kib = status_kib(s.pid(), "VmRSS");
    eprintln!(
        "RSS idle {idle_kib} KiB, peak {peak_kib} KiB, after {after_kib} KiB, rounds {rounds}"
    );
    assert!(
        peak_kib <= idle_kib + 8 * 1024,
        "peak {peak_kib} KiB, idle {idle_kib} KiB"
    );
    assert!(
        after_kib <= idle_kib + 2 * 1024,
        "after {after_kib} KiB, idle {idle_kib} KiB"
    );
    assert!(s.metric("crossbar_events_dropped_total") >= 1);
}

#[test]
fn at_the_total_bound_the_client_holding_the_most_is_closed() {
    const QUEUE: u64 = 1 << 20;
    let s = Server::start_with_config(&format!(
        "[ari]\nws_queue_bytes = {QUEUE}\nws_queue_total_bytes = {}\n",
        QUEUE + QUEUE / 4
    ));
    let blob = "x".repeat(16 * 1024);
    let big_event = format!("{{\"variables\":{{\"blob\":\"{blob}\"}}}}");
    let mut first = handshake(connect_small(s.port, 4096), s.port, "app=first").expect("first");
    let second = handshake(connect_small(s.port, 4096), s.port, "app=second").expect("second");
    s.wait_app("first");
    s.wait_app("second");
    // Neither reads. The first's queue grows to ~700 KiB (after what the
    // kernel takes), below its own bound of 1 MiB.
    let mut filled = false;
    for _ in 0..1000 {
        s.post_json("/ari/events/user/big?application=first", &big_event)
            .no_content();
        if s.metric("crossbar_ws_queued_bytes") >= 700 * 1024 {
            filled = true;
            break;
        }
    }
    assert!(filled, "the first queue never grew");
    // Then the second's, until the total (1.25 MiB) is reached: the first,
    // holding the most, is closed; the second, holding less, stays.
    let mut closed = false;
    for _ in 0..1000 {
        let sent = s.post_json("/ari/events/user/big?application=second", &big_event);
        sent.no_content();
        if s.metric("crossbar_ws_slow_closed_total") == 1 {
            closed = true;
            break;
        }
    }
    assert!(closed, "nobody was closed at the total");
    assert_eq!(s.get("/ari/applications/first").status, 404);
    assert_eq!(s.get("/ari/applications/second").status, 200);
    assert!(s.log_text().contains("reached ari.ws_queue_total_bytes"));
    assert!(s.metric("crossbar_ws_queued_bytes") < QUEUE + QUEUE / 4);
    // The first gets its 1008 once it reads again.
    let deadline = Instant::now() + common::WAIT;
    let mut code = None;
    for _ in 0..100_000 {
        if Instant::now() >= deadline {
            break;
        }
        match first.read() {
            Ok(Message::Close(frame)) => {
                code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("first socket ended without a close frame: {e}"),
        }
    }
    assert_eq!(code, Some(1008));
    drop(second);
}
