//! The `churn` scenario: two-party calls started at `--rate` R per second
//! for `--duration` D (so at most ⌈R × D⌉ calls), each carrying media for
//! `--call-time` and then torn down: control-plane load with media.
//!
//! A call, on one of a pool of worker threads (each its own HTTP
//! connection): two externalMedia legs (PCMU), a mixing bridge, both legs
//! added — the setup latency, from the first request to the second join —
//! then 20 ms packets both ways for the call time, counted on arrival (a
//! call whose legs heard nothing is a media failure), then both legs hung up
//! and the bridge destroyed (the teardown latency). Any failed request makes
//! the call a failure (what it had created is still torn down). Calls wait
//! in a queue when every worker is busy; the queueing is reported apart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::net;
use crate::opts::MediaOptions;
use crate::server::{self, Session};
use crate::traffic::{new_histogram, wait, PTIME};

/// What one worker measured.
#[derive(Default)]
struct Tally {
    setup: Option<Histogram<u64>>,
    teardown: Option<Histogram<u64>>,
    queue: Option<Histogram<u64>>,
    completed: u64,
    failures: u64,
    media_failures: u64,
    media_sent: u64,
    media_received: u64,
    first_error: Option<String>,
}

/// The churn run's report.
pub struct ChurnReport {
    target: String,
    pid: Option<u32>,
    rate: f64,
    duration: Duration,
    call_time: Duration,
    workers: usize,
    attempted: u64,
    t: Tally,
    wall: Duration,
    server_cpu: Option<Duration>,
    tool_cpu: Duration,
    interrupted: bool,
}

pub fn run(o: &MediaOptions, progress: bool) -> Result<Vec<ChurnReport>, String> {
    let mut out = Vec::new();
    for (k, url) in o.urls().iter().enumerate() {
        let pid = server::server_pid(o, url, k == 0);
        out.push(churn_on(o, url, pid, progress)?);
        if crate::signal::interrupted() {
            break;
        }
    }
    Ok(out)
}

fn churn_on(
    o: &MediaOptions,
    url: &str,
    pid: Option<u32>,
    progress: bool,
) -> Result<ChurnReport, String> {
    let session = Session::open(url, o)?;
    let calls = (o.rate * o.duration.as_secs_f64()).ceil().max(1.0) as u64;
    // Enough workers for the calls in flight at the rate, with room for slow setups.
    let in_flight = o.rate * (o.call_time.as_secs_f64() + 0.2);
    let workers = ((in_flight * 1.5).ceil() as usize).clamp(1, 64);
    let (tx, rx) = mpsc::channel::<Instant>();
    let rx = Arc::new(Mutex::new(rx));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for w in 0..workers {
        let (rx, stop) = (rx.clone(), stop.clone());
        let mut s = session.sibling();
        let call_time = o.call_time;
        handles.push(
            std::thread::Builder::new()
                .name(format!("churn{w}"))
                .spawn(move || worker(&mut s, &rx, &stop, call_time))
                .map_err(|e| format!("cannot start a churn worker: {e}"))?,
        );
    }
    let mut probe = server::process_probe(pid, false);
    let cpu0 = probe()?;
    let tool0 = crate::procstat::self_cpu();
    let start = Instant::now();
    let mut attempted = 0;
    for k in 0..calls {
        let due = start + Duration::from_secs_f64(k as f64 / o.rate);
        if !wait(due, || {
            if progress {
                eprint!("\r\x1b[2Kchurn: {k}/{calls} calls started");
            }
        }) {
            break;
        }
        if tx.send(due).is_err() {
            break;
        }
        attempted += 1;
    }
    drop(tx);
    let mut t = Tally::default();
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(w) => merge(&mut t, w),
            Err(_) => errors.push("a churn worker panicked"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    let wall = start.elapsed();
    let cpu1 = probe()?;
    let tool_cpu = crate::procstat::self_cpu().saturating_sub(tool0);
    if progress {
        eprint!("\r\x1b[2K");
    }
    drop(session);
    if let Some(e) = errors.first() {
        return Err(e.to_string());
    }
    Ok(ChurnReport {
        target: url.to_string(),
        pid,
        rate: o.rate,
        duration: o.duration,
        call_time: o.call_time,
        workers,
        attempted,
        t,
        wall,
        server_cpu: match (cpu0, cpu1) {
            (Some(a), Some(b)) => Some(b.total.saturating_sub(a.total)),
            _ => None,
        },
        tool_cpu,
        interrupted: crate::signal::interrupted(),
    })
}

fn merge(into: &mut Tally, w: Tally) {
    for (a, b) in [
        (&mut into.setup, w.setup),
        (&mut into.teardown, w.teardown),
        (&mut into.queue, w.queue),
    ] {
        match (a.as_mut(), b) {
            (Some(x), Some(y)) => {
                let _ = x.add(&y);
            }
            (None, Some(y)) => *a = Some(y),
            _ => {}
        }
    }
    into.completed += w.completed;
    into.failures += w.failures;
    into.media_failures += w.media_failures;
    into.media_sent += w.media_sent;
    into.media_received += w.media_received;
    if into.first_error.is_none() {
        into.first_error = w.first_error;
    }
}

fn worker(
    s: &mut Session,
    rx: &Mutex<mpsc::Receiver<Instant>>,
    stop: &AtomicBool,
    call_time: Duration,
) -> Tally {
    let mut t = Tally {
        setup: new_histogram().ok(),
        teardown: new_histogram().ok(),
        queue: new_histogram().ok(),
        ..Tally::default()
    };
    loop {
        let due = match rx.lock() {
            Ok(r) => match r.recv_timeout(Duration::from_millis(50)) {
                Ok(d) => d,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            Err(_) => break,
        };
        if stop.load(Ordering::Relaxed) || crate::signal::interrupted() {
            break;
        }
        let began = Instant::now();
        if let Some(h) = t.queue.as_mut() {
            h.saturating_record(ns(began.saturating_duration_since(due)).max(1));
        }
        match one_call(s, call_time, &mut t) {
            Ok(()) => t.completed += 1,
            Err(e) => {
                t.failures += 1;
                t.first_error.get_or_insert(e);
            }
        }
        if let Err(e) = s.teardown() {
            t.first_error.get_or_insert(format!("teardown: {e}"));
        }
    }
    t
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn one_call(s: &mut Session, call_time: Duration, t: &mut Tally) -> Result<(), String> {
    let t0 = Instant::now();
    let mut sockets = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let socket = net::loopback_socket()?;
        let local = socket.local_addr().map_err(|e| format!("{e}"))?;
        let (id, remote) = s.external_media("ulaw", local)?;
        socket
            .connect(remote)
            .map_err(|e| format!("connect {remote}: {e}"))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("nonblocking: {e}"))?;
        sockets.push(socket);
        ids.push(id);
    }
    let bridge = s.bridge()?;
    for id in &ids {
        s.add(&bridge, id)?;
    }
    if let Some(h) = t.setup.as_mut() {
        h.saturating_record(ns(t0.elapsed()).max(1));
    }
    // Media both ways for the call time, on a fixed 20 ms schedule.
    let packets = (call_time.as_secs_f64() / PTIME.as_secs_f64()).ceil() as u32;
    let mut received = [0u64; 2];
    let mut buf = [0u8; 2048];
    let mut pkt = [0xffu8; 12 + 160];
    let start = Instant::now();
    for k in 0..packets {
        if !wait(start + PTIME * k, || {}) {
            break;
        }
        for (i, sock) in sockets.iter().enumerate() {
            pkt[0] = 0x80;
            pkt[1] = 0;
            pkt[2..4].copy_from_slice(&(k as u16).to_be_bytes());
            pkt[4..8].copy_from_slice(&(k * 160).to_be_bytes());
            pkt[8..12].copy_from_slice(&(0x2000_0000u32 + i as u32).to_be_bytes());
            if sock.send(&pkt).is_ok() {
                t.media_sent += 1;
            }
        }
        for (i, sock) in sockets.iter().enumerate() {
            while sock.recv(&mut buf).is_ok() {
                received[i] += 1;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(40));
    for (i, sock) in sockets.iter().enumerate() {
        while sock.recv(&mut buf).is_ok() {
            received[i] += 1;
        }
    }
    t.media_received += received[0] + received[1];
    if received.contains(&0) && packets > 0 {
        t.media_failures += 1;
    }
    let td = Instant::now();
    for id in &ids {
        s.hangup(id)?;
    }
    s.destroy(&bridge)?;
    if let Some(h) = t.teardown.as_mut() {
        h.saturating_record(ns(td.elapsed()).max(1));
    }
    Ok(())
}

fn q_ms(h: &Option<Histogram<u64>>, q: f64) -> Option<f64> {
    let h = h.as_ref().filter(|h| !h.is_empty())?;
    Some((h.value_at_quantile(q) as f64 / 1e3).round() / 1e3)
}

impl ChurnReport {
    pub fn to_json(&self) -> String {
        let t = &self.t;
        json!({
            "scenario": "churn",
            "target": self.target,
            "params": {"rate": self.rate, "duration_s": self.duration.as_secs_f64(),
                       "call_time_ms": self.call_time.as_millis() as u64, "pid": self.pid,
                       "workers": self.workers},
            "calls_attempted": self.attempted,
            "calls_completed": t.completed,
            "failures": t.failures,
            "media_failures": t.media_failures,
            "media_sent": t.media_sent,
            "media_received": t.media_received,
            "setup_p50_ms": q_ms(&t.setup, 0.5),
            "setup_p99_ms": q_ms(&t.setup, 0.99),
            "setup_max_ms": q_ms(&t.setup, 1.0),
            "teardown_p50_ms": q_ms(&t.teardown, 0.5),
            "teardown_p99_ms": q_ms(&t.teardown, 0.99),
            "queue_p99_ms": q_ms(&t.queue, 0.99),
            "wall_s": (self.wall.as_secs_f64() * 1000.0).round() / 1000.0,
            "server_cpu_ms": self.server_cpu.map(|c| (c.as_secs_f64() * 1e6).round() / 1e3),
            "server_us_per_call": self.server_cpu.filter(|_| t.completed > 0)
                .map(|c| (c.as_secs_f64() * 1e6 / t.completed as f64).round()),
            "tool_cpu_ms": (self.tool_cpu.as_secs_f64() * 1e6).round() / 1e3,
            "first_error": t.first_error,
            "interrupted": self.interrupted,
        })
        .to_string()
    }

    pub fn to_table(&self) -> String {
        let t = &self.t;
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2} ms"));
        let mut s = format!(
            "churn against {} (rate {}/s for {:.1} s, {} ms of media per call, {} workers)\n",
            self.target,
            self.rate,
            self.duration.as_secs_f64(),
            self.call_time.as_millis(),
            self.workers
        );
        s += &format!(
            "  calls {} attempted, {} completed, {} failed, {} without media | media packets sent {} received {}\n",
            self.attempted, t.completed, t.failures, t.media_failures, t.media_sent, t.media_received
        );
        s += &format!(
            "  setup p50 {} p99 {} max {} | teardown p50 {} p99 {} | queueing p99 {}\n",
            f(q_ms(&t.setup, 0.5)),
            f(q_ms(&t.setup, 0.99)),
            f(q_ms(&t.setup, 1.0)),
            f(q_ms(&t.teardown, 0.5)),
            f(q_ms(&t.teardown, 0.99)),
            f(q_ms(&t.queue, 0.99)),
        );
        if let Some(c) = self.server_cpu {
            s += &format!(
                "  server CPU {:.0} ms over {:.1} s ({:.1} % of a core)\n",
                c.as_secs_f64() * 1e3,
                self.wall.as_secs_f64(),
                c.as_secs_f64() / self.wall.as_secs_f64().max(1e-9) * 100.0
            );
        }
        if let Some(e) = &t.first_error {
            s += &format!("  first error: {e}\n");
        }
        s
    }
}
