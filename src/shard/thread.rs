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
//! # Relay (native_rtp and same-format simple_bridge)
//! A bridge with exactly two members of one format (not holding) gives each
//! member a `forward` slot, decided once per membership change. A datagram
//! received on leg A is checked (source, RTP validity, payload type),
//! rewritten in place with the SSRC/seq/ts of the target's outgoing
//! [`OutStream`] and sent to the target's remote from the receive buffer.
//! The payload is never touched. Three or more members (softmix) and mixed
//! formats (transcoding) forward nothing until the mixer and codecs land.
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
//! and telephone-event (101) are counted in `rx_bad` and dropped; RTCP on the
//! RTP port (RFC 5761 demux) is counted in `rx_rtcp` and not relayed.
//!
//! # Mute and hold
//! `mute in` (or a bridge member joined muted) and `hold` drop what the leg
//! sends (`rx_dropped`); `mute out` sends nothing to it (`tx_dropped`).
//!
//! # Local pairs
//! A Local channel pair is two socketless legs: what is forwarded to one half
//! comes out of the other, which forwards it on in its own bridge, on the
//! same shard, without a copy (at most [`MAX_HOPS`] halves in a chain).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::uring::{self, BufRing, Op, RawAddr, BGID};
use super::{
    BridgeKey, BridgeSpec, Command, DataplaneError, Direction, LegId, LegSpec, LegTransfer,
    RtpStats, Technology,
};
use crate::media::Format;
use crate::rtp::packet::looks_like_rtcp;
use crate::rtp::xorshift::XorShift;
use crate::rtp::{OutStream, Pt, RtpPacketMut, RtpTimestamp, SeqNo, Ssrc};

/// Longest chain of Local pair halves a packet may cross.
const MAX_HOPS: usize = 4;
/// Completions handled per loop turn.
const CQE_BATCH: usize = 512;
/// Submission queue entries.
const RING_ENTRIES: u32 = 1024;
/// Payload type of CN, accepted on every leg.
const PT_CN: u8 = 13;
/// Payload type of telephone-event crossbar uses.
const PT_TELEPHONE_EVENT: u8 = 101;

/// What carries a leg's media.
#[derive(Debug)]
enum LegKind {
    /// An RTP socket, with its remote (learned when `None`).
    Rtp {
        socket: UdpSocket,
        remote: Option<(SocketAddr, RawAddr)>,
    },
    /// A Local channel half; `peer_slot` is the other half on this shard.
    Local { peer: LegId, peer_slot: Option<u32> },
}

impl std::fmt::Debug for RawAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawAddr")
    }
}

/// A leg as the shard holds it (moved whole between shards).
#[derive(Debug)]
pub(super) struct Leg {
    id: LegId,
    kind: LegKind,
    format: Format,
    out: OutStream,
    mute_in: bool,
    mute_out: bool,
    member_mute: bool,
    hold: bool,
    bridge: Option<BridgeKey>,
    /// Where relayed media goes: a slot on this shard.
    forward: Option<u32>,
    stats: RtpStats,
}

/// A slot of the leg table: a generation guards against stale completions.
struct Slot {
    gen: u32,
    leg: Option<Box<Leg>>,
}

/// A bridge as the shard holds it.
struct Bridge {
    spec: BridgeSpec,
    technology: Technology,
}

/// Per receive buffer: who a send from it was for, and the destination.
#[derive(Clone, Copy)]
struct TxSlot {
    slot: u32,
    gen: u32,
    dest: Option<RawAddr>,
}

/// A shard's state.
pub(super) struct Shard {
    index: usize,
    bind_ip: IpAddr,
    ports: RangeInclusive<u16>,
    next_port: u16,
    tick: Duration,
    rng: XorShift,
    slots: Vec<Slot>,
    free: Vec<u32>,
    ids: HashMap<LegId, u32>,
    bridges: HashMap<BridgeKey, Bridge>,
    tx: Vec<TxSlot>,
    rearm: Vec<u32>,
}

/// The I/O half of a running shard.
struct Io {
    ring: IoUring,
    bufs: BufRing,
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
            rng: XorShift::new(seed),
            slots: Vec::new(),
            free: Vec::new(),
            ids: HashMap::new(),
            bridges: HashMap::new(),
            tx: vec![
                TxSlot {
                    slot: 0,
                    gen: 0,
                    dest: None
                };
                usize::from(uring::BUFFERS)
            ],
            rearm: Vec::with_capacity(64),
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
                    Some(Op::Recv { slot, gen }) => self.on_recv(&mut io, now, slot, gen, &cqe),
                    Some(Op::Send { bid }) => self.on_sent(&mut io, bid, cqe.result()),
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
                        self.on_tick(now);
                    }
                    None => {}
                }
                if !running {
                    break;
                }
            }
            io.bufs.publish();
            while let Some(slot) = self.rearm.pop() {
                self.arm_recv(&mut io, slot);
            }
        }
        // Close every socket's operations before the buffers go away.
        for slot in 0..self.slots.len() as u32 {
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

    /// The mix tick: the hook where softmix and playback produce frames.
    /// Relays need nothing from it.
    fn on_tick(&mut self, _now: Instant) {}

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
                state.forward = None;
                state.member_mute = false;
                state.out.switch_source();
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
        self.slots.get_mut(slot as usize)?.leg.as_deref_mut()
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
            hold: false,
            bridge: None,
            forward: None,
            stats: RtpStats::default(),
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
                self.slots.push(Slot { gen: 0, leg: None });
                self.slots.len() as u32 - 1
            }
        };
        let entry = &mut self.slots[slot as usize];
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
        let leg = self.slots.get_mut(slot as usize)?.leg.take()?;
        self.slots[slot as usize].gen = self.slots[slot as usize].gen.wrapping_add(1) & 0x0fff_ffff;
        self.ids.remove(&leg.id);
        self.free.push(slot);
        if let LegKind::Local {
            peer_slot: Some(ps),
            ..
        } = leg.kind
        {
            self.set_peer_slot(ps, None);
        }
        for entry in &mut self.slots {
            if let Some(other) = entry.leg.as_deref_mut() {
                if other.forward == Some(slot) {
                    other.forward = None;
                }
            }
        }
        Some(leg)
    }

    /// Binds the next free even port of the shard's slice.
    fn create_rtp_leg(
        &mut self,
        leg: LegId,
        spec: LegSpec,
    ) -> Result<(u32, SocketAddr), DataplaneError> {
        if self.ids.contains_key(&leg) {
            return Err(DataplaneError::Io("leg id already in use".into()));
        }
        let (lo, hi) = (*self.ports.start(), *self.ports.end());
        let slots = u32::from(hi - lo) / 2 + 1;
        for _ in 0..slots {
            let port = self.next_port & !1;
            let port = if port < lo { lo + (lo & 1) } else { port };
            self.next_port = if u32::from(port) + 2 > u32::from(hi) {
                lo
            } else {
                port + 2
            };
            match UdpSocket::bind((self.bind_ip, port)) {
                Ok(socket) => {
                    let local = socket
                        .local_addr()
                        .map_err(|e| DataplaneError::Io(e.to_string()))?;
                    let remote = (!uring::is_unspecified(&spec.remote))
                        .then(|| (spec.remote, RawAddr::new(spec.remote)));
                    let state = self.new_leg(leg, LegKind::Rtp { socket, remote }, spec.format);
                    let slot = self.insert(state);
                    return Ok((slot, local));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(DataplaneError::Io(e.to_string())),
            }
        }
        Err(DataplaneError::NoPorts)
    }

    /// Applies a bridge's desired state; chooses its technology and the
    /// forwarding of its members.
    fn set_bridge(
        &mut self,
        key: BridgeKey,
        spec: BridgeSpec,
    ) -> Result<Technology, DataplaneError> {
        if spec.members.iter().any(|m| !self.ids.contains_key(&m.leg)) {
            return Err(DataplaneError::Unknown);
        }
        let old = self.bridges.remove(&key);
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
        let same_format = formats.windows(2).all(|w| w[0] == w[1]);
        let relay = !spec.holding && spec.members.len() == 2 && same_format;
        let technology = if spec.holding {
            Technology::HoldingBridge
        } else if relay && !spec.dtmf_events && !spec.proxy_media {
            Technology::NativeRtp
        } else {
            Technology::SimpleBridge
        };
        let changed = old.as_ref().map(|o| o.technology) != Some(technology);
        let slots: Vec<u32> = spec
            .members
            .iter()
            .filter_map(|m| self.ids.get(&m.leg).copied())
            .collect();
        for (i, m) in spec.members.iter().enumerate() {
            let forward = if relay {
                slots.get(1 - i.min(1)).copied()
            } else {
                None
            };
            if let Ok(leg) = self.leg_mut(m.leg) {
                leg.bridge = Some(key);
                leg.member_mute = m.mute;
                leg.forward = forward;
                if changed {
                    leg.out.switch_source();
                }
            }
        }
        self.bridges.insert(key, Bridge { spec, technology });
        Ok(technology)
    }

    /// `leg` is no longer a member of `bridge`.
    fn leave(&mut self, leg: LegId, bridge: BridgeKey) {
        if let Ok(l) = self.leg_mut(leg) {
            if l.bridge == Some(bridge) {
                l.bridge = None;
                l.forward = None;
                l.member_mute = false;
                l.out.switch_source();
            }
        }
    }

    /// Arms the multishot receive of the RTP leg in `slot`.
    fn arm_recv(&mut self, io: &mut Io, slot: u32) {
        let gen = self.slots.get(slot as usize).map_or(0, |s| s.gen);
        let Some(Leg {
            kind: LegKind::Rtp { socket, .. },
            ..
        }) = self.slot_leg(slot)
        else {
            return;
        };
        let entry = opcode::RecvMsgMulti::new(types::Fd(socket.as_raw_fd()), &*io.recv_msg, BGID)
            .build()
            .user_data(Op::Recv { slot, gen }.encode());
        io.push(entry);
    }

    /// Cancels every operation on the socket of the leg in `slot`.
    fn cancel_io(&mut self, io: &mut Io, slot: u32) {
        if let Some(Leg {
            kind: LegKind::Rtp { socket, .. },
            ..
        }) = self.slot_leg(slot)
        {
            let fd = socket.as_raw_fd();
            // Queued but unsubmitted operations must reach the kernel first.
            let _ = io.ring.submit();
            let _ = io
                .ring
                .submitter()
                .register_sync_cancel(None, types::CancelBuilder::fd(types::Fd(fd)).all());
        }
    }

    fn on_recv(&mut self, io: &mut Io, now: Instant, slot: u32, gen: u32, cqe: &cqueue::Entry) {
        let current = self
            .slots
            .get(slot as usize)
            .is_some_and(|s| s.gen == gen && s.leg.is_some());
        let mut kept = false;
        if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
            if current && cqe.result() >= 0 {
                kept = self.on_datagram(io, now, slot, bid, cqe.result() as usize);
            }
            if !kept {
                io.bufs.recycle(bid);
            }
        }
        if current && !cqueue::more(cqe.flags()) && cqe.result() != -libc::ECANCELED {
            self.rearm.push(slot);
        }
    }

    fn on_sent(&mut self, io: &mut Io, bid: u16, result: i32) {
        if result < 0 {
            let tx = self.tx[usize::from(bid)];
            if self
                .slots
                .get(tx.slot as usize)
                .is_some_and(|s| s.gen == tx.gen)
            {
                if let Some(leg) = self.slot_leg(tx.slot) {
                    leg.stats.tx_errors += 1;
                }
            }
        }
        io.bufs.recycle(bid);
    }

    /// One datagram in buffer `bid` for the leg in `slot`; true when the
    /// buffer was handed to a send.
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
        let Some(leg) = self.slot_leg(slot) else {
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
        let buf = &mut io.bufs.buffer(bid)[received.offset..received.offset + received.len];
        if received.truncated {
            leg.stats.rx_bad += 1;
            return false;
        }
        if looks_like_rtcp(buf) {
            if crate::rtp::rtcp::summarize(buf).is_ok() {
                leg.stats.rx_rtcp += 1;
            } else {
                leg.stats.rx_bad += 1;
            }
            return false;
        }
        let Ok(mut packet) = RtpPacketMut::parse(buf) else {
            leg.stats.rx_bad += 1;
            return false;
        };
        let Pt(pt) = packet.view().pt();
        if pt != format_pt && pt != PT_CN && pt != PT_TELEPHONE_EVENT {
            leg.stats.rx_bad += 1;
            return false;
        }
        let mut from = slot;
        for _ in 0..MAX_HOPS {
            let Some(sender) = self.slot_leg(from) else {
                return false;
            };
            if sender.mute_in || sender.member_mute || sender.hold {
                sender.stats.rx_dropped += 1;
                return false;
            }
            let Some(to) = sender.forward else {
                sender.stats.rx_dropped += 1;
                return false;
            };
            let gen = self.slots.get(to as usize).map_or(0, |s| s.gen);
            let Some(target) = self.slot_leg(to) else {
                return false;
            };
            if target.mute_out {
                target.stats.tx_dropped += 1;
                return false;
            }
            match &target.kind {
                LegKind::Rtp { socket, remote } => {
                    let Some((_, dest)) = remote else {
                        target.stats.tx_dropped += 1;
                        return false;
                    };
                    let (fd, dest) = (socket.as_raw_fd(), *dest);
                    target.out.rewrite(now, &mut packet);
                    target.stats.tx_packets += 1;
                    target.stats.tx_octets += received.len as u64;
                    self.tx[usize::from(bid)] = TxSlot {
                        slot: to,
                        gen,
                        dest: Some(dest),
                    };
                    let dest = self.tx[usize::from(bid)]
                        .dest
                        .as_ref()
                        .map_or(std::ptr::null(), |d| d.as_ptr());
                    let bytes = packet.view().as_bytes();
                    let entry =
                        opcode::Send::new(types::Fd(fd), bytes.as_ptr(), bytes.len() as u32)
                            .dest_addr(dest)
                            .dest_addr_len(self.tx[usize::from(bid)].dest.map_or(0, |d| d.len()))
                            .build()
                            .user_data(Op::Send { bid }.encode());
                    io.push(entry);
                    return true;
                }
                LegKind::Local { peer_slot, .. } => {
                    let Some(peer) = *peer_slot else {
                        target.stats.tx_dropped += 1;
                        return false;
                    };
                    target.stats.tx_packets += 1;
                    target.stats.tx_octets += received.len as u64;
                    if let Some(p) = self.slot_leg(peer) {
                        p.stats.rx_packets += 1;
                        p.stats.rx_octets += received.len as u64;
                    }
                    from = peer;
                }
            }
        }
        false
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
    fn push(&mut self, entry: squeue::Entry) {
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
