//! Packet buffers and sends: the tokens that say who owns a buffer, the
//! transmit pool of produced frames, and [`Transmit`], built in one place
//! ([`transmit`]).
//!
//! # Ownership
//! - [`RxBuf`]: a driver's receive buffer, lent to the core with the bytes of
//!   one datagram. The core moves it into a [`Transmit`] (the datagram is sent
//!   from where it arrived, rewritten in place) or hands it back from
//!   `handle_datagram`. The driver recycles it once the send completed.
//! - [`TxBuf`]: a buffer of the core's [`TxPool`] holding a frame the core
//!   produced (transcoded, mixed, an RTCP report). It leaves the pool in a
//!   [`Transmit`]; the driver gives it back with `Core::release_tx` after the
//!   send completed (or failed).
//!
//! Neither token is `Copy` or `Clone` and neither can be made outside this
//! crate's media and driver code, so a buffer is sent or released exactly
//! once. The pool's buffers are boxed: their bytes do not move while a send
//! is in flight, even when the pool grows. The pool grows only on the
//! control path (`set_bridge`), never per packet; when it is empty a frame
//! is dropped and counted.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::leg::{LegRef, Port};

/// A driver's receive buffer (see the module docs). The number is the
/// driver's own (a buffer id, a batch index).
#[must_use = "a receive buffer must be sent or given back to its driver"]
#[derive(Debug, PartialEq, Eq)]
pub struct RxBuf(u32);

impl RxBuf {
    /// The token of the driver's buffer `id`. Only a driver makes these, for
    /// buffers it owns and lends to the core.
    pub(crate) fn lend(id: u32) -> RxBuf {
        RxBuf(id)
    }

    /// The driver's number for the buffer.
    pub fn id(&self) -> u32 {
        self.0
    }
}

/// A buffer of the core's transmit pool (see the module docs).
#[must_use = "a transmit buffer must be released to the core after its send"]
#[derive(Debug, PartialEq, Eq)]
pub struct TxBuf(u32);

impl TxBuf {
    /// The buffer's number in the pool (drivers key in-flight sends by it).
    pub fn id(&self) -> u32 {
        self.0
    }

    pub(super) fn index(&self) -> usize {
        self.0 as usize
    }
}

/// What a [`Transmit`] sends.
#[derive(Debug)]
pub enum Payload {
    /// The first `len` bytes of the datagram the driver lent as this buffer.
    Rx { buf: RxBuf, len: usize },
    /// The first `len` bytes of a core pool buffer (`Core::tx_bytes`).
    Tx { buf: TxBuf, len: usize },
}

/// One datagram to send: from `leg`'s `port` socket to `dest`.
#[must_use = "a transmit owns a buffer: send it, then release it"]
#[derive(Debug)]
pub struct Transmit {
    pub leg: LegRef,
    pub port: Port,
    pub dest: SocketAddr,
    pub payload: Payload,
}

/// The frames the core produces: fixed-size boxed buffers.
pub(super) struct TxPool {
    // Boxed on purpose: the kernel reads a buffer during a send, so it must
    // not move when the pool grows.
    #[allow(clippy::vec_box)]
    bufs: Vec<Box<[u8]>>,
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
            self.bufs.push(vec![0; self.size].into_boxed_slice());
        }
    }

    /// A free buffer, if any.
    pub(super) fn take(&mut self) -> Option<TxBuf> {
        self.free.pop().map(TxBuf)
    }

    /// Puts a buffer back.
    pub(super) fn release(&mut self, buf: TxBuf) {
        if buf.index() < self.bufs.len() && self.free.len() < self.bufs.len() {
            self.free.push(buf.0);
        }
    }

    pub(super) fn data(&mut self, buf: &TxBuf) -> &mut [u8] {
        match self.bufs.get_mut(buf.index()) {
            Some(b) => b,
            None => &mut [],
        }
    }

    pub(super) fn bytes(&self, buf: &TxBuf) -> &[u8] {
        self.bufs.get(buf.index()).map_or(&[], |b| b)
    }

    /// Buffers not in flight.
    pub(super) fn available(&self) -> usize {
        self.free.len()
    }

    /// Moves buffer `buf`'s bytes out (to read another buffer while writing
    /// this one); [`TxPool::restore`] puts them back. An empty box does not
    /// allocate.
    pub(super) fn lift(&mut self, buf: &TxBuf) -> Box<[u8]> {
        self.bufs
            .get_mut(buf.index())
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub(super) fn restore(&mut self, buf: &TxBuf, data: Box<[u8]>) {
        if let Some(b) = self.bufs.get_mut(buf.index()) {
            *b = data;
        }
    }
}

/// The packet the media path is carrying.
#[derive(Debug)]
pub(super) enum Packet {
    /// The datagram being handled, in the lent receive buffer.
    Rx { len: usize },
    /// A produced frame in a pool buffer.
    Tx { buf: TxBuf, len: usize },
}

impl Packet {
    pub(super) fn len(&self) -> usize {
        match self {
            Packet::Rx { len } | Packet::Tx { len, .. } => *len,
        }
    }
}

/// The lent receive buffer while a datagram is handled: its bytes and its
/// token (taken when it is sent).
pub(super) struct Lent<'a> {
    pub data: &'a mut [u8],
    pub buf: Option<RxBuf>,
}

impl Lent<'_> {
    /// No lent buffer (a tick, a command).
    pub(super) fn none() -> Lent<'static> {
        Lent {
            data: &mut [],
            buf: None,
        }
    }
}

/// The sends the core has produced and not yet handed to its driver.
pub(super) struct Outbox {
    queue: VecDeque<Transmit>,
}

impl Outbox {
    pub(super) fn new() -> Outbox {
        Outbox {
            queue: VecDeque::with_capacity(1024),
        }
    }

    /// Queues `packet` to go from `leg`'s `port` to `dest` (see [`transmit`]).
    pub(super) fn send(
        &mut self,
        lent: &mut Lent<'_>,
        pool: &mut TxPool,
        leg: LegRef,
        port: Port,
        dest: SocketAddr,
        packet: Packet,
    ) {
        if let Some(t) = transmit(lent, pool, leg, port, dest, packet) {
            self.queue.push_back(t);
        }
    }

    pub(super) fn pop(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }
}

/// Builds the send of `packet` from `leg`'s `port` to `dest`: the one place
/// a [`Transmit`] is made. A [`Packet::Rx`] takes the lent token; if it is
/// gone already (a bug: one datagram cannot be sent twice) nothing is sent.
pub(super) fn transmit(
    lent: &mut Lent<'_>,
    pool: &mut TxPool,
    leg: LegRef,
    port: Port,
    dest: SocketAddr,
    packet: Packet,
) -> Option<Transmit> {
    let payload = match packet {
        Packet::Rx { len } => Payload::Rx {
            buf: lent.buf.take()?,
            len,
        },
        Packet::Tx { buf, len } => {
            if len > pool.bytes(&buf).len() {
                pool.release(buf);
                return None;
            }
            Payload::Tx { buf, len }
        }
    };
    Some(Transmit {
        leg,
        port,
        dest,
        payload,
    })
}

/// Releases a packet the path does not send.
pub(super) fn release(pool: &mut TxPool, packet: Packet) {
    match packet {
        Packet::Rx { .. } => {} // The token stays lent; handle_datagram returns it.
        Packet::Tx { buf, .. } => pool.release(buf),
    }
}

/// The bytes of `packet`.
pub(super) fn bytes<'a>(lent: &'a mut Lent<'_>, pool: &'a mut TxPool, p: &Packet) -> &'a mut [u8] {
    match p {
        Packet::Rx { len } => {
            let end = (*len).min(lent.data.len());
            &mut lent.data[..end]
        }
        Packet::Tx { buf, len } => {
            let data = pool.data(buf);
            let end = (*len).min(data.len());
            &mut data[..end]
        }
    }
}
