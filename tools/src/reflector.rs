//! The `reflector` scenario and the baseline of `relay` and `mix`: a classic
//! reflector run inside the tool — one thread, epoll, `recvmmsg` from a leg's
//! socket and `sendmmsg` of the same datagrams, unchanged, from its partner
//! leg's socket to the partner's client. Its CPU is the thread's own
//! CPU-time clock, so the traffic threads of the tool do not count.
//!
//! This is what forwarding costs with ordinary batched syscalls: the kernel's
//! UDP receive + send per packet and nothing else. `crossbar / reflector`
//! per packet says how close to that limit a server is.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::net::{self, Batch, Epoll};
use crate::opts::MediaOptions;
use crate::procstat::ThreadClock;
use crate::report::RunReport;
use crate::traffic::{self, CpuSample, LegPlan, Timing};

/// A running reflector.
pub struct Reflector {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
    clock: ThreadClock,
    /// Where the reflector receives each leg (index = leg).
    pub addrs: Vec<SocketAddr>,
    pub forwarded: Arc<AtomicU64>,
}

impl Reflector {
    /// Starts a reflector for legs whose clients are at `clients`; leg `i`'s
    /// partner is `i ^ 1` (legs come in pairs).
    pub fn start(clients: &[SocketAddr]) -> Result<Reflector, String> {
        let mut sockets = Vec::with_capacity(clients.len());
        for c in clients {
            let s = net::loopback_socket()?;
            s.connect(c)
                .map_err(|e| format!("reflector: connect {c}: {e}"))?;
            sockets.push(s);
        }
        let addrs = sockets
            .iter()
            .map(|s| s.local_addr().map_err(|e| format!("reflector: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (stop2, fwd2) = (stop.clone(), forwarded.clone());
        let thread = std::thread::Builder::new()
            .name("reflector".into())
            .spawn(move || reflect(&sockets, &stop2, &fwd2))
            .map_err(|e| format!("cannot start the reflector thread: {e}"))?;
        let clock = ThreadClock::of(thread.as_pthread_t())?;
        Ok(Reflector {
            stop,
            thread: Some(thread),
            clock,
            addrs,
            forwarded,
        })
    }

    /// Samples the reflector thread's CPU time.
    pub fn probe(&self) -> impl FnMut() -> Result<Option<CpuSample>, String> {
        let clock = self.clock;
        move || {
            Ok(Some(CpuSample {
                total: clock.now()?,
                threads: None,
            }))
        }
    }

    pub fn stop(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the reflector thread panicked".into()),
            None => Ok(()),
        }
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reflect(
    sockets: &[std::net::UdpSocket],
    stop: &AtomicBool,
    forwarded: &AtomicU64,
) -> Result<(), String> {
    let mut epoll = Epoll::new(1024)?;
    for (i, s) in sockets.iter().enumerate() {
        epoll.add(s.as_raw_fd(), i as u64)?;
    }
    let mut batch = Batch::new(32);
    let mut ready = Vec::with_capacity(1024);
    while !stop.load(Ordering::Relaxed) {
        ready.clear();
        ready.extend(epoll.wait(20));
        for &i in &ready {
            let i = i as usize;
            let n = batch
                .recv(sockets[i].as_raw_fd())
                .map_err(|e| format!("reflector receive: {e}"))?;
            if n > 0 {
                let sent = batch.send(sockets[i ^ 1].as_raw_fd(), n);
                forwarded.fetch_add(sent as u64, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

/// Client sockets for `calls` two-party calls sending stamped µ-law frames.
pub fn client_legs(calls: usize) -> Result<Vec<LegPlan>, String> {
    let frames = std::sync::Arc::new(crate::audio::tone(
        crossbar::media::Format::Ulaw,
        crate::audio::TALK_HZ,
        3000.0,
        50,
    )?);
    (0..2 * calls)
        .map(|i| {
            Ok(LegPlan {
                socket: net::loopback_socket()?,
                pt: 0,
                ts_step: 160,
                frames: frames.clone(),
                stamp: true,
                peer: Some(i ^ 1),
                latency: traffic::Latency::Stamp,
                marker: None,
                hears: None,
            })
        })
        .collect()
}

/// Runs `calls` two-party calls through the in-process reflector.
pub fn run_baseline(o: &MediaOptions, calls: usize, progress: bool) -> Result<RunReport, String> {
    let legs = client_legs(calls)?;
    let clients = legs
        .iter()
        .map(|l| l.socket.local_addr().map_err(|e| format!("{e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let reflector = Reflector::start(&clients)?;
    for (leg, addr) in legs.iter().zip(&reflector.addrs) {
        leg.socket
            .connect(addr)
            .map_err(|e| format!("connect {addr}: {e}"))?;
    }
    let timing = timing(o);
    let mut probe = reflector.probe();
    let m = traffic::run(legs, timing, "reflector", progress, &mut probe);
    drop(probe);
    let forwarded = reflector.forwarded.load(Ordering::Relaxed);
    reflector.stop()?;
    let mut m = m?;
    // The reflector thread runs in this process: the tool's own CPU is the rest.
    if let Some(c) = &m.server_cpu {
        m.tool_cpu = m.tool_cpu.saturating_sub(c.total);
    }
    let mut r = RunReport::new("reflector", "reflector (in-process)", m);
    r.param("calls", calls);
    r.extra("reflector_forwarded_total", forwarded);
    Ok(r)
}

pub fn timing(o: &MediaOptions) -> Timing {
    Timing {
        warmup: o.warmup,
        duration: o.duration,
        senders: o.senders,
        receivers: o.receivers,
    }
}
