//! RTCP (RFC 3550 §6): walking a compound packet ([`RtcpIter`], [`summarize`]),
//! building receiver and sender reports ([`write_rr`], [`write_sr`]), SDES
//! CNAME ([`write_sdes_cname`]) and BYE ([`write_bye`]), rewriting the SSRCs
//! of a compound in place for a relay ([`map_ssrcs`], [`translate`]), and the NTP clock
//! arithmetic of LSR/DLSR/RTT ([`ntp_from_unix`], [`ntp_middle`], [`rtt`]).
//!
//! Invariants: parsing never panics and never reads past the datagram; each
//! sub-packet is checked for version 2 and a length that fits. Only the
//! packet types a media switch acts on are decoded (SR, RR, SDES, BYE);
//! others are yielded as [`RtcpPacket::Other`].

use std::fmt;

use super::Ssrc;

/// RTCP packet types.
pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_APP: u8 = 204;

/// Why a datagram is not a valid RTCP compound packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcpError {
    /// Shorter than a 4-byte RTCP header, or than a type's fixed part.
    TooShort,
    /// The version field is not 2.
    BadVersion(u8),
    /// The length field runs past the end of the datagram.
    LengthOverrun,
    /// The report count does not fit in the packet.
    CountOverrun,
    /// The output buffer is too small, or too many report blocks.
    BufferTooSmall,
}

impl fmt::Display for RtcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtcpError::TooShort => f.write_str("RTCP packet too short"),
            RtcpError::BadVersion(v) => write!(f, "RTCP version {v}, expected 2"),
            RtcpError::LengthOverrun => f.write_str("RTCP length past the end"),
            RtcpError::CountOverrun => f.write_str("RTCP report count past the end"),
            RtcpError::BufferTooSmall => f.write_str("RTCP output buffer too small"),
        }
    }
}

impl std::error::Error for RtcpError {}

/// The sender information of an SR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SenderInfo {
    pub ntp: u64,
    pub rtp_ts: u32,
    pub packets: u32,
    pub octets: u32,
}

/// One reception report block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: Ssrc,
    pub fraction_lost: u8,
    /// 24-bit signed on the wire.
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

/// A walk over the report blocks of an SR or RR.
#[derive(Clone, Copy, Debug)]
pub struct ReportBlocks<'a>(&'a [u8]);

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        let (b, rest) = self.0.split_first_chunk::<24>()?;
        self.0 = rest;
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let lost = word(4) & 0x00ff_ffff;
        Some(ReportBlock {
            ssrc: Ssrc(word(0)),
            fraction_lost: b[4],
            cumulative_lost: ((lost << 8) as i32) >> 8,
            highest_seq: word(8),
            jitter: word(12),
            last_sr: word(16),
            delay_since_last_sr: word(20),
        })
    }
}

/// One packet of a compound RTCP datagram.
#[derive(Clone, Copy, Debug)]
pub enum RtcpPacket<'a> {
    SenderReport {
        ssrc: Ssrc,
        info: SenderInfo,
        blocks: ReportBlocks<'a>,
    },
    ReceiverReport {
        ssrc: Ssrc,
        blocks: ReportBlocks<'a>,
    },
    /// Source description: `count` chunks, undecoded.
    SourceDescription { count: u8, body: &'a [u8] },
    /// Goodbye from `count` sources (the first listed ones are in `sources`).
    Bye { count: u8, sources: &'a [u8] },
    /// Any other packet type (APP, feedback, XR…), undecoded.
    Other { pt: u8, count: u8, body: &'a [u8] },
}

/// Iterates over the packets of a compound RTCP datagram; yields an error
/// (once, then stops) at the first malformed packet.
#[derive(Clone, Debug)]
pub struct RtcpIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> RtcpIter<'a> {
    /// Starts walking `datagram`.
    pub fn new(datagram: &'a [u8]) -> RtcpIter<'a> {
        RtcpIter {
            rest: datagram,
            failed: false,
        }
    }

    fn parse_one(&mut self) -> Result<RtcpPacket<'a>, RtcpError> {
        let Some((head, _)) = self.rest.split_first_chunk::<4>() else {
            return Err(RtcpError::TooShort);
        };
        let version = head[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let count = head[0] & 0x1f;
        let pt = head[1];
        let len = 4 * (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1);
        if len > self.rest.len() {
            return Err(RtcpError::LengthOverrun);
        }
        let (packet, rest) = self.rest.split_at(len);
        let mut body = &packet[4..];
        if head[0] & 0x20 != 0 {
            // Padding (only valid in the last packet, tolerated anywhere).
            let pad = usize::from(packet[len - 1]);
            if pad == 0 || pad > body.len() {
                return Err(RtcpError::LengthOverrun);
            }
            body = &body[..body.len() - pad];
        }
        self.rest = rest;
        let word = |b: &[u8], i: usize| -> Option<u32> {
            let w = b.get(i..i + 4)?;
            Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        };
        let blocks = |b: &'a [u8]| -> Result<ReportBlocks<'a>, RtcpError> {
            b.get(..24 * usize::from(count))
                .map(ReportBlocks)
                .ok_or(RtcpError::CountOverrun)
        };
        Ok(match pt {
            PT_SR => {
                let (Some(ssrc), Some(hi), Some(lo), Some(rtp_ts), Some(packets), Some(octets)) = (
                    word(body, 0),
                    word(body, 4),
                    word(body, 8),
                    word(body, 12),
                    word(body, 16),
                    word(body, 20),
                ) else {
                    return Err(RtcpError::TooShort);
                };
                RtcpPacket::SenderReport {
                    ssrc: Ssrc(ssrc),
                    info: SenderInfo {
                        ntp: u64::from(hi) << 32 | u64::from(lo),
                        rtp_ts,
                        packets,
                        octets,
                    },
                    blocks: blocks(&body[24..])?,
                }
            }
            PT_RR => {
                let Some(ssrc) = word(body, 0) else {
                    return Err(RtcpError::TooShort);
                };
                RtcpPacket::ReceiverReport {
                    ssrc: Ssrc(ssrc),
                    blocks: blocks(&body[4..])?,
                }
            }
            PT_SDES => RtcpPacket::SourceDescription { count, body },
            PT_BYE => {
                let sources = body
                    .get(..4 * usize::from(count))
                    .ok_or(RtcpError::CountOverrun)?;
                RtcpPacket::Bye { count, sources }
            }
            _ => RtcpPacket::Other { pt, count, body },
        })
    }
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let item = self.parse_one();
        self.failed = item.is_err();
        Some(item)
    }
}

/// Counts of the packet types in one compound datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RtcpSummary {
    pub sr: u32,
    pub rr: u32,
    pub sdes: u32,
    pub bye: u32,
    pub other: u32,
    pub report_blocks: u32,
}

/// Walks a whole compound datagram and counts its packets; an error if any
/// packet is malformed or the datagram is empty.
pub fn summarize(datagram: &[u8]) -> Result<RtcpSummary, RtcpError> {
    let mut s = RtcpSummary::default();
    if datagram.is_empty() {
        return Err(RtcpError::TooShort);
    }
    for packet in RtcpIter::new(datagram) {
        match packet? {
            RtcpPacket::SenderReport { blocks, .. } => {
                s.sr += 1;
                s.report_blocks += blocks.count() as u32;
            }
            RtcpPacket::ReceiverReport { blocks, .. } => {
                s.rr += 1;
                s.report_blocks += blocks.count() as u32;
            }
            RtcpPacket::SourceDescription { .. } => s.sdes += 1,
            RtcpPacket::Bye { .. } => s.bye += 1,
            RtcpPacket::Other { .. } => s.other += 1,
        }
    }
    Ok(s)
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn write_report(
    buf: &mut [u8],
    pt: u8,
    ssrc: Ssrc,
    info: Option<&SenderInfo>,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpError> {
    if blocks.len() > 31 {
        return Err(RtcpError::BufferTooSmall);
    }
    let fixed = 8 + if info.is_some() { 20 } else { 0 };
    let len = fixed + 24 * blocks.len();
    let out = buf.get_mut(..len).ok_or(RtcpError::BufferTooSmall)?;
    out[0] = 0x80 | blocks.len() as u8;
    out[1] = pt;
    out[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
    put_u32(out, 4, ssrc.0);
    if let Some(info) = info {
        put_u32(out, 8, (info.ntp >> 32) as u32);
        put_u32(out, 12, info.ntp as u32);
        put_u32(out, 16, info.rtp_ts);
        put_u32(out, 20, info.packets);
        put_u32(out, 24, info.octets);
    }
    for (i, b) in blocks.iter().enumerate() {
        let at = fixed + 24 * i;
        put_u32(out, at, b.ssrc.0);
        put_u32(
            out,
            at + 4,
            u32::from(b.fraction_lost) << 24 | (b.cumulative_lost as u32 & 0x00ff_ffff),
        );
        put_u32(out, at + 8, b.highest_seq);
        put_u32(out, at + 12, b.jitter);
        put_u32(out, at + 16, b.last_sr);
        put_u32(out, at + 20, b.delay_since_last_sr);
    }
    Ok(len)
}

/// Writes a receiver report from `ssrc` with up to 31 `blocks` at the start
/// of `buf`; returns its length.
pub fn write_rr(buf: &mut [u8], ssrc: Ssrc, blocks: &[ReportBlock]) -> Result<usize, RtcpError> {
    write_report(buf, PT_RR, ssrc, None, blocks)
}

/// Writes a sender report from `ssrc` with up to 31 `blocks` at the start of
/// `buf`; returns its length.
pub fn write_sr(
    buf: &mut [u8],
    ssrc: Ssrc,
    info: &SenderInfo,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpError> {
    write_report(buf, PT_SR, ssrc, Some(info), blocks)
}

/// Writes an SDES packet with one chunk: `ssrc` and its CNAME (at most 255
/// bytes, longer is cut), padded to a 32-bit boundary; returns its length.
pub fn write_sdes_cname(buf: &mut [u8], ssrc: Ssrc, cname: &[u8]) -> Result<usize, RtcpError> {
    let name = &cname[..cname.len().min(255)];
    // Header, SSRC, CNAME item (type, length, text), at least one null.
    let len = (8 + 2 + name.len() + 1).div_ceil(4) * 4;
    let out = buf.get_mut(..len).ok_or(RtcpError::BufferTooSmall)?;
    out[0] = 0x81;
    out[1] = PT_SDES;
    out[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
    put_u32(out, 4, ssrc.0);
    out[8] = 1; // CNAME
    out[9] = name.len() as u8;
    out[10..10 + name.len()].copy_from_slice(name);
    out[10 + name.len()..].fill(0);
    Ok(len)
}

/// Writes a BYE from `ssrc`; returns its length.
pub fn write_bye(buf: &mut [u8], ssrc: Ssrc) -> Result<usize, RtcpError> {
    let out = buf.get_mut(..8).ok_or(RtcpError::BufferTooSmall)?;
    out[..4].copy_from_slice(&[0x81, PT_BYE, 0, 1]);
    put_u32(out, 4, ssrc.0);
    Ok(8)
}

/// Replaces, in place, every SSRC of a valid compound datagram with
/// `map(ssrc)`: the sender SSRC of SR and RR, the SSRC of each report block,
/// of each SDES chunk and of each BYE source. Other packet types and the
/// rest of the bytes are left alone. Stops at the first malformed packet
/// (what came before it is rewritten); never reads or writes out of bounds.
pub fn map_ssrcs(datagram: &mut [u8], map: impl Fn(u32) -> u32) {
    translate(datagram, map, 0, |_, seq| seq);
}

/// [`map_ssrcs`], and also the numbering a relay changes: `sr_ts` is added
/// to the RTP timestamp of each SR's sender info, and the extended highest
/// sequence number of each report block becomes `block_seq(ssrc, seq)`
/// (`ssrc`: the block's SSRC before mapping).
pub fn translate(
    datagram: &mut [u8],
    map: impl Fn(u32) -> u32,
    sr_ts: u32,
    block_seq: impl Fn(u32, u32) -> u32,
) {
    let word = |b: &[u8], at: usize| {
        b.get(at..at + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    };
    let put = |b: &mut [u8], at: usize, v: u32| {
        if let Some(w) = b.get_mut(at..at + 4) {
            w.copy_from_slice(&v.to_be_bytes());
        }
    };
    let swap = |b: &mut [u8], at: usize| {
        if let Some(v) = word(b, at) {
            put(b, at, map(v));
        }
    };
    let mut at = 0;
    while let Some(head) = datagram.get(at..at + 4) {
        if head[0] >> 6 != 2 {
            return;
        }
        let count = usize::from(head[0] & 0x1f);
        let pt = head[1];
        let len = 4 * (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1);
        let Some(packet) = datagram.get_mut(at..at + len) else {
            return;
        };
        match pt {
            PT_SR | PT_RR => {
                let fixed = if pt == PT_SR { 28 } else { 8 };
                swap(packet, 4);
                if pt == PT_SR {
                    if let Some(ts) = word(packet, 16) {
                        put(packet, 16, ts.wrapping_add(sr_ts));
                    }
                }
                for i in 0..count {
                    let block = fixed + 24 * i;
                    if block + 24 <= len {
                        if let (Some(ssrc), Some(seq)) =
                            (word(packet, block), word(packet, block + 8))
                        {
                            put(packet, block + 8, block_seq(ssrc, seq));
                        }
                        swap(packet, block);
                    }
                }
            }
            PT_BYE => {
                for i in 0..count {
                    if 4 + 4 * (i + 1) <= len {
                        swap(packet, 4 + 4 * i);
                    }
                }
            }
            PT_SDES => {
                let mut c = 4;
                for _ in 0..count {
                    if c + 4 > len {
                        break;
                    }
                    swap(packet, c);
                    // Items until a null type, then pad to a word.
                    let mut i = c + 4;
                    while i < len && packet[i] != 0 {
                        i += 2 + usize::from(packet.get(i + 1).copied().unwrap_or(0));
                    }
                    c = (i + 1).div_ceil(4) * 4;
                }
            }
            _ => {}
        }
        at += len;
    }
}

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A time since the Unix epoch as a 64-bit NTP timestamp (32.32 fixed point
/// seconds). The caller reads the clock (`clock::ntp_now` in the shards).
pub fn ntp_from_unix(d: std::time::Duration) -> u64 {
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (d.as_secs() + NTP_UNIX_OFFSET) << 32 | frac
}

/// The middle 32 bits of an NTP timestamp (the LSR field, 16.16 seconds).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in 1/65536 s units (the DLSR field), saturating.
pub fn dlsr_units(d: std::time::Duration) -> u32 {
    (d.as_nanos() * 65_536 / 1_000_000_000).min(u128::from(u32::MAX)) as u32
}

/// Round-trip time (RFC 3550 §6.4.1: A − LSR − DLSR) in 1/65536 s from a
/// report block received at NTP time `arrival`; `None` when the block
/// carries no LSR or the result is negative (clock trouble).
pub fn rtt(arrival: u64, last_sr: u32, delay_since_last_sr: u32) -> Option<u32> {
    if last_sr == 0 {
        return None;
    }
    let rtt = ntp_middle(arrival)
        .wrapping_sub(last_sr)
        .wrapping_sub(delay_since_last_sr);
    (rtt < 0x8000_0000).then_some(rtt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::xorshift::XorShift;

    fn block(n: u32) -> ReportBlock {
        ReportBlock {
            ssrc: Ssrc(n),
            fraction_lost: 3,
            cumulative_lost: -2,
            highest_seq: 70_000 + n,
            jitter: 12,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 99,
        }
    }

    #[test]
    fn sr_rr_round_trip_in_a_compound() {
        let mut buf = [0u8; 256];
        let info = SenderInfo {
            ntp: 0x0102_0304_0506_0708,
            rtp_ts: 160,
            packets: 5,
            octets: 800,
        };
        let n = write_sr(&mut buf, Ssrc(1), &info, &[block(7)]).unwrap();
        let m = write_rr(&mut buf[n..], Ssrc(2), &[block(8), block(9)]).unwrap();
        // SDES with one chunk: SSRC + CNAME "ab" + end, padded to a word.
        let sdes = [0x81, PT_SDES, 0, 2, 0, 0, 0, 1, 1, 2, b'a', b'b'];
        buf[n + m..n + m + 12].copy_from_slice(&sdes);
        let bye = [0x81, PT_BYE, 0, 1, 0, 0, 0, 1];
        buf[n + m + 12..n + m + 20].copy_from_slice(&bye);
        let total = n + m + 20;
        let mut it = RtcpIter::new(&buf[..total]);
        match it.next() {
            Some(Ok(RtcpPacket::SenderReport {
                ssrc,
                info: got,
                mut blocks,
            })) => {
                assert_eq!(ssrc, Ssrc(1));
                assert_eq!(got, info);
                assert_eq!(blocks.next(), Some(block(7)));
                assert_eq!(blocks.next(), None);
            }
            other => panic!("{other:?}"),
        }
        match it.next() {
            Some(Ok(RtcpPacket::ReceiverReport { ssrc, blocks })) => {
                assert_eq!(ssrc, Ssrc(2));
                assert_eq!(blocks.collect::<Vec<_>>(), vec![block(8), block(9)]);
            }
            other => panic!("{other:?}"),
        }
        let s = summarize(&buf[..total]).unwrap();
        assert_eq!(
            s,
            RtcpSummary {
                sr: 1,
                rr: 1,
                sdes: 1,
                bye: 1,
                other: 0,
                report_blocks: 3
            }
        );
    }

    #[test]
    fn translate_shifts_sr_timestamp_and_block_sequence() {
        let mut buf = [0u8; 256];
        let info = SenderInfo {
            ntp: 1,
            rtp_ts: 0xffff_fff0,
            packets: 5,
            octets: 800,
        };
        let n = write_sr(&mut buf, Ssrc(1), &info, &[block(7), block(8)]).unwrap();
        translate(
            &mut buf[..n],
            |x| x + 100,
            0x20,
            |ssrc, seq| if ssrc == 7 { seq - 5 } else { seq },
        );
        match RtcpIter::new(&buf[..n]).next() {
            Some(Ok(RtcpPacket::SenderReport { ssrc, info, blocks })) => {
                assert_eq!(ssrc, Ssrc(101));
                assert_eq!(info.rtp_ts, 0x10, "timestamp shifted, wrapping");
                let b: Vec<ReportBlock> = blocks.collect();
                assert_eq!((b[0].ssrc, b[0].highest_seq), (Ssrc(107), 70_002));
                assert_eq!((b[1].ssrc, b[1].highest_seq), (Ssrc(108), 70_008));
                assert_eq!(b[0].jitter, 12, "the rest of the block is untouched");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sdes_bye_and_ssrc_mapping() {
        let mut buf = [0u8; 256];
        let n = write_rr(&mut buf, Ssrc(1), &[block(7)]).unwrap();
        let m = write_sdes_cname(&mut buf[n..], Ssrc(1), b"crossbar@x").unwrap();
        assert_eq!(m % 4, 0);
        let k = write_bye(&mut buf[n + m..], Ssrc(1)).unwrap();
        let total = n + m + k;
        let s = summarize(&buf[..total]).unwrap();
        assert_eq!((s.rr, s.sdes, s.bye, s.report_blocks), (1, 1, 1, 1));
        map_ssrcs(&mut buf[..total], |x| x + 100);
        let mut it = RtcpIter::new(&buf[..total]);
        match it.next() {
            Some(Ok(RtcpPacket::ReceiverReport { ssrc, mut blocks })) => {
                assert_eq!(ssrc, Ssrc(101));
                assert_eq!(blocks.next().unwrap().ssrc, Ssrc(107));
            }
            other => panic!("{other:?}"),
        }
        match it.next() {
            Some(Ok(RtcpPacket::SourceDescription { body, .. })) => {
                assert_eq!(&body[..4], &101u32.to_be_bytes());
                assert_eq!(&body[6..16], b"crossbar@x");
            }
            other => panic!("{other:?}"),
        }
        match it.next() {
            Some(Ok(RtcpPacket::Bye { sources, .. })) => {
                assert_eq!(sources, &101u32.to_be_bytes())
            }
            other => panic!("{other:?}"),
        }
        // Garbage is left alone and never panics.
        let mut rng = XorShift::new(5);
        let mut g = [0u8; 64];
        for _ in 0..50_000 {
            rng.fill(&mut g);
            g[0] = 0x80 | (g[0] & 0x3f);
            map_ssrcs(&mut g, |x| x ^ 1);
        }
    }

    #[test]
    fn rtt_from_lsr_dlsr() {
        let sr_sent = 0x0000_1234_5678_0000u64;
        let lsr = ntp_middle(sr_sent);
        // Answered 0.5 s after the SR, 0.25 s round trip on top.
        let dlsr = dlsr_units(std::time::Duration::from_millis(500));
        let arrival = sr_sent + (3u64 << 30); // + 0.75 s
        let rtt = rtt(arrival, lsr, dlsr).unwrap();
        assert!((rtt as i64 - 16_384).abs() <= 1, "{rtt}");
        assert_eq!(super::rtt(arrival, 0, dlsr), None);
        let ntp = ntp_from_unix(std::time::Duration::from_millis(1_500));
        assert_eq!(ntp >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(ntp & 0xFFFF_FFFF, 1 << 31);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(summarize(&[]), Err(RtcpError::TooShort));
        assert_eq!(summarize(&[0x80, PT_RR, 0]), Err(RtcpError::TooShort));
        assert_eq!(
            summarize(&[0x40, PT_RR, 0, 0]),
            Err(RtcpError::BadVersion(1))
        );
        assert_eq!(
            summarize(&[0x80, PT_RR, 0, 5, 0, 0, 0, 0]),
            Err(RtcpError::LengthOverrun)
        );
        assert_eq!(
            summarize(&[0x81, PT_RR, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::CountOverrun)
        );
        assert_eq!(
            summarize(&[0x80, PT_SR, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::TooShort)
        );
        assert_eq!(
            write_rr(&mut [0u8; 8], Ssrc(1), &[block(1)]),
            Err(RtcpError::BufferTooSmall)
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = XorShift::new(77);
        let mut buf = [0u8; 128];
        for _ in 0..200_000 {
            let len = rng.below(buf.len() as u32 + 1) as usize;
            rng.fill(&mut buf[..len]);
            if len >= 4 && rng.below(2) == 0 {
                buf[0] = 0x80 | (buf[0] & 0x3f);
                buf[1] = 200 + rng.below(5) as u8;
                buf[2] = 0;
                buf[3] = (rng.below(len as u32 / 4) as u8).saturating_sub(1);
            }
            let _ = summarize(&buf[..len]);
            for p in RtcpIter::new(&buf[..len]).flatten() {
                if let RtcpPacket::SenderReport { blocks, .. }
                | RtcpPacket::ReceiverReport { blocks, .. } = p
                {
                    let _ = blocks.count();
                }
            }
        }
    }
}
