//! RTP and RTCP (RFC 3550), sans-IO: protocol ids as small `Copy` newtypes, a
//! zero-copy packet view ([`packet`]), the outgoing stream header rewriter
//! ([`stream`]), receive-side sequence tracking ([`stream::ReceiveState`]) and
//! RTCP compound parsing and building ([`rtcp`]).
//!
//! Invariants:
//! - Nothing here opens a socket or reads a clock: callers hand in bytes and,
//!   where time matters, an `Instant`.
//! - No function panics on any input; malformed packets give a typed error.
//! - Nothing allocates per packet: views borrow the caller's buffer, rewrites
//!   happen in place.

pub mod packet;
pub mod rtcp;
pub mod stream;
pub mod xorshift;

use std::cmp::Ordering;
use std::fmt;

pub use packet::{RtpError, RtpPacket, RtpPacketMut};
pub use stream::{OutStream, ReceiveState};

/// A synchronisation source identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ssrc(pub u32);

/// An RTP payload type (7 bits on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Pt(pub u8);

/// A 16-bit RTP sequence number, compared with wrap-around (RFC 1982 serial
/// number arithmetic): `a` is newer than `b` when `a - b` (mod 2^16) lies in
/// `1..2^15`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SeqNo(pub u16);

/// A 32-bit RTP media timestamp, in the stream's clock rate; wraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RtpTimestamp(pub u32);

/// A sequence number extended with its wrap-around count (RFC 3550 A.1):
/// `cycles << 16 | seq`. Monotonic for an in-order stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ExtSeq(pub u64);

impl SeqNo {
    /// The next sequence number (wrapping).
    pub fn next(self) -> SeqNo {
        SeqNo(self.0.wrapping_add(1))
    }

    /// Signed distance from `other` to `self` in `-2^15..2^15`: positive when
    /// `self` is newer.
    pub fn delta(self, other: SeqNo) -> i16 {
        self.0.wrapping_sub(other.0) as i16
    }

    /// True when `self` comes after `other` in wrapping order.
    pub fn is_newer_than(self, other: SeqNo) -> bool {
        self.delta(other) > 0
    }

    /// Wrapping order: `Less` when `self` is older than `other`.
    pub fn wrapping_cmp(self, other: SeqNo) -> Ordering {
        self.delta(other).cmp(&0)
    }

    /// Extends `self` to 64 bits given the highest extended sequence number
    /// seen so far (the one nearest to it, older or newer).
    pub fn extend(self, reference: ExtSeq) -> ExtSeq {
        let delta = i64::from(self.delta(SeqNo(reference.0 as u16)));
        let ext = reference.0 as i64 + delta;
        ExtSeq(ext.max(i64::from(self.0) & 0xffff) as u64)
    }
}

impl ExtSeq {
    /// The 16 bits on the wire.
    pub fn seq(self) -> SeqNo {
        SeqNo(self.0 as u16)
    }

    /// The number of times the 16-bit counter wrapped.
    pub fn cycles(self) -> u64 {
        self.0 >> 16
    }
}

impl RtpTimestamp {
    /// Adds `ticks` (wrapping).
    pub fn wrapping_add(self, ticks: u32) -> RtpTimestamp {
        RtpTimestamp(self.0.wrapping_add(ticks))
    }

    /// Signed distance from `other` to `self`, in clock ticks.
    pub fn delta(self, other: RtpTimestamp) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
}

impl fmt::Display for Ssrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_wrapping_order() {
        assert!(SeqNo(1).is_newer_than(SeqNo(0)));
        assert!(SeqNo(0).is_newer_than(SeqNo(65535)));
        assert!(!SeqNo(65535).is_newer_than(SeqNo(0)));
        assert_eq!(SeqNo(3).delta(SeqNo(65533)), 6);
        assert_eq!(SeqNo(65533).delta(SeqNo(3)), -6);
        assert_eq!(SeqNo(7).wrapping_cmp(SeqNo(7)), Ordering::Equal);
        assert_eq!(SeqNo(65535).next(), SeqNo(0));
    }

    #[test]
    fn seq_extension_across_wrap() {
        let mut highest = ExtSeq(65534);
        for (seq, want) in [(65535u16, 65535u64), (0, 65536), (1, 65537), (65535, 65535)] {
            let ext = SeqNo(seq).extend(highest);
            assert_eq!(ext, ExtSeq(want), "seq {seq}");
            highest = highest.max(ext);
        }
        assert_eq!(highest.cycles(), 1);
        assert_eq!(highest.seq(), SeqNo(1));
        // Near zero, an "older" number never extends below zero.
        assert_eq!(SeqNo(65535).extend(ExtSeq(2)), ExtSeq(65535));
    }

    #[test]
    fn timestamp_wraps() {
        assert_eq!(RtpTimestamp(u32::MAX).wrapping_add(2), RtpTimestamp(1));
        assert_eq!(RtpTimestamp(1).delta(RtpTimestamp(u32::MAX)), 2);
    }
}
