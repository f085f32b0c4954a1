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

// ---- structured targets ----

/// A cursor over a fuzz input for the structured targets: each read takes
/// the next bytes; past the end every number is 0 (an input is a program
/// of operations, and a short one simply ends).
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.u8()) % n
    }

    /// Up to `n` bytes.
    fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = end.max(self.pos);
        &self.data[start..end]
    }
}

/// The jitter buffer under random pushes (sequence numbers near a moving
/// base or anywhere, any timestamps and sizes), ticks, jitter updates and
/// restarts, checked against a model after every operation:
/// - a frame plays only if it was stored and not played since, with the
///   timestamp and payload it was stored with (a duplicate does not
///   replace it);
/// - while playing, a tick plays or reports `next` or a later frame, and a
///   played frame moves `next` just past it: frames play in order;
/// - a push behind `next` (but not so far that it is a restart) is late;
///   one larger than the frame size is too big, and nothing else is;
/// - at most `slots` frames are held, at most `max_delay` after a tick;
/// - the counters equal the outcomes seen, and no frame is counted out
///   (played, overrun, trimmed) more often than it was stored.
pub fn jitter_buffer(data: &[u8]) {
    use crate::jitter::{JitterBuffer, Pushed, Tick};
    use std::collections::HashMap;

    let mut inp = Input::new(data);
    let slots = inp.below(40);
    let max_payload = inp.below(24);
    let (min_delay, max_delay) = (inp.below(20), inp.below(20));
    let mut jb = JitterBuffer::new(slots, max_payload, min_delay, max_delay);
    // The documented clamping.
    let slots = slots.clamp(2, 1024);
    let max_delay = max_delay.clamp(1, slots - 1);
    let min_delay = min_delay.clamp(1, max_delay);

    let mut base = inp.u16();
    let mut held: HashMap<u16, (u32, Vec<u8>)> = HashMap::new();
    let (mut stored, mut late, mut duplicate, mut too_big) = (0u64, 0u64, 0u64, 0u64);
    let (mut played, mut missing, mut restarts) = (0u64, 0u64, 0u64);
    let mut pushes = 0u32;
    for _ in 0..4096 {
        if inp.is_empty() {
            break;
        }
        match inp.u8() % 10 {
            op @ 0..=4 => {
                let seq = match op {
                    0 => inp.u16(),
                    _ => base.wrapping_add(u16::from(inp.u8())).wrapping_sub(64),
                };
                if op == 1 {
                    base = base.wrapping_add(1);
                }
                let ts = if inp.bool() {
                    inp.u32()
                } else {
                    u32::from(seq).wrapping_mul(160)
                };
                let len = inp.below(max_payload + 3);
                pushes += 1;
                let payload: Vec<u8> = (0..len)
                    .map(|i| (pushes.wrapping_mul(31) as usize + i) as u8)
                    .collect();
                let next = jb.next_to_play();
                let before = jb.len();
                let got = jb.push(SeqNo(seq), RtpTimestamp(ts), &payload);
                assert_eq!(got == Pushed::TooBig, len > max_payload, "{got:?}");
                if let Some(n) = next {
                    let behind = SeqNo(seq).delta(n);
                    if (-100..0).contains(&behind) && len <= max_payload {
                        assert_eq!(got, Pushed::Late, "seq {seq} behind next {}", n.0);
                    }
                }
                match got {
                    Pushed::Stored => {
                        stored += 1;
                        held.insert(seq, (ts, payload));
                    }
                    Pushed::Late => {
                        late += 1;
                        let n = next.expect("late while buffering");
                        assert!(SeqNo(seq).delta(n) < 0);
                        assert_eq!(jb.len(), before);
                    }
                    Pushed::Duplicate => {
                        duplicate += 1;
                        assert!(held.contains_key(&seq));
                        assert_eq!(jb.len(), before);
                    }
                    Pushed::TooBig => {
                        too_big += 1;
                        assert_eq!(jb.len(), before);
                    }
                }
            }
            5..=7 => {
                let next = jb.next_to_play();
                let tick = jb.tick();
                match tick {
                    Tick::Frame { seq, ts, payload } => {
                        played += 1;
                        if let Some(n) = next {
                            assert!(seq.delta(n) >= 0, "played {} before next {}", seq.0, n.0);
                        }
                        let Some((want_ts, want)) = held.remove(&seq.0) else {
                            panic!("played {} which is not held", seq.0);
                        };
                        assert_eq!((ts.0, payload), (want_ts, &want[..]));
                        assert_eq!(jb.next_to_play(), Some(seq.next()));
                    }
                    Tick::Missing { seq } => {
                        missing += 1;
                        if let Some(n) = next {
                            assert!(seq.delta(n) >= 0, "missing {} before next {}", seq.0, n.0);
                        }
                    }
                    Tick::Idle => {
                        assert_eq!(next, None);
                        assert_eq!(jb.next_to_play(), None);
                    }
                }
                assert!(jb.len() <= max_delay, "{} held after a tick", jb.len());
            }
            8 => {
                jb.set_jitter(inp.u32() >> inp.below(32), u32::from(inp.u16()));
                assert!((min_delay..=max_delay).contains(&jb.floor()));
            }
            _ => {
                if inp.u8() < 16 {
                    jb.restart();
                    restarts += 1;
                    assert!(jb.is_empty());
                    assert_eq!(jb.next_to_play(), None);
                } else {
                    base = base.wrapping_add(inp.u16());
                }
            }
        }
        let s = jb.stats();
        assert_eq!(
            (
                s.stored,
                s.late,
                s.duplicate,
                s.too_big,
                s.played,
                s.missing
            ),
            (stored, late, duplicate, too_big, played, missing)
        );
        assert!(s.restarts >= restarts && s.stalls <= s.missing && s.skipped <= s.played);
        assert!(s.played + s.overrun + s.trimmed + jb.len() as u64 <= s.stored);
        assert!(jb.len() <= slots);
    }
}

/// The mixer: every kernel this CPU runs (scalar, `wide`, AVX2) against
/// a model in `i64`, for random frame lengths (changed between ticks),
/// member counts and samples (extremes included). The documented property
/// is bit-for-bit equality, so there is no tolerance: each talker hears
/// `saturate(total − own)`, each listener `saturate(total)`. Wrong frame
/// and output lengths are refused and leave the tick as it was; the bare
/// kernels on slices of unequal lengths process the shortest and agree.
pub fn mixer(data: &[u8]) {
    use crate::mix::{Kernel, MixError, Mixer};
    use crate::rtp::xorshift::XorShift;

    let mut inp = Input::new(data);
    let kernels: Vec<Kernel> = Kernel::ALL
        .into_iter()
        .filter(|k| k.is_supported())
        .collect();
    let mut mixers: Vec<Mixer> = kernels.iter().map(|&k| Mixer::with_kernel(0, k)).collect();
    let mut rng = XorShift::new(u64::from(inp.u32()) | 1);
    let mut sample = |inp: &mut Input| -> i16 {
        if inp.is_empty() {
            match rng.below(8) {
                0 => i16::MAX,
                1 => i16::MIN,
                2 => 0,
                _ => rng.next_u32() as i16,
            }
        } else {
            inp.u16() as i16
        }
    };
    for _ in 0..4 {
        let len = match inp.u8() % 4 {
            0 => 160,
            1 => 960,
            _ => usize::from(inp.u16() % 1100),
        };
        let members = usize::from(inp.u8() % 40);
        let talking: Vec<bool> = (0..members).map(|_| inp.u8() % 4 != 0).collect();
        let frames: Vec<Vec<i16>> = (0..members)
            .map(|_| (0..len).map(|_| sample(&mut inp)).collect())
            .collect();
        let total: Vec<i64> = (0..len)
            .map(|i| {
                frames
                    .iter()
                    .zip(&talking)
                    .filter(|(_, &t)| t)
                    .map(|(f, _)| i64::from(f[i]))
                    .sum()
            })
            .collect();
        let sat = |v: i64| v.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
        let wrong = len + 1 + usize::from(inp.u8() % 3);
        for (m, &k) in mixers.iter_mut().zip(&kernels) {
            m.set_frame_len(len);
            assert_eq!(m.frame_len(), len);
            assert_eq!(m.talkers(), 0);
            for (f, _) in frames.iter().zip(&talking).filter(|(_, &t)| t) {
                m.add_talker(f).unwrap();
            }
            let talkers = m.talkers();
            let refused = m.add_talker(&vec![i16::MAX; wrong]);
            assert!(matches!(refused, Err(MixError::FrameLength { .. })));
            assert_eq!(m.talkers(), talkers);
            let mut out = vec![0x5a5a_i16; len + 3];
            for (f, &t) in frames.iter().zip(&talking) {
                out.fill(0x5a5a);
                if t {
                    m.talker_mix(f, &mut out).unwrap();
                    for i in 0..len {
                        assert_eq!(out[i], sat(total[i] - i64::from(f[i])), "{k:?} sample {i}");
                    }
                } else {
                    m.listener_mix(&mut out).unwrap();
                    for i in 0..len {
                        assert_eq!(out[i], sat(total[i]), "{k:?} sample {i}");
                    }
                }
                assert!(out[len..].iter().all(|&s| s == 0x5a5a), "{k:?} wrote past");
            }
            if len > 0 {
                let mut short = vec![0i16; len - 1];
                assert!(m.listener_mix(&mut short).is_err());
                assert!(m
                    .talker_mix(&frames.first().cloned().unwrap_or(vec![0; len]), &mut short)
                    .is_err());
            }
            m.begin_tick();
        }
    }
    // The bare kernels on slices of unequal lengths.
    let (a, b, c) = (
        usize::from(inp.u8()),
        usize::from(inp.u8()),
        usize::from(inp.u8()),
    );
    let frame: Vec<i16> = (0..b).map(|_| sample(&mut inp)).collect();
    let start: Vec<i32> = (0..a).map(|_| i32::from(sample(&mut inp)) * 3).collect();
    let mut results = Vec::new();
    for &k in &kernels {
        let mut total = start.clone();
        k.accumulate(&mut total, &frame);
        let mut minus = vec![7i16; c];
        k.minus_own(&total, &frame, &mut minus);
        let mut plain = vec![7i16; c];
        k.saturate(&total, &mut plain);
        for i in a.min(b)..a {
            assert_eq!(total[i], start[i], "{k:?} accumulated past the frame");
        }
        assert!(minus[a.min(b).min(c)..].iter().all(|&s| s == 7));
        assert!(plain[a.min(c)..].iter().all(|&s| s == 7));
        results.push((total, minus, plain));
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "kernels disagree");
}

/// Checks that `e` is an ARI-style error with `status`: a message, and a
/// JSON body `{"message": ...}` carrying it.
fn ari_error(e: &crate::ari::error::AriError, statuses: &[u16]) {
    assert!(
        statuses.contains(&e.status),
        "status {}: {}",
        e.status,
        e.message
    );
    assert!(!e.message.is_empty());
    let body: serde_json::Value = serde_json::from_str(&e.body()).expect("error body is JSON");
    assert_eq!(body["message"].as_str(), Some(e.message.as_str()));
    assert!(!e.reason_phrase().is_empty());
}

/// Every operation of the route table, in table order.
fn operations() -> Vec<(&'static str, &'static crate::ari::spec::Operation)> {
    crate::ari::routes::RESOURCES
        .iter()
        .flat_map(|r| r.apis.iter())
        .flat_map(|api| api.operations.iter().map(move |op| (api.path, op)))
        .collect()
}

/// ARI argument checking ([`crate::ari::args::Args::parse`]) for any
/// operation of the route table, with a query string decoded as the HTTP
/// layer decodes it and any body. The input is `<op byte><path value>\n
/// <query>\n<body>`. Either a 400 with an ARI error body, or arguments
/// that keep the documented promises, read through every typed getter:
/// required parameters present, integers parse (and respect their
/// minimum), booleans are booleans, enumerated values are allowed ones,
/// list items are trimmed and not empty, JSON body parameters are objects,
/// and undeclared names read as absent.
pub fn ari_args(data: &[u8]) {
    use crate::ari::args::Args;
    use crate::ari::spec::{DataType, ParamType};

    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let ops = operations();
    let (template, op) = ops[usize::from(which) % ops.len()];
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(3, '\n');
    let (value, query, body) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let path: Vec<(String, String)> = template
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| (name.to_string(), value.to_string()))
        .collect();
    let query = crate::host::http::parse_query(query);
    let args = match Args::parse(op, path, query, body.as_bytes()) {
        Ok(args) => args,
        Err(e) => return ari_error(&e, &[400]),
    };
    for p in op.params {
        let name = p.name;
        let (s, list, json) = (args.str(name), args.list(name), args.body(name));
        let _ = (args.non_empty(name), args.path(name), args.bool(name));
        if p.param_type == ParamType::Body {
            assert!(s.is_none() && list.is_empty());
            if let Some(v) = json {
                assert!(v.is_object(), "body parameter {name} is {v}");
            } else {
                assert!(!p.required, "required body parameter {name} missing");
            }
            continue;
        }
        assert!(json.is_none());
        let values: Vec<&str> = if p.allow_multiple {
            assert!(s.is_none());
            for item in list {
                assert!(!item.is_empty() && item.trim() == item && !item.contains(','));
            }
            list.iter().map(String::as_str).collect()
        } else {
            assert!(list.is_empty());
            s.into_iter().collect()
        };
        if p.required {
            assert!(!values.is_empty(), "required {name} missing");
        }
        if p.default.is_some() && !p.allow_multiple {
            assert!(s.is_some(), "{name} has a default but no value");
        }
        for v in values {
            let int = v.trim().parse::<i64>().ok();
            if matches!(p.data_type, DataType::Int | DataType::Long) {
                assert!(int.is_some(), "{name}={v:?} is not an integer");
                if !p.allow_multiple {
                    assert_eq!(args.int(name), int);
                }
            }
            if let (Some(min), Some(int)) = (p.min, int) {
                assert!(int >= min, "{name}={int} below {min}");
            }
            if p.data_type == DataType::Boolean && !p.allow_multiple {
                let lower = v.trim().to_ascii_lowercase();
                let truthy = ["true", "yes", "1", "on", "y", "t"].contains(&lower.as_str());
                assert_eq!(args.bool(name), truthy, "{name}={v:?}");
            }
            if let Some(allowed) = p.allowable {
                assert!(allowed.contains(&v), "{name}={v:?} not allowed");
            }
        }
    }
    // A name the operation does not declare reads as absent.
    let stranger = format!("{value}\u{1}");
    assert!(args.str(&stranger).is_none() && args.list(&stranger).is_empty());
    assert!(args.body(&stranger).is_none() && args.int(&stranger).is_none());
}

/// The route table ([`crate::host::http::route`]) for any method and path
/// (`<method> <path>[?<query>]`): percent escapes good and bad, double and
/// trailing slashes, long segments, any Unicode. An operation found has the
/// request's method, lies on a path template that matches the path with
/// the same parameters, is found again with a trailing slash, and its
/// arguments check (or give a 400); otherwise it is a 404 when no method
/// serves the path and a 405 when another does. An `/api-docs/` path
/// gives a JSON object or nothing.
pub fn route(data: &[u8]) {
    use crate::ari::args::Args;
    use crate::ari::spec::{match_path, Method};
    use crate::host::http::{parse_query, route};

    let text = String::from_utf8_lossy(data);
    let (method, target) = text.split_once(' ').unwrap_or((&text, ""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let methods = [Method::Get, Method::Post, Method::Put, Method::Delete];
    let found: Vec<bool> = methods.iter().map(|&m| route(m, path).is_ok()).collect();
    if let Some(file) = path.strip_prefix("/api-docs/") {
        // As the HTTP layer serves them.
        let base = "http://127.0.0.1:8088/ari";
        let doc = match file {
            "resources.json" => Some(crate::ari::docs::resources_listing(base)),
            other => other
                .strip_suffix(".json")
                .and_then(|name| crate::ari::docs::resource_doc(name, base)),
        };
        assert!(doc.is_none_or(|d| d.is_object()));
    }
    let Some(method) = Method::parse(method) else {
        return;
    };
    match route(method, path) {
        Ok((op, params)) => {
            assert_eq!(op.method, method);
            let trimmed = if path.len() > 1 {
                path.trim_end_matches('/')
            } else {
                path
            };
            let template = operations()
                .into_iter()
                .find(|(_, o)| std::ptr::eq(*o, op))
                .map(|(t, _)| t)
                .expect("a routed operation is in the table");
            assert_eq!(match_path(template, trimmed).as_ref(), Some(&params));
            let again = route(method, &format!("{path}/")).expect("found with a trailing slash");
            assert!(std::ptr::eq(again.0, op) && again.1 == params);
            if let Err(e) = Args::parse(op, params, parse_query(query), b"") {
                ari_error(&e, &[400]);
            }
        }
        Err(e) if e.status == 405 => {
            ari_error(&e, &[405]);
            assert!(found.iter().any(|&f| f), "405 for a path no method serves");
        }
        Err(e) => {
            ari_error(&e, &[404]);
            assert!(!found.iter().any(|&f| f), "404 for a path a method serves");
        }
    }
}

/// Legs the media-core target uses (ids `1..=LEGS`), each with its own peer.
const CORE_LEGS: u64 = 8;

/// A few tone strings, good and bad, for the media-core target's plays.
const TONES: &[&str] = &[
    "440/100",
    "!350+440/200,!0/100",
    "1000/0",
    "!941+1336/50,!0/20,!697+1209/50",
    "480+620/500,0/500",
    "!2000/1",
    "M1/100",
    "!1400*3/40",
];

/// The media core ([`crate::media::Core`]) on the virtual-time harness
/// ([`crate::media::sim::Sim`]), driven by a random program of commands
/// (legs added and removed, Local pairs, bridges set with any members and
/// flags and destroyed, mute, hold, a new format, digits, clips and tones,
/// talk detection, telephone events, a new remote, a leg detached and
/// attached again as when it moves between shards), datagrams (RTP with
/// random header fields and payloads, RTCP reports, garbage, to either
/// port, from the leg's peer or a stranger), peer streams, and time
/// passing. After every step:
/// - the sim's buffer audit is clean: every receive buffer came back once,
///   the transmit pool is back to its level (each pool buffer sent or
///   released), no transmit of a leg without sockets;
/// - the core holds exactly the legs the commands left (its count and
///   each one), and accepted or refused each command as documented
///   (`InUse` for an id taken, `Unknown` for one not known);
/// - events name legs that existed, and digits are digits.
///
/// At the end every leg and bridge goes: no leg remains, the audit is
/// clean, and the core asks for no more time.
pub fn media_core(data: &[u8]) {
    use crate::media::dtmf::{digit_of, Step};
    use crate::media::player::{Clip, PlayerControl};
    use crate::media::sim::{rtp_packet, LinkConfig, PeerId, Sim, SimConfig};
    use crate::media::tap::{Tap, TapFrame};
    use crate::media::tones::ToneSpec;
    use crate::media::{
        BridgeKey, BridgeSpec, CoreError, Direction, Format, LegId, MediaEvent, MediaOp,
        MemberSpec, Port, SnoopSpec, Target, Technology,
    };
    use crate::rtp::packet::Header;
    use crate::rtp::Pt;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;
    use std::time::Duration;

    let mut inp = Input::new(data);
    let formats: Vec<Format> = Format::available().collect();
    let tick_ms = [20, 20, 10, 30][inp.below(4)];
    let config = SimConfig {
        tick_ms,
        rtcp_interval_ms: [0, 5000, 300, 1000][inp.below(4)],
        plc: inp.bool(),
        seed: u64::from(inp.u16()),
        max_steps: 1_000_000,
        ..SimConfig::default()
    };
    let mut sim = Sim::new(Instant::now(), config);
    let peers: Vec<PeerId> = (0..=CORE_LEGS)
        .map(|i| {
            let up = if i % 3 == 1 {
                LinkConfig {
                    jitter: Duration::from_millis(30),
                    loss: 0.05,
                    duplicate: 0.05,
                    reorder: 0.1,
                    reorder_delay: Duration::from_millis(45),
                    ..LinkConfig::default()
                }
            } else {
                LinkConfig::delay(Duration::from_millis(i * 3))
            };
            sim.add_peer(up, LinkConfig::default())
        })
        .collect();
    // Legs the core must hold (RTP legs with the peer they talk to), and
    // every leg it ever held (events may name a leg removed since).
    let mut legs: BTreeMap<u64, bool> = BTreeMap::new();
    let mut ever: BTreeSet<u64> = BTreeSet::new();
    let mut bridges: BTreeSet<u64> = BTreeSet::new();
    let mut ever_bridges: BTreeSet<u64> = BTreeSet::new();
    // Recordings' ends of taps (some dropped, closing their taps).
    let mut tap_ends: Vec<std::sync::mpsc::Receiver<TapFrame>> = Vec::new();
    let digits: BTreeSet<char> = (0..=255).filter_map(digit_of).collect();
    let mut virtual_ms = 0u64;

    let check = |sim: &mut Sim,
                 legs: &BTreeMap<u64, bool>,
                 ever: &BTreeSet<u64>,
                 ever_bridges: &BTreeSet<u64>,
                 step: usize| {
        let audit = sim.audit();
        assert!(audit.is_clean(), "step {step}: buffer audit {audit:?}");
        assert_eq!(sim.core().leg_count(), legs.len(), "step {step}: leg count");
        for &id in legs.keys() {
            assert!(
                sim.core().leg(LegId(id)).is_some(),
                "step {step}: leg {id} lost"
            );
        }
        for e in sim.take_events() {
            let leg = match e {
                MediaEvent::Dtmf { leg, digit, .. } => {
                    assert!(digits.contains(&digit), "digit {digit:?}");
                    leg
                }
                MediaEvent::TalkingStarted { leg }
                | MediaEvent::TalkingFinished { leg, .. }
                | MediaEvent::PlaybackDone {
                    target: Target::Leg(leg),
                    ..
                } => leg,
                MediaEvent::PlaybackDone {
                    target: Target::Bridge(b),
                    ..
                } => {
                    assert!(
                        ever_bridges.contains(&b.0),
                        "step {step}: event {e:?} of a bridge never set"
                    );
                    continue;
                }
            };
            assert!(
                ever.contains(&leg.0),
                "step {step}: event {e:?} of a leg never added"
            );
        }
    };
    let leg_id = |inp: &mut Input| 1 + u64::from(inp.u8()) % CORE_LEGS;
    let known = |r: Result<(), crate::media::sim::SimError>, present: bool, what: &str| {
        use crate::media::sim::SimError;
        match r {
            Ok(()) => assert!(present, "{what}: accepted for an unknown leg"),
            Err(SimError::Core(CoreError::Unknown)) => {
                assert!(!present, "{what}: refused for a known leg")
            }
            Err(e) => panic!("{what}: {e}"),
        }
    };

    for step in 0..96 {
        if inp.is_empty() || virtual_ms > 20_000 {
            break;
        }
        match inp.u8() % 20 {
            0 | 1 => {
                let id = leg_id(&mut inp);
                let peer = peers[id as usize];
                let format = formats[inp.below(formats.len())];
                let r = if inp.bool() {
                    sim.add_rtp_leg_learning(id, peer, format)
                } else {
                    sim.add_rtp_leg(id, peer, format)
                };
                match r {
                    Ok(_) => assert!(legs.insert(id, true).is_none(), "leg {id} added twice"),
                    Err(e) => {
                        assert!(legs.contains_key(&id), "add leg {id}: {e}");
                        assert_eq!(e, crate::media::sim::SimError::Core(CoreError::InUse));
                    }
                }
                ever.insert(id);
            }
            2 => {
                let (a, b) = (leg_id(&mut inp), leg_id(&mut inp));
                let format = formats[inp.below(formats.len())];
                match sim.add_local_pair(a, b, format) {
                    Ok(()) => {
                        assert!(legs.insert(a, false).is_none() && legs.insert(b, false).is_none())
                    }
                    Err(_) => assert!(a == b || legs.contains_key(&a) || legs.contains_key(&b)),
                }
                ever.extend([a, b]);
            }
            3 | 4 => {
                let id = leg_id(&mut inp);
                let r = sim.remove_leg(id);
                known(r, legs.remove(&id).is_some(), "remove");
            }
            5 | 6 => {
                let key = 100 + u64::from(inp.u8() % 4);
                let count = inp.below(7);
                let members: Vec<MemberSpec> = (0..count)
                    .map(|_| {
                        let flags = inp.u8();
                        MemberSpec {
                            leg: LegId(leg_id(&mut inp)),
                            mute: flags & 1 != 0 && flags & 6 == 6,
                            announcer: flags & 8 != 0 && flags & 48 == 48,
                            absorb_dtmf: flags & 64 != 0,
                        }
                    })
                    .collect();
                let flags = inp.u8();
                let spec = BridgeSpec {
                    members,
                    dtmf_events: flags & 1 != 0,
                    proxy_media: flags & 2 != 0,
                    holding: flags & 12 == 12,
                };
                let holding = spec.holding;
                if let Ok(technology) = sim.set_bridge(key, spec) {
                    bridges.insert(key);
                    ever_bridges.insert(key);
                    if holding {
                        assert_eq!(technology, Technology::HoldingBridge);
                    }
                }
            }
            7 => {
                let key = 100 + u64::from(inp.u8() % 4);
                let _ = sim.destroy_bridge(key);
                bridges.remove(&key);
            }
            8 => {
                let id = leg_id(&mut inp);
                let direction = [Direction::In, Direction::Out, Direction::Both][inp.below(3)];
                let on = inp.bool();
                known(
                    sim.set_mute(id, direction, on),
                    legs.contains_key(&id),
                    "mute",
                );
            }
            9 => {
                let id = leg_id(&mut inp);
                let on = inp.bool();
                known(sim.set_hold(id, on), legs.contains_key(&id), "hold");
            }
            10 => {
                let id = leg_id(&mut inp);
                let format = formats[inp.below(formats.len())];
                let r = sim.set_format(id, format).map(|_| ());
                known(r, legs.contains_key(&id), "set_format");
            }
            11 => {
                let id = leg_id(&mut inp);
                let steps: Vec<Step> = (0..inp.below(6))
                    .map(|_| {
                        let ms = u64::from(inp.u16() % 3000);
                        if inp.bool() {
                            Step::Gap(Duration::from_millis(ms))
                        } else {
                            Step::Digit {
                                event: inp.u8() % 20,
                                length: Duration::from_millis(ms),
                            }
                        }
                    })
                    .collect();
                if let Err(e) = sim.send_dtmf(id, steps) {
                    assert!(
                        e == crate::media::sim::SimError::Core(CoreError::NoTelephoneEvent)
                            || !legs.contains_key(&id),
                        "send_dtmf to leg {id}: {e}"
                    );
                }
            }
            12 => {
                // A media operation on a leg or a bridge.
                let bridge = inp.bool();
                let (target, present) = if bridge {
                    let key = 100 + u64::from(inp.u8() % 4);
                    (Target::Bridge(BridgeKey(key)), bridges.contains(&key))
                } else {
                    let id = leg_id(&mut inp);
                    (Target::Leg(LegId(id)), legs.contains_key(&id))
                };
                let key = u64::from(inp.u8() % 4);
                let clip = |inp: &mut Input| match inp.u8() % 3 {
                    0 => {
                        let n = usize::from(inp.u16() % 4000);
                        let samples: Vec<i16> =
                            (0..n).map(|i| (i as i16).wrapping_mul(997)).collect();
                        let rate = [8000, 16000, 48000, 44100][inp.below(4)];
                        Clip::Pcm {
                            rate,
                            samples: Arc::from(samples),
                        }
                    }
                    1 => ToneSpec::parse(TONES[inp.below(TONES.len())])
                        .map(|spec| Clip::Tone(Box::new(spec)))
                        .unwrap_or(Clip::Silence),
                    _ => Clip::Silence,
                };
                let op = match inp.u8() % 7 {
                    0 | 1 => MediaOp::Play {
                        key,
                        clip: clip(&mut inp),
                    },
                    2 => MediaOp::StopPlaying { key },
                    3 => MediaOp::Control {
                        key,
                        control: match inp.u8() % 5 {
                            0 => PlayerControl::Pause,
                            1 => PlayerControl::Unpause,
                            2 => PlayerControl::Restart,
                            3 => PlayerControl::Reverse(u32::from(inp.u16())),
                            _ => PlayerControl::Forward(u32::from(inp.u16())),
                        },
                    },
                    4 => MediaOp::Generate(inp.bool().then(|| clip(&mut inp))),
                    5 => {
                        let (tx, rx) = std::sync::mpsc::sync_channel(4);
                        if inp.bool() {
                            tap_ends.push(rx);
                        }
                        MediaOp::StartTap(Tap::new(key, tx))
                    }
                    _ => MediaOp::StopTap { key },
                };
                match sim.media_op(target, op) {
                    Ok(_) => assert!(present, "media op accepted for {target:?}"),
                    Err(crate::media::sim::SimError::Core(CoreError::Unknown)) => {
                        assert!(!present, "media op refused for {target:?}")
                    }
                    // A rate the player cannot convert (44.1 kHz).
                    Err(crate::media::sim::SimError::Core(CoreError::Unplayable)) => {}
                    Err(e) => panic!("media op on {target:?}: {e}"),
                }
                if inp.u8() < 64 && !tap_ends.is_empty() {
                    tap_ends.remove(inp.below(tap_ends.len()));
                }
                for end in &tap_ends {
                    while end.try_recv().is_ok() {}
                }
            }
            13 => {
                // A snoop leg on another leg.
                let (id, on) = (leg_id(&mut inp), leg_id(&mut inp));
                let direction = |v: u8| match v % 4 {
                    0 => None,
                    1 => Some(Direction::In),
                    2 => Some(Direction::Out),
                    _ => Some(Direction::Both),
                };
                let spec = SnoopSpec {
                    spy: direction(inp.u8()),
                    whisper: direction(inp.u8()),
                };
                match sim.add_snoop_leg(id, on, spec) {
                    Ok(()) => {
                        assert!(!legs.contains_key(&id) && legs.contains_key(&on) && id != on);
                        legs.insert(id, false);
                        ever.insert(id);
                    }
                    Err(crate::media::sim::SimError::Core(CoreError::InUse)) => {
                        assert!(legs.contains_key(&id) || id == on)
                    }
                    Err(crate::media::sim::SimError::Core(CoreError::Unknown)) => {
                        assert!(!legs.contains_key(&on))
                    }
                    Err(e) => panic!("snoop {id} on {on}: {e}"),
                }
            }
            14 => {
                let id = leg_id(&mut inp);
                let params = inp
                    .bool()
                    .then(|| (u32::from(inp.u16() % 5000), u32::from(inp.u16())));
                let r = sim.command(|core| core.set_talk_detect(LegId(id), params));
                known(r, legs.contains_key(&id), "set_talk_detect");
                let pt = inp.bool().then(|| inp.u8());
                let r = sim.command(|core| core.set_telephone_event(LegId(id), pt));
                known(r, legs.contains_key(&id), "set_telephone_event");
            }
            15 => {
                // A peer's stream: any format, payload type, numbering, ptime.
                let id = leg_id(&mut inp);
                let format = formats[inp.below(formats.len())];
                let mut s = match inp.u8() % 3 {
                    0 => crate::media::sim::SenderConfig::pattern(format, inp.u32()),
                    1 => crate::media::sim::SenderConfig::tone(format, inp.u32(), 700.0),
                    _ => crate::media::sim::SenderConfig::new(
                        format,
                        inp.u32(),
                        crate::media::sim::Voice::Silence,
                    ),
                };
                if inp.u8() < 32 {
                    s.pt = inp.u8() & 0x7f;
                }
                s.first_seq = inp.u16();
                s.first_ts = inp.u32();
                s.ptime = Duration::from_millis([20, 10, 30, 40, 60, 5][inp.below(6)]);
                s.skew_ppm = i32::from(inp.u16() as i16);
                s.frames = Some(u64::from(inp.u8()));
                if inp.u8() < 40 {
                    let _ = sim.stop_sender(peers[id as usize]);
                } else {
                    let _ = sim.start_sender(peers[id as usize], s);
                }
            }
            16 | 17 => {
                // One datagram from a peer (its own leg's or another's).
                let from = peers[inp.below(peers.len())];
                let to = leg_id(&mut inp);
                let (from_port, to_port) = match inp.u8() % 4 {
                    0 => (Port::Rtp, Port::Rtcp),
                    1 => (Port::Rtcp, Port::Rtcp),
                    _ => (Port::Rtp, Port::Rtp),
                };
                let kind = inp.u8() % 4;
                let len = inp.below(200);
                let bytes = match kind {
                    0 | 1 => {
                        let header = Header {
                            marker: inp.bool(),
                            pt: Pt(inp.u8() & 0x7f),
                            seq: SeqNo(inp.u16()),
                            timestamp: RtpTimestamp(inp.u32()),
                            ssrc: Ssrc(inp.u32()),
                        };
                        let mut p = rtp_packet(&header, inp.take(len));
                        if kind == 1 {
                            // Version, padding, extension, CSRC count bits.
                            p[0] ^= inp.u8();
                        }
                        p
                    }
                    2 => {
                        let mut buf = vec![0u8; 1500];
                        let ssrc = Ssrc(inp.u32());
                        let block = crate::rtp::rtcp::ReportBlock {
                            ssrc: Ssrc(inp.u32()),
                            fraction_lost: inp.u8(),
                            cumulative_lost: (inp.u32() as i32) >> 8,
                            highest_seq: inp.u32(),
                            jitter: inp.u32(),
                            last_sr: inp.u32(),
                            delay_since_last_sr: inp.u32(),
                        };
                        let blocks = vec![block; inp.below(3)];
                        let n = if inp.bool() {
                            let info = crate::rtp::rtcp::SenderInfo {
                                ntp: u64::from(inp.u32()) << 32 | u64::from(inp.u32()),
                                rtp_ts: inp.u32(),
                                packets: inp.u32(),
                                octets: inp.u32(),
                            };
                            crate::rtp::rtcp::write_sr(&mut buf, ssrc, &info, &blocks)
                        } else {
                            crate::rtp::rtcp::write_rr(&mut buf, ssrc, &blocks)
                        }
                        .unwrap_or(0);
                        let m = crate::rtp::rtcp::write_bye(&mut buf[n..], ssrc).unwrap_or(0);
                        buf.truncate(n + if inp.bool() { m } else { 0 });
                        buf
                    }
                    _ => inp.take(len).to_vec(),
                };
                let _ = sim.send_from(from, from_port, to, to_port, bytes);
            }
            18 => {
                let id = leg_id(&mut inp);
                let to = match inp.u8() % 3 {
                    0 => None,
                    1 => sim.peer(peers[inp.below(peers.len())]).map(|p| p.addr()),
                    _ => Some(std::net::SocketAddr::from((
                        [127, 0, 0, inp.u8()],
                        inp.u16(),
                    ))),
                };
                let r = sim.command(|core| core.set_remote(LegId(id), to));
                match r {
                    Ok(()) => assert_eq!(legs.get(&id), Some(&true), "set_remote on {id}"),
                    Err(_) => assert_ne!(legs.get(&id), Some(&true), "set_remote on {id}"),
                }
            }
            _ => {
                let v = inp.u16();
                if v >= 60_000 {
                    let id = 1 + u64::from(v) % CORE_LEGS;
                    let r = sim.reattach_leg(id).map(|_| ());
                    known(r, legs.contains_key(&id), "reattach");
                    check(&mut sim, &legs, &ever, &ever_bridges, step);
                    continue;
                }
                let ms = u64::from(v % 1500);
                virtual_ms += ms;
                if let Err(e) = sim.run_for(Duration::from_millis(ms)) {
                    panic!("step {step}: run: {e}");
                }
            }
        }
        check(&mut sim, &legs, &ever, &ever_bridges, step);
    }
    // Everything goes; what is still on its way arrives.
    for key in std::mem::take(&mut bridges) {
        let _ = sim.destroy_bridge(key);
    }
    for id in std::mem::take(&mut legs).into_keys() {
        known(sim.remove_leg(id), true, "final remove");
    }
    if let Err(e) = sim.run_for(Duration::from_millis(500)) {
        panic!("final run: {e}");
    }
    check(&mut sim, &legs, &ever, &ever_bridges, usize::MAX);
    assert_eq!(
        sim.core().poll_timeout(),
        None,
        "a core without legs wants time"
    );
}
