//! One shard: a pinned thread with its own io_uring that owns the sockets of
//! its legs and the state of its bridges, serves [`Command`]s from the
//! control plane, and relays RTP.
//!
//! # Loop
//! Each turn: submit queued operations and wait for at least one completion;
//! take up to a batch of completions; handle them (receives relay at once,
//! sends recycle their buffer, the eventfd read drains the command queue,
//! the timer ticks); publish recycled buffers; re-arm what ended. Sends
//! queued while handling a batch go out in the next single `io_uring_enter`.
//!
//! # Media
//! What a leg does with what it receives is its mode, set by its bridge on
//! every `set_bridge` ([`super::bridge`] chooses the technology): relay in
//! place, transcode, or feed the mix ([`super::path`]); mixing bridges are
//! ticked by the ring's timer ([`super::mixing`]). Every path sends with the
//! target leg's one `OutStream`, so a leg's outgoing SSRC, seq and ts stay
//! continuous across technology changes.
//!
//! # Source addresses (symmetric RTP)
//! A leg sends to its remote and accepts packets only from it. A leg created
//! with an unspecified remote (`0.0.0.0:0`, or port 0) latches the source of
//! the first packet it receives and from then on sends there and accepts only
//! that source. Packets from other sources are counted (`rx_wrong_source`)
//! and dropped.
//!
//! # Validity
//! Short datagrams, RTP version ≠ 2, malformed CSRC/extension/padding,
//! truncated datagrams and payload types other than the leg format's, CN (13)
//! and telephone-event (101) are counted in `rx_bad` and dropped. Valid RTCP
//! on the RTP port (RFC 5761 demux) is counted in `rx_rtcp`, switches the
//! leg's own reports to the RTP port (mux), and is handled like RTCP on the
//! RTCP port (parsed, or relayed on a relaying leg — see `rtcp`); invalid
//! RTCP there counts as `rx_bad`.
//!
//! # Receive statistics
//! Every valid media packet of an RTP leg's remote feeds the leg's
//! `ReceiveState` (loss, interarrival jitter in timestamp units, SSRC),
//! reported by `Stats`.
//!
//! # RTCP
//! Each RTP leg's RTCP socket (the odd port of its pair) is received on the
//! same ring (`Op::RecvRtcp`); RTCP on either port is parsed, relayed
//! between relayed legs, and reports are sent on the tick: see
//! [`super::rtcp`]. Ports are allocated in even/odd pairs: a pair whose
//! odd port is taken is skipped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::bridge::{self, Bridge, Plan};
use super::mixing::{self, MemberPlan, MixState};
use super::path::{
    Buf, Leg, LegKind, Media, Mode, Packet, RtcpLeg, Slot, TranscodePath, HEADER_LEN, PT_CN,
    PT_TELEPHONE_EVENT,
};
use super::rtcp;
use super::uring::{self, BufRing, Op, RawAddr, BGID};
use super::{
    BridgeKey, BridgeSpec, Command, DataplaneError, Direction, LegId, LegSpec, LegTransfer,
    RtpStats, Technology,
};
use crate::codec::Transcoder;
use crate::jitter::JitterBuffer;
use crate::media::Format;
use crate::rtp::packet::looks_like_rtcp;
use crate::rtp::xorshift::XorShift;
use crate::rtp::{OutStream, Pt, ReceiveState, RtpPacket, RtpTimestamp, SeqNo, Ssrc};

/// Completions handled per loop turn.
const CQE_BATCH: usize = 512;
/// Submission queue entries.
const RING_ENTRIES: u32 = 1024;
/// Frames a jitter buffer of the mixing path holds.
const JITTER_SLOTS: usize = 8;
/// Most frames a mixing leg's jitter buffer holds back (it starts at one
/// and grows only for a leg whose arrivals need it).
const JITTER_MAX_DELAY: usize = 3;
/// Transmit pool buffers a shard always has (produced frames in flight).
const TX_POOL_BASE: usize = 256;
/// Transmit pool buffers per member of a transcoding or mixing bridge.
const TX_POOL_PER_MEMBER: usize = 4;

/// A shard's state.
pub(super) struct Shard {
    index: usize,
    bind_ip: IpAddr,
    ports: RangeInclusive<u16>,
    next_port: u16,
    tick: Duration,
    tick_ms: u32,
    rng: XorShift,
    media: Media,
    free: Vec<u32>,
    ids: HashMap<LegId, u32>,
    bridges: HashMap<BridgeKey, Bridge>,
    /// Bridges with a mix, ticked in this order.
    mixing: Vec<BridgeKey>,
    /// Receives to re-arm after this batch: (slot, on the RTCP socket).
    rearm: Vec<(u32, bool)>,
    /// Mean RTCP report interval, ms (0: no reports).
    rtcp_interval_ms: u32,
    /// The SDES CNAME of our reports.
    cname: Box<[u8]>,
}

/// The I/O half of a running shard.
pub(super) struct Io {
    pub(super) ring: IoUring,
    pub(super) bufs: BufRing,
    wake_buf: Box<u64>,
    timespec: Box<types::Timespec>,
    recv_msg: Box<libc::msghdr>,
    cqes: Vec<cqueue::Entry>,
}

impl Shard {
    pub(super) fn new(
        index: usize,
        bind_ip: IpAddr,
        ports: RangeInclusive<u16>,
        tick_ms: u32,
        rtcp_interval_ms: u32,
    ) -> Shard {
        let next_port = *ports.start();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Shard {
            index,
            bind_ip,
            ports,
            next_port,
            tick: Duration::from_millis(u64::from(tick_ms.max(1))),
            tick_ms: tick_ms.max(1),
            rng: XorShift::new(seed),
            media: Media::new(
                usize::from(uring::BUFFERS),
                HEADER_LEN + mixing::max_payload(Format::Slin48, tick_ms.max(1)).max(1500),
            ),
            free: Vec::new(),
            ids: HashMap::new(),
            bridges: HashMap::new(),
            mixing: Vec::new(),
            rearm: Vec::with_capacity(64),
            rtcp_interval_ms,
            cname: format!("crossbar@{bind_ip}")
                .into_bytes()
                .into_boxed_slice(),
        }
    }

    /// Sets up the ring (reporting the result on `ready`), then serves
    /// commands and media until `Shutdown` or until the control plane is gone.
    pub(super) fn run(
        mut self,
        commands: Receiver<Command>,
        wake: OwnedFd,
        pin: bool,
        ready: std::sync::mpsc::Sender<std::io::Result<()>>,
    ) {
        if pin {
            pin_to_core(self.index);
        }
        let mut io = match Io::new() {
            Ok(io) => {
                let _ = ready.send(Ok(()));
                io
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        self.media.pool.reserve(TX_POOL_BASE);
        io.arm_wake(&wake);
        io.arm_tick(self.tick);
        let mut running = true;
        while running {
            if let Err(e) = io.ring.submit_and_wait(1) {
                if e.raw_os_error() != Some(libc::EINTR) && e.raw_os_error() != Some(libc::EBUSY) {
                    tracing::error!(shard = self.index, "io_uring_enter failed: {e}");
                    break;
                }
            }
            io.cqes.clear();
            io.cqes.extend(io.ring.completion().take(CQE_BATCH));
            let now = Instant::now();
            for i in 0..io.cqes.len() {
                let cqe = io.cqes[i].clone();
                match Op::decode(cqe.user_data()) {
                    Some(Op::Recv { slot, gen }) => {
                        self.on_recv(&mut io, now, slot, gen, false, &cqe)
                    }
                    Some(Op::RecvRtcp { slot, gen }) => {
                        self.on_recv(&mut io, now, slot, gen, true, &cqe)
                    }
                    Some(Op::Send { bid }) => self.on_sent(&mut io, bid, cqe.result()),
                    Some(Op::SendTx { index }) => self.media.tx_done(index, cqe.result()),
                    Some(Op::Wake) => {
                        running = self.drain_commands(&mut io, &commands);
                        if running {
                            io.arm_wake(&wake);
                        }
                    }
                    Some(Op::Tick) => {
                        if !cqueue::more(cqe.flags()) {
                            io.arm_tick(self.tick);
                        }
                        self.on_tick(&mut io, now);
                    }
                    None => {}
                }
                if !running {
                    break;
                }
            }
            io.bufs.publish();
            while let Some((slot, rtcp)) = self.rearm.pop() {
                self.arm(&mut io, slot, rtcp);
            }
        }
        // Close every socket's operations before the buffers go away.
        for slot in 0..self.media.slots.len() as u32 {
            self.cancel_io(&mut io, slot);
        }
        let _ = io
            .ring
            .submitter()
            .register_sync_cancel(None, types::CancelBuilder::any());
        io.bufs.unregister(&io.ring);
    }

    /// Serves every queued command; false means stop.
    fn drain_commands(&mut self, io: &mut Io, commands: &Receiver<Command>) -> bool {
        loop {
            match commands.try_recv() {
                Ok(command) => {
                    if !self.handle(io, command) {
                        return false;
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// The mix tick: every mixing bridge mixes and sends one frame per
    /// member. Relays and transcodes need nothing from it.
    fn on_tick(&mut self, io: &mut Io, now: Instant) {
        for i in 0..self.mixing.len() {
            let key = self.mixing[i];
            if let Some(mix) = self
                .bridges
                .get_mut(&key)
                .and_then(|b| b.mix.as_deref_mut())
            {
                mix.tick(&mut self.media, io, now);
            }
        }
        rtcp::tick(
            &mut self.media,
            io,
            &mut self.rng,
            now,
            self.rtcp_interval_ms,
            &self.cname,
        );
    }

    /// Handles one command; false means stop.
    fn handle(&mut self, io: &mut Io, command: Command) -> bool {
        match command {
            Command::CreateRtpLeg { leg, spec, reply } => {
                let result = self.create_rtp_leg(leg, spec);
                if let Ok((slot, _)) = result {
                    self.arm_recv(io, slot);
                }
                let _ = reply.send(result.map(|(_, local)| local));
            }
            Command::CreateLocalPair {
                a,
                b,
                format,
                reply,
            } => {
                let result = if self.ids.contains_key(&a) || self.ids.contains_key(&b) || a == b {
                    Err(DataplaneError::Io("leg id already in use".into()))
                } else {
                    let la = self.new_leg(
                        a,
                        LegKind::Local {
                            peer: b,
                            peer_slot: None,
                        },
                        format,
                    );
                    let lb = self.new_leg(
                        b,
                        LegKind::Local {
                            peer: a,
                            peer_slot: None,
                        },
                        format,
                    );
                    self.insert(la);
                    self.insert(lb);
                    Ok(())
                };
                let _ = reply.send(result);
            }
            Command::DestroyLeg { leg, reply } => {
                let result = match self.ids.get(&leg).copied() {
                    Some(slot) => {
                        let interval = self.rtcp_interval_ms;
                        if let Some(l) = self.slot_leg(slot) {
                            rtcp::bye(l, interval);
                        }
                        self.cancel_io(io, slot);
                        self.remove(slot);
                        Ok(())
                    }
                    None => Err(DataplaneError::Unknown),
                };
                let _ = reply.send(result);
            }
            Command::SetBridge {
                bridge,
                spec,
                reply,
            } => {
                let _ = reply.send(self.set_bridge(bridge, spec));
            }
            Command::DestroyBridge { bridge, reply } => {
                let result = match self.bridges.remove(&bridge) {
                    Some(old) => {
                        self.mixing.retain(|&b| b != bridge);
                        for m in &old.spec.members {
                            self.leave(m.leg, bridge);
                        }
                        Ok(())
                    }
                    None => Err(DataplaneError::Unknown),
                };
                let _ = reply.send(result);
            }
            Command::SetMute {
                leg,
                direction,
                on,
                reply,
            } => {
                let result = self.leg_mut(leg).map(|l| {
                    if matches!(direction, Direction::In | Direction::Both) {
                        l.mute_in = on;
                    }
                    if matches!(direction, Direction::Out | Direction::Both) {
                        l.mute_out = on;
                    }
                });
                let _ = reply.send(result);
            }
            Command::SetHold { leg, on, reply } => {
                let _ = reply.send(self.leg_mut(leg).map(|l| l.hold = on));
            }
            Command::Stats { leg, reply } => {
                let _ = reply.send(self.leg_mut(leg).map(|l| {
                    let mut stats = l.stats.clone();
                    if let LegKind::Rtp { socket, remote } = &l.kind {
                        stats.local = socket.local_addr().ok();
                        stats.remote = remote.map(|(addr, _)| addr);
                    }
                    stats.rx_lost = l.rx.lost();
                    stats.rx_jitter = l.rx.jitter();
                    stats.rx_ssrc = l.rx.ssrc().map(|s| s.0);
                    stats.tx_ssrc = l.out.last_sent().map(|_| l.out.ssrc().0);
                    stats.jitter_buffer = l.jitter.as_ref().map(|j| j.stats());
                    stats
                }));
            }
            Command::Detach { leg, reply } => {
                let result = match self.ids.get(&leg).copied() {
                    Some(slot) => {
                        self.cancel_io(io, slot);
                        self.remove(slot)
                            .map(LegTransfer)
                            .ok_or(DataplaneError::Unknown)
                    }
                    None => Err(DataplaneError::Unknown),
                };
                let _ = reply.send(result);
            }
            Command::Attach { leg, reply } => {
                let mut state = leg.0;
                state.bridge = None;
                state.mode = Mode::Drop;
                state.jitter = None;
                state.member_mute = false;
                state.announcer = false;
                state.out.switch_source();
                if let Some(r) = state.rtcp.as_deref_mut() {
                    r.due = None;
                }
                let is_rtp = matches!(state.kind, LegKind::Rtp { .. });
                let result = if self.ids.contains_key(&state.id) {
                    Err(DataplaneError::Io("leg id already in use".into()))
                } else {
                    let slot = self.insert(state);
                    if is_rtp {
                        self.arm_recv(io, slot);
                    }
                    Ok(())
                };
                let _ = reply.send(result);
            }
            Command::Shutdown => return false,
        }
        true
    }

    fn leg_mut(&mut self, leg: LegId) -> Result<&mut Leg, DataplaneError> {
        let slot = *self.ids.get(&leg).ok_or(DataplaneError::Unknown)?;
        self.slot_leg(slot).ok_or(DataplaneError::Unknown)
    }

    fn slot_leg(&mut self, slot: u32) -> Option<&mut Leg> {
        self.media.leg(slot)
    }

    fn new_leg(&mut self, id: LegId, kind: LegKind, format: Format) -> Box<Leg> {
        let out = OutStream::new(
            Ssrc(self.rng.next_u32()),
            SeqNo(self.rng.next_u32() as u16),
            RtpTimestamp(self.rng.next_u32()),
            format.clock_rate(),
        );
        Box::new(Leg {
            id,
            kind,
            format,
            out,
            mute_in: false,
            mute_out: false,
            member_mute: false,
            announcer: false,
            hold: false,
            bridge: None,
            mode: Mode::Drop,
            jitter: None,
            rx: ReceiveState::new(),
            stats: RtpStats::default(),
            rtcp: None,
        })
    }

    /// Puts a leg in a free slot and links Local halves; returns the slot.
    fn insert(&mut self, leg: Box<Leg>) -> u32 {
        let id = leg.id;
        let peer = match &leg.kind {
            LegKind::Local { peer, .. } => Some(*peer),
            LegKind::Rtp { .. } => None,
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.media.slots.push(Slot { gen: 0, leg: None });
                self.media.slots.len() as u32 - 1
            }
        };
        let entry = &mut self.media.slots[slot as usize];
        entry.gen = entry.gen.wrapping_add(1) & 0x0fff_ffff;
        entry.leg = Some(leg);
        self.ids.insert(id, slot);
        if let Some(peer) = peer {
            let peer_slot = self.ids.get(&peer).copied();
            self.set_peer_slot(slot, peer_slot);
            if let Some(ps) = peer_slot {
                self.set_peer_slot(ps, Some(slot));
            }
        }
        slot
    }

    fn set_peer_slot(&mut self, slot: u32, value: Option<u32>) {
        if let Some(Leg {
            kind: LegKind::Local { peer_slot, .. },
            ..
        }) = self.slot_leg(slot)
        {
            *peer_slot = value;
        }
    }

    /// Takes a leg out of its slot (and out of the forwarding of others).
    fn remove(&mut self, slot: u32) -> Option<Box<Leg>> {
        let entry = self.media.slots.get_mut(slot as usize)?;
        let leg = entry.leg.take()?;
        entry.gen = entry.gen.wrapping_add(1) & 0x0fff_ffff;
        self.ids.remove(&leg.id);
        self.free.push(slot);
        if let LegKind::Local {
            peer_slot: Some(ps),
            ..
        } = leg.kind
        {
            self.set_peer_slot(ps, None);
        }
        for entry in &mut self.media.slots {
            if let Some(other) = entry.leg.as_deref_mut() {
                if other.mode.target() == Some(slot) {
                    other.mode = Mode::Drop;
                }
            }
        }
        Some(leg)
    }

    /// Binds the next free even/odd port pair of the shard's slice: RTP on
    /// the even port, RTCP on the odd one. A pair with either port taken is
    /// skipped.
    fn create_rtp_leg(
        &mut self,
        leg: LegId,
        spec: LegSpec,
    ) -> Result<(u32, SocketAddr), DataplaneError> {
        if self.ids.contains_key(&leg) {
            return Err(DataplaneError::Io("leg id already in use".into()));
        }
        let (lo, hi) = (u32::from(*self.ports.start()), u32::from(*self.ports.end()));
        let first = lo + (lo & 1);
        let pairs = if first + 1 > hi {
            0
        } else {
            (hi - first).div_ceil(2)
        };
        let io_err = |e: std::io::Error| DataplaneError::Io(e.to_string());
        for _ in 0..pairs {
            let mut port = u32::from(self.next_port) & !1;
            if port < first || port + 1 > hi {
                port = first;
            }
            self.next_port = if port + 3 > hi { first } else { port + 2 } as u16;
            let in_use = |e: &std::io::Error| e.kind() == std::io::ErrorKind::AddrInUse;
            let socket = match UdpSocket::bind((self.bind_ip, port as u16)) {
                Ok(s) => s,
                Err(e) if in_use(&e) => continue,
                Err(e) => return Err(io_err(e)),
            };
            let rtcp_socket = match UdpSocket::bind((self.bind_ip, port as u16 + 1)) {
                Ok(s) => s,
                Err(e) if in_use(&e) => continue,
                Err(e) => return Err(io_err(e)),
            };
            let local = socket.local_addr().map_err(io_err)?;
            let remote = (!uring::is_unspecified(&spec.remote))
                .then(|| (spec.remote, RawAddr::new(spec.remote)));
            let mut state = self.new_leg(leg, LegKind::Rtp { socket, remote }, spec.format);
            state.rtcp = Some(Box::new(RtcpLeg::new(rtcp_socket)));
            let slot = self.insert(state);
            return Ok((slot, local));
        }
        Err(DataplaneError::NoPorts)
    }

    /// Applies a bridge's desired state: chooses its technology
    /// ([`bridge::choose`]), sets each member's mode, builds the mix, and
    /// sizes the transmit pool. All allocation of a bridge's media state
    /// happens here, on the control path.
    fn set_bridge(
        &mut self,
        key: BridgeKey,
        spec: BridgeSpec,
    ) -> Result<Technology, DataplaneError> {
        if spec.members.iter().any(|m| !self.ids.contains_key(&m.leg)) {
            return Err(DataplaneError::Unknown);
        }
        let old = self.bridges.remove(&key);
        self.mixing.retain(|&b| b != key);
        if let Some(old) = &old {
            for m in &old.spec.members {
                if !spec.members.iter().any(|n| n.leg == m.leg) {
                    self.leave(m.leg, key);
                }
            }
        }
        let formats: Vec<Format> = spec
            .members
            .iter()
            .filter_map(|m| self.leg_mut(m.leg).ok().map(|l| l.format))
            .collect();
        let slots: Vec<u32> = spec
            .members
            .iter()
            .filter_map(|m| self.ids.get(&m.leg).copied())
            .collect();
        let (technology, plan) = bridge::choose(&spec, &formats);
        let changed = old.as_ref().map(|o| o.technology) != Some(technology);
        let (tick_ms, shard) = (self.tick_ms, self.index);
        for (i, m) in spec.members.iter().enumerate() {
            // The partner in a two-party bridge; an announcer hears no one.
            let other = 1 - i.min(1);
            let partner = match (slots.get(other), spec.members.get(other)) {
                (Some(&to), Some(o)) if !o.announcer && other != i => Some(to),
                _ => None,
            };
            let partner_format = formats.get(other).copied();
            let Ok(leg) = self.leg_mut(m.leg) else {
                continue;
            };
            let previous = std::mem::replace(&mut leg.mode, Mode::Drop);
            leg.mode = match (plan, partner, partner_format) {
                (Plan::Relay, Some(to), _) => Mode::Relay { to },
                (Plan::Transcode, Some(to), Some(to_format)) => match previous {
                    // Same direction as before: keep the codec state.
                    Mode::Transcode(path)
                        if path.to == to
                            && path.tc.from_format() == leg.format
                            && path.tc.to_format() == to_format =>
                    {
                        Mode::Transcode(path)
                    }
                    _ => match Transcoder::new(leg.format, to_format) {
                        Ok(tc) => Mode::Transcode(Box::new(TranscodePath {
                            to,
                            tc,
                            last_seq: None,
                        })),
                        Err(e) => {
                            tracing::warn!(shard, "transcoder: {e}");
                            Mode::Drop
                        }
                    },
                },
                (Plan::Mix { holding }, _, _) if !holding || m.announcer => Mode::Mix,
                _ => Mode::Drop,
            };
            if matches!(leg.mode, Mode::Mix) {
                if leg.jitter.is_none() {
                    leg.jitter = Some(Box::new(JitterBuffer::new(
                        JITTER_SLOTS,
                        mixing::max_payload(leg.format, tick_ms),
                        1,
                        JITTER_MAX_DELAY,
                    )));
                }
            } else {
                leg.jitter = None;
            }
            leg.bridge = Some(key);
            leg.member_mute = m.mute;
            leg.announcer = m.announcer;
            if changed {
                leg.out.switch_source();
            }
        }
        let mix = match plan {
            Plan::Mix { holding } => {
                let members: Vec<MemberPlan> = spec
                    .members
                    .iter()
                    .zip(&slots)
                    .zip(&formats)
                    .map(|((m, &slot), &format)| MemberPlan {
                        slot,
                        gen: self.media.gen(slot),
                        format,
                        speaks: !holding || m.announcer,
                        hears: !m.announcer,
                    })
                    .collect();
                match MixState::new(&members, tick_ms) {
                    Ok(mix) => Some(Box::new(mix)),
                    Err(e) => {
                        tracing::warn!(shard = self.index, "mix: {e}");
                        None
                    }
                }
            }
            _ => None,
        };
        if mix.is_some() {
            self.mixing.push(key);
        }
        self.bridges.insert(
            key,
            Bridge {
                spec,
                technology,
                plan,
                mix,
            },
        );
        let producing: usize = self
            .bridges
            .values()
            .filter(|b| matches!(b.plan, Plan::Transcode | Plan::Mix { .. }))
            .map(|b| b.spec.members.len())
            .sum();
        self.media
            .pool
            .reserve(TX_POOL_BASE + TX_POOL_PER_MEMBER * producing);
        Ok(technology)
    }

    /// `leg` is no longer a member of `bridge`.
    fn leave(&mut self, leg: LegId, bridge: BridgeKey) {
        if let Ok(l) = self.leg_mut(leg) {
            if l.bridge == Some(bridge) {
                l.bridge = None;
                l.mode = Mode::Drop;
                l.jitter = None;
                l.member_mute = false;
                l.announcer = false;
                l.out.switch_source();
            }
        }
    }

    /// Arms the multishot receives of the RTP leg in `slot` (RTP and RTCP).
    fn arm_recv(&mut self, io: &mut Io, slot: u32) {
        self.arm(io, slot, false);
        self.arm(io, slot, true);
    }

    /// Arms the multishot receive of the RTP (or RTCP) socket of the leg in
    /// `slot`.
    fn arm(&mut self, io: &mut Io, slot: u32, rtcp: bool) {
        let gen = self.media.gen(slot);
        let Some(Leg {
            kind: LegKind::Rtp { socket, .. },
            rtcp: rtcp_leg,
            ..
        }) = self.slot_leg(slot)
        else {
            return;
        };
        let (fd, op) = if rtcp {
            let Some(r) = rtcp_leg.as_deref() else {
                return;
            };
            (r.socket.as_raw_fd(), Op::RecvRtcp { slot, gen })
        } else {
            (socket.as_raw_fd(), Op::Recv { slot, gen })
        };
        let entry = opcode::RecvMsgMulti::new(types::Fd(fd), &*io.recv_msg, BGID)
            .build()
            .user_data(op.encode());
        io.push(entry);
    }

    /// Cancels every operation on the socket of the leg in `slot`.
    fn cancel_io(&mut self, io: &mut Io, slot: u32) {
        if let Some(Leg {
            kind: LegKind::Rtp { socket, .. },
            rtcp,
            ..
        }) = self.slot_leg(slot)
        {
            let fds = [
                Some(socket.as_raw_fd()),
                rtcp.as_deref().map(|r| r.socket.as_raw_fd()),
            ];
            // Queued but unsubmitted operations must reach the kernel first.
            let _ = io.ring.submit();
            for fd in fds.into_iter().flatten() {
                let _ = io
                    .ring
                    .submitter()
                    .register_sync_cancel(None, types::CancelBuilder::fd(types::Fd(fd)).all());
            }
        }
    }

    fn on_recv(
        &mut self,
        io: &mut Io,
        now: Instant,
        slot: u32,
        gen: u32,
        rtcp: bool,
        cqe: &cqueue::Entry,
    ) {
        let current = self
            .media
            .slots
            .get(slot as usize)
            .is_some_and(|s| s.gen == gen && s.leg.is_some());
        let mut kept = false;
        if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
            if current && cqe.result() >= 0 {
                let filled = cqe.result() as usize;
                kept = if rtcp {
                    self.on_rtcp_datagram(io, now, slot, bid, filled)
                } else {
                    self.on_datagram(io, now, slot, bid, filled)
                };
            }
            if !kept {
                io.bufs.recycle(bid);
            }
        }
        if current && !cqueue::more(cqe.flags()) && cqe.result() != -libc::ECANCELED {
            self.rearm.push((slot, rtcp));
        }
    }

    fn on_sent(&mut self, io: &mut Io, bid: u16, result: i32) {
        if result < 0 {
            let tx = self.media.rx_tx[usize::from(bid.min(uring::BUFFERS - 1))];
            if let Some(leg) = self.media.leg_gen(tx.slot, tx.gen) {
                leg.stats.tx_errors += 1;
            }
        }
        io.bufs.recycle(bid);
    }

    /// One datagram in buffer `bid` for the leg in `slot`; true when the
    /// buffer was handed on to the media path (which then owns it).
    fn on_datagram(
        &mut self,
        io: &mut Io,
        now: Instant,
        slot: u32,
        bid: u16,
        filled: usize,
    ) -> bool {
        let Some(received) = uring::parse_received(io.bufs.buffer(bid), filled) else {
            return false;
        };
        let since_epoch = self.media.nanos(now);
        let Some(leg) = self.media.leg(slot) else {
            return false;
        };
        leg.stats.rx_packets += 1;
        leg.stats.rx_octets += received.len as u64;
        if let LegKind::Rtp { remote, .. } = &mut leg.kind {
            match (remote.as_ref(), received.source) {
                (Some((addr, _)), Some(source)) if *addr == source => {}
                (None, Some(source)) => *remote = Some((source, RawAddr::new(source))),
                _ => {
                    leg.stats.rx_wrong_source += 1;
                    return false;
                }
            }
        }
        let format_pt = leg.format.payload_type();
        let buf = &io.bufs.buffer(bid)[received.offset..received.offset + received.len];
        if received.truncated {
            leg.stats.rx_bad += 1;
            return false;
        }
        if looks_like_rtcp(buf) {
            if !rtcp::absorb(leg, buf, now) {
                leg.stats.rx_bad += 1;
                return false;
            }
            if let Some(r) = leg.rtcp.as_deref_mut() {
                r.mux = true;
            }
            let packet = Packet {
                buf: Buf::Rx {
                    bid,
                    offset: received.offset,
                },
                len: received.len,
            };
            return rtcp::relay(&mut self.media, io, slot, packet);
        }
        let Ok(packet) = RtpPacket::parse(buf) else {
            leg.stats.rx_bad += 1;
            return false;
        };
        let Pt(pt) = packet.pt();
        if pt != format_pt && pt != PT_CN && pt != PT_TELEPHONE_EVENT {
            leg.stats.rx_bad += 1;
            return false;
        }
        if pt == format_pt {
            let arrival =
                (since_epoch * u128::from(leg.format.clock_rate()) / 1_000_000_000) as u32;
            leg.rx
                .record(packet.ssrc(), packet.seq(), packet.timestamp(), arrival);
        }
        self.media.ingest(
            io,
            now,
            slot,
            Packet {
                buf: Buf::Rx {
                    bid,
                    offset: received.offset,
                },
                len: received.len,
            },
        );
        true
    }
}

impl Shard {
    /// One datagram in buffer `bid` on the RTCP socket of the leg in `slot`
    /// (see [`super::rtcp`]); true when it was relayed (the send owns the
    /// buffer).
    fn on_rtcp_datagram(
        &mut self,
        io: &mut Io,
        now: Instant,
        slot: u32,
        bid: u16,
        filled: usize,
    ) -> bool {
        let Some(received) = uring::parse_received(io.bufs.buffer(bid), filled) else {
            return false;
        };
        let Some(leg) = self.media.leg(slot) else {
            return false;
        };
        let from_remote = match (&leg.kind, received.source) {
            (
                LegKind::Rtp {
                    remote: Some((addr, _)),
                    ..
                },
                Some(source),
            ) => addr.ip() == source.ip(),
            _ => false,
        };
        let buf = &io.bufs.buffer(bid)[received.offset..received.offset + received.len];
        if !from_remote || received.truncated || !rtcp::absorb(leg, buf, now) {
            leg.stats.rx_rtcp_bad += 1;
            return false;
        }
        if let (Some(r), Some(source)) = (leg.rtcp.as_deref_mut(), received.source) {
            if r.remote.map(|(a, _)| a) != Some(source) {
                r.remote = Some((source, RawAddr::new(source)));
            }
        }
        let packet = Packet {
            buf: Buf::Rx {
                bid,
                offset: received.offset,
            },
            len: received.len,
        };
        rtcp::relay(&mut self.media, io, slot, packet)
    }
}

impl Io {
    fn new() -> std::io::Result<Io> {
        let ring = uring::new_ring(RING_ENTRIES)?;
        let bufs = BufRing::register(&ring)?;
        // SAFETY: msghdr is plain data; all-zero is valid (no name, no iov).
        let mut recv_msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_msg.msg_namelen = uring::NAME_LEN as libc::socklen_t;
        Ok(Io {
            ring,
            bufs,
            wake_buf: Box::new(0),
            timespec: Box::new(types::Timespec::new()),
            recv_msg,
            cqes: Vec::with_capacity(CQE_BATCH),
        })
    }

    /// Queues `entry`, submitting first when the submission queue is full.
    pub(super) fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry we build points only at memory that stays
            // valid until its completion: the shard's boxed msghdr, wake
            // buffer and timespec (owned by `Io`, dropped after the ring's
            // operations are cancelled), and receive buffers owned by the
            // shard until the send completes.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            if self.ring.submit().is_err() {
                return;
            }
        }
    }

    fn arm_wake(&mut self, wake: &OwnedFd) {
        let entry = opcode::Read::new(
            types::Fd(wake.as_raw_fd()),
            (&mut *self.wake_buf as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(Op::Wake.encode());
        self.push(entry);
    }

    fn arm_tick(&mut self, tick: Duration) {
        *self.timespec = types::Timespec::from(tick);
        let entry = opcode::Timeout::new(&*self.timespec)
            .count(0)
            .flags(types::TimeoutFlags::MULTISHOT)
            .build()
            .user_data(Op::Tick.encode());
        self.push(entry);
    }
}

/// Pins the calling thread to core `index` (modulo the cores present).
fn pin_to_core(index: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: cpu_set_t is a plain bitmask; zeroed is its empty value, CPU_SET
    // writes within it for an index below CPU_SETSIZE, and sched_setaffinity
    // reads exactly size_of::<cpu_set_t>() bytes from it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(index % cores, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(shard = index, "could not pin shard thread to its core");
        }
    }
}
