//! RTCP of the shard's RTP legs (RFC 3550 §6): what a leg learns from the
//! RTCP it receives, the reports crossbar sends, and RTCP relayed across a
//! relay.
//!
//! # Sockets
//! Every RTP leg has an RTCP socket on the odd port next to its even RTP
//! port (RFC 3550 §11; the driver binds the two together): datagrams on it
//! arrive as [`Port::Rtcp`]. RTCP the remote muxes on the RTP port (RFC
//! 5761) is accepted too; once it has been seen, the leg's RTCP goes to the
//! RTP port, from the RTP socket (`RtcpLeg::mux`).
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
//! On the core's tick, each RTP leg gets a report every
//! `dataplane.rtcp_interval_ms` randomised by ±50 % (the core's xorshift),
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
//! leg that was reporting sends RR + BYE ([`bye`], handed to the driver with
//! the leg's removal so that it leaves before the socket closes).
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
use std::time::{Duration, Instant};

use super::buffer::{transmit, Lent, Packet, Transmit, TxPool};
use super::leg::{Leg, LegKind, LegRef, Port};
use super::path::{Media, Mode};
use crate::rtp::rtcp::{self as wire, RtcpIter, RtcpPacket, SenderInfo};
use crate::rtp::xorshift::XorShift;
use crate::rtp::Ssrc;

/// Where the leg's RTCP goes: the socket to send from and the destination.
/// Derives the default RTCP address (remote RTP port + 1) on first use.
pub(super) fn dest(leg: &mut Leg) -> Option<(Port, SocketAddr)> {
    let LegKind::Rtp { remote, .. } = &leg.kind else {
        return None;
    };
    let r = leg.rtcp.as_mut()?;
    if r.mux {
        return remote.map(|addr| (Port::Rtp, addr));
    }
    if r.remote.is_none() {
        let addr = (*remote)?;
        r.remote = Some(SocketAddr::new(addr.ip(), addr.port().checked_add(1)?));
    }
    r.remote.map(|addr| (Port::Rtcp, addr))
}

/// Takes in a compound RTCP datagram the leg's remote sent (see the module
/// docs, Receiving), arrived at `now` (`ntp`, the same instant as an NTP
/// timestamp); false when it is not valid RTCP (nothing is recorded).
pub(super) fn absorb(leg: &mut Leg, data: &[u8], now: Instant, ntp: u64) -> bool {
    if wire::summarize(data).is_err() {
        return false;
    }
    let ours = leg.out.ssrc();
    let stats = &mut leg.stats;
    stats.rx_rtcp += 1;
    for packet in RtcpIter::new(data).flatten() {
        let blocks = match packet {
            RtcpPacket::SenderReport { info, blocks, .. } => {
                stats.remote_sr = Some(info);
                if let Some(r) = leg.rtcp.as_mut() {
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
            if let Some(rtt) = wire::rtt(ntp, b.last_sr, b.delay_since_last_sr) {
                stats.rtt_ms = Some(f64::from(rtt) * 1000.0 / 65536.0);
            }
        }
    }
    true
}

/// Relays valid RTCP the leg `from` received (the lent datagram, `len`
/// bytes) to its relay target (see the module docs, Relay); false when it is
/// not relayed.
pub(super) fn relay(media: &mut Media, lent: &mut Lent<'_>, from: LegRef, len: usize) -> bool {
    let Some(sender) = media.legs.get(from) else {
        return false;
    };
    let Mode::Relay { to } = sender.mode else {
        return false;
    };
    let (in_ssrc, out_ssrc) = (sender.rx.ssrc(), sender.out.ssrc());
    let Some(target) = media.legs.get(to) else {
        return false;
    };
    let (t_out, t_in) = (target.out.ssrc(), target.rx.ssrc());
    let Some((port, addr)) = dest(target) else {
        return false;
    };
    target.stats.tx_rtcp += 1;
    let end = len.min(lent.data.len());
    wire::map_ssrcs(&mut lent.data[..end], |x| {
        if Some(Ssrc(x)) == in_ssrc {
            t_out.0
        } else if x == out_ssrc.0 {
            t_in.map_or(x, |s| s.0)
        } else {
            x
        }
    });
    media.outbox.send(
        lent,
        &mut media.pool,
        to,
        port,
        addr,
        Packet::Rx { len: end },
    );
    true
}

/// Writes the leg's report (SR or RR, one block, SDES CNAME) into `buf`;
/// its length, or `None` if it does not fit.
fn write_report(
    leg: &mut Leg,
    buf: &mut [u8],
    now: Instant,
    ntp: u64,
    cname: &[u8],
) -> Option<usize> {
    let ssrc = leg.out.ssrc();
    let r = leg.rtcp.as_mut()?;
    let (lsr, dlsr) = r.last_sr.map_or((0, 0), |(lsr, at)| {
        (lsr, wire::dlsr_units(now.saturating_duration_since(at)))
    });
    let block = leg.rx.report_block(lsr, dlsr);
    let blocks = block.as_slice();
    let (packets, octets) = leg.out.counts();
    let n = if packets != r.reported_packets {
        r.reported_packets = packets;
        let info = SenderInfo {
            ntp,
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

/// The report timer (see the module docs, Sending): called on every tick;
/// queues the reports that are due.
pub(super) fn tick(
    media: &mut Media,
    rng: &mut XorShift,
    now: Instant,
    ntp: u64,
    interval_ms: u32,
    cname: &[u8],
) {
    if interval_ms == 0 {
        return;
    }
    let Media {
        legs, pool, outbox, ..
    } = media;
    for (r, leg) in legs.iter_mut() {
        let Some(rtcp) = leg.rtcp.as_mut() else {
            continue;
        };
        let first = match rtcp.due {
            Some(due) if due > now => continue,
            due => due.is_none(),
        };
        let wait = interval_ms / 2 + rng.below(interval_ms + 1);
        rtcp.due = Some(now + Duration::from_millis(u64::from(wait)));
        if first || matches!(leg.mode, Mode::Relay { .. }) {
            continue;
        }
        let Some((port, addr)) = dest(leg) else {
            continue;
        };
        let Some(buf) = pool.take() else {
            continue;
        };
        match write_report(leg, pool.data(&buf), now, ntp, cname) {
            Some(len) => {
                leg.stats.tx_rtcp += 1;
                outbox.send(
                    &mut Lent::none(),
                    pool,
                    r,
                    port,
                    addr,
                    Packet::Tx { buf, len },
                );
            }
            None => pool.release(buf),
        }
    }
}

/// RR + BYE for a leg about to be destroyed, if the leg was reporting (not
/// relaying, reports on): a send for the driver to make before it closes
/// the leg's sockets.
pub(super) fn bye(
    leg: &mut Leg,
    r: LegRef,
    pool: &mut TxPool,
    interval_ms: u32,
) -> Option<Transmit> {
    if interval_ms == 0 || matches!(leg.mode, Mode::Relay { .. }) {
        return None;
    }
    let ssrc = leg.out.ssrc();
    let (port, addr) = dest(leg)?;
    let buf = pool.take()?;
    let data = pool.data(&buf);
    let written = wire::write_rr(data, ssrc, &[]).ok().and_then(|n| {
        wire::write_bye(data.get_mut(n..)?, ssrc)
            .ok()
            .map(|m| n + m)
    });
    let Some(len) = written else {
        pool.release(buf);
        return None;
    };
    leg.stats.tx_rtcp += 1;
    transmit(
        &mut Lent::none(),
        pool,
        r,
        port,
        addr,
        Packet::Tx { buf, len },
    )
}
