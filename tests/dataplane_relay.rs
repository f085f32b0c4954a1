//! The data plane's native relay through the public `Dataplane` API, over
//! real UDP sockets on 127.0.0.1, on the driver `tests/run` chooses:
//! payload passthrough, header rewrite, zero loss, source learning,
//! technology choice. The behaviour in detail (garbage, mute/hold, Local
//! pairs, loss and reordering) is tested on virtual time in `media_sim`.

#[path = "common_driver/mod.rs"]
mod common_driver;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crossbar::driver::DriverKind;
use crossbar::media::Format;
use crossbar::shard::{BridgeKey, BridgeSpec, Dataplane, LegId, LegSpec, MemberSpec, Technology};

const PACKETS: u16 = 500;

fn dataplane(port_min: u16) -> Dataplane {
    let mut config = common_driver::config();
    config.rtp.port_min = port_min;
    config.rtp.port_max = port_min + 199;
    config.dataplane.shards = 2;
    config.dataplane.pin = false;
    Dataplane::start(&config).expect("data plane starts")
}

/// The suite runs on the driver `tests/run` asks for, with the features it
/// leaves on: the data plane must say so.
#[test]
fn runs_on_the_driver_asked_for() {
    let dp = dataplane(30_600);
    let choice = dp.driver();
    let asked = std::env::var("CROSSBAR_DATAPLANE_IO").unwrap_or_default();
    match asked.as_str() {
        "epoll" => assert_eq!(choice.kind, DriverKind::Epoll, "{}", choice.reason),
        "io_uring" => assert_eq!(choice.kind.name(), "io_uring", "{}", choice.reason),
        _ => {}
    }
    let disabled = std::env::var("CROSSBAR_DATAPLANE_URING_DISABLE").unwrap_or_default();
    if let DriverKind::IoUring(f) = choice.kind {
        if disabled.contains("multishot_recv") {
            assert!(!f.multishot_recv, "{}", choice.reason);
        }
        if disabled.contains("send_to") {
            assert!(!f.send_to, "{}", choice.reason);
        }
        if disabled.contains("defer_taskrun") {
            assert!(!f.defer_taskrun, "{}", choice.reason);
        }
    }
}

/// How long a client waits for a packet it expects (generous: a loaded CI
/// machine may not schedule the shard at once; a pass never waits for it).
const EXPECT: Duration = Duration::from_secs(2);

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(EXPECT)).unwrap();
    s
}

fn rtp(ssrc: u32, seq: u16, ts: u32, pt: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(body);
    p
}

fn body(i: u16) -> Vec<u8> {
    (0..160u16).map(|k| (k.wrapping_mul(7) ^ i) as u8).collect()
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

async fn leg(dp: &Dataplane, id: u64, remote: SocketAddr) -> SocketAddr {
    dp.create_rtp_leg(
        LegId(id),
        LegSpec {
            remote,
            format: Format::Ulaw,
            symmetric: false,
            dtmf_pt: None,
        },
    )
    .await
    .unwrap()
}

/// Receives up to `want` datagrams on `socket` until a read times out.
fn receive(socket: UdpSocket, want: usize) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while got.len() < want {
            match socket.recv(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(_) => break,
            }
        }
        got
    })
}

/// Sends `count` paced packets of one stream from `from` to `to`.
fn send_stream(from: &UdpSocket, to: SocketAddr, ssrc: u32, first_seq: u16, count: u16) {
    for i in 0..count {
        let seq = first_seq.wrapping_add(i);
        let p = rtp(ssrc, seq, 8000 + u32::from(i) * 160, 0, &body(i));
        from.send_to(&p, to).unwrap();
        if i % 4 == 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Checks a relayed stream: payloads identical and in order, our SSRC (not
/// the sender's), seq +1 and ts +160 from packet to packet.
fn check_stream(got: &[Vec<u8>], sender_ssrc: u32, count: u16) {
    assert_eq!(got.len(), usize::from(count), "zero loss");
    let ssrc = u32::from_be_bytes(got[0][8..12].try_into().unwrap());
    assert_ne!(ssrc, sender_ssrc, "SSRC rewritten");
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.len(), 172);
        assert_eq!(p[0], 0x80);
        assert_eq!(p[1] & 0x7f, 0);
        assert_eq!(&p[12..], &body(i as u16)[..], "payload byte for byte");
        assert_eq!(u32::from_be_bytes(p[8..12].try_into().unwrap()), ssrc);
        if i > 0 {
            let q = &got[i - 1];
            let seq = u16::from_be_bytes([p[2], p[3]]);
            let prev = u16::from_be_bytes([q[2], q[3]]);
            assert_eq!(seq, prev.wrapping_add(1), "seq continuous at {i}");
            let ts = u32::from_be_bytes(p[4..8].try_into().unwrap());
            let prev_ts = u32::from_be_bytes(q[4..8].try_into().unwrap());
            assert_eq!(ts, prev_ts.wrapping_add(160), "ts continuous at {i}");
        }
    }
}

/// Asserts nothing arrives on `socket` for a short while.
fn silent(socket: &UdpSocket) {
    socket
        .set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(socket.recv(&mut buf).is_err(), "expected no media");
    socket.set_read_timeout(Some(EXPECT)).unwrap();
}

/// Polls a leg's stats until `done` holds (bounded).
async fn stats_until(
    dp: &Dataplane,
    leg: u64,
    done: impl Fn(&crossbar::shard::RtpStats) -> bool,
) -> crossbar::shard::RtpStats {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let s = dp.rtp_stats(LegId(leg)).await.unwrap();
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn relay_two_legs_both_ways_zero_loss() {
    let dp = dataplane(41000);
    let (ca, cb) = (client(), client());
    let la = leg(&dp, 1, ca.local_addr().unwrap()).await;
    let lb = leg(&dp, 2, cb.local_addr().unwrap()).await;
    assert_ne!(
        dp.shard_of_leg(LegId(1)),
        dp.shard_of_leg(LegId(2)),
        "legs start on different shards"
    );
    let tech = dp.set_bridge(BridgeKey(7), bridge(&[1, 2])).await.unwrap();
    assert_eq!(tech, Technology::NativeRtp);
    assert_eq!(
        dp.shard_of_leg(LegId(1)),
        dp.shard_of_leg(LegId(2)),
        "bridge members share a shard"
    );

    let rb = receive(cb.try_clone().unwrap(), usize::from(PACKETS));
    let ra = receive(ca.try_clone().unwrap(), usize::from(PACKETS));
    let sa = ca.try_clone().unwrap();
    let a_to_b = std::thread::spawn(move || send_stream(&sa, la, 0x1111, 65_300, PACKETS));
    send_stream(&cb, lb, 0x2222, 10, PACKETS);
    a_to_b.join().unwrap();
    check_stream(&rb.join().unwrap(), 0x1111, PACKETS);
    check_stream(&ra.join().unwrap(), 0x2222, PACKETS);

    let s1 = dp.rtp_stats(LegId(1)).await.unwrap();
    let s2 = dp.rtp_stats(LegId(2)).await.unwrap();
    assert_eq!((s1.rx_packets, s1.tx_packets), (500, 500));
    assert_eq!((s2.rx_packets, s2.tx_packets), (500, 500));
    assert_eq!((s1.rx_bad, s1.rx_dropped, s1.tx_errors), (0, 0, 0));
    assert_eq!(s1.local, Some(la));
    assert_eq!(s2.remote, Some(cb.local_addr().unwrap()));

    // A new source on leg 1 continues leg 2's outgoing stream.
    let rb = receive(cb.try_clone().unwrap(), 2);
    ca.send_to(&rtp(0x3333, 4, 99, 0, &body(0)), la).unwrap();
    ca.send_to(&rtp(0x3333, 5, 259, 0, &body(1)), la).unwrap();
    let got = rb.join().unwrap();
    assert_eq!(got.len(), 2);
    dp.destroy_bridge(BridgeKey(7)).await.unwrap();
    dp.destroy_leg(LegId(1)).await.unwrap();
    dp.destroy_leg(LegId(2)).await.unwrap();
    assert!(dp.rtp_stats(LegId(1)).await.is_err());
}

/// The real-socket check of source learning (the rules are tested on
/// virtual time in media_sim): a stranger's garbage and a lone packet do not
/// capture the leg; the real peer is learned after its probation.
#[tokio::test]
async fn unknown_remote_is_learned_after_probation_not_from_a_stranger() {
    let dp = dataplane(41800);
    let (ca, cb, other) = (client(), client(), client());
    let la = leg(&dp, 1, "0.0.0.0:0".parse().unwrap()).await;
    let lb = leg(&dp, 2, cb.local_addr().unwrap()).await;
    dp.set_bridge(BridgeKey(1), bridge(&[1, 2])).await.unwrap();
    // A stranger first: an empty datagram, garbage, one RTP packet.
    other.send_to(&[], la).unwrap();
    other.send_to(b"not rtp at all", la).unwrap();
    other.send_to(&rtp(3, 1, 160, 0, &body(1)), la).unwrap();
    silent(&cb);
    // The real peer: four packets in sequence, the fourth is relayed.
    for seq in 1..=4u16 {
        ca.send_to(&rtp(1, seq, u32::from(seq) * 160, 0, &body(seq)), la)
            .unwrap();
    }
    let mut buf = [0u8; 2048];
    assert!(cb.recv(&mut buf).is_ok());
    // b → a now goes to the learned address.
    cb.send_to(&rtp(2, 1, 160, 0, &body(1)), lb).unwrap();
    assert!(ca.recv(&mut buf).is_ok());
    let s = stats_until(&dp, 1, |s| s.rx_wrong_source == 6).await;
    assert_eq!(s.remote, Some(ca.local_addr().unwrap()));
    assert_eq!(s.rx_wrong_source, 6, "3 from the stranger, 3 on probation");
}

#[tokio::test]
async fn technology_follows_membership_and_flags() {
    let dp = dataplane(41900);
    let c = client();
    for id in 1..=3 {
        leg(&dp, id, c.local_addr().unwrap()).await;
    }
    dp.create_rtp_leg(
        LegId(4),
        LegSpec {
            remote: c.local_addr().unwrap(),
            format: Format::Alaw,
            symmetric: false,
            dtmf_pt: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        dp.set_bridge(BridgeKey(1), bridge(&[1])).await.unwrap(),
        Technology::SimpleBridge
    );
    assert_eq!(
        dp.set_bridge(BridgeKey(1), bridge(&[1, 2])).await.unwrap(),
        Technology::NativeRtp
    );
    assert_eq!(
        dp.set_bridge(BridgeKey(1), bridge(&[1, 2, 3]))
            .await
            .unwrap(),
        Technology::Softmix
    );
    assert_eq!(
        dp.set_bridge(BridgeKey(1), bridge(&[1, 4])).await.unwrap(),
        Technology::SimpleBridge
    );
    let mut spec = bridge(&[1, 2]);
    spec.dtmf_events = true;
    assert_eq!(
        dp.set_bridge(BridgeKey(1), spec).await.unwrap(),
        Technology::SimpleBridge
    );
    let mut spec = bridge(&[1, 2]);
    spec.holding = true;
    assert_eq!(
        dp.set_bridge(BridgeKey(1), spec).await.unwrap(),
        Technology::HoldingBridge
    );
    assert_eq!(
        dp.set_bridge(BridgeKey(2), bridge(&[1, 99])).await,
        Err(crossbar::shard::DataplaneError::Unknown)
    );
}
