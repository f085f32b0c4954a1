//! Playback to channels through ARI and the real binary: a tone arrives
//! (frequency measured), sound files play to the end with their events,
//! several media continue, a missing sound fails, stop, refusals.

mod common;
mod common_audio;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use common_audio::{goertzel_energy, receive_ulaw, tone, wav_file};

/// A sounds directory with `en/beep.wav` (1000 Hz) and `en/high.wav`
/// (1600 Hz), 300 ms each, at 16 kHz (resampled for a μ-law channel), the
/// prompts of `number:42` and `characters:a`, and a music-on-hold
/// directory (`moh/`) whose default class is a 700 Hz tone and whose class
/// `low` is a 400 Hz one.
fn sounds_dir() -> PathBuf {
    let dir = temp_path("sounds");
    for sub in ["en/digits", "en/letters", "moh/low"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for (name, freq) in [
        ("en/beep", 1000.0),
        ("en/high", 1600.0),
        ("en/digits/40", 1200.0),
        ("en/digits/2", 1300.0),
        ("en/letters/a", 1400.0),
        ("moh/music", 700.0),
        ("moh/low/music", 400.0),
    ] {
        let wav = wav_file(16_000, &tone(freq, 16_000, 4800));
        std::fs::write(dir.join(format!("{name}.wav")), wav).unwrap();
    }
    dir
}

fn node() -> Server {
    let dir = sounds_dir();
    let moh = dir.join("moh");
    Server::start_with(&[
        ("CROSSBAR_SOUNDS_PATH", dir.to_str().unwrap()),
        ("CROSSBAR_SOUNDS_MOH_PATH", moh.to_str().unwrap()),
    ])
}

/// An externalMedia μ-law channel in `app` sending to a socket of ours.
fn leg(s: &Server, app: &str) -> (UdpSocket, String) {
    let (sock, id, _) = s.udp_leg(app, Duration::from_millis(50));
    (sock, id)
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
    assert_eq!(
        r.header("location"),
        Some(format!("/playbacks/{}", pb["id"].as_str().unwrap()).as_str())
    );
    assert_eq!(pb["target_uri"], format!("channel:{id}").as_str());
    assert_eq!(pb["media_uri"], "tone:1000");
    let started = ws.next_event("PlaybackStarted");
    assert_eq!(started["playback"]["state"], "playing");
    let pcm = receive_ulaw(&sock, Duration::from_millis(600));
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
    let pcm = receive_ulaw(&sock, Duration::from_millis(900));
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
    let r = s.post(&format!("/ari/channels/{id}/play?media=video:x"));
    assert_eq!(r.status, 400, "{r:?}");
    s.post("/ari/channels/nope/play?media=sound:beep")
        .assert_error(404, "Channel not found");
    // A tone string keeps its commas (one medium, not three).
    let r = s.post(&format!(
        "/ari/channels/{id}/play/multi?media=tone:!950/330,!1400/330,!1800/330"
    ));
    assert_eq!(r.status, 201, "{r:?}");
    let pb = r.json.unwrap();
    assert_eq!(pb["media_uri"], "tone:!950/330,!1400/330,!1800/330");
    assert!(pb.get("next_media_uri").is_none(), "{pb}");
    s.post(&format!("/ari/channels/{id}/play/same?media=tone:ring"));
    let r = s.post(&format!("/ari/channels/{id}/play/same?media=tone:ring"));
    assert_eq!(r.status, 409, "{r:?}");
    s.delete("/ari/playbacks/nope")
        .assert_error(404, "Playback not found");
}

/// The dominant one of `freqs` in `pcm`, with its energy over the others'.
fn loudest(pcm: &[i16], freqs: &[f64]) -> (f64, f64) {
    let mut e: Vec<(f64, f64)> = freqs
        .iter()
        .map(|&f| (f, goertzel_energy(pcm, f, 8000)))
        .collect();
    e.sort_by(|a, b| b.1.total_cmp(&a.1));
    (e[0].0, e[0].1 / e[1].1.max(1.0))
}

#[test]
fn a_bridge_playback_is_heard_by_every_member() {
    let s = node();
    let mut ws = s.ws("play");
    let (sock_a, a) = leg(&s, "play");
    let (sock_b, b) = leg(&s, "play");
    ws.next_event("StasisStart");
    ws.next_event("StasisStart");
    let bridge = s.post("/ari/bridges?type=mixing").ok()["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.post(&format!("/ari/bridges/{bridge}/addChannel?channel={a},{b}"))
        .no_content();
    assert_eq!(
        s.get(&format!("/ari/bridges/{bridge}")).ok()["technology"],
        "native_rtp"
    );
    let r = s.post(&format!(
        "/ari/bridges/{bridge}/play?media=tone:1000&playbackId=bp"
    ));
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some("/playbacks/bp"));
    assert_eq!(
        r.json.as_ref().unwrap()["target_uri"],
        format!("bridge:{bridge}").as_str()
    );
    let started = ws.next_event("PlaybackStarted");
    assert_eq!(started["playback"]["id"], "bp");
    assert_eq!(
        s.get(&format!("/ari/bridges/{bridge}")).ok()["technology"],
        "softmix"
    );
    for sock in [&sock_a, &sock_b] {
        let pcm = receive_ulaw(sock, Duration::from_millis(400));
        assert!(pcm.len() > 1600, "{} samples", pcm.len());
        let (f, ratio) = loudest(&pcm, &[1000.0, 1600.0, 700.0]);
        assert_eq!(f, 1000.0);
        assert!(ratio > 100.0, "{ratio}");
    }
    s.delete("/ari/playbacks/bp").no_content();
    assert_eq!(
        ws.next_event("PlaybackFinished")["playback"]["state"],
        "done"
    );
    // Destroying the bridge ends its playbacks.
    s.post(&format!("/ari/bridges/{bridge}/play/bq?media=tone:1000"));
    ws.next_event("PlaybackStarted");
    s.delete(&format!("/ari/bridges/{bridge}")).no_content();
    let done = ws.next_event("PlaybackFinished");
    assert_eq!(done["playback"]["id"], "bq");
    s.post("/ari/bridges/nope/play?media=tone:1000")
        .assert_error(404, "Bridge not found");
    let b2 = s.bridge("?type=mixing");
    s.post(&format!(
        "/ari/bridges/{b2}/play?media=tone:1000&announcer_format=ulaw"
    ))
    .assert_error_prefix(
        400,
        "Parameter 'announcer_format' of play is not supported by crossbar: ",
    );
}

#[test]
fn music_on_hold_and_silence() {
    let s = node();
    let _ws = s.ws("play");
    let (sock, id) = leg(&s, "play");
    s.post(&format!("/ari/channels/{id}/moh")).no_content();
    let pcm = receive_ulaw(&sock, Duration::from_millis(400));
    let (f, ratio) = loudest(&pcm, &[700.0, 400.0, 1000.0]);
    assert_eq!((f, ratio > 100.0), (700.0, true), "{ratio}");
    // Another class, then an unknown one (the default, as Asterisk).
    s.post(&format!("/ari/channels/{id}/moh?mohClass=low"))
        .no_content();
    receive_ulaw(&sock, Duration::from_millis(60));
    let pcm = receive_ulaw(&sock, Duration::from_millis(300));
    assert_eq!(loudest(&pcm, &[700.0, 400.0, 1000.0]).0, 400.0);
    s.post(&format!("/ari/channels/{id}/moh?mohClass=nope"))
        .no_content();
    receive_ulaw(&sock, Duration::from_millis(60));
    let pcm = receive_ulaw(&sock, Duration::from_millis(300));
    assert_eq!(loudest(&pcm, &[700.0, 400.0, 1000.0]).0, 700.0);
    // A playback plays over it; once stopped, the music again.
    s.post(&format!("/ari/channels/{id}/play/over?media=tone:1000"));
    receive_ulaw(&sock, Duration::from_millis(60));
    let pcm = receive_ulaw(&sock, Duration::from_millis(300));
    assert_eq!(loudest(&pcm, &[700.0, 400.0, 1000.0]).0, 1000.0);
    s.delete("/ari/playbacks/over").no_content();
    receive_ulaw(&sock, Duration::from_millis(60));
    let pcm = receive_ulaw(&sock, Duration::from_millis(300));
    assert_eq!(loudest(&pcm, &[700.0, 400.0, 1000.0]).0, 700.0);
    // Silence replaces the music: frames keep coming, silent.
    s.post(&format!("/ari/channels/{id}/silence")).no_content();
    receive_ulaw(&sock, Duration::from_millis(60));
    let pcm = receive_ulaw(&sock, Duration::from_millis(300));
    assert!(pcm.len() > 1600, "{} samples", pcm.len());
    assert!(pcm.iter().all(|&x| x.abs() < 16), "silence");
    // Stopped: nothing more (the channel is in no bridge).
    s.delete(&format!("/ari/channels/{id}/silence"))
        .no_content();
    receive_ulaw(&sock, Duration::from_millis(60));
    assert!(receive_ulaw(&sock, Duration::from_millis(200)).is_empty());
    s.post("/ari/channels/nope/moh")
        .assert_error(404, "Channel not found");
}

#[test]
fn bridge_music_on_hold_reaches_every_member() {
    let s = node();
    let _ws = s.ws("play");
    let (sock_a, a) = leg(&s, "play");
    let (sock_b, b) = leg(&s, "play");
    let bridge = s.post("/ari/bridges?type=holding").ok()["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.post(&format!("/ari/bridges/{bridge}/addChannel?channel={a},{b}"))
        .no_content();
    let heard = |sock: &UdpSocket| {
        receive_ulaw(sock, Duration::from_millis(60));
        let pcm = receive_ulaw(sock, Duration::from_millis(300));
        loudest(&pcm, &[700.0, 400.0, 1000.0])
    };
    // Participants of a holding bridge hear its idle music: the default
    // class (Asterisk's idle_mode).
    for sock in [&sock_a, &sock_b] {
        let (f, ratio) = heard(sock);
        assert_eq!((f, ratio > 100.0), (700.0, true), "{ratio}");
    }
    // The application's music replaces it for every member...
    s.post(&format!("/ari/bridges/{bridge}/moh?mohClass=low"))
        .no_content();
    for sock in [&sock_a, &sock_b] {
        let (f, ratio) = heard(sock);
        assert_eq!((f, ratio > 100.0), (400.0, true), "{ratio}");
    }
    // ...and once stopped, the idle music is back.
    s.delete(&format!("/ari/bridges/{bridge}/moh")).no_content();
    assert_eq!(heard(&sock_a).0, 700.0);
    // An announcer silences the idle music (participants hear the
    // announcer, who says nothing here).
    let (_sock_c, c) = leg(&s, "play");
    s.post(&format!(
        "/ari/bridges/{bridge}/addChannel?channel={c}&role=announcer"
    ))
    .no_content();
    receive_ulaw(&sock_a, Duration::from_millis(100));
    let pcm = receive_ulaw(&sock_a, Duration::from_millis(300));
    assert!(goertzel_energy(&pcm, 700.0, 8000) < 1e4, "no idle music");
    // A mixing bridge has none.
    let mixing = s.post("/ari/bridges?type=mixing").ok()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (sock_d, d) = leg(&s, "play");
    s.post(&format!("/ari/bridges/{mixing}/addChannel?channel={d}"))
        .no_content();
    receive_ulaw(&sock_d, Duration::from_millis(60));
    assert!(receive_ulaw(&sock_d, Duration::from_millis(200)).is_empty());
    s.post("/ari/bridges/nope/moh")
        .assert_error(404, "Bridge not found");
}

#[test]
fn playback_control() {
    let s = node();
    let mut ws = s.ws("play");
    let (sock, id) = leg(&s, "play");
    ws.next_event("StasisStart");
    s.post(&format!(
        "/ari/channels/{id}/play/p1?media=tone:1000&skipms=500"
    ));
    s.post(&format!("/ari/channels/{id}/play/p2?media=sound:beep"));
    ws.next_event("PlaybackStarted");
    let control =
        |pb: &str, op: &str| s.post(&format!("/ari/playbacks/{pb}/control?operation={op}"));
    control("p1", "pause").no_content();
    assert_eq!(s.get("/ari/playbacks/p1").ok()["state"], "paused");
    receive_ulaw(&sock, Duration::from_millis(60));
    assert!(receive_ulaw(&sock, Duration::from_millis(200)).is_empty());
    control("p1", "pause").no_content();
    control("p1", "restart").assert_error(409, "Can only restart while media is playing");
    control("p1", "unpause").no_content();
    assert_eq!(s.get("/ari/playbacks/p1").ok()["state"], "playing");
    let pcm = receive_ulaw(&sock, Duration::from_millis(300));
    assert_eq!(loudest(&pcm, &[1000.0, 1600.0]).0, 1000.0);
    for op in ["restart", "reverse", "forward", "unpause"] {
        control("p1", op).no_content();
    }
    // The queued one: restart is a no-op, the rest conflict.
    control("p2", "restart").no_content();
    control("p2", "pause").assert_error(409, "Can only pause while media is playing");
    control("p1", "bogus").assert_error(400, "Invalid operation bogus");
    s.post("/ari/playbacks/p1/control")
        .assert_error(400, "Missing operation");
    control("nope", "pause").assert_error(404, "Playback not found");
    // Pausing publishes no event: the next one is p1's end.
    s.delete("/ari/playbacks/p1").no_content();
    let finished = ws.next_event("PlaybackFinished");
    assert_eq!(finished["playback"]["id"], "p1");
}

#[test]
fn numbers_and_characters_are_said() {
    let s = node();
    let mut ws = s.ws("play");
    let (sock, id) = leg(&s, "play");
    ws.next_event("StasisStart");
    let r = s.post(&format!(
        "/ari/channels/{id}/play/n?media=number:42,characters:a"
    ));
    assert_eq!(r.status, 201, "{r:?}");
    let pcm = receive_ulaw(&sock, Duration::from_millis(1100));
    assert_eq!(
        ws.next_event("PlaybackFinished")["playback"]["state"],
        "done"
    );
    // forty (1200 Hz), two (1300 Hz), a (1400 Hz): 300 ms each.
    let freqs = [1200.0, 1300.0, 1400.0];
    for (i, f) in freqs.iter().enumerate() {
        let at = i * 2400 + 400;
        let part = &pcm[at.min(pcm.len())..(at + 1600).min(pcm.len())];
        assert_eq!(loudest(part, &freqs).0, *f, "part {i}");
    }
    s.post(&format!("/ari/channels/{id}/play/bad?media=number:x"));
    assert_eq!(
        ws.next_event("PlaybackFinished")["playback"]["state"],
        "failed"
    );
}
