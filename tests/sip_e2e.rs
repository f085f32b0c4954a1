//! SIP end to end: the real binary with SIP on a loopback port, driven by
//! SIPp (Debian `sip-tester`, scenarios in tests/sipp/) and by raw UDP/TCP
//! sockets, with an ARI application on the events WebSocket.

mod common;
mod sip_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use sip_common::Sipp;

const PCAP: &str = "/usr/share/sip-tester/g711a.pcap";

/// A node with SIP on a free port (codecs: A-law first, the pcap's codec).
fn node(extra: &[(&str, &str)]) -> (Server, u16) {
    let sip = sip_port();
    let bind = format!("127.0.0.1:{sip}");
    let mut env: Vec<(&str, &str)> = vec![
        ("CROSSBAR_SIP_BIND", bind.as_str()),
        ("CROSSBAR_SIP_CODECS", "alaw,ulaw"),
    ];
    env.extend_from_slice(extra);
    (Server::start_with(&env), sip)
}

fn target(sip: u16) -> String {
    format!("127.0.0.1:{sip}")
}

/// Waits for the `StasisStart` of a SIP channel; answers the channel.
fn sip_stasis_start(ws: &mut Ws) -> Value {
    let e = ws.next_event("StasisStart");
    assert!(
        e["channel"]["name"].as_str().unwrap().starts_with("SIP/"),
        "{e}"
    );
    e["channel"].clone()
}

fn cause_of_destroyed(ws: &mut Ws) -> u64 {
    let e = ws.next_event("ChannelDestroyed");
    e["cause"].as_u64().unwrap()
}

#[test]
fn an_inbound_call_enters_its_app_and_its_audio_reaches_a_bridged_external_media_leg() {
    let (s, sip) = node(&[]);
    let mut ws = s.ws("myapp");
    let (mut sipp, _) = Sipp::start(
        "uac_answered.xml",
        &["-s", "myapp", "-m", "1", "-key", "pcap", PCAP, &target(sip)],
    );
    let ch = sip_stasis_start(&mut ws);
    assert_eq!(ch["state"], "Ring");
    assert!(ch["name"]
        .as_str()
        .unwrap()
        .starts_with("SIP/127.0.0.1-0000"));
    assert_eq!(ch["dialplan"]["exten"], "myapp");
    assert_eq!(ch["dialplan"]["app_name"], "Stasis");
    assert_eq!(ch["caller"]["number"], "sipp");
    let id = ch["id"].as_str().unwrap().to_string();

    // An externalMedia leg to a socket of ours, in A-law like the call.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let em = s
        .post(&format!(
            "/ari/channels/externalMedia?app=myapp&external_host={}&format=alaw",
            sink.local_addr().unwrap()
        ))
        .ok()
        .clone();
    ws.next_event("StasisStart");
    let bridge = s.bridge("?type=mixing");
    s.add(&bridge, &id);
    s.add(&bridge, em["id"].as_str().unwrap());
    s.post(&format!("/ari/channels/{id}/answer")).no_content();
    let up = ws.next_event("ChannelStateChange");
    assert_eq!(up["channel"]["state"], "Up");
    let b = s.get(&format!("/ari/bridges/{bridge}"));
    assert_eq!(b.ok()["technology"], "native_rtp", "A-law meets A-law");

    // The caller's audio arrives at the externalMedia remote.
    let mut packets = 0;
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    while packets < 25 && Instant::now() < deadline {
        if let Ok((n, _)) = sink.recv_from(&mut buf) {
            if n >= 12 && buf[1] & 0x7f == 8 {
                packets += 1;
            }
        }
    }
    assert!(
        packets >= 25,
        "only {packets} A-law packets reached the bridged leg"
    );

    // The caller hangs up: BYE.
    let hangup = ws.next_event("ChannelHangupRequest");
    assert_eq!(hangup["channel"]["id"], id.as_str());
    ws.next_event("StasisEnd");
    assert_eq!(cause_of_destroyed(&mut ws), 16);
    sipp.success();
}

#[test]
fn the_app_hangs_up_with_bye() {
    let (s, sip) = node(&[]);
    let mut ws = s.ws("myapp");
    let (mut sipp, _) = Sipp::start(
        "uac_wait_bye.xml",
        &["-s", "myapp", "-m", "1", &target(sip)],
    );
    let id = sip_stasis_start(&mut ws)["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.post(&format!("/ari/channels/{id}/answer")).no_content();
    std::thread::sleep(Duration::from_millis(300));
    s.delete(&format!("/ari/channels/{id}")).no_content();
    sipp.success();
    assert_eq!(cause_of_destroyed(&mut ws), 16);
}

#[test]
fn cancel_before_answer_ends_the_channel_as_asterisk_does() {
    let (s, sip) = node(&[]);
    let mut ws = s.ws("myapp");
    let (mut sipp, _) = Sipp::start("uac_cancel.xml", &["-s", "myapp", "-m", "1", &target(sip)]);
    let id = sip_stasis_start(&mut ws)["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.post(&format!("/ari/channels/{id}/ring")).no_content();
    let hangup = ws.next_event("ChannelHangupRequest");
    assert_eq!(hangup["cause"], 127);
    ws.next_event("StasisEnd");
    assert_eq!(cause_of_destroyed(&mut ws), 127);
    sipp.success();
}

#[test]
fn reinvite_hold_and_unhold_are_channel_hold_events() {
    let (s, sip) = node(&[]);
    let mut ws = s.ws("myapp");
    let (mut sipp, _) = Sipp::start("uac_hold.xml", &["-s", "myapp", "-m", "1", &target(sip)]);
    let id = sip_stasis_start(&mut ws)["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.post(&format!("/ari/channels/{id}/answer")).no_content();
    let hold = ws.next_event("ChannelHold");
    assert_eq!(hold["channel"]["id"], id.as_str());
    ws.next_event("ChannelUnhold");
    ws.next_event("ChannelDestroyed");
    sipp.success();
}

#[test]
fn options_is_answered_for_a_dispatcher_probe() {
    let (_s, sip) = node(&[]);
    let (mut sipp, _) = Sipp::start("uac_options.xml", &["-s", "ping", "-m", "1", &target(sip)]);
    sipp.success();
    // The same over TCP.
    let (mut sipp, _) = Sipp::start(
        "uac_options.xml",
        &["-s", "ping", "-m", "1", "-t", "t1", &target(sip)],
    );
    sipp.success();
}

#[test]
fn ari_dials_out_and_the_channel_enters_the_app_on_answer() {
    let (s, _sip) = node(&[]);
    let mut ws = s.ws("myapp");
    let (mut sipp, port) = Sipp::start("uas_answer.xml", &["-m", "1"]);
    std::thread::sleep(Duration::from_millis(200));
    let r = s.post(&format!(
        "/ari/channels?endpoint=SIP/sip:bob@127.0.0.1:{port}&app=myapp&formats=ulaw&callerId=Crossbar%20%3C100%3E"
    ));
    let created = r.ok().clone();
    assert!(created["name"]
        .as_str()
        .unwrap()
        .starts_with("SIP/127.0.0.1-"));
    assert_eq!(created["state"], "Down");
    let id = created["id"].as_str().unwrap().to_string();
    let dial = ws.next_event("Dial");
    assert_eq!(dial["dialstatus"], "");
    assert_eq!(
        dial["dialstring"],
        format!("sip:bob@127.0.0.1:{port}").as_str()
    );
    let ringing = ws.next_event("Dial");
    assert_eq!(ringing["dialstatus"], "RINGING");
    let start = ws.next_event("StasisStart");
    assert_eq!(start["channel"]["id"], id.as_str());
    assert_eq!(start["channel"]["state"], "Up");
    s.delete(&format!("/ari/channels/{id}")).no_content();
    sipp.success();
    assert_eq!(cause_of_destroyed(&mut ws), 16);
}

#[test]
fn a_busy_callee_ends_the_dialed_channel_with_cause_17() {
    let (s, _sip) = node(&[]);
    let mut ws = s.ws("myapp");
    let (mut sipp, port) = Sipp::start("uas_busy.xml", &["-m", "1"]);
    std::thread::sleep(Duration::from_millis(200));
    s.post(&format!(
        "/ari/channels?endpoint=PJSIP/sip:bob@127.0.0.1:{port}&app=myapp"
    ))
    .ok();
    let busy = ws
        .events_until("ChannelDestroyed")
        .into_iter()
        .filter(|e| e["type"] == "Dial")
        .map(|e| e["dialstatus"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(busy.last().map(String::as_str), Some("BUSY"), "{busy:?}");
    sipp.success();
}

#[test]
fn an_unanswered_dial_is_cancelled_at_its_timeout() {
    let (s, _sip) = node(&[]);
    let mut ws = s.ws("myapp");
    let (mut sipp, port) = Sipp::start("uas_ring_forever.xml", &["-m", "1"]);
    std::thread::sleep(Duration::from_millis(200));
    s.post(&format!(
        "/ari/channels?endpoint=SIP/sip:bob@127.0.0.1:{port}&app=myapp&timeout=1"
    ))
    .ok();
    assert_eq!(cause_of_destroyed(&mut ws), 19);
    sipp.success();
}

// ---- raw sockets ----------------------------------------------------------------

fn raw_invite(user: &str, branch: &str, from_port: u16, extra: &str, body: &str) -> String {
    format!(
        "INVITE sip:{user}@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{from_port};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:raw@127.0.0.1>;tag=r{branch}\r\nTo: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: {branch}@raw\r\nCSeq: 1 INVITE\r\nContact: <sip:raw@127.0.0.1:{from_port}>\r\n\
         {extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `message` and returns the status line of the first final (or
/// error) response to it (its Call-ID's), skipping 100 Trying.
fn exchange(sock: &UdpSocket, to: SocketAddr, message: &[u8]) -> Option<String> {
    sock.send_to(message, to).unwrap();
    let text = String::from_utf8_lossy(message);
    let call_id = text
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .unwrap_or("none")
        .to_string();
    let mut buf = [0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let line = text.lines().next().unwrap_or("").to_string();
            if !line.starts_with("SIP/2.0 100") && text.contains(&call_id) {
                return Some(line);
            }
        }
    }
    None
}

#[test]
fn bad_sip_gets_the_right_refusal_and_the_node_keeps_serving() {
    let (s, sip) = node(&[("CROSSBAR_SIP_MAX_MESSAGE", "2000")]);
    let _ws = s.ws("myapp");
    let to: SocketAddr = target(sip).parse().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let me = sock.local_addr().unwrap().port();
    let status = |m: &str| exchange(&sock, to, m.as_bytes()).unwrap_or_default();

    // An application nobody runs: 404.
    assert!(status(&raw_invite("nobody", "a1", me, "", "")).starts_with("SIP/2.0 404"));
    // A method nobody knows: 501; one we do not take: 405.
    let frob = raw_invite("myapp", "a2", me, "", "").replace("INVITE", "FROB");
    assert!(status(&frob).starts_with("SIP/2.0 501"));
    let reg = raw_invite("myapp", "a3", me, "", "").replace("INVITE", "REGISTER");
    assert!(status(&reg).starts_with("SIP/2.0 405"));
    // A body that is not SDP: 415; SDP we cannot read: 488.
    let text = raw_invite("myapp", "a4", me, "Content-Type: text/plain\r\n", "hi");
    assert!(status(&text).starts_with("SIP/2.0 415"));
    let sdp = raw_invite(
        "myapp",
        "a5",
        me,
        "Content-Type: application/sdp\r\n",
        "v=9\r\n",
    );
    assert!(status(&sdp).starts_with("SIP/2.0 488"));
    // An extension we do not support: 420.
    let req = raw_invite("myapp", "a6", me, "Require: 100rel\r\n", "");
    assert!(status(&req).starts_with("SIP/2.0 420"));
    // A Content-Length that lies: 400.
    let lying =
        raw_invite("myapp", "a7", me, "", "").replace("Content-Length: 0", "Content-Length: 50");
    assert!(status(&lying).starts_with("SIP/2.0 400"));
    // Larger than sip.max_message: 413.
    let pad = format!("X-Pad: {}\r\n", "x".repeat(3000));
    assert!(status(&raw_invite("myapp", "a8", me, &pad, "")).starts_with("SIP/2.0 413"));
    // Garbage: dropped and counted.
    sock.send_to(b"\x16\x03\x01garbage\r\n\r\n", to).unwrap();

    // The node still serves: OPTIONS over UDP and over TCP.
    let options = raw_invite("myapp", "a9", me, "", "").replace("INVITE", "OPTIONS");
    assert!(status(&options).starts_with("SIP/2.0 200"));
    let mut tcp = TcpStream::connect(to).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let options = options
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace("a9", "b1");
    tcp.write_all(options.as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let n = tcp.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"));
    assert!(s.get("/ari/asterisk/ping").status == 200);
    assert!(s.metric("crossbar_sip_dropped_total{reason=\"rx_malformed\"}") >= 1);
}

#[test]
fn requests_from_untrusted_networks_get_403() {
    let (s, sip) = node(&[("CROSSBAR_SIP_TRUSTED", "10.0.0.0/8")]);
    let _ws = s.ws("myapp");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let me = sock.local_addr().unwrap().port();
    let to: SocketAddr = target(sip).parse().unwrap();
    let line = exchange(&sock, to, raw_invite("myapp", "t1", me, "", "").as_bytes());
    assert!(line.unwrap_or_default().starts_with("SIP/2.0 403"));
}

#[test]
fn a_burst_of_50_calls_is_answered() {
    let (s, sip) = node(&[]);
    let mut ws = s.ws("myapp");
    let (mut sipp, _) = Sipp::start(
        "uac_wait_bye.xml",
        &[
            "-s",
            "myapp",
            "-m",
            "50",
            "-r",
            "50",
            "-l",
            "50",
            &target(sip),
        ],
    );
    let mut ids = Vec::new();
    // Bounded: 50 calls, each event waited for at most WAIT.
    while ids.len() < 50 {
        let ch = sip_stasis_start(&mut ws);
        let id = ch["id"].as_str().unwrap().to_string();
        s.post(&format!("/ari/channels/{id}/answer")).no_content();
        ids.push(id);
    }
    for id in &ids {
        s.delete(&format!("/ari/channels/{id}")).no_content();
    }
    sipp.success();
    assert!(s.get("/ari/channels").ok().as_array().unwrap().is_empty());
}

#[test]
fn redirect_answers_302_with_the_new_contact() {
    let (s, sip) = node(&[]);
    let mut ws = s.ws("myapp");
    let (mut sipp, _) = Sipp::start(
        "uac_redirected.xml",
        &["-s", "myapp", "-m", "1", &target(sip)],
    );
    let id = sip_stasis_start(&mut ws)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.post(&format!("/ari/channels/{id}/redirect?endpoint=Local/x@y"));
    r.assert_error(
        422,
        "Endpoint technology 'Local' does not match channel technology 'SIP'",
    );
    s.post(&format!(
        "/ari/channels/{id}/redirect?endpoint=PJSIP/sip:elsewhere@127.0.0.9:5099"
    ))
    .no_content();
    assert_eq!(cause_of_destroyed(&mut ws), 23);
    sipp.success();
}

/// The `m=audio` ports of the INVITEs SIPp received (re-INVITEs from
/// crossbar), in order.
fn reinvite_ports(messages: &str) -> Vec<u16> {
    let mut seen = Vec::new();
    let mut ports = Vec::new();
    for m in messages.split("message received").skip(1) {
        if !m.contains("\nINVITE sip:") {
            continue;
        }
        // Retransmissions carry the same CSeq: count each request once.
        let cseq = m.lines().find(|l| l.starts_with("CSeq:")).unwrap_or("");
        if seen.contains(&cseq) {
            continue;
        }
        seen.push(cseq);
        let port: Option<u16> = m
            .lines()
            .find(|l| l.starts_with("m=audio "))
            .and_then(|l| l.split(' ').nth(1)?.parse().ok());
        ports.extend(port);
    }
    ports
}

#[test]
fn direct_media_moves_rtp_between_two_sip_parties_and_back() {
    let sip = sip_port();
    let config = "[[sip.endpoint]]\nname = \"phones\"\nmatch = [\"127.0.0.0/8\"]\ncodecs = \"alaw\"\ndirect_media = true\n";
    let bind = format!("127.0.0.1:{sip}");
    let s = Server::start_with_config_env(config, &[("CROSSBAR_SIP_BIND", bind.as_str())]);
    let mut ws = s.ws("myapp");
    let args = ["-s", "myapp", "-m", "1", "-trace_msg"];
    let (mut a, _) = Sipp::start(
        "uac_direct.xml",
        &[&args[..], &[target(sip).as_str()]].concat(),
    );
    let ca = sip_stasis_start(&mut ws);
    assert!(
        ca["name"].as_str().unwrap().starts_with("SIP/phones-"),
        "{ca}"
    );
    let (mut b, _) = Sipp::start(
        "uac_direct.xml",
        &[&args[..], &[target(sip).as_str()]].concat(),
    );
    let cb = sip_stasis_start(&mut ws);
    let (ida, idb) = (ca["id"].as_str().unwrap(), cb["id"].as_str().unwrap());
    s.post(&format!("/ari/channels/{ida}/answer")).no_content();
    s.post(&format!("/ari/channels/{idb}/answer")).no_content();
    let bridge = s.bridge("?type=mixing");
    s.add(&bridge, ida);
    s.add(&bridge, idb);
    assert_eq!(
        s.get(&format!("/ari/bridges/{bridge}")).ok()["technology"],
        "native_rtp"
    );
    // A third member: media comes back through crossbar.
    let em = s.external_media("myapp", "&format=alaw");
    let em_id = em["id"].as_str().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    s.add(&bridge, em_id);
    std::thread::sleep(Duration::from_millis(500));
    s.delete(&format!("/ari/channels/{ida}")).no_content();
    s.delete(&format!("/ari/channels/{idb}")).no_content();
    a.success();
    b.success();
    let (ma, mb) = (a.messages(), b.messages());
    let (pa, pb) = (reinvite_ports(&ma), reinvite_ports(&mb));
    // Each party's first re-INVITE points it at the other's media port
    // (the port in the other's INVITE), the second back at crossbar's leg.
    let offered = |m: &str| -> u16 {
        let sent = m.split("message sent").nth(1).expect("the INVITE");
        let line = sent.lines().find(|l| l.starts_with("m=audio ")).unwrap();
        line.split(' ').nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(pa.len(), 2, "{ma}");
    assert_eq!(pb.len(), 2, "{mb}");
    assert_eq!(pa[0], offered(&mb), "A sends to B directly");
    assert_eq!(pb[0], offered(&ma), "B sends to A directly");
    let leg_a: u16 = ca["channelvars"]["UNICASTRTP_LOCAL_PORT"]
        .as_str()
        .map_or(0, |p| p.parse().unwrap());
    let _ = leg_a;
    assert_ne!(pa[1], offered(&mb), "A's media comes back through crossbar");
    assert_ne!(pb[1], offered(&ma), "B's media comes back through crossbar");
}

#[test]
fn a_new_codec_in_a_reinvite_changes_the_bridge_technology() {
    let (s, sip) = node(&[]);
    let mut ws = s.ws("myapp");
    let (mut sipp, _) = Sipp::start("uac_recodec.xml", &["-s", "myapp", "-m", "1", &target(sip)]);
    let id = sip_stasis_start(&mut ws)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let em = s.external_media("myapp", "&format=ulaw");
    let bridge = s.bridge("?type=mixing");
    s.add(&bridge, &id);
    s.add(&bridge, em["id"].as_str().unwrap());
    assert_eq!(
        s.get(&format!("/ari/bridges/{bridge}")).ok()["technology"],
        "simple_bridge",
        "A-law (the call) meets μ-law: transcoded"
    );
    s.post(&format!("/ari/channels/{id}/answer")).no_content();
    // The caller moves to PCMU: the bridge relays natively.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tech = s.get(&format!("/ari/bridges/{bridge}")).ok()["technology"].clone();
        if tech == "native_rtp" {
            break;
        }
        assert!(Instant::now() < deadline, "still {tech}");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.delete(&format!("/ari/channels/{id}")).no_content();
    sipp.success();
}

#[test]
fn a_call_over_tcp_is_answered_and_hung_up_on_its_connection() {
    let (s, sip) = node(&[]);
    let mut ws = s.ws("myapp");
    let (mut sipp, _) = Sipp::start(
        "uac_wait_bye.xml",
        &["-s", "myapp", "-m", "1", "-t", "t1", &target(sip)],
    );
    let id = sip_stasis_start(&mut ws)["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.post(&format!("/ari/channels/{id}/answer")).no_content();
    std::thread::sleep(Duration::from_millis(300));
    s.delete(&format!("/ari/channels/{id}")).no_content();
    sipp.success();
    assert_eq!(cause_of_destroyed(&mut ws), 16);
}

#[test]
fn an_offerless_invite_gets_our_offer_and_its_answer_comes_in_the_ack() {
    let (s, sip) = node(&[]);
    let mut ws = s.ws("myapp");
    let to: SocketAddr = target(sip).parse().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let me = sock.local_addr().unwrap().port();
    sock.send_to(raw_invite("myapp", "o1", me, "", "").as_bytes(), to)
        .unwrap();
    let id = sip_stasis_start(&mut ws)["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.post(&format!("/ari/channels/{id}/answer")).no_content();
    let mut buf = [0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(3);
    let ok = loop {
        assert!(Instant::now() < deadline, "no 200");
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.starts_with("SIP/2.0 200") {
                break text;
            }
        }
    };
    assert!(ok.contains("m=audio "), "the 200 carries our offer: {ok}");
    let tag = ok
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.split("tag=").nth(1))
        .unwrap()
        .trim()
        .to_string();
    let answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.7\r\ns=-\r\nc=IN IP4 127.0.0.7\r\nt=0 0\r\nm=audio 4242 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    let ack = format!(
        "ACK sip:crossbar@{to} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKo1ack\r\n\
         Max-Forwards: 70\r\nFrom: <sip:raw@127.0.0.1>;tag=ro1\r\nTo: <sip:myapp@127.0.0.1>;tag={tag}\r\n\
         Call-ID: o1@raw\r\nCSeq: 1 ACK\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
        answer.len()
    );
    sock.send_to(ack.as_bytes(), to).unwrap();
    // The leg now sends to the address of the answer in the ACK.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let stats = s.get(&format!("/ari/channels/{id}/rtp_statistics"));
        if stats.ok()["remote_address"] == "127.0.0.7:4242" {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", stats.ok());
        std::thread::sleep(Duration::from_millis(50));
    }
    s.delete(&format!("/ari/channels/{id}")).no_content();
}
