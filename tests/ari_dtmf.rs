//! DTMF through ARI and the real binary: RFC 4733 digits sent by a peer
//! arrive as `ChannelDtmfReceived` exactly once; `POST /channels/{id}/dtmf`
//! sends RFC 4733 events; refusals.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;

/// An externalMedia channel in `app` sending to a socket of ours; the
/// socket and the channel's id and RTP address.
fn leg(s: &Server, app: &str) -> (UdpSocket, String, std::net::SocketAddr) {
    s.udp_leg(app, Duration::from_millis(100))
}

fn event_packet(seq: u16, ts: u32, event: u8, end: bool, duration: u16) -> Vec<u8> {
    let mut p = vec![0x80, 101, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
    if seq == 1 {
        p[1] |= 0x80;
    }
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    let d = duration.to_be_bytes();
    p.extend_from_slice(&[event, if end { 0x8a } else { 0x0a }, d[0], d[1]]);
    p
}

#[test]
fn digits_from_a_peer_are_reported_once() {
    let s = Server::start();
    let mut ws = s.ws("dtmf");
    let (sock, id, rtp) = leg(&s, "dtmf");
    ws.next_event("StasisStart");
    let mut seq = 1;
    for (ts, event) in [(1000u32, 1u8), (5000, 10)] {
        for k in 1..=4u16 {
            sock.send_to(&event_packet(seq, ts, event, false, 160 * k), rtp)
                .unwrap();
            seq += 1;
        }
        for _ in 0..3 {
            sock.send_to(&event_packet(seq, ts, event, true, 960), rtp)
                .unwrap();
            seq += 1;
        }
    }
    let first = ws.next_event("ChannelDtmfReceived");
    assert_eq!(first["digit"], "1");
    assert_eq!(first["duration_ms"], 120);
    assert_eq!(first["channel"]["id"], id.as_str());
    let second = ws.next_event("ChannelDtmfReceived");
    assert_eq!(second["digit"], "*");
    // Retransmitted ends: nothing more.
    let rest = ws.sync(&s);
    assert!(
        !rest.iter().any(|e| e["type"] == "ChannelDtmfReceived"),
        "{rest:?}"
    );
}

#[test]
fn send_dtmf_emits_rfc4733_events() {
    let s = Server::start();
    let _ws = s.ws("dtmf");
    let (sock, id, _) = leg(&s, "dtmf");
    s.post(&format!(
        "/ari/channels/{id}/dtmf?dtmf=9%23&duration=100&between=50"
    ))
    .no_content();
    let mut events = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    while events.len() < 16 && Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if n == 16 && buf[1] & 0x7f == 101 {
                events.push(buf[..n].to_vec());
            }
        }
    }
    assert_eq!(events.len(), 16, "two digits of 5 + 3 packets");
    let digits: Vec<u8> = events.iter().map(|p| p[12]).collect();
    assert_eq!(&digits[..8], &[9; 8]);
    assert_eq!(&digits[8..], &[11; 8]);
    for digit in events.chunks(8) {
        assert!(digit[0][1] & 0x80 != 0, "marker on the first packet");
        assert!(
            digit.iter().all(|p| p[4..8] == digit[0][4..8]),
            "one timestamp"
        );
        assert_eq!(digit.iter().filter(|p| p[13] & 0x80 != 0).count(), 3);
        assert_eq!(u16::from_be_bytes([digit[7][14], digit[7][15]]), 800);
    }
}

#[test]
fn send_dtmf_refusals() {
    let s = Server::start();
    let _ws = s.ws("dtmf");
    let (_sock, id, _) = leg(&s, "dtmf");
    s.post(&format!("/ari/channels/{id}/dtmf"))
        .assert_error(400, "DTMF is required");
    s.post(&format!("/ari/channels/{id}/dtmf?dtmf=12x"))
        .assert_error(400, "Invalid DTMF character 'x'");
    s.post("/ari/channels/nope/dtmf?dtmf=1")
        .assert_error(404, "Channel not found");
    // A Local half has no telephone-event: 412.
    let pair = s
        .post("/ari/channels/create?endpoint=Local/1@dtmf&app=dtmf")
        .ok()
        .clone();
    let one = pair["id"].as_str().unwrap();
    let r = s.post(&format!("/ari/channels/{one}/dtmf?dtmf=1"));
    assert_eq!(r.status, 412, "{r:?}");
}
