//! The bodies of the fuzz targets, shared by `fuzz/fuzz_targets/*.rs` (run
//! under libFuzzer by `cargo fuzz`) and by the `fuzz_smoke` integration test
//! (run over the seed corpus in `fuzz/corpus/` and deterministic mutations of
//! it, in every `cargo test`).
//!
//! Each function takes arbitrary bytes and must not panic: a panic, or a
//! failed assertion of a round-trip property, is a bug. Not part of the API.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use crate::rtp::rtcp::{summarize, RtcpIter, RtcpPacket};
use crate::rtp::{OutStream, RtpPacket, RtpPacketMut, RtpTimestamp, SeqNo, Ssrc};
use crate::sdp::{answer, negotiated, LocalMedia, Role};
use crate::sip::message::{
    ack_for, cancel_target, client_key_of_request, client_key_of_response, header_value,
    response_to, server_key, status, to_bytes, MessageError,
};
use rsip::{Method, SipMessage};

/// The RTP packet view and the in-place rewriter: any datagram either parses
/// into a view whose slices stay inside it, or gives an error; the outgoing
/// stream rewrite never panics and stamps the stream's SSRC.
pub fn rtp_packet(data: &[u8]) {
    if let Ok(p) = RtpPacket::parse(data) {
        assert!(p.header_len() + p.payload().len() <= data.len());
        let _ = (
            p.csrcs().count(),
            p.extension(),
            p.pt(),
            p.seq(),
            p.timestamp(),
            p.ssrc(),
        );
    }
    let mut copy = data.to_vec();
    if let Ok(mut p) = RtpPacketMut::parse(&mut copy) {
        let mut out = OutStream::new(Ssrc(1), SeqNo(2), RtpTimestamp(3), 8000);
        out.rewrite(Instant::now(), &mut p);
        assert_eq!(RtpPacket::parse(&copy).map(|p| p.ssrc()), Ok(Ssrc(1)));
    }
}

/// The RTCP compound walker: any datagram yields packets then at most one
/// error, and never panics.
pub fn rtcp_compound(data: &[u8]) {
    let _ = summarize(data);
    for packet in RtcpIter::new(data).flatten() {
        if let RtcpPacket::SenderReport { blocks, .. } | RtcpPacket::ReceiverReport { blocks, .. } =
            packet
        {
            let _ = blocks.count();
        }
    }
}

/// The SDP parser and the answerer: any body either parses into a
/// description that writes back to text parsing to the same value, or gives
/// an error; answering and reading the negotiated result never panic.
pub fn sdp(data: &[u8]) {
    if let Ok(offer) = crate::sdp::parse(data) {
        let text = offer.write();
        assert_eq!(crate::sdp::parse(text.as_bytes()).as_ref(), Ok(&offer));
        let local = LocalMedia::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 20000, 1);
        if let Ok(a) = answer(&offer, &local) {
            assert_eq!(a.sdp.media.len(), offer.media.len());
            let _ = negotiated(&offer, &a.sdp, Role::Answerer);
        }
    }
}

/// What [`sip`] saw, for the smoke test's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipOutcome {
    /// `parse` refused the bytes (other than by a parser panic).
    Refused,
    /// `rsip` panicked and `parse` caught it ([`MessageError::ParserPanicked`]).
    ParserPanicked,
    /// A request, carried through keys, responses and (for INVITE) an ACK.
    Request,
    /// A response, carried through its client key.
    Response,
}

/// The SIP message parser and what the transaction layer does with a parsed
/// message: any datagram either gives an error or a message whose keys,
/// responses and ACK can be computed without panicking; every response built
/// to a parsed request, and the ACK for a non-2xx one, write to bytes that
/// parse again, and the response's client key has the request's branch.
pub fn sip(data: &[u8]) -> SipOutcome {
    let message = match crate::sip::message::parse(data) {
        Ok(m) => m,
        Err(MessageError::ParserPanicked) => return SipOutcome::ParserPanicked,
        Err(_) => return SipOutcome::Refused,
    };
    // Not asserted: a received message does not always survive writing back
    // (rsip accepts a status "080" but writes "80", which it refuses; a
    // non-UTF-8 body is written lossily, past its Content-Length).
    let _ = crate::sip::message::parse(&to_bytes(&message));
    match &message {
        SipMessage::Request(request) => {
            for name in ["via", "to", "from", "call-id", "cseq"] {
                let _ = header_value(&request.headers, name);
            }
            let server = server_key(request);
            let _ = cancel_target(request);
            let _ = client_key_of_request(request);
            for (code, tag) in [
                (100, None),
                (180, Some("fz1")),
                (200, Some("fz1")),
                (487, None),
            ] {
                let response = response_to(request, code, tag);
                assert_eq!(status(&response), code);
                let bytes = to_bytes(&SipMessage::Response(response));
                let reparsed = crate::sip::message::parse(&bytes);
                let Ok(SipMessage::Response(reparsed)) = reparsed else {
                    let text = String::from_utf8_lossy(&bytes);
                    panic!("a built response does not parse again: {reparsed:?}\n{text}");
                };
                if let (Ok(server), Ok(client)) = (&server, client_key_of_response(&reparsed)) {
                    assert_eq!(server.branch, client.branch);
                }
                if request.method == Method::Invite && code >= 300 {
                    let ack = SipMessage::Request(ack_for(request, &reparsed));
                    let again = crate::sip::message::parse(&to_bytes(&ack));
                    assert!(again.is_ok(), "a built ACK does not parse again: {again:?}");
                }
            }
            SipOutcome::Request
        }
        SipMessage::Response(response) => {
            let _ = (client_key_of_response(response), status(response));
            SipOutcome::Response
        }
    }
}
