//! Unit tests of the SDP parser, writer and offer/answer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::*;
use crate::media::Format;
use crate::rtp::xorshift::XorShift;

const ASTERISK: &str = "v=0\r\n\
o=- 1735297853 1735297853 IN IP4 192.0.2.10\r\n\
s=Asterisk\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 17342 RTP/AVP 0 8 9 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";

const BARESIP: &str = "v=0\r\n\
o=- 1376566245 1860863349 IN IP4 198.51.100.7\r\n\
s=-\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
m=audio 10150 RTP/AVP 96 9 0 8 101\r\n\
b=AS:64\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=ssrc:1516372153 cname:e3a4c0\r\n\
a=rtcp-rsize\r\n";

// SIPp's uac_pcap scenario (LF line ends, as in its XML).
const SIPP: &str = "v=0\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\n\
s=-\n\
c=IN IP4 127.0.0.1\n\
t=0 0\n\
m=audio 6000 RTP/AVP 8 101\n\
a=rtpmap:8 PCMA/8000\n\
a=rtpmap:101 telephone-event/8000\n\
a=fmtp:101 0-11,16\n";

const WEBRTC: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS stream0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1467250027 1 udp 2122260223 192.168.0.196 46243 typ host generation 0\r\n\
a=ice-ufrag:Oyef\r\n\
a=ice-pwd:eKqXwA0vU3wvWpNJ8bUd5Mq/\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5E\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=sendrecv\r\n\
a=msid:stream0 track0\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:3735928559 cname:abcd\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=mid:1\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n";

fn p(text: &str) -> SessionDescription {
    parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn local() -> LocalMedia {
    let mut l = LocalMedia::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)), 20000, 42);
    l.formats = Format::ALL.to_vec();
    l
}

/// An offer with one audio line of the given payload types and extra lines.
fn audio_offer(formats: &str, extra: &str) -> SessionDescription {
    p(&format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP {formats}\r\n{extra}"
    ))
}

#[test]
fn parses_asterisk() {
    let s = p(ASTERISK);
    assert_eq!(s.origin.session_id, 1_735_297_853);
    assert_eq!(s.origin.address, "192.0.2.10");
    assert_eq!(s.session_name, "Asterisk");
    let m = &s.media[0];
    assert_eq!(
        (m.media.as_str(), m.port, m.proto.as_str()),
        ("audio", 17342, "RTP/AVP")
    );
    assert_eq!(m.payload_types().collect::<Vec<_>>(), vec![0, 8, 9, 101]);
    assert_eq!(m.rtpmaps.len(), 4);
    assert_eq!(m.fmtp("101").map(|f| f.params.as_str()), Some("0-16"));
    assert_eq!((m.ptime, m.maxptime), (Some(20), Some(150)));
    assert_eq!(m.direction, Some(Direction::SendRecv));
    assert_eq!(
        s.connection_of(m).and_then(Connection::ip),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)))
    );
}

#[test]
fn parses_baresip_sipp_and_webrtc() {
    let b = p(BARESIP);
    let m = &b.media[0];
    assert_eq!(format_of(m, 96), Some(Format::Opus));
    assert_eq!(m.bandwidth, vec!["AS:64".to_string()]);
    assert_eq!(m.attributes.len(), 3);
    assert_eq!(
        m.attributes[1].value.as_deref(),
        Some("1516372153 cname:e3a4c0")
    );

    let s = p(SIPP);
    assert_eq!(s.origin.username, "user1");
    assert_eq!(s.media[0].payload_types().collect::<Vec<_>>(), vec![8, 101]);

    let w = p(WEBRTC);
    assert_eq!(w.origin.session_id, 4_611_731_400_430_051_336);
    assert_eq!(w.media.len(), 2);
    assert!(w.media[0].rtcp_mux && w.media[1].rtcp_mux);
    assert_eq!(w.media[0].rtcp.as_ref().map(|r| r.port), Some(9));
    assert_eq!(w.media[1].direction, Some(Direction::RecvOnly));
    assert_eq!(w.attributes[0].name, "group");
    assert!(w.media[0].is_rtp());
}

#[test]
fn round_trips() {
    for text in [ASTERISK, BARESIP, SIPP, WEBRTC] {
        let s = p(text);
        assert_eq!(p(&s.write()), s, "{text}");
    }
    let l = local();
    let o = offer(&l).expect("offer");
    assert_eq!(p(&o.write()), o);
    let a = answer(&p(ASTERISK), &l).expect("answer");
    assert_eq!(p(&a.sdp.write()), a.sdp);
}

#[test]
fn answer_prefers_the_bridged_format() {
    let mut l = local();
    l.preferred = vec![Format::Alaw];
    let a = answer(&p(ASTERISK), &l).expect("answer");
    assert_eq!((a.format, a.payload_type), (Format::Alaw, 8));
    let m = &a.sdp.media[0];
    assert_eq!(m.formats, vec!["8", "101"]);
    assert_eq!(m.port, 20000);
    assert_eq!(
        a.sdp.connection.as_ref().map(|c| c.address.as_str()),
        Some("203.0.113.5")
    );
    // A preferred format that is not offered falls back to the offer's order.
    l.preferred = vec![Format::Slin16, Format::G722];
    let a = answer(&p(ASTERISK), &l).expect("answer");
    assert_eq!(a.format, Format::G722);
}

#[test]
fn answer_falls_back_to_offer_order_among_supported() {
    let mut l = local();
    // Opus first in the offer, but not supported here: G722 is next.
    l.formats = vec![Format::Ulaw, Format::Alaw, Format::G722];
    let a = answer(&p(BARESIP), &l).expect("answer");
    assert_eq!((a.format, a.payload_type), (Format::G722, 9));
    l.formats = Format::ALL.to_vec();
    let a = answer(&p(BARESIP), &l).expect("answer");
    assert_eq!((a.format, a.payload_type), (Format::Opus, 96));
    let map = a.sdp.media[0].rtpmap(96).expect("rtpmap");
    assert_eq!(
        (map.encoding.as_str(), map.clock_rate, map.channels),
        ("opus", 48000, Some(2))
    );
}

#[test]
fn dynamic_names_and_rates_map_case_insensitively() {
    let o = audio_offer(
        "97 98 99 100 102",
        "a=rtpmap:97 l16/16000\r\na=rtpmap:98 L16/44100\r\na=rtpmap:99 pcmu/8000\r\n\
         a=rtpmap:100 L16/8000/2\r\na=rtpmap:102 OPUS/48000/2\r\n",
    );
    let m = &o.media[0];
    assert_eq!(format_of(m, 97), Some(Format::Slin16));
    assert_eq!(format_of(m, 98), None);
    assert_eq!(format_of(m, 99), Some(Format::Ulaw));
    assert_eq!(format_of(m, 100), None);
    assert_eq!(format_of(m, 102), Some(Format::Opus));
    // Unmapped dynamic types are unknown; static ones are known without rtpmap.
    assert_eq!(format_of(m, 96), None);
    assert_eq!(format_of(m, 9), Some(Format::G722));
    let a = answer(&o, &local()).expect("answer");
    assert_eq!((a.format, a.payload_type), (Format::Slin16, 97));
}

#[test]
fn telephone_event_kept_with_its_pt_and_matching_rate() {
    let a = answer(&p(SIPP), &local()).expect("answer");
    assert_eq!(a.dtmf_payload_type, Some(101));
    let m = &a.sdp.media[0];
    assert_eq!(m.fmtp("101").map(|f| f.params.as_str()), Some("0-11,16"));
    // Without telephone-event in the offer there is none in the answer.
    let o = audio_offer("0", "");
    let a = answer(&o, &local()).expect("answer");
    assert_eq!(a.dtmf_payload_type, None);
    assert_eq!(a.sdp.media[0].formats, vec!["0"]);
    // Two rates: the codec's rate wins (8 kHz for PCMU, 48 kHz for Opus).
    let o = audio_offer(
        "0 111 110 126",
        "a=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/48000\r\n\
         a=rtpmap:126 telephone-event/8000\r\n",
    );
    assert_eq!(
        answer(&o, &local()).expect("a").dtmf_payload_type,
        Some(126)
    );
    let mut l = local();
    l.preferred = vec![Format::Opus];
    assert_eq!(answer(&o, &l).expect("a").dtmf_payload_type, Some(110));
    l.telephone_event = false;
    assert_eq!(answer(&o, &l).expect("a").dtmf_payload_type, None);
}

#[test]
fn directions_are_answered_per_rfc3264() {
    for (offered, answered) in [
        ("a=sendrecv\r\n", Direction::SendRecv),
        ("", Direction::SendRecv),
        ("a=sendonly\r\n", Direction::RecvOnly),
        ("a=recvonly\r\n", Direction::SendOnly),
        ("a=inactive\r\n", Direction::Inactive),
    ] {
        let a = answer(&audio_offer("0", offered), &local()).expect("answer");
        assert_eq!(a.direction, answered, "{offered}");
        assert_eq!(a.sdp.media[0].direction, Some(answered));
    }
    // Session-level direction applies when the media has none.
    let o = p(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
               a=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n",
    );
    assert_eq!(
        answer(&o, &local()).expect("a").direction,
        Direction::RecvOnly
    );
    // Our own hold limits the answer.
    let mut l = local();
    l.direction = Direction::SendOnly;
    let a = answer(&audio_offer("0", "a=sendrecv\r\n"), &l).expect("answer");
    assert_eq!(a.direction, Direction::SendOnly);
}

#[test]
fn ptime_and_rtcp_mux_are_echoed() {
    let a = answer(&audio_offer("0", "a=ptime:30\r\na=rtcp-mux\r\n"), &local()).expect("a");
    assert_eq!((a.ptime, a.sdp.media[0].ptime), (Some(30), Some(30)));
    assert!(a.sdp.media[0].rtcp_mux);
    let a = answer(&audio_offer("0", ""), &local()).expect("a");
    assert_eq!(a.sdp.media[0].ptime, None);
    assert!(!a.sdp.media[0].rtcp_mux);
    let mut l = local();
    l.rtcp_mux = false;
    let a = answer(&audio_offer("0", "a=rtcp-mux\r\n"), &l).expect("a");
    assert!(!a.sdp.media[0].rtcp_mux);
}

#[test]
fn other_streams_get_port_zero_in_order() {
    let o = p(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
               m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
               m=audio 0 RTP/AVP 0\r\n\
               m=audio 4002 RTP/SAVP 0\r\n\
               m=audio 4004 RTP/AVP 18\r\n\
               m=audio 4006 RTP/AVP 8\r\n\
               m=audio 4008 RTP/AVP 0\r\n",
    );
    let a = answer(&o, &local()).expect("answer");
    let ports: Vec<u16> = a.sdp.media.iter().map(|m| m.port).collect();
    assert_eq!(ports, vec![0, 0, 0, 0, 20000, 0]);
    assert_eq!(a.media_index, 4);
    assert_eq!(a.format, Format::Alaw);
    assert_eq!(a.sdp.media[0].media, "video");
    assert_eq!(a.sdp.media[0].formats, vec!["96"]);
    assert_eq!(a.sdp.media[2].proto, "RTP/SAVP");
}

#[test]
fn nothing_supported_is_not_acceptable() {
    for o in [
        audio_offer("18 3", "a=rtpmap:18 G729/8000\r\n"),
        audio_offer("96", "a=rtpmap:96 L16/44100\r\n"),
        p(WEBRTC),
    ] {
        match answer(&o, &local()) {
            Err(SdpError::NotAcceptable { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    let mut l = local();
    l.formats = vec![Format::Opus];
    assert!(matches!(
        answer(&p(SIPP), &l),
        Err(SdpError::NotAcceptable { .. })
    ));
    l.formats.clear();
    assert!(matches!(offer(&l), Err(SdpError::NotAcceptable { .. })));
}

#[test]
fn offer_lists_preferred_then_the_rest_and_dtmf() {
    let mut l = local();
    l.preferred = vec![Format::G722, Format::Ulaw];
    l.session_version = 43;
    let o = offer(&l).expect("offer");
    assert_eq!(o.origin.session_version, 43);
    let m = &o.media[0];
    assert_eq!(
        m.formats,
        vec!["9", "0", "8", "118", "119", "120", "111", "101"]
    );
    assert_eq!(m.rtpmaps.len(), 8);
    assert_eq!(m.fmtp("101").map(|f| f.params.as_str()), Some("0-16"));
    assert_eq!(m.ptime, Some(20));
    assert_eq!(m.direction, Some(Direction::SendRecv));
    for pt in [9, 0, 8, 118, 119, 120, 111] {
        let f = format_of(m, pt).expect("format");
        assert_eq!(f.payload_type(), pt);
    }
}

#[test]
fn negotiated_as_answerer() {
    let o = p(ASTERISK);
    let mut l = local();
    l.preferred = vec![Format::Alaw];
    let a = answer(&o, &l).expect("answer");
    let n = negotiated(&o, &a.sdp, Role::Answerer).expect("negotiated");
    assert_eq!(n.remote, Some(SocketAddr::from(([192, 0, 2, 10], 17342))));
    assert_eq!(
        n.remote_rtcp,
        Some(SocketAddr::from(([192, 0, 2, 10], 17343)))
    );
    assert_eq!((n.format, n.payload_type), (Format::Alaw, 8));
    assert_eq!((n.ptime, n.dtmf_payload_type), (Some(20), Some(101)));
    assert_eq!(n.direction, Direction::SendRecv);
    assert!(!n.rtcp_mux);
}

#[test]
fn negotiated_as_offerer_from_a_peer_answer() {
    let l = local();
    let o = offer(&l).expect("offer");
    // The peer answers in the ACK: PCMA, hold (sendonly), rtcp-mux, ptime 30.
    let a = p("v=0\r\no=peer 7 7 IN IP4 198.51.100.9\r\ns=-\r\nt=0 0\r\n\
               m=audio 30000 RTP/AVP 8 0 101\r\nc=IN IP4 198.51.100.9\r\n\
               a=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\na=sendonly\r\na=rtcp-mux\r\n");
    let n = negotiated(&o, &a, Role::Offerer).expect("negotiated");
    assert_eq!(n.remote, Some(SocketAddr::from(([198, 51, 100, 9], 30000))));
    assert_eq!(n.remote_rtcp, n.remote);
    assert_eq!((n.format, n.payload_type), (Format::Alaw, 8));
    assert_eq!(n.direction, Direction::RecvOnly);
    assert_eq!((n.ptime, n.dtmf_payload_type), (Some(30), Some(101)));
    assert!(n.rtcp_mux);
    // Old-style hold: c=0.0.0.0 gives no remote address; a=rtcp is honoured.
    let a = p(
        "v=0\r\no=peer 7 8 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
               m=audio 30000 RTP/AVP 0\r\na=rtcp:30005\r\n",
    );
    let n = negotiated(&o, &a, Role::Offerer).expect("negotiated");
    assert_eq!((n.remote, n.remote_rtcp), (None, None));
    let a = p(
        "v=0\r\no=peer 7 8 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\nt=0 0\r\n\
               m=audio 30000 RTP/AVP 0\r\na=rtcp:30005\r\n",
    );
    let n = negotiated(&o, &a, Role::Offerer).expect("negotiated");
    assert_eq!(
        n.remote_rtcp,
        Some(SocketAddr::from(([198, 51, 100, 9], 30005)))
    );
    // A rejected answer settles nothing.
    let a = p("v=0\r\no=peer 7 9 IN IP4 198.51.100.9\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n");
    assert!(matches!(
        negotiated(&o, &a, Role::Offerer),
        Err(SdpError::NotAcceptable { .. })
    ));
}

#[test]
fn malformed_input_names_the_line() {
    const HEAD: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";
    let cases: &[(&str, usize)] = &[
        ("", 0),
        ("o=- 1 1 IN IP4 x\r\n", 1),
        ("v=1\r\n", 1),
        ("v=0\r\nx\r\n", 2),
        ("v=0\r\n=0\r\n", 2),
        ("v=0\r\nO=- 1 1 IN IP4 x\r\n", 2),
        ("v=0\r\no=- 1 1 IN IP4\r\n", 2),
        ("v=0\r\no=- x 1 IN IP4 a\r\n", 2),
        ("v=0\r\no=- 1 -1 IN IP4 a\r\n", 2),
        ("v=0\r\no=- 1 1 ATM IP4 a\r\n", 2),
        ("v=0\r\no=- 1 1 IN IP5 a\r\n", 2),
        ("v=0\r\no=- 1 1 IN IP4 a\r\nc=IN IP4 a\r\n", 3),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nv=0\r\n", 4),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\no=- 1 1 IN IP4 a\r\n", 4),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nq=1\r\n", 4),
        (
            "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\n",
            4,
        ),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nt=0\r\n", 4),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nb=64\r\n", 4),
        ("v=0\r\no=- 1 1 IN IP4 a\r\ns=\u{1}\r\n", 3),
        (
            "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 a\r\nc=IN IP4 b\r\n",
            5,
        ),
    ];
    for (text, line) in cases {
        match parse(text.as_bytes()) {
            Err(SdpError::Malformed { line: l, .. }) => assert_eq!(l, *line, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let media: &[&str] = &[
        "m=audio 4000 RTP/AVP\r\n",
        "m=audio 70000 RTP/AVP 0\r\n",
        "m=audio x RTP/AVP 0\r\n",
        "m=audio 4000/0 RTP/AVP 0\r\n",
        "m=audio 4000 RTP/AVP 128\r\n",
        "m=audio 4000 RTP/AVP pcmu\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/0\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:200 PCMU/8000\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000/1/1\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:0 PCMA/8000\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=ptime:x\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=ptime:0\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=ptime\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=ptime:20\r\na=ptime:30\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=maxptime:-1\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=sendonly\r\na=recvonly\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=rtcp:x\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=rtcp:5 IN IP4\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=fmtp\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=bad name\r\n",
        "m=audio 4000 RTP/AVP 0\r\nt=0 0\r\n",
        "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 a\r\nc=IN IP4 b\r\n",
    ];
    for tail in media {
        let text = format!("{HEAD}{tail}");
        let line = 5 + tail.matches('\n').count();
        match parse(text.as_bytes()) {
            Err(SdpError::Malformed { line: l, .. }) => assert_eq!(l, line, "{tail:?}"),
            other => panic!("{tail:?}: {other:?}"),
        }
    }
    // A media section without any c= is named by its m= line.
    let text = "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n";
    assert_eq!(
        parse(text.as_bytes()),
        Err(SdpError::Malformed {
            line: 5,
            reason: "no c= for this m= section"
        })
    );
    // Invalid UTF-8 is named by its line.
    let mut bytes = HEAD.as_bytes().to_vec();
    bytes.extend_from_slice(b"s=\xff\r\n");
    assert!(matches!(
        parse(&bytes),
        Err(SdpError::Malformed { line: 6, .. })
    ));
}

#[test]
fn limits_are_enforced() {
    let head = "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\nc=IN IP4 a\r\n";
    let long = format!("{head}a=x:{}\r\n", "y".repeat(parse::MAX_LINE_LEN));
    assert!(matches!(
        parse(long.as_bytes()),
        Err(SdpError::Malformed { line: 5, .. })
    ));
    let many = format!("{head}{}", "a=x\r\n".repeat(parse::MAX_LINES));
    assert_eq!(
        parse(many.as_bytes()),
        Err(SdpError::TooLarge { limit: "lines" })
    );
    let big = vec![b'\n'; parse::MAX_SDP_BYTES + 1];
    assert!(matches!(parse(&big), Err(SdpError::TooLarge { .. })));
    let media = format!(
        "{head}{}",
        "m=audio 0 RTP/AVP 0\r\n".repeat(parse::MAX_MEDIA + 1)
    );
    assert!(matches!(
        parse(media.as_bytes()),
        Err(SdpError::Malformed { line, .. }) if line == 5 + parse::MAX_MEDIA
    ));
    let fmts = vec!["0"; parse::MAX_FORMATS + 1].join(" ");
    let text = format!("{head}m=audio 1 RTP/AVP {fmts}\r\n");
    assert!(matches!(
        parse(text.as_bytes()),
        Err(SdpError::Malformed { line: 5, .. })
    ));
}

#[test]
fn tolerates_lf_blank_lines_and_fractional_ptime() {
    let s = p(
        "v=0\n\no=- 1 1 IN IP4 a\ns=\nc=IN IP4 192.0.2.1\n\nm=audio 1 RTP/AVP 0\na=ptime:20.0\n\n",
    );
    assert_eq!(s.session_name, "");
    assert_eq!(s.timing, (0, 0));
    assert_eq!(s.media[0].ptime, Some(20));
    assert_eq!(p(&s.write()), s);
}

/// Mutations of real descriptions and random lines: never a panic; whatever
/// parses writes back to text that parses to the same value, and answering
/// it never panics.
#[test]
fn random_input_never_panics_and_round_trips() {
    let mut rng = XorShift::new(0x5d9);
    let pieces: &[&str] = &[
        "v=0",
        "o=- 1 1 IN IP4 a",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "c=IN IP6 ::1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0 8 101",
        "m=video 0 RTP/AVP 96",
        "a=rtpmap:101 telephone-event/8000",
        "a=rtpmap:96 opus/48000/2",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendonly",
        "a=rtcp-mux",
        "a=rtcp:4001 IN IP4 192.0.2.1",
        "a=x",
        "b=AS:64",
        "a=inactive",
        "i=x",
        "a=maxptime:40",
    ];
    let seeds = [ASTERISK, BARESIP, SIPP, WEBRTC];
    let l = local();
    let mut parsed = 0;
    for round in 0..4000u32 {
        let mut bytes: Vec<u8> = if round % 2 == 0 {
            seeds[rng.below(seeds.len() as u32) as usize]
                .as_bytes()
                .to_vec()
        } else {
            let n = rng.below(14);
            let mut t = String::from("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\n");
            for _ in 0..n {
                t.push_str(pieces[rng.below(pieces.len() as u32) as usize]);
                t.push_str("\r\n");
            }
            t.into_bytes()
        };
        for _ in 0..rng.below(4) {
            let len = bytes.len() as u32;
            let at = rng.below(len.max(1)) as usize;
            match rng.below(4) {
                0 if at < bytes.len() => bytes[at] = rng.next_u32() as u8,
                1 => bytes.insert(at.min(bytes.len()), b" :/=\n\r0a9"[rng.below(9) as usize]),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        if let Ok(s) = parse(&bytes) {
            parsed += 1;
            assert_eq!(parse(s.write().as_bytes()).as_ref(), Ok(&s));
            if let Ok(a) = answer(&s, &l) {
                assert_eq!(a.sdp.media.len(), s.media.len());
                let _ = negotiated(&s, &a.sdp, Role::Answerer);
            }
        }
    }
    assert!(parsed > 400, "only {parsed} parsed");
}
