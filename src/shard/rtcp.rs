//! RTCP of the shard's RTP legs (RFC 3550 §6): what a leg learns from the
//! RTCP it receives, the reports crossbar sends, and RTCP relayed across a
//! relay.
//!
//! # Sockets
//! Every RTP leg has an RTCP socket on the odd port next to its even RTP
//! port (RFC 3550 §11; `thread` allocates the two together), received with
//! the same multishot recvmsg into the same provided-buffer ring. RTCP the
//! remote muxes on the RTP port (RFC 5761) is accepted too; once it has
//! been seen, the leg's RTCP goes to the RTP port, from the RTP socket
//! (`RtcpLeg::mux`).
//!
//! # Receiving
//! A datagram on the RTCP port is accepted only from the IP address of the
//! leg's remote (any port: the source of the last valid one becomes where
//! our RTCP goes, symmetric RTCP); others, and datagrams that are not a
//! valid compound ([`crate::rtp::rtcp::summarize`]), count in
//! `rx_rtcp_bad` and are dropped. A valid one counts in `rx_rtcp`; each SR
//! and RR in `rx_rtcp_reports`; an SR is kept as `remote_sr` (and its LSR
//! with its arrival time, for our next DLSR); a report block whose SSRC is
//! our outgoing SSRC gives `remote_fraction_lost`, `remote_cumulative_lost`,
//! `remote_jitter` and, when it echoes one of our SRs, `rtt_ms`.
//!
//! # Sending
//! On the shard's ring timer, each RTP leg gets a report every
//! `dataplane.rtcp_interval_ms` randomised by ±50 % (the shard's xorshift),
//! the first one interval after the leg is first seen by the tick — unless
//! the leg relays (`Mode::Relay`: `native_rtp`, or a same-format
//! `simple_bridge` passing DTMF/proxying media), where the endpoints' own
//! RTCP passes through instead. The report is a compound of an SR (if our
//! `OutStream` sent packets since the last report; packet and octet counts
//! are the `OutStream`'s, the RTP timestamp the stream's clock at send
//! time) or else an RR, with one report block about the stream the leg
//! receives (`ReceiveState`, with LSR/DLSR from the remote's last SR), then
//! an SDES CNAME (`crossbar@<rtp.bind_ip>`). It is written into a transmit
//! pool buffer (no allocation) and sent to the remote's RTCP address (its
//! RTP port + 1 unless RTCP arrived from elsewhere, or muxed). A destroyed
//! leg that was reporting sends RR + BYE from the control path.
//!
//! # Relay
//! Valid RTCP received (on either port) by a leg in `Mode::Relay` is sent on
//! to the relay target's RTCP address from the buffer it arrived in, after
//! rewriting its SSRCs in place ([`crate::rtp::rtcp::map_ssrcs`]) the way
//! the RTP is rewritten: the sender's SSRC becomes the target's outgoing
//! SSRC, and report blocks about our stream to the sender become blocks
//! about the target's incoming SSRC. RTP timestamps in the SR and extended
//! sequence numbers in report blocks are not shifted by the relay's
//! seq/ts offsets (they are correct as long as the relay kept the stream's
//! numbering, which it does until a source or technology switch).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::path::{Buf, Leg, LegKind, Media, Mode, Packet};
use super::thread::Io;
use super::uring::RawAddr;
use crate::rtp::rtcp::{self as wire, RtcpIter, RtcpPacket, SenderInfo};
use crate::rtp::xorshift::XorShift;
use crate::rtp::Ssrc;

/// Where the leg's RTCP goes: the socket to send from and the destination.
/// Derives the default RTCP address (remote RTP port + 1) on first use.
pub(super) fn dest(leg: &mut Leg) -> Option<(RawFd, SocketAddr, RawAddr)> {
    let LegKind::Rtp { socket, remote } = &leg.kind else {
        return None;
    };
    let r = leg.rtcp.as_deref_mut()?;
    if r.mux {
        return remote.map(|(addr, raw)| (socket.as_raw_fd(), addr, raw));
    }
    if r.remote.is_none() {
        let (addr, _) = (*remote)?;
        let a = SocketAddr::new(addr.ip(), addr.port().checked_add(1)?);
        r.remote = Some((a, RawAddr::new(a)));
    }
    r.remote
        .map(|(addr, raw)| (r.socket.as_raw_fd(), addr, raw))
}

/// Takes in a compound RTCP datagram the leg's remote sent (see the module
/// docs, Receiving); false when it is not valid RTCP (nothing is recorded).
pub(super) fn absorb(leg: &mut Leg, data: &[u8], now: Instant) -> bool {
    if wire::summarize(data).is_err() {
        return false;
    }
    let ours = leg.out.ssrc();
    let mut arrival = None;
    let stats = &mut leg.stats;
    stats.rx_rtcp += 1;
    for packet in RtcpIter::new(data).flatten() {
        let blocks = match packet {
            RtcpPacket::SenderReport { info, blocks, .. } => {
                stats.remote_sr = Some(info);
                if let Some(r) = leg.rtcp.as_deref_mut() {
                    r.last_sr = Some((wire::ntp_middle(info.ntp), now));
                }
                blocks
            }
            RtcpPacket::ReceiverReport { blocks, .. } => blocks,
            _ => continue,
        };
        stats.rx_rtcp_reports += 1;
        for b in blocks.filter(|b| b.ssrc == ours) {
            stats.remote_reports += 1;
            stats.remote_fraction_lost = b.fraction_lost;
            stats.remote_cumulative_lost = b.cumulative_lost;
            stats.remote_jitter = b.jitter;
            stats.remote_max_jitter = stats.remote_max_jitter.max(b.jitter);
            let a = *arrival.get_or_insert_with(crate::clock::ntp_now);
            if let Some(rtt) = wire::rtt(a, b.last_sr, b.delay_since_last_sr) {
                stats.rtt_ms = Some(f64::from(rtt) * 1000.0 / 65536.0);
            }
        }
    }
    true
}

/// Relays valid RTCP the leg in `from` received in `packet` to its relay
/// target (see the module docs, Relay); true when the buffer was handed to
/// a send, false when the caller still owns it.
pub(super) fn relay(media: &mut Media, io: &mut Io, from: u32, packet: Packet) -> bool {
    let Some(sender) = media.leg(from) else {
        return false;
    };
    let Mode::Relay { to } = sender.mode else {
        return false;
    };
    let (in_ssrc, out_ssrc) = (sender.rx.ssrc(), sender.out.ssrc());
    let gen = media.gen(to);
    let Some(target) = media.leg(to) else {
        return false;
    };
    let (t_out, t_in) = (target.out.ssrc(), target.rx.ssrc());
    let Some((fd, _, raw)) = dest(target) else {
        return false;
    };
    target.stats.tx_rtcp += 1;
    let Buf::Rx { bid, offset } = packet.buf else {
        return false;
    };
    let buf = io.bufs.buffer(bid);
    let end = (offset + packet.len).min(buf.len());
    wire::map_ssrcs(&mut buf[offset.min(end)..end], |x| {
        if Some(Ssrc(x)) == in_ssrc {
            t_out.0
        } else if x == out_ssrc.0 {
            t_in.map_or(x, |s| s.0)
        } else {
            x
        }
    });
    media.send_raw(io, fd, to, gen, raw, packet);
    true
}

/// Writes the leg's report (SR or RR, one block, SDES CNAME) into `buf`;
/// its length, or `None` if it does not fit.
fn write_report(leg: &mut Leg, buf: &mut [u8], now: Instant, cname: &[u8]) -> Option<usize> {
    let ssrc = leg.out.ssrc();
    let r = leg.rtcp.as_deref_mut()?;
    let (lsr, dlsr) = r.last_sr.map_or((0, 0), |(lsr, at)| {
        (lsr, wire::dlsr_units(now.saturating_duration_since(at)))
    });
    let block = leg.rx.report_block(lsr, dlsr);
    let blocks = block.as_slice();
    let (packets, octets) = leg.out.counts();
    let n = if packets != r.reported_packets {
        r.reported_packets = packets;
        let info = SenderInfo {
            ntp: crate::clock::ntp_now(),
            rtp_ts: leg.out.timestamp_at(now).map_or(0, |t| t.0),
            packets: packets as u32,
            octets: octets as u32,
        };
        wire::write_sr(buf, ssrc, &info, blocks).ok()?
    } else {
        wire::write_rr(buf, ssrc, blocks).ok()?
    };
    let m = wire::write_sdes_cname(buf.get_mut(n..)?, ssrc, cname).ok()?;
    Some(n + m)
}

/// The report timer (see the module docs, Sending): called on every ring
/// tick; sends the reports that are due.
pub(super) fn tick(
    media: &mut Media,
    io: &mut Io,
    rng: &mut XorShift,
    now: Instant,
    interval_ms: u32,
    cname: &[u8],
) {
    if interval_ms == 0 {
        return;
    }
    for slot in 0..media.slots.len() as u32 {
        let gen = media.gen(slot);
        let Some(leg) = media
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.leg.as_deref_mut())
        else {
            continue;
        };
        let Some(r) = leg.rtcp.as_deref_mut() else {
            continue;
        };
        let first = match r.due {
            Some(due) if due > now => continue,
            due => due.is_none(),
        };
        let wait = interval_ms / 2 + rng.below(interval_ms + 1);
        r.due = Some(now + Duration::from_millis(u64::from(wait)));
        if first || matches!(leg.mode, Mode::Relay { .. }) {
            continue;
        }
        let Some((fd, _, raw)) = dest(leg) else {
            continue;
        };
        let Some(index) = media.pool.take() else {
            continue;
        };
        match write_report(leg, media.pool.data(index), now, cname) {
            Some(len) => {
                leg.stats.tx_rtcp += 1;
                let packet = Packet {
                    buf: Buf::Tx { index },
                    len,
                };
                media.send_raw(io, fd, slot, gen, raw, packet);
            }
            None => media.pool.release(index),
        }
    }
}

/// RR + BYE for a leg about to be destroyed, sent at once from the control
/// path (best effort), if the leg was reporting (not relaying, reports on).
pub(super) fn bye(leg: &mut Leg, interval_ms: u32) {
    if interval_ms == 0 || matches!(leg.mode, Mode::Relay { .. }) {
        return;
    }
    let ssrc = leg.out.ssrc();
    let Some((_, addr, _)) = dest(leg) else {
        return;
    };
    let mut buf = [0u8; 16];
    let Ok(n) = wire::write_rr(&mut buf, ssrc, &[]) else {
        return;
    };
    let Ok(m) = wire::write_bye(&mut buf[n..], ssrc) else {
        return;
    };
    let sent = match (&leg.kind, leg.rtcp.as_deref()) {
        (LegKind::Rtp { socket, .. }, Some(r)) if r.mux => socket.send_to(&buf[..n + m], addr),
        (_, Some(r)) => r.socket.send_to(&buf[..n + m], addr),
        _ => return,
    };
    if sent.is_ok() {
        leg.stats.tx_rtcp += 1;
    }
}
