//! Recording through ARI and the real binary: a channel's received tone and
//! a bridge's two talkers end up in the file (downloaded and measured), the
//! formats round-trip, maxDurationSeconds and terminateOn end a recording by
//! themselves, pause skips audio, cancel removes the file, a hangup ends
//! the recording, ifExists and the stored recordings' operations, refusals.
//!
//! No wall-clock assertion: durations are measured in the files' samples.

mod common;
mod common_audio;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use common_audio::{goertzel_energy, tone_at, wav_file};
use crossbar::sounds::{decode, FileFormat};

/// A node recording into a directory of its own, with a sounds directory
/// holding `en/beep.wav` (300 ms of 1000 Hz at 8 kHz).
fn node() -> (Server, PathBuf) {
    let dir = temp_path("recordings");
    let sounds = temp_path("sounds");
    std::fs::create_dir_all(sounds.join("en")).unwrap();
    let wav = wav_file(8000, &tone_at(1000.0, 8000, 0, 2400));
    std::fs::write(sounds.join("en/beep.wav"), wav).unwrap();
    let s = Server::start_with(&[
        ("CROSSBAR_RECORDINGS_PATH", dir.to_str().unwrap()),
        ("CROSSBAR_SOUNDS_PATH", sounds.to_str().unwrap()),
    ]);
    (s, dir)
}

/// An externalMedia μ-law channel in `app`: our socket, its id, its RTP
/// address.
fn leg(s: &Server, app: &str) -> (UdpSocket, String, SocketAddr) {
    s.udp_leg(app, Duration::from_millis(20))
}

fn linear_to_ulaw(sample: i16) -> u8 {
    let mut out = [0u8];
    crossbar::codec::g711::encode_ulaw(&[sample], &mut out).unwrap();
    out[0]
}

/// One stream of μ-law RTP from a test socket.
struct Sender {
    ssrc: u32,
    seq: u16,
    samples: usize,
}

impl Sender {
    fn new(ssrc: u32) -> Sender {
        Sender {
            ssrc,
            seq: 1,
            samples: 0,
        }
    }

    /// One 20 ms packet of a `freq` tone (0: silence).
    fn packet(&mut self, freq: f64) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&(self.samples as u32).to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        let pcm = if freq > 0.0 {
            tone_at(freq, 8000, self.samples, 160)
        } else {
            vec![0; 160]
        };
        p.extend(pcm.iter().map(|s| linear_to_ulaw(*s)));
        self.seq = self.seq.wrapping_add(1);
        self.samples += 160;
        p
    }
}

/// Sends `count` packets of a `freq` tone from each (socket, sender, tone)
/// in turn, one round every 20 ms (bounded by `count`).
fn talk(streams: &mut [(&UdpSocket, SocketAddr, &mut Sender, f64)], count: usize) {
    for _ in 0..count {
        for (sock, to, sender, freq) in streams.iter_mut() {
            sock.send_to(&sender.packet(*freq), *to).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The stored recording's file: its `Content-Type` and bytes.
fn download(s: &Server, name: &str) -> (String, Vec<u8>) {
    let url = s.url(&format!("/ari/recordings/stored/{name}/file"));
    let mut resp = ureq::get(&url)
        .header("Authorization", basic(USER, PASS))
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", s.log_text()));
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    (content_type, bytes)
}

/// Starts a recording (201 expected); returns the reply's body.
fn record(s: &Server, what: &str, query: &str) -> serde_json::Value {
    let r = s.post(&format!("/ari/{what}/record?{query}"));
    assert_eq!(r.status, 201, "{r:?}");
    r.json.clone().expect("a JSON body")
}

/// The energy of `freq` over that of `other` in `samples` at `rate`.
fn ratio(samples: &[i16], rate: u32, freq: f64, other: f64) -> f64 {
    goertzel_energy(samples, freq, rate) / goertzel_energy(samples, other, rate).max(1.0)
}

#[test]
fn a_channel_recording_holds_the_tone_it_received() {
    let (s, dir) = node();
    let mut ws = s.ws("rec");
    let (sock, id, rtp) = leg(&s, "rec");
    ws.next_event("StasisStart");
    let r = s.post(&format!("/ari/channels/{id}/record?name=tone1&format=wav"));
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some("/recordings/live/tone1"));
    let body = r.json.clone().unwrap();
    assert_eq!(body["name"], "tone1");
    assert_eq!(body["format"], "wav");
    assert_eq!(body["state"], "queued");
    assert_eq!(body["target_uri"], format!("channel:{id}").as_str());
    let started = ws.next_event("RecordingStarted");
    assert_eq!(started["recording"]["state"], "recording");
    assert_eq!(started["recording"]["name"], "tone1");
    let mut a = Sender::new(0x1111);
    talk(&mut [(&sock, rtp, &mut a, 1000.0)], 100);
    assert_eq!(
        s.get("/ari/recordings/live/tone1").ok()["state"],
        "recording"
    );
    s.post("/ari/recordings/live/tone1/stop").no_content();
    let finished = ws.next_event("RecordingFinished");
    assert_eq!(finished["recording"]["state"], "done");
    assert_eq!(finished["recording"]["duration"], 2);
    assert!(finished["recording"].get("talking_duration").is_none());
    s.get("/ari/recordings/live/tone1")
        .assert_error(404, "Recording not found");
    let stored = s.get("/ari/recordings/stored/tone1");
    assert_eq!(
        stored.ok(),
        &serde_json::json!({"name": "tone1", "format": "wav"})
    );
    assert!(dir.join("tone1.wav").is_file());
    let (content_type, bytes) = download(&s, "tone1");
    assert_eq!(content_type, "audio/wav");
    let pcm = decode(FileFormat::Wav, &bytes).unwrap();
    assert_eq!(pcm.rate, 8000);
    // Every packet once: 100 × 160 samples (the header was fixed up).
    assert_eq!(pcm.samples.len(), 16_000);
    assert_eq!(
        u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize,
        bytes.len() - 44
    );
    let r = ratio(&pcm.samples, 8000, 1000.0, 1600.0);
    assert!(r > 1000.0, "1000 Hz over 1600 Hz: {r}");
}

#[test]
fn formats_round_trip_a_tone() {
    let (s, _dir) = node();
    let mut ws = s.ws("fmt");
    let (sock, id, rtp) = leg(&s, "fmt");
    ws.next_event("StasisStart");
    let mut a = Sender::new(0x2222);
    for (format, file, rate) in [
        ("ulaw", FileFormat::Ulaw, 8000),
        ("alaw", FileFormat::Alaw, 8000),
        ("sln", FileFormat::Sln, 8000),
        ("sln16", FileFormat::Sln16, 16000),
        ("wav16", FileFormat::Wav16, 16000),
        ("g722", FileFormat::G722, 16000),
    ] {
        let name = format!("f-{format}");
        record(
            &s,
            &format!("channels/{id}"),
            &format!("name={name}&format={format}"),
        );
        ws.next_event("RecordingStarted");
        talk(&mut [(&sock, rtp, &mut a, 1000.0)], 25);
        s.post(&format!("/ari/recordings/live/{name}/stop"))
            .no_content();
        ws.next_event("RecordingFinished");
        let (content_type, bytes) = download(&s, &name);
        assert_eq!(content_type, format!("audio/{format}"));
        let pcm = decode(file, &bytes).unwrap();
        assert_eq!(pcm.rate, rate, "{format}");
        let expected = 25 * 160 * rate as usize / 8000;
        assert!(
            pcm.samples.len().abs_diff(expected) <= 64,
            "{format}: {} samples, {expected} expected",
            pcm.samples.len()
        );
        let tail = &pcm.samples[pcm.samples.len() / 4..];
        let r = ratio(tail, rate, 1000.0, 1600.0);
        assert!(r > 100.0, "{format}: 1000 Hz over 1600 Hz: {r}");
    }
}

#[test]
fn a_bridge_recording_holds_both_talkers() {
    let (s, _dir) = node();
    let mut ws = s.ws("conf");
    let (sock_a, a_id, rtp_a) = leg(&s, "conf");
    let (sock_b, b_id, rtp_b) = leg(&s, "conf");
    let bridge = s.bridge("?type=mixing");
    s.add(&bridge, &a_id);
    s.add(&bridge, &b_id);
    let body = record(&s, &format!("bridges/{bridge}"), "name=conf&format=sln16");
    assert_eq!(body["target_uri"], format!("bridge:{bridge}").as_str());
    let started = ws.next_event("RecordingStarted");
    assert_eq!(started["recording"]["name"], "conf");
    // Recording a bridge mixes it.
    assert_eq!(
        s.get(&format!("/ari/bridges/{bridge}")).ok()["technology"],
        "softmix"
    );
    let (mut a, mut b) = (Sender::new(0xa), Sender::new(0xb));
    talk(
        &mut [
            (&sock_a, rtp_a, &mut a, 600.0),
            (&sock_b, rtp_b, &mut b, 1400.0),
        ],
        75,
    );
    s.post("/ari/recordings/live/conf/stop").no_content();
    ws.next_event("RecordingFinished");
    let (_, bytes) = download(&s, "conf");
    let pcm = decode(FileFormat::Sln16, &bytes).unwrap();
    // The mix runs on the bridge's ticks: about 1.5 s of 16 kHz.
    assert!(pcm.samples.len() > 16_000, "{} samples", pcm.samples.len());
    let mid = &pcm.samples[pcm.samples.len() / 4..pcm.samples.len() * 3 / 4];
    for (freq, other) in [(600.0, 2200.0), (1400.0, 2200.0)] {
        let r = ratio(mid, 16000, freq, other);
        assert!(r > 100.0, "{freq} Hz over {other} Hz: {r}");
    }
    // Stopped, the bridge goes back to relaying its two members.
    assert_eq!(
        s.get(&format!("/ari/bridges/{bridge}")).ok()["technology"],
        "native_rtp"
    );
    // A bridge destroyed ends its recording before BridgeDestroyed.
    record(&s, &format!("bridges/{bridge}"), "name=conf2&format=wav");
    ws.next_event("RecordingStarted");
    s.delete(&format!("/ari/bridges/{bridge}")).no_content();
    let events = ws.events_until("BridgeDestroyed");
    let kinds = types(&events);
    assert!(kinds.contains(&"RecordingFinished"), "{kinds:?}");
    s.get("/ari/recordings/live/conf2")
        .assert_error(404, "Recording not found");
}

#[test]
fn max_duration_ends_a_recording_by_itself() {
    let (s, _dir) = node();
    let mut ws = s.ws("max");
    let (sock, id, rtp) = leg(&s, "max");
    ws.next_event("StasisStart");
    record(
        &s,
        &format!("channels/{id}"),
        "name=max&format=sln&maxDurationSeconds=1",
    );
    ws.next_event("RecordingStarted");
    let mut a = Sender::new(0x3333);
    talk(&mut [(&sock, rtp, &mut a, 1000.0)], 75);
    let finished = ws.next_event("RecordingFinished");
    assert_eq!(finished["recording"]["state"], "done");
    assert_eq!(finished["recording"]["duration"], 1);
    let (_, bytes) = download(&s, "max");
    assert_eq!(bytes.len(), 8000 * 2);
}

#[test]
fn max_silence_ends_it_and_reports_talk_and_silence() {
    let (s, _dir) = node();
    let mut ws = s.ws("sil");
    let (sock, id, rtp) = leg(&s, "sil");
    ws.next_event("StasisStart");
    record(
        &s,
        &format!("channels/{id}"),
        "name=sil&format=sln&maxSilenceSeconds=1",
    );
    ws.next_event("RecordingStarted");
    let mut a = Sender::new(0x4444);
    talk(&mut [(&sock, rtp, &mut a, 1000.0)], 100);
    talk(&mut [(&sock, rtp, &mut a, 0.0)], 75);
    let finished = ws.next_event("RecordingFinished");
    let rec = &finished["recording"];
    // 3.02 s were written (2 s of tone, then silence past 1 s); Asterisk's
    // arithmetic in whole seconds takes (1020 - 200) / 1000 = 0 off both.
    assert_eq!(rec["duration"], 3);
    assert_eq!(rec["talking_duration"], 3);
    assert_eq!(rec["silence_duration"], 0);
    // The trailing silence is cut to 200 ms.
    let (_, bytes) = download(&s, "sil");
    assert_eq!(bytes.len(), (16_000 + 1600) * 2);
}

fn digit_packet(seq: u16, ts: u32, event: u8, end: bool, duration: u16) -> Vec<u8> {
    let mut p = vec![0x80, 101, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    let d = duration.to_be_bytes();
    p.extend_from_slice(&[event, if end { 0x8a } else { 0x0a }, d[0], d[1]]);
    p
}

#[test]
fn terminate_on_a_digit_stops_it() {
    let (s, _dir) = node();
    let mut ws = s.ws("dig");
    let (sock, id, rtp) = leg(&s, "dig");
    ws.next_event("StasisStart");
    record(
        &s,
        &format!("channels/{id}"),
        "name=dig&format=ulaw&terminateOn=%23",
    );
    ws.next_event("RecordingStarted");
    let mut a = Sender::new(0x5555);
    talk(&mut [(&sock, rtp, &mut a, 1000.0)], 25);
    // A '1' does not stop it; a '#' (event 11) does.
    let mut seq = 1000;
    for (event, ts) in [(1u8, 90_000u32), (11, 95_000)] {
        for k in 1..=3u16 {
            sock.send_to(&digit_packet(seq, ts, event, false, 160 * k), rtp)
                .unwrap();
            seq += 1;
        }
        for _ in 0..3 {
            sock.send_to(&digit_packet(seq, ts, event, true, 640), rtp)
                .unwrap();
            seq += 1;
        }
        let digit = ws.next_event("ChannelDtmfReceived");
        if event == 1 {
            assert_eq!(digit["digit"], "1");
            assert_eq!(s.get("/ari/recordings/live/dig").ok()["state"], "recording");
        } else {
            assert_eq!(digit["digit"], "#");
        }
    }
    let finished = ws.next_event("RecordingFinished");
    assert_eq!(finished["recording"]["state"], "done");
    let (_, bytes) = download(&s, "dig");
    assert_eq!(bytes.len(), 25 * 160);
}

#[test]
fn pause_skips_audio_and_mute_writes_silence() {
    let (s, _dir) = node();
    let mut ws = s.ws("pause");
    let (sock, id, rtp) = leg(&s, "pause");
    ws.next_event("StasisStart");
    record(&s, &format!("channels/{id}"), "name=p&format=sln");
    ws.next_event("RecordingStarted");
    let mut a = Sender::new(0x6666);
    talk(&mut [(&sock, rtp, &mut a, 1000.0)], 25);
    std::thread::sleep(Duration::from_millis(100));
    s.post("/ari/recordings/live/p/pause").no_content();
    assert_eq!(s.get("/ari/recordings/live/p").ok()["state"], "paused");
    talk(&mut [(&sock, rtp, &mut a, 1600.0)], 25);
    std::thread::sleep(Duration::from_millis(100));
    s.delete("/ari/recordings/live/p/pause").no_content();
    s.post("/ari/recordings/live/p/mute").no_content();
    talk(&mut [(&sock, rtp, &mut a, 1000.0)], 25);
    std::thread::sleep(Duration::from_millis(100));
    s.delete("/ari/recordings/live/p/mute").no_content();
    s.post("/ari/recordings/live/p/stop").no_content();
    ws.next_event("RecordingFinished");
    let (_, bytes) = download(&s, "p");
    let pcm = decode(FileFormat::Sln, &bytes).unwrap();
    // 25 packets of tone, the paused 25 skipped (no gap filled), 25 muted.
    assert_eq!(pcm.samples.len(), 50 * 160);
    let (tone, muted) = pcm.samples.split_at(25 * 160);
    assert!(ratio(tone, 8000, 1000.0, 1600.0) > 1000.0);
    let loud: Vec<usize> = (0..muted.len()).filter(|i| muted[*i] != 0).collect();
    assert!(
        loud.is_empty(),
        "{} loud samples from {:?}",
        loud.len(),
        loud.first()
    );
    // A finished recording is no more live.
    s.post("/ari/recordings/live/p/pause")
        .assert_error(404, "Recording not found");
}

#[test]
fn cancel_removes_the_file_and_a_hangup_ends_a_recording() {
    let (s, dir) = node();
    let mut ws = s.ws("cancel");
    let (sock, id, rtp) = leg(&s, "cancel");
    ws.next_event("StasisStart");
    record(&s, &format!("channels/{id}"), "name=gone&format=wav");
    ws.next_event("RecordingStarted");
    let mut a = Sender::new(0x7777);
    talk(&mut [(&sock, rtp, &mut a, 1000.0)], 10);
    assert!(dir.join("gone.wav").is_file());
    s.delete("/ari/recordings/live/gone").no_content();
    // Cancelled while recording: `canceled` until the file is gone, then
    // RecordingFinished `done`, as Asterisk's record_file reports its end.
    let finished = ws.next_event("RecordingFinished");
    assert_eq!(finished["recording"]["state"], "done");
    assert!(!dir.join("gone.wav").exists());
    s.get("/ari/recordings/stored/gone")
        .assert_error(404, "Recording not found");

    record(&s, &format!("channels/{id}"), "name=kept&format=wav");
    ws.next_event("RecordingStarted");
    talk(&mut [(&sock, rtp, &mut a, 1000.0)], 10);
    s.delete(&format!("/ari/channels/{id}")).no_content();
    let events = ws.events_until("ChannelDestroyed");
    let kinds = types(&events);
    let finished = kinds.iter().position(|t| *t == "RecordingFinished");
    assert!(finished.is_some(), "{kinds:?}");
    assert_eq!(events[finished.unwrap()]["recording"]["state"], "done");
    // The writer completes the file after the channel went (bounded wait).
    let mut pcm = None;
    for _ in 0..100 {
        if let Ok(bytes) = std::fs::read(dir.join("kept.wav")) {
            if u32::from_le_bytes(bytes[40..44].try_into().unwrap()) > 0 {
                pcm = Some(decode(FileFormat::Wav, &bytes).unwrap());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pcm.expect("the file was completed").samples.len(), 1600);
}

#[test]
fn beep_plays_before_the_recording_starts() {
    let (s, _dir) = node();
    let mut ws = s.ws("beep");
    let (sock, id, _rtp) = leg(&s, "beep");
    ws.next_event("StasisStart");
    let body = record(&s, &format!("channels/{id}"), "name=b&format=wav&beep=true");
    assert_eq!(body["state"], "queued");
    // The beep arrives (bounded read), then the recording starts.
    let mut received = 0;
    let mut buf = [0u8; 2048];
    for _ in 0..100 {
        if sock.recv_from(&mut buf).is_ok() {
            received += 1;
            if received >= 5 {
                break;
            }
        }
    }
    assert!(received >= 5, "no beep heard");
    assert_eq!(s.get("/ari/recordings/live/b").ok()["state"], "queued");
    let started = ws.next_event("RecordingStarted");
    assert_eq!(started["recording"]["name"], "b");
    s.post("/ari/recordings/live/b/stop").no_content();
    ws.next_event("RecordingFinished");
    // Stopped while its beep plays: dropped (`canceled`), never started.
    record(
        &s,
        &format!("channels/{id}"),
        "name=b2&format=wav&beep=true&ifExists=overwrite",
    );
    s.post("/ari/recordings/live/b2/stop").no_content();
    let finished = ws.next_event("RecordingFinished");
    assert_eq!(finished["recording"]["name"], "b2");
    assert_eq!(finished["recording"]["state"], "canceled");
    std::thread::sleep(Duration::from_millis(500));
    let later = ws.sync(&s);
    assert!(!types(&later).contains(&"RecordingStarted"), "{later:?}");
    s.get("/ari/recordings/stored/b2")
        .assert_error(404, "Recording not found");
}

#[test]
fn if_exists_names_and_stored_recordings() {
    let (s, dir) = node();
    let mut ws = s.ws("st");
    let (_sock, id, _rtp) = leg(&s, "st");
    ws.next_event("StasisStart");
    let ch = format!("channels/{id}");
    // Refusals.
    s.post("/ari/channels/nope/record?name=x&format=wav")
        .assert_error(404, "Channel not found");
    s.post("/ari/bridges/nope/record?name=x&format=wav")
        .assert_error(404, "Bridge not found");
    s.post(&format!("/ari/{ch}/record?name=x&format=mp3"))
        .assert_error(422, "specified format is unknown on this system");
    s.post(&format!("/ari/{ch}/record?name=..%2Fx&format=wav"))
        .assert_error(400, "Recording name invalid");
    s.post(&format!(
        "/ari/{ch}/record?name=x&format=wav&maxDurationSeconds=-1"
    ))
    .assert_error(400, "max_duration_seconds cannot be negative");
    assert_eq!(
        s.post(&format!("/ari/{ch}/record?name=x&format=wav&terminateOn=5"))
            .status,
        400
    );
    // A recording in a subdirectory; the same name while it runs.
    let r = s.post(&format!("/ari/{ch}/record?name=a%2Fb&format=wav"));
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some("/recordings/live/a%2Fb"));
    ws.next_event("RecordingStarted");
    s.post(&format!(
        "/ari/{ch}/record?name=a%2Fb&format=wav&ifExists=overwrite"
    ))
    .assert_error(
        409,
        "Recording 'a/b' already exists and can not be overwritten",
    );
    s.post("/ari/recordings/live/a%2Fb/stop").no_content();
    ws.next_event("RecordingFinished");
    assert!(dir.join("a/b.wav").is_file());
    // ifExists=fail (the default) on a stored one; overwrite is allowed.
    s.post(&format!("/ari/{ch}/record?name=a%2Fb&format=ulaw"))
        .assert_error(
            409,
            "Recording 'a/b' already exists and can not be overwritten",
        );
    record(&s, &ch, "name=a%2Fb&format=wav&ifExists=overwrite");
    ws.next_event("RecordingStarted");
    s.post("/ari/recordings/live/a%2Fb/stop").no_content();
    ws.next_event("RecordingFinished");
    // Stored: list, get, copy, delete.
    let list = s.get("/ari/recordings/stored");
    assert_eq!(
        list.ok(),
        &serde_json::json!([{"name": "a/b", "format": "wav"}])
    );
    assert_eq!(
        s.get("/ari/recordings/stored/a%2Fb").ok(),
        &serde_json::json!({"name": "a/b", "format": "wav"})
    );
    let copy = s.post("/ari/recordings/stored/a%2Fb/copy?destinationRecordingName=c");
    assert_eq!(
        copy.ok(),
        &serde_json::json!({"name": "c", "format": "wav"})
    );
    s.post("/ari/recordings/stored/a%2Fb/copy?destinationRecordingName=c")
        .assert_error(
            409,
            "A recording with the same name already exists on the system",
        );
    s.post("/ari/recordings/stored/a%2Fb/copy?destinationRecordingName=..%2Fc")
        .assert_error(403, "Destination file path is forbidden");
    s.post("/ari/recordings/stored/nope/copy?destinationRecordingName=d")
        .assert_error(404, "Recording not found");
    assert_eq!(
        std::fs::read(dir.join("c.wav")).unwrap(),
        std::fs::read(dir.join("a/b.wav")).unwrap()
    );
    s.get("/ari/recordings/stored/..%2Fetc")
        .assert_error(404, "Recording not found");
    // The file is not sent over the events socket (406, as Asterisk).
    ws.send_text(
        r#"{"type":"RESTRequest","transaction_id":"t","request_id":"r","method":"GET","uri":"recordings/stored/c/file"}"#,
    );
    let r = ws.next_event("RESTResponse");
    assert_eq!(r["status_code"], 406);
    assert_eq!(r["reason_phrase"], "Not Acceptable.  Use HTTP GET");
    assert!(r.get("message_body").is_none());
    s.delete("/ari/recordings/stored/c").no_content();
    s.get("/ari/recordings/stored/c")
        .assert_error(404, "Recording not found");
    s.delete("/ari/recordings/stored/c")
        .assert_error(404, "Recording not found");
    assert_eq!(
        s.get("/ari/recordings/stored")
            .ok()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Live operations on nothing.
    s.post("/ari/recordings/live/nope/stop")
        .assert_error(404, "Recording not found");
    s.delete("/ari/recordings/live/nope/mute")
        .assert_error(404, "Recording not found");
}

#[test]
fn a_channel_not_answered_is_answered_first() {
    let (s, _dir) = node();
    let mut ws = s.ws("rec2");
    let mut orig = s.ws("orig");
    let r = s.post("/ari/channels?endpoint=Local/x@rec2&app=orig");
    assert_eq!(r.status, 200, "{r:?}");
    let start = ws.next_event("StasisStart");
    assert_eq!(start["channel"]["state"], "Ring");
    let id = start["channel"]["id"].as_str().unwrap().to_string();
    record(&s, &format!("channels/{id}"), "name=l&format=wav");
    let events = ws.events_until("RecordingStarted");
    let kinds = types(&events);
    let up = events
        .iter()
        .position(|e| e["type"] == "ChannelStateChange" && e["channel"]["id"] == id.as_str());
    assert!(up.is_some(), "{kinds:?}");
    assert_eq!(events[up.unwrap()]["channel"]["state"], "Up");
    // The originating half goes on into its application, as when answered.
    orig.next_event("StasisStart");
    s.post("/ari/recordings/live/l/stop").no_content();
    ws.next_event("RecordingFinished");
}

#[test]
fn api_docs_declare_the_recording_operations_and_models() {
    let s = Server::start();
    let listing = s.get("/ari/api-docs/resources.json");
    assert!(listing.text.contains("/api-docs/recordings.{format}"));
    let doc = s.get("/ari/api-docs/recordings.json");
    let doc = doc.ok();
    let mut ops: Vec<String> = doc["apis"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|api| {
            api["operations"].as_array().unwrap().iter().map(|op| {
                format!(
                    "{} {} {}",
                    op["httpMethod"].as_str().unwrap(),
                    api["path"].as_str().unwrap(),
                    op["nickname"].as_str().unwrap()
                )
            })
        })
        .collect();
    ops.sort();
    assert_eq!(
        ops,
        [
            "DELETE /recordings/live/{recordingName} cancel",
            "DELETE /recordings/live/{recordingName}/mute unmute",
            "DELETE /recordings/live/{recordingName}/pause unpause",
            "DELETE /recordings/stored/{recordingName} deleteStored",
            "GET /recordings/live/{recordingName} getLive",
            "GET /recordings/stored listStored",
            "GET /recordings/stored/{recordingName} getStored",
            "GET /recordings/stored/{recordingName}/file getStoredFile",
            "POST /recordings/live/{recordingName}/mute mute",
            "POST /recordings/live/{recordingName}/pause pause",
            "POST /recordings/live/{recordingName}/stop stop",
            "POST /recordings/stored/{recordingName}/copy copyStored",
        ]
    );
    let live: Vec<&str> = doc["models"]["LiveRecording"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for field in [
        "name",
        "format",
        "target_uri",
        "state",
        "duration",
        "talking_duration",
        "silence_duration",
        "cause",
    ] {
        assert!(live.contains(&field), "{field} in {live:?}");
    }
    assert!(doc["models"]["StoredRecording"].is_object());
    for (resource, path) in [
        ("channels", "/channels/{channelId}/record"),
        ("bridges", "/bridges/{bridgeId}/record"),
    ] {
        let doc = s.get(&format!("/ari/api-docs/{resource}.json"));
        let api = doc.ok()["apis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["path"] == path)
            .unwrap_or_else(|| panic!("{path}"))
            .clone();
        let op = &api["operations"][0];
        assert_eq!(op["nickname"], "record");
        assert_eq!(op["responseClass"], "LiveRecording");
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            params[1..],
            [
                "name",
                "format",
                "maxDurationSeconds",
                "maxSilenceSeconds",
                "ifExists",
                "beep",
                "terminateOn"
            ]
        );
    }
    let events = s.get("/ari/api-docs/events.json");
    for ty in ["RecordingStarted", "RecordingFinished", "RecordingFailed"] {
        assert_eq!(
            events.ok()["models"][ty]["properties"]["recording"]["type"],
            "LiveRecording"
        );
    }
    // The bridge's recorder_format is refused, not ignored.
    let bridge = s.bridge("");
    let r = s.post(&format!(
        "/ari/bridges/{bridge}/record?name=x&format=wav&recorder_format=ulaw"
    ));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.message().contains("recorder_format"), "{}", r.message());
}

#[test]
fn a_members_digit_ends_a_bridge_recording_with_terminate_on_any() {
    let (s, _dir) = node();
    let mut ws = s.ws("bdig");
    let (sock_a, a_id, rtp_a) = leg(&s, "bdig");
    let (_sock_b, b_id, _rtp_b) = leg(&s, "bdig");
    let bridge = s.bridge("?type=mixing");
    s.add(&bridge, &a_id);
    s.add(&bridge, &b_id);
    record(
        &s,
        &format!("bridges/{bridge}"),
        "name=bdig&format=wav&terminateOn=any",
    );
    ws.next_event("RecordingStarted");
    let mut a = Sender::new(0xc);
    talk(&mut [(&sock_a, rtp_a, &mut a, 1000.0)], 10);
    let mut seq = 2000;
    for k in 1..=3u16 {
        sock_a
            .send_to(&digit_packet(seq, 50_000, 5, false, 160 * k), rtp_a)
            .unwrap();
        seq += 1;
    }
    for _ in 0..3 {
        sock_a
            .send_to(&digit_packet(seq, 50_000, 5, true, 640), rtp_a)
            .unwrap();
        seq += 1;
    }
    let digit = ws.next_event("ChannelDtmfReceived");
    assert_eq!(digit["digit"], "5");
    let finished = ws.next_event("RecordingFinished");
    assert_eq!(finished["recording"]["name"], "bdig");
    assert_eq!(finished["recording"]["state"], "done");
}

#[test]
fn the_recordings_directory_is_created_at_start() {
    let dir = temp_path("fresh").join("spool/recordings");
    assert!(!dir.exists());
    let s = Server::start_with(&[("CROSSBAR_RECORDINGS_PATH", dir.to_str().unwrap())]);
    assert!(dir.is_dir());
    assert_eq!(s.get("/ari/recordings/stored").ok(), &serde_json::json!([]));
}

/// A recording whose file is `/dev/full` (every write: "No space left on
/// device") fails with its cause; the channel goes on and records again.
#[test]
fn a_full_disk_fails_the_recording_not_the_call() {
    let (s, dir) = node();
    let mut ws = s.ws("full");
    let (sock, id, rtp) = leg(&s, "full");
    ws.next_event("StasisStart");
    std::os::unix::fs::symlink("/dev/full", dir.join("full.sln")).unwrap();
    record(&s, &format!("channels/{id}"), "name=full&format=sln");
    ws.next_event("RecordingStarted");
    let mut a = Sender::new(0xd);
    // 8 KiB of sln (the writer's buffer) is 0.5 s: the failure comes
    // within the second sent.
    talk(&mut [(&sock, rtp, &mut a, 1000.0)], 50);
    let failed = ws.next_event("RecordingFailed");
    let rec = &failed["recording"];
    assert_eq!(rec["name"], "full");
    assert_eq!(rec["state"], "failed");
    let cause = rec["cause"].as_str().unwrap();
    assert!(cause.contains("No space left on device"), "{cause}");
    s.get("/ari/recordings/live/full")
        .assert_error(404, "Recording not found");
    // The call goes on, and records again.
    assert_eq!(s.get(&format!("/ari/channels/{id}")).ok()["state"], "Up");
    record(&s, &format!("channels/{id}"), "name=after&format=sln");
    ws.next_event("RecordingStarted");
    talk(&mut [(&sock, rtp, &mut a, 1000.0)], 10);
    s.post("/ari/recordings/live/after/stop").no_content();
    ws.next_event("RecordingFinished");
    let (_, bytes) = download(&s, "after");
    assert_eq!(bytes.len(), 10 * 320);
}

#[test]
fn a_beep_does_not_cut_into_a_playback() {
    let (s, _dir) = node();
    let mut ws = s.ws("pb");
    let (_sock, id, _rtp) = leg(&s, "pb");
    ws.next_event("StasisStart");
    let r = s.post(&format!("/ari/channels/{id}/play/p1?media=tone:1000"));
    assert_eq!(r.status, 201, "{r:?}");
    ws.next_event("PlaybackStarted");
    record(
        &s,
        &format!("channels/{id}"),
        "name=pb&format=wav&beep=true",
    );
    // The recording starts at once (no beep to wait for), and the endless
    // tone plays on.
    assert_eq!(s.get("/ari/recordings/live/pb").ok()["state"], "recording");
    let events = ws.events_until("RecordingStarted");
    assert!(!types(&events).contains(&"PlaybackFinished"), "{events:?}");
    assert_eq!(s.get("/ari/playbacks/p1").ok()["state"], "playing");
    s.post("/ari/recordings/live/pb/stop").no_content();
    ws.next_event("RecordingFinished");
    s.delete("/ari/playbacks/p1").no_content();
}

/// A snoop channel is recorded like any channel: what it hears (here, what
/// its target receives) is in the file.
#[test]
fn a_snoop_channel_is_recorded_like_any_channel() {
    let (s, _dir) = node();
    let mut ws = s.ws("snp");
    let (sock, id, rtp) = leg(&s, "snp");
    ws.next_event("StasisStart");
    let snoop = s.post(&format!("/ari/channels/{id}/snoop?spy=in&app=snp"));
    assert_eq!(snoop.status, 200, "{snoop:?}");
    let snoop_id = snoop.ok()["id"].as_str().unwrap().to_string();
    ws.next_event("StasisStart");
    record(&s, &format!("channels/{snoop_id}"), "name=snp&format=sln");
    ws.next_event("RecordingStarted");
    let mut a = Sender::new(0xe);
    talk(&mut [(&sock, rtp, &mut a, 1000.0)], 50);
    s.post("/ari/recordings/live/snp/stop").no_content();
    ws.next_event("RecordingFinished");
    let (_, bytes) = download(&s, "snp");
    let pcm = decode(FileFormat::Sln, &bytes).unwrap();
    assert!(
        pcm.samples.len() >= 40 * 160,
        "{} samples",
        pcm.samples.len()
    );
    let r = ratio(&pcm.samples, 8000, 1000.0, 1600.0);
    assert!(r > 100.0, "1000 Hz over 1600 Hz: {r}");
}

/// `recording:NAME` plays a stored recording: what one channel said is
/// heard by another; a missing one fails its playback.
#[test]
fn a_stored_recording_plays_as_recording_media() {
    let (s, _dir) = node();
    let mut ws = s.ws("rp");
    let (sock_a, a_id, rtp_a) = leg(&s, "rp");
    let (sock_b, b_id, _rtp_b) = leg(&s, "rp");
    record(&s, &format!("channels/{a_id}"), "name=said&format=g722");
    ws.next_event("RecordingStarted");
    let mut a = Sender::new(0xf);
    talk(&mut [(&sock_a, rtp_a, &mut a, 1000.0)], 50);
    s.post("/ari/recordings/live/said/stop").no_content();
    ws.next_event("RecordingFinished");
    let r = s.post(&format!("/ari/channels/{b_id}/play/p?media=recording:said"));
    assert_eq!(r.status, 201, "{r:?}");
    ws.next_event("PlaybackStarted");
    // What b receives while it plays (bounded by count and time).
    let mut pcm = Vec::new();
    let mut buf = [0u8; 2048];
    for _ in 0..200 {
        if let Ok((n, _)) = sock_b.recv_from(&mut buf) {
            if n > 12 && buf[1] & 0x7f == 0 {
                let mut out = vec![0i16; n - 12];
                crossbar::codec::g711::decode_ulaw(&buf[12..n], &mut out).unwrap();
                pcm.extend(out);
            }
        }
        if pcm.len() >= 4000 {
            break;
        }
    }
    assert!(pcm.len() >= 4000, "{} samples heard", pcm.len());
    let r = ratio(&pcm[800..], 8000, 1000.0, 1600.0);
    assert!(r > 100.0, "1000 Hz over 1600 Hz: {r}");
    let done = ws.next_event("PlaybackFinished");
    assert_eq!(done["playback"]["state"], "done");
    s.post(&format!(
        "/ari/channels/{b_id}/play/q?media=recording:nothing"
    ));
    let failed = ws.next_event("PlaybackFinished");
    assert_eq!(failed["playback"]["id"], "q");
    assert_eq!(failed["playback"]["state"], "failed");
}
