//! The data plane end to end through ARI, with the real `crossbar` binary:
//! externalMedia legs whose far ends are UDP sockets of this test, bridged
//! over `/ari/bridges`, fed paced RTP (20 ms frames, real time) and checked
//! on what comes out.
//!
//! | test | shows |
//! |---|---|
//! | `relay_*` | two PCMU legs: `native_rtp`, payload untouched, SSRC rewritten, seq/ts continuous, zero loss over 10 s |
//! | `transcode_*` | PCMU↔PCMA and PCMU↔Opus: `simple_bridge`, a 1 kHz tone arrives with SNR above [`G711_SNR_DB`] / [`OPUS_SNR_DB`] |
//! | `softmix_*` | 3 and 5 members with distinct tones: `softmix`, each hears the others and not itself |
//! | `technology_switch_*` | 2→3→2 members: native_rtp → softmix → native_rtp in GET and events, the receiver's stream stays one stream |
//! | `garbage_*` | bad datagrams during a relay: counted in `rxbad`, no loss |
//! | `mute_*`, `hold_*` | a muted or held leg is not heard; hold/unhold events |
//!
//! Pacing: every stream here is paced at its real 20 ms ptime (the relay test
//! streams 500 packets each way for 10 s). Each test runs its own node with
//! two shards on its own RTP port slot.

mod common;
mod common_audio;
mod media_common;

use std::time::{Duration, Instant};

use common::Ws;
use crossbar::media::Format;
use media_common::{
    db, decode_arrived, mean_power, pattern_payload, rtp_packet, talk, tone_snr_db, Leg, Node,
    Received, Voice,
};

/// Minimum SNR of a 1 kHz tone through PCMU → crossbar → PCMA (and back):
/// two G.711 quantisations leave 34.8 dB at this level (measured by
/// `analysis_measures_known_signals`), so 30 dB allows one glitch, not a
/// wrong resampler or gain.
const G711_SNR_DB: f64 = 30.0;
/// Minimum SNR of a 1 kHz tone through PCMU ↔ Opus (32 kbit/s, resampled
/// 8 ↔ 48 kHz on the way): Opus alone round-trips it at 37.5 dB, G.711 adds
/// its quantisation, the resampler its stop band.
#[cfg_attr(not(feature = "opus"), allow(dead_code))]
const OPUS_SNR_DB: f64 = 20.0;
/// In a softmix, each other member's tone carries at least this share of its
/// fair part (1/(N−1)) of the power a member receives.
const SOFTMIX_FAIR_SHARE: f64 = 0.5;
/// In a softmix, a member's own tone is at least this far (dB) below the
/// weakest of the others' tones in what it receives.
const SOFTMIX_OWN_BELOW_DB: f64 = 30.0;
/// Peak amplitude of the test tones (about −12 dBFS; five summed stay below
/// full scale).
const AMPLITUDE: f64 = 6000.0;
/// Audio skipped at the start of a received stream before measuring
/// (jitter buffer fill, codec start-up, technology settling).
const SETTLE: Duration = Duration::from_millis(500);

/// Only the RTP (not RTCP) datagrams of a capture.
fn rtp_only(got: &[Received]) -> Vec<Received> {
    got.iter()
        .filter(|r| !crossbar::rtp::packet::looks_like_rtcp(&r.bytes))
        .cloned()
        .collect()
}

/// The share of `pcm`'s power in its `freq` component: 1 for a pure tone at
/// `freq`, 1/k for each of k equal tones, ≈ 0 for an absent one.
fn tone_share(pcm: &[i16], rate: u32, freq: f64) -> f64 {
    // goertzel_energy gives A²/4 for a sine of peak A, whose mean power is A²/2.
    2.0 * common_audio::goertzel_energy(pcm, freq, rate) / mean_power(pcm).max(1e-9)
}

/// Creates a mixing bridge holding `legs` (joined in order).
fn bridge_of(node: &Node, legs: &[&Leg]) -> String {
    let bridge = node.mixing_bridge();
    for leg in legs {
        node.add_to_bridge(&bridge, leg);
    }
    bridge
}

/// Checks a relayed stream of `Voice::Pattern(tag)` frames: every packet
/// arrived (`frames`, in order), payloads byte for byte, crossbar's own SSRC
/// (not `sender_ssrc`), seq +1 and timestamp +160 from packet to packet.
#[track_caller]
fn assert_relayed(got: &[Received], sender_ssrc: u32, tag: u8, frames: u32) {
    assert_eq!(
        got.len(),
        frames as usize,
        "zero loss: every packet sent arrives exactly once"
    );
    let ssrc = got[0].ssrc();
    assert_ne!(ssrc, sender_ssrc, "SSRC rewritten to crossbar's own");
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.pt(), 0, "payload type PCMU at {i}");
        assert_eq!(p.ssrc(), ssrc, "one SSRC for the whole stream at {i}");
        assert_eq!(
            p.payload(),
            &pattern_payload(tag, i as u32)[..],
            "payload byte for byte at {i}"
        );
        if i > 0 {
            let q = &got[i - 1];
            assert_eq!(p.seq(), q.seq().wrapping_add(1), "seq continuous at {i}");
            assert_eq!(p.ts(), q.ts().wrapping_add(160), "ts continuous at {i}");
        }
    }
}

/// What a leg of `format` received while the talkers talked, decoded: from
/// [`SETTLE`] after `start` until `end` (what a bridge sends before and
/// after, silence, is not the signal under test).
fn heard_while_talking(got: &[Received], format: Format, start: Instant, end: Instant) -> Vec<i16> {
    decode_arrived(got, format, start + SETTLE, end)
}

/// The SNR (dB) of a `freq` tone in `pcm` at `rate`, measured in 100 ms
/// blocks, over at least 1 s.
fn tone_snr(pcm: &[i16], rate: u32, freq: f64) -> f64 {
    assert!(
        pcm.len() >= rate as usize,
        "at least 1 s of audio to measure, got {} samples at {rate} Hz",
        pcm.len()
    );
    tone_snr_db(pcm, rate, freq, rate as usize / 10)
}

// ---------------------------------------------------------------------------
// The analysis itself, on known signals (no server): the thresholds above are
// reachable by a correct data plane.

#[test]
fn analysis_measures_known_signals() {
    use crossbar::codec::{Decoder, Encoder};
    let rate = 8000;
    let tone: Vec<i16> = (0..rate * 2)
        .map(|n| {
            (AMPLITUDE * (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 8000.0).sin()) as i16
        })
        .collect();
    // PCMU → linear → PCMA → linear, 20 ms frames: what a two-party G.711
    // transcode does.
    let (mut u, mut a) = (
        Encoder::new(Format::Ulaw).unwrap(),
        Encoder::new(Format::Alaw).unwrap(),
    );
    let (mut du, mut da) = (
        Decoder::new(Format::Ulaw).unwrap(),
        Decoder::new(Format::Alaw).unwrap(),
    );
    let mut out = Vec::new();
    for frame in tone.chunks(160) {
        let (mut bytes, mut pcm) = ([0u8; 160], [0i16; 160]);
        u.encode(frame, &mut bytes).unwrap();
        du.decode(&bytes, &mut pcm).unwrap();
        a.encode(&pcm, &mut bytes).unwrap();
        da.decode(&bytes, &mut pcm).unwrap();
        out.extend_from_slice(&pcm);
    }
    let snr = tone_snr_db(&out, rate as u32, 1000.0, 800);
    eprintln!("PCMU→PCMA chain: {snr:.1} dB");
    assert!(snr > G711_SNR_DB + 3.0, "G.711 chain SNR {snr:.1} dB");
    // A pure tone measures its own power; a mixture splits it.
    let p = tone_share(&tone, 8000, 1000.0);
    assert!((p - 1.0).abs() < 0.01, "pure tone share {p}");
    let mix: Vec<i16> = (0..8000)
        .map(|n| {
            let t = n as f64 / 8000.0;
            let w = 2.0 * std::f64::consts::PI;
            (3000.0 * (w * 400.0 * t).sin() + 3000.0 * (w * 650.0 * t).sin()) as i16
        })
        .collect();
    let (a4, a6, a9) = (
        tone_share(&mix, 8000, 400.0),
        tone_share(&mix, 8000, 650.0),
        tone_share(&mix, 8000, 900.0),
    );
    assert!(
        (a4 - 0.5).abs() < 0.02 && (a6 - 0.5).abs() < 0.02,
        "{a4} {a6}"
    );
    assert!(db(a9 / a4) < -60.0, "absent tone {a9}");
    // Opus at crossbar's default bitrate on a 48 kHz 1 kHz tone.
    #[cfg(feature = "opus")]
    opus_round_trip_is_clean();
}

#[cfg(feature = "opus")]
fn opus_round_trip_is_clean() {
    use crossbar::codec::{Decoder, Encoder};
    let tone48: Vec<i16> = (0..48000 * 2)
        .map(|n| {
            (AMPLITUDE * (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 48000.0).sin()) as i16
        })
        .collect();
    let mut oe = Encoder::new(Format::Opus).unwrap();
    let mut od = Decoder::new(Format::Opus).unwrap();
    let mut out = Vec::new();
    for frame in tone48.chunks(960) {
        let (mut bytes, mut pcm) = ([0u8; 1500], [0i16; 960]);
        let n = oe.encode(frame, &mut bytes).unwrap();
        let m = od.decode(&bytes[..n], &mut pcm).unwrap();
        out.extend_from_slice(&pcm[..m]);
    }
    let snr = tone_snr_db(&out[48000 / 2..], 48000, 1000.0, 4800);
    eprintln!("Opus round trip: {snr:.1} dB");
    assert!(snr > OPUS_SNR_DB + 10.0, "Opus SNR {snr:.1} dB");
}

// ---------------------------------------------------------------------------
// (a) relay

#[test]
fn relay_two_pcmu_legs_native_rtp_for_10s() {
    const FRAMES: u32 = 500;
    let node = Node::start(0);
    let _events = node.events();
    let (a, b) = (
        Leg::open(&node, Format::Ulaw),
        Leg::open(&node, Format::Ulaw),
    );
    let bridge = bridge_of(&node, &[&a, &b]);
    assert_eq!(node.technology(&bridge), "native_rtp");

    let (at_a, at_b) = (a.capture(), b.capture());
    let (ssrc_a, ssrc_b) = (0x1111_1111, 0x2222_2222);
    talk(
        vec![
            a.talker(ssrc_a, Voice::Pattern(1)),
            b.talker(ssrc_b, Voice::Pattern(2)),
        ],
        FRAMES,
    )
    .join()
    .expect("talkers");
    let at_b = rtp_only(&at_b.finish(Duration::from_millis(300)));
    let at_a = rtp_only(&at_a.finish(Duration::ZERO));

    assert_relayed(&at_b, ssrc_a, 1, FRAMES);
    assert_relayed(&at_a, ssrc_b, 2, FRAMES);
    assert_ne!(at_a[0].ssrc(), at_b[0].ssrc(), "each leg has its own SSRC");
    assert_eq!(node.rtp_counter(&a, "rxcount"), u64::from(FRAMES));
    assert_eq!(node.rtp_counter(&b, "txcount"), u64::from(FRAMES));
    assert_eq!(node.rtp_counter(&a, "rxbad"), 0);
    assert_eq!(node.technology(&bridge), "native_rtp");
}

// ---------------------------------------------------------------------------
// (b) two-party transcode

/// A PCMU leg and a `other` leg in one bridge, both sending a 1 kHz tone for
/// 3 s; each must receive the other's tone, decoded, with SNR ≥ `min_snr`.
fn transcode_carries_a_tone(slot: u16, other: Format, min_snr: f64) {
    const FRAMES: u32 = 150;
    let node = Node::start(slot);
    let _events = node.events();
    let (a, b) = (Leg::open(&node, Format::Ulaw), Leg::open(&node, other));
    let bridge = bridge_of(&node, &[&a, &b]);
    assert_eq!(node.technology(&bridge), "simple_bridge");

    let (at_a, at_b) = (a.capture(), b.capture());
    let start = Instant::now();
    talk(
        vec![
            a.talker(0x0a0a_0001, Voice::Tone(1000.0, AMPLITUDE)),
            b.talker(0x0b0b_0002, Voice::Tone(1000.0, AMPLITUDE)),
        ],
        FRAMES,
    )
    .join()
    .expect("talkers");
    let end = Instant::now();
    let at_b = rtp_only(&at_b.finish(Duration::from_millis(300)));
    let at_a = rtp_only(&at_a.finish(Duration::ZERO));

    for (name, got, format) in [
        ("PCMU leg", &at_a, Format::Ulaw),
        ("other leg", &at_b, other),
    ] {
        assert!(
            got.len() as u32 >= FRAMES * 9 / 10,
            "{name} ({format:?}) received {} of {FRAMES} frames",
            got.len()
        );
        assert!(
            got.iter().all(|p| p.pt() == format.payload_type()),
            "{name} receives {format:?} (payload type {})",
            format.payload_type()
        );
        let pcm = heard_while_talking(got, format, start, end);
        let snr = tone_snr(&pcm, format.sample_rate(), 1000.0);
        eprintln!("{name} ({format:?}): 1 kHz at {snr:.1} dB SNR");
        assert!(
            snr >= min_snr,
            "{name} ({format:?}): 1 kHz tone SNR {snr:.1} dB < {min_snr} dB"
        );
    }
    assert_eq!(node.technology(&bridge), "simple_bridge");
}

#[test]
fn transcode_pcmu_pcma_simple_bridge_tone() {
    transcode_carries_a_tone(1, Format::Alaw, G711_SNR_DB);
}

#[cfg(feature = "opus")]
#[test]
fn transcode_pcmu_opus_simple_bridge_tone() {
    transcode_carries_a_tone(2, Format::Opus, OPUS_SNR_DB);
}

// ---------------------------------------------------------------------------
// (c) softmix

/// Distinct test tones (Hz): multiples of 50 Hz (whole cycles per 20 ms
/// frame), none a low harmonic of another.
const TONES: [f64; 5] = [400.0, 650.0, 900.0, 1150.0, 1400.0];

/// `n` PCMU members each sending its own tone for 3 s; each must receive
/// every other tone (≥ [`SOFTMIX_FAIR_SHARE`] of its fair share) and not its
/// own ([`SOFTMIX_OWN_BELOW_DB`] below the weakest other).
fn softmix_members_hear_the_others(slot: u16, n: usize) {
    const FRAMES: u32 = 150;
    let node = Node::start(slot);
    let _events = node.events();
    let legs: Vec<Leg> = (0..n).map(|_| Leg::open(&node, Format::Ulaw)).collect();
    let bridge = bridge_of(&node, &legs.iter().collect::<Vec<_>>());
    assert_eq!(node.technology(&bridge), "softmix");

    let captures: Vec<_> = legs.iter().map(Leg::capture).collect();
    let talkers = legs
        .iter()
        .enumerate()
        .map(|(i, l)| l.talker(0x5000_0000 + i as u32, Voice::Tone(TONES[i], AMPLITUDE)))
        .collect();
    let start = Instant::now();
    talk(talkers, FRAMES).join().expect("talkers");
    let end = Instant::now();
    let received: Vec<Vec<Received>> = captures
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let linger = if i == 0 { 300 } else { 0 };
            rtp_only(&c.finish(Duration::from_millis(linger)))
        })
        .collect();

    let fair = 1.0 / (n - 1) as f64;
    for (i, got) in received.iter().enumerate() {
        assert!(
            got.len() as u32 >= FRAMES * 9 / 10,
            "member {i} received {} of {FRAMES} frames",
            got.len()
        );
        let pcm = heard_while_talking(got, Format::Ulaw, start, end);
        assert!(pcm.len() >= 8000, "member {i}: at least 1 s of audio");

        let share = |f: f64| tone_share(&pcm, 8000, f);
        let own = share(TONES[i]);
        let others: Vec<(f64, f64)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| (TONES[j], share(TONES[j])))
            .collect();
        eprintln!(
            "member {i} ({} Hz): own {:.1} dB, others {:?}",
            TONES[i],
            db(own),
            others
                .iter()
                .map(|(f, s)| format!("{f} Hz {s:.3}"))
                .collect::<Vec<_>>()
        );
        for &(f, s) in &others {
            assert!(
                s >= SOFTMIX_FAIR_SHARE * fair,
                "member {i} hears {f} Hz at only {s:.3} of its power (fair share {fair:.3})"
            );
        }
        let weakest = others.iter().map(|o| o.1).fold(f64::MAX, f64::min);
        assert!(
            db(own / weakest) <= -SOFTMIX_OWN_BELOW_DB,
            "member {i} hears itself: own tone {:.1} dB vs weakest other",
            db(own / weakest)
        );
    }
    assert_eq!(node.technology(&bridge), "softmix");
    // Each member's jitter buffer played (nearly) every frame it was sent.
    for leg in &legs {
        let jb = &node.rtp_statistics(leg)["jitterbuffer"];
        let played = jb["played"].as_u64().unwrap_or(0);
        assert!(played >= u64::from(FRAMES) * 9 / 10, "jitter buffer: {jb}");
    }
}

#[test]
fn softmix_three_members_hear_the_others_not_themselves() {
    softmix_members_hear_the_others(3, 3);
}

#[test]
fn softmix_five_members_hear_the_others_not_themselves() {
    softmix_members_hear_the_others(4, 5);
}

// ---------------------------------------------------------------------------
// (d) technology switches

/// The `technology` of bridge `bridge` in each ChannelEnteredBridge /
/// ChannelLeftBridge event, in order.
fn technologies_in_events(events: &mut Ws, bridge: &str) -> Vec<String> {
    events
        .drain(Duration::from_millis(300))
        .into_iter()
        .filter(|e| {
            matches!(
                e["type"].as_str(),
                Some("ChannelEnteredBridge" | "ChannelLeftBridge")
            ) && e["bridge"]["id"] == bridge
        })
        .map(|e| {
            e["bridge"]["technology"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

#[test]
fn technology_switch_2_3_2_keeps_the_stream_continuous() {
    const FRAMES: u32 = 300;
    let node = Node::start(5);
    let mut events = node.events();
    let (a, b, c) = (
        Leg::open(&node, Format::Ulaw),
        Leg::open(&node, Format::Ulaw),
        Leg::open(&node, Format::Ulaw),
    );
    let bridge = bridge_of(&node, &[&a, &b]);
    assert_eq!(node.technology(&bridge), "native_rtp");
    assert_eq!(
        technologies_in_events(&mut events, &bridge),
        ["simple_bridge", "native_rtp"]
    );

    let at_b = b.capture();
    let start = Instant::now();
    let talkers = talk(
        vec![
            a.talker(0xa000_0001, Voice::Tone(500.0, AMPLITUDE)),
            b.talker(0xb000_0002, Voice::Silence),
            c.talker(0xc000_0003, Voice::Tone(1300.0, AMPLITUDE)),
        ],
        FRAMES,
    );
    std::thread::sleep(Duration::from_millis(1500));
    node.add_to_bridge(&bridge, &c);
    let joined = Instant::now();
    assert_eq!(node.technology(&bridge), "softmix");
    assert_eq!(technologies_in_events(&mut events, &bridge), ["softmix"]);
    std::thread::sleep(
        (start + Duration::from_millis(3500)).saturating_duration_since(Instant::now()),
    );
    node.remove_from_bridge(&bridge, &c);
    let left = Instant::now();
    assert_eq!(node.technology(&bridge), "native_rtp");
    assert_eq!(technologies_in_events(&mut events, &bridge), ["native_rtp"]);
    talkers.join().expect("talkers");
    let got = rtp_only(&at_b.finish(Duration::from_millis(300)));

    // One stream: one SSRC, no seq gap beyond one packet, timestamps that
    // advance by 160 per packet within a source and by the elapsed media
    // time (±40 ms) where the source switched.
    assert!(
        got.len() as u32 >= FRAMES * 95 / 100,
        "B received {} of {FRAMES} frames",
        got.len()
    );
    let ssrc = got[0].ssrc();
    let mut switches = 0;
    for (i, w) in got.windows(2).enumerate() {
        let (p, q) = (&w[0], &w[1]);
        assert_eq!(q.ssrc(), ssrc, "SSRC constant across switches at {i}");
        let step = q.seq().wrapping_sub(p.seq());
        assert!(
            (1..=2).contains(&step),
            "seq step {step} at packet {i} (at most one packet missing)"
        );
        let ts_step = q.ts().wrapping_sub(p.ts());
        if ts_step != 160 * u32::from(step) {
            switches += 1;
            let gap_ms = q.at.duration_since(p.at).as_secs_f64() * 1000.0;
            let ts_ms = f64::from(ts_step as i32) / 8.0;
            assert!(
                ts_ms > 0.0 && (ts_ms - gap_ms).abs() <= 40.0,
                "ts step {ts_step} ({ts_ms} ms) at packet {i} does not match the {gap_ms:.1} ms between arrivals"
            );
        }
    }
    assert!(
        switches <= 4,
        "{switches} timestamp re-anchorings for 2 switches"
    );

    // While C was in, B heard C's tone mixed with A's.
    let pcm = decode_arrived(&got, Format::Ulaw, joined + SETTLE, left);
    assert!(pcm.len() >= 8000, "1 s of mixed audio at B");

    let (share_a, share_c) = (
        tone_share(&pcm, 8000, 500.0),
        tone_share(&pcm, 8000, 1300.0),
    );
    assert!(
        share_a >= 0.25 && share_c >= 0.25,
        "B hears A ({share_a:.3}) and C ({share_c:.3}) in the softmix"
    );
}

// ---------------------------------------------------------------------------
// (e) garbage

/// The garbage datagrams sent during the relay, five kinds.
fn garbage(i: u32) -> Vec<u8> {
    let mut rng = i.wrapping_mul(0x9e37_79b9) | 1;
    let mut random = || {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        rng as u8
    };
    match i % 5 {
        // Shorter than an RTP header.
        0 => vec![0x80, 0x00, 0x01],
        // Version 0.
        1 => {
            let mut p = rtp_packet(0x0bad_0001, i as u16, i * 160, 0, &[0xff; 160]);
            p[0] = 0x00;
            p
        }
        // Random bytes (version 1 so it can never pass as RTP or RTCP).
        2 => {
            let mut p: Vec<u8> = (0..100).map(|_| random()).collect();
            p[0] = (p[0] & 0x3f) | 0x40;
            p
        }
        // Version 2, payload type crossbar never negotiated.
        3 => rtp_packet(0x0bad_0003, i as u16, i * 160, 77, &[0xd5; 160]),
        // Version 2 claiming 15 CSRCs it does not carry.
        _ => {
            let mut p = rtp_packet(0x0bad_0004, i as u16, i * 160, 0, &[0x55; 8]);
            p[0] = 0x8f;
            p
        }
    }
}

#[test]
fn garbage_datagrams_are_counted_and_do_not_disturb_a_relay() {
    const FRAMES: u32 = 150;
    const GARBAGE: u32 = 50;
    let node = Node::start(6);
    let _events = node.events();
    let (a, b) = (
        Leg::open(&node, Format::Ulaw),
        Leg::open(&node, Format::Ulaw),
    );
    let bridge = bridge_of(&node, &[&a, &b]);
    assert_eq!(node.technology(&bridge), "native_rtp");

    let at_b = b.capture();
    let talker = talk(vec![a.talker(0x1234_5678, Voice::Pattern(7))], FRAMES);
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..GARBAGE {
        a.send_raw(&garbage(i));
        std::thread::sleep(Duration::from_millis(40));
    }
    talker.join().expect("talker");
    let got = rtp_only(&at_b.finish(Duration::from_millis(300)));

    assert_relayed(&got, 0x1234_5678, 7, FRAMES);
    let stats = node.rtp_statistics(&a);
    assert_eq!(
        stats["rxbad"],
        u64::from(GARBAGE),
        "rxbad counts every garbage datagram: {stats}"
    );
    // rxcount counts RTP as Asterisk does: the frames and the well-formed
    // packets of an unknown payload type (kind 3), not the rest.
    assert_eq!(stats["rxcount"], u64::from(FRAMES + GARBAGE / 5), "{stats}");
    assert_eq!(
        stats["rxoctetcount"],
        u64::from((FRAMES + GARBAGE / 5) * 160),
        "{stats}"
    );
    assert_eq!(stats["rxwrongsource"], 0, "{stats}");
    // RTCP: nothing valid arrived; a native_rtp leg sends no reports of its own.
    assert_eq!(stats["rxrtcpreports"], 0, "{stats}");
    assert_eq!(stats["txrtcp"], 0, "{stats}");
    // Asterisk's names and units: `rxjitter` is the remote's report (none
    // yet), `txjitter` the jitter we measure on what we receive, in seconds.
    assert!(
        stats.get("rxjitter").is_none(),
        "no remote report yet: {stats}"
    );
    let jitter = stats["txjitter"].as_f64().expect("txjitter is a number");
    assert!(
        (0.0..0.5).contains(&jitter),
        "txjitter is in seconds: {stats}"
    );
}

// ---------------------------------------------------------------------------
// mute and hold

/// How many packets `got` holds that arrived in `from + 150 ms .. to`.
fn arrived_between(got: &[Received], from: Instant, to: Instant) -> usize {
    let from = from + Duration::from_millis(150);
    got.iter().filter(|p| p.at > from && p.at < to).count()
}

#[test]
fn mute_in_stops_a_leg_being_heard() {
    const FRAMES: u32 = 150;
    let node = Node::start(7);
    let _events = node.events();
    let (a, b) = (
        Leg::open(&node, Format::Ulaw),
        Leg::open(&node, Format::Ulaw),
    );
    let bridge = bridge_of(&node, &[&a, &b]);
    assert_eq!(node.technology(&bridge), "native_rtp");

    let at_b = b.capture();
    let start = Instant::now();
    let talker = talk(vec![a.talker(0x3333_0001, Voice::Pattern(3))], FRAMES);
    let at = |ms| start + Duration::from_millis(ms);
    std::thread::sleep(at(1000).saturating_duration_since(Instant::now()));
    let muted = Instant::now();
    node.post(&format!("/ari/channels/{}/mute?direction=in", a.id))
        .no_content();
    std::thread::sleep(at(2000).saturating_duration_since(Instant::now()));
    let unmuted = Instant::now();
    node.delete(&format!("/ari/channels/{}/mute?direction=in", a.id))
        .no_content();
    talker.join().expect("talker");
    let end = Instant::now();
    let got = rtp_only(&at_b.finish(Duration::from_millis(200)));

    let (before, during, after) = (
        arrived_between(&got, start, muted),
        arrived_between(&got, muted, unmuted),
        arrived_between(&got, unmuted, end),
    );
    eprintln!("B received {before} before, {during} while A muted in, {after} after");
    assert!(before >= 30, "A heard before the mute: {before}");
    assert_eq!(during, 0, "A not heard while muted in");
    assert!(after >= 30, "A heard again after unmute: {after}");
    assert!(
        node.rtp_counter(&a, "rxdropped") >= 40,
        "A's muted packets are dropped"
    );
}

#[test]
fn hold_stops_a_leg_being_heard_and_is_announced() {
    const FRAMES: u32 = 150;
    let node = Node::start(8);
    let mut events = node.events();
    let (a, b) = (
        Leg::open(&node, Format::Ulaw),
        Leg::open(&node, Format::Ulaw),
    );
    let bridge = bridge_of(&node, &[&a, &b]);
    assert_eq!(node.technology(&bridge), "native_rtp");

    let at_b = b.capture();
    let start = Instant::now();
    let talker = talk(vec![a.talker(0x4444_0001, Voice::Pattern(4))], FRAMES);
    let at = |ms| start + Duration::from_millis(ms);
    std::thread::sleep(at(1000).saturating_duration_since(Instant::now()));
    let held = Instant::now();
    node.post(&format!("/ari/channels/{}/hold", a.id))
        .no_content();
    let hold = events.next_event("ChannelHold");
    assert_eq!(hold["channel"]["id"], a.id.as_str());
    std::thread::sleep(at(2000).saturating_duration_since(Instant::now()));
    let unheld = Instant::now();
    node.delete(&format!("/ari/channels/{}/hold", a.id))
        .no_content();
    let unhold = events.next_event("ChannelUnhold");
    assert_eq!(unhold["channel"]["id"], a.id.as_str());
    talker.join().expect("talker");
    let end = Instant::now();
    let got = rtp_only(&at_b.finish(Duration::from_millis(200)));

    let (before, during, after) = (
        arrived_between(&got, start, held),
        arrived_between(&got, held, unheld),
        arrived_between(&got, unheld, end),
    );
    eprintln!("B received {before} before, {during} while A held, {after} after");
    assert!(before >= 30, "A heard before hold: {before}");
    assert_eq!(during, 0, "A's media not passed on while held");
    assert!(after >= 30, "A heard again after unhold: {after}");
}

// ---------------------------------------------------------------------------
// real networks: strangers and loops against the real binary

/// An externalMedia leg aimed at `far` (its RTP socket is the test's).
fn leg_at(node: &Node, far: &str) -> (String, std::net::SocketAddr) {
    let r = node.post(&format!(
        "/ari/channels/externalMedia?app={}&external_host={far}&format=ulaw",
        media_common::APP
    ));
    let channel = r.ok();
    let id = channel["id"].as_str().expect("channel id").to_string();
    let port: u16 = channel["channelvars"]["UNICASTRTP_LOCAL_PORT"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .expect("UNICASTRTP_LOCAL_PORT");
    (id, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

fn counter(node: &Node, id: &str, name: &str) -> u64 {
    node.get(&format!("/ari/channels/{id}/rtp_statistics")).ok()[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name}"))
}

/// A leg that learns its remote (`external_host` 0.0.0.0:PORT) is not
/// captured by a stranger's garbage or stray packet; the real peer is
/// learned after its probation and media flows both ways.
#[test]
fn a_learning_leg_ignores_a_stranger_and_learns_its_peer() {
    let node = Node::start(9);
    let _events = node.events();
    let (l, l_addr) = leg_at(&node, "0.0.0.0:40000");
    let b = Leg::open(&node, Format::Ulaw);
    let bridge = node.mixing_bridge();
    node.add(&bridge, &l);
    node.add_to_bridge(&bridge, &b);
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    b.socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stranger.send_to(&[], l_addr).unwrap();
    stranger.send_to(b"garbage", l_addr).unwrap();
    stranger
        .send_to(&media_common::rtp_packet(9, 1, 160, 0, &[1; 160]), l_addr)
        .unwrap();
    for seq in 1..=4u16 {
        peer.send_to(
            &media_common::rtp_packet(1, seq, u32::from(seq) * 160, 0, &[2; 160]),
            l_addr,
        )
        .unwrap();
    }
    let mut buf = [0u8; 2048];
    let (n, _) = b.socket.recv_from(&mut buf).expect("the peer's 4th packet");
    assert_eq!(&buf[12..n], &[2; 160]);
    b.send_raw(&media_common::rtp_packet(2, 1, 160, 0, &[3; 160]));
    let (n, _) = peer.recv_from(&mut buf).expect("b → the learned peer");
    assert_eq!(&buf[12..n], &[3; 160]);
    assert_eq!(
        counter(&node, &l, "rxwrongsource"),
        6,
        "3 from the stranger, 3 on probation"
    );
}

/// Two legs bridged natively whose far ends are one reflecting peer: what
/// one leg sends comes straight back into the other. The node sees its own
/// packets come back and cuts the loop at once instead of relaying them at
/// the speed of the CPU.
#[test]
fn a_loop_through_a_reflecting_peer_is_cut() {
    let node = Node::start(10);
    let _events = node.events();
    let reflector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let far = reflector.local_addr().unwrap().to_string();
    let (a, a_addr) = leg_at(&node, &far);
    let (b, b_addr) = leg_at(&node, &far);
    let bridge = node.mixing_bridge();
    node.add(&bridge, &a);
    node.add(&bridge, &b);
    assert_eq!(node.technology(&bridge), "native_rtp");
    reflector
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    reflector
        .send_to(&media_common::rtp_packet(7, 1, 160, 0, &[1; 160]), a_addr)
        .unwrap();
    // Reflect for a second, bounded in count.
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut reflected = 0u32;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline && reflected < 100_000 {
        let Ok((n, from)) = reflector.recv_from(&mut buf) else {
            continue;
        };
        let to = if from == a_addr { b_addr } else { a_addr };
        reflector.send_to(&buf[..n], to).unwrap();
        reflected += 1;
    }
    assert!(
        reflected <= 3,
        "the loop ran: {reflected} packets reflected"
    );
    let looped = counter(&node, &a, "rxlooped") + counter(&node, &b, "rxlooped");
    assert!(looped >= 1, "the node saw its own packet come back");
}

/// A 400-member bridge is built, one join at a time, while a relay runs on
/// the same node: the relay loses nothing and passes every packet (its
/// latency is measured with `crossbar-load`, see the README).
#[test]
fn a_400_member_build_does_not_disturb_a_relay() {
    const FRAMES: u32 = 150;
    let node = Node::start_wide();
    let _events = node.events();
    let (a, b) = (
        Leg::open(&node, Format::Ulaw),
        Leg::open(&node, Format::Ulaw),
    );
    bridge_of(&node, &[&a, &b]);
    let at_b = b.capture();
    let talker = talk(vec![a.talker(0x4000_0001, Voice::Pattern(4))], FRAMES);
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let far = sink.local_addr().unwrap().to_string();
    let big = node.mixing_bridge();
    for _ in 0..400 {
        let (id, _) = leg_at(&node, &far);
        node.add(&big, &id);
    }
    talker.join().expect("talker");
    let got = rtp_only(&at_b.finish(Duration::from_millis(300)));
    assert_relayed(&got, 0x4000_0001, 4, FRAMES);
    let bridge = node.get(&format!("/ari/bridges/{big}")).ok().clone();
    assert_eq!(bridge["channels"].as_array().map(Vec::len), Some(400));
    assert_eq!(bridge["technology"], "softmix");
}
