//! Socket addresses in the kernel's form, for the drivers' `sendmsg`/`send`
//! destinations and the sources `recvmsg` writes.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Bytes of the largest address we handle (`sockaddr_in6`).
pub(super) const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();

/// A raw `sockaddr_in`/`sockaddr_in6` as the kernel wrote it.
pub(super) fn from_bytes(name: &[u8]) -> Option<SocketAddr> {
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

/// A socket address in the kernel's form.
#[derive(Clone, Copy)]
pub(super) struct RawAddr {
    pub storage: libc::sockaddr_in6,
    pub len: libc::socklen_t,
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

    pub(super) fn empty() -> RawAddr {
        // SAFETY: sockaddr_in6 is plain data; all-zero is a valid value.
        RawAddr {
            storage: unsafe { std::mem::zeroed() },
            len: 0,
        }
    }

    pub(super) fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_in6).cast()
    }
}

impl std::fmt::Debug for RawAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawAddr")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_addr_round_trip() {
        for addr in ["127.0.0.1:4000", "[::1]:5000"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let raw = RawAddr::new(addr);
            // SAFETY: as_ptr points at `raw.len` initialised bytes of `raw`.
            let bytes =
                unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), raw.len as usize) };
            assert_eq!(from_bytes(bytes), Some(addr));
        }
    }
}
