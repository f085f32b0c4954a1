//! The `relay` scenario: N two-party calls, each two externalMedia legs of
//! one format (PCMU) in a mixing bridge of two — `native_rtp` on crossbar —
//! both directions sending 20 ms packets. Latency comes from the send time
//! the tool writes into the first 8 payload bytes (the node must forward the
//! payload byte for byte). Headline: server µs of CPU per forwarded packet,
//! and its ratio to the in-process reflector with the same traffic.
//!
//! [`run_calls`] is shared with `transcode` (the second leg of each call in
//! another format; latency then pairs the i-th packet out with the peer's
//! i-th packet in).
//!
//! With `--rtpengine HOST:PORT` (or `ng://HOST:PORT` among `--compare`'s
//! servers) the same calls go through rtpengine instead, set up over its ng
//! protocol ([`crate::ng`]): per call, leg A's socket offers PCMU, leg B's
//! answers, each sends to the port rtpengine returned for it; same traffic,
//! same measurements, the daemon's CPU from `--pid` or the process bound to
//! the ng UDP port; every call is deleted at the end (also on error and
//! Ctrl-C).

use std::sync::Arc;

use crossbar::media::Format;

use crate::audio;
use crate::net;
use crate::ng::{self, NgSession};
use crate::opts::{MediaOptions, NG_SCHEME};
use crate::procstat;
use crate::reflector;
use crate::report::RunReport;
use crate::server::{self, Session};
use crate::traffic::{self, Frames, Latency as LatencyMode, LegPlan};

/// Frames (one second of tone), payload type and timestamp step for `format`.
pub fn frames_for(format: Format) -> Result<(Frames, u8, u32), String> {
    let frames = audio::tone(format, audio::TALK_HZ, 3000.0, 50)?;
    Ok((
        Arc::new(frames),
        format.payload_type(),
        format.clock_rate() / 50,
    ))
}

/// Sets up `o.calls` calls (first leg `a`, second leg `b`) on `url`, runs the
/// traffic, tears everything down.
pub fn run_calls(
    o: &MediaOptions,
    scenario: &'static str,
    url: &str,
    pid: Option<u32>,
    a: Format,
    b: Format,
    progress: bool,
) -> Result<RunReport, String> {
    let mut session = Session::open(url, o)?;
    let result = calls_on(&mut session, o, scenario, pid, a, b, progress);
    let teardown = session.teardown();
    let mut r = result?;
    if let Err(e) = teardown {
        r.extra("teardown_error", e);
    }
    Ok(r)
}

fn calls_on(
    session: &mut Session,
    o: &MediaOptions,
    scenario: &'static str,
    pid: Option<u32>,
    a: Format,
    b: Format,
    progress: bool,
) -> Result<RunReport, String> {
    let same = a == b;
    let mode = if same {
        LatencyMode::Stamp
    } else {
        LatencyMode::SeqIndex
    };
    let fa = frames_for(a)?;
    let fb = frames_for(b)?;
    let mut legs = Vec::with_capacity(2 * o.calls);
    let setup = std::time::Instant::now();
    for call in 0..o.calls {
        if crate::signal::interrupted() {
            return Err("interrupted during setup".into());
        }
        if progress && call % 50 == 0 {
            eprint!("\r\x1b[2K{scenario}: setting up call {call}/{}", o.calls);
        }
        let mut ids = Vec::new();
        for (k, (format, f)) in [(a, &fa), (b, &fb)].into_iter().enumerate() {
            let socket = net::loopback_socket()?;
            let local = socket.local_addr().map_err(|e| format!("{e}"))?;
            let (id, remote) = session.external_media(format.name(), local)?;
            socket
                .connect(remote)
                .map_err(|e| format!("connect {remote}: {e}"))?;
            ids.push(id);
            let index = legs.len();
            legs.push(LegPlan {
                socket,
                pt: f.1,
                ts_step: f.2,
                frames: f.0.clone(),
                stamp: same,
                peer: Some(if k == 0 { index + 1 } else { index - 1 }),
                latency: mode,
                marker: None,
                hears: None,
            });
        }
        let bridge = session.bridge()?;
        for id in &ids {
            session.add(&bridge, id)?;
        }
    }
    let setup_ms = setup.elapsed().as_secs_f64() * 1e3;
    let mut probe = server::process_probe(pid, o.per_thread);
    let m = traffic::run(legs, reflector::timing(o), scenario, progress, &mut probe)?;
    let mut r = RunReport::new(scenario, session.target.base.as_str(), m);
    r.param("calls", o.calls);
    if !same {
        r.param("pair", format!("{}-{}", a.name(), b.name()));
    }
    r.param("pid", pid);
    r.extra("setup_ms", (setup_ms * 10.0).round() / 10.0);
    r.extra(
        "latency_method",
        if same {
            "payload timestamp"
        } else {
            "i-th out = peer's i-th in"
        },
    );
    Ok(r)
}

/// `o.calls` PCMU calls through rtpengine at `addr` (ng), the traffic, and
/// every call deleted.
pub fn run_rtpengine(
    o: &MediaOptions,
    addr: &str,
    pid: Option<u32>,
    progress: bool,
) -> Result<RunReport, String> {
    let mut session = NgSession::open(addr, o.allow_remote, o.timeout)?;
    let result = rtpengine_calls(&mut session, o, pid, progress);
    let teardown = session.teardown();
    let mut r = result?;
    if let Err(e) = teardown {
        r.extra("teardown_error", e);
    }
    Ok(r)
}

fn rtpengine_calls(
    session: &mut NgSession,
    o: &MediaOptions,
    pid: Option<u32>,
    progress: bool,
) -> Result<RunReport, String> {
    let (frames, pt, ts_step) = frames_for(Format::Ulaw)?;
    let mut legs = Vec::with_capacity(2 * o.calls);
    let setup = std::time::Instant::now();
    for call in 0..o.calls {
        if crate::signal::interrupted() {
            return Err("interrupted during setup".into());
        }
        if progress && call % 50 == 0 {
            eprint!(
                "\r\x1b[2Krelay (rtpengine): setting up call {call}/{}",
                o.calls
            );
        }
        let (a, b) = (net::loopback_socket()?, net::loopback_socket()?);
        let local = |s: &std::net::UdpSocket| s.local_addr().map_err(|e| format!("{e}"));
        let (a_to, b_to) = session.call(local(&a)?, local(&b)?)?;
        for (socket, to) in [(a, a_to), (b, b_to)] {
            net::check_rtp_target(to, o.allow_remote)?;
            socket
                .connect(to)
                .map_err(|e| format!("connect {to}: {e}"))?;
            let index = legs.len();
            legs.push(LegPlan {
                socket,
                pt,
                ts_step,
                frames: frames.clone(),
                stamp: true,
                peer: Some(index ^ 1),
                latency: LatencyMode::Stamp,
                marker: None,
                hears: None,
            });
        }
    }
    let setup_ms = setup.elapsed().as_secs_f64() * 1e3;
    let mut probe = server::process_probe(pid, o.per_thread);
    let m = traffic::run(
        legs,
        reflector::timing(o),
        "relay (rtpengine)",
        progress,
        &mut probe,
    )?;
    let target = format!("rtpengine {NG_SCHEME}{}", session.client.addr);
    let mut r = RunReport::new("relay", &target, m);
    r.param("calls", o.calls);
    r.param("pid", pid);
    r.extra("setup_ms", (setup_ms * 10.0).round() / 10.0);
    r.extra("control", "rtpengine ng (offer/answer/delete)");
    r.extra("latency_method", "payload timestamp");
    Ok(r)
}

/// The whole `relay` (or `transcode`) invocation: each URL, then the
/// reflector baseline unless `--no-baseline`; ratios attached to the runs.
pub fn run(
    o: &MediaOptions,
    scenario: &'static str,
    b: Format,
    progress: bool,
) -> Result<Vec<RunReport>, String> {
    let mut runs = Vec::new();
    for (k, url) in o.urls().iter().enumerate() {
        if let Some(addr) = url.strip_prefix(NG_SCHEME) {
            if b != Format::Ulaw {
                return Err(format!("{scenario}: rtpengine runs only the PCMU relay"));
            }
            let pid = match o.pid {
                Some(p) if k == 0 => Some(p),
                _ => ng::parse_addr(addr, o.allow_remote)
                    .ok()
                    .filter(|a| a.ip().is_loopback())
                    .and_then(|a| procstat::pid_bound_udp(a.port())),
            };
            runs.push(run_rtpengine(o, addr, pid, progress)?);
        } else {
            let pid = server::server_pid(o, url, k == 0);
            runs.push(run_calls(o, scenario, url, pid, Format::Ulaw, b, progress)?);
        }
        if crate::signal::interrupted() {
            return Ok(runs);
        }
    }
    attach_ratios(&mut runs, "server_us_per_packet", |r| r.us_per_packet());
    if !o.no_baseline {
        let base = reflector::run_baseline(o, o.calls, progress)?;
        if let Some(b) = base.us_per_packet() {
            for r in &mut runs {
                if let Some(x) = r.us_per_packet() {
                    r.extra("vs_reflector", ((x / b) * 1000.0).round() / 1000.0);
                }
            }
        }
        runs.push(base);
    }
    Ok(runs)
}

/// With `--compare`: the second run's figure over the first's.
pub fn attach_ratios(runs: &mut [RunReport], name: &str, f: impl Fn(&RunReport) -> Option<f64>) {
    if runs.len() == 2 {
        if let (Some(a), Some(b)) = (f(&runs[0]), f(&runs[1])) {
            if a > 0.0 {
                let ratio = ((b / a) * 1000.0).round() / 1000.0;
                runs[1].extra(&format!("{name}_vs_first"), ratio);
            }
        }
    }
}
