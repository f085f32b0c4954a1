//! RTCP of RTP legs through the public `Dataplane` API, over real UDP on
//! 127.0.0.1 (crossbar's ports 43000–43399, the test endpoints' 43600–43999):
//! reports crossbar sends on legs it terminates (SR/RR + SDES, loss in the
//! report block), reports it receives (remote view of our stream, RTT),
//! garbage on the RTCP port, and RTCP passed through a `native_rtp` relay.
//! The report interval is shortened to 200 ms (`dataplane.rtcp_interval_ms`).

#[path = "common_driver/mod.rs"]
mod common_driver;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crossbar::media::Format;
use crossbar::rtp::rtcp::{self, ReportBlock, RtcpIter, RtcpPacket, SenderInfo};
use crossbar::rtp::Ssrc;
use crossbar::shard::{BridgeKey, BridgeSpec, Dataplane, LegId, LegSpec, MemberSpec, Technology};

const INTERVAL_MS: u32 = 200;

fn dataplane(port_min: u16) -> Dataplane {
    let mut config = common_driver::config();
    config.rtp.port_min = port_min;
    config.rtp.port_max = port_min + 99;
    config.dataplane.shards = 2;
    config.dataplane.pin = false;
    config.dataplane.rtcp_interval_ms = INTERVAL_MS;
    Dataplane::start(&config).expect("data plane starts")
}

fn bridge(legs: &[u64]) -> BridgeSpec {
    BridgeSpec {
        members: legs
            .iter()
            .map(|&leg| MemberSpec {
                leg: LegId(leg),
                mute: false,
                announcer: false,
                absorb_dtmf: false,
            })
            .collect(),
        ..BridgeSpec::default()
    }
}

/// A test endpoint: RTP on an even port, RTCP on the next one.
struct Peer {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    leg_addr: SocketAddr,
    leg_rtcp: SocketAddr,
    ssrc: u32,
}

fn bind_pair(from: u16) -> (UdpSocket, UdpSocket) {
    for port in (from..from + 100).step_by(2) {
        let Ok(rtp) = UdpSocket::bind(("127.0.0.1", port)) else {
            continue;
        };
        let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) else {
            continue;
        };
        for s in [&rtp, &rtcp] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        return (rtp, rtcp);
    }
    panic!("no free endpoint port pair from {from}");
}

async fn peer(dp: &Dataplane, id: u64, format: Format, endpoint_port: u16) -> Peer {
    let (rtp, rtcp) = bind_pair(endpoint_port);
    let leg_addr = dp
        .create_rtp_leg(
            LegId(id),
            LegSpec {
                remote: rtp.local_addr().unwrap(),
                format,
                symmetric: false,
                dtmf_pt: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(leg_addr.port() % 2, 0, "RTP on an even port");
    let leg_rtcp = SocketAddr::new(leg_addr.ip(), leg_addr.port() + 1);
    Peer {
        rtp,
        rtcp,
        leg_addr,
        leg_rtcp,
        ssrc: 0x5000_0000 | id as u32,
    }
}

/// One 20 ms µ-law/A-law packet (silence) with `seq`.
fn rtp_packet(format: Format, ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, format.payload_type()];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

/// Sends packets `seqs` paced at 20 ms.
fn send_rtp(p: &Peer, format: Format, seqs: Vec<u16>) -> std::thread::JoinHandle<()> {
    let socket = p.rtp.try_clone().unwrap();
    let (to, ssrc) = (p.leg_addr, p.ssrc);
    std::thread::spawn(move || {
        let start = Instant::now();
        for (i, seq) in seqs.into_iter().enumerate() {
            let _ = socket.send_to(&rtp_packet(format, ssrc, seq), to);
            let due = start + Duration::from_millis(20 * (i as u64 + 1));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    })
}

/// Everything a socket receives for `duration` from the leg at `leg`
/// (its RTP or RTCP port), with arrival times. Datagrams from elsewhere —
/// another test's node reporting to a port this socket happens to hold —
/// are not the leg's.
fn collect(
    socket: &UdpSocket,
    leg: std::net::SocketAddr,
    duration: Duration,
) -> std::thread::JoinHandle<Vec<(Instant, Vec<u8>)>> {
    let socket = socket.try_clone().unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + duration;
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                if from.ip() != leg.ip()
                    || (from.port() != leg.port() && from.port() != leg.port() + 1)
                {
                    continue;
                }
                got.push((Instant::now(), buf[..n].to_vec()));
            }
        }
        got
    })
}

/// A decoded report of ours: SR info (if an SR), sender SSRC, blocks,
/// whether an SDES CNAME followed.
#[derive(Debug)]
struct Report {
    at: Instant,
    ssrc: u32,
    sr: Option<SenderInfo>,
    blocks: Vec<ReportBlock>,
    cname: Option<String>,
}

fn decode(got: &[(Instant, Vec<u8>)]) -> Vec<Report> {
    got.iter()
        .map(|(at, d)| {
            rtcp::summarize(d).unwrap_or_else(|e| panic!("invalid RTCP {e}: {d:?}"));
            let mut r = Report {
                at: *at,
                ssrc: 0,
                sr: None,
                blocks: Vec::new(),
                cname: None,
            };
            for (i, p) in RtcpIter::new(d).enumerate() {
                match p.unwrap() {
                    RtcpPacket::SenderReport { ssrc, info, blocks } if i == 0 => {
                        r.ssrc = ssrc.0;
                        r.sr = Some(info);
                        r.blocks = blocks.collect();
                    }
                    RtcpPacket::ReceiverReport { ssrc, blocks } if i == 0 => {
                        r.ssrc = ssrc.0;
                        r.blocks = blocks.collect();
                    }
                    RtcpPacket::SourceDescription { count: 1, body } => {
                        assert_eq!(&body[..4], &r.ssrc.to_be_bytes(), "SDES of the sender");
                        assert_eq!(body[4], 1, "CNAME item");
                        let n = usize::from(body[5]);
                        r.cname = Some(String::from_utf8_lossy(&body[6..6 + n]).into());
                    }
                    other => panic!("unexpected {other:?} at {i}"),
                }
            }
            r
        })
        .collect()
}

#[tokio::test]
async fn softmix_leg_gets_sr_and_rr_reflecting_loss() {
    let dp = dataplane(43000);
    let a = peer(&dp, 1, Format::Ulaw, 43600).await;
    let b = peer(&dp, 2, Format::Alaw, 43700).await;
    let c = peer(&dp, 3, Format::Ulaw, 43800).await;
    assert_eq!(
        dp.set_bridge(BridgeKey(1), bridge(&[1, 2, 3]))
            .await
            .unwrap(),
        Technology::Softmix
    );
    let rtp_in = collect(&a.rtp, a.leg_addr, Duration::from_millis(2600));
    let rtcp_in = collect(&a.rtcp, a.leg_addr, Duration::from_millis(2600));
    // a drops 5 packets (seq 1010..1015) on purpose.
    let dropped = 5u16;
    let seqs: Vec<u16> = (1000..1060).filter(|s| !(1010..1015).contains(s)).collect();
    let senders = [
        send_rtp(&a, Format::Ulaw, seqs),
        send_rtp(&b, Format::Alaw, (0..60).collect()),
        send_rtp(&c, Format::Ulaw, (0..60).collect()),
    ];
    for s in senders {
        s.join().unwrap();
    }
    // a leaves: no more RTP to it; the next report is its last SR, then RRs.
    dp.set_bridge(BridgeKey(1), bridge(&[2, 3])).await.unwrap();
    let rtp: Vec<_> = rtp_in.join().unwrap();
    let reports = decode(&rtcp_in.join().unwrap());
    let rtp_ssrc = u32::from_be_bytes(rtp[0].1[8..12].try_into().unwrap());
    eprintln!("{} RTP, {} reports", rtp.len(), reports.len());
    for r in &reports {
        eprintln!("{:?} {:?}", r.sr, r.blocks);
    }
    assert!(reports.len() >= 6, "{} reports in 2.6 s", reports.len());
    for r in &reports {
        assert_eq!(r.ssrc, rtp_ssrc, "our SSRC = the SSRC of the RTP we send");
        assert_eq!(r.cname.as_deref(), Some("crossbar@127.0.0.1"));
        assert!(r.blocks.len() <= 1);
        for b in &r.blocks {
            assert_eq!(b.ssrc, Ssrc(a.ssrc), "block about a's stream");
        }
    }
    // Each SR counts the RTP a had received before it arrived (±1–2: the
    // two sockets are read by two threads).
    let srs: Vec<&Report> = reports.iter().filter(|r| r.sr.is_some()).collect();
    assert!(srs.len() >= 3, "{} SRs", srs.len());
    for sr in &srs {
        let before = rtp.iter().filter(|(t, _)| *t <= sr.at).count() as u32;
        let info = sr.sr.unwrap();
        assert!(
            info.packets <= before + 1 && info.packets + 2 >= before,
            "SR says {} packets, {} received before it",
            info.packets,
            before
        );
        assert_eq!(info.octets, info.packets * 160);
    }
    let last = srs.last().unwrap().sr.unwrap();
    assert_eq!(last.packets as usize, rtp.len(), "last SR counts all RTP");
    assert!(
        reports.last().unwrap().sr.is_none(),
        "RR once nothing is sent"
    );
    // Loss: some block saw a fraction lost; the last has all 5 lost.
    let blocks: Vec<&ReportBlock> = reports.iter().flat_map(|r| &r.blocks).collect();
    assert!(blocks.iter().any(|b| b.fraction_lost > 0), "{blocks:?}");
    let lb = blocks.last().unwrap();
    assert_eq!(lb.cumulative_lost, i32::from(dropped));
    assert_eq!(lb.highest_seq, 1059);
    let s = dp.rtp_stats(LegId(1)).await.unwrap();
    // One more report may have left after the capture stopped.
    let sent = s.tx_rtcp as usize;
    assert!(
        sent == reports.len() || sent == reports.len() + 1,
        "{sent} vs {}",
        reports.len()
    );
    assert_eq!(s.rx_lost, i64::from(dropped));
}

#[tokio::test]
async fn rtcp_received_shows_in_stats_and_garbage_is_harmless() {
    let dp = dataplane(43100);
    let a = peer(&dp, 1, Format::Ulaw, 43600).await;
    let b = peer(&dp, 2, Format::Alaw, 43700).await;
    assert_eq!(
        dp.set_bridge(BridgeKey(1), bridge(&[1, 2])).await.unwrap(),
        Technology::SimpleBridge
    );
    let rtcp_in = collect(&a.rtcp, a.leg_addr, Duration::from_millis(1000));
    let rtp_in = collect(&a.rtp, a.leg_addr, Duration::from_millis(1400));
    let sb = send_rtp(&b, Format::Alaw, (0..60).collect());
    let sa = send_rtp(&a, Format::Ulaw, (0..60).collect());
    // Wait for an SR of ours, to answer it (RTT).
    let reports = decode(&rtcp_in.join().unwrap());
    let sr = reports
        .iter()
        .rev()
        .find(|r| r.sr.is_some())
        .expect("an SR within 1 s");
    let ours = sr.ssrc;
    // Garbage on the RTCP port: not RTCP, and RTCP-looking but malformed.
    a.rtcp.send_to(b"hello, not rtcp", a.leg_rtcp).unwrap();
    a.rtcp
        .send_to(&[0x81, 201, 0, 9, 1, 2, 3, 4], a.leg_rtcp)
        .unwrap();
    // Our SR + RR-style block about crossbar's stream, echoing its SR.
    let mut buf = [0u8; 128];
    let info = SenderInfo {
        ntp: crossbar::clock::ntp_now(),
        rtp_ts: 4242,
        packets: 17,
        octets: 2720,
    };
    let block = ReportBlock {
        ssrc: Ssrc(ours),
        fraction_lost: 64,
        cumulative_lost: 7,
        highest_seq: 1234,
        jitter: 33,
        last_sr: rtcp::ntp_middle(sr.sr.unwrap().ntp),
        delay_since_last_sr: rtcp::dlsr_units(sr.at.elapsed()),
    };
    let n = rtcp::write_sr(&mut buf, Ssrc(a.ssrc), &info, &[block]).unwrap();
    let m = rtcp::write_sdes_cname(&mut buf[n..], Ssrc(a.ssrc), b"peer-a").unwrap();
    a.rtcp.send_to(&buf[..n + m], a.leg_rtcp).unwrap();
    // And an RR muxed on the RTP port.
    let k = rtcp::write_rr(&mut buf, Ssrc(a.ssrc), &[]).unwrap();
    a.rtp.send_to(&buf[..k], a.leg_addr).unwrap();
    sa.join().unwrap();
    sb.join().unwrap();
    let rtp = rtp_in.join().unwrap();
    assert!(rtp.len() >= 50, "media still flows: {}", rtp.len());
    let s = dp.rtp_stats(LegId(1)).await.unwrap();
    eprintln!("{s:?}");
    assert_eq!(s.rx_rtcp_bad, 2);
    assert_eq!(s.rx_rtcp, 2);
    assert_eq!(s.rx_rtcp_reports, 2);
    assert_eq!(s.remote_sr, Some(info));
    assert_eq!(s.remote_reports, 1);
    assert_eq!(s.remote_fraction_lost, 64);
    assert_eq!(s.remote_cumulative_lost, 7);
    assert_eq!(s.remote_jitter, 33);
    assert_eq!(s.remote_max_jitter, 33);
    let rtt = s.rtt_ms.expect("rtt");
    assert!((0.0..50.0).contains(&rtt), "rtt {rtt} ms on loopback");
    assert_eq!(s.rx_lost, 0);
    // After an RR on the RTP port, reports go there (rtcp-mux).
    let muxed = collect(&a.rtp, a.leg_addr, Duration::from_millis(700))
        .join()
        .unwrap();
    let rtcp_on_rtp = muxed
        .iter()
        .filter(|(_, d)| (200..=201).contains(&d[1]))
        .count();
    assert!(rtcp_on_rtp >= 1, "reports follow rtcp-mux");
    // Our next SR's block echoes the remote's SR (LSR).
    let later = decode(
        &muxed
            .into_iter()
            .filter(|(_, d)| (200..=201).contains(&d[1]))
            .collect::<Vec<_>>(),
    );
    assert!(later
        .iter()
        .flat_map(|r| &r.blocks)
        .all(|b| b.last_sr == rtcp::ntp_middle(info.ntp)));
}

#[tokio::test]
async fn native_rtp_relays_rtcp_with_ssrcs_rewritten() {
    let dp = dataplane(43200);
    let a = peer(&dp, 1, Format::Ulaw, 43600).await;
    let b = peer(&dp, 2, Format::Ulaw, 43700).await;
    assert_eq!(
        dp.set_bridge(BridgeKey(1), bridge(&[1, 2])).await.unwrap(),
        Technology::NativeRtp
    );
    let b_rtcp = collect(&b.rtcp, b.leg_addr, Duration::from_millis(1200));
    let sa = send_rtp(&a, Format::Ulaw, (0..30).collect());
    let sb = send_rtp(&b, Format::Ulaw, (0..30).collect());
    std::thread::sleep(Duration::from_millis(300));
    let (sa_stats, sb_stats) = (
        dp.rtp_stats(LegId(1)).await.unwrap(),
        dp.rtp_stats(LegId(2)).await.unwrap(),
    );
    let a_out = sa_stats.tx_ssrc.unwrap();
    let b_out = sb_stats.tx_ssrc.unwrap();
    // a's RR about the stream it receives from leg 1 (SSRC a_out).
    let mut buf = [0u8; 128];
    let block = ReportBlock {
        ssrc: Ssrc(a_out),
        fraction_lost: 10,
        cumulative_lost: 3,
        highest_seq: 99,
        jitter: 5,
        last_sr: 0,
        delay_since_last_sr: 0,
    };
    let n = rtcp::write_rr(&mut buf, Ssrc(a.ssrc), &[block]).unwrap();
    let m = rtcp::write_sdes_cname(&mut buf[n..], Ssrc(a.ssrc), b"peer-a").unwrap();
    a.rtcp.send_to(&buf[..n + m], a.leg_rtcp).unwrap();
    sa.join().unwrap();
    sb.join().unwrap();
    let got = b_rtcp.join().unwrap();
    // Only the relayed packet: crossbar sends no reports of its own here.
    assert_eq!(got.len(), 1, "{got:?}");
    let mut it = RtcpIter::new(&got[0].1);
    match it.next() {
        Some(Ok(RtcpPacket::ReceiverReport { ssrc, mut blocks })) => {
            assert_eq!(ssrc, Ssrc(b_out), "sender = what b sees a as");
            let bl = blocks.next().unwrap();
            assert_eq!(bl.ssrc, Ssrc(b.ssrc), "block about b's own stream");
            assert_eq!((bl.fraction_lost, bl.cumulative_lost), (10, 3));
        }
        other => panic!("{other:?}"),
    }
    match it.next() {
        Some(Ok(RtcpPacket::SourceDescription { body, .. })) => {
            assert_eq!(&body[..4], &b_out.to_be_bytes());
        }
        other => panic!("{other:?}"),
    }
    let s1 = dp.rtp_stats(LegId(1)).await.unwrap();
    let s2 = dp.rtp_stats(LegId(2)).await.unwrap();
    assert_eq!((s1.rx_rtcp, s1.remote_fraction_lost), (1, 10));
    assert_eq!(s2.tx_rtcp, 1);
    assert_eq!(s1.tx_rtcp, 0);
}
