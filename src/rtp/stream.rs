//! Per-stream RTP state: [`OutStream`], the header rewriter of the stream we
//! send on a leg, and [`ReceiveState`], the receive statistics of the stream
//! a leg gets (RFC 3550 A.1, A.3, A.8), which feed RTCP report blocks.
//!
//! # OutStream invariants
//! - Every packet leaves with our own SSRC.
//! - While the input source (its SSRC, or "locally produced") stays the same,
//!   output seq/ts are input seq/ts plus fixed offsets: gaps and reordering of
//!   the input are passed through unchanged, nothing is buffered.
//! - When the input source changes (a new SSRC, a bridge technology change
//!   signalled by [`OutStream::switch_source`], or a switch between relayed and
//!   locally produced media), the output sequence continues at the highest
//!   sequence sent + 1 and the timestamp at the last timestamp sent plus the
//!   media time elapsed since it was sent; the marker bit is set on that
//!   first packet. A receiver therefore sees one continuous stream.
//! - The same happens when a relayed stream keeps its SSRC but restarts its
//!   numbering (a sequence number more than `MAX_MISORDER` behind or
//!   `MAX_DROPOUT` ahead of the newest); a timestamp that jumps more than a
//!   second away from the clock (while the sequence continues) re-anchors
//!   the timestamp alone.

use std::time::{Duration, Instant};

use super::packet::{Header, RtpPacketMut};
use super::rtcp::ReportBlock;
use super::{ExtSeq, Pt, RtpTimestamp, SeqNo, Ssrc};

/// Where the packets of an [`OutStream`] currently come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Relayed from an incoming stream with this SSRC.
    Relay(Ssrc),
    /// Produced locally (mixer, player, transcoder), with the next timestamp.
    Local { next_ts: RtpTimestamp },
    /// A telephone-event (RFC 4733) that started at this timestamp.
    Event { ts: RtpTimestamp },
}

/// A relayed sequence number this far behind the newest is a restart, not
/// a reordered packet (RFC 3550 A.1's MAX_MISORDER).
const MAX_MISORDER: i16 = 100;
/// A relayed sequence number this far ahead of the newest is a restart,
/// not loss (RFC 3550 A.1's MAX_DROPOUT).
const MAX_DROPOUT: i16 = 3000;

/// The last packet sent: highest sequence number and its timestamp and time.
#[derive(Clone, Copy, Debug)]
struct Sent {
    seq: SeqNo,
    ts: RtpTimestamp,
    at: Instant,
}

/// The outgoing RTP stream of one leg.
#[derive(Clone, Debug)]
pub struct OutStream {
    ssrc: Ssrc,
    clock_rate: u32,
    first_seq: SeqNo,
    first_ts: RtpTimestamp,
    source: Option<Source>,
    seq_offset: u16,
    ts_offset: u32,
    last: Option<Sent>,
    /// The newest packet of the relayed input: seq, ts and arrival.
    last_in: Option<Sent>,
    packets: u64,
    octets: u64,
}

impl OutStream {
    /// A stream with our `ssrc`, starting at `first_seq`/`first_ts`, with the
    /// media clock `clock_rate` (Hz).
    pub fn new(ssrc: Ssrc, first_seq: SeqNo, first_ts: RtpTimestamp, clock_rate: u32) -> OutStream {
        OutStream {
            ssrc,
            clock_rate: clock_rate.max(1),
            first_seq,
            first_ts,
            source: None,
            seq_offset: 0,
            ts_offset: 0,
            last: None,
            last_in: None,
            packets: 0,
            octets: 0,
        }
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> Ssrc {
        self.ssrc
    }

    /// Packets and payload octets sent (for an RTCP sender report).
    pub fn counts(&self) -> (u64, u64) {
        (self.packets, self.octets)
    }

    /// The last (highest) sequence number and timestamp sent.
    pub fn last_sent(&self) -> Option<(SeqNo, RtpTimestamp)> {
        self.last.map(|s| (s.seq, s.ts))
    }

    /// The RTP timestamp that corresponds to `now` on the stream's clock (the
    /// last timestamp sent plus the time since): the RTP time of a sender
    /// report. `None` before anything was sent.
    pub fn timestamp_at(&self, now: Instant) -> Option<RtpTimestamp> {
        self.last.map(|l| {
            l.ts.wrapping_add(self.ticks(now.saturating_duration_since(l.at)))
        })
    }

    /// Forgets the current input source: the next packet re-anchors seq/ts.
    /// Call when the bridge technology changes.
    pub fn switch_source(&mut self) {
        self.source = None;
        self.last_in = None;
    }

    /// Where the next packet of a new source starts: seq and timestamp.
    fn anchor(&self, now: Instant) -> (SeqNo, RtpTimestamp) {
        match self.last {
            None => (self.first_seq, self.first_ts),
            Some(last) => {
                let elapsed = now.saturating_duration_since(last.at);
                (last.seq.next(), last.ts.wrapping_add(self.ticks(elapsed)))
            }
        }
    }

    /// `elapsed` in media clock ticks (wrapping, as RTP timestamps do).
    fn ticks(&self, elapsed: Duration) -> u32 {
        (elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32
    }

    fn sent(&mut self, now: Instant, seq: SeqNo, ts: RtpTimestamp, payload: usize) {
        self.packets += 1;
        self.octets += payload as u64;
        match self.last {
            Some(last) if !seq.is_newer_than(last.seq) => {}
            _ => self.last = Some(Sent { seq, ts, at: now }),
        }
    }

    /// Rewrites a relayed packet in place: our SSRC and the output seq/ts.
    /// Returns the seq/ts written.
    pub fn rewrite(
        &mut self,
        now: Instant,
        packet: &mut RtpPacketMut<'_>,
    ) -> (SeqNo, RtpTimestamp) {
        let view = packet.view();
        let (in_ssrc, in_seq, in_ts, len) = (
            view.ssrc(),
            view.seq(),
            view.timestamp(),
            view.payload().len(),
        );
        let (seq_restart, ts_jump) = match self.last_in {
            Some(last) if self.source == Some(Source::Relay(in_ssrc)) => {
                let d = in_seq.delta(last.seq);
                let expected = i64::from(self.ticks(now.saturating_duration_since(last.at)));
                let moved = i64::from(in_ts.delta(last.ts));
                (
                    !(-MAX_MISORDER..=MAX_DROPOUT).contains(&d),
                    d > 0 && (moved - expected).abs() > i64::from(self.clock_rate),
                )
            }
            _ => (false, false),
        };
        if self.source != Some(Source::Relay(in_ssrc)) || seq_restart {
            // A new stream, or the same SSRC restarting its numbering.
            let (seq, ts) = self.anchor(now);
            self.seq_offset = seq.0.wrapping_sub(in_seq.0);
            self.ts_offset = ts.0.wrapping_sub(in_ts.0);
            self.source = Some(Source::Relay(in_ssrc));
            self.last_in = None;
            packet.set_marker(true);
        } else if ts_jump {
            // Timestamps jumped against the clock: continue from where the
            // output's clock is.
            let (_, ts) = self.anchor(now);
            self.ts_offset = ts.0.wrapping_sub(in_ts.0);
            packet.set_marker(true);
        }
        if self
            .last_in
            .is_none_or(|last| in_seq.is_newer_than(last.seq))
        {
            self.last_in = Some(Sent {
                seq: in_seq,
                ts: in_ts,
                at: now,
            });
        }
        let seq = SeqNo(in_seq.0.wrapping_add(self.seq_offset));
        let ts = RtpTimestamp(in_ts.0.wrapping_add(self.ts_offset));
        packet.set_ssrc(self.ssrc);
        packet.set_seq(seq);
        packet.set_timestamp(ts);
        self.sent(now, seq, ts, len);
        (seq, ts)
    }

    /// While the stream relays the input stream `ssrc`: what the relay adds
    /// to its sequence numbers and timestamps (out = in + offset, wrapping),
    /// to translate RTCP about the relayed stream.
    pub fn relay_offsets(&self, ssrc: Ssrc) -> Option<(u16, u32)> {
        (self.source == Some(Source::Relay(ssrc))).then_some((self.seq_offset, self.ts_offset))
    }

    /// Leaves a gap of `ticks` before the next locally produced frame (input
    /// frames were lost); no effect while relaying or before the first frame.
    pub fn skip(&mut self, ticks: u32) {
        if let Some(Source::Local { next_ts }) = self.source {
            self.source = Some(Source::Local {
                next_ts: next_ts.wrapping_add(ticks),
            });
        }
    }

    /// The header of a telephone-event packet (RFC 4733): every packet of
    /// one event has the event's start timestamp; `start` begins a new event
    /// where the stream's clock is now (with the marker bit). Whatever is
    /// sent after an event re-anchors, as after a change of source.
    pub fn event_header(&mut self, now: Instant, pt: Pt, start: bool) -> Header {
        let (seq, ts) = match (self.source, self.last) {
            (Some(Source::Event { ts }), Some(last)) if !start => (last.seq.next(), ts),
            _ => self.anchor(now),
        };
        self.source = Some(Source::Event { ts });
        self.last_in = None;
        self.sent(now, seq, ts, 4);
        Header {
            marker: start,
            pt,
            seq,
            timestamp: ts,
            ssrc: self.ssrc,
        }
    }

    /// The header of the next locally produced frame of `samples` clock ticks
    /// and `payload_len` bytes.
    pub fn next_local(&mut self, now: Instant, pt: Pt, samples: u32, payload_len: usize) -> Header {
        let (seq, ts, marker) = match (self.source, self.last) {
            (Some(Source::Local { next_ts }), Some(last)) => (last.seq.next(), next_ts, false),
            _ => {
                let (seq, ts) = self.anchor(now);
                (seq, ts, true)
            }
        };
        self.source = Some(Source::Local {
            next_ts: ts.wrapping_add(samples),
        });
        self.sent(now, seq, ts, payload_len);
        Header {
            marker,
            pt,
            seq,
            timestamp: ts,
            ssrc: self.ssrc,
        }
    }
}

/// Receive statistics of one incoming stream (RFC 3550 A.1, A.3, A.8).
#[derive(Clone, Debug, Default)]
pub struct ReceiveState {
    ssrc: Option<Ssrc>,
    base: ExtSeq,
    highest: ExtSeq,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter in clock ticks, scaled by 16 (A.8).
    jitter16: u32,
    transit: Option<i64>,
}

impl ReceiveState {
    /// A state that has seen nothing.
    pub fn new() -> ReceiveState {
        ReceiveState::default()
    }

    /// Accounts for one packet of `ssrc` with `seq`/`ts` that arrived at
    /// `arrival` clock ticks (any fixed origin). Returns its extended
    /// sequence number. A new SSRC restarts the statistics.
    pub fn record(&mut self, ssrc: Ssrc, seq: SeqNo, ts: RtpTimestamp, arrival: u32) -> ExtSeq {
        if self.ssrc != Some(ssrc) {
            *self = ReceiveState {
                ssrc: Some(ssrc),
                base: ExtSeq(u64::from(seq.0)),
                highest: ExtSeq(u64::from(seq.0)),
                ..ReceiveState::default()
            };
        }
        let ext = seq.extend(self.highest);
        self.highest = self.highest.max(ext);
        self.received += 1;
        let transit = i64::from(arrival.wrapping_sub(ts.0) as i32);
        if let Some(prev) = self.transit.replace(transit) {
            let d = (transit - prev)
                .unsigned_abs()
                .min(u64::from(u32::MAX >> 4)) as u32;
            // J += (|D| - J) / 16, kept scaled by 16.
            self.jitter16 = self
                .jitter16
                .wrapping_add(d)
                .wrapping_sub((self.jitter16 + 8) >> 4);
        }
        ext
    }

    /// The SSRC of the stream, once a packet was seen.
    pub fn ssrc(&self) -> Option<Ssrc> {
        self.ssrc
    }

    /// The highest extended sequence number seen.
    pub fn highest(&self) -> ExtSeq {
        self.highest
    }

    /// Packets received.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Cumulative packets lost (negative with duplicates).
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    fn expected(&self) -> u64 {
        if self.ssrc.is_none() {
            0
        } else {
            self.highest.0 - self.base.0 + 1
        }
    }

    /// Interarrival jitter in clock ticks.
    pub fn jitter(&self) -> u32 {
        self.jitter16 >> 4
    }

    /// A report block for the stream, advancing the "since last report"
    /// interval (fraction lost). `None` before any packet.
    pub fn report_block(&mut self, last_sr: u32, delay_since_last_sr: u32) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_seq: self.highest.0 as u32,
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::packet::RtpPacket;

    fn packet(ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        Header {
            marker: false,
            pt: Pt(0),
            seq: SeqNo(seq),
            timestamp: RtpTimestamp(ts),
            ssrc: Ssrc(ssrc),
        }
        .write(&mut p)
        .unwrap();
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    fn relay(out: &mut OutStream, now: Instant, p: &mut [u8]) -> (Ssrc, SeqNo, RtpTimestamp, bool) {
        out.rewrite(now, &mut RtpPacketMut::parse(p).unwrap());
        let v = RtpPacket::parse(p).unwrap();
        (v.ssrc(), v.seq(), v.timestamp(), v.marker())
    }

    #[test]
    fn relayed_restart_and_timestamp_jump_stay_continuous() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut out = OutStream::new(Ssrc(42), SeqNo(100), RtpTimestamp(1000), 8000);
        relay(&mut out, ms(0), &mut packet(7, 30_000, 5000));
        let r = relay(&mut out, ms(20), &mut packet(7, 30_001, 5160));
        assert_eq!((r.1, r.2, r.3), (SeqNo(101), RtpTimestamp(1160), false));
        // Same SSRC, sequence restarted far behind: continues, marked.
        let r = relay(&mut out, ms(40), &mut packet(7, 5, 400));
        assert_eq!((r.1, r.2, r.3), (SeqNo(102), RtpTimestamp(1320), true));
        let r = relay(&mut out, ms(60), &mut packet(7, 6, 560));
        assert_eq!((r.1, r.2, r.3), (SeqNo(103), RtpTimestamp(1480), false));
        // A jump far ahead is a restart too.
        let r = relay(&mut out, ms(80), &mut packet(7, 20_000, 560 + 160));
        assert_eq!((r.1, r.2, r.3), (SeqNo(104), RtpTimestamp(1640), true));
        // Sequence continues but the timestamp leaps 10 s: only ts re-anchors.
        let r = relay(&mut out, ms(100), &mut packet(7, 20_001, 720 + 80_160));
        assert_eq!((r.1, r.2, r.3), (SeqNo(105), RtpTimestamp(1800), true));
        let r = relay(&mut out, ms(120), &mut packet(7, 20_002, 720 + 80_320));
        assert_eq!((r.1, r.2, r.3), (SeqNo(106), RtpTimestamp(1960), false));
        // Ordinary loss and a late packet are not restarts.
        let r = relay(&mut out, ms(180), &mut packet(7, 20_005, 720 + 80_800));
        assert_eq!((r.1, r.2, r.3), (SeqNo(109), RtpTimestamp(2440), false));
        let r = relay(&mut out, ms(181), &mut packet(7, 20_004, 720 + 80_640));
        assert_eq!((r.1, r.2, r.3), (SeqNo(108), RtpTimestamp(2280), false));
    }

    #[test]
    fn continuous_across_source_change() {
        let t0 = Instant::now();
        let mut out = OutStream::new(Ssrc(42), SeqNo(65534), RtpTimestamp(1000), 8000);
        let (ssrc, seq, ts, marker) = relay(&mut out, t0, &mut packet(7, 100, 5000));
        assert_eq!(
            (ssrc, seq, ts, marker),
            (Ssrc(42), SeqNo(65534), RtpTimestamp(1000), true)
        );
        let r = relay(
            &mut out,
            t0 + Duration::from_millis(20),
            &mut packet(7, 101, 5160),
        );
        assert_eq!((r.1, r.2, r.3), (SeqNo(65535), RtpTimestamp(1160), false));
        // A gap in the input stays a gap.
        let r = relay(
            &mut out,
            t0 + Duration::from_millis(60),
            &mut packet(7, 103, 5480),
        );
        assert_eq!((r.1, r.2), (SeqNo(1), RtpTimestamp(1480)));
        // A reordered late packet keeps its place.
        let r = relay(
            &mut out,
            t0 + Duration::from_millis(61),
            &mut packet(7, 102, 5320),
        );
        assert_eq!((r.1, r.2), (SeqNo(0), RtpTimestamp(1320)));
        // New SSRC 40 ms after the last newest packet: seq +1, ts + 320.
        let r = relay(
            &mut out,
            t0 + Duration::from_millis(100),
            &mut packet(9, 7, 77),
        );
        assert_eq!(
            (r.0, r.1, r.2, r.3),
            (Ssrc(42), SeqNo(2), RtpTimestamp(1800), true)
        );
        let r = relay(
            &mut out,
            t0 + Duration::from_millis(120),
            &mut packet(9, 8, 237),
        );
        assert_eq!((r.1, r.2), (SeqNo(3), RtpTimestamp(1960)));
        // Technology change: re-anchored even with the same SSRC.
        out.switch_source();
        let r = relay(
            &mut out,
            t0 + Duration::from_millis(140),
            &mut packet(9, 500, 9),
        );
        assert_eq!((r.1, r.2, r.3), (SeqNo(4), RtpTimestamp(2120), true));
        // Locally produced frames continue the same stream.
        let h = out.next_local(t0 + Duration::from_millis(160), Pt(0), 160, 160);
        assert_eq!(
            (h.seq, h.timestamp, h.marker),
            (SeqNo(5), RtpTimestamp(2280), true)
        );
        let h = out.next_local(t0 + Duration::from_millis(180), Pt(0), 160, 160);
        assert_eq!(
            (h.seq, h.timestamp, h.marker),
            (SeqNo(6), RtpTimestamp(2440), false)
        );
        assert_eq!(out.counts().0, 9);
    }

    #[test]
    fn receive_state_counts_loss_and_wrap() {
        let mut rx = ReceiveState::new();
        for (i, seq) in [65533u16, 65534, 0, 1, 2].into_iter().enumerate() {
            rx.record(
                Ssrc(5),
                SeqNo(seq),
                RtpTimestamp(i as u32 * 160),
                i as u32 * 160,
            );
        }
        assert_eq!(rx.highest(), ExtSeq(65536 + 2));
        assert_eq!(rx.lost(), 1);
        assert_eq!(rx.jitter(), 0);
        let block = rx.report_block(0, 0).unwrap();
        assert_eq!(block.cumulative_lost, 1);
        assert_eq!(block.fraction_lost, 42);
        assert_eq!(block.highest_seq, 65538);
        // The next interval has no loss.
        rx.record(Ssrc(5), SeqNo(3), RtpTimestamp(800), 900);
        let block = rx.report_block(0, 0).unwrap();
        assert_eq!(block.fraction_lost, 0);
        assert!(rx.jitter() > 0);
    }
}
