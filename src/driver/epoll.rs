//! The epoll driver, for kernels and containers where io_uring is absent,
//! too old, disabled or forbidden: level-triggered epoll over the legs'
//! sockets, the command eventfd and the timerfd; `recvmmsg` and
//! `sendmmsg` batches.
//!
//! # Loop
//! Each turn waits in `epoll_wait` (no timeout: the timerfd carries the
//! core's next deadline or the heartbeat's), publishes the heartbeat and
//! stops if told to. For each readable socket it receives up to
//! [`BATCH`] datagrams at once (at most [`ROUNDS`] batches per socket per
//! turn, so one busy socket cannot starve the others), hands each to the
//! core, and sends what the core produced before the next batch reuses the
//! buffers: consecutive sends from one socket go out in one `sendmmsg`.
//! A relay therefore costs two system calls per batch of packets, not two
//! per packet.
//!
//! # Buffers
//! [`BATCH`] receive buffers, all free when a batch is received: every send
//! from them completes (or fails) synchronously within the turn. A send the
//! kernel refuses (`EAGAIN` on a full socket buffer, or an error) is
//! counted on its leg (`tx_errors`) and dropped.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use super::sockaddr::{self, RawAddr, NAME_LEN};
use super::{drain_counter, LegSockets, Shard, Timer, Watch};
use crate::media::{LegRef, Payload, Port, RxBuf, Transmit};
use crate::shard::Command;

/// Datagrams received (and sent) per system call.
pub const BATCH: usize = 32;
/// Receive batches per readable socket per turn.
const ROUNDS: usize = 4;
/// Size of one receive buffer.
const BUF_SIZE: usize = 2048;
/// epoll events taken per turn.
const EVENTS: usize = 256;
/// Event data of the command eventfd and of the timerfd.
const WAKE: u64 = u64::MAX;
const TIMER: u64 = u64::MAX - 1;

fn token(leg: LegRef, port: Port) -> u64 {
    let p = match port {
        Port::Rtp => 0,
        Port::Rtcp => 1u64 << 60,
    };
    p | u64::from(leg.gen()) << 32 | u64::from(leg.slot())
}

fn untoken(data: u64) -> (LegRef, Port) {
    let port = if data >> 60 & 1 == 1 {
        Port::Rtcp
    } else {
        Port::Rtp
    };
    (LegRef::from_parts(data as u32, (data >> 32) as u32), port)
}

/// The receive side of a batch: buffers, addresses, headers.
struct RecvBatch {
    data: Box<[u8]>,
    names: Box<[libc::sockaddr_in6]>,
    iovs: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
}

/// The send side of a batch: destinations and headers.
struct SendBatch {
    addrs: Box<[RawAddr]>,
    iovs: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
    /// What each queued message holds, to release after the call.
    held: Vec<Transmit>,
    fd: RawFd,
}

struct Epoll {
    epfd: OwnedFd,
    recv: RecvBatch,
    send: SendBatch,
}

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 has no memory preconditions; checked below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY (all `zeroed` below): plain C structs; all-zero is valid.
        let zero_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Ok(Epoll {
            epfd,
            recv: RecvBatch {
                data: vec![0u8; BATCH * BUF_SIZE].into_boxed_slice(),
                names: vec![unsafe { std::mem::zeroed() }; BATCH].into_boxed_slice(),
                iovs: vec![zero_iov; BATCH].into_boxed_slice(),
                msgs: vec![unsafe { std::mem::zeroed() }; BATCH].into_boxed_slice(),
            },
            send: SendBatch {
                addrs: vec![RawAddr::empty(); BATCH].into_boxed_slice(),
                iovs: vec![zero_iov; BATCH].into_boxed_slice(),
                msgs: vec![unsafe { std::mem::zeroed() }; BATCH].into_boxed_slice(),
                held: Vec::with_capacity(BATCH),
                fd: -1,
            },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, data: u64) {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: data,
        };
        // SAFETY: `event` is a live local; epoll_ctl reads it (ignored for DEL).
        let rc = unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut event) };
        if rc != 0 {
            tracing::warn!("epoll_ctl: {}", io::Error::last_os_error());
        }
    }

    /// Receives up to [`BATCH`] datagrams from `fd`; how many (0 when none
    /// is waiting or on error).
    fn recv_batch(&mut self, fd: RawFd) -> usize {
        let r = &mut self.recv;
        for i in 0..BATCH {
            r.iovs[i] = libc::iovec {
                iov_base: r.data[i * BUF_SIZE..].as_mut_ptr().cast(),
                iov_len: BUF_SIZE,
            };
            let h = &mut r.msgs[i].msg_hdr;
            h.msg_name = (&mut r.names[i] as *mut libc::sockaddr_in6).cast();
            h.msg_namelen = NAME_LEN as libc::socklen_t;
            h.msg_iov = &mut r.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            r.msgs[i].msg_len = 0;
        }
        // SAFETY: every header points at live boxed buffers, names and iovecs
        // of this batch, sized as declared.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                r.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        n.max(0) as usize
    }

    /// Hands datagram `i` of the last batch, received on `leg`'s `port`, to
    /// the core.
    fn deliver(&mut self, shard: &mut Shard, now: Instant, leg: LegRef, port: Port, i: usize) {
        let r = &mut self.recv;
        let len = (r.msgs[i].msg_len as usize).min(BUF_SIZE);
        if r.msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            shard.core.handle_truncated(leg, port);
            return;
        }
        // SAFETY: `names[i]` is a plain sockaddr_in6 the kernel wrote (or
        // left as it was); reading its bytes reads initialised memory.
        let name = unsafe {
            std::slice::from_raw_parts(
                (&r.names[i] as *const libc::sockaddr_in6).cast::<u8>(),
                NAME_LEN,
            )
        };
        let Some(source) = sockaddr::from_bytes(name) else {
            return;
        };
        let data = &mut r.data[i * BUF_SIZE..i * BUF_SIZE + len];
        // A buffer the core does not keep is simply free again.
        let _ = shard
            .core
            .handle_datagram(now, leg, port, source, data, RxBuf::lend(i as u32));
    }

    /// Sends everything the core produced, in `sendmmsg` batches per socket.
    fn flush(&mut self, shard: &mut Shard) {
        while let Some(t) = shard.core.poll_transmit() {
            let Some(fd) = shard.socket(t.leg, t.port).map(UdpSocket::as_raw_fd) else {
                release(shard, t);
                continue;
            };
            if fd != self.send.fd || self.send.held.len() == BATCH {
                self.send_now(shard);
                self.send.fd = fd;
            }
            let i = self.send.held.len();
            let (ptr, len) = match &t.payload {
                Payload::Rx { buf, len } => {
                    let at = (buf.id() as usize).min(BATCH - 1) * BUF_SIZE;
                    (self.recv.data[at..].as_ptr(), (*len).min(BUF_SIZE))
                }
                Payload::Tx { buf, len } => {
                    let bytes = shard.core.tx_bytes(buf);
                    (bytes.as_ptr(), (*len).min(bytes.len()))
                }
            };
            let s = &mut self.send;
            s.addrs[i] = RawAddr::new(t.dest);
            s.iovs[i] = libc::iovec {
                iov_base: ptr as *mut libc::c_void,
                iov_len: len,
            };
            let h = &mut s.msgs[i].msg_hdr;
            h.msg_name = (&mut s.addrs[i].storage as *mut libc::sockaddr_in6).cast();
            h.msg_namelen = s.addrs[i].len;
            h.msg_iov = &mut s.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            s.held.push(t);
        }
        self.send_now(shard);
    }

    /// Sends the queued batch on its socket and releases what it held.
    fn send_now(&mut self, shard: &mut Shard) {
        let s = &mut self.send;
        let total = s.held.len();
        let mut done = 0;
        while done < total {
            // SAFETY: headers `done..total` point at live boxed addresses and
            // iovecs, whose bytes (receive buffers of this batch, core pool
            // buffers held in `held`) stay put until the call returns.
            let n = unsafe {
                libc::sendmmsg(
                    s.fd,
                    s.msgs[done..].as_mut_ptr(),
                    (total - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                done += n as usize;
            } else {
                // The first remaining message failed: count it, skip it.
                shard.core.send_failed(s.held[done].leg);
                done += 1;
            }
        }
        for t in s.held.drain(..) {
            release(shard, t);
        }
    }
}

/// Gives back what a transmit holds once it is sent (or dropped).
fn release(shard: &mut Shard, t: Transmit) {
    match t.payload {
        Payload::Tx { buf, .. } => shard.core.release_tx(buf),
        // The batch's receive buffers are reused by the next recvmmsg.
        Payload::Rx { buf, .. } => drop(buf),
    }
}

impl Watch for Epoll {
    fn watch(&mut self, leg: LegRef, sockets: &LegSockets) {
        for port in [Port::Rtp, Port::Rtcp] {
            self.ctl(
                libc::EPOLL_CTL_ADD,
                sockets.get(port).as_raw_fd(),
                token(leg, port),
            );
        }
    }

    fn unwatch(&mut self, _leg: LegRef, sockets: &LegSockets) {
        for port in [Port::Rtp, Port::Rtcp] {
            self.ctl(libc::EPOLL_CTL_DEL, sockets.get(port).as_raw_fd(), 0);
        }
    }
}

/// Sets up epoll (reporting the result on `ready`), then serves commands
/// and media until `Shutdown` or until the control plane is gone.
pub(super) fn run(
    mut shard: Shard,
    commands: Receiver<Command>,
    wake: OwnedFd,
    ready: std::sync::mpsc::Sender<io::Result<()>>,
) {
    let (mut ep, mut timer) = match Epoll::new().and_then(|e| Timer::new().map(|t| (e, t))) {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    ep.ctl(libc::EPOLL_CTL_ADD, wake.as_raw_fd(), WAKE);
    ep.ctl(libc::EPOLL_CTL_ADD, timer.raw(), TIMER);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let start = Instant::now();
    let mut running = shard.turn(start);
    timer.set(shard.next_wake(start), start);
    while running {
        // SAFETY: `events` is a live buffer of EVENTS entries.
        let n = unsafe {
            libc::epoll_wait(
                ep.epfd.as_raw_fd(),
                events.as_mut_ptr(),
                EVENTS as libc::c_int,
                -1,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            tracing::error!(shard = shard.index, "epoll_wait failed: {e}");
            break;
        }
        let now = Instant::now();
        if !shard.turn(now) {
            break;
        }
        for event in events.iter().take(n as usize) {
            match event.u64 {
                WAKE => {
                    drain_counter(wake.as_raw_fd());
                    running = shard.drain_commands(&commands, &mut ep);
                    ep.flush(&mut shard);
                }
                TIMER => {
                    drain_counter(timer.raw());
                    timer.fired();
                }
                data => {
                    let (leg, port) = untoken(data);
                    for _ in 0..ROUNDS {
                        let Some(fd) = shard.socket(leg, port).map(UdpSocket::as_raw_fd) else {
                            break;
                        };
                        let got = ep.recv_batch(fd);
                        for i in 0..got {
                            ep.deliver(&mut shard, now, leg, port, i);
                        }
                        ep.flush(&mut shard);
                        if got < BATCH {
                            break;
                        }
                    }
                }
            }
            if !running {
                break;
            }
        }
        if shard.core.poll_timeout().is_some_and(|due| due <= now) {
            shard.core.handle_timeout(now);
            ep.flush(&mut shard);
        }
        timer.set(shard.next_wake(now), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip() {
        for (slot, gen, port) in [(0, 1, Port::Rtp), (70_000, 0x0fff_ffff, Port::Rtcp)] {
            let leg = LegRef::from_parts(slot, gen);
            assert_eq!(untoken(token(leg, port)), (leg, port));
            assert_ne!(token(leg, port), WAKE);
            assert_ne!(token(leg, port), TIMER);
        }
    }
}
