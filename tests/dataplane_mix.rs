//! Transcoding (`simple_bridge`), softmix (also of members in different
//! formats: PCMU, PCMA, slin16, and Opus with the `opus` feature) and
//! technology switching through the public `Dataplane` API, over real UDP
//! sockets on 127.0.0.1 (ports 42000–42999, 44000–44199): tones in, decoded
//! audio measured out, on the driver `tests/run` chooses. The behaviour in
//! detail (five members, mute, silence frames, Local halves, jitter, skew)
//! is tested on virtual time in `media_sim`.
//!
//! Thresholds: two-party G.711 transcode SNR > 20 dB, PCMU↔Opus > 10 dB
//! (after delay alignment); in a mix each receiver's energy at every other
//! member's tone is > 100× (20 dB) its energy at its own tone.

mod common_audio;

#[path = "common_driver/mod.rs"]
mod common_driver;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common_audio::{goertzel_energy, snr_db, tone, tone_at};
use crossbar::codec::{Decoder, Encoder};
use crossbar::media::Format;
use crossbar::shard::{BridgeKey, BridgeSpec, Dataplane, LegId, LegSpec, MemberSpec, Technology};

const PTIME_MS: u64 = 20;

fn dataplane(port_min: u16) -> Dataplane {
    let mut config = common_driver::config();
    config.rtp.port_min = port_min;
    config.rtp.port_max = port_min + 99;
    config.dataplane.shards = 2;
    config.dataplane.pin = false;
    Dataplane::start(&config).expect("data plane starts")
}

fn member(leg: u64) -> MemberSpec {
    MemberSpec {
        leg: LegId(leg),
        mute: false,
        announcer: false,
        absorb_dtmf: false,
    }
}

fn bridge(legs: &[u64]) -> BridgeSpec {
    BridgeSpec {
        members: legs.iter().map(|&l| member(l)).collect(),
        ..BridgeSpec::default()
    }
}

/// A test endpoint: a socket on 127.0.0.1 and the leg it talks to.
struct Peer {
    socket: UdpSocket,
    leg_addr: SocketAddr,
    format: Format,
}

/// One received RTP packet.
#[derive(Clone, Debug)]
struct Got {
    seq: u16,
    ts: u32,
    ssrc: u32,
    pt: u8,
    payload: Vec<u8>,
}

async fn peer(dp: &Dataplane, id: u64, format: Format) -> Peer {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let leg_addr = dp
        .create_rtp_leg(
            LegId(id),
            LegSpec {
                remote: socket.local_addr().unwrap(),
                format,
                symmetric: false,
                dtmf_pt: None,
            },
        )
        .await
        .unwrap();
    Peer {
        socket,
        leg_addr,
        format,
    }
}

/// Sends `frames` 20 ms frames of a `freq` tone (0: digital silence) in the
/// peer's format, paced in real time; stops early when `stop` is set.
fn send_tone(
    p: &Peer,
    freq: f64,
    frames: usize,
    stop: Option<Arc<AtomicBool>>,
) -> std::thread::JoinHandle<()> {
    let socket = p.socket.try_clone().unwrap();
    let (to, format) = (p.leg_addr, p.format);
    std::thread::spawn(move || {
        let mut enc = Encoder::new(format).unwrap();
        let rate = format.sample_rate();
        let n = rate as usize * PTIME_MS as usize / 1000;
        let ticks = format.clock_rate() * PTIME_MS as u32 / 1000;
        let ssrc = 0x1000_0000 | (freq as u32);
        let start = Instant::now();
        let mut payload = vec![0u8; 2000];
        for i in 0..frames {
            if stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                break;
            }
            let pcm = if freq > 0.0 {
                tone_at(freq, rate, i * n, n)
            } else {
                vec![0; n]
            };
            let len = enc.encode(&pcm, &mut payload).unwrap();
            let mut pkt = vec![0x80, format.payload_type()];
            pkt.extend_from_slice(&(i as u16).wrapping_add(1000).to_be_bytes());
            pkt.extend_from_slice(&(i as u32 * ticks).to_be_bytes());
            pkt.extend_from_slice(&ssrc.to_be_bytes());
            pkt.extend_from_slice(&payload[..len]);
            let _ = socket.send_to(&pkt, to);
            let due = start + Duration::from_millis(PTIME_MS * (i as u64 + 1));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    })
}

/// Receives for `duration` (bounded), returning what arrived.
fn receive(p: &Peer, duration: Duration) -> std::thread::JoinHandle<Vec<Got>> {
    let socket = p.socket.try_clone().unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + duration;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let Ok(n) = socket.recv(&mut buf) else {
                continue;
            };
            // RTCP is not the media under test: another test's node may
            // report to this socket (its peer's RTP port + 1 is an
            // ephemeral port this test's socket can hold).
            if n < 12 || crossbar::rtp::packet::looks_like_rtcp(&buf[..n]) {
                continue;
            }
            got.push(Got {
                seq: u16::from_be_bytes([buf[2], buf[3]]),
                ts: u32::from_be_bytes(buf[4..8].try_into().unwrap()),
                ssrc: u32::from_be_bytes(buf[8..12].try_into().unwrap()),
                pt: buf[1] & 0x7f,
                payload: buf[12..n].to_vec(),
            });
        }
        got
    })
}

/// Decodes received packets (in arrival order) of `format` to PCM.
fn decode(format: Format, got: &[Got]) -> Vec<i16> {
    let mut dec = Decoder::new(format).unwrap();
    let mut pcm = Vec::new();
    let mut buf = vec![0i16; 5760];
    for g in got {
        if g.pt != format.payload_type() {
            continue;
        }
        let n = dec.decode(&g.payload, &mut buf).unwrap();
        pcm.extend_from_slice(&buf[..n]);
    }
    pcm
}

/// Every packet continues the one stream: one SSRC, seq + 1, ts advancing.
fn assert_continuous(got: &[Got], max_ts_step: u32) {
    assert!(!got.is_empty());
    for w in got.windows(2) {
        assert_eq!(w[1].ssrc, w[0].ssrc, "one SSRC");
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "seq continuous: {:?} → {:?}",
            (w[0].seq, w[0].ts),
            (w[1].seq, w[1].ts)
        );
        let step = w[1].ts.wrapping_sub(w[0].ts);
        assert!(
            step > 0 && step <= max_ts_step,
            "ts step {step} at seq {}",
            w[1].seq
        );
    }
}

async fn two_party_transcode(port: u16, a_format: Format, b_format: Format, min_snr: f64) {
    let dp = dataplane(port);
    let a = peer(&dp, 1, a_format).await;
    let b = peer(&dp, 2, b_format).await;
    assert_eq!(
        dp.set_bridge(BridgeKey(1), bridge(&[1, 2])).await.unwrap(),
        Technology::SimpleBridge
    );
    let frames = 50;
    let rb = receive(&b, Duration::from_millis(1400));
    let ra = receive(&a, Duration::from_millis(1400));
    let sa = send_tone(&a, 1000.0, frames, None);
    let sb = send_tone(&b, 1000.0, frames, None);
    sa.join().unwrap();
    sb.join().unwrap();
    for (got, format, label) in [
        (rb.join().unwrap(), b_format, "a→b"),
        (ra.join().unwrap(), a_format, "b→a"),
    ] {
        assert!(got.len() >= frames - 2, "{label}: {} packets", got.len());
        assert!(got.iter().all(|g| g.pt == format.payload_type()));
        assert_continuous(&got, format.clock_rate() / 50 * 3);
        let pcm = decode(format, &got);
        let rate = format.sample_rate();
        // Skip the first 100 ms (codec start-up), compare 0.5 s.
        let skip = rate as usize / 10;
        let reference = tone(1000.0, rate, rate as usize / 2);
        let snr = snr_db(&reference, &pcm[skip..]);
        eprintln!("{a_format}↔{b_format} {label}: SNR {snr:.1} dB");
        assert!(snr > min_snr, "{label}: SNR {snr:.1} dB ≤ {min_snr}");
    }
    let s = dp.rtp_stats(LegId(1)).await.unwrap();
    assert!(s.rx_packets >= frames as u64 - 2);
    assert_eq!(s.rx_lost, 0, "{s:?}");
    assert!(s.rx_ssrc.is_some() && s.tx_ssrc.is_some());
}

#[tokio::test]
async fn transcode_pcmu_pcma_keeps_the_tone() {
    two_party_transcode(42000, Format::Ulaw, Format::Alaw, 20.0).await;
}

#[cfg(feature = "opus")]
#[tokio::test]
async fn transcode_pcmu_opus_keeps_the_tone() {
    two_party_transcode(42100, Format::Ulaw, Format::Opus, 10.0).await;
}

const TONES: [f64; 5] = [400.0, 700.0, 1000.0, 1300.0, 1600.0];

/// Each member sends its tone; checks each hears every other and not itself.
async fn conference(port: u16, n: usize) {
    let dp = dataplane(port);
    let mut peers = Vec::new();
    for i in 0..n {
        peers.push(peer(&dp, i as u64 + 1, Format::Ulaw).await);
    }
    let legs: Vec<u64> = (1..=n as u64).collect();
    assert_eq!(
        dp.set_bridge(BridgeKey(1), bridge(&legs)).await.unwrap(),
        Technology::Softmix
    );
    let receivers: Vec<_> = peers
        .iter()
        .map(|p| receive(p, Duration::from_millis(1300)))
        .collect();
    let senders: Vec<_> = peers
        .iter()
        .zip(TONES)
        .map(|(p, f)| send_tone(p, f, 60, None))
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    for (i, r) in receivers.into_iter().enumerate() {
        let got = r.join().unwrap();
        assert!(got.len() >= 55, "member {i}: {} packets", got.len());
        assert_continuous(&got, 160);
        // Leave the first 200 ms (jitter buffer prefetch, start-up).
        let pcm = decode(Format::Ulaw, &got);
        let pcm = &pcm[1600..pcm.len().min(1600 + 4800)];
        let own = goertzel_energy(pcm, TONES[i], 8000);
        for (j, &f) in TONES.iter().enumerate().take(n) {
            if j == i {
                continue;
            }
            let other = goertzel_energy(pcm, f, 8000);
            eprintln!("n={n} member {i}: {f} Hz {other:.0} vs own {own:.1}");
            assert!(
                other > 100.0 * own.max(1.0),
                "member {i} hears {f} Hz ({other:.0}) not clearly above its own tone ({own:.1})"
            );
        }
    }
}

#[tokio::test]
async fn softmix_three_members_hear_the_others_not_themselves() {
    conference(42200, 3).await;
}

#[tokio::test]
async fn switching_two_three_two_keeps_each_stream_continuous() {
    let dp = dataplane(42600);
    let a = peer(&dp, 1, Format::Ulaw).await;
    let b = peer(&dp, 2, Format::Ulaw).await;
    let c = peer(&dp, 3, Format::Ulaw).await;
    let stop = Arc::new(AtomicBool::new(false));
    let rb = receive(&b, Duration::from_millis(2200));
    let ra = receive(&a, Duration::from_millis(2200));
    let senders = [
        send_tone(&a, 400.0, 200, Some(stop.clone())),
        send_tone(&b, 700.0, 200, Some(stop.clone())),
        send_tone(&c, 1000.0, 200, Some(stop.clone())),
    ];
    let mut technologies = Vec::new();
    technologies.push(dp.set_bridge(BridgeKey(1), bridge(&[1, 2])).await.unwrap());
    tokio::time::sleep(Duration::from_millis(600)).await;
    technologies.push(
        dp.set_bridge(BridgeKey(1), bridge(&[1, 2, 3]))
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    technologies.push(dp.set_bridge(BridgeKey(1), bridge(&[1, 2])).await.unwrap());
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    assert_eq!(
        technologies,
        [
            Technology::NativeRtp,
            Technology::Softmix,
            Technology::NativeRtp
        ]
    );
    for (label, got, own, heard) in [
        ("b", rb.join().unwrap(), 700.0, 400.0),
        ("a", ra.join().unwrap(), 400.0, 700.0),
    ] {
        assert!(got.len() >= 80, "{label}: {} packets", got.len());
        // No gap beyond one ptime in seq; ts never jumps beyond ~elapsed.
        assert_continuous(&got, 160 * 3);
        let pcm = decode(Format::Ulaw, &got);
        assert!(goertzel_energy(&pcm, heard, 8000) > 100.0 * goertzel_energy(&pcm, own, 8000));
    }
}

#[tokio::test]
async fn holding_bridge_announcer_is_heard_participants_are_not() {
    let dp = dataplane(42800);
    let mut peers = Vec::new();
    for i in 1..=3 {
        peers.push(peer(&dp, i, Format::Ulaw).await);
    }
    let mut spec = bridge(&[1, 2, 3]);
    spec.holding = true;
    spec.members[0].announcer = true;
    assert_eq!(
        dp.set_bridge(BridgeKey(1), spec).await.unwrap(),
        Technology::HoldingBridge
    );
    let r2 = receive(&peers[1], Duration::from_millis(1000));
    let r1 = receive(&peers[0], Duration::from_millis(1000));
    let senders = [
        send_tone(&peers[0], 400.0, 40, None),
        send_tone(&peers[1], 700.0, 40, None),
        send_tone(&peers[2], 1000.0, 40, None),
    ];
    for s in senders {
        s.join().unwrap();
    }
    assert!(r1.join().unwrap().is_empty(), "the announcer hears no one");
    let pcm = decode(Format::Ulaw, &r2.join().unwrap());
    let heard = goertzel_energy(&pcm, 400.0, 8000);
    assert!(heard > 100.0 * goertzel_energy(&pcm, 1000.0, 8000).max(1.0));
    assert!(heard > 100.0 * goertzel_energy(&pcm, 700.0, 8000).max(1.0));
}

#[tokio::test]
async fn same_format_with_dtmf_events_passes_payload_and_events_through() {
    let dp = dataplane(42900);
    let a = peer(&dp, 1, Format::Ulaw).await;
    let b = peer(&dp, 2, Format::Ulaw).await;
    let mut spec = bridge(&[1, 2]);
    spec.dtmf_events = true;
    assert_eq!(
        dp.set_bridge(BridgeKey(1), spec).await.unwrap(),
        Technology::SimpleBridge
    );
    let r = receive(&b, Duration::from_millis(500));
    let voice: Vec<u8> = (0..160u16).map(|i| (i * 3) as u8).collect();
    let event = [5u8, 0x8a, 0x01, 0x40];
    for (seq, pt, body) in [(1u16, 0u8, &voice[..]), (2, 101, &event[..])] {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&0xabcd_u32.to_be_bytes());
        p.extend_from_slice(body);
        a.socket.send_to(&p, a.leg_addr).unwrap();
    }
    let got = r.join().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].pt, &got[0].payload[..]), (0, &voice[..]));
    assert_eq!((got[1].pt, &got[1].payload[..]), (101, &event[..]));
    assert_ne!(got[0].ssrc, 0xabcd, "header rewritten");
    assert_continuous(&got, 160);
}

// ---- a softmix of members in different formats (ports 44000–44199) --------

const FORMAT_TONES: [f64; 4] = [400.0, 700.0, 1000.0, 1300.0];

async fn mixed_conference(port: u16, formats: &[Format]) {
    let dp = dataplane(port);
    let mut peers = Vec::new();
    for (i, &f) in formats.iter().enumerate() {
        peers.push(peer(&dp, i as u64 + 1, f).await);
    }
    let legs: Vec<u64> = (1..=formats.len() as u64).collect();
    assert_eq!(
        dp.set_bridge(BridgeKey(1), bridge(&legs)).await.unwrap(),
        Technology::Softmix
    );
    let receivers: Vec<_> = peers
        .iter()
        .map(|p| receive(p, Duration::from_millis(1500)))
        .collect();
    let senders: Vec<_> = peers
        .iter()
        .zip(FORMAT_TONES)
        .map(|(p, f)| send_tone(p, f, 70, None))
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    for (i, r) in receivers.into_iter().enumerate() {
        let format = formats[i];
        let got = r.join().unwrap();
        assert!(
            got.len() >= 60,
            "member {i} ({format}): {} packets",
            got.len()
        );
        assert!(
            got.iter().all(|g| g.pt == format.payload_type()),
            "member {i} gets its own format"
        );
        assert!(
            got.windows(2).all(|w| w[0].ssrc == w[1].ssrc
                && w[1].seq == w[0].seq.wrapping_add(1)
                && w[1].ts.wrapping_sub(w[0].ts) == format.clock_rate() / 50),
            "member {i}: one continuous stream of 20 ms frames"
        );
        let rate = format.sample_rate();
        let pcm = decode(format, &got);
        // Leave the first 200 ms (jitter buffer prefetch, codec start-up),
        // measure 600 ms.
        let skip = rate as usize / 5;
        assert!(
            pcm.len() > skip + rate as usize / 2,
            "member {i}: {} samples",
            pcm.len()
        );
        let pcm = &pcm[skip..pcm.len().min(skip + rate as usize * 3 / 5)];
        let own = goertzel_energy(pcm, FORMAT_TONES[i], rate);
        for (j, &f) in FORMAT_TONES.iter().enumerate().take(formats.len()) {
            if j == i {
                continue;
            }
            let other = goertzel_energy(pcm, f, rate);
            eprintln!(
                "member {i} ({format}): hears {f} Hz from {} at {other:.0} vs own {own:.1}",
                formats[j]
            );
            assert!(
                other > 100.0 * own.max(1.0),
                "member {i} ({format}) hears {f} Hz ({other:.0}) not clearly above its own tone ({own:.1})"
            );
        }
    }
}

#[tokio::test]
async fn softmix_pcmu_pcma_slin16_members_hear_the_others_not_themselves() {
    mixed_conference(44000, &[Format::Ulaw, Format::Alaw, Format::Slin16]).await;
}

#[cfg(feature = "opus")]
#[tokio::test]
async fn softmix_pcmu_pcma_slin16_opus_members_hear_the_others_not_themselves() {
    mixed_conference(
        44100,
        &[Format::Ulaw, Format::Alaw, Format::Slin16, Format::Opus],
    )
    .await;
}
