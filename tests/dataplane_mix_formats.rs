//! A softmix of members in different formats — PCMU, PCMA, slin16 (and
//! Opus with the `opus` feature) — through the public `Dataplane` API over
//! real UDP on 127.0.0.1 (ports 44000–44199): each member sends its own
//! tone and must hear every other member's tone clearly above its own
//! (> 100×, 20 dB, Goertzel energy after decoding in its own format).

mod common_audio;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common_audio::{goertzel_energy, tone_at};
use crossbar::codec::{Decoder, Encoder};
use crossbar::config::Config;
use crossbar::media::Format;
use crossbar::shard::{BridgeSpec, Dataplane, LegSpec, MemberSpec, Technology};

const PTIME_MS: u64 = 20;

fn dataplane(port_min: u16) -> Dataplane {
    let mut config = Config::defaults();
    config.rtp.port_min = port_min;
    config.rtp.port_max = port_min + 99;
    config.dataplane.shards = 2;
    config.dataplane.pin = false;
    Dataplane::start(&config).expect("data plane starts (io_uring available)")
}

fn member(leg: u64) -> MemberSpec {
    MemberSpec {
        leg,
        mute: false,
        announcer: false,
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
            id,
            LegSpec {
                remote: socket.local_addr().unwrap(),
                format,
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
            if n < 12 {
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

const TONES: [f64; 4] = [400.0, 700.0, 1000.0, 1300.0];

async fn mixed_conference(port: u16, formats: &[Format]) {
    let dp = dataplane(port);
    let mut peers = Vec::new();
    for (i, &f) in formats.iter().enumerate() {
        peers.push(peer(&dp, i as u64 + 1, f).await);
    }
    let legs: Vec<u64> = (1..=formats.len() as u64).collect();
    assert_eq!(
        dp.set_bridge(1, bridge(&legs)).await.unwrap(),
        Technology::Softmix
    );
    let receivers: Vec<_> = peers
        .iter()
        .map(|p| receive(p, Duration::from_millis(1500)))
        .collect();
    let senders: Vec<_> = peers
        .iter()
        .zip(TONES)
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
        let own = goertzel_energy(pcm, TONES[i], rate);
        for (j, &f) in TONES.iter().enumerate().take(formats.len()) {
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
