//! Two real user agents through crossbar: headless baresip (Debian package
//! `baresip-core`) A calls `sip:myapp@crossbar`, the ARI application on the
//! events WebSocket dials B (baresip, auto-answer), bridges both and answers
//! A; each UA plays a tone from a WAV file and records what it hears, and
//! each must hear the other's tone.
//!
//! baresip 1.0.0 has no file player: `aufile` is a source only. What a UA
//! hears is recorded by the `sndfile` audio filter (`snd_path`), which dumps
//! the decoded audio of a call to `dump-<time>-dec.wav` in the decode path,
//! whatever the player; the player is an `aubridge` device with no source,
//! which never runs (no sound card needed).

mod common;
#[path = "common_audio/mod.rs"]
mod common_audio;

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use common_audio::{goertzel_energy, tone};

/// The rate of the tone files and of G.711 (what `aufile` requires: the
/// source's sample rate is the codec's).
const RATE: u32 = 8000;
/// Long enough to outlast the call (the source starts at answer).
const TONE_SECONDS: usize = 10;
/// The media time of the call, once bridged and answered.
const MEDIA: Duration = Duration::from_secs(3);

/// One headless baresip with its config directory in a temp dir.
struct Baresip {
    child: Child,
    dir: PathBuf,
    name: String,
}

impl Baresip {
    /// Starts baresip `name` on SIP port `port`, sending a `freq_hz` tone;
    /// `answermode` is the account's (`manual`, `auto`), `codecs` its
    /// `audio_codecs` (`pcmu,pcma`); `dial` a URI to call at start. Returns
    /// when its SIP TCP port accepts (bounded).
    fn start(
        name: &str,
        port: u16,
        freq_hz: f64,
        answermode: &str,
        codecs: &str,
        dial: Option<&str>,
    ) -> Baresip {
        let dir = temp_path(&format!("baresip-{name}"));
        fs::create_dir_all(dir.join("dump")).expect("create baresip dir");
        let tone_file = dir.join("in.wav");
        write_wav(
            &tone_file,
            &tone(freq_hz, RATE, RATE as usize * TONE_SECONDS),
        );
        let config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{port}\n\
             audio_source aufile,{}\n\
             audio_player aubridge,nowhere\n\
             audio_alert aubridge,nowhere\n\
             snd_path {}\n\
             rtp_stats no\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module aufile.so\n\
             module aubridge.so\n\
             module sndfile.so\n\
             module_tmp account.so\n\
             module_app menu.so\n",
            tone_file.display(),
            dir.join("dump").display(),
        );
        fs::write(dir.join("config"), config).expect("write config");
        fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{name}@127.0.0.1>;regint=0;answermode={answermode};audio_codecs={codecs}\n"
            ),
        )
        .expect("write accounts");
        let log = fs::File::create(dir.join("log")).expect("create log");
        let mut cmd = Command::new("baresip");
        // -t: baresip quits by itself after 60 s, whatever happens here.
        cmd.arg("-f")
            .arg(&dir)
            .args(["-n", "127.0.0.1", "-t", "60"]);
        if let Some(uri) = dial {
            cmd.arg("-e").arg(format!("/dial {uri}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd
            .spawn()
            .expect("baresip (Debian package baresip-core; tests/run installs it)");
        let mut ua = Baresip {
            child,
            dir,
            name: name.to_string(),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(ua.alive(), "baresip {name} exited:\n{}", ua.log());
            assert!(
                Instant::now() < deadline,
                "baresip {name} does not listen on {addr}:\n{}",
                ua.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ua
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Asks baresip to quit (SIGTERM: it ends its calls and closes its
    /// files) and waits for it (bounded; then SIGKILL).
    fn quit(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The encoder its call used, from its log (`PCMU`, `PCMA`).
    fn encoder(&self) -> String {
        let log = self.log();
        let line = log
            .lines()
            .find_map(|l| l.split("Set audio encoder: ").nth(1))
            .unwrap_or_else(|| panic!("baresip {} set no encoder:\n{log}", self.name));
        line.split_whitespace().next().unwrap_or("").to_string()
    }

    /// What it heard: the samples of the one `*-dec.wav` dump.
    fn heard(&self) -> Vec<i16> {
        let dumps: Vec<PathBuf> = fs::read_dir(self.dir.join("dump"))
            .expect("dump dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        assert_eq!(
            dumps.len(),
            1,
            "baresip {}: decode dumps {dumps:?}:\n{}",
            self.name,
            self.log()
        );
        read_wav(&dumps[0])
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- baresip {} log ----\n{}", self.name, self.log());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A mono 16-bit PCM WAV at [`RATE`].
fn write_wav(path: &Path, samples: &[i16]) {
    let data = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + data as usize);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&RATE.to_le_bytes());
    b.extend_from_slice(&(RATE * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    fs::write(path, b).expect("write wav");
}

/// The samples of a mono 16-bit PCM WAV at [`RATE`] (chunks walked; a data
/// size left unset by an unclosed file is taken as "to the end").
fn read_wav(path: &Path) -> Vec<i16> {
    let b = fs::read(path).expect("read wav");
    assert!(
        b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WAVE",
        "{path:?} is not a WAV"
    );
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
    let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().unwrap());
    let mut i = 12;
    while i + 8 <= b.len() {
        let (id, size) = (&b[i..i + 4], u32_at(i + 4));
        let body = i + 8;
        if id == b"fmt " {
            assert_eq!(u16_at(body + 2), 1, "{path:?}: not mono");
            assert_eq!(u32_at(body + 4) as u32, RATE, "{path:?}: rate");
            assert_eq!(u16_at(body + 14), 16, "{path:?}: not 16-bit");
        } else if id == b"data" {
            let end = if size == 0 || body + size > b.len() {
                b.len()
            } else {
                body + size
            };
            return b[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
        }
        i = body + size + (size & 1);
    }
    panic!("{path:?}: no data chunk");
}

/// The energies at 1000 Hz and 1600 Hz of what `ua` heard.
fn levels(ua: &Baresip) -> (f64, f64) {
    let heard = ua.heard();
    eprintln!(
        "{} heard {:.2} s",
        ua.name,
        heard.len() as f64 / f64::from(RATE)
    );
    assert!(
        heard.len() >= RATE as usize,
        "baresip {} heard only {} samples",
        ua.name,
        heard.len()
    );
    (
        goertzel_energy(&heard, 1000.0, RATE),
        goertzel_energy(&heard, 1600.0, RATE),
    )
}

/// The call: A (1000 Hz, `a_codecs`) calls the app, which dials B
/// (1600 Hz, `b_codecs`) with `formats`, bridges both and answers A. Returns
/// the bridge technology and the encoders A and B used.
fn call(a_codecs: &str, b_codecs: &str, formats: &str) -> (String, String, String) {
    let sip = sip_port();
    let bind = format!("127.0.0.1:{sip}");
    let s = Server::start_with(&[
        ("CROSSBAR_SIP_BIND", bind.as_str()),
        ("CROSSBAR_SIP_CODECS", "ulaw,alaw"),
    ]);
    let mut ws = s.ws("myapp");

    let b_port = sip_port();
    let mut b = Baresip::start("b", b_port, 1600.0, "auto", b_codecs, None);
    let mut a = Baresip::start(
        "a",
        sip_port(),
        1000.0,
        "manual",
        a_codecs,
        Some(&format!("sip:myapp@127.0.0.1:{sip}")),
    );

    // A's call enters the app, ringing.
    let start = ws.next_event("StasisStart");
    let ch_a = &start["channel"];
    assert!(
        ch_a["name"].as_str().unwrap().starts_with("SIP/127.0.0.1-"),
        "{start}"
    );
    assert_eq!(ch_a["state"], "Ring");
    assert_eq!(ch_a["dialplan"]["exten"], "myapp");
    let id_a = ch_a["id"].as_str().unwrap().to_string();

    // The app dials B, which answers by itself and enters the app.
    let created = s
        .post(&format!(
            "/ari/channels?endpoint=SIP/sip:b@127.0.0.1:{b_port}&app=myapp&formats={formats}"
        ))
        .ok()
        .clone();
    let id_b = created["id"].as_str().unwrap().to_string();
    let start = ws.next_event("StasisStart");
    assert_eq!(start["channel"]["id"], id_b.as_str(), "{start}");
    assert_eq!(start["channel"]["state"], "Up");

    // Bridge both, answer A.
    let bridge = s.bridge("?type=mixing");
    s.add(&bridge, &id_a);
    s.add(&bridge, &id_b);
    s.post(&format!("/ari/channels/{id_a}/answer")).no_content();
    loop {
        let e = ws.next_event("ChannelStateChange");
        if e["channel"]["id"] == id_a.as_str() {
            assert_eq!(e["channel"]["state"], "Up");
            break;
        }
    }
    let technology = s.get(&format!("/ari/bridges/{bridge}")).ok()["technology"]
        .as_str()
        .unwrap()
        .to_string();
    eprintln!("bridge technology: {technology}");

    std::thread::sleep(MEDIA);

    // The app hangs up both; the UAs quit (closing their dumps).
    s.delete(&format!("/ari/channels/{id_a}")).no_content();
    s.delete(&format!("/ari/channels/{id_b}")).no_content();
    let mut destroyed = Vec::new();
    while destroyed.len() < 2 {
        let e = ws.next_event("ChannelDestroyed");
        destroyed.push(e["channel"]["id"].as_str().unwrap().to_string());
    }
    a.quit();
    b.quit();

    let (a_1000, a_1600) = levels(&a);
    let (b_1000, b_1600) = levels(&b);
    eprintln!("A heard: 1000 Hz {a_1000:.3e}, 1600 Hz {a_1600:.3e}");
    eprintln!("B heard: 1000 Hz {b_1000:.3e}, 1600 Hz {b_1600:.3e}");
    // A full tone gives TONE_AMPLITUDE²/4 = 9e6 (less the silence in the
    // dump before the bridge and after the hangup).
    assert!(
        a_1600 > 1e5 && a_1600 > 100.0 * a_1000,
        "A must hear B's 1600 Hz: 1000 Hz {a_1000:.3e}, 1600 Hz {a_1600:.3e}"
    );
    assert!(
        b_1000 > 1e5 && b_1000 > 100.0 * b_1600,
        "B must hear A's 1000 Hz: 1000 Hz {b_1000:.3e}, 1600 Hz {b_1600:.3e}"
    );
    (technology, a.encoder(), b.encoder())
}

#[test]
fn two_baresips_in_ulaw_hear_each_others_tone_through_a_native_bridge() {
    let (technology, a, b) = call("pcmu,pcma", "pcmu,pcma", "ulaw");
    assert_eq!((a.as_str(), b.as_str()), ("PCMU", "PCMU"));
    assert_eq!(technology, "native_rtp");
}

#[test]
fn a_ulaw_and_an_alaw_baresip_hear_each_others_tone_through_a_transcoding_bridge() {
    let (technology, a, b) = call("pcmu", "pcma", "alaw");
    assert_eq!((a.as_str(), b.as_str()), ("PCMU", "PCMA"));
    assert_eq!(technology, "simple_bridge");
}
