//! A zero-copy view of one RTP packet (RFC 3550 §5.1) over the caller's
//! buffer, read-only ([`RtpPacket`]) or writable in place ([`RtpPacketMut`]).
//!
//! Invariants: a view exists only for a buffer that [`RtpPacket::parse`]
//! validated (version 2, CSRC list, header extension and padding all inside
//! the buffer), so every accessor is a bounds-checked-once slice and none can
//! panic. Parsing never panics on any input.

use std::fmt;

use super::{Pt, RtpTimestamp, SeqNo, Ssrc};

/// The fixed RTP header length.
pub const FIXED_HEADER: usize = 12;

/// Why a datagram is not a usable RTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    TooShort { len: usize },
    /// The version field is not 2.
    BadVersion(u8),
    /// The CSRC list runs past the end.
    CsrcOverrun,
    /// The header extension runs past the end.
    ExtensionOverrun,
    /// The padding count is zero or larger than the payload.
    BadPadding,
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtpError::TooShort { len } => write!(f, "RTP packet too short ({len} bytes)"),
            RtpError::BadVersion(v) => write!(f, "RTP version {v}, expected 2"),
            RtpError::CsrcOverrun => f.write_str("RTP CSRC list past the end"),
            RtpError::ExtensionOverrun => f.write_str("RTP header extension past the end"),
            RtpError::BadPadding => f.write_str("RTP padding count invalid"),
        }
    }
}

impl std::error::Error for RtpError {}

/// Offsets of a validated packet: header length and payload end (before
/// padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    header_len: usize,
    payload_end: usize,
}

fn layout(buf: &[u8]) -> Result<Layout, RtpError> {
    let Some(&[b0, ..]) = buf.get(..FIXED_HEADER) else {
        return Err(RtpError::TooShort { len: buf.len() });
    };
    let version = b0 >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let csrc_count = usize::from(b0 & 0x0f);
    let mut header_len = FIXED_HEADER + 4 * csrc_count;
    if header_len > buf.len() {
        return Err(RtpError::CsrcOverrun);
    }
    if b0 & 0x10 != 0 {
        let Some(ext) = buf.get(header_len..header_len + 4) else {
            return Err(RtpError::ExtensionOverrun);
        };
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        header_len += 4 + 4 * words;
        if header_len > buf.len() {
            return Err(RtpError::ExtensionOverrun);
        }
    }
    let mut payload_end = buf.len();
    if b0 & 0x20 != 0 {
        let pad = usize::from(buf[buf.len() - 1]);
        if pad == 0 || pad > buf.len() - header_len {
            return Err(RtpError::BadPadding);
        }
        payload_end -= pad;
    }
    Ok(Layout {
        header_len,
        payload_end,
    })
}

/// A validated read-only RTP packet.
#[derive(Clone, Copy, Debug)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    layout: Layout,
}

/// A validated RTP packet whose header fields can be rewritten in place.
#[derive(Debug)]
pub struct RtpPacketMut<'a> {
    buf: &'a mut [u8],
    layout: Layout,
}

impl<'a> RtpPacket<'a> {
    /// Validates `buf` as an RTP packet.
    pub fn parse(buf: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        let layout = layout(buf)?;
        Ok(RtpPacket { buf, layout })
    }

    /// The padding bit.
    pub fn padding(&self) -> bool {
        self.buf[0] & 0x20 != 0
    }

    /// The extension bit.
    pub fn has_extension(&self) -> bool {
        self.buf[0] & 0x10 != 0
    }

    /// The number of CSRCs.
    pub fn csrc_count(&self) -> usize {
        usize::from(self.buf[0] & 0x0f)
    }

    /// The marker bit.
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    /// The payload type.
    pub fn pt(&self) -> Pt {
        Pt(self.buf[1] & 0x7f)
    }

    /// The sequence number.
    pub fn seq(&self) -> SeqNo {
        SeqNo(u16::from_be_bytes([self.buf[2], self.buf[3]]))
    }

    /// The media timestamp.
    pub fn timestamp(&self) -> RtpTimestamp {
        RtpTimestamp(u32::from_be_bytes([
            self.buf[4],
            self.buf[5],
            self.buf[6],
            self.buf[7],
        ]))
    }

    /// The synchronisation source.
    pub fn ssrc(&self) -> Ssrc {
        Ssrc(u32::from_be_bytes([
            self.buf[8],
            self.buf[9],
            self.buf[10],
            self.buf[11],
        ]))
    }

    /// The contributing sources.
    pub fn csrcs(&self) -> impl Iterator<Item = Ssrc> + 'a {
        let end = FIXED_HEADER + 4 * usize::from(self.buf[0] & 0x0f);
        self.buf[FIXED_HEADER..end]
            .chunks_exact(4)
            .map(|c| Ssrc(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
    }

    /// The header extension: its 16-bit profile id and its data.
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        if !self.has_extension() {
            return None;
        }
        let start = FIXED_HEADER + 4 * self.csrc_count();
        let profile = u16::from_be_bytes([self.buf[start], self.buf[start + 1]]);
        Some((profile, &self.buf[start + 4..self.layout.header_len]))
    }

    /// The length of the whole header (fixed, CSRCs, extension).
    pub fn header_len(&self) -> usize {
        self.layout.header_len
    }

    /// The payload, without padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.layout.header_len..self.layout.payload_end]
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

impl<'a> RtpPacketMut<'a> {
    /// Validates `buf` as an RTP packet, for rewriting in place.
    pub fn parse(buf: &'a mut [u8]) -> Result<RtpPacketMut<'a>, RtpError> {
        let layout = layout(buf)?;
        Ok(RtpPacketMut { buf, layout })
    }

    /// A read-only view of the same packet.
    pub fn view(&self) -> RtpPacket<'_> {
        RtpPacket {
            buf: self.buf,
            layout: self.layout,
        }
    }

    /// Sets the marker bit.
    pub fn set_marker(&mut self, on: bool) {
        self.buf[1] = (self.buf[1] & 0x7f) | if on { 0x80 } else { 0 };
    }

    /// Sets the payload type (7 bits; the high bit of `pt` is ignored).
    pub fn set_pt(&mut self, pt: Pt) {
        self.buf[1] = (self.buf[1] & 0x80) | (pt.0 & 0x7f);
    }

    /// Sets the sequence number.
    pub fn set_seq(&mut self, seq: SeqNo) {
        self.buf[2..4].copy_from_slice(&seq.0.to_be_bytes());
    }

    /// Sets the media timestamp.
    pub fn set_timestamp(&mut self, ts: RtpTimestamp) {
        self.buf[4..8].copy_from_slice(&ts.0.to_be_bytes());
    }

    /// Sets the synchronisation source.
    pub fn set_ssrc(&mut self, ssrc: Ssrc) {
        self.buf[8..12].copy_from_slice(&ssrc.0.to_be_bytes());
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.layout.header_len..self.layout.payload_end]
    }
}

/// The header fields of a packet to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub marker: bool,
    pub pt: Pt,
    pub seq: SeqNo,
    pub timestamp: RtpTimestamp,
    pub ssrc: Ssrc,
}

impl Header {
    /// Writes the 12-byte fixed header (no CSRC, no extension, no padding)
    /// at the start of `buf`; returns its length, or `None` when `buf` is
    /// shorter than 12 bytes.
    pub fn write(&self, buf: &mut [u8]) -> Option<usize> {
        let out = buf.get_mut(..FIXED_HEADER)?;
        out[0] = 0x80;
        out[1] = (self.pt.0 & 0x7f) | if self.marker { 0x80 } else { 0 };
        out[2..4].copy_from_slice(&self.seq.0.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.0.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.0.to_be_bytes());
        Some(FIXED_HEADER)
    }
}

/// True when the second byte marks the datagram as RTCP rather than RTP on a
/// multiplexed port (RFC 5761 §4: packet types 192..=223).
pub fn looks_like_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(192..=223))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::xorshift::XorShift;

    fn sample() -> Vec<u8> {
        let mut p = vec![0u8; 12];
        Header {
            marker: true,
            pt: Pt(8),
            seq: SeqNo(0xabcd),
            timestamp: RtpTimestamp(0x0102_0304),
            ssrc: Ssrc(0xdead_beef),
        }
        .write(&mut p)
        .unwrap();
        p.extend_from_slice(b"payload!");
        p
    }

    #[test]
    fn parses_fixed_header() {
        let p = sample();
        let v = RtpPacket::parse(&p).unwrap();
        assert!(v.marker());
        assert_eq!(v.pt(), Pt(8));
        assert_eq!(v.seq(), SeqNo(0xabcd));
        assert_eq!(v.timestamp(), RtpTimestamp(0x0102_0304));
        assert_eq!(v.ssrc(), Ssrc(0xdead_beef));
        assert_eq!(v.payload(), b"payload!");
        assert_eq!(v.header_len(), 12);
        assert_eq!(v.csrcs().count(), 0);
        assert!(v.extension().is_none());
    }

    #[test]
    fn parses_csrc_extension_padding() {
        let mut p = vec![0x80 | 0x20 | 0x10 | 2, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 9]); // two CSRCs
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // one-word extension
        p.extend_from_slice(b"abc");
        p.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let v = RtpPacket::parse(&p).unwrap();
        assert_eq!(v.csrcs().collect::<Vec<_>>(), vec![Ssrc(7), Ssrc(9)]);
        assert_eq!(v.extension(), Some((0xbede, &[1u8, 2, 3, 4][..])));
        assert_eq!(v.payload(), b"abc");
        assert!(v.padding());
    }

    #[test]
    fn rejects_bad_packets() {
        assert_eq!(
            RtpPacket::parse(&[0x80; 11]).unwrap_err(),
            RtpError::TooShort { len: 11 }
        );
        let mut p = sample();
        p[0] = 0x40;
        assert_eq!(RtpPacket::parse(&p).unwrap_err(), RtpError::BadVersion(1));
        p[0] = 0x8f;
        assert_eq!(RtpPacket::parse(&p).unwrap_err(), RtpError::CsrcOverrun);
        p[0] = 0x90;
        p.truncate(14);
        assert_eq!(
            RtpPacket::parse(&p).unwrap_err(),
            RtpError::ExtensionOverrun
        );
        let mut p = sample();
        p[0] = 0xa0;
        *p.last_mut().unwrap() = 0;
        assert_eq!(RtpPacket::parse(&p).unwrap_err(), RtpError::BadPadding);
        *p.last_mut().unwrap() = 9;
        assert_eq!(RtpPacket::parse(&p).unwrap_err(), RtpError::BadPadding);
    }

    #[test]
    fn rewrites_in_place() {
        let mut p = sample();
        let mut m = RtpPacketMut::parse(&mut p).unwrap();
        m.set_ssrc(Ssrc(1));
        m.set_seq(SeqNo(2));
        m.set_timestamp(RtpTimestamp(3));
        m.set_pt(Pt(0));
        m.set_marker(false);
        assert_eq!(m.view().payload(), b"payload!");
        let v = RtpPacket::parse(&p).unwrap();
        assert_eq!(
            (v.ssrc(), v.seq(), v.timestamp(), v.pt(), v.marker()),
            (Ssrc(1), SeqNo(2), RtpTimestamp(3), Pt(0), false)
        );
    }

    #[test]
    fn rtcp_demux() {
        assert!(looks_like_rtcp(&[0x80, 200]));
        assert!(!looks_like_rtcp(&[0x80, 0]));
        assert!(!looks_like_rtcp(&[0x80]));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = XorShift::new(0x5eed);
        let mut buf = [0u8; 96];
        for _ in 0..200_000 {
            let len = rng.below(buf.len() as u32 + 1) as usize;
            rng.fill(&mut buf[..len]);
            if rng.below(2) == 0 && len > 0 {
                buf[0] = (buf[0] & 0x3f) | 0x80; // mostly version 2
            }
            if let Ok(v) = RtpPacket::parse(&buf[..len]) {
                assert!(v.header_len() <= len);
                assert!(v.header_len() + v.payload().len() <= len);
                let _ = (v.csrcs().count(), v.extension(), v.seq(), v.ssrc());
            }
            if let Ok(mut m) = RtpPacketMut::parse(&mut buf[..len]) {
                m.set_seq(SeqNo(1));
                m.payload_mut().fill(0);
            }
        }
    }
}
