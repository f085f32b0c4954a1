//! [`Core`]: the media state of one shard as a sans-IO state machine (see
//! the module docs of `media` for the contract with a driver).
//!
//! # Receiving
//! [`Core::handle_datagram`] takes one datagram from one of a leg's sockets:
//! - **Source.** A leg sends to its remote and accepts packets only from it;
//!   a leg created with no remote learns it after a probation, and packets
//!   of ours coming back or beyond a second's allowance are dropped (see
//!   `source`). Datagrams from other sources are counted
//!   (`rx_wrong_source`) and dropped.
//! - **Validity.** Datagrams that are not RTP version 2, are malformed
//!   (CSRC/extension/padding), truncated (the driver says so with
//!   [`Core::handle_truncated`]), or carry a payload type other than the
//!   leg format's, CN (13) and telephone-event (101) are counted in `rx_bad`
//!   and dropped. Valid RTCP on the RTP port (RFC 5761 demux) is counted in
//!   `rx_rtcp`, switches the leg's own reports to the RTP port (mux), and is
//!   handled like RTCP on the RTCP port; invalid RTCP there counts as
//!   `rx_bad`. See `rtcp` for the RTCP port.
//! - **Statistics.** Every valid media packet feeds the leg's
//!   `ReceiveState` (loss, interarrival jitter in timestamp units, SSRC).
//! - Then the leg's mode decides (see `path`).
//!
//! # Time
//! The core reads no clock: every input carries `now`, and the wall clock
//! (for RTCP's NTP timestamps) follows from one anchor the driver gives at
//! start ([`CoreConfig::ntp_anchor`]). [`Core::poll_timeout`] names the next
//! tick while a bridge mixes or a leg reports RTCP; ticks are spaced
//! `tick_ms` apart from the first one, so they do not drift when a wake-up
//! is late; a core more than [`MAX_CATCH_UP`] ticks behind skips ahead. A
//! core that stops needing ticks (no mix, and no leg or no reports) forgets
//! its schedule: when it needs them again they start afresh, one tick after
//! the first `handle_timeout`, instead of catching up on the idle time.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::bridge::{Bridges, TX_POOL_BASE};
use super::buffer::{Lent, Outbox, Packet, RxBuf, Transmit, TxBuf, TxPool};
use super::dtmf::{self, DtmfRx, DtmfTx, Step};
use super::leg::{Leg, LegKind, LegRef, LegTable, Port, RtcpLeg};
use super::mixing;
use super::path::{Media, Mode, HEADER_LEN, PT_CN, PT_TELEPHONE_EVENT};
use super::player::Player;
use super::rtcp;
use super::snoop::{Snoop, SnoopSpec};
use super::source::{self, SourceGuard};
use super::tap::TapAudio;
use super::{
    BridgeKey, BridgeSpec, CoreError, Direction, Format, LegId, MediaDone, MediaEvent, MediaOp,
    RtpStats, Target, Technology,
};
use crate::rtp::packet::looks_like_rtcp;
use crate::rtp::xorshift::XorShift;
use crate::rtp::{OutStream, Pt, ReceiveState, RtpPacket, RtpTimestamp, SeqNo, Ssrc};

/// Ticks run at once when the core is late before it skips ahead.
pub const MAX_CATCH_UP: u32 = 3;

/// What a core is configured with.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// The mix tick (`dataplane.mix_tick_ms`).
    pub tick_ms: u32,
    /// Mean RTCP report interval, ms (0: no reports).
    pub rtcp_interval_ms: u32,
    /// The SDES CNAME of our reports.
    pub cname: String,
    /// Seeds SSRCs, first sequence numbers and timestamps, report timing.
    pub seed: u64,
    /// Conceal lost frames on the transcode and mix paths.
    pub plc: bool,
    /// An instant and the wall clock at that instant as an NTP (32.32)
    /// timestamp: the core's NTP times follow from it.
    pub ntp_anchor: (Instant, u64),
}

/// A leg's whole media state on its way between cores; opaque.
pub struct LegState(Box<Leg>);

impl std::fmt::Debug for LegState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LegState({})", self.0.id)
    }
}

impl LegState {
    /// The control plane's id of the leg.
    pub fn id(&self) -> LegId {
        self.0.id
    }
}

/// A leg that left the core: its last reference (the driver closes what it
/// held for it) and, for a leg that sent reports, its RR + BYE, to be sent
/// before its sockets close.
#[derive(Debug)]
pub struct Removed {
    pub leg: LegRef,
    pub farewell: Option<Transmit>,
}

/// The media core of one shard.
pub struct Core {
    config: CoreConfig,
    tick: Duration,
    rng: XorShift,
    media: Media,
    bridges: Bridges,
    next_tick: Option<Instant>,
    cname: Box<[u8]>,
    /// The outgoing SSRCs of this core's legs (see `source`, Loops).
    ssrcs: HashSet<u32>,
    /// Events for the control plane, bounded by [`MAX_EVENTS`].
    events: VecDeque<MediaEvent>,
    /// Legs sending digits (they need the tick).
    dtmf_senders: Vec<LegId>,
    /// Legs with a clip playing (they need the tick).
    playing: Vec<LegId>,
    /// Snoop legs (they hear on the tick).
    snoopers: Vec<LegId>,
    /// PCM scratch of the tick.
    scratch: Box<[i16]>,
}

/// Events the core keeps for the control plane; beyond, new ones are
/// dropped (the driver drains them every turn, so only a wedged control
/// plane fills it).
pub const MAX_EVENTS: usize = 4096;

impl Core {
    pub fn new(config: CoreConfig) -> Core {
        let tick_ms = config.tick_ms.max(1);
        let mut pool = TxPool::new(
            HEADER_LEN + mixing::max_payload(Format::Slin48, mixing::MAX_PTIME_MS).max(1500),
        );
        pool.reserve(TX_POOL_BASE);
        Core {
            tick: Duration::from_millis(u64::from(tick_ms)),
            rng: XorShift::new(config.seed | 1),
            media: Media {
                legs: LegTable::default(),
                pool,
                outbox: Outbox::new(),
                conceal: config.plc,
            },
            bridges: Bridges::default(),
            next_tick: None,
            cname: config.cname.clone().into_bytes().into_boxed_slice(),
            ssrcs: HashSet::new(),
            events: VecDeque::new(),
            dtmf_senders: Vec::new(),
            playing: Vec::new(),
            snoopers: Vec::new(),
            scratch: vec![0; crate::codec::MAX_FRAME_SAMPLES].into_boxed_slice(),
            config: CoreConfig { tick_ms, ..config },
        }
    }

    // ---- legs and bridges (the control path) ----

    /// Adds an RTP leg whose sockets the driver bound at `local` (RTP; RTCP
    /// on the next port); `remote` is where media goes first (`None`: nowhere
    /// until learned); `learns` lets received RTP move it (symmetric RTP,
    /// see `source`; always so without a remote).
    pub fn add_rtp_leg(
        &mut self,
        id: LegId,
        local: SocketAddr,
        remote: Option<SocketAddr>,
        format: Format,
        learns: bool,
    ) -> Result<LegRef, CoreError> {
        if self.media.legs.contains(id) {
            return Err(CoreError::InUse);
        }
        let kind = LegKind::Rtp {
            local,
            remote,
            guard: SourceGuard::new(learns || remote.is_none()),
        };
        let mut leg = self.new_leg(id, kind, format);
        leg.rtcp = Some(RtcpLeg::default());
        leg.dtmf_pt = Some(dtmf::DEFAULT_PT);
        Ok(self.media.legs.insert(leg))
    }

    /// Adds the two halves of a Local channel pair, joined back to back.
    pub fn add_local_pair(&mut self, a: LegId, b: LegId, format: Format) -> Result<(), CoreError> {
        if self.media.legs.contains(a) || self.media.legs.contains(b) || a == b {
            return Err(CoreError::InUse);
        }
        for (me, peer) in [(a, b), (b, a)] {
            let kind = LegKind::Local {
                peer,
                peer_slot: None,
            };
            let leg = self.new_leg(me, kind, format);
            self.media.legs.insert(leg);
        }
        Ok(())
    }

    /// Adds a snoop leg on `target`, a leg of this core (see `snoop`): it
    /// hears and/or whispers as `spec` says, in signed linear at the
    /// target's rate.
    pub fn add_snoop_leg(
        &mut self,
        id: LegId,
        target: LegId,
        spec: SnoopSpec,
    ) -> Result<LegRef, CoreError> {
        if self.media.legs.contains(id) || id == target {
            return Err(CoreError::InUse);
        }
        let t = self.media.legs.by_id(target).ok_or(CoreError::Unknown)?;
        let samples = (t.format.sample_rate() * self.config.tick_ms / 1000) as usize;
        let rate = super::snoop::linear_for(t.format).clock_rate();
        let stream = OutStream::new(
            Ssrc(self.rng.next_u32()),
            SeqNo(self.rng.next_u32() as u16),
            RtpTimestamp(self.rng.next_u32()),
            rate,
        );
        let t = self.media.legs.by_id(target).ok_or(CoreError::Unknown)?;
        let snoop =
            Snoop::new(target, t.format, spec, samples, stream).ok_or(CoreError::Unplayable)?;
        t.snoops.push(id);
        let format = snoop.format;
        let leg = self.new_leg(id, LegKind::Snoop(Box::new(snoop)), format);
        self.snoopers.push(id);
        Ok(self.media.legs.insert(leg))
    }

    /// Removes a leg (see [`Removed`]).
    pub fn remove_leg(&mut self, id: LegId) -> Result<Removed, CoreError> {
        let r = self.media.legs.find(id).ok_or(CoreError::Unknown)?;
        self.unlink_snoop(id);
        let interval = self.config.rtcp_interval_ms;
        let farewell = match self.media.legs.get(r) {
            Some(leg) => rtcp::bye(leg, r, &mut self.media.pool, interval),
            None => None,
        };
        if let Some(leg) = self.media.legs.remove(r) {
            self.ssrcs.remove(&leg.out.ssrc().0);
            if let Some(b) = leg.bridge {
                self.bridges.forget_member(b, id);
            }
        }
        self.forget_idle_schedule();
        Ok(Removed { leg: r, farewell })
    }

    /// A snoop leg `id` leaves: its target forgets it.
    fn unlink_snoop(&mut self, id: LegId) {
        let target = match self.media.legs.by_id(id) {
            Some(Leg {
                kind: LegKind::Snoop(s),
                ..
            }) => s.target,
            _ => return,
        };
        self.snoopers.retain(|s| *s != id);
        if let Some(t) = self.media.legs.by_id(target) {
            t.snoops.retain(|s| *s != id);
        }
    }

    /// Takes a leg out to move it to another core.
    pub fn detach_leg(&mut self, id: LegId) -> Result<(LegRef, LegState), CoreError> {
        let r = self.media.legs.find(id).ok_or(CoreError::Unknown)?;
        // A moving snoop stays linked by id (its target moves with it).
        self.snoopers.retain(|s| *s != id);
        let leg = self.media.legs.remove(r).ok_or(CoreError::Unknown)?;
        self.ssrcs.remove(&leg.out.ssrc().0);
        if let Some(b) = leg.bridge {
            self.bridges.forget_member(b, id);
        }
        self.forget_idle_schedule();
        Ok((r, LegState(leg)))
    }

    /// Adopts a leg detached from another core, out of any bridge.
    pub fn attach_leg(&mut self, state: LegState) -> Result<LegRef, CoreError> {
        let mut leg = state.0;
        if self.media.legs.contains(leg.id) {
            return Err(CoreError::InUse);
        }
        leg.leave_bridge();
        if let Some(r) = leg.rtcp.as_mut() {
            r.due = None;
        }
        self.ssrcs.insert(leg.out.ssrc().0);
        let (id, playing, sending) = (leg.id, leg.playing(), leg.dtmf_tx.is_some());
        let snooping = matches!(leg.kind, LegKind::Snoop(_));
        let r = self.media.legs.insert(leg);
        if snooping && !self.snoopers.contains(&id) {
            self.snoopers.push(id);
        }
        if playing && !self.playing.contains(&id) {
            self.playing.push(id);
        }
        if sending && !self.dtmf_senders.contains(&id) {
            self.dtmf_senders.push(id);
        }
        Ok(r)
    }

    /// The current reference of a leg.
    pub fn leg(&self, id: LegId) -> Option<LegRef> {
        self.media.legs.find(id)
    }

    /// Sets a bridge's members and flags; returns the technology chosen.
    pub fn set_bridge(
        &mut self,
        key: BridgeKey,
        spec: BridgeSpec,
    ) -> Result<Technology, CoreError> {
        let technology = self
            .bridges
            .set(&mut self.media, key, spec, self.config.tick_ms);
        self.forget_idle_schedule();
        technology
    }

    /// Removes a bridge; its members stay, out of any bridge.
    pub fn destroy_bridge(&mut self, key: BridgeKey) -> Result<(), CoreError> {
        let done = self.bridges.destroy(&mut self.media, key);
        for (bridge, key) in self.bridges.take_ended() {
            self.event(MediaEvent::PlaybackDone {
                target: Target::Bridge(bridge),
                key,
            });
        }
        self.forget_idle_schedule();
        done
    }

    /// Mutes or unmutes a leg in one or both directions.
    pub fn set_mute(&mut self, id: LegId, direction: Direction, on: bool) -> Result<(), CoreError> {
        let l = self.media.legs.by_id(id).ok_or(CoreError::Unknown)?;
        if matches!(direction, Direction::In | Direction::Both) {
            l.mute_in = on;
        }
        if matches!(direction, Direction::Out | Direction::Both) {
            l.mute_out = on;
        }
        Ok(())
    }

    /// Points an RTP leg's media at a new remote (a SIP peer's new SDP);
    /// `None` stops sending until a source is learned. RTCP follows on the
    /// next port until the peer's RTCP is seen.
    pub fn set_remote(&mut self, id: LegId, to: Option<SocketAddr>) -> Result<(), CoreError> {
        let l = self.media.legs.by_id(id).ok_or(CoreError::Unknown)?;
        let LegKind::Rtp { remote, guard, .. } = &mut l.kind else {
            return Err(CoreError::Unknown);
        };
        if *remote != to {
            *remote = to;
            if to.is_none() {
                *guard = SourceGuard::new(true);
            }
            if let Some(rtcp) = l.rtcp.as_mut() {
                rtcp.remote = None;
                rtcp.mux = false;
            }
        }
        Ok(())
    }

    /// Changes a leg's format (a SIP peer's new codec). Its outgoing stream
    /// keeps its SSRC and sequence numbers, with timestamps on the new clock;
    /// its bridge, if any, is set again without it and then with it, so the
    /// technology is chosen anew for the new format. Answers the bridge's
    /// technology (`None` outside a bridge).
    pub fn set_format(
        &mut self,
        id: LegId,
        format: Format,
    ) -> Result<Option<Technology>, CoreError> {
        let l = self.media.legs.by_id(id).ok_or(CoreError::Unknown)?;
        if l.format == format {
            return Ok(l.bridge.and_then(|b| self.bridges.technology(b)));
        }
        let bridge = l.bridge;
        let mut spec = bridge.and_then(|b| self.bridges.spec(b));
        if let Some(spec) = spec.as_mut() {
            // A member removed since the bridge was set is not set again
            // (that would refuse the whole change as `Unknown`).
            spec.members.retain(|m| self.media.legs.contains(m.leg));
        }
        if let (Some(b), Some(spec)) = (bridge, &spec) {
            let mut without = spec.clone();
            without.members.retain(|m| m.leg != id);
            self.bridges
                .set(&mut self.media, b, without, self.config.tick_ms)?;
        }
        let next_ts = RtpTimestamp(self.rng.next_u32());
        let l = self.media.legs.by_id(id).ok_or(CoreError::Unknown)?;
        let next_seq = l
            .out
            .last_sent()
            .map_or(SeqNo(self.rng.next_u32() as u16), |(seq, _)| {
                SeqNo(seq.0.wrapping_add(1))
            });
        l.out = OutStream::new(l.out.ssrc(), next_seq, next_ts, format.clock_rate());
        l.format = format;
        l.jitter = None;
        l.mix_ssrc = None;
        let technology = match (bridge, spec) {
            (Some(b), Some(spec)) => {
                Some(
                    self.bridges
                        .set(&mut self.media, b, spec, self.config.tick_ms)?,
                )
            }
            _ => None,
        };
        self.forget_idle_schedule();
        Ok(technology)
    }

    /// Sets the telephone-event payload type of an RTP leg (`None`: the leg
    /// neither reports nor sends digits). New RTP legs have
    /// [`dtmf::DEFAULT_PT`].
    pub fn set_telephone_event(&mut self, id: LegId, pt: Option<u8>) -> Result<(), CoreError> {
        let l = self.media.legs.by_id(id).ok_or(CoreError::Unknown)?;
        l.dtmf_pt = pt;
        Ok(())
    }

    /// Queues digits to send on an RTP leg as RFC 4733 events (see
    /// [`dtmf`]); they start on the next tick, after any queued before.
    pub fn send_dtmf(&mut self, id: LegId, steps: Vec<Step>) -> Result<(), CoreError> {
        let l = self.media.legs.by_id(id).ok_or(CoreError::Unknown)?;
        if !matches!(l.kind, LegKind::Rtp { .. }) || l.dtmf_pt.is_none() {
            return Err(CoreError::NoTelephoneEvent);
        }
        match l.dtmf_tx.as_mut() {
            Some(tx) => tx.extend(steps),
            None => l.dtmf_tx = Some(Box::new(DtmfTx::new(steps))),
        }
        if !self.dtmf_senders.contains(&id) {
            self.dtmf_senders.push(id);
        }
        Ok(())
    }

    /// Starts (`Some((silence_ms, threshold))`) or stops talk detection on
    /// what a leg receives (see [`talk`](super::talk)).
    pub fn set_talk_detect(
        &mut self,
        id: LegId,
        params: Option<(u32, u32)>,
    ) -> Result<(), CoreError> {
        let l = self.media.legs.by_id(id).ok_or(CoreError::Unknown)?;
        l.talk = params.map(|(silence, threshold)| {
            Box::new(super::talk::TalkDetect::new(l.format, silence, threshold))
        });
        Ok(())
    }

    /// Applies a media operation to a leg or a bridge (see [`MediaOp`]).
    /// On a bridge, a clip, a generator or a tap makes the bridge mix (see
    /// `bridge`), so its technology is answered.
    pub fn media_op(&mut self, target: Target, op: MediaOp) -> Result<MediaDone, CoreError> {
        match target {
            Target::Leg(id) => self.leg_op(id, op),
            Target::Bridge(key) => {
                let applied =
                    self.bridges
                        .media_op(&mut self.media, key, op, self.config.tick_ms)?;
                self.forget_idle_schedule();
                Ok(MediaDone {
                    applied,
                    technology: self.bridges.technology(key),
                })
            }
        }
    }

    fn leg_op(&mut self, id: LegId, op: MediaOp) -> Result<MediaDone, CoreError> {
        let l = self.media.legs.by_id(id).ok_or(CoreError::Unknown)?;
        let format = l.format;
        let applied = l.extras.apply(op, |key, clip, looping| {
            Player::for_leg(key, clip, format, looping)
        })?;
        let playing = l.playing();
        self.playing.retain(|p| *p != id);
        if playing {
            self.playing.push(id);
        }
        self.forget_idle_schedule();
        Ok(MediaDone {
            applied,
            technology: None,
        })
    }

    /// Sends one tick's frame of every leg's clip or generator; a clip that
    /// ends is reported ([`MediaEvent::PlaybackDone`]).
    fn tick_players(&mut self, now: Instant) {
        let tick_ms = self.tick.as_millis() as u32;
        let mut ended = Vec::new();
        for &id in &self.playing {
            let Some(r) = self.media.legs.find(id) else {
                ended.push((id, None));
                continue;
            };
            let Some(leg) = self.media.legs.get(r) else {
                continue;
            };
            let format = leg.format;
            let samples = (format.sample_rate() * tick_ms / 1000) as usize;
            let ticks = format.clock_rate() * tick_ms / 1000;
            let Some(buf) = self.media.pool.take() else {
                continue;
            };
            let mut bytes = self.media.pool.lift(&buf);
            let mut made = None;
            if let Some(player) = leg.extras.player.as_mut() {
                made = player.next_frame(samples, &mut bytes[HEADER_LEN..]);
                if made.is_none() {
                    ended.push((id, Some(player.key)));
                    leg.extras.player = None;
                }
            }
            if made.is_none() {
                if let Some(generator) = leg.extras.generator.as_mut() {
                    made = generator.next_frame(samples, &mut bytes[HEADER_LEN..]);
                }
            }
            let Some(n) = made.filter(|&n| n > 0) else {
                // Paused, or nothing left to play.
                self.media.pool.restore(&buf, bytes);
                self.media.pool.release(buf);
                continue;
            };
            let header = leg.out.next_local(now, Pt(format.payload_type()), ticks, n);
            let written = header.write(&mut bytes[..]).map(|h| h + n);
            self.media.pool.restore(&buf, bytes);
            let dest = match &leg.kind {
                LegKind::Rtp {
                    remote: Some(dest), ..
                } if !leg.mute_out => Some(*dest),
                _ => None,
            };
            send_frame(&mut self.media, r, dest, buf, written, n);
        }
        for (id, key) in ended {
            let still = self.media.legs.by_id(id).is_some_and(|l| l.playing());
            if !still {
                self.playing.retain(|p| *p != id);
            }
            if let Some(key) = key {
                self.event(MediaEvent::PlaybackDone {
                    target: Target::Leg(id),
                    key,
                });
            }
        }
        for key in self.bridges.take_ended() {
            self.event(MediaEvent::PlaybackDone {
                target: Target::Bridge(key.0),
                key: key.1,
            });
        }
    }

    /// Each snoop leg "receives" one tick of what it hears (see `snoop`).
    fn tick_snoops(&mut self, now: Instant) {
        let tick_ms = self.tick.as_millis() as u32;
        for i in 0..self.snoopers.len() {
            let id = self.snoopers[i];
            let Some(r) = self.media.legs.find(id) else {
                continue;
            };
            let target = match self.media.legs.get(r).map(|l| &l.kind) {
                Some(LegKind::Snoop(s)) => s.target,
                _ => continue,
            };
            if !self.media.legs.contains(target) {
                continue; // Its target has gone: nothing to hear.
            }
            let Some(leg) = self.media.legs.get(r) else {
                continue;
            };
            let format = leg.format;
            let samples = (format.sample_rate() * tick_ms / 1000) as usize;
            let LegKind::Snoop(snoop) = &mut leg.kind else {
                continue;
            };
            if !snoop.heard(samples, &mut self.scratch) {
                continue;
            }
            // A recording of the snoop leg gets what it hears.
            let (rate, heard) = (format.sample_rate(), &self.scratch[..samples]);
            leg.extras.feed_taps(|| TapAudio::Pcm {
                rate,
                samples: heard.into(),
            });
            let Some(buf) = self.media.pool.take() else {
                continue;
            };
            let mut bytes = self.media.pool.lift(&buf);
            let n = 2 * samples;
            let written = match bytes.get_mut(HEADER_LEN..HEADER_LEN + n) {
                Some(payload) => {
                    for (d, s) in payload.chunks_exact_mut(2).zip(&self.scratch[..samples]) {
                        d.copy_from_slice(&s.to_be_bytes());
                    }
                    let header = snoop.stream.next_local(
                        now,
                        Pt(format.payload_type()),
                        format.clock_rate() * tick_ms / 1000,
                        n,
                    );
                    header.write(&mut bytes[..]).map(|h| h + n)
                }
                None => None,
            };
            self.media.pool.restore(&buf, bytes);
            let Some(len) = written else {
                self.media.pool.release(buf);
                continue;
            };
            leg.stats.rx_packets += 1;
            leg.stats.rx_octets += n as u64;
            let mut lent = Lent::none();
            self.media
                .ingest(&mut lent, now, r, Packet::Tx { buf, len });
        }
    }

    /// The next event for the control plane.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    fn event(&mut self, e: MediaEvent) {
        if self.events.len() < MAX_EVENTS {
            self.events.push_back(e);
        }
    }

    /// Sends the due telephone-event packets of the legs sending digits.
    fn tick_dtmf(&mut self, now: Instant) {
        let tick = self.tick;
        let mut finished = Vec::new();
        for &id in &self.dtmf_senders {
            let Some(r) = self.media.legs.find(id) else {
                finished.push(id);
                continue;
            };
            let Some(leg) = self.media.legs.get(r) else {
                continue;
            };
            let (Some(pt), Some(tx)) = (leg.dtmf_pt, leg.dtmf_tx.as_mut()) else {
                finished.push(id);
                continue;
            };
            let out = tx.tick(tick);
            if tx.done() {
                leg.dtmf_tx = None;
                finished.push(id);
            }
            let Some(out) = out else {
                continue;
            };
            let LegKind::Rtp {
                remote: Some(dest), ..
            } = leg.kind
            else {
                continue;
            };
            let Some(buf) = self.media.pool.take() else {
                continue;
            };
            let mut bytes = self.media.pool.lift(&buf);
            let header = leg.out.event_header(now, Pt(pt), out.marker);
            let written = header.write(&mut bytes[..]).map(|h| {
                bytes[h..h + 4].copy_from_slice(&out.payload);
                h + 4
            });
            self.media.pool.restore(&buf, bytes);
            send_frame(&mut self.media, r, Some(dest), buf, written, 4);
        }
        self.dtmf_senders.retain(|id| !finished.contains(id));
    }

    /// Puts a leg on hold (its media is not passed on) or takes it off.
    pub fn set_hold(&mut self, id: LegId, on: bool) -> Result<(), CoreError> {
        let l = self.media.legs.by_id(id).ok_or(CoreError::Unknown)?;
        l.hold = on;
        Ok(())
    }

    /// A leg's counters.
    pub fn stats(&mut self, id: LegId) -> Result<RtpStats, CoreError> {
        let l = self.media.legs.by_id(id).ok_or(CoreError::Unknown)?;
        let mut stats = l.stats.clone();
        if let LegKind::Rtp { local, remote, .. } = &l.kind {
            stats.local = Some(*local);
            stats.remote = *remote;
        }
        stats.rx_lost = l.rx.lost();
        stats.rx_jitter = l.rx.jitter();
        stats.rx_ssrc = l.rx.ssrc().map(|s| s.0);
        stats.tx_ssrc = l.out.last_sent().map(|_| l.out.ssrc().0);
        stats.jitter_buffer = l.jitter.as_ref().map(|j| j.stats());
        Ok(stats)
    }

    /// Number of legs.
    pub fn leg_count(&self) -> usize {
        self.media.legs.len()
    }

    // ---- I/O ----

    /// A datagram arrived at `now` from `source` on `leg`'s `port` socket;
    /// `data` is its bytes in the driver's buffer `buf`. Returns the buffer
    /// when the core did not keep it for a send (the driver recycles it);
    /// otherwise it comes back in a [`Transmit`].
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        leg: LegRef,
        port: Port,
        source: SocketAddr,
        data: &mut [u8],
        buf: RxBuf,
    ) -> Option<RxBuf> {
        let mut lent = Lent {
            data,
            buf: Some(buf),
        };
        match port {
            Port::Rtp => self.on_rtp(&mut lent, now, leg, source),
            Port::Rtcp => self.on_rtcp(&mut lent, now, leg, source),
        }
        lent.buf
    }

    /// A datagram too long for the driver's buffer arrived on `leg`'s
    /// `port`: counted as bad.
    pub fn handle_truncated(&mut self, leg: LegRef, port: Port) {
        if let Some(l) = self.media.legs.get(leg) {
            match port {
                Port::Rtp => l.stats.rx_bad += 1,
                Port::Rtcp => l.stats.rx_rtcp_bad += 1,
            }
        }
    }

    /// The time asked for by [`Core::poll_timeout`] has come (or passed).
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.wants_ticks() {
            self.next_tick = None;
            return;
        }
        let Some(mut due) = self.next_tick else {
            self.next_tick = Some(now + self.tick);
            return;
        };
        let mut ran = 0;
        while due <= now && ran < MAX_CATCH_UP {
            self.tick_once(now);
            due += self.tick;
            ran += 1;
        }
        if due <= now {
            due = now + self.tick;
        }
        self.next_tick = Some(due);
    }

    /// When the core wants [`Core::handle_timeout`] next: `None` while
    /// nothing needs time. A core that has not ticked yet asks at once
    /// (`ntp_anchor`'s instant, already past).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.wants_ticks() {
            return None;
        }
        Some(self.next_tick.unwrap_or(self.config.ntp_anchor.0))
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.media.outbox.pop()
    }

    /// The bytes of a pool buffer in a [`Transmit`].
    pub fn tx_bytes(&self, buf: &TxBuf) -> &[u8] {
        self.media.pool.bytes(buf)
    }

    /// Gives a pool buffer back once its send completed (or failed).
    pub fn release_tx(&mut self, buf: TxBuf) {
        self.media.pool.release(buf);
    }

    /// The kernel refused a send of `leg`: counted in `tx_errors`.
    pub fn send_failed(&mut self, leg: LegRef) {
        if let Some(l) = self.media.legs.get(leg) {
            l.stats.tx_errors += 1;
        }
    }

    /// Pool buffers not in flight (for tests and diagnostics).
    pub fn pool_available(&self) -> usize {
        self.media.pool.available()
    }

    // ---- inside ----

    fn wants_ticks(&self) -> bool {
        self.bridges.any_mixing()
            || !self.dtmf_senders.is_empty()
            || !self.playing.is_empty()
            || !self.snoopers.is_empty()
            || (self.config.rtcp_interval_ms > 0 && self.media.legs.len() > 0)
    }

    /// Forgets the tick schedule once nothing needs the tick (called after
    /// every command that can end the need): the driver stops calling
    /// `handle_timeout` when `poll_timeout` is `None`, so a kept deadline
    /// would be stale when ticks are wanted again and would run a burst of
    /// catch-up ticks at once.
    fn forget_idle_schedule(&mut self) {
        if !self.wants_ticks() {
            self.next_tick = None;
        }
    }

    fn tick_once(&mut self, now: Instant) {
        self.bridges.tick(&mut self.media, now);
        self.tick_dtmf(now);
        self.tick_players(now);
        self.tick_snoops(now);
        let ntp = self.ntp(now);
        rtcp::tick(
            &mut self.media,
            &mut self.rng,
            now,
            ntp,
            self.config.rtcp_interval_ms,
            &self.cname,
        );
    }

    /// `now` as an NTP timestamp (see [`CoreConfig::ntp_anchor`]).
    fn ntp(&self, now: Instant) -> u64 {
        let (at, ntp) = self.config.ntp_anchor;
        let d = if now >= at {
            now - at
        } else {
            return ntp.wrapping_sub(to_ntp_units(at - now));
        };
        ntp.wrapping_add(to_ntp_units(d))
    }

    fn new_leg(&mut self, id: LegId, kind: LegKind, format: Format) -> Box<Leg> {
        let out = OutStream::new(
            Ssrc(self.rng.next_u32()),
            SeqNo(self.rng.next_u32() as u16),
            RtpTimestamp(self.rng.next_u32()),
            format.clock_rate(),
        );
        self.ssrcs.insert(out.ssrc().0);
        Box::new(Leg {
            id,
            kind,
            format,
            out,
            mute_in: false,
            mute_out: false,
            member_mute: false,
            announcer: false,
            absorb_dtmf: false,
            hold: false,
            bridge: None,
            mode: Mode::Drop,
            jitter: None,
            mix_ssrc: None,
            rx: ReceiveState::new(),
            stats: RtpStats::default(),
            rtcp: None,
            dtmf_pt: None,
            dtmf_rx: DtmfRx::default(),
            dtmf_tx: None,
            talk: None,
            extras: Default::default(),
            snoops: Vec::new(),
        })
    }

    /// A datagram on the RTP port (see the module docs, Receiving).
    fn on_rtp(&mut self, lent: &mut Lent<'_>, now: Instant, r: LegRef, source: SocketAddr) {
        let since_epoch = now
            .saturating_duration_since(self.config.ntp_anchor.0)
            .as_nanos();
        let ntp = self.ntp(now);
        let Some(leg) = self.media.legs.get(r) else {
            return;
        };
        let len = lent.data.len();
        let format_pt = leg.format.payload_type();
        if let LegKind::Rtp { remote, guard, .. } = &mut leg.kind {
            if *remote != Some(source) {
                let learned = match RtpPacket::parse(lent.data) {
                    Ok(p) if p.pt().0 == format_pt && !looks_like_rtcp(lent.data) => {
                        guard.probation(now, source, p.ssrc(), p.seq())
                    }
                    _ => false,
                };
                if !learned {
                    leg.stats.rx_wrong_source += 1;
                    return;
                }
                tracing::info!(leg = leg.id.0, %source, "RTP source learned");
                *remote = Some(source);
                if let Some(rtcp) = leg.rtcp.as_mut() {
                    rtcp.remote = None;
                    rtcp.mux = false;
                }
            }
            let mut started = false;
            if !guard.admit(now, &mut started) {
                if started {
                    tracing::warn!(
                        leg = leg.id.0,
                        %source,
                        "over {} packets a second: the excess is dropped (a flood or a loop)",
                        source::MAX_PPS
                    );
                }
                leg.stats.rx_flood += 1;
                return;
            }
        }
        let format_pt = leg.format.payload_type();
        if looks_like_rtcp(lent.data) {
            if !rtcp::absorb(leg, lent.data, now, ntp) {
                leg.stats.rx_bad += 1;
                return;
            }
            if let Some(rtcp) = leg.rtcp.as_mut() {
                rtcp.mux = true;
            }
            rtcp::relay(&mut self.media, lent, r, len);
            return;
        }
        let Ok(packet) = RtpPacket::parse(lent.data) else {
            leg.stats.rx_bad += 1;
            return;
        };
        if let LegKind::Rtp { guard, .. } = &mut leg.kind {
            let ssrc = packet.ssrc();
            if guard.looped == Some(ssrc) {
                leg.stats.rx_looped += 1;
                return;
            }
            if leg.rx.ssrc() != Some(ssrc) && self.ssrcs.contains(&ssrc.0) {
                tracing::warn!(
                    leg = leg.id.0,
                    %source,
                    ssrc = ssrc.0,
                    "packets this node sent came back: a loop; they are dropped"
                );
                guard.looped = Some(ssrc);
                leg.stats.rx_looped += 1;
                return;
            }
        }
        // Counted as Asterisk counts rxcount/rxoctetcount: RTP from the
        // remote, any payload type, payload bytes only.
        leg.stats.rx_packets += 1;
        leg.stats.rx_octets += packet.payload().len() as u64;
        let Pt(pt) = packet.pt();
        if Some(pt) == leg.dtmf_pt {
            if let Some(e) = dtmf::Event::parse(packet.payload()) {
                let digits = leg.dtmf_rx.on_packet(packet.ssrc(), packet.timestamp(), &e);
                // As Asterisk: digits a native RTP bridge relays never reach
                // its core, so they are not reported; any other path is.
                let reported = leg
                    .bridge
                    .is_none_or(|b| self.bridges.technology(b) != Some(Technology::NativeRtp));
                if reported {
                    let id = leg.id;
                    for (digit, ticks) in digits {
                        let duration_ms = ticks * 1000 / dtmf::CLOCK_RATE;
                        self.event(MediaEvent::Dtmf {
                            leg: id,
                            digit,
                            duration_ms,
                        });
                    }
                }
            }
            let Some(leg) = self.media.legs.get(r) else {
                return;
            };
            if pt != PT_TELEPHONE_EVENT || leg.absorb_dtmf {
                // Only crossbar's own number passes through bridges, and
                // not from a member that absorbs its digits.
                leg.stats.rx_dropped += 1;
                return;
            }
        }
        let Some(leg) = self.media.legs.get(r) else {
            return;
        };
        if pt != format_pt && pt != PT_CN && pt != PT_TELEPHONE_EVENT {
            leg.stats.rx_bad += 1;
            return;
        }
        let mut talk = None;
        if pt == format_pt {
            let arrival =
                (since_epoch * u128::from(leg.format.clock_rate()) / 1_000_000_000) as u32;
            leg.rx
                .record(packet.ssrc(), packet.seq(), packet.timestamp(), arrival);
            if !(leg.mute_in || leg.hold) {
                let format = leg.format;
                leg.extras.feed_taps(|| TapAudio::Rtp {
                    format,
                    seq: packet.seq().0,
                    timestamp: packet.timestamp().0,
                    payload: packet.payload().into(),
                });
            }
            let rate = leg.format.sample_rate();
            if let Some(t) = leg.talk.as_mut() {
                talk = t.on_audio(now, packet.payload(), rate).map(|e| (leg.id, e));
            }
        }
        match talk {
            Some((leg, super::talk::Talk::Started)) => {
                self.event(MediaEvent::TalkingStarted { leg })
            }
            Some((leg, super::talk::Talk::Finished { duration_ms })) => {
                self.event(MediaEvent::TalkingFinished { leg, duration_ms })
            }
            None => {}
        }
        if self.media.legs.get(r).is_some_and(|l| !l.snoops.is_empty()) {
            self.media
                .snoop_pass(lent, r, &Packet::Rx { len }, Direction::In);
        }
        self.media.ingest(lent, now, r, Packet::Rx { len });
    }

    /// A datagram on the RTCP port (see `rtcp`, Receiving).
    fn on_rtcp(&mut self, lent: &mut Lent<'_>, now: Instant, r: LegRef, source: SocketAddr) {
        let ntp = self.ntp(now);
        let Some(leg) = self.media.legs.get(r) else {
            return;
        };
        // Only from the remote's address and RTCP port (RTP port + 1).
        let from_remote = matches!(
            &leg.kind,
            LegKind::Rtp { remote: Some(addr), .. }
                if addr.ip() == source.ip() && addr.port().checked_add(1) == Some(source.port())
        );
        if !from_remote || !rtcp::absorb(leg, lent.data, now, ntp) {
            leg.stats.rx_rtcp_bad += 1;
            return;
        }
        if let Some(rtcp) = leg.rtcp.as_mut() {
            rtcp.remote = Some(source);
        }
        let len = lent.data.len();
        rtcp::relay(&mut self.media, lent, r, len);
    }
}

/// A duration in NTP 32.32 units.
fn to_ntp_units(d: Duration) -> u64 {
    (d.as_secs() << 32) | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

/// Queues a frame the core made for leg `r` (in `buf`: `len` bytes, of
/// which `payload` after the header) to `dest`, counted in the leg's
/// stats; the buffer goes back to the pool when there is nothing to send.
fn send_frame(
    media: &mut Media,
    r: LegRef,
    dest: Option<SocketAddr>,
    buf: TxBuf,
    len: Option<usize>,
    payload: usize,
) {
    let (Some(dest), Some(len)) = (dest, len) else {
        media.pool.release(buf);
        return;
    };
    let mut lent = Lent::none();
    let packet = Packet::Tx { buf, len };
    if let Some(leg) = media.legs.get(r) {
        leg.stats.tx_packets += 1;
        leg.stats.tx_octets += payload as u64;
        if !leg.snoops.is_empty() {
            media.snoop_pass(&mut lent, r, &packet, Direction::Out);
        }
    }
    media
        .outbox
        .send(&mut lent, &mut media.pool, r, Port::Rtp, dest, packet);
}
