//! The shard's io_uring: one ring per shard thread, a provided-buffer ring
//! that multishot `RecvMsg` fills, and the encoding of operations in
//! `user_data`.
//!
//! # Buffers
//! [`BufRing`] owns `BUFFERS` receive buffers of `BUF_SIZE` bytes and the
//! page-aligned ring of descriptors registered with the kernel as buffer
//! group [`BGID`]. A buffer id (`bid`) belongs either to the kernel (in the
//! ring, or being filled) or to the shard (between the receive completion
//! that names it and [`BufRing::recycle`]). While the shard owns a buffer it
//! may rewrite it in place and send from it; it recycles it when the send
//! completes. Recycled buffers are published with one release store of the
//! ring tail per batch ([`BufRing::publish`]).
//!
//! # Receive buffer layout (multishot recvmsg)
//! `[io_uring_recvmsg_out: 16][source address: NAME_LEN][datagram ...]`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// Buffer group id of the receive buffers.
pub(super) const BGID: u16 = 0;
/// Number of receive buffers per shard (a power of two).
pub(super) const BUFFERS: u16 = 2048;
/// Size of one receive buffer.
pub(super) const BUF_SIZE: usize = 2048;
/// Bytes of the source address field in a receive buffer.
pub(super) const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();
/// Offset of the datagram in a receive buffer.
pub(super) const DATA_OFFSET: usize = 16 + NAME_LEN;

/// What an operation is, in the top 4 bits of `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// Multishot receive on the leg in `slot` (generation `gen`).
    Recv { slot: u32, gen: u32 },
    /// Multishot receive on the RTCP socket of the leg in `slot`.
    RecvRtcp { slot: u32, gen: u32 },
    /// A send from receive buffer `bid` (relayed in place).
    Send { bid: u16 },
    /// A send from buffer `index` of the shard's transmit pool (a frame the
    /// shard produced: transcoded, mixed, or relayed across a Local pair).
    SendTx { index: u32 },
    /// The read of the command eventfd.
    Wake,
    /// The tick timer.
    Tick,
}

impl Op {
    pub(super) fn encode(self) -> u64 {
        match self {
            Op::Recv { slot, gen } => {
                1 << 60 | u64::from(gen & 0x0fff_ffff) << 32 | u64::from(slot)
            }
            Op::Send { bid } => 2 << 60 | u64::from(bid),
            Op::Wake => 3 << 60,
            Op::Tick => 4 << 60,
            Op::SendTx { index } => 5 << 60 | u64::from(index),
            Op::RecvRtcp { slot, gen } => {
                6 << 60 | u64::from(gen & 0x0fff_ffff) << 32 | u64::from(slot)
            }
        }
    }

    pub(super) fn decode(user_data: u64) -> Option<Op> {
        match user_data >> 60 {
            1 => Some(Op::Recv {
                slot: user_data as u32,
                gen: (user_data >> 32) as u32 & 0x0fff_ffff,
            }),
            2 => Some(Op::Send {
                bid: user_data as u16,
            }),
            3 => Some(Op::Wake),
            4 => Some(Op::Tick),
            5 => Some(Op::SendTx {
                index: user_data as u32,
            }),
            6 => Some(Op::RecvRtcp {
                slot: user_data as u32,
                gen: (user_data >> 32) as u32 & 0x0fff_ffff,
            }),
            _ => None,
        }
    }
}

/// Builds the shard's ring: single issuer with deferred task running where
/// the kernel has it, a plain ring otherwise.
pub(super) fn new_ring(entries: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(entries * 4)
        .build(entries)
        .or_else(|_| IoUring::builder().setup_cqsize(entries * 4).build(entries))
}

/// The provided-buffer ring and its buffers.
pub(super) struct BufRing {
    /// Page-aligned descriptor ring shared with the kernel.
    ring: *mut BufRingEntry,
    layout: std::alloc::Layout,
    /// The buffers, `BUFFERS × BUF_SIZE` bytes.
    data: Box<[u8]>,
    /// Our copy of the tail (the kernel reads the published one).
    tail: u16,
    registered: bool,
}

impl BufRing {
    /// Allocates the buffers and registers them with `ring` as group
    /// [`BGID`], all owned by the kernel.
    pub(super) fn register(ring: &IoUring) -> io::Result<BufRing> {
        let layout = std::alloc::Layout::from_size_align(
            usize::from(BUFFERS) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout has a non-zero size; zeroed memory is a valid
        // (empty) array of plain-data descriptors.
        let ring_mem = unsafe { std::alloc::alloc_zeroed(layout) } as *mut BufRingEntry;
        if ring_mem.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut this = BufRing {
            ring: ring_mem,
            layout,
            data: vec![0u8; usize::from(BUFFERS) * BUF_SIZE].into_boxed_slice(),
            tail: 0,
            registered: false,
        };
        // SAFETY: `ring_mem` is page aligned, holds BUFFERS entries and lives
        // until `Drop`, which runs after the ring that uses it is dropped
        // (the shard drops the IoUring first) or unregisters it.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ring_mem as u64, BUFFERS, BGID, 0)?;
        }
        this.registered = true;
        for bid in 0..BUFFERS {
            this.recycle(bid);
        }
        this.publish();
        Ok(this)
    }

    /// Gives buffer `bid` back to the kernel (visible after `publish`).
    pub(super) fn recycle(&mut self, bid: u16) {
        if bid >= BUFFERS {
            return;
        }
        let index = usize::from(self.tail & (BUFFERS - 1));
        let addr = self.data[usize::from(bid) * BUF_SIZE..].as_mut_ptr() as u64;
        // SAFETY: index < BUFFERS, inside the allocation; the kernel reads
        // entries only up to the published tail, which does not cover this
        // one yet, so we are the only accessor.
        let entry = unsafe { &mut *self.ring.add(index) };
        entry.set_addr(addr);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes recycled buffers to the kernel.
    pub(super) fn publish(&mut self) {
        // SAFETY: the tail field overlays the `resv` field of entry 0, a
        // 2-byte aligned u16 inside the allocation; the kernel reads it
        // concurrently, hence the atomic release store (which also orders
        // the entry writes before it).
        unsafe {
            let tail = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Buffer `bid`, writable (the shard owns it after its completion).
    pub(super) fn buffer(&mut self, bid: u16) -> &mut [u8] {
        let start = usize::from(bid.min(BUFFERS - 1)) * BUF_SIZE;
        &mut self.data[start..start + BUF_SIZE]
    }

    /// Unregisters the group from `ring` (before the ring goes away).
    pub(super) fn unregister(&mut self, ring: &IoUring) {
        if self.registered {
            let _ = ring.submitter().unregister_buf_ring(BGID);
            self.registered = false;
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `register` with this layout; the kernel no
        // longer uses it (unregistered, or its ring was dropped before us).
        unsafe { std::alloc::dealloc(self.ring as *mut u8, self.layout) };
    }
}

/// One received datagram in a buffer: source and where the bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Received {
    pub source: Option<SocketAddr>,
    pub offset: usize,
    pub len: usize,
    pub truncated: bool,
}

/// Reads the recvmsg_out header of a filled buffer (`filled` bytes).
pub(super) fn parse_received(buf: &[u8], filled: usize) -> Option<Received> {
    let head = buf.get(..DATA_OFFSET)?;
    let word = |i: usize| u32::from_ne_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let (namelen, payloadlen, flags) = (word(0) as usize, word(8) as usize, word(12));
    let avail = filled.min(buf.len()).saturating_sub(DATA_OFFSET);
    Some(Received {
        source: sockaddr_from_bytes(&head[16..16 + namelen.min(NAME_LEN)]),
        offset: DATA_OFFSET,
        len: payloadlen.min(avail),
        truncated: payloadlen > avail || flags & libc::MSG_TRUNC as u32 != 0,
    })
}

/// A raw `sockaddr_in`/`sockaddr_in6` as the kernel wrote it.
fn sockaddr_from_bytes(name: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*name.first()?, *name.get(1)?]);
    let port = u16::from_be_bytes([*name.get(2)?, *name.get(3)?]);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = name.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = name.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                0,
                0,
            )))
        }
        _ => None,
    }
}

/// A socket address in the kernel's form, for `send` destinations.
#[derive(Clone, Copy)]
pub(super) struct RawAddr {
    storage: libc::sockaddr_in6,
    len: libc::socklen_t,
}

impl RawAddr {
    pub(super) fn new(addr: SocketAddr) -> RawAddr {
        // SAFETY: sockaddr_in6 is plain data; all-zero is a valid value.
        let mut storage: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let len = match addr {
            SocketAddr::V4(v4) => {
                // SAFETY: sockaddr_in is smaller than sockaddr_in6 and both are
                // plain C structs with no invalid bit patterns; the pointer is
                // suitably aligned (sockaddr_in6 has the stricter alignment).
                let sin = unsafe {
                    &mut *(&mut storage as *mut libc::sockaddr_in6).cast::<libc::sockaddr_in>()
                };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                storage.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                storage.sin6_port = v6.port().to_be();
                storage.sin6_addr.s6_addr = v6.ip().octets();
                storage.sin6_flowinfo = v6.flowinfo();
                storage.sin6_scope_id = v6.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        RawAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }

    pub(super) fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_in6).cast()
    }

    pub(super) fn len(&self) -> libc::socklen_t {
        self.len
    }
}

/// True when `ip` means "not known yet" (the leg learns its remote).
pub(super) fn is_unspecified(addr: &SocketAddr) -> bool {
    addr.port() == 0
        || matches!(addr.ip(), IpAddr::V4(ip) if ip.is_unspecified())
        || matches!(addr.ip(), IpAddr::V6(ip) if ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_round_trip() {
        for op in [
            Op::Recv {
                slot: 7,
                gen: 0x0fff_ffff,
            },
            Op::Send { bid: 2047 },
            Op::Wake,
            Op::Tick,
            Op::SendTx { index: 70_000 },
            Op::RecvRtcp { slot: 3, gen: 9 },
        ] {
            assert_eq!(Op::decode(op.encode()), Some(op));
        }
        assert_eq!(Op::decode(0), None);
    }

    #[test]
    fn raw_addr_round_trip() {
        for addr in ["127.0.0.1:4000", "[::1]:5000"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let raw = RawAddr::new(addr);
            // SAFETY: as_ptr points at `raw.len` initialised bytes of `raw`.
            let bytes = unsafe {
                std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), raw.len() as usize)
            };
            assert_eq!(sockaddr_from_bytes(bytes), Some(addr));
        }
    }
}
