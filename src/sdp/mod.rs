//! SDP offer/answer (RFC 3264 over RFC 4566 descriptions) for the SIP side.
//!
//! Owns the session descriptions crossbar reads from and writes to SIP peers:
//! [`parse`] (untrusted bytes into the typed [`SessionDescription`]),
//! [`SessionDescription::write`], [`answer`] (our answer to a peer's offer),
//! [`offer`] (our offer for an offerless INVITE or a re-INVITE) and
//! [`negotiated`] (what an offer/answer pair settled: the peer's media
//! address, the format and payload type, packet time, direction, DTMF).
//!
//! Invariants: sans-IO (text in, values and text out; no clock, no sockets);
//! nothing here panics on any input (the parser is bounded by the limits in
//! [`parse`](mod@parse) and refuses with the line it found wrong); an answer
//! has exactly one `m=` line per offered `m=` line, in order, the rejected
//! ones with port 0 (RFC 3264 6); at most one audio stream is accepted, and
//! its format is one crossbar carries natively ([`crate::media::Format`]),
//! chosen first from [`LocalMedia::preferred`] so that a bridge to a leg of
//! that format can relay RTP unchanged (native_rtp).

mod model;
mod negotiate;
pub mod parse;

#[cfg(test)]
mod tests;

use std::fmt;

pub use model::{
    is_rtp_proto, AddrType, Attribute, Connection, Direction, Fmtp, MediaDescription, Origin,
    RtcpAttr, RtpMap, SessionDescription,
};
pub use negotiate::{
    answer, format_of, negotiated, offer, Answer, LocalMedia, Negotiated, Role, TELEPHONE_EVENT_PT,
};
pub use parse::parse;

/// Why a description was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SdpError {
    /// The text is not a valid description: `line` is the 1-based line found
    /// wrong (0 when something is missing at the end).
    Malformed {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The text exceeds one of the parser's limits.
    TooLarge {
        /// Which limit.
        limit: &'static str,
    },
    /// The description is valid but offers nothing crossbar can accept (a SIP
    /// INVITE gets 488 Not Acceptable Here).
    NotAcceptable {
        /// Why.
        reason: &'static str,
    },
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::Malformed { line, reason } => write!(f, "SDP line {line}: {reason}"),
            SdpError::TooLarge { limit } => write!(f, "SDP too large: {limit}"),
            SdpError::NotAcceptable { reason } => write!(f, "SDP not acceptable: {reason}"),
        }
    }
}

impl std::error::Error for SdpError {}
