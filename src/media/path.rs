//! The per-packet media path: what a leg does with the media it receives
//! ([`Mode`]), and delivery to a leg (its socket's remote, or through a
//! Local pair).
//!
//! # Ingest
//! A media packet a leg *receives* — from its socket, or, for a Local half,
//! what its peer half's bridge sent to the peer — goes to [`Media::ingest`].
//! The leg's [`Mode`], chosen by its bridge on every `set_bridge` (see
//! `bridge.rs`), decides what happens:
//! - [`Mode::Drop`]: nothing to forward to (0–1 members, a holding
//!   participant, a partner that is an announcer); counted in `rx_dropped`.
//! - [`Mode::Relay`]: the header is rewritten in place with the target's
//!   [`OutStream`](crate::rtp::OutStream) and the datagram is sent from the
//!   buffer it arrived in (`native_rtp`; also a same-format `simple_bridge`
//!   with `dtmf_events` or `proxy_media`, where the payload —
//!   telephone-events included — passes through unchanged).
//! - [`Mode::Transcode`]: decode → resample → encode into a pool buffer
//!   (`simple_bridge` between two formats), sent with a header from the
//!   target's stream as a locally produced frame (seq + 1, timestamp + the
//!   frame's duration at the target's clock; a gap in the input sequence
//!   leaves the same gap in the output timestamps, except that up to
//!   `MAX_CONCEALED` frames lost just before an arriving one are first
//!   replaced by the decoder's concealment — libopus PLC, or waveform
//!   repetition — sent in their place, late but with their timestamps, so
//!   the far end's jitter buffer can play them). Packets older than the
//!   last one transcoded (by up to `MAX_GAP`), CN and telephone-events are
//!   dropped; a new SSRC or a sequence restart resynchronises at once.
//! - [`Mode::Mix`]: the payload is copied into the leg's jitter buffer; the
//!   bridge's mix tick (`mixing.rs`) takes one frame per tick. A new SSRC
//!   restarts the buffer (so does a sequence restart, in the buffer itself).
//!
//! A Local half as the target passes the packet on to its peer half, which
//! ingests it in turn (at most [`MAX_HOPS`] halves in a chain).
//!
//! # Buffer ownership
//! [`Media::ingest`] owns the packet it is handed: it sends it (see
//! `buffer.rs`) or releases it. Nothing is copied on the relay path.
//!
//! # Mute and hold
//! `mute in`, a member joined muted, and `hold` drop what the leg sends
//! (`rx_dropped`); `mute out` sends nothing to it (`tx_dropped`). The same
//! checks hold on every path (relay, transcode, mix).

use std::time::Instant;

use super::buffer::{self, Lent, Outbox, Packet, TxPool};
use super::leg::{Leg, LegKind, LegRef, LegTable, Port};
use super::Direction;
use crate::codec::Transcoder;
use crate::rtp::{Pt, RtpPacket, RtpPacketMut, RtpTimestamp, SeqNo, Ssrc};

/// Longest chain of Local pair halves a packet may cross.
pub(super) const MAX_HOPS: usize = 4;
/// Payload type of CN, accepted on every leg.
pub(super) const PT_CN: u8 = 13;
/// Payload type of telephone-event crossbar uses.
pub(super) const PT_TELEPHONE_EVENT: u8 = 101;
/// Bytes of the RTP header the core writes (no CSRC, no extension).
pub(super) const HEADER_LEN: usize = 12;
/// A jump in input sequence numbers longer than this is a new stream, not
/// loss: the output timestamp is not advanced for it.
const MAX_GAP: i16 = 50;
/// Longest input silence (s) carried into the output timestamps; a longer
/// jump is a restarted clock, not time.
const MAX_IDLE_S: i32 = 60;

/// `samples` of `format`'s audio in its RTP clock's ticks.
fn in_clock_ticks(format: crate::media::Format, samples: usize) -> u32 {
    (samples as u64 * u64::from(format.clock_rate()) / u64::from(format.sample_rate().max(1)))
        as u32
}

/// Lost frames in a row the transcode path conceals (60 ms of 20 ms frames;
/// the concealment is silent by then); a longer gap is left as a gap.
pub(super) const MAX_CONCEALED: usize = 3;

/// One direction of a two-party transcode: what the leg receives becomes
/// the format of the leg `to`.
pub(super) struct TranscodePath {
    pub to: LegRef,
    pub tc: Transcoder,
    /// The stream last transcoded: its SSRC and last sequence number.
    pub last: Option<(Ssrc, SeqNo)>,
    /// The input timestamp that frame (or the last concealed one) ended
    /// at, to carry silences (DTX) and losses into the output timestamps.
    pub next_ts: Option<RtpTimestamp>,
}

/// What a leg does with the media it receives.
pub(super) enum Mode {
    Drop,
    Relay { to: LegRef },
    Transcode(Box<TranscodePath>),
    Mix,
}

impl Mode {
    /// The leg this mode sends to, if any.
    pub(super) fn target(&self) -> Option<LegRef> {
        match self {
            Mode::Relay { to } => Some(*to),
            Mode::Transcode(path) => Some(path.to),
            Mode::Drop | Mode::Mix => None,
        }
    }
}

/// What a delivery step did with the packet.
enum Next {
    /// Handed to a send.
    Sent,
    /// Passed to a Local half: its peer `leg` receives `packet`.
    Hop { leg: LegRef, packet: Packet },
    /// Not sent: release `packet`.
    Stop(Packet),
}

/// What ingest does for the current leg (its mode, without the borrow).
enum Step {
    Drop,
    Mix,
    Relay(LegRef),
    Transcode,
}

/// The leg table, the transmit pool and the sends produced: what the path,
/// the mix and RTCP work on.
pub(super) struct Media {
    pub legs: LegTable,
    pub pool: TxPool,
    pub outbox: Outbox,
    /// Packet-loss concealment on (`dataplane.plc`).
    pub conceal: bool,
}

impl Media {
    /// Releases a packet that is not sent.
    pub(super) fn release(&mut self, packet: Packet) {
        buffer::release(&mut self.pool, packet);
    }

    /// The leg `from` received `packet` (validated RTP of its remote, or what
    /// its Local peer was sent): pass it on as its mode says.
    pub(super) fn ingest(
        &mut self,
        lent: &mut Lent<'_>,
        now: Instant,
        from: LegRef,
        packet: Packet,
    ) {
        let mut from = from;
        let mut packet = packet;
        for _ in 0..MAX_HOPS {
            let Some(sender) = self.legs.get(from) else {
                break;
            };
            if sender.mute_in || sender.member_mute || sender.hold {
                sender.stats.rx_dropped += 1;
                break;
            }
            let step = match &sender.mode {
                Mode::Drop => {
                    sender.stats.rx_dropped += 1;
                    Step::Drop
                }
                Mode::Mix => Step::Mix,
                &Mode::Relay { to } => Step::Relay(to),
                Mode::Transcode(_) => Step::Transcode,
            };
            let next = match step {
                Step::Drop => Next::Stop(packet),
                Step::Mix => {
                    self.push_jitter(lent, from, &packet);
                    Next::Stop(packet)
                }
                Step::Transcode => self.transcode(lent, now, from, packet),
                Step::Relay(to) => self.deliver(lent, now, to, packet, true),
            };
            match next {
                Next::Sent => return,
                Next::Hop { leg, packet: p } => {
                    from = leg;
                    packet = p;
                }
                Next::Stop(p) => {
                    self.release(p);
                    return;
                }
            }
        }
        self.release(packet);
    }

    /// Sends a frame the core produced (header already written with the
    /// target's stream) to the leg `to`.
    pub(super) fn send_produced(&mut self, now: Instant, to: LegRef, packet: Packet) {
        let mut lent = Lent::none();
        match self.deliver(&mut lent, now, to, packet, false) {
            Next::Sent => {}
            Next::Hop { leg, packet } => self.ingest(&mut lent, now, leg, packet),
            Next::Stop(packet) => self.release(packet),
        }
    }

    /// Copies the payload into the jitter buffer of the leg `r`.
    fn push_jitter(&mut self, lent: &mut Lent<'_>, r: LegRef, packet: &Packet) {
        let data = buffer::bytes(lent, &mut self.pool, packet);
        let Some(leg) = self.legs.get(r) else {
            return;
        };
        let Ok(p) = RtpPacket::parse(data) else {
            return;
        };
        if p.pt().0 != leg.format.payload_type() {
            return; // CN and telephone-events are not mixed.
        }
        if let Some(jb) = leg.jitter.as_deref_mut() {
            if leg.mix_ssrc.is_some_and(|s| s != p.ssrc()) {
                jb.restart(); // A new stream: nothing of the old one plays.
            }
            leg.mix_ssrc = Some(p.ssrc());
            jb.push(p.seq(), p.timestamp(), p.payload());
        }
    }

    /// Sends `packet` to the leg `to`: rewritten in place (`relayed`) or as
    /// it is (a produced frame).
    fn deliver(
        &mut self,
        lent: &mut Lent<'_>,
        now: Instant,
        to: LegRef,
        packet: Packet,
        relayed: bool,
    ) -> Next {
        let Some(target) = self.legs.get(to) else {
            return Next::Stop(packet);
        };
        if target.mute_out {
            target.stats.tx_dropped += 1;
            return Next::Stop(packet);
        }
        if target.dtmf_tx.as_ref().is_some_and(|t| t.in_digit()) || target.playing() {
            // No other audio while a digit is sent or a clip plays to the
            // leg (as Asterisk).
            return Next::Stop(packet);
        }
        if !target.snoops.is_empty() {
            self.snoop_pass(lent, to, &packet, Direction::Out);
        }
        let Some(target) = self.legs.get(to) else {
            return Next::Stop(packet);
        };
        match &mut target.kind {
            LegKind::Snoop(snoop) => {
                // What a snoop leg is sent is what it whispers.
                target.stats.tx_packets += 1;
                let data = buffer::bytes(lent, &mut self.pool, &packet);
                if let Ok(p) = RtpPacket::parse(data) {
                    if p.pt().0 == snoop.format.payload_type() {
                        snoop.sent(p.payload());
                    }
                }
                Next::Stop(packet)
            }
            LegKind::Rtp { remote, .. } => {
                let Some(dest) = *remote else {
                    target.stats.tx_dropped += 1;
                    return Next::Stop(packet);
                };
                if relayed {
                    let data = buffer::bytes(lent, &mut self.pool, &packet);
                    let Ok(mut p) = RtpPacketMut::parse(data) else {
                        return Next::Stop(packet);
                    };
                    target.out.rewrite(now, &mut p);
                }
                target.stats.tx_packets += 1;
                target.stats.tx_octets += packet.len().saturating_sub(HEADER_LEN) as u64;
                self.outbox
                    .send(lent, &mut self.pool, to, Port::Rtp, dest, packet);
                Next::Sent
            }
            LegKind::Local { peer_slot, .. } => {
                let Some(peer) = *peer_slot else {
                    target.stats.tx_dropped += 1;
                    return Next::Stop(packet);
                };
                target.stats.tx_packets += 1;
                target.stats.tx_octets += packet.len().saturating_sub(HEADER_LEN) as u64;
                if let Some(p) = self.legs.get(peer) {
                    p.stats.rx_packets += 1;
                    p.stats.rx_octets += packet.len().saturating_sub(HEADER_LEN) as u64;
                }
                Next::Hop { leg: peer, packet }
            }
        }
    }

    /// `packet` passes the leg `r` (which has snoops) in `direction` (see
    /// `snoop`): whispered into, then spied on.
    pub(super) fn snoop_pass(
        &mut self,
        lent: &mut Lent<'_>,
        r: LegRef,
        packet: &Packet,
        direction: Direction,
    ) {
        let Some(leg) = self.legs.get(r) else {
            return;
        };
        let (format_pt, snoops) = (leg.format.payload_type(), std::mem::take(&mut leg.snoops));
        for &id in &snoops {
            let data = buffer::bytes(lent, &mut self.pool, packet);
            let Ok(mut p) = RtpPacketMut::parse(data) else {
                break;
            };
            if p.view().pt().0 != format_pt {
                break; // CN, telephone-events: no audio.
            }
            let Some(Leg {
                kind: LegKind::Snoop(snoop),
                ..
            }) = self.legs.by_id(id)
            else {
                continue;
            };
            snoop.whisper_into(direction, p.payload_mut());
            snoop.feed(direction, p.view().payload());
        }
        if let Some(leg) = self.legs.get(r) {
            leg.snoops = snoops;
        }
    }

    /// Frames lost just before `packet` on the transcode path of `from` that
    /// are to be concealed (at most [`MAX_CONCEALED`]); their place is then
    /// taken: the path's last sequence number moves up to just before it.
    fn lost_before(&mut self, lent: &mut Lent<'_>, from: LegRef, packet: &Packet) -> usize {
        let data = buffer::bytes(lent, &mut self.pool, packet);
        let Ok(p) = RtpPacket::parse(data) else {
            return 0;
        };
        let (ssrc, seq, pt) = (p.ssrc(), p.seq(), p.pt().0);
        let Some(Leg {
            mode: Mode::Transcode(path),
            format,
            ..
        }) = self.legs.get(from)
        else {
            return 0;
        };
        if pt != format.payload_type() {
            return 0; // CN and telephone-events are no audio lost.
        }
        let frame_in = in_clock_ticks(*format, path.tc.last_samples());
        match path.last {
            Some((s, last)) if s == ssrc && path.tc.last_samples() > 0 => {
                let gap = seq.delta(last);
                if gap >= 2 && gap as usize <= MAX_CONCEALED + 1 {
                    let lost = gap as usize - 1;
                    path.last = Some((ssrc, SeqNo(seq.0.wrapping_sub(1))));
                    path.next_ts = path
                        .next_ts
                        .map(|t| t.wrapping_add(frame_in.wrapping_mul(lost as u32)));
                    lost
                } else {
                    0
                }
            }
            _ => 0,
        }
    }

    /// Sends one concealed frame (the transcoder's stand-in for a lost
    /// input frame, as long as the last one) from `from`'s path to `to`.
    fn send_concealed(&mut self, now: Instant, from: LegRef, to: LegRef) {
        let sent = self.send_transcoded(now, from, to, |tc, out| {
            let samples = tc.last_samples();
            tc.conceal(samples, out).ok()
        });
        if sent {
            if let Some(sender) = self.legs.get(from) {
                sender.stats.rx_concealed += 1;
            }
        }
    }

    /// Sends one frame `produce` writes with `from`'s transcoder (a
    /// concealed or a repacketised one) to `to`, as a produced frame; false
    /// when it produced nothing.
    fn send_transcoded(
        &mut self,
        now: Instant,
        from: LegRef,
        to: LegRef,
        produce: impl FnOnce(&mut Transcoder, &mut [u8]) -> Option<usize>,
    ) -> bool {
        let Some(buf) = self.pool.take() else {
            return false;
        };
        let mut out = self.pool.lift(&buf);
        let produced = match self.legs.get(from).map(|l| &mut l.mode) {
            Some(Mode::Transcode(path)) => produce(&mut path.tc, &mut out[HEADER_LEN..])
                .filter(|&n| n > 0)
                .map(|n| (n, path.tc.last_out_ticks())),
            _ => None,
        };
        let written = match (produced, self.legs.get(to)) {
            (Some((n, ticks)), Some(target)) => {
                let pt = Pt(target.format.payload_type());
                let header = target.out.next_local(now, pt, ticks, n);
                header.write(&mut out[..]).map(|h| h + n)
            }
            _ => None,
        };
        self.pool.restore(&buf, out);
        match written {
            Some(len) => {
                self.send_produced(now, to, Packet::Tx { buf, len });
                true
            }
            None => {
                self.pool.release(buf);
                false
            }
        }
    }

    /// Transcodes what the leg `from` received into its partner's format.
    fn transcode(
        &mut self,
        lent: &mut Lent<'_>,
        now: Instant,
        from: LegRef,
        packet: Packet,
    ) -> Next {
        let Some(Mode::Transcode(path)) = self.legs.get(from).map(|l| &l.mode) else {
            return Next::Stop(packet);
        };
        let to = path.to;
        let (to_format, muted) = match self.legs.get(to) {
            Some(t) => (t.format, t.mute_out),
            None => return Next::Stop(packet),
        };
        if muted {
            if let Some(t) = self.legs.get(to) {
                t.stats.tx_dropped += 1;
            }
            return Next::Stop(packet);
        }
        if self.conceal {
            let lost = self.lost_before(lent, from, &packet);
            for _ in 0..lost {
                self.send_concealed(now, from, to);
            }
        }
        let Some(buf) = self.pool.take() else {
            if let Some(t) = self.legs.get(to) {
                t.stats.tx_dropped += 1;
            }
            return Next::Stop(packet);
        };
        // The output buffer is lifted out of the pool while the input (which
        // may be another pool buffer) is read.
        let mut out = self.pool.lift(&buf);
        let input: &[u8] = buffer::bytes(lent, &mut self.pool, &packet);
        let Some(sender) = self.legs.get(from) else {
            self.pool.restore(&buf, out);
            self.pool.release(buf);
            return Next::Stop(packet);
        };
        let from_format = sender.format;
        let produced = match (&mut sender.mode, RtpPacket::parse(input)) {
            (Mode::Transcode(path), Ok(p)) if p.pt().0 == from_format.payload_type() => {
                // A new SSRC, or a sequence far behind the last, is a new
                // stream: it resynchronises at once (gap 0: no output gap).
                let gap = match path.last {
                    Some((ssrc, last)) if ssrc == p.ssrc() => match p.seq().delta(last) {
                        d if d < -MAX_GAP => 0,
                        d => d,
                    },
                    Some(_) => 0,
                    None => 1,
                };
                if gap < 0
                    || (gap == 0
                        && path
                            .last
                            .is_some_and(|(s, l)| s == p.ssrc() && l == p.seq()))
                {
                    None // Late or duplicate.
                } else {
                    // Input time not covered by frames (silence suppressed,
                    // frames lost beyond concealment), in input clock ticks;
                    // a new stream (gap 0) starts afresh.
                    let idle = match path.next_ts {
                        Some(next) if gap > 0 => {
                            let d = p.timestamp().delta(next);
                            if d > 0 && d <= MAX_IDLE_S * from_format.clock_rate() as i32 {
                                d as u32
                            } else {
                                0
                            }
                        }
                        _ => 0,
                    };
                    match path.tc.transcode(p.payload(), &mut out[HEADER_LEN..]) {
                        Ok(n) => {
                            path.last = Some((p.ssrc(), p.seq()));
                            let frame_in = in_clock_ticks(from_format, path.tc.last_samples());
                            path.next_ts = Some(p.timestamp().wrapping_add(frame_in));
                            Some((n, idle, path.tc.last_out_ticks(), p.marker() || idle > 0))
                        }
                        Err(_) => None,
                    }
                }
            }
            (Mode::Transcode(path), Ok(p)) => {
                // CN or a telephone-event of the stream: not audio, but it
                // fills its sequence numbers (no loss to conceal).
                if path
                    .last
                    .is_some_and(|(s, l)| s == p.ssrc() && p.seq().is_newer_than(l))
                {
                    path.last = Some((p.ssrc(), p.seq()));
                }
                None
            }
            _ => None,
        };
        let result = match produced {
            Some((n, idle, out_ticks, marker)) => match self.legs.get(to) {
                Some(target) => {
                    // Idle input time leaves the same gap in the output.
                    if idle > 0 {
                        target.out.skip(
                            (u64::from(idle) * u64::from(to_format.clock_rate())
                                / u64::from(from_format.clock_rate().max(1)))
                                as u32,
                        );
                    }
                    // n = 0: repacketising, nothing whole to send yet.
                    (n > 0)
                        .then(|| {
                            let mut header = target.out.next_local(
                                now,
                                Pt(to_format.payload_type()),
                                out_ticks,
                                n,
                            );
                            header.marker |= marker;
                            header.write(&mut out[..]).map(|h| h + n)
                        })
                        .flatten()
                }
                None => None,
            },
            None => {
                if let Some(s) = self.legs.get(from) {
                    s.stats.rx_dropped += 1;
                }
                None
            }
        };
        self.pool.restore(&buf, out);
        self.release(packet);
        let next = match result {
            Some(len) => self.deliver(lent, now, to, Packet::Tx { buf, len }, false),
            None => {
                self.pool.release(buf);
                Next::Sent
            }
        };
        // A repacketising path may have further whole packets ready (a
        // 120 ms input makes six 20 ms outputs).
        for _ in 0..8 {
            if !self.send_pending(now, from, to) {
                break;
            }
        }
        next
    }

    /// Sends one more repacketised packet of `from`'s transcode path to `to`,
    /// if one is ready; false when none was.
    fn send_pending(&mut self, now: Instant, from: LegRef, to: LegRef) -> bool {
        self.send_transcoded(now, from, to, |tc, out| tc.next(out).and_then(Result::ok))
    }
}
