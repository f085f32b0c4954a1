//! Playback to channels through ARI and the real binary: a tone arrives
//! (frequency measured), sound files play to the end with their events,
//! several media continue, a missing sound fails, stop, refusals.

mod common;
mod common_audio;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use common_audio::{goertzel_energy, tone};

/// A sounds directory with `en/beep.wav` (1000 Hz) and `en/high.wav`
/// (1600 Hz), 300 ms each, at 16 kHz (resampled for a μ-law channel).
fn sounds_dir() -> PathBuf {
    let dir = temp_path("sounds");
    std::fs::create_dir_all(dir.join("en")).unwrap();
    for (name, freq) in [("beep", 1000.0), ("high", 1600.0)] {
        let samples = tone(freq, 16_000, 4800);
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&16_000u32.to_le_bytes());
        wav.extend_from_slice(&32_000u32.to_le_bytes());
        wav.extend_from_slice(&2u16.to_le_bytes());
        wav.extend_from_slice(&16u16.to_le_bytes());
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
        wav.extend_from_slice(&data);
        std::fs::write(dir.join("en").join(format!("{name}.wav")), wav).unwrap();
    }
    dir
}

fn node() -> Server {
    let dir = sounds_dir();
    Server::start_with(&[("CROSSBAR_SOUNDS_PATH", dir.to_str().unwrap())])
}

/// An externalMedia μ-law channel in `app` sending to a socket of ours.
fn leg(s: &Server, app: &str) -> (UdpSocket, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let ch = s
        .post(&format!(
            "/ari/channels/externalMedia?app={app}&external_host={}&format=ulaw",
            sock.local_addr().unwrap()
        ))
        .ok()
        .clone();
    (sock, ch["id"].as_str().unwrap().to_string())
}

fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// The μ-law audio the socket receives within `within` (bounded).
fn receive_audio(sock: &UdpSocket, within: Duration) -> Vec<i16> {
    let mut pcm = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if n > 12 && buf[1] & 0x7f == 0 {
                pcm.extend(buf[12..n].iter().map(|u| ulaw_to_linear(*u)));
            }
        }
    }
    pcm
}

#[test]
fn a_tone_plays_until_stopped() {
    let s = node();
    let mut ws = s.ws("play");
    let (sock, id) = leg(&s, "play");
    ws.next_event("StasisStart");
    let r = s.post(&format!("/ari/channels/{id}/play?media=tone:1000"));
    assert_eq!(r.status, 201, "{r:?}");
    let pb = r.json.clone().unwrap();
    assert_eq!(pb["target_uri"], format!("channel:{id}").as_str());
    assert_eq!(pb["media_uri"], "tone:1000");
    let started = ws.next_event("PlaybackStarted");
    assert_eq!(started["playback"]["state"], "playing");
    let pcm = receive_audio(&sock, Duration::from_millis(600));
    assert!(pcm.len() > 2000, "{} samples", pcm.len());
    let on = goertzel_energy(&pcm, 1000.0, 8000);
    let off = goertzel_energy(&pcm, 1600.0, 8000);
    assert!(
        on > 100.0 * off.max(1.0),
        "1000 Hz {on:.0} vs 1600 Hz {off:.0}"
    );
    let pid = pb["id"].as_str().unwrap();
    assert_eq!(
        s.get(&format!("/ari/playbacks/{pid}")).ok()["state"],
        "playing"
    );
    s.delete(&format!("/ari/playbacks/{pid}")).no_content();
    let finished = ws.next_event("PlaybackFinished");
    assert_eq!(finished["playback"]["state"], "done");
    s.get(&format!("/ari/playbacks/{pid}"))
        .assert_error(404, "Playback not found");
}

#[test]
fn sounds_play_in_order_to_the_end() {
    let s = node();
    let mut ws = s.ws("play");
    let (sock, id) = leg(&s, "play");
    ws.next_event("StasisStart");
    let r = s.post(&format!(
        "/ari/channels/{id}/play/pb1?media=sound:beep&media=sound:high"
    ));
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json.as_ref().unwrap()["next_media_uri"], "sound:high");
    let pcm = receive_audio(&sock, Duration::from_millis(900));
    assert_eq!(ws.next_event("PlaybackStarted")["playback"]["id"], "pb1");
    let cont = ws.next_event("PlaybackContinuing");
    assert_eq!(cont["playback"]["media_uri"], "sound:high");
    let done = ws.next_event("PlaybackFinished");
    assert_eq!(done["playback"]["state"], "done");
    // Both tones were heard: the first 250 ms at 1000 Hz, then 1600 Hz.
    let first = &pcm[..2000.min(pcm.len())];
    assert!(goertzel_energy(first, 1000.0, 8000) > 10.0 * goertzel_energy(first, 1600.0, 8000));
    let later = &pcm[2600.min(pcm.len())..4400.min(pcm.len())];
    assert!(goertzel_energy(later, 1600.0, 8000) > 10.0 * goertzel_energy(later, 1000.0, 8000));
}

#[test]
fn a_missing_sound_fails_and_the_next_playback_plays() {
    let s = node();
    let mut ws = s.ws("play");
    let (_sock, id) = leg(&s, "play");
    ws.next_event("StasisStart");
    s.post(&format!("/ari/channels/{id}/play/a?media=sound:nope"));
    let r = s.post(&format!("/ari/channels/{id}/play/b?media=sound:beep"));
    assert_eq!(r.status, 201);
    let failed = ws.next_event("PlaybackFinished");
    assert_eq!(failed["playback"]["id"], "a");
    assert_eq!(failed["playback"]["state"], "failed");
    let done = ws.next_event("PlaybackFinished");
    assert_eq!(done["playback"]["id"], "b");
    assert_eq!(done["playback"]["state"], "done");
}

#[test]
fn play_refusals() {
    let s = node();
    let _ws = s.ws("play");
    let (_sock, id) = leg(&s, "play");
    s.post(&format!("/ari/channels/{id}/play"))
        .assert_error(400, "Missing parameter media");
    let r = s.post(&format!("/ari/channels/{id}/play?media=recording:x"));
    assert_eq!(r.status, 400, "{r:?}");
    s.post("/ari/channels/nope/play?media=sound:beep")
        .assert_error(404, "Channel not found");
    s.post(&format!("/ari/channels/{id}/play/same?media=tone:ring"));
    let r = s.post(&format!("/ari/channels/{id}/play/same?media=tone:ring"));
    assert_eq!(r.status, 409, "{r:?}");
    s.delete("/ari/playbacks/nope")
        .assert_error(404, "Playback not found");
}
