//! UDP plumbing shared by the traffic engine and the reflector: loopback
//! sockets, `recvmmsg`/`sendmmsg` batches, epoll, the file-descriptor limit,
//! and the process-wide monotonic nanosecond clock written into payloads.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::OnceLock;
use std::time::Instant;

/// Largest datagram a batch slot holds.
pub const SLOT: usize = 2048;

/// Nanoseconds since the first call in this process (monotonic).
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Raises the soft open-files limit to the hard one (thousands of sockets).
pub fn raise_fd_limit() {
    // SAFETY: plain struct in/out of getrlimit/setrlimit.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// A UDP socket on 127.0.0.1, any port.
pub fn loopback_socket() -> Result<UdpSocket, String> {
    let s = UdpSocket::bind((IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
        .map_err(|e| format!("cannot bind a UDP socket on 127.0.0.1: {e}"))?;
    set_buffers(&s, 256 * 1024);
    Ok(s)
}

/// Asks for `bytes` of send and receive buffer (best effort).
pub fn set_buffers(s: &UdpSocket, bytes: i32) {
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: setsockopt with a valid fd and an int option.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            );
        }
    }
}

/// Whether RTP may go to `addr` (loopback only unless allowed).
pub fn check_rtp_target(addr: SocketAddr, allow_remote: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || allow_remote {
        Ok(())
    } else {
        Err(format!(
            "refusing to send RTP to {addr}: not a loopback address; pass --allow-remote if you mean it"
        ))
    }
}

/// A batch of datagram slots for `recvmmsg` / `sendmmsg`.
pub struct Batch {
    bufs: Vec<[u8; SLOT]>,
    iov: Vec<libc::iovec>,
    hdr: Vec<libc::mmsghdr>,
    lens: Vec<usize>,
}

impl Batch {
    pub fn new(n: usize) -> Batch {
        Batch {
            bufs: vec![[0u8; SLOT]; n],
            iov: Vec::with_capacity(n),
            // SAFETY: mmsghdr is plain data; zero is a valid (empty) value.
            hdr: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
            lens: vec![0; n],
        }
    }

    fn point(&mut self, lens: Option<usize>) {
        self.iov.clear();
        for (i, b) in self.bufs.iter_mut().enumerate() {
            let len = match lens {
                Some(_) => self.lens[i],
                None => SLOT,
            };
            self.iov.push(libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: len,
            });
        }
        for (h, iov) in self.hdr.iter_mut().zip(self.iov.iter_mut()) {
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }

    /// Receives what is queued on `fd` without blocking; 0 when nothing is.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.point(None);
        // SAFETY: hdr/iov point into our own buffers, sized as declared.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdr.as_mut_ptr(),
                self.hdr.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                // ICMP port unreachable from an earlier send: not a receive error.
                io::ErrorKind::ConnectionRefused => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = self.hdr[i].msg_len as usize;
        }
        Ok(n)
    }

    /// The `i`-th datagram of the last receive.
    pub fn packet(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i].min(SLOT)]
    }

    /// Sends the first `count` datagrams of the last receive, unchanged, on
    /// the connected socket `fd`. Returns how many went out.
    pub fn send(&mut self, fd: RawFd, count: usize) -> usize {
        self.point(Some(count));
        let mut done = 0;
        while done < count {
            // SAFETY: as in recv; the slice [done, count) is within hdr.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdr[done..].as_mut_ptr(),
                    (count - done) as libc::c_uint,
                    0,
                )
            };
            if n <= 0 {
                break; // dropped: the reflector counts what it could not send
            }
            done += n as usize;
        }
        done
    }
}

/// An epoll set over sockets, each tagged with a `u64`.
pub struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new(capacity: usize) -> Result<Epoll, String> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(format!("epoll_create1: {}", io::Error::last_os_error()));
        }
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
        })
    }

    pub fn add(&self, socket: RawFd, tag: u64) -> Result<(), String> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: tag,
        };
        // SAFETY: valid epoll fd and event struct.
        if unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, socket, &mut ev) } != 0 {
            return Err(format!("epoll_ctl: {}", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Waits up to `timeout_ms`; returns the tags of the ready sockets.
    pub fn wait(&mut self, timeout_ms: i32) -> impl Iterator<Item = u64> + '_ {
        // SAFETY: the events buffer is ours and sized as declared.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout_ms,
            )
        };
        let n = n.max(0) as usize;
        self.events[..n].iter().map(|e| e.u64)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe {
            libc::close(self.fd);
        }
    }
}

/// Whether stderr is a terminal (progress lines only then).
pub fn stderr_is_tty() -> bool {
    // SAFETY: plain query.
    unsafe { libc::isatty(2) == 1 }
}
