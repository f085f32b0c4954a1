//! The agent on virtual time against a hand-written peer.

use super::*;
use crate::sip::transaction::T1;

const PEER: &str = "127.0.0.5:5070";
const ME: &str = "127.0.0.1:5060";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn agent() -> Agent {
    Agent::new(AgentConfig {
        address: ME.parse().unwrap(),
        session_expires: 1800,
        min_se: 90,
        max_transactions: 100,
        seed: 7,
    })
}

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

struct Clock(Instant);

impl Clock {
    fn advance(&mut self, a: &mut Agent, by: Duration) {
        let end = self.0 + by;
        // Bounded: at most 10k wake-ups.
        for _ in 0..10_000 {
            match a.poll_timeout() {
                Some(t) if t <= end => {
                    self.0 = self.0.max(t);
                    a.handle_timeout(self.0);
                }
                _ => break,
            }
        }
        self.0 = end;
    }
}

fn invite(branch: &str, extra: &str, body: &str) -> String {
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_string()
    };
    format!(
        "INVITE sip:myapp@127.0.0.1:5060;arg=x SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.9:5080;branch=z9hG4bKproxy{branch}\r\n\
         Via: SIP/2.0/UDP {PEER};branch=z9hG4bK{branch}\r\n\
         Record-Route: <sip:127.0.0.9:5080;lr>\r\n\
         Max-Forwards: 69\r\nFrom: \"Alice\" <sip:alice@127.0.0.5>;tag=a1\r\n\
         To: <sip:myapp@127.0.0.1>\r\nCall-ID: call-{branch}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{PEER}>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn in_dialog(
    method: &str,
    branch: &str,
    call_id: &str,
    tag: &str,
    cseq: u32,
    extra: &str,
) -> String {
    format!(
        "{method} sip:crossbar@{ME} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.9:5080;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@127.0.0.5>;tag=a1\r\n\
         To: <sip:myapp@127.0.0.1>;tag={tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

fn sent(a: &mut Agent) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(t) = a.poll_transmit() {
        out.push(String::from_utf8(t.bytes).unwrap());
    }
    out
}

fn events(a: &mut Agent) -> Vec<CallEvent> {
    let mut out = Vec::new();
    while let Some(e) = a.poll_event() {
        out.push(e);
    }
    out
}

fn status_line(m: &str) -> &str {
    m.lines().next().unwrap()
}

fn our_tag(response: &str) -> String {
    let to = response
        .lines()
        .find(|l| l.starts_with("To:"))
        .expect("a To header");
    to.split("tag=").nth(1).unwrap().trim().to_string()
}

/// An incoming call up to the Incoming event; answers its key.
fn incoming(a: &mut Agent, now: Instant, branch: &str, extra: &str) -> CallKey {
    a.receive(
        now,
        TransportId(0),
        peer(),
        invite(branch, extra, SDP).as_bytes(),
    );
    let out = sent(a);
    assert_eq!(status_line(&out[0]), "SIP/2.0 100 Trying");
    match events(a).as_slice() {
        [CallEvent::Incoming { call, request, .. }] => {
            assert_eq!(request.uri.user(), Some("myapp"));
            *call
        }
        other => panic!("expected Incoming, got {other:?}"),
    }
}

#[test]
fn an_answered_call_is_acked_and_ended_by_bye() {
    let mut a = agent();
    let now = Instant::now();
    let call = incoming(&mut a, now, "c1", "");
    assert!(a.provisional(now, call, 180, None));
    let ringing = sent(&mut a);
    assert_eq!(status_line(&ringing[0]), "SIP/2.0 180 Ringing");
    assert!(ringing[0].contains("Record-Route: <sip:127.0.0.9:5080;lr>"));
    assert!(a.accept(now, call, "v=0\r\n"));
    let ok = sent(&mut a);
    assert_eq!(ok.len(), 1);
    assert_eq!(status_line(&ok[0]), "SIP/2.0 200 OK");
    assert!(ok[0].contains("Contact: <sip:crossbar@127.0.0.1:5060>"));
    assert!(ok[0].contains("Content-Type: application/sdp"));
    let tag = our_tag(&ok[0]);
    a.receive(
        now,
        TransportId(0),
        peer(),
        in_dialog("ACK", "ack1", "call-c1", &tag, 1, "").as_bytes(),
    );
    assert!(matches!(
        events(&mut a).as_slice(),
        [CallEvent::Confirmed { sdp: None, .. }]
    ));
    a.receive(
        now,
        TransportId(0),
        peer(),
        in_dialog("BYE", "bye1", "call-c1", &tag, 2, "").as_bytes(),
    );
    assert_eq!(status_line(&sent(&mut a)[0]), "SIP/2.0 200 OK");
    assert!(matches!(
        events(&mut a).as_slice(),
        [CallEvent::Ended {
            why: EndReason::Bye,
            ..
        }]
    ));
    assert_eq!(a.call_count(), 0);
    // A second BYE finds no dialog.
    a.receive(
        now,
        TransportId(0),
        peer(),
        in_dialog("BYE", "bye2", "call-c1", &tag, 3, "").as_bytes(),
    );
    assert!(status_line(&sent(&mut a)[0]).starts_with("SIP/2.0 481"));
}

#[test]
fn a_lost_200_is_retransmitted_and_a_lost_ack_ends_the_call() {
    let mut a = agent();
    let mut clock = Clock(Instant::now());
    let call = incoming(&mut a, clock.0, "c2", "");
    assert!(a.accept(clock.0, call, "v=0\r\n"));
    assert_eq!(sent(&mut a).len(), 1);
    clock.advance(&mut a, T1);
    let again = sent(&mut a);
    assert_eq!(again.len(), 1, "the 200 again after T1");
    assert_eq!(status_line(&again[0]), "SIP/2.0 200 OK");
    clock.advance(&mut a, Duration::from_secs(40));
    let out = sent(&mut a);
    let bye = out.iter().find(|m| m.starts_with("BYE ")).expect("a BYE");
    assert!(bye.contains("Route: <sip:127.0.0.9:5080;lr>"), "{bye}");
    assert!(bye.starts_with("BYE sip:alice@127.0.0.5:5070 SIP/2.0"));
    assert!(matches!(
        events(&mut a).as_slice(),
        [CallEvent::Ended {
            why: EndReason::NoAck,
            ..
        }]
    ));
}

#[test]
fn cancel_before_answer_gets_487_and_cancel_racing_200_does_not() {
    let mut a = agent();
    let now = Instant::now();
    let call = incoming(&mut a, now, "c3", "");
    let cancel = invite("c3", "", "")
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    a.receive(now, TransportId(0), peer(), cancel.as_bytes());
    let out = sent(&mut a);
    assert!(out.iter().any(|m| status_line(m) == "SIP/2.0 200 OK"));
    assert!(out
        .iter()
        .any(|m| status_line(m).starts_with("SIP/2.0 487")));
    assert!(matches!(events(&mut a).as_slice(), [CallEvent::Cancelled { call: c }] if *c == call));
    assert!(
        !a.accept(now, call, "v=0\r\n"),
        "a cancelled call cannot be answered"
    );

    let call = incoming(&mut a, now, "c4", "");
    assert!(a.accept(now, call, "v=0\r\n"));
    sent(&mut a);
    let cancel = invite("c4", "", "")
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    a.receive(now, TransportId(0), peer(), cancel.as_bytes());
    let out = sent(&mut a);
    assert!(out.iter().any(|m| status_line(m) == "SIP/2.0 200 OK"));
    assert!(!out
        .iter()
        .any(|m| status_line(m).starts_with("SIP/2.0 487")));
    assert!(events(&mut a).is_empty());
    assert_eq!(a.call_count(), 1);
}

fn response(request: &str, code: &str, tag: Option<&str>, extra: &str, body: &str) -> String {
    let mut head = format!("SIP/2.0 {code}\r\n");
    for line in request.lines() {
        let keep = ["Via:", "From:", "Call-ID:", "CSeq:"]
            .iter()
            .any(|h| line.starts_with(h));
        if keep {
            head.push_str(line);
            head.push_str("\r\n");
        }
        if line.starts_with("To:") {
            head.push_str(line);
            if let Some(t) = tag {
                head.push_str(&format!(";tag={t}"));
            }
            head.push_str("\r\n");
        }
    }
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{head}{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn an_outgoing_call_rings_is_answered_and_hung_up_along_the_route_set() {
    let mut a = agent();
    let now = Instant::now();
    let target = Target::parse("sip:bob@127.0.0.6:5090").unwrap();
    let call = a
        .invite(now, &target, ("Crossbar", "100"), Some(SDP))
        .unwrap();
    let out = sent(&mut a);
    assert_eq!(out.len(), 1);
    let inv = &out[0];
    assert!(inv.starts_with("INVITE sip:bob@127.0.0.6:5090 SIP/2.0"));
    assert!(inv.contains("From: \"Crossbar\" <sip:100@127.0.0.1>;tag="));
    let from = SocketAddr::from(([127, 0, 0, 6], 5090));
    a.receive(
        now,
        TransportId(0),
        from,
        response(inv, "180 Ringing", Some("b1"), "", "").as_bytes(),
    );
    assert!(matches!(
        events(&mut a).as_slice(),
        [CallEvent::Progress {
            status: 180,
            sdp: None,
            ..
        }]
    ));
    let rr = "Record-Route: <sip:127.0.0.9:5080;lr>\r\nRecord-Route: <sip:127.0.0.8:5080;lr>\r\nContact: <sip:bob@127.0.0.6:5090>\r\n";
    a.receive(
        now,
        TransportId(0),
        from,
        response(inv, "200 OK", Some("b1"), rr, SDP).as_bytes(),
    );
    match events(&mut a).as_slice() {
        [CallEvent::Answered {
            call: c,
            sdp: Some(s),
        }] => {
            assert_eq!(*c, call);
            assert_eq!(s, SDP);
        }
        other => panic!("{other:?}"),
    }
    let ack = sent(&mut a);
    assert!(
        ack[0].starts_with("ACK sip:bob@127.0.0.6:5090 SIP/2.0"),
        "{}",
        ack[0]
    );
    assert!(a.hangup(now, call, 16));
    let bye = sent(&mut a);
    assert!(bye[0].starts_with("BYE sip:bob@127.0.0.6:5090"));
    // The route set is the Record-Route of the 2xx, reversed.
    let routes: Vec<&str> = bye[0].lines().filter(|l| l.starts_with("Route:")).collect();
    assert_eq!(
        routes,
        [
            "Route: <sip:127.0.0.8:5080;lr>",
            "Route: <sip:127.0.0.9:5080;lr>"
        ]
    );
    assert!(bye[0].contains("To: <sip:bob@127.0.0.6:5090>;tag=b1"));
    assert_eq!(a.call_count(), 0);
}

#[test]
fn outgoing_failures_are_reported_with_their_status() {
    let mut a = agent();
    let mut clock = Clock(Instant::now());
    let target = Target::parse("sip:bob@127.0.0.6:5090").unwrap();
    let from = SocketAddr::from(([127, 0, 0, 6], 5090));
    let busy = a.invite(clock.0, &target, ("", "100"), Some(SDP)).unwrap();
    let inv = sent(&mut a).remove(0);
    a.receive(
        clock.0,
        TransportId(0),
        from,
        response(&inv, "486 Busy Here", Some("b2"), "", "").as_bytes(),
    );
    assert!(matches!(
        events(&mut a).as_slice(),
        [CallEvent::Failed { call, status: 486 }] if *call == busy
    ));
    assert!(
        sent(&mut a)[0].starts_with("ACK "),
        "the transaction ACKs a non-2xx"
    );

    let silent = a.invite(clock.0, &target, ("", "100"), Some(SDP)).unwrap();
    sent(&mut a);
    clock.advance(&mut a, Duration::from_secs(33));
    assert!(matches!(
        events(&mut a).as_slice(),
        [CallEvent::Failed { call, status: 408 }] if *call == silent
    ));
}

#[test]
fn hanging_up_a_ringing_outgoing_call_cancels_it() {
    let mut a = agent();
    let now = Instant::now();
    let target = Target::parse("sip:bob@127.0.0.6:5090").unwrap();
    let from = SocketAddr::from(([127, 0, 0, 6], 5090));
    let call = a.invite(now, &target, ("", "100"), Some(SDP)).unwrap();
    let inv = sent(&mut a).remove(0);
    a.receive(
        now,
        TransportId(0),
        from,
        response(&inv, "180 Ringing", Some("b3"), "", "").as_bytes(),
    );
    events(&mut a);
    assert!(a.hangup(now, call, 16));
    let cancel = sent(&mut a).remove(0);
    assert!(cancel.starts_with("CANCEL sip:bob@127.0.0.6:5090"));
    assert!(cancel.contains(" CANCEL\r\n"));
    // The 200 crosses the CANCEL: ACK and BYE, no event.
    let rr = "Contact: <sip:bob@127.0.0.6:5090>\r\n";
    a.receive(
        now,
        TransportId(0),
        from,
        response(&inv, "200 OK", Some("b3"), rr, SDP).as_bytes(),
    );
    let out = sent(&mut a);
    assert!(out.iter().any(|m| m.starts_with("ACK ")), "{out:?}");
    assert!(out.iter().any(|m| m.starts_with("BYE ")), "{out:?}");
    assert!(events(&mut a).is_empty());
}

#[test]
fn requests_we_do_not_take_get_the_right_refusal() {
    let mut a = agent();
    let now = Instant::now();
    let cases: Vec<(String, &str)> = vec![
        (invite("r1", "", "").replace("INVITE", "FROB"), "501"),
        (invite("r2", "", "").replace("INVITE", "REGISTER"), "405"),
        (
            invite("r3", "", "hello").replace("application/sdp", "text/plain"),
            "415",
        ),
        (invite("r4", "Require: 100rel\r\n", SDP), "420"),
        (invite("r5", "Session-Expires: 30\r\n", SDP), "422"),
        (in_dialog("BYE", "r6", "nope", "zz", 2, ""), "481"),
        (
            invite("r7", "", SDP).replace("SIP/2.0\r\n", "SIP/3.0\r\n"),
            "505",
        ),
    ];
    for (text, code) in cases {
        a.receive(now, TransportId(0), peer(), text.as_bytes());
        let out = sent(&mut a);
        assert!(
            out.iter()
                .any(|m| status_line(m).split(' ').nth(1) == Some(code)),
            "expected {code} for {}: {out:?}",
            text.lines().next().unwrap()
        );
    }
    assert!(events(&mut a).is_empty());
    assert!(a.counters()["tx_501"] >= 1 && a.counters()["tx_422"] >= 1);
    // A Content-Length that lies about a complete request: 400.
    let lying = invite("r8", "", SDP).replace(
        &format!("Content-Length: {}", SDP.len()),
        "Content-Length: 9999",
    );
    a.receive(now, TransportId(0), peer(), lying.as_bytes());
    let out = sent(&mut a);
    assert!(status_line(&out[0]).starts_with("SIP/2.0 400"), "{out:?}");
    // Garbage is dropped and counted.
    let before = a.counters()["rx_malformed"];
    a.receive(now, TransportId(0), peer(), b"\x00\x01garbage\r\n\r\n");
    assert!(sent(&mut a).is_empty());
    assert_eq!(a.counters()["rx_malformed"], before + 1);
}

#[test]
fn options_is_answered_200_with_what_we_allow() {
    let mut a = agent();
    let now = Instant::now();
    let options = invite("o1", "", "").replace("INVITE", "OPTIONS");
    a.receive(now, TransportId(0), peer(), options.as_bytes());
    let out = sent(&mut a);
    assert_eq!(status_line(&out[0]), "SIP/2.0 200 OK");
    assert!(out[0].contains(ALLOW), "{}", out[0]);
}

#[test]
fn a_reinvite_is_an_offer_answered_by_the_control_plane() {
    let mut a = agent();
    let now = Instant::now();
    let call = incoming(&mut a, now, "h1", "");
    a.accept(now, call, "v=0\r\n");
    let tag = our_tag(&sent(&mut a)[0]);
    a.receive(
        now,
        TransportId(0),
        peer(),
        in_dialog("ACK", "h1a", "call-h1", &tag, 1, "").as_bytes(),
    );
    events(&mut a);
    let hold = in_dialog(
        "INVITE",
        "h1r",
        "call-h1",
        &tag,
        2,
        "Contact: <sip:alice@127.0.0.5:5070>\r\nContent-Type: application/sdp\r\n",
    )
    .replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Length: {}\r\n\r\n{SDP}a=sendonly\r\n",
            SDP.len() + 12
        ),
    );
    a.receive(now, TransportId(0), peer(), hold.as_bytes());
    match events(&mut a).as_slice() {
        [CallEvent::Offer { sdp: Some(s), .. }] => assert!(s.contains("a=sendonly")),
        other => panic!("{other:?}"),
    }
    // A second offer while one is pending: 491.
    let again = hold
        .replace("z9hG4bKh1r", "z9hG4bKh1s")
        .replace("CSeq: 2", "CSeq: 3");
    a.receive(now, TransportId(0), peer(), again.as_bytes());
    assert!(sent(&mut a).iter().any(|m| m.starts_with("SIP/2.0 491")));
    assert!(a.answer_offer(now, call, Ok("v=0\r\na=recvonly\r\n")));
    let ok = sent(&mut a);
    assert!(ok[0].starts_with("SIP/2.0 200") && ok[0].contains("a=recvonly"));
    a.receive(
        now,
        TransportId(0),
        peer(),
        in_dialog("ACK", "h1b", "call-h1", &tag, 2, "").as_bytes(),
    );
    assert!(
        events(&mut a).is_empty(),
        "the ACK of a re-INVITE is no new event"
    );
}

#[test]
fn an_unrefreshed_session_ends_with_bye() {
    let mut a = agent();
    let mut clock = Clock(Instant::now());
    let call = incoming(
        &mut a,
        clock.0,
        "s1",
        "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
    );
    a.accept(clock.0, call, "v=0\r\n");
    let ok = sent(&mut a).remove(0);
    assert!(ok.contains("Session-Expires: 90;refresher=uac"), "{ok}");
    assert!(ok.contains("Require: timer"));
    let tag = our_tag(&ok);
    a.receive(
        clock.0,
        TransportId(0),
        peer(),
        in_dialog("ACK", "s1a", "call-s1", &tag, 1, "").as_bytes(),
    );
    events(&mut a);
    clock.advance(&mut a, Duration::from_secs(59));
    assert!(events(&mut a).is_empty());
    clock.advance(&mut a, Duration::from_secs(2));
    assert!(matches!(
        events(&mut a).as_slice(),
        [CallEvent::Ended {
            why: EndReason::SessionExpired,
            ..
        }]
    ));
    assert!(sent(&mut a).iter().any(|m| m.starts_with("BYE ")));
}

#[test]
fn we_refresh_when_the_caller_cannot() {
    let mut a = agent();
    let mut clock = Clock(Instant::now());
    let call = incoming(&mut a, clock.0, "s2", "Session-Expires: 120\r\n");
    a.accept(clock.0, call, "v=0\r\n");
    let ok = sent(&mut a).remove(0);
    assert!(ok.contains("Session-Expires: 120;refresher=uas"), "{ok}");
    let tag = our_tag(&ok);
    a.receive(
        clock.0,
        TransportId(0),
        peer(),
        in_dialog("ACK", "s2a", "call-s2", &tag, 1, "").as_bytes(),
    );
    events(&mut a);
    clock.advance(&mut a, Duration::from_secs(61));
    let out = sent(&mut a);
    let refresh = out
        .iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("a refresh");
    assert!(refresh.contains("v=0"), "the refresh carries our SDP");
    assert!(events(&mut a).is_empty());
}

#[test]
fn a_session_timer_waits_for_the_answer() {
    let mut a = agent();
    let mut clock = Clock(Instant::now());
    let call = incoming(
        &mut a,
        clock.0,
        "s3",
        "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
    );
    // Ringing for a while: no BYE, no event, the call still answerable.
    clock.advance(&mut a, Duration::from_secs(5));
    assert!(events(&mut a).is_empty());
    assert!(!sent(&mut a).iter().any(|m| m.starts_with("BYE ")));
    assert!(a.accept(clock.0, call, "v=0\r\n"));
}
