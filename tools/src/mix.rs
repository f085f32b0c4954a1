//! The `mix` scenario: `--bridges` M mixing bridges of `--participants` N
//! externalMedia legs (PCMU) each — `softmix` on crossbar. Every participant
//! sends 20 ms packets: a `--talkers` fraction a 400 Hz tone (quiet enough
//! that all of them together cannot clip), the others µ-law silence; all
//! receive the mix.
//!
//! Latency: participant 0 of each bridge is the marker: every 200 ms its
//! next three packets carry a loud 1 kHz burst, whose send time is logged;
//! participant 1 listens for the burst's onset in what it receives (Goertzel
//! at 1 kHz) and the onset's time — arrival of the packet plus the onset's
//! offset inside it — minus the burst's send time is one latency sample: the
//! jitter buffer, the tick and the mixing together.
//!
//! `--bridge-media play,record`: after the plain run, the same conference
//! again with an endless tone played into each bridge (`POST
//! /bridges/{id}/play?media=tone:440`), then with each bridge recorded
//! (`POST /bridges/{id}/record`, wav, deleted afterwards); each such run
//! reports `vs_plain`, its server CPU per participant-second over the
//! plain run's (the cost of a bridge playback or recording per
//! participant).
//!
//! Headline: server µs of CPU per participant-second, and its ratio to what
//! the in-process reflector pays for the same 50 in + 50 out packets per
//! participant-second (50 × its µs per forwarded packet, measured in the
//! same invocation unless `--no-baseline`). Loss is counted from gaps in
//! each participant's received stream; `min_leg_ratio` is the worst
//! participant's packets received over the 50 per second it should get.

use std::sync::Arc;

use crossbar::media::Format;

use crate::ari::{encode, Method};
use crate::audio;
use crate::net;
use crate::opts::MediaOptions;
use crate::reflector;
use crate::relay::attach_ratios;
use crate::report::RunReport;
use crate::server::{self, Session};
use crate::traffic::{self, Latency, LegPlan, MarkerLog};

pub fn run(o: &MediaOptions, progress: bool) -> Result<Vec<RunReport>, String> {
    let mut runs = Vec::new();
    for (k, url) in o.urls().iter().enumerate() {
        let pid = server::server_pid(o, url, k == 0);
        let mut plain = None;
        for media in std::iter::once("").chain(o.bridge_media.iter().map(String::as_str)) {
            let mut session = Session::open(url, o)?;
            let result = mix_on(&mut session, o, pid, progress, media);
            let teardown = session.teardown();
            let mut r = result?;
            if let Err(e) = teardown {
                r.extra("teardown_error", e);
            }
            let cost = r.us_per_participant_second();
            if media.is_empty() {
                plain = cost;
            } else if let (Some(p), Some(x)) = (plain, cost) {
                r.extra("vs_plain", ((x / p) * 1000.0).round() / 1000.0);
            }
            runs.push(r);
            if crate::signal::interrupted() {
                return Ok(runs);
            }
        }
    }
    attach_ratios(&mut runs, "server_us_per_participant_s", |r| {
        r.us_per_participant_second()
    });
    if !o.no_baseline {
        let total = o.participants * o.bridges;
        let base = reflector::run_baseline(o, total.div_ceil(2), progress)?;
        if let Some(b) = base.us_per_packet() {
            for r in &mut runs {
                if let Some(x) = r.us_per_participant_second() {
                    r.extra(
                        "reflector_us_per_50_packets",
                        (b * 50.0 * 10.0).round() / 10.0,
                    );
                    r.extra("vs_reflector", ((x / (50.0 * b)) * 1000.0).round() / 1000.0);
                }
            }
        }
        runs.push(base);
    }
    Ok(runs)
}

fn mix_on(
    session: &mut Session,
    o: &MediaOptions,
    pid: Option<u32>,
    progress: bool,
    media: &str,
) -> Result<RunReport, String> {
    let n = o.participants;
    let talkers = ((n as f64) * o.talkers).round() as usize;
    let amplitude = (12_000.0 / talkers.max(1) as f64).min(2000.0);
    let talk = Arc::new(audio::tone(Format::Ulaw, audio::TALK_HZ, amplitude, 50)?);
    let silence = Arc::new(audio::tone(Format::Ulaw, audio::TALK_HZ, 0.0, 1)?);
    let burst = Arc::new(audio::tone(
        Format::Ulaw,
        audio::MARKER_HZ,
        audio::MARKER_AMPLITUDE,
        traffic::BURST_LEN as usize,
    )?);
    let mut legs = Vec::with_capacity(n * o.bridges);
    let mut recordings = Vec::new();
    let setup = std::time::Instant::now();
    for _ in 0..o.bridges {
        let bridge = session.bridge()?;
        match media {
            "play" => {
                let path = format!("/ari/bridges/{}/play?media=tone:440", encode(&bridge));
                session.client.expect_ok(Method::Post, &path)?;
            }
            "record" => {
                let name = format!("crossbar-load-{bridge}");
                let path = format!(
                    "/ari/bridges/{}/record?name={}&format=wav&ifExists=overwrite",
                    encode(&bridge),
                    encode(&name)
                );
                session.client.expect_ok(Method::Post, &path)?;
                recordings.push(name);
            }
            _ => {}
        }
        let log = Arc::new(MarkerLog::default());
        for p in 0..n {
            if crate::signal::interrupted() {
                return Err("interrupted during setup".into());
            }
            if progress && legs.len() % 50 == 0 {
                eprint!(
                    "\r\x1b[2Kmix: setting up participant {}/{}",
                    legs.len(),
                    n * o.bridges
                );
            }
            let socket = net::loopback_socket()?;
            let local = socket.local_addr().map_err(|e| format!("{e}"))?;
            let (id, remote) = session.external_media("ulaw", local)?;
            socket
                .connect(remote)
                .map_err(|e| format!("connect {remote}: {e}"))?;
            session.add(&bridge, &id)?;
            legs.push(LegPlan {
                socket,
                pt: 0,
                ts_step: 160,
                frames: if p < talkers {
                    talk.clone()
                } else {
                    silence.clone()
                },
                stamp: false,
                peer: None,
                latency: if p == 1 {
                    Latency::Marker
                } else {
                    Latency::None
                },
                marker: (p == 0).then(|| (log.clone(), burst.clone())),
                hears: (p == 1).then(|| log.clone()),
            });
        }
    }
    let setup_ms = setup.elapsed().as_secs_f64() * 1e3;
    let mut probe = server::process_probe(pid, o.per_thread);
    let label = match media {
        "play" => "mix+play",
        "record" => "mix+record",
        _ => "mix",
    };
    let m = traffic::run(legs, reflector::timing(o), label, progress, &mut probe)?;
    for name in &recordings {
        let live = format!("/ari/recordings/live/{}/stop", encode(name));
        session.client.expect_ok(Method::Post, &live)?;
        let stored = format!("/ari/recordings/stored/{}", encode(name));
        let _ = session.client.request(Method::Delete, &stored);
    }
    let mut r = RunReport::new(label, session.target.base.as_str(), m);
    r.participants = Some(n * o.bridges);
    r.param("participants", n);
    r.param("bridges", o.bridges);
    r.param("talkers", talkers);
    if !media.is_empty() {
        r.param("bridge_media", media);
    }
    r.param("pid", pid);
    r.extra("setup_ms", (setup_ms * 10.0).round() / 10.0);
    r.extra(
        "latency_method",
        "1 kHz burst from participant 0, onset heard by participant 1",
    );
    Ok(r)
}
