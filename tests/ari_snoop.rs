//! Snoop through ARI and the real binary: a snoop channel spying on both
//! directions of a bridged call hears both parties, a whisper is heard by
//! the target's caller, snoops end with their target, refusals.

mod common;
mod common_audio;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use common_audio::{goertzel_energy, receive_ulaw, ulaw_tone_packet};

/// An externalMedia μ-law channel in `app`: our socket, its id, and the
/// node's RTP address for it.
fn leg(s: &Server, app: &str) -> (UdpSocket, String, SocketAddr) {
    s.udp_leg(app, Duration::from_millis(50))
}

/// Sends a `freq` tone from `sock` to `to` until `stop` (at most 10 s).
fn speak(sock: &UdpSocket, to: SocketAddr, freq: f64, stop: Arc<AtomicBool>) {
    let sock = sock.try_clone().unwrap();
    std::thread::spawn(move || {
        for seq in 0..500u16 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let _ = sock.send_to(&ulaw_tone_packet(freq, seq, 0x5000 + freq as u32), to);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

#[test]
fn snoop_spies_and_whispers_and_ends_with_its_target() {
    let s = Server::start();
    let mut ws = s.ws("call");
    let mut sup = s.ws("sup");
    let (sock_a, a, rtp_a) = leg(&s, "call");
    let (sock_b, b, rtp_b) = leg(&s, "call");
    let bridge = s.bridge("?type=mixing");
    s.add(&bridge, &a);
    s.add(&bridge, &b);
    // A snoop on both directions of a, heard by c.
    let r = s.post(&format!(
        "/ari/channels/{a}/snoop?spy=both&app=sup&appArgs=x,y"
    ));
    let spy = r.ok().clone();
    let spy_id = spy["id"].as_str().unwrap().to_string();
    assert!(
        spy["name"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Snoop/{a}-")),
        "{spy}"
    );
    assert_eq!(spy["state"], "Up");
    let start = sup.next_event("StasisStart");
    assert_eq!(start["channel"]["id"], spy_id.as_str());
    assert_eq!(start["args"], serde_json::json!(["x", "y"]));
    let (sock_c, c, _) = leg(&s, "sup");
    let spy_bridge = s.bridge("?type=mixing");
    s.add(&spy_bridge, &spy_id);
    s.add(&spy_bridge, &c);
    // A whisper into what a hears, spoken by d.
    let whisper = s
        .post(&format!(
            "/ari/channels/{a}/snoop/whisper1?whisper=out&app=sup"
        ))
        .ok()
        .clone();
    assert_eq!(whisper["id"], "whisper1");
    let (sock_d, d, rtp_d) = leg(&s, "sup");
    let whisper_bridge = s.bridge("?type=mixing");
    s.add(&whisper_bridge, "whisper1");
    s.add(&whisper_bridge, &d);
    let stop = Arc::new(AtomicBool::new(false));
    speak(&sock_a, rtp_a, 500.0, stop.clone());
    speak(&sock_b, rtp_b, 1000.0, stop.clone());
    speak(&sock_d, rtp_d, 1500.0, stop.clone());
    receive_ulaw(&sock_c, Duration::from_millis(300));
    let at_c = receive_ulaw(&sock_c, Duration::from_millis(500));
    let at_a = receive_ulaw(&sock_a, Duration::from_millis(500));
    let at_b = receive_ulaw(&sock_b, Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let e = |pcm: &[i16], f: f64| goertzel_energy(pcm, f, 8000);
    assert!(at_c.len() > 2000, "{} samples at c", at_c.len());
    let quiet = e(&at_c, 1500.0).max(1.0);
    assert!(e(&at_c, 500.0) > 100.0 * quiet, "c hears a");
    assert!(e(&at_c, 1000.0) > 100.0 * quiet, "c hears b");
    assert!(
        e(&at_a, 1000.0) > 1e5 && e(&at_a, 1500.0) > 1e5,
        "a hears b and the whisper"
    );
    assert!(
        e(&at_b, 1500.0) < e(&at_b, 500.0) / 100.0,
        "b hears no whisper"
    );
    let _ = d;
    // Hanging up the target hangs up its snoops.
    s.delete(&format!("/ari/channels/{a}")).no_content();
    let mut gone = Vec::new();
    for _ in 0..2 {
        gone.push(sup.next_event("ChannelDestroyed")["channel"]["id"].clone());
    }
    assert!(gone.contains(&serde_json::json!(spy_id)), "{gone:?}");
    assert!(gone.contains(&serde_json::json!("whisper1")), "{gone:?}");
    ws.next_event("ChannelDestroyed");
}

#[test]
fn snoop_refusals() {
    let s = Server::start();
    let _ws = s.ws("sup");
    let (_sock, a, _) = leg(&s, "sup");
    s.post(&format!("/ari/channels/{a}/snoop?spy=sideways&app=sup"))
        .assert_error(400, "Invalid direction specified for spy");
    s.post(&format!("/ari/channels/{a}/snoop?whisper=up&app=sup"))
        .assert_error(400, "Invalid direction specified for whisper");
    s.post(&format!("/ari/channels/{a}/snoop?spy=none&app=sup"))
        .assert_error(
            400,
            "Direction must be specified for at least spy or whisper",
        );
    s.post(&format!("/ari/channels/{a}/snoop?spy=in"))
        .assert_error(400, "Application name is required");
    s.post("/ari/channels/nope/snoop?spy=in&app=sup")
        .assert_error(404, "Provided channel was not found");
    s.post(&format!("/ari/channels/{a}/snoop/{a}?spy=in&app=sup"))
        .assert_error_prefix(409, "");
}
