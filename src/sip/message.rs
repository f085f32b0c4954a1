//! SIP messages on the wire: parsing a datagram into an `rsip` message,
//! transaction keys, and the responses and ACKs a transaction builds.
//!
//! This module owns the boundary between untrusted bytes and the rest of the
//! SIP stack. Its invariants:
//!
//! - **Parsing never panics.** [`parse`] refuses datagrams larger than
//!   [`MAX_MESSAGE`] before `rsip` sees them, and runs `rsip` under
//!   `catch_unwind`, so a panic inside the third-party parser becomes
//!   [`MessageError::ParserPanicked`] (a bug to report, never a crash of the
//!   node). A parsed message always has a typed top `Via`, a typed `CSeq`,
//!   `Call-ID`, `From` and `To`: the transaction layer can rely on them.
//! - **The body is what Content-Length says** (RFC 3261 18.3): a longer body
//!   is truncated to it, a shorter one is refused.
//! - **Transaction keys follow RFC 3261 17.1.3 and 17.2.3**: a client key is
//!   the top Via's branch and the CSeq method; a server key adds the top
//!   Via's sent-by, and an ACK is keyed as the INVITE it acknowledges. Only
//!   RFC 3261 branches (magic cookie `z9hG4bK`) make keys: the RFC 2543
//!   fallback matching is not implemented, and such requests are refused.
//!
//! Pure functions over bytes and values: no clock, no socket.

use rsip::headers::{ToTypedHeader, UntypedHeader};
use rsip::message::HeadersExt;
use rsip::{Header, Headers, Method, Request, Response, SipMessage, StatusCode};
use std::fmt;

/// The largest datagram [`parse`] accepts (a UDP payload's maximum).
pub const MAX_MESSAGE: usize = 65_535;

/// RFC 3261's branch prefix (8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Why bytes are not a usable SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// Only whitespace: a keep-alive (RFC 5626 CRLF), not a message.
    KeepAlive,
    /// Larger than [`MAX_MESSAGE`]; the length is carried.
    TooLarge(usize),
    /// `rsip` refused it; its reason.
    Malformed(String),
    /// A header the transaction layer needs is missing.
    Missing(&'static str),
    /// A header is present but does not parse.
    Invalid(&'static str),
    /// Content-Length says more bytes than the datagram carries.
    Truncated { declared: usize, present: usize },
    /// The top Via's branch lacks the RFC 3261 magic cookie.
    Rfc2543Branch,
    /// `rsip` panicked on this input (a bug in it; the input is dropped).
    ParserPanicked,
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeepAlive => write!(f, "keep-alive, not a message"),
            Self::TooLarge(n) => write!(f, "message of {n} bytes exceeds {MAX_MESSAGE}"),
            Self::Malformed(why) => write!(f, "malformed SIP message: {why}"),
            Self::Missing(h) => write!(f, "missing {h}"),
            Self::Invalid(h) => write!(f, "invalid {h}"),
            Self::Truncated { declared, present } => {
                write!(f, "Content-Length {declared} but only {present} body bytes")
            }
            Self::Rfc2543Branch => write!(f, "Via branch without the z9hG4bK magic cookie"),
            Self::ParserPanicked => write!(f, "the SIP parser panicked on this input"),
        }
    }
}

impl std::error::Error for MessageError {}

/// Parses one datagram into a request or a response, checked to carry what
/// the transaction layer needs. Never panics.
pub fn parse(bytes: &[u8]) -> Result<SipMessage, MessageError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(MessageError::TooLarge(bytes.len()));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(MessageError::KeepAlive);
    }
    let parsed = std::panic::catch_unwind(|| SipMessage::try_from(bytes))
        .map_err(|_| MessageError::ParserPanicked)?;
    let mut message = parsed.map_err(|e| MessageError::Malformed(e.to_string()))?;
    check_headers(&message)?;
    fit_body(&mut message)?;
    Ok(message)
}

fn check_headers(m: &SipMessage) -> Result<(), MessageError> {
    let via = m.via_header().map_err(|_| MessageError::Missing("Via"))?;
    via.typed().map_err(|_| MessageError::Invalid("Via"))?;
    let cseq = m.cseq_header().map_err(|_| MessageError::Missing("CSeq"))?;
    cseq.typed().map_err(|_| MessageError::Invalid("CSeq"))?;
    m.call_id_header()
        .map_err(|_| MessageError::Missing("Call-ID"))?;
    m.from_header().map_err(|_| MessageError::Missing("From"))?;
    m.to_header().map_err(|_| MessageError::Missing("To"))?;
    Ok(())
}

fn fit_body(m: &mut SipMessage) -> Result<(), MessageError> {
    use rsip::message::HasHeaders;
    let length = m.headers().iter().find_map(|h| match h {
        Header::ContentLength(l) => Some(l.length()),
        _ => None,
    });
    let declared = match length {
        Some(l) => l.map_err(|_| MessageError::Invalid("Content-Length"))? as usize,
        None => return Ok(()),
    };
    let body = m.body_mut();
    if body.len() < declared {
        return Err(MessageError::Truncated {
            declared,
            present: body.len(),
        });
    }
    body.truncate(declared);
    Ok(())
}

/// Why a stream (TCP) holds no next message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The head, or head and declared body, exceed `max` bytes.
    TooLarge,
    /// The head has no usable Content-Length (RFC 3261 18.3: required on
    /// streams).
    NoLength,
}

/// The length of the first complete message in a stream buffer
/// (RFC 3261 18.3), after skipping the CRLF keep-alives before it (their
/// count is the first value); `Ok(None)` until it is complete.
pub fn frame(buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, FrameError> {
    let skip = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let rest = &buf[skip..];
    let Some(head_end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if rest.len() > max {
            Err(FrameError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let head = String::from_utf8_lossy(&rest[..head_end]);
    let length = head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
            .then(|| value.trim().parse::<usize>().ok())
    });
    let length = length.flatten().ok_or(FrameError::NoLength)?;
    let total = head_end + 4 + length;
    if total > max {
        return Err(FrameError::TooLarge);
    }
    Ok((rest.len() >= total).then_some((skip, total)))
}

/// Which side of a transaction a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Client,
    Server,
}

/// A transaction's identity (RFC 3261 17.1.3 for clients, 17.2.3 for
/// servers). `sent_by` is empty for client keys; `method` is the CSeq or
/// request method, with ACK folded into INVITE for server keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    pub role: Role,
    pub branch: String,
    pub sent_by: String,
    pub method: String,
}

impl fmt::Display for TxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role {
            Role::Client => "client",
            Role::Server => "server",
        };
        write!(f, "{role} {} {}", self.method, self.branch)?;
        if !self.sent_by.is_empty() {
            write!(f, " {}", self.sent_by)?;
        }
        Ok(())
    }
}

/// The top Via's branch (with the magic cookie) and sent-by (lower case).
fn top_via(headers: &Headers) -> Result<(String, String), MessageError> {
    let via = headers
        .iter()
        .find_map(|h| match h {
            Header::Via(v) => Some(v),
            _ => None,
        })
        .ok_or(MessageError::Missing("Via"))?
        .typed()
        .map_err(|_| MessageError::Invalid("Via"))?;
    let branch = via
        .branch()
        .ok_or(MessageError::Missing("Via branch"))?
        .to_string();
    if !branch.starts_with(MAGIC_COOKIE) || branch.len() == MAGIC_COOKIE.len() {
        return Err(MessageError::Rfc2543Branch);
    }
    let sent_by = via.uri.host_with_port.to_string().to_ascii_lowercase();
    Ok((branch, sent_by))
}

fn cseq_of(headers: &Headers) -> Result<(u32, Method), MessageError> {
    let cseq = headers
        .iter()
        .find_map(|h| match h {
            Header::CSeq(c) => Some(c),
            _ => None,
        })
        .ok_or(MessageError::Missing("CSeq"))?
        .typed()
        .map_err(|_| MessageError::Invalid("CSeq"))?;
    Ok((cseq.seq, cseq.method))
}

/// The key of the server transaction a received request belongs to (ACK is
/// matched to its INVITE; CANCEL has its own transaction).
pub fn server_key(request: &Request) -> Result<TxKey, MessageError> {
    let (branch, sent_by) = top_via(&request.headers)?;
    let method = match request.method {
        Method::Ack => Method::Invite,
        m => m,
    };
    Ok(TxKey {
        role: Role::Server,
        branch,
        sent_by,
        method: method.to_string(),
    })
}

/// The INVITE server transaction a received CANCEL targets (RFC 3261 9.2:
/// same branch and sent-by, method INVITE). `None` for anything but CANCEL.
pub fn cancel_target(cancel: &Request) -> Result<Option<TxKey>, MessageError> {
    if cancel.method != Method::Cancel {
        return Ok(None);
    }
    let mut key = server_key(cancel)?;
    key.method = Method::Invite.to_string();
    Ok(Some(key))
}

/// The key of the client transaction sending `request` (top Via branch and
/// method).
pub fn client_key_of_request(request: &Request) -> Result<TxKey, MessageError> {
    let (branch, _) = top_via(&request.headers)?;
    Ok(TxKey {
        role: Role::Client,
        branch,
        sent_by: String::new(),
        method: request.method.to_string(),
    })
}

/// The key of the client transaction a received response belongs to (top
/// Via branch and CSeq method).
pub fn client_key_of_response(response: &Response) -> Result<TxKey, MessageError> {
    let (branch, _) = top_via(&response.headers)?;
    let (_, method) = cseq_of(&response.headers)?;
    Ok(TxKey {
        role: Role::Client,
        branch,
        sent_by: String::new(),
        method: method.to_string(),
    })
}

/// A response to `request` (RFC 3261 8.2.6.2): every Via in order, From,
/// To (with `to_tag` added when the request's To has none), Call-ID, CSeq,
/// and an empty body.
pub fn response_to(request: &Request, code: u16, to_tag: Option<&str>) -> Response {
    let mut headers = Headers::default();
    for h in request.headers.iter() {
        match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(h.clone())
            }
            Header::To(to) => {
                let tagged = match (to.tag(), to_tag) {
                    (Ok(None), Some(tag)) => to.clone().with_tag(rsip::param::Tag::new(tag)).ok(),
                    _ => None,
                };
                headers.push(Header::To(tagged.unwrap_or_else(|| to.clone())));
            }
            _ => {}
        }
    }
    headers.push(Header::ContentLength(Default::default()));
    Response {
        status_code: StatusCode::Other(code, reason_phrase(code).to_string()),
        version: request.version.clone(),
        headers,
        body: Vec::new(),
    }
}

/// The ACK an INVITE client transaction sends for a non-2xx final response
/// (RFC 3261 17.1.1.3): the INVITE's Request-URI, top Via, Call-ID, From,
/// Route set and CSeq number, the response's To.
pub fn ack_for(invite: &Request, response: &Response) -> Request {
    let mut headers = Headers::default();
    if let Some(via) = invite.headers.iter().find(|h| matches!(h, Header::Via(_))) {
        headers.push(via.clone());
    }
    for h in invite.headers.iter() {
        match h {
            Header::From(_) | Header::CallId(_) | Header::Route(_) | Header::MaxForwards(_) => {
                headers.push(h.clone())
            }
            Header::CSeq(c) => {
                let seq = c.typed().map(|c| c.seq).unwrap_or(0);
                headers.push(Header::CSeq(
                    rsip::typed::CSeq::from((seq, Method::Ack)).into(),
                ));
            }
            _ => {}
        }
    }
    if let Ok(to) = response.to_header() {
        headers.push(Header::To(to.clone()));
    }
    headers.push(Header::ContentLength(Default::default()));
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        version: invite.version.clone(),
        headers,
        body: Vec::new(),
    }
}

/// The reason phrase of a status code (RFC 3261 21, RFC 4028, RFC 6026).
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}

/// The bytes of a message as it goes on the wire.
pub fn to_bytes(message: &SipMessage) -> Vec<u8> {
    message.to_string().into_bytes()
}

/// A response's status code as a number.
pub fn status(response: &Response) -> u16 {
    response.status_code.code()
}

/// The value of a message's header as text, for tests and logs.
pub fn header_value<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let text = match h {
            Header::Via(v) if name.eq_ignore_ascii_case("via") => v.value(),
            Header::To(v) if name.eq_ignore_ascii_case("to") => v.value(),
            Header::From(v) if name.eq_ignore_ascii_case("from") => v.value(),
            Header::CallId(v) if name.eq_ignore_ascii_case("call-id") => v.value(),
            Header::CSeq(v) if name.eq_ignore_ascii_case("cseq") => v.value(),
            _ => return None,
        };
        Some(text)
    })
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    #[test]
    fn a_stream_is_cut_where_content_length_says() {
        let one = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(one);
        stream.extend_from_slice(b"INV");
        assert_eq!(frame(&stream, 1000), Ok(Some((4, one.len()))));
        assert_eq!(frame(&stream[..10], 1000), Ok(None));
        let compact = b"BYE sip:a@127.0.0.1 SIP/2.0\r\nl: 0\r\n\r\n";
        assert_eq!(frame(compact, 1000), Ok(Some((0, compact.len()))));
        let none = b"BYE sip:a@127.0.0.1 SIP/2.0\r\nVia: x\r\n\r\n";
        assert_eq!(frame(none, 1000), Err(FrameError::NoLength));
        let huge = b"BYE sip:a SIP/2.0\r\nContent-Length: 99999\r\n\r\n";
        assert_eq!(frame(huge, 1000), Err(FrameError::TooLarge));
        assert_eq!(frame(&[b'x'; 2000], 1000), Err(FrameError::TooLarge));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rtp::xorshift::XorShift;

    /// A request from 10.0.0.1:5060 with `branch` (INVITE when `method` is).
    pub(crate) fn request_text(method: &str, branch: &str) -> String {
        format!(
            "{method} sip:bob@10.0.0.2 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}\r\n\
             Via: SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bKproxy\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@10.0.0.1>;tag=a1\r\n\
             To: <sip:bob@10.0.0.2>\r\n\
             Call-ID: c1@10.0.0.1\r\n\
             CSeq: 1 {method}\r\n\
             Contact: <sip:alice@10.0.0.1>\r\n\
             Content-Length: 4\r\n\r\nv=0\n"
        )
    }

    pub(crate) fn request(method: &str, branch: &str) -> Request {
        match parse(request_text(method, branch).as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn a_request_parses_with_its_keys() {
        let invite = request("INVITE", "z9hG4bKabc");
        assert_eq!(invite.method, Method::Invite);
        assert_eq!(invite.body, b"v=0\n");
        let key = server_key(&invite).unwrap();
        assert_eq!(key.role, Role::Server);
        assert_eq!(key.branch, "z9hG4bKabc");
        assert_eq!(key.sent_by, "10.0.0.1:5060");
        assert_eq!(key.method, "INVITE");
        // The ACK of a non-2xx matches its INVITE; a CANCEL has its own
        // transaction but targets the INVITE's.
        assert_eq!(server_key(&request("ACK", "z9hG4bKabc")).unwrap(), key);
        let cancel = request("CANCEL", "z9hG4bKabc");
        assert_ne!(server_key(&cancel).unwrap(), key);
        assert_eq!(cancel_target(&cancel).unwrap(), Some(key.clone()));
        assert_eq!(cancel_target(&invite).unwrap(), None);
        // Another branch or another sent-by is another transaction.
        assert_ne!(server_key(&request("INVITE", "z9hG4bKabd")).unwrap(), key);
        let moved =
            request_text("INVITE", "z9hG4bKabc").replace("10.0.0.1:5060;", "10.0.0.3:5060;");
        let moved = match parse(moved.as_bytes()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        };
        assert_ne!(server_key(&moved).unwrap(), key);
    }

    #[test]
    fn a_response_copies_the_request_and_keys_to_its_client_transaction() {
        let invite = request("INVITE", "z9hG4bKxyz");
        let ok = response_to(&invite, 200, Some("b7"));
        let bytes = to_bytes(&SipMessage::Response(ok));
        let parsed = match parse(&bytes).unwrap() {
            SipMessage::Response(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(status(&parsed), 200);
        let vias: Vec<_> = parsed
            .headers
            .iter()
            .filter_map(|h| match h {
                Header::Via(v) => Some(v.value().to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKxyz",
                "SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bKproxy"
            ]
        );
        assert_eq!(
            header_value(&parsed.headers, "from"),
            Some("<sip:alice@10.0.0.1>;tag=a1")
        );
        assert_eq!(
            header_value(&parsed.headers, "to"),
            Some("<sip:bob@10.0.0.2>;tag=b7")
        );
        assert_eq!(
            header_value(&parsed.headers, "call-id"),
            Some("c1@10.0.0.1")
        );
        assert_eq!(header_value(&parsed.headers, "cseq"), Some("1 INVITE"));
        assert!(parsed.body.is_empty());
        assert_eq!(
            client_key_of_response(&parsed).unwrap(),
            client_key_of_request(&invite).unwrap()
        );
        // A To that has a tag keeps it.
        let tagged = response_to(&invite, 180, Some("b7"));
        let again = response_to(
            &Request {
                headers: tagged.headers.clone(),
                ..invite.clone()
            },
            200,
            Some("other"),
        );
        assert_eq!(
            header_value(&again.headers, "to"),
            Some("<sip:bob@10.0.0.2>;tag=b7")
        );
    }

    #[test]
    fn the_ack_of_a_failure_has_the_invite_top_via_and_the_response_to() {
        let invite = request("INVITE", "z9hG4bKack");
        let busy = response_to(&invite, 486, Some("b9"));
        let ack = ack_for(&invite, &busy);
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, invite.uri);
        assert_eq!(header_value(&ack.headers, "cseq"), Some("1 ACK"));
        assert_eq!(
            header_value(&ack.headers, "to"),
            Some("<sip:bob@10.0.0.2>;tag=b9")
        );
        let vias = ack
            .headers
            .iter()
            .filter(|h| matches!(h, Header::Via(_)))
            .count();
        assert_eq!(vias, 1);
        assert_eq!(server_key(&ack).unwrap(), server_key(&invite).unwrap());
    }

    #[test]
    fn bad_datagrams_are_errors() {
        assert_eq!(
            parse(&vec![b'a'; MAX_MESSAGE + 1]),
            Err(MessageError::TooLarge(MAX_MESSAGE + 1))
        );
        assert_eq!(parse(b"\r\n\r\n"), Err(MessageError::KeepAlive));
        assert!(matches!(
            parse(b"hello world"),
            Err(MessageError::Malformed(_))
        ));
        let text = request_text("OPTIONS", "z9hG4bK1");
        let no_via: String = text
            .lines()
            .filter(|l| !l.starts_with("Via"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        assert_eq!(parse(no_via.as_bytes()), Err(MessageError::Missing("Via")));
        let no_cseq = text.replace("CSeq: 1 OPTIONS\r\n", "");
        assert_eq!(
            parse(no_cseq.as_bytes()),
            Err(MessageError::Missing("CSeq"))
        );
        let bad_cseq = text.replace("CSeq: 1 OPTIONS", "CSeq: x OPTIONS");
        assert_eq!(
            parse(bad_cseq.as_bytes()),
            Err(MessageError::Invalid("CSeq"))
        );
        let no_call_id = text.replace("Call-ID: c1@10.0.0.1\r\n", "");
        assert_eq!(
            parse(no_call_id.as_bytes()),
            Err(MessageError::Missing("Call-ID"))
        );
        let short = text.replace("Content-Length: 4", "Content-Length: 9");
        assert_eq!(
            parse(short.as_bytes()),
            Err(MessageError::Truncated {
                declared: 9,
                present: 4
            })
        );
        let long = text.replace("Content-Length: 4", "Content-Length: 2");
        assert_eq!(parse(long.as_bytes()).unwrap().body(), b"v=");
        let old = request("OPTIONS", "1234");
        assert_eq!(server_key(&old), Err(MessageError::Rfc2543Branch));
        assert_eq!(
            client_key_of_request(&request("OPTIONS", "z9hG4bK")),
            Err(MessageError::Rfc2543Branch)
        );
    }

    /// Mutated messages (bytes flipped, cut, duplicated, spliced) never
    /// panic rsip or anything after it: every parse is an error or a message
    /// whose keys and responses can be computed.
    #[test]
    fn mangled_datagrams_never_panic() {
        let seeds = [
            request_text("INVITE", "z9hG4bKfuzz"),
            request_text("CANCEL", "z9hG4bKfuzz"),
            to_bytes(&SipMessage::Response(response_to(
                &request("INVITE", "z9hG4bKfuzz"),
                180,
                Some("t"),
            )))
            .into_iter()
            .map(char::from)
            .collect(),
        ];
        let specials = b":;,<>=@\r\n \t\"\\/%\x00\xff";
        let mut rng = XorShift::new(0x5195_3261);
        let (mut ok, mut errors) = (0, 0);
        for i in 0..6000 {
            let mut bytes = seeds[i % seeds.len()].as_bytes().to_vec();
            for _ in 0..=rng.below(6) {
                let at = rng.below(bytes.len() as u32 + 1) as usize;
                match rng.below(5) {
                    0 if at < bytes.len() => {
                        bytes[at] = specials[rng.below(specials.len() as u32) as usize]
                    }
                    1 if at < bytes.len() => bytes[at] = rng.next_u32() as u8,
                    2 => bytes.truncate(at),
                    3 => {
                        let end = (at + rng.below(40) as usize).min(bytes.len());
                        let copy = bytes[at..end].to_vec();
                        bytes.splice(at..at, copy);
                    }
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            match parse(&bytes) {
                Ok(SipMessage::Request(r)) => {
                    ok += 1;
                    let _ = server_key(&r);
                    let _ = cancel_target(&r);
                    let _ = client_key_of_request(&r);
                    let resp = response_to(&r, 500, Some("x"));
                    let _ = ack_for(&r, &resp);
                    let _ = parse(&to_bytes(&SipMessage::Response(resp)));
                }
                Ok(SipMessage::Response(r)) => {
                    ok += 1;
                    let _ = client_key_of_response(&r);
                }
                Err(e) => {
                    assert_ne!(
                        e,
                        MessageError::ParserPanicked,
                        "rsip panicked on {bytes:?}"
                    );
                    errors += 1;
                }
            }
        }
        // The mutations reach both outcomes, or the test tests nothing.
        assert!(ok > 100 && errors > 100, "ok {ok} errors {errors}");
    }
}
