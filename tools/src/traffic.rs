//! The traffic engine: paced RTP out of every leg's socket, everything that
//! comes back received and measured, and one measured window.
//!
//! - Senders: `--senders` threads share the legs. Leg `i` of `n` sends its
//!   `k`-th packet at `start + k × 20 ms + i × 20 ms / n` — a fixed schedule,
//!   so sends are spread evenly and sleep overshoot never accumulates.
//! - Receivers: `--receivers` threads, each an epoll over its legs' sockets,
//!   draining them with `recvmmsg`. Per leg: packets, loss, reordering
//!   (sequence going backwards), duplicates, latency.
//! - Latency, by leg: `Stamp` reads the send time (monotonic ns) the sender
//!   wrote into the first 8 payload bytes (relays forward payloads byte for
//!   byte); `SeqIndex` takes the `i`-th packet of the server's outgoing stream
//!   to be the peer's `i`-th (transcoding: one packet out per packet in);
//!   `Marker` finds the onset of the mix's 1 kHz burst.
//! - The window: after `--warmup`, counters and the CPU probe are sampled,
//!   again after `--duration`; latencies are recorded only inside it. Then
//!   the senders stop and the receivers drain for a moment.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::audio::{MarkerDetector, FRAME_8K};
use crate::net::{self, Batch, Epoll};
use crate::signal;

/// Packet interval.
pub const PTIME: Duration = Duration::from_millis(20);
const HEADER: usize = 12;
/// Send times kept per leg for `SeqIndex` latency.
const RING: usize = 4096;
/// Mix marker: one burst every this many packets, lasting `BURST_LEN`.
pub const BURST_EVERY: u64 = 10;
pub const BURST_LEN: u64 = 3;

/// Payloads a sender cycles through (one per 20 ms packet).
pub type Frames = Arc<Vec<Vec<u8>>>;

/// How a leg's latency is measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    None,
    Stamp,
    SeqIndex,
    /// Decode µ-law and look for the marker burst sent by the bridge's marker leg.
    Marker,
}

/// The marker leg of a mixing bridge: its burst send times (ns).
#[derive(Default)]
pub struct MarkerLog {
    pub bursts: Mutex<Vec<u64>>,
}

/// One leg as the tool sees it.
pub struct LegPlan {
    /// Bound on loopback, connected to where the server receives this leg.
    pub socket: UdpSocket,
    pub pt: u8,
    /// RTP timestamp increment per packet.
    pub ts_step: u32,
    /// Payloads cycled by the sender (empty: the leg does not send).
    pub frames: Frames,
    /// Write the send time into the payload's first 8 bytes.
    pub stamp: bool,
    /// The leg whose packets this one receives (relays and transcodes).
    pub peer: Option<usize>,
    pub latency: Latency,
    /// This leg sends the marker bursts (`burst` frames) and logs them here.
    pub marker: Option<(Arc<MarkerLog>, Frames)>,
    /// For `Latency::Marker`: where the bursts this leg should hear are logged.
    pub hears: Option<Arc<MarkerLog>>,
}

struct Shared {
    sent: AtomicU64,
    received: AtomicU64,
    send_errors: AtomicU64,
    ring: Vec<AtomicU64>,
}

/// What a CPU probe reads: total CPU of what is measured, and by thread name.
#[derive(Clone, Debug, Default)]
pub struct CpuSample {
    pub total: Duration,
    pub threads: Option<BTreeMap<String, Duration>>,
}

/// Timing of a run.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub warmup: Duration,
    pub duration: Duration,
    pub senders: usize,
    pub receivers: usize,
}

/// What one run measured.
#[derive(Debug)]
pub struct Measured {
    pub legs: usize,
    pub sending_legs: usize,
    pub sent_total: u64,
    pub received_total: u64,
    pub sent_window: u64,
    pub received_window: u64,
    /// Relays: packets the peer sent that never arrived; mixes: sequence gaps.
    pub lost: u64,
    pub reordered: u64,
    pub duplicates: u64,
    pub send_errors: u64,
    /// Lowest packets received in the window by one leg ÷ 50 × window.
    pub min_leg_ratio: f64,
    pub latency: Histogram<u64>,
    pub window: Duration,
    pub server_cpu: Option<CpuSample>,
    pub tool_cpu: Duration,
    pub interrupted: bool,
}

impl Measured {
    /// Server CPU in µs per packet received back in the window.
    pub fn us_per_packet(&self) -> Option<f64> {
        let cpu = self.server_cpu.as_ref()?;
        (self.received_window > 0)
            .then(|| cpu.total.as_secs_f64() * 1e6 / self.received_window as f64)
    }
}

/// Runs the traffic; `probe` samples the server's CPU at the window's edges.
pub fn run(
    legs: Vec<LegPlan>,
    timing: Timing,
    label: &str,
    progress: bool,
    probe: &mut dyn FnMut() -> Result<Option<CpuSample>, String>,
) -> Result<Measured, String> {
    let n = legs.len();
    let shared: Arc<Vec<Shared>> = Arc::new(
        (0..n)
            .map(|i| Shared {
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                send_errors: AtomicU64::new(0),
                ring: if legs
                    .iter()
                    .any(|l| l.peer == Some(i) && l.latency == Latency::SeqIndex)
                {
                    (0..RING).map(|_| AtomicU64::new(0)).collect()
                } else {
                    Vec::new()
                },
            })
            .collect(),
    );
    let legs: Arc<Vec<LegPlan>> = Arc::new(legs);
    let stop_send = Arc::new(AtomicBool::new(false));
    let stop_recv = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let sending: Vec<usize> = (0..n).filter(|&i| !legs[i].frames.is_empty()).collect();
    let start = Instant::now() + Duration::from_millis(20);

    let mut receivers = Vec::new();
    let per_rx = n.div_ceil(timing.receivers.max(1)).max(1);
    for (t, chunk) in (0..n).collect::<Vec<_>>().chunks(per_rx).enumerate() {
        let mine = chunk.to_vec();
        let (legs, shared, stop, measuring) = (
            legs.clone(),
            shared.clone(),
            stop_recv.clone(),
            measuring.clone(),
        );
        receivers.push(
            std::thread::Builder::new()
                .name(format!("rx{t}"))
                .spawn(move || receive(&legs, &shared, &mine, &stop, &measuring))
                .map_err(|e| format!("cannot start a receiver thread: {e}"))?,
        );
    }
    let mut senders = Vec::new();
    let threads = timing.senders.max(1).min(sending.len().max(1));
    for t in 0..threads {
        let mine: Vec<(usize, Duration)> = sending
            .iter()
            .enumerate()
            .filter(|(pos, _)| pos % threads == t)
            .map(|(pos, &i)| (i, PTIME * pos as u32 / sending.len().max(1) as u32))
            .collect();
        let (legs, shared, stop) = (legs.clone(), shared.clone(), stop_send.clone());
        senders.push(
            std::thread::Builder::new()
                .name(format!("tx{t}"))
                .spawn(move || send(&legs, &shared, &mine, start, &stop))
                .map_err(|e| format!("cannot start a sender thread: {e}"))?,
        );
    }

    let totals = |shared: &[Shared]| -> (u64, u64) {
        shared.iter().fold((0, 0), |(s, r), x| {
            (
                s + x.sent.load(Ordering::Relaxed),
                r + x.received.load(Ordering::Relaxed),
            )
        })
    };
    let show = |phase: &str, t0: Instant, total: Duration| {
        if progress {
            let (s, r) = totals(&shared);
            eprint!(
                "\r\x1b[2K{label}: {phase} {:.1}/{:.1} s, sent {s}, received {r}",
                t0.elapsed().as_secs_f64(),
                total.as_secs_f64()
            );
        }
    };
    let t0 = Instant::now();
    let total = timing.warmup + timing.duration;
    let mut result = Ok(());
    let mut interrupted = !wait(start + timing.warmup, || show("warm-up", t0, total));
    let before = probe();
    let tool_before = crate::procstat::self_cpu();
    let (sent0, recv0) = totals(&shared);
    let per_leg0: Vec<u64> = shared
        .iter()
        .map(|s| s.received.load(Ordering::Relaxed))
        .collect();
    let w0 = Instant::now();
    measuring.store(true, Ordering::SeqCst);
    if !interrupted {
        interrupted = !wait(w0 + timing.duration, || show("measuring", t0, total));
    }
    measuring.store(false, Ordering::SeqCst);
    let window = w0.elapsed();
    let after = probe();
    let tool_cpu = crate::procstat::self_cpu().saturating_sub(tool_before);
    let (sent1, recv1) = totals(&shared);
    let per_leg1: Vec<u64> = shared
        .iter()
        .map(|s| s.received.load(Ordering::Relaxed))
        .collect();
    stop_send.store(true, Ordering::SeqCst);
    for s in senders {
        let _ = s.join();
    }
    // Let what is in flight arrive.
    std::thread::sleep(Duration::from_millis(300));
    stop_recv.store(true, Ordering::SeqCst);
    let mut latency = new_histogram()?;
    let mut rx_stats = Vec::new();
    for r in receivers {
        match r.join() {
            Ok(Ok((h, stats))) => {
                let _ = latency.add(&h);
                rx_stats.extend(stats);
            }
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err("a receiver thread panicked".to_string()),
        }
    }
    if progress {
        eprint!("\r\x1b[2K");
    }
    result?;
    let server_cpu = match (before?, after?) {
        (Some(b), Some(a)) => Some(CpuSample {
            total: a.total.saturating_sub(b.total),
            threads: match (b.threads, a.threads) {
                (Some(bt), Some(at)) => Some(
                    at.into_iter()
                        .map(|(k, v)| {
                            let d = v.saturating_sub(bt.get(&k).copied().unwrap_or_default());
                            (k, d)
                        })
                        .collect(),
                ),
                _ => None,
            },
        }),
        _ => None,
    };

    let mut lost = 0;
    let (mut reordered, mut duplicates) = (0, 0);
    for (i, st) in &rx_stats {
        reordered += st.reordered;
        duplicates += st.duplicates;
        lost += match legs[*i].peer {
            Some(p) => shared[p]
                .sent
                .load(Ordering::Relaxed)
                .saturating_sub(shared[*i].received.load(Ordering::Relaxed)),
            None => st.gaps(),
        };
    }
    let expected = window.as_secs_f64() / PTIME.as_secs_f64();
    let min_leg_ratio = per_leg0
        .iter()
        .zip(&per_leg1)
        .map(|(a, b)| (b - a) as f64 / expected)
        .fold(f64::INFINITY, f64::min);
    Ok(Measured {
        legs: n,
        sending_legs: sending.len(),
        sent_total: totals(&shared).0,
        received_total: totals(&shared).1,
        sent_window: sent1 - sent0,
        received_window: recv1 - recv0,
        lost,
        reordered,
        duplicates,
        send_errors: shared
            .iter()
            .map(|s| s.send_errors.load(Ordering::Relaxed))
            .sum(),
        min_leg_ratio: if min_leg_ratio.is_finite() {
            min_leg_ratio
        } else {
            0.0
        },
        latency,
        window,
        server_cpu,
        tool_cpu,
        interrupted: interrupted || signal::interrupted(),
    })
}

/// Sleeps until `until` in short steps, calling `tick` about every second;
/// false if Ctrl-C interrupted the wait.
pub fn wait(until: Instant, mut tick: impl FnMut()) -> bool {
    let mut last = Instant::now();
    loop {
        if signal::interrupted() {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        if now.duration_since(last) >= Duration::from_secs(1) {
            tick();
            last = now;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

pub fn new_histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).map_err(|e| format!("histogram: {e}"))
}

fn send(
    legs: &[LegPlan],
    shared: &[Shared],
    mine: &[(usize, Duration)],
    start: Instant,
    stop: &AtomicBool,
) {
    let mut buf = [0u8; crate::net::SLOT];
    for k in 0u64.. {
        let period = start + PTIME * k as u32;
        for &(i, offset) in mine {
            if stop.load(Ordering::Relaxed) || signal::interrupted() {
                return;
            }
            let due = period + offset;
            let now = Instant::now();
            if due > now + Duration::from_micros(100) {
                std::thread::sleep(due - now);
            }
            let leg = &legs[i];
            let mut frame = &leg.frames[(k % leg.frames.len() as u64) as usize];
            let mut burst_start = false;
            if let Some((_, bursts)) = &leg.marker {
                let phase = k % BURST_EVERY;
                if phase < BURST_LEN && k >= BURST_EVERY {
                    frame = &bursts[phase as usize % bursts.len()];
                    burst_start = phase == 0;
                }
            }
            let len = HEADER + frame.len();
            if len > buf.len() {
                continue;
            }
            buf[0] = 0x80;
            buf[1] = leg.pt & 0x7f;
            buf[2..4].copy_from_slice(&(k as u16).to_be_bytes());
            buf[4..8].copy_from_slice(&(k as u32).wrapping_mul(leg.ts_step).to_be_bytes());
            buf[8..12].copy_from_slice(&(0x1000_0000u32 + i as u32).to_be_bytes());
            buf[HEADER..len].copy_from_slice(frame);
            let t = net::now_ns();
            if leg.stamp && frame.len() >= 8 {
                buf[HEADER..HEADER + 8].copy_from_slice(&t.to_be_bytes());
            }
            let st = &shared[i];
            if !st.ring.is_empty() {
                st.ring[(k as usize) % RING].store(t, Ordering::Relaxed);
            }
            match leg.socket.send(&buf[..len]) {
                Ok(_) => {
                    st.sent.fetch_add(1, Ordering::Relaxed);
                    if burst_start {
                        if let Some((log, _)) = &leg.marker {
                            if let Ok(mut b) = log.bursts.lock() {
                                b.push(t);
                            }
                        }
                    }
                }
                Err(_) => {
                    st.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Per-leg receive state (owned by one receiver thread).
#[derive(Default)]
pub struct RxLeg {
    first: Option<u64>,
    max: u64,
    received: u64,
    pub reordered: u64,
    pub duplicates: u64,
    detector: Option<Box<MarkerDetector>>,
    matched_bursts: usize,
}

impl RxLeg {
    /// Extends a 16-bit sequence number around the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let delta = i64::from(seq.wrapping_sub(self.max as u16) as i16);
        (self.max as i64 + delta).max(0) as u64
    }

    /// Sequence numbers missing between the first and highest seen.
    pub fn gaps(&self) -> u64 {
        match self.first {
            Some(f) => (self.max - f + 1).saturating_sub(self.received - self.duplicates),
            None => 0,
        }
    }
}

type RxResult = Result<(Histogram<u64>, Vec<(usize, RxLeg)>), String>;

fn receive(
    legs: &[LegPlan],
    shared: &[Shared],
    mine: &[usize],
    stop: &AtomicBool,
    measuring: &AtomicBool,
) -> RxResult {
    let mut hist = new_histogram()?;
    let mut epoll = Epoll::new(256)?;
    for (slot, &i) in mine.iter().enumerate() {
        epoll.add(legs[i].socket.as_raw_fd(), slot as u64)?;
    }
    let mut state: Vec<RxLeg> = mine.iter().map(|_| RxLeg::default()).collect();
    let mut batch = Batch::new(32);
    let mut ready = Vec::with_capacity(256);
    let mut pcm = [0i16; FRAME_8K];
    // A few seen-sequence bits per leg to tell duplicates from reordering.
    let mut seen: Vec<[u64; 4]> = vec![[0; 4]; mine.len()];
    while !stop.load(Ordering::Relaxed) {
        ready.clear();
        ready.extend(epoll.wait(20));
        for &slot in &ready {
            let slot = slot as usize;
            let i = mine[slot];
            let leg = &legs[i];
            let n = batch
                .recv(leg.socket.as_raw_fd())
                .map_err(|e| format!("receive: {e}"))?;
            if n == 0 {
                continue;
            }
            let now = net::now_ns();
            let on = measuring.load(Ordering::Relaxed);
            let st = &mut state[slot];
            for p in 0..n {
                let pkt = batch.packet(p);
                if pkt.len() < HEADER || pkt[0] >> 6 != 2 {
                    continue;
                }
                let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
                let first = st.first.is_none();
                let ext = if first {
                    st.first = Some(u64::from(seq) + 65_536);
                    st.max = u64::from(seq) + 65_536;
                    st.max
                } else {
                    st.extend(seq)
                };
                let bits = &mut seen[slot];
                let bit = (ext % 256) as usize;
                if first {
                    // The first packet: nothing to compare it with yet.
                } else if ext > st.max {
                    // Clear the bits of the sequence numbers skipped over.
                    for s in (st.max + 1)..=ext.min(st.max + 256) {
                        let b = (s % 256) as usize;
                        bits[b / 64] &= !(1 << (b % 64));
                    }
                    st.max = ext;
                } else if st.max - ext < 256 && bits[bit / 64] & (1 << (bit % 64)) != 0 {
                    st.duplicates += 1;
                } else {
                    st.reordered += 1;
                }
                bits[bit / 64] |= 1 << (bit % 64);
                st.received += 1;
                shared[i].received.fetch_add(1, Ordering::Relaxed);
                let cc = usize::from(pkt[0] & 0x0f);
                let payload = &pkt[(HEADER + 4 * cc).min(pkt.len())..];
                match leg.latency {
                    Latency::None => {}
                    Latency::Stamp => {
                        if on && payload.len() >= 8 {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(&payload[..8]);
                            let sent = u64::from_be_bytes(b);
                            if sent <= now && now - sent < 60_000_000_000 {
                                hist.saturating_record((now - sent).max(1));
                            }
                        }
                    }
                    Latency::SeqIndex => {
                        let (Some(peer), Some(first)) = (leg.peer, st.first) else {
                            continue;
                        };
                        let idx = ext.saturating_sub(first);
                        let ps = &shared[peer];
                        let sent = ps.sent.load(Ordering::Relaxed);
                        if on && idx < sent && sent - idx < RING as u64 - 64 {
                            let t = ps.ring[(idx as usize) % RING].load(Ordering::Relaxed);
                            if t > 0 && t <= now {
                                hist.saturating_record((now - t).max(1));
                            }
                        }
                    }
                    Latency::Marker => {
                        let det = st.detector.get_or_insert_with(Box::default);
                        let k = payload.len().min(FRAME_8K);
                        if crossbar::codec::g711::decode_ulaw(&payload[..k], &mut pcm).is_err() {
                            continue;
                        }
                        if let Some(offset) = det.feed(&pcm[..k]) {
                            let onset = now as i64 + offset * 125_000;
                            let Some(log) = &leg.hears else { continue };
                            let bursts = log.bursts.lock().map(|b| b.clone()).unwrap_or_default();
                            // The latest burst sent before the onset, not matched yet.
                            if let Some((idx, &t)) = bursts
                                .iter()
                                .enumerate()
                                .rev()
                                .find(|(_, &t)| (t as i64) <= onset)
                            {
                                if idx >= st.matched_bursts && on {
                                    hist.saturating_record(((onset - t as i64).max(1)) as u64);
                                }
                                st.matched_bursts = idx + 1;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok((
        hist,
        mine.iter()
            .copied()
            .zip(state)
            .collect::<Vec<(usize, RxLeg)>>(),
    ))
}
