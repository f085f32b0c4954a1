//! The per-packet media path of a shard: the leg table, what a leg does with
//! the media it receives ([`Mode`]), and the transmit pool for frames the
//! shard produces itself.
//!
//! # Ingest
//! A media packet a leg *receives* — from its socket, or, for a Local half,
//! what its peer half's bridge sent to the peer — goes to [`Media::ingest`]
//! with the buffer it sits in. The leg's [`Mode`], chosen by its bridge on
//! every `set_bridge` (see `bridge.rs`), decides what happens:
//! - [`Mode::Drop`]: nothing to forward to (0–1 members, a holding
//!   participant, a partner that is an announcer); counted in `rx_dropped`.
//! - [`Mode::Relay`]: the header is rewritten in place with the target's
//!   [`OutStream`] and the datagram is sent from the buffer it arrived in
//!   (`native_rtp`; also a same-format `simple_bridge` with `dtmf_events` or
//!   `proxy_media`, where the payload — telephone-events included — passes
//!   through unchanged: nothing in crossbar inspects DTMF yet, so decoding
//!   would only cost CPU and quality).
//! - [`Mode::Transcode`]: decode → resample → encode into a pool buffer
//!   (`simple_bridge` between two formats), sent with a header from the
//!   target's [`OutStream`] as a locally produced frame (seq + 1, timestamp +
//!   the frame's duration at the target's clock; a gap in the input sequence
//!   leaves the same gap in the output timestamps). Packets older than the
//!   last one transcoded, CN and telephone-events are dropped.
//! - [`Mode::Mix`]: the payload is copied into the leg's jitter buffer; the
//!   bridge's mix tick (`mixing.rs`) takes one frame per tick.
//!
//! A Local half as the target passes the packet on to its peer half, which
//! ingests it in turn (at most [`MAX_HOPS`] halves in a chain).
//!
//! # Buffer ownership
//! [`Media::ingest`] owns the buffer it is handed: it either gives it to a
//! send (whose completion frees it: a receive buffer goes back to the
//! kernel's ring, a pool buffer to the pool) or releases it before
//! returning. Nothing is copied on the relay path.
//!
//! # Transmit pool
//! [`TxPool`] holds buffers of a fixed size for produced frames, each boxed
//! together with the destination address of its send, so neither moves while
//! the kernel reads them. It grows only on `set_bridge` (control path), never
//! per packet; when it is empty a frame is dropped and counted
//! (`tx_dropped`).
//!
//! # Mute and hold
//! `mute in`, a member joined muted, and `hold` drop what the leg sends
//! (`rx_dropped`); `mute out` sends nothing to it (`tx_dropped`). The same
//! checks hold on every path (relay, transcode, mix).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Instant;

use io_uring::{opcode, types};

use super::thread::Io;
use super::uring::{Op, RawAddr};
use super::{BridgeKey, LegId, RtpStats};
use crate::codec::Transcoder;
use crate::jitter::JitterBuffer;
use crate::media::Format;
use crate::rtp::{OutStream, Pt, ReceiveState, RtpPacket, RtpPacketMut, SeqNo};

/// Longest chain of Local pair halves a packet may cross.
pub(super) const MAX_HOPS: usize = 4;
/// Payload type of CN, accepted on every leg.
pub(super) const PT_CN: u8 = 13;
/// Payload type of telephone-event crossbar uses.
pub(super) const PT_TELEPHONE_EVENT: u8 = 101;
/// Bytes of the RTP header the shard writes (no CSRC, no extension).
pub(super) const HEADER_LEN: usize = 12;
/// A jump in input sequence numbers longer than this is a new stream, not
/// loss: the output timestamp is not advanced for it.
const MAX_GAP: i16 = 50;

/// What carries a leg's media.
#[derive(Debug)]
pub(super) enum LegKind {
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

/// The RTCP side of an RTP leg (RFC 3550 §6): its socket on the odd port
/// next to the RTP port, where reports go, and the report schedule.
#[derive(Debug)]
pub(super) struct RtcpLeg {
    pub socket: UdpSocket,
    /// Where RTCP is sent: the source of the last valid RTCP received on the
    /// RTCP port, else the remote's RTP port + 1 (set when first needed).
    pub remote: Option<(SocketAddr, RawAddr)>,
    /// The remote sent RTCP on the RTP port (rtcp-mux, RFC 5761): ours goes
    /// there too, from the RTP socket.
    pub mux: bool,
    /// When the next report of ours is due (`None`: not scheduled yet).
    pub due: Option<Instant>,
    /// Our packet count at the last report (an SR only if it moved).
    pub reported_packets: u64,
    /// LSR of the remote's last SR (middle 32 bits of its NTP time) and
    /// when it arrived, for the DLSR of our next report block.
    pub last_sr: Option<(u32, Instant)>,
}

impl RtcpLeg {
    pub(super) fn new(socket: UdpSocket) -> RtcpLeg {
        RtcpLeg {
            socket,
            remote: None,
            mux: false,
            due: None,
            reported_packets: 0,
            last_sr: None,
        }
    }
}

/// One direction of a two-party transcode: what the leg receives becomes
/// the format of the leg in slot `to`.
pub(super) struct TranscodePath {
    pub to: u32,
    pub tc: Transcoder,
    /// The last input sequence number transcoded.
    pub last_seq: Option<SeqNo>,
}

/// What a leg does with the media it receives.
pub(super) enum Mode {
    Drop,
    Relay { to: u32 },
    Transcode(Box<TranscodePath>),
    Mix,
}

impl Mode {
    /// The slot this mode sends to, if any.
    pub(super) fn target(&self) -> Option<u32> {
        match self {
            Mode::Relay { to } => Some(*to),
            Mode::Transcode(path) => Some(path.to),
            Mode::Drop | Mode::Mix => None,
        }
    }
}

/// A leg as the shard holds it (moved whole between shards).
pub(super) struct Leg {
    pub id: LegId,
    pub kind: LegKind,
    pub format: Format,
    /// The one outgoing stream of the leg, shared by relay, transcode and mix
    /// so that SSRC, seq and ts stay continuous across technology changes.
    pub out: OutStream,
    pub mute_in: bool,
    pub mute_out: bool,
    pub member_mute: bool,
    pub announcer: bool,
    pub hold: bool,
    pub bridge: Option<BridgeKey>,
    pub mode: Mode,
    /// Present while the leg is a member of a mixing bridge.
    pub jitter: Option<Box<JitterBuffer>>,
    /// Loss and jitter of what the leg's socket receives.
    pub rx: ReceiveState,
    pub stats: RtpStats,
    /// RTP legs only.
    pub rtcp: Option<Box<RtcpLeg>>,
}

/// A slot of the leg table: a generation guards against stale completions.
pub(super) struct Slot {
    pub gen: u32,
    pub leg: Option<Box<Leg>>,
}

/// Who a send was for (to count its failure) and its destination, which
/// must stay put until the send completes.
#[derive(Clone, Copy)]
pub(super) struct TxSlot {
    pub slot: u32,
    pub gen: u32,
    pub dest: Option<RawAddr>,
}

impl TxSlot {
    pub(super) const EMPTY: TxSlot = TxSlot {
        slot: 0,
        gen: 0,
        dest: None,
    };
}

struct TxBuf {
    data: Box<[u8]>,
    owner: TxSlot,
}

/// Buffers for frames the shard produces (see the module docs).
pub(super) struct TxPool {
    // Boxed on purpose: the kernel reads a buffer and its destination
    // address during a send, so they must not move when the pool grows.
    #[allow(clippy::vec_box)]
    bufs: Vec<Box<TxBuf>>,
    free: Vec<u32>,
    size: usize,
}

impl TxPool {
    /// An empty pool of buffers of `size` bytes.
    pub(super) fn new(size: usize) -> TxPool {
        TxPool {
            bufs: Vec::new(),
            free: Vec::new(),
            size,
        }
    }

    /// Grows the pool to at least `total` buffers (control path).
    pub(super) fn reserve(&mut self, total: usize) {
        self.free.reserve(total.saturating_sub(self.free.len()));
        while self.bufs.len() < total {
            self.free.push(self.bufs.len() as u32);
            self.bufs.push(Box::new(TxBuf {
                data: vec![0; self.size].into_boxed_slice(),
                owner: TxSlot::EMPTY,
            }));
        }
    }

    pub(super) fn take(&mut self) -> Option<u32> {
        self.free.pop()
    }

    pub(super) fn release(&mut self, index: u32) {
        if (index as usize) < self.bufs.len() && self.free.len() < self.bufs.len() {
            self.free.push(index);
        }
    }

    pub(super) fn data(&mut self, index: u32) -> &mut [u8] {
        match self.bufs.get_mut(index as usize) {
            Some(b) => &mut b.data,
            None => &mut [],
        }
    }

    pub(super) fn owner(&self, index: u32) -> TxSlot {
        self.bufs
            .get(index as usize)
            .map_or(TxSlot::EMPTY, |b| b.owner)
    }
}

/// Where a packet sits.
#[derive(Clone, Copy, Debug)]
pub(super) enum Buf {
    /// In receive buffer `bid`, at `offset`.
    Rx { bid: u16, offset: usize },
    /// In pool buffer `index`, at 0.
    Tx { index: u32 },
}

/// A packet owned by the media path.
#[derive(Clone, Copy, Debug)]
pub(super) struct Packet {
    pub buf: Buf,
    pub len: usize,
}

/// What a delivery step did with the packet.
enum Next {
    /// Handed to a send.
    Sent,
    /// Passed to a Local half: its peer in `slot` receives `packet`.
    Hop { slot: u32, packet: Packet },
    /// Not sent: release `packet`.
    Stop(Packet),
}

/// What ingest does for the current leg (its mode, without the borrow).
enum Step {
    Drop,
    Mix,
    Relay(u32),
    Transcode,
}

/// The leg table and the buffers of produced frames.
pub(super) struct Media {
    pub slots: Vec<Slot>,
    /// Per receive buffer: the send it is in, if any.
    pub rx_tx: Vec<TxSlot>,
    pub pool: TxPool,
    epoch: Instant,
}

fn bytes<'a>(io: &'a mut Io, pool: &'a mut TxPool, p: Packet) -> &'a mut [u8] {
    let (buf, at) = match p.buf {
        Buf::Rx { bid, offset } => (io.bufs.buffer(bid), offset),
        Buf::Tx { index } => (pool.data(index), 0),
    };
    let end = (at + p.len).min(buf.len());
    &mut buf[at.min(end)..end]
}

impl Media {
    pub(super) fn new(rx_buffers: usize, tx_size: usize) -> Media {
        Media {
            slots: Vec::new(),
            rx_tx: vec![TxSlot::EMPTY; rx_buffers],
            pool: TxPool::new(tx_size),
            epoch: Instant::now(),
        }
    }

    pub(super) fn leg(&mut self, slot: u32) -> Option<&mut Leg> {
        self.slots.get_mut(slot as usize)?.leg.as_deref_mut()
    }

    /// The leg in `slot` if it is still generation `gen`.
    pub(super) fn leg_gen(&mut self, slot: u32, gen: u32) -> Option<&mut Leg> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.gen != gen {
            return None;
        }
        s.leg.as_deref_mut()
    }

    pub(super) fn gen(&self, slot: u32) -> u32 {
        self.slots.get(slot as usize).map_or(0, |s| s.gen)
    }

    /// Nanoseconds from the shard's start to `now`: the origin of arrival
    /// times for the jitter estimate.
    pub(super) fn nanos(&self, now: Instant) -> u128 {
        now.saturating_duration_since(self.epoch).as_nanos()
    }

    /// Gives a packet's buffer back (to the kernel or the pool).
    pub(super) fn release(&mut self, io: &mut Io, p: Packet) {
        match p.buf {
            Buf::Rx { bid, .. } => io.bufs.recycle(bid),
            Buf::Tx { index } => self.pool.release(index),
        }
    }

    /// A send of pool buffer `index` completed with `result`.
    pub(super) fn tx_done(&mut self, index: u32, result: i32) {
        if result < 0 {
            let owner = self.pool.owner(index);
            if let Some(leg) = self.leg_gen(owner.slot, owner.gen) {
                leg.stats.tx_errors += 1;
            }
        }
        self.pool.release(index);
    }

    /// The leg in `from` received `packet` (validated RTP of its remote, or
    /// what its Local peer was sent): pass it on as its mode says. Takes
    /// ownership of the buffer.
    pub(super) fn ingest(&mut self, io: &mut Io, now: Instant, from: u32, packet: Packet) {
        let mut from = from;
        let mut packet = packet;
        for _ in 0..MAX_HOPS {
            let Some(sender) = self.leg(from) else {
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
                    self.push_jitter(io, from, packet);
                    Next::Stop(packet)
                }
                Step::Transcode => self.transcode(io, now, from, packet),
                Step::Relay(to) => self.deliver(io, now, to, packet, true),
            };
            match next {
                Next::Sent => return,
                Next::Hop { slot, packet: p } => {
                    from = slot;
                    packet = p;
                }
                Next::Stop(p) => {
                    self.release(io, p);
                    return;
                }
            }
        }
        self.release(io, packet);
    }

    /// Sends a frame the shard produced in pool buffer `index` (header
    /// already written with the target's OutStream) to the leg in `to`.
    pub(super) fn send_produced(&mut self, io: &mut Io, now: Instant, to: u32, packet: Packet) {
        match self.deliver(io, now, to, packet, false) {
            Next::Sent => {}
            Next::Hop { slot, packet } => self.ingest(io, now, slot, packet),
            Next::Stop(packet) => self.release(io, packet),
        }
    }

    /// Sends `packet` as it is from socket `fd` to `dest` on behalf of the
    /// leg in `to` (generation `gen`), whose send failures it counts; used
    /// for RTCP. Takes ownership of the buffer.
    pub(super) fn send_raw(
        &mut self,
        io: &mut Io,
        fd: std::os::fd::RawFd,
        to: u32,
        gen: u32,
        dest: RawAddr,
        packet: Packet,
    ) {
        let data = bytes(io, &mut self.pool, packet);
        let (ptr, len) = (data.as_ptr(), data.len() as u32);
        let owner = TxSlot {
            slot: to,
            gen,
            dest: Some(dest),
        };
        let (dest_ptr, op) = match packet.buf {
            Buf::Rx { bid, .. } => {
                let Some(tx) = self.rx_tx.get_mut(usize::from(bid)) else {
                    return self.release(io, packet);
                };
                *tx = owner;
                (tx.dest.as_ref().map(|d| d.as_ptr()), Op::Send { bid })
            }
            Buf::Tx { index } => {
                let Some(b) = self.pool.bufs.get_mut(index as usize) else {
                    return self.release(io, packet);
                };
                b.owner = owner;
                (
                    b.owner.dest.as_ref().map(|d| d.as_ptr()),
                    Op::SendTx { index },
                )
            }
        };
        let entry = opcode::Send::new(types::Fd(fd), ptr, len)
            .dest_addr(dest_ptr.unwrap_or(std::ptr::null()))
            .dest_addr_len(dest.len())
            .build()
            .user_data(op.encode());
        io.push(entry);
    }

    /// Copies the payload into the jitter buffer of the leg in `slot`.
    fn push_jitter(&mut self, io: &mut Io, slot: u32, packet: Packet) {
        let data = bytes(io, &mut self.pool, packet);
        let Some(leg) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.leg.as_deref_mut())
        else {
            return;
        };
        let Ok(p) = RtpPacket::parse(data) else {
            return;
        };
        if p.pt().0 != leg.format.payload_type() {
            return; // CN and telephone-events are not mixed.
        }
        if let Some(jb) = leg.jitter.as_deref_mut() {
            jb.push(p.seq(), p.timestamp(), p.payload());
        }
    }

    /// Sends `packet` to the leg in `to`: rewritten in place (`relayed`) or
    /// as it is (a produced frame).
    fn deliver(
        &mut self,
        io: &mut Io,
        now: Instant,
        to: u32,
        packet: Packet,
        relayed: bool,
    ) -> Next {
        let gen = self.gen(to);
        let Some(target) = self
            .slots
            .get_mut(to as usize)
            .and_then(|s| s.leg.as_deref_mut())
        else {
            return Next::Stop(packet);
        };
        if target.mute_out {
            target.stats.tx_dropped += 1;
            return Next::Stop(packet);
        }
        match &target.kind {
            LegKind::Rtp { socket, remote } => {
                let Some((_, dest)) = remote else {
                    target.stats.tx_dropped += 1;
                    return Next::Stop(packet);
                };
                let (fd, dest) = (socket.as_raw_fd(), *dest);
                let data = bytes(io, &mut self.pool, packet);
                if relayed {
                    let Ok(mut p) = RtpPacketMut::parse(data) else {
                        return Next::Stop(packet);
                    };
                    target.out.rewrite(now, &mut p);
                }
                let (ptr, len) = (data.as_ptr(), data.len() as u32);
                target.stats.tx_packets += 1;
                target.stats.tx_octets += u64::from(len);
                let owner = TxSlot {
                    slot: to,
                    gen,
                    dest: Some(dest),
                };
                let (dest_ptr, op) = match packet.buf {
                    Buf::Rx { bid, .. } => {
                        let Some(tx) = self.rx_tx.get_mut(usize::from(bid)) else {
                            return Next::Stop(packet);
                        };
                        *tx = owner;
                        (tx.dest.as_ref().map(|d| d.as_ptr()), Op::Send { bid })
                    }
                    Buf::Tx { index } => {
                        let Some(b) = self.pool.bufs.get_mut(index as usize) else {
                            return Next::Stop(packet);
                        };
                        b.owner = owner;
                        (
                            b.owner.dest.as_ref().map(|d| d.as_ptr()),
                            Op::SendTx { index },
                        )
                    }
                };
                let entry = opcode::Send::new(types::Fd(fd), ptr, len)
                    .dest_addr(dest_ptr.unwrap_or(std::ptr::null()))
                    .dest_addr_len(dest.len())
                    .build()
                    .user_data(op.encode());
                io.push(entry);
                Next::Sent
            }
            LegKind::Local { peer_slot, .. } => {
                let Some(peer) = *peer_slot else {
                    target.stats.tx_dropped += 1;
                    return Next::Stop(packet);
                };
                target.stats.tx_packets += 1;
                target.stats.tx_octets += packet.len as u64;
                if let Some(p) = self.leg(peer) {
                    p.stats.rx_packets += 1;
                    p.stats.rx_octets += packet.len as u64;
                }
                Next::Hop { slot: peer, packet }
            }
        }
    }

    /// Transcodes what the leg in `from` received into its partner's format.
    fn transcode(&mut self, io: &mut Io, now: Instant, from: u32, packet: Packet) -> Next {
        let Some(Mode::Transcode(path)) = self.leg(from).map(|l| &l.mode) else {
            return Next::Stop(packet);
        };
        let to = path.to;
        let (to_format, muted) = match self.leg(to) {
            Some(t) => (t.format, t.mute_out),
            None => return Next::Stop(packet),
        };
        if muted {
            if let Some(t) = self.leg(to) {
                t.stats.tx_dropped += 1;
            }
            return Next::Stop(packet);
        }
        let Some(index) = self.pool.take() else {
            if let Some(t) = self.leg(to) {
                t.stats.tx_dropped += 1;
            }
            return Next::Stop(packet);
        };
        // The output buffer leaves the pool's table while the input (which
        // may be another pool buffer) is read; an empty box does not
        // allocate.
        let mut out = std::mem::take(&mut self.pool.bufs[index as usize].data);
        let input: &[u8] = bytes(io, &mut self.pool, packet);
        let Some(sender) = self
            .slots
            .get_mut(from as usize)
            .and_then(|s| s.leg.as_deref_mut())
        else {
            self.pool.bufs[index as usize].data = out;
            self.pool.release(index);
            return Next::Stop(packet);
        };
        let from_format = sender.format;
        let produced = match (&mut sender.mode, RtpPacket::parse(input)) {
            (Mode::Transcode(path), Ok(p)) if p.pt().0 == from_format.payload_type() => {
                let gap = path.last_seq.map_or(1, |last| p.seq().delta(last));
                if gap <= 0 {
                    None
                } else {
                    match path.tc.transcode(p.payload(), &mut out[HEADER_LEN..]) {
                        Ok(n) => {
                            path.last_seq = Some(p.seq());
                            Some((n, path.tc.last_samples(), gap))
                        }
                        Err(_) => None,
                    }
                }
            }
            _ => None,
        };
        let result = match produced {
            Some((n, samples, gap)) => match self.leg(to) {
                Some(target) => {
                    let ticks = (samples as u64 * u64::from(to_format.clock_rate())
                        / u64::from(from_format.sample_rate().max(1)))
                        as u32;
                    if gap > 1 && gap <= MAX_GAP {
                        target.out.skip(ticks.wrapping_mul((gap - 1) as u32));
                    }
                    let header = target
                        .out
                        .next_local(now, Pt(to_format.payload_type()), ticks, n);
                    header.write(&mut out[..]).map(|h| h + n)
                }
                None => None,
            },
            None => {
                if let Some(s) = self.leg(from) {
                    s.stats.rx_dropped += 1;
                }
                None
            }
        };
        self.pool.bufs[index as usize].data = out;
        self.release(io, packet);
        match result {
            Some(len) => self.deliver(
                io,
                now,
                to,
                Packet {
                    buf: Buf::Tx { index },
                    len,
                },
                false,
            ),
            None => {
                self.pool.release(index);
                Next::Sent
            }
        }
    }
}
