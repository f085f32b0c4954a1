//! Talk detection through ARI and the real binary: `TALK_DETECT(set)` on
//! an externalMedia channel, speech-like audio then silence from a peer.

mod common;
mod common_audio;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use common_audio::linear_to_ulaw;

/// 20 ms of μ-law: a 440 Hz tone of `amplitude` (0: digital silence).
fn ulaw_frame(amplitude: f64, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x56, 0x78];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    for i in 0..160 {
        let s = amplitude * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin();
        p.push(linear_to_ulaw(s as i16));
    }
    p
}

#[test]
fn talking_starts_on_speech_and_finishes_after_the_silence() {
    let s = Server::start();
    let mut ws = s.ws("talk");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ch = s
        .post(&format!(
            "/ari/channels/externalMedia?app=talk&external_host={}&format=ulaw",
            sock.local_addr().unwrap()
        ))
        .ok()
        .clone();
    ws.next_event("StasisStart");
    let id = ch["id"].as_str().unwrap();
    let port = ch["channelvars"]["UNICASTRTP_LOCAL_PORT"].as_str().unwrap();
    let rtp: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    s.post(&format!(
        "/ari/channels/{id}/variable?variable=TALK_DETECT(set)&value=200"
    ))
    .no_content();
    // Silence alone: no event.
    let mut seq = 0;
    for _ in 0..25 {
        sock.send_to(&ulaw_frame(0.0, seq), rtp).unwrap();
        seq += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let quiet = ws.sync(&s);
    assert!(
        !quiet.iter().any(|e| e["type"] == "ChannelTalkingStarted"),
        "{quiet:?}"
    );
    // 0.6 s of speech-like tone, then 0.5 s of silence.
    for k in 0..55 {
        let amplitude = if k < 30 { 8000.0 } else { 0.0 };
        sock.send_to(&ulaw_frame(amplitude, seq), rtp).unwrap();
        seq += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = ws.next_event("ChannelTalkingStarted");
    assert_eq!(started["channel"]["id"], id);
    let finished = ws.next_event("ChannelTalkingFinished");
    assert!(finished["duration"].as_u64().unwrap() > 0, "{finished}");
    // Refusals and removal.
    s.post(&format!(
        "/ari/channels/{id}/variable?variable=TALK_DETECT(set)&value=0"
    ))
    .assert_error(400, "Failed to execute function");
    s.post(&format!(
        "/ari/channels/{id}/variable?variable=TALK_DETECT(remove)"
    ))
    .no_content();
}
