//! The io_uring driver: one ring per shard thread.
//!
//! # Loop
//! Each turn: submit queued operations and wait for at least one
//! completion; publish the heartbeat (and stop if told to); take up to a
//! batch of completions and handle them (a receive goes to the core, a
//! send's buffer is recycled, the eventfd read drains the command queue,
//! the timerfd read wakes the core's timers); then run the core's timers if
//! due, queue every send the core produced, publish recycled buffers,
//! re-arm what ended and set the timerfd to the core's next deadline (or
//! the heartbeat's, if sooner). Sends queued in a turn go out in the next
//! single `io_uring_enter`. A panic in the loop is held until the ring's
//! operations are cancelled, then resumed.
//!
//! # Features and their fallbacks (probed once at start, [`probe`])
//! - Multishot `recvmsg` into a provided-buffer ring (Linux 6.0; the ring
//!   5.19), else one single-shot `recvmsg` per socket into a buffer the
//!   driver takes from its free list.
//! - `send` with a destination address (6.0), else `sendmsg`.
//! - `SINGLE_ISSUER | DEFER_TASKRUN` (6.1), else a plain ring.
//! - Timers are a timerfd read (any io_uring kernel), never a multishot
//!   timeout (6.4).
//!
//! Every completion's result is checked. A receive that ends with an error
//! is re-armed, up to [`MAX_RECV_ERRORS`] errors in a row on one socket,
//! after which the socket is left unwatched and the error logged; an
//! `ENOBUFS` (every buffer in flight) is re-armed once buffers return. A
//! wake or timer read that fails is re-armed after a pause once it has
//! failed [`MAX_READ_ERRORS`] times in a row, so no error makes a shard
//! spin.
//!
//! # Buffers
//! `BUFFERS` receive buffers of `BUF_SIZE` bytes; the datagram starts at
//! `DATA_OFFSET` in both modes (multishot writes a `recvmsg_out` header and
//! the source address before it). A buffer id belongs to the kernel (in the
//! provided ring, or armed in a single-shot receive), to the core (lent for
//! one `handle_datagram`) or to a send in flight; it is recycled when that
//! send completes. Pool buffers of the core in flight are kept with their
//! destination until their send completes.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use io_uring::types::BufRingEntry;
use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};

use super::sockaddr::{self, RawAddr, NAME_LEN};
use super::{drain_counter, LegSockets, Shard, Timer, UringFeature, Watch};
use crate::media::{LegRef, Payload, Port, RxBuf, Transmit, TxBuf};
use crate::shard::Command;

/// What the probe found and the configuration allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UringFeatures {
    pub multishot_recv: bool,
    pub send_to: bool,
    pub defer_taskrun: bool,
}

/// Completions handled per loop turn.
const CQE_BATCH: usize = 512;
/// Submission queue entries.
const RING_ENTRIES: u32 = 1024;
/// Buffer group id of the receive buffers.
const BGID: u16 = 0;
/// Number of receive buffers per shard (a power of two).
const BUFFERS: u16 = 2048;
/// Size of one receive buffer.
const BUF_SIZE: usize = 2048;
/// Offset of the datagram in a receive buffer.
const DATA_OFFSET: usize = 16 + NAME_LEN;
/// Errors in a row after which a socket's receive is given up.
pub const MAX_RECV_ERRORS: u32 = 16;
/// Failed wake/timer reads in a row after which each re-arm waits.
pub const MAX_READ_ERRORS: u32 = 8;

/// What an operation is, in the top 4 bits of `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// Multishot receive on `port` of the leg in `slot` (generation `gen`).
    RecvMulti { slot: u32, gen: u32, port: Port },
    /// Single-shot receive into buffer `bid` (its owner is in `one_owner`).
    RecvOne { bid: u16 },
    /// A send from receive buffer `bid` (relayed in place).
    SendRx { bid: u16 },
    /// A send from the core's pool buffer `id`.
    SendTx { id: u32 },
    /// The read of the command eventfd.
    Wake,
    /// The read of the timerfd.
    Timer,
    /// A cancellation.
    Cancel,
}

impl Op {
    fn encode(self) -> u64 {
        let leg = |slot: u32, gen: u32| u64::from(gen & 0x0fff_ffff) << 32 | u64::from(slot);
        match self {
            Op::RecvMulti {
                slot,
                gen,
                port: Port::Rtp,
            } => 1 << 60 | leg(slot, gen),
            Op::RecvMulti {
                slot,
                gen,
                port: Port::Rtcp,
            } => 2 << 60 | leg(slot, gen),
            Op::RecvOne { bid } => 3 << 60 | u64::from(bid),
            Op::SendRx { bid } => 4 << 60 | u64::from(bid),
            Op::SendTx { id } => 5 << 60 | u64::from(id),
            Op::Wake => 6 << 60,
            Op::Timer => 7 << 60,
            Op::Cancel => 8 << 60,
        }
    }

    fn decode(user_data: u64) -> Option<Op> {
        let slot = user_data as u32;
        let gen = (user_data >> 32) as u32 & 0x0fff_ffff;
        match user_data >> 60 {
            1 => Some(Op::RecvMulti {
                slot,
                gen,
                port: Port::Rtp,
            }),
            2 => Some(Op::RecvMulti {
                slot,
                gen,
                port: Port::Rtcp,
            }),
            3 => Some(Op::RecvOne {
                bid: user_data as u16,
            }),
            4 => Some(Op::SendRx {
                bid: user_data as u16,
            }),
            5 => Some(Op::SendTx { id: slot }),
            6 => Some(Op::Wake),
            7 => Some(Op::Timer),
            8 => Some(Op::Cancel),
            _ => None,
        }
    }
}

/// The destination and message of one send in flight (boxed: the kernel
/// reads them until the send completes).
struct SendSlot {
    addr: RawAddr,
    iov: libc::iovec,
    msg: libc::msghdr,
    leg: Option<LegRef>,
}

impl SendSlot {
    fn new() -> SendSlot {
        SendSlot {
            addr: RawAddr::empty(),
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            // SAFETY: msghdr is plain data; all-zero is a valid value.
            msg: unsafe { std::mem::zeroed() },
            leg: None,
        }
    }
}

/// A core pool buffer in flight.
struct TxInFlight {
    buf: TxBuf,
    slot: SendSlot,
}

/// The single-shot receive of one buffer: message, address, owner.
struct RecvSlot {
    msg: libc::msghdr,
    iov: libc::iovec,
    name: libc::sockaddr_in6,
    owner: Option<(LegRef, Port)>,
}

/// The receive buffers, as a provided ring (multishot) or a free list
/// (single-shot).
struct Buffers {
    data: Box<[u8]>,
    /// Multishot: the page-aligned descriptor ring shared with the kernel.
    ring: Option<(*mut BufRingEntry, std::alloc::Layout)>,
    tail: u16,
    /// Single-shot: buffers the driver may arm.
    free: Vec<u16>,
    recv: Box<[RecvSlot]>,
    /// Sends from receive buffers in flight, by buffer id.
    sends: Box<[SendSlot]>,
    /// Lent tokens of buffers in flight, by buffer id.
    tokens: Box<[Option<RxBuf>]>,
    /// Buffers recycled this turn (so an `ENOBUFS` receive may be re-armed).
    recycled: bool,
    /// Multishot: the message template (room for the source address).
    multi_msg: Box<libc::msghdr>,
}

impl Buffers {
    fn new(ring: &IoUring, multishot: bool) -> io::Result<Buffers> {
        let n = usize::from(BUFFERS);
        let mut this = Buffers {
            data: vec![0u8; n * BUF_SIZE].into_boxed_slice(),
            ring: None,
            tail: 0,
            free: Vec::new(),
            recv: (0..n)
                .map(|_| RecvSlot {
                    // SAFETY: plain data; all-zero is valid.
                    msg: unsafe { std::mem::zeroed() },
                    iov: libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0,
                    },
                    // SAFETY: plain data; all-zero is valid.
                    name: unsafe { std::mem::zeroed() },
                    owner: None,
                })
                .collect(),
            sends: (0..n).map(|_| SendSlot::new()).collect(),
            tokens: (0..n).map(|_| None).collect(),
            recycled: false,
            // SAFETY: plain data; all-zero is valid (no name, no iov).
            multi_msg: Box::new(unsafe { std::mem::zeroed() }),
        };
        this.multi_msg.msg_namelen = NAME_LEN as libc::socklen_t;
        if multishot {
            let layout =
                std::alloc::Layout::from_size_align(n * std::mem::size_of::<BufRingEntry>(), 4096)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            // SAFETY: the layout has a non-zero size; zeroed memory is a
            // valid (empty) array of plain-data descriptors.
            let mem = unsafe { std::alloc::alloc_zeroed(layout) } as *mut BufRingEntry;
            if mem.is_null() {
                return Err(io::Error::from(io::ErrorKind::OutOfMemory));
            }
            // SAFETY: `mem` is page aligned, holds BUFFERS entries and lives
            // until `release`, which unregisters it first.
            let registered = unsafe {
                ring.submitter()
                    .register_buf_ring_with_flags(mem as u64, BUFFERS, BGID, 0)
            };
            if let Err(e) = registered {
                // SAFETY: allocated just above with this layout, never shared.
                unsafe { std::alloc::dealloc(mem as *mut u8, layout) };
                return Err(e);
            }
            this.ring = Some((mem, layout));
            for bid in 0..BUFFERS {
                this.recycle(bid);
            }
            this.publish();
        } else {
            this.free = (0..BUFFERS).rev().collect();
        }
        Ok(this)
    }

    /// Buffer `bid`, writable.
    fn buffer(&mut self, bid: u16) -> &mut [u8] {
        let start = usize::from(bid.min(BUFFERS - 1)) * BUF_SIZE;
        &mut self.data[start..start + BUF_SIZE]
    }

    /// Gives buffer `bid` back: to the kernel's ring (visible after
    /// `publish`) or to the free list.
    fn recycle(&mut self, bid: u16) {
        if bid >= BUFFERS {
            return;
        }
        self.recycled = true;
        let Some((ring, _)) = self.ring else {
            self.free.push(bid);
            return;
        };
        let index = usize::from(self.tail & (BUFFERS - 1));
        let addr = self.data[usize::from(bid) * BUF_SIZE..].as_mut_ptr() as u64;
        // SAFETY: index < BUFFERS, inside the allocation; the kernel reads
        // entries only up to the published tail, which does not cover this
        // one yet, so we are the only accessor.
        let entry = unsafe { &mut *ring.add(index) };
        entry.set_addr(addr);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes recycled buffers to the kernel.
    fn publish(&mut self) {
        if let Some((ring, _)) = self.ring {
            // SAFETY: the tail field overlays the `resv` field of entry 0, a
            // 2-byte aligned u16 inside the allocation; the kernel reads it
            // concurrently, hence the atomic release store (which also orders
            // the entry writes before it).
            unsafe {
                let tail = BufRingEntry::tail(ring) as *const AtomicU16;
                (*tail).store(self.tail, Ordering::Release);
            }
        }
    }

    /// Unregisters and frees the provided ring (the ring's operations are
    /// over, or `leak` says they may not be).
    fn release(&mut self, ring: &IoUring, leak: bool) {
        if let Some((mem, layout)) = self.ring.take() {
            let _ = ring.submitter().unregister_buf_ring(BGID);
            if !leak {
                // SAFETY: allocated in `new` with this layout; unregistered
                // above and no operation uses it any more.
                unsafe { std::alloc::dealloc(mem as *mut u8, layout) };
            }
        }
    }
}

/// The I/O state of a running io_uring shard.
struct Uring {
    ring: IoUring,
    features: UringFeatures,
    bufs: Buffers,
    tx: Vec<Option<Box<TxInFlight>>>,
    /// The armed receive of each slot and port: its `user_data`.
    armed: Vec<[Option<u64>; 2]>,
    /// Consecutive receive errors per slot and port.
    errors: Vec<[u32; 2]>,
    /// Receives to re-arm after this turn.
    rearm: Vec<(LegRef, Port)>,
    /// Receives waiting for a free buffer (single-shot) or for buffers to
    /// come back (`ENOBUFS`).
    starved: Vec<(LegRef, Port)>,
    /// Operations submitted whose last completion has not arrived.
    inflight: usize,
    wake_buf: Box<u64>,
    timer_buf: Box<u64>,
    read_errors: u32,
    /// Wake/timer reads that could not be queued, retried each turn.
    unarmed_reads: Vec<(RawFd, Op)>,
    cqes: Vec<cqueue::Entry>,
}

fn port_index(port: Port) -> usize {
    match port {
        Port::Rtp => 0,
        Port::Rtcp => 1,
    }
}

impl Uring {
    fn new(features: UringFeatures) -> io::Result<Uring> {
        let ring = new_ring(RING_ENTRIES, features.defer_taskrun)?;
        let bufs = Buffers::new(&ring, features.multishot_recv)?;
        Ok(Uring {
            ring,
            features,
            bufs,
            tx: Vec::new(),
            armed: Vec::new(),
            errors: Vec::new(),
            rearm: Vec::with_capacity(64),
            starved: Vec::new(),
            inflight: 0,
            wake_buf: Box::new(0),
            timer_buf: Box::new(0),
            read_errors: 0,
            unarmed_reads: Vec::new(),
            cqes: Vec::with_capacity(CQE_BATCH),
        })
    }

    /// Queues `entry`, submitting first when the submission queue is full;
    /// false when it could not be queued (the caller undoes its side).
    fn push(&mut self, entry: squeue::Entry) -> bool {
        for _ in 0..64 {
            // SAFETY: every entry we build points only at memory that stays
            // valid until its completion: the boxed wake/timer counters, the
            // receive buffers and their boxed message slots (owned by `Uring`,
            // freed only after the ring's operations are over), and the boxed
            // send slots and pool buffers kept until the send completes.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.inflight += 1;
                return true;
            }
            if self.ring.submit().is_err() {
                break;
            }
        }
        tracing::error!("io_uring submission queue stayed full: operation dropped");
        false
    }

    fn arm_read(&mut self, fd: RawFd, op: Op) {
        let buf: *mut u64 = match op {
            Op::Wake => &mut *self.wake_buf,
            _ => &mut *self.timer_buf,
        };
        let entry = opcode::Read::new(types::Fd(fd), buf.cast(), 8)
            .build()
            .user_data(op.encode());
        if !self.push(entry) {
            // Retried at the end of the turn: without it the shard would
            // never hear of commands (or time) again.
            self.unarmed_reads.push((fd, op));
        }
    }

    /// A wake or timer read completed with `result`: re-arm, pausing after
    /// repeated failures (see the module docs).
    fn reread(&mut self, fd: RawFd, op: Op, result: i32) {
        if result < 0 && result != -libc::ECANCELED {
            self.read_errors += 1;
            if self.read_errors == MAX_READ_ERRORS {
                tracing::error!(
                    "io_uring read of the {op:?} fd keeps failing ({}); pausing between re-arms",
                    io::Error::from_raw_os_error(-result)
                );
            }
            if self.read_errors >= MAX_READ_ERRORS {
                std::thread::sleep(Duration::from_millis(10));
            }
        } else {
            self.read_errors = 0;
        }
        self.arm_read(fd, op);
    }

    fn slot_entry<T: Default + Clone>(v: &mut Vec<T>, slot: u32) -> &mut T {
        let slot = slot as usize;
        if v.len() <= slot {
            v.resize(slot + 1, T::default());
        }
        &mut v[slot]
    }

    /// Arms the receive of `leg`'s `port` socket `fd`.
    fn arm_recv(&mut self, leg: LegRef, port: Port, fd: RawFd) {
        let user_data = if self.features.multishot_recv {
            let op = Op::RecvMulti {
                slot: leg.slot(),
                gen: leg.gen(),
                port,
            };
            let entry = opcode::RecvMsgMulti::new(types::Fd(fd), &*self.bufs.multi_msg, BGID)
                .build()
                .user_data(op.encode());
            if !self.push(entry) {
                self.starved.push((leg, port));
                return;
            }
            op.encode()
        } else {
            let Some(bid) = self.bufs.free.pop() else {
                self.starved.push((leg, port));
                return;
            };
            let base = usize::from(bid) * BUF_SIZE + DATA_OFFSET;
            let data = self.bufs.data[base..].as_mut_ptr();
            let slot = &mut self.bufs.recv[usize::from(bid)];
            slot.iov = libc::iovec {
                iov_base: data.cast(),
                iov_len: BUF_SIZE - DATA_OFFSET,
            };
            slot.msg.msg_name = (&mut slot.name as *mut libc::sockaddr_in6).cast();
            slot.msg.msg_namelen = NAME_LEN as libc::socklen_t;
            slot.msg.msg_iov = &mut slot.iov;
            slot.msg.msg_iovlen = 1;
            slot.msg.msg_control = std::ptr::null_mut();
            slot.msg.msg_controllen = 0;
            slot.msg.msg_flags = 0;
            slot.owner = Some((leg, port));
            let op = Op::RecvOne { bid };
            let entry = opcode::RecvMsg::new(types::Fd(fd), &mut slot.msg)
                .build()
                .user_data(op.encode());
            if !self.push(entry) {
                if let Some(slot) = self.bufs.recv.get_mut(usize::from(bid)) {
                    slot.owner = None;
                }
                self.bufs.free.push(bid);
                self.starved.push((leg, port));
                return;
            }
            op.encode()
        };
        Self::slot_entry(&mut self.armed, leg.slot())[port_index(port)] = Some(user_data);
    }

    /// Queues one send the core produced.
    fn send(&mut self, shard: &mut Shard, t: Transmit) {
        let Some(fd) = shard.socket(t.leg, t.port).map(UdpSocket::as_raw_fd) else {
            self.drop_transmit(shard, t);
            return;
        };
        let (slot, ptr, len, op): (&mut SendSlot, *const u8, usize, Op) = match t.payload {
            Payload::Rx { buf, len } => {
                let bid = buf.id() as u16;
                if usize::from(bid) >= self.bufs.tokens.len() {
                    return;
                }
                let ptr = self.bufs.buffer(bid)[DATA_OFFSET..].as_ptr();
                self.bufs.tokens[usize::from(bid)] = Some(buf);
                (
                    &mut self.bufs.sends[usize::from(bid)],
                    ptr,
                    len.min(BUF_SIZE - DATA_OFFSET),
                    Op::SendRx { bid },
                )
            }
            Payload::Tx { buf, len } => {
                let id = buf.id();
                let ptr = shard.core.tx_bytes(&buf).as_ptr();
                if self.tx.len() <= id as usize {
                    self.tx.resize_with(id as usize + 1, || None);
                }
                let entry = &mut self.tx[id as usize];
                if let Some(old) = entry.take() {
                    // Cannot happen (a pool buffer is in one send at a time).
                    // If it did, the old send may still be in flight: its
                    // buffer and message must not be reused or freed.
                    tracing::error!(id, "pool buffer sent while its previous send is in flight");
                    std::mem::forget(old);
                }
                let fly = entry.insert(Box::new(TxInFlight {
                    buf,
                    slot: SendSlot::new(),
                }));
                (&mut fly.slot, ptr, len, Op::SendTx { id })
            }
        };
        slot.addr = RawAddr::new(t.dest);
        slot.leg = Some(t.leg);
        let entry = if self.features.send_to {
            opcode::Send::new(types::Fd(fd), ptr, len as u32)
                .dest_addr(slot.addr.as_ptr())
                .dest_addr_len(slot.addr.len)
                .build()
        } else {
            slot.iov = libc::iovec {
                iov_base: ptr as *mut libc::c_void,
                iov_len: len,
            };
            slot.msg.msg_name = (&mut slot.addr.storage as *mut libc::sockaddr_in6).cast();
            slot.msg.msg_namelen = slot.addr.len;
            slot.msg.msg_iov = &mut slot.iov;
            slot.msg.msg_iovlen = 1;
            opcode::SendMsg::new(types::Fd(fd), &slot.msg).build()
        };
        if !self.push(entry.user_data(op.encode())) {
            // Not queued: give the buffer back and count the failed send.
            shard.core.send_failed(t.leg);
            match op {
                Op::SendRx { bid } => {
                    if let Some(s) = self.bufs.sends.get_mut(usize::from(bid)) {
                        s.leg = None;
                    }
                    if let Some(token) = self
                        .bufs
                        .tokens
                        .get_mut(usize::from(bid))
                        .and_then(Option::take)
                    {
                        self.bufs.recycle(token.id() as u16);
                    }
                }
                Op::SendTx { id } => {
                    if let Some(fly) = self.tx.get_mut(id as usize).and_then(Option::take) {
                        shard.core.release_tx(fly.buf);
                    }
                }
                _ => {}
            }
        }
    }

    fn drop_transmit(&mut self, shard: &mut Shard, t: Transmit) {
        match t.payload {
            Payload::Rx { buf, .. } => self.bufs.recycle(buf.id() as u16),
            Payload::Tx { buf, .. } => shard.core.release_tx(buf),
        }
    }

    /// A send completed.
    fn sent(&mut self, shard: &mut Shard, op: Op, result: i32) {
        match op {
            Op::SendRx { bid } => {
                let i = usize::from(bid);
                let leg = self.bufs.sends.get_mut(i).and_then(|s| s.leg.take());
                if result < 0 {
                    if let Some(leg) = leg {
                        shard.core.send_failed(leg);
                    }
                }
                if let Some(token) = self.bufs.tokens.get_mut(i).and_then(Option::take) {
                    self.bufs.recycle(token.id() as u16);
                }
            }
            Op::SendTx { id } => {
                if let Some(fly) = self.tx.get_mut(id as usize).and_then(Option::take) {
                    if result < 0 {
                        if let Some(leg) = fly.slot.leg {
                            shard.core.send_failed(leg);
                        }
                    }
                    shard.core.release_tx(fly.buf);
                }
            }
            _ => {}
        }
    }

    /// A receive completed: hands a datagram to the core and decides
    /// whether to re-arm.
    #[allow(clippy::too_many_arguments)]
    fn received(
        &mut self,
        shard: &mut Shard,
        now: Instant,
        leg: LegRef,
        port: Port,
        bid: Option<u16>,
        result: i32,
        more: bool,
    ) {
        let current = shard.socket(leg, port).is_some();
        let single = !self.features.multishot_recv;
        if let Some(bid) = bid {
            let datagram = if current && result >= 0 {
                self.locate(bid, result as usize)
            } else {
                None
            };
            match datagram {
                Some((source, len, truncated)) if !truncated => {
                    let end = DATA_OFFSET + len;
                    let data = &mut self.bufs.buffer(bid)[DATA_OFFSET..end];
                    let back = shard.core.handle_datagram(
                        now,
                        leg,
                        port,
                        source,
                        data,
                        RxBuf::lend(u32::from(bid)),
                    );
                    if let Some(back) = back {
                        self.bufs.recycle(back.id() as u16);
                    }
                }
                Some(_) => {
                    shard.core.handle_truncated(leg, port);
                    self.bufs.recycle(bid);
                }
                None => self.bufs.recycle(bid),
            }
        }
        if !current || result == -libc::ECANCELED {
            return;
        }
        let errors = &mut Self::slot_entry(&mut self.errors, leg.slot())[port_index(port)];
        if result < 0 && result != -libc::ENOBUFS {
            *errors += 1;
            if *errors == MAX_RECV_ERRORS {
                tracing::error!(
                    shard = shard.index,
                    "receive on {port:?} socket of slot {} keeps failing ({}): no longer received",
                    leg.slot(),
                    io::Error::from_raw_os_error(-result)
                );
            }
            if *errors >= MAX_RECV_ERRORS {
                Self::slot_entry(&mut self.armed, leg.slot())[port_index(port)] = None;
                return;
            }
        } else if result >= 0 {
            *errors = 0;
        }
        if single || !more {
            Self::slot_entry(&mut self.armed, leg.slot())[port_index(port)] = None;
            if result == -libc::ENOBUFS {
                self.starved.push((leg, port));
            } else {
                self.rearm.push((leg, port));
            }
        }
    }

    /// Source, length and truncation of the datagram a receive of `filled`
    /// bytes put in buffer `bid`.
    fn locate(&mut self, bid: u16, filled: usize) -> Option<(SocketAddr, usize, bool)> {
        if self.features.multishot_recv {
            let buf = self.bufs.buffer(bid);
            let head = buf.get(..DATA_OFFSET)?;
            let word =
                |i: usize| u32::from_ne_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
            let (namelen, payloadlen, flags) = (word(0) as usize, word(8) as usize, word(12));
            let avail = filled.min(buf.len()).saturating_sub(DATA_OFFSET);
            let source = sockaddr::from_bytes(&head[16..16 + namelen.min(NAME_LEN)])?;
            let truncated = payloadlen > avail || flags & libc::MSG_TRUNC as u32 != 0;
            Some((source, payloadlen.min(avail), truncated))
        } else {
            let slot = self.bufs.recv.get(usize::from(bid))?;
            // SAFETY: `name` is a plain sockaddr_in6 the kernel wrote (or left
            // zeroed); reading its bytes is reading initialised memory.
            let name = unsafe {
                std::slice::from_raw_parts(
                    (&slot.name as *const libc::sockaddr_in6).cast::<u8>(),
                    NAME_LEN,
                )
            };
            let source = sockaddr::from_bytes(name)?;
            let room = BUF_SIZE - DATA_OFFSET;
            // A datagram that filled the buffer may have been cut.
            Some((source, filled.min(room), filled >= room))
        }
    }

    /// Re-arms the receives that ended this turn (and the starved ones when
    /// buffers came back).
    fn rearm_all(&mut self, shard: &Shard) {
        if self.bufs.recycled {
            self.rearm.append(&mut self.starved);
            self.bufs.recycled = false;
        }
        while let Some((leg, port)) = self.rearm.pop() {
            if let Some(fd) = shard.socket(leg, port).map(UdpSocket::as_raw_fd) {
                let armed = self
                    .armed
                    .get(leg.slot() as usize)
                    .and_then(|a| a[port_index(port)]);
                if armed.is_none() {
                    self.arm_recv(leg, port, fd);
                }
            }
        }
    }

    /// Runs the ring's deferred task work. On a `DEFER_TASKRUN` ring the
    /// completions of cancelled operations are posted by it, and only an
    /// enter asking for events runs it (a plain submit does not); until
    /// then a cancelled receive still holds its socket's file, so a closed
    /// socket's port stays bound. The completions land in the queue, for
    /// the next turn.
    fn run_deferred(&self) {
        // SAFETY: an enter submitting nothing, waiting for nothing and
        // passing no argument refers to no memory.
        let _ = unsafe {
            self.ring.submitter().enter::<libc::sigset_t>(
                0,
                0,
                io_uring::EnterFlags::GETEVENTS.bits(),
                None,
            )
        };
    }

    /// Cancels every operation still armed (shutdown) and waits, bounded,
    /// for the kernel to finish with them; false if some did not finish.
    fn quiesce(&mut self) -> bool {
        let armed: Vec<u64> = self.armed.iter().flatten().flatten().copied().collect();
        for user_data in armed {
            self.push(
                opcode::AsyncCancel::new(user_data)
                    .build()
                    .user_data(Op::Cancel.encode()),
            );
        }
        for op in [Op::Wake, Op::Timer] {
            self.push(
                opcode::AsyncCancel::new(op.encode())
                    .build()
                    .user_data(Op::Cancel.encode()),
            );
        }
        for _ in 0..200 {
            let _ = self.ring.submit();
            self.run_deferred();
            let done: usize = self
                .ring
                .completion()
                .filter(|c| !cqueue::more(c.flags()))
                .count();
            self.inflight = self.inflight.saturating_sub(done);
            if self.inflight == 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

impl Watch for Uring {
    fn watch(&mut self, leg: LegRef, sockets: &LegSockets) {
        Self::slot_entry(&mut self.errors, leg.slot()).fill(0);
        Self::slot_entry(&mut self.armed, leg.slot()).fill(None);
        for port in [Port::Rtp, Port::Rtcp] {
            self.arm_recv(leg, port, sockets.get(port).as_raw_fd());
        }
    }

    /// The receives end before the sockets leave this shard: cancelled
    /// synchronously where the kernel can (6.0), else by an asynchronous
    /// cancel submitted at once (a datagram the old receive takes meanwhile
    /// is dropped, as for a leg that has gone).
    fn unwatch(&mut self, leg: LegRef, _sockets: &LegSockets) {
        let armed = std::mem::take(Self::slot_entry(&mut self.armed, leg.slot()));
        let mut submit = false;
        for user_data in armed.into_iter().flatten() {
            let cancel = types::CancelBuilder::user_data(user_data);
            if self
                .ring
                .submitter()
                .register_sync_cancel(None, cancel)
                .is_err()
            {
                self.push(
                    opcode::AsyncCancel::new(user_data)
                        .build()
                        .user_data(Op::Cancel.encode()),
                );
                submit = true;
            }
        }
        if submit {
            let _ = self.ring.submit();
        }
        // The receives let go of the sockets now, so that their ports are
        // free once the sockets close (the control plane may hand the pair
        // to a new leg at once).
        self.run_deferred();
        self.starved.retain(|(l, _)| *l != leg);
    }
}

/// Builds a ring: single issuer with deferred task running where asked
/// and the kernel has it, a plain ring otherwise.
fn new_ring(entries: u32, defer: bool) -> io::Result<IoUring> {
    let plain = || IoUring::builder().setup_cqsize(entries * 4).build(entries);
    if !defer {
        return plain();
    }
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(entries * 4)
        .build(entries)
        .or_else(|_| plain())
}

/// Sets up the ring (reporting the result on `ready`), then serves
/// commands and media until `Shutdown` or until the control plane is gone.
pub(super) fn run(
    mut shard: Shard,
    features: UringFeatures,
    commands: Receiver<Command>,
    wake: OwnedFd,
    ready: std::sync::mpsc::Sender<io::Result<()>>,
) {
    let setup = Uring::new(features).and_then(|io| Timer::new().map(|t| (io, t)));
    let (mut io, mut timer) = match setup {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    io.arm_read(wake.as_raw_fd(), Op::Wake);
    io.arm_read(timer.raw(), Op::Timer);
    // A panic (a bug, or a test's fault) is held here until the ring's
    // operations are cancelled: the buffers they write into are freed as it
    // unwinds.
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        serve(&mut shard, &mut io, &mut timer, &commands, &wake)
    }));
    drain_counter(wake.as_raw_fd());
    let clean = io.quiesce();
    if !clean {
        tracing::error!(
            shard = shard.index,
            "io_uring operations still in flight at shutdown; leaking their buffers"
        );
    }
    io.bufs.release(&io.ring, !clean);
    if !clean {
        std::mem::forget(io);
    }
    if let Err(panic) = served {
        std::panic::resume_unwind(panic);
    }
}

/// The loop (see the module docs), until `Shutdown`, a stop, or the control
/// plane is gone.
fn serve(
    shard: &mut Shard,
    io: &mut Uring,
    timer: &mut Timer,
    commands: &Receiver<Command>,
    wake: &OwnedFd,
) {
    let start = Instant::now();
    let mut running = shard.turn(start);
    timer.set(shard.next_wake(start), start);
    while running {
        if let Err(e) = io.ring.submit_and_wait(1) {
            if e.raw_os_error() != Some(libc::EINTR) && e.raw_os_error() != Some(libc::EBUSY) {
                tracing::error!(shard = shard.index, "io_uring_enter failed: {e}");
                break;
            }
        }
        io.cqes.clear();
        io.cqes.extend(io.ring.completion().take(CQE_BATCH));
        // Operations that ended are counted before their completions are
        // handled, so a stop or a panic midway leaves the count `quiesce`
        // waits on right.
        let ended = io.cqes.iter().filter(|c| !cqueue::more(c.flags())).count();
        io.inflight = io.inflight.saturating_sub(ended);
        let now = Instant::now();
        if !shard.turn(now) {
            break;
        }
        for i in 0..io.cqes.len() {
            let cqe = io.cqes[i].clone();
            let (result, flags) = (cqe.result(), cqe.flags());
            match Op::decode(cqe.user_data()) {
                Some(Op::RecvMulti { slot, gen, port }) => {
                    let leg = LegRef::from_parts(slot, gen);
                    let bid = cqueue::buffer_select(flags);
                    io.received(shard, now, leg, port, bid, result, cqueue::more(flags));
                }
                Some(Op::RecvOne { bid }) => {
                    let owner = io
                        .bufs
                        .recv
                        .get_mut(usize::from(bid))
                        .and_then(|s| s.owner.take());
                    match owner {
                        Some((leg, port)) => {
                            io.received(shard, now, leg, port, Some(bid), result, false)
                        }
                        None => io.bufs.recycle(bid),
                    }
                }
                Some(op @ (Op::SendRx { .. } | Op::SendTx { .. })) => io.sent(shard, op, result),
                Some(Op::Wake) => {
                    running = shard.drain_commands(commands, io);
                    if running {
                        io.reread(wake.as_raw_fd(), Op::Wake, result);
                    }
                }
                Some(Op::Timer) => {
                    timer.fired();
                    io.reread(timer.raw(), Op::Timer, result);
                }
                Some(Op::Cancel) | None => {}
            }
            if !running {
                break;
            }
        }
        if shard.core.poll_timeout().is_some_and(|due| due <= now) {
            shard.core.handle_timeout(now);
        }
        while let Some(t) = shard.core.poll_transmit() {
            io.send(shard, t);
        }
        io.bufs.publish();
        io.rearm_all(shard);
        for (fd, op) in std::mem::take(&mut io.unarmed_reads) {
            io.arm_read(fd, op);
        }
        timer.set(shard.next_wake(now), now);
    }
}

/// Probes io_uring and the features crossbar uses on this kernel (see the
/// module docs), leaving out those `disabled`; `Err` when io_uring cannot be
/// used at all. The text says what was found.
pub(super) fn probe(disabled: &[UringFeature]) -> io::Result<(UringFeatures, String)> {
    let off = |f: UringFeature| disabled.contains(&f);
    let mut notes = Vec::new();
    let plain: IoUring = IoUring::builder().build(8)?;
    let mut p = Probe::new();
    plain.submitter().register_probe(&mut p)?;
    for (code, name) in [
        (opcode::Read::CODE, "read"),
        (opcode::RecvMsg::CODE, "recvmsg"),
        (opcode::SendMsg::CODE, "sendmsg"),
        (opcode::AsyncCancel::CODE, "async_cancel"),
    ] {
        if !p.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the kernel's io_uring lacks {name}"),
            ));
        }
    }
    drop(plain);
    let defer_taskrun = !off(UringFeature::DeferTaskrun)
        && IoUring::<squeue::Entry, cqueue::Entry>::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(8)
            .is_ok();
    let mut ring: IoUring = IoUring::builder().build(8)?;
    let a = UdpSocket::bind("127.0.0.1:0")?;
    let b = UdpSocket::bind("127.0.0.1:0")?;
    b.set_nonblocking(true)?;
    let b_addr = b.local_addr()?;
    let send_to = !off(UringFeature::SendTo) && p.is_supported(opcode::Send::CODE) && {
        let raw = RawAddr::new(b_addr);
        let payload = [0u8; 4];
        let entry = opcode::Send::new(types::Fd(a.as_raw_fd()), payload.as_ptr(), 4)
            .dest_addr(raw.as_ptr())
            .dest_addr_len(raw.len)
            .build()
            .user_data(1);
        // SAFETY: `payload` and `raw` live until the completion is reaped
        // below (submit_and_wait returns after it).
        let ok = unsafe { ring.submission().push(&entry) }.is_ok()
            && ring.submit_and_wait(1).is_ok()
            && ring
                .completion()
                .next()
                .is_some_and(|c: cqueue::Entry| c.result() == 4);
        let mut sink = [0u8; 8];
        let _ = b.recv(&mut sink);
        ok
    };
    let mut multishot_recv = false;
    if !off(UringFeature::BufRing) && !off(UringFeature::MultishotRecv) {
        match Buffers::new(&ring, true) {
            Ok(mut bufs) => {
                let msg = &*bufs.multi_msg as *const libc::msghdr;
                let entry = opcode::RecvMsgMulti::new(types::Fd(b.as_raw_fd()), msg, BGID)
                    .build()
                    .user_data(2);
                // SAFETY: `msg` and the registered buffers live in `bufs`
                // until the operation is cancelled and reaped below.
                let pushed = unsafe { ring.submission().push(&entry) }.is_ok();
                let _ = a.send_to(&[0x80, 0, 0, 0], b_addr);
                if pushed && ring.submit_and_wait(1).is_ok() {
                    let first = ring.completion().next();
                    multishot_recv =
                        first.is_some_and(|c| c.result() >= 0 && cqueue::more(c.flags()));
                    if multishot_recv {
                        let cancel = opcode::AsyncCancel::new(2).build().user_data(3);
                        // SAFETY: a cancel refers to no memory.
                        let _ = unsafe { ring.submission().push(&cancel) };
                        // Wait (bounded) for the receive's last completion.
                        for _ in 0..100 {
                            let _ = ring.submit_and_wait(1);
                            if ring
                                .completion()
                                .any(|c| c.user_data() == 2 && !cqueue::more(c.flags()))
                            {
                                break;
                            }
                        }
                    }
                }
                bufs.release(&ring, !multishot_recv && pushed);
                if !multishot_recv && pushed {
                    // The probe's receive may still be armed: keep its memory.
                    std::mem::forget(bufs);
                }
            }
            Err(e) => notes.push(format!("no provided-buffer rings ({e})")),
        }
    }
    for (on, name) in [
        (multishot_recv, "multishot_recv"),
        (send_to, "send_to"),
        (defer_taskrun, "defer_taskrun"),
    ] {
        let why = if disabled.iter().any(|f| f.name() == name)
            || (name == "multishot_recv" && off(UringFeature::BufRing))
        {
            "disabled by dataplane.uring_disable"
        } else {
            "not supported by this kernel"
        };
        notes.push(if on {
            format!("{name}: yes")
        } else {
            format!("{name}: no ({why})")
        });
    }
    Ok((
        UringFeatures {
            multishot_recv,
            send_to,
            defer_taskrun,
        },
        notes.join(", "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_round_trip() {
        for op in [
            Op::RecvMulti {
                slot: 7,
                gen: 0x0fff_ffff,
                port: Port::Rtp,
            },
            Op::RecvMulti {
                slot: 3,
                gen: 9,
                port: Port::Rtcp,
            },
            Op::RecvOne { bid: 2047 },
            Op::SendRx { bid: 2047 },
            Op::SendTx { id: 70_000 },
            Op::Wake,
            Op::Timer,
            Op::Cancel,
        ] {
            assert_eq!(Op::decode(op.encode()), Some(op));
        }
        assert_eq!(Op::decode(0), None);
    }

    #[test]
    fn probe_honours_disabled_features() {
        let Ok((features, notes)) = probe(&UringFeature::ALL) else {
            return; // No io_uring on this kernel: nothing to check.
        };
        assert_eq!(
            features,
            UringFeatures {
                multishot_recv: false,
                send_to: false,
                defer_taskrun: false
            },
            "{notes}"
        );
        assert!(
            notes.contains("disabled by dataplane.uring_disable"),
            "{notes}"
        );
    }
}
