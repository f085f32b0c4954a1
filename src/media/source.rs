//! Which datagrams an RTP leg accepts, and from where: symmetric RTP
//! learning with probation, and the guards against packet loops and floods.
//!
//! # Learning (symmetric RTP)
//! A leg whose remote is fixed (externalMedia with an `external_host`)
//! accepts media only from that address. A leg that *learns* (created with
//! an unspecified remote; SIP callers behind NAT next) takes its remote only
//! from valid RTP of the leg's format: a source is on probation until
//! [`PROBATION`] packets of one SSRC in sequence have come from it (the model
//! is Asterisk's `strictrtp` learning with `probation = 4`). Empty
//! datagrams, garbage, STUN, RTCP and a single stray RTP packet never
//! capture a leg. Once learned, another source (a new stream after an SSRC
//! change, a NAT rebinding) takes over after the same probation, but not
//! sooner than [`RELEARN_INTERVAL`] after the last change. While a source is
//! on probation its packets are dropped (`rx_wrong_source`).
//!
//! # Loops
//! Packets the node itself sent coming back (their SSRC is one of this
//! core's outgoing SSRCs: two legs aimed at each other, directly or through
//! a peer that reflects) are dropped and counted (`rx_looped`); the leg
//! remembers the looping SSRC, so the check costs one comparison per packet
//! and a set lookup only when a leg's incoming SSRC changes.
//!
//! # Floods
//! No audio leg needs more than [`MAX_PPS`] packets a second (10 ms packets
//! are 100); what a source sends beyond that in one second is dropped and
//! counted (`rx_flood`), so a loop the SSRC check cannot see (a peer that
//! rewrites SSRCs) is still cut. Each episode is logged once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::rtp::{SeqNo, Ssrc};

/// Packets of one SSRC in sequence before a source is learned.
pub const PROBATION: u8 = 4;
/// The shortest time between two changes of a learned remote.
pub const RELEARN_INTERVAL: Duration = Duration::from_secs(1);
/// Packets a leg accepts in one second.
pub const MAX_PPS: u32 = 1000;

/// A source on probation.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    addr: SocketAddr,
    ssrc: Ssrc,
    seq: SeqNo,
    count: u8,
}

/// The source state of one RTP leg.
#[derive(Debug)]
pub(super) struct SourceGuard {
    /// The remote may be learned (and re-learned).
    learns: bool,
    candidate: Option<Candidate>,
    learned_at: Option<Instant>,
    /// The current one-second window of the flood guard.
    window: Option<Instant>,
    in_window: u32,
    flooding: bool,
    /// An SSRC of ours that came back to this leg.
    pub looped: Option<Ssrc>,
}

impl SourceGuard {
    pub(super) fn new(learns: bool) -> SourceGuard {
        SourceGuard {
            learns,
            candidate: None,
            learned_at: None,
            window: None,
            in_window: 0,
            flooding: false,
            looped: None,
        }
    }

    /// A valid RTP packet of the leg's format (`ssrc`, `seq`) came from
    /// `addr`, which is not the leg's remote: true when `addr` has now
    /// passed its probation and becomes the remote.
    pub(super) fn probation(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        ssrc: Ssrc,
        seq: SeqNo,
    ) -> bool {
        if !self.learns {
            return false;
        }
        let count = match self.candidate {
            Some(c) if c.addr == addr && c.ssrc == ssrc && seq == c.seq.next() => {
                c.count.saturating_add(1)
            }
            Some(c) if c.addr == addr && c.ssrc == ssrc && seq == c.seq => return false,
            _ => 1,
        };
        self.candidate = Some(Candidate {
            addr,
            ssrc,
            seq,
            count,
        });
        let rested = self
            .learned_at
            .is_none_or(|at| now.saturating_duration_since(at) >= RELEARN_INTERVAL);
        if count >= PROBATION && rested {
            self.candidate = None;
            self.learned_at = Some(now);
            return true;
        }
        false
    }

    /// Counts a datagram from the remote into the flood guard: false when
    /// it is over this second's allowance. The first refusal of an episode
    /// returns through `started` so that the caller logs it once.
    pub(super) fn admit(&mut self, now: Instant, started: &mut bool) -> bool {
        match self.window {
            Some(start) if now.saturating_duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                self.window = Some(now);
                self.flooding = self.in_window > MAX_PPS && self.flooding;
                self.in_window = 0;
            }
        }
        self.in_window = self.in_window.saturating_add(1);
        if self.in_window <= MAX_PPS {
            return true;
        }
        if !self.flooding {
            self.flooding = true;
            *started = true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn probation_needs_packets_in_sequence_from_one_source() {
        let t = Instant::now();
        let mut g = SourceGuard::new(true);
        // A stray packet, then another source: nothing learned.
        assert!(!g.probation(t, addr(1), Ssrc(1), SeqNo(10)));
        assert!(!g.probation(t, addr(2), Ssrc(1), SeqNo(11)));
        // Out of sequence starts over; a repeat does not count.
        assert!(!g.probation(t, addr(2), Ssrc(1), SeqNo(13)));
        assert!(!g.probation(t, addr(2), Ssrc(1), SeqNo(13)));
        assert!(!g.probation(t, addr(2), Ssrc(1), SeqNo(14)));
        assert!(!g.probation(t, addr(2), Ssrc(1), SeqNo(15)));
        assert!(g.probation(t, addr(2), Ssrc(1), SeqNo(16)));
        // A new source right after: waits for the re-learning interval.
        for (i, s) in (100..110).enumerate() {
            let at = t + Duration::from_millis(20 * i as u64);
            assert!(!g.probation(at, addr(3), Ssrc(2), SeqNo(s)));
        }
        assert!(g.probation(t + RELEARN_INTERVAL, addr(3), Ssrc(2), SeqNo(110)));
        // A fixed remote never learns.
        let mut fixed = SourceGuard::new(false);
        for s in 0..10 {
            assert!(!fixed.probation(t, addr(4), Ssrc(3), SeqNo(s)));
        }
    }

    #[test]
    fn flood_guard_allows_a_second_of_packets_and_logs_once() {
        let t = Instant::now();
        let mut g = SourceGuard::new(false);
        let mut started = false;
        let admitted = (0..3 * MAX_PPS)
            .filter(|_| g.admit(t, &mut started))
            .count();
        assert_eq!(admitted, MAX_PPS as usize);
        assert!(started);
        let mut again = false;
        assert!(g.admit(t + Duration::from_secs(1), &mut again));
        let admitted = (0..2 * MAX_PPS)
            .filter(|_| g.admit(t + Duration::from_secs(1), &mut again))
            .count();
        assert_eq!(admitted, MAX_PPS as usize - 1);
        assert!(!again, "one log line per episode");
        // A quiet second ends the episode.
        let mut third = false;
        for s in 2..4 {
            assert!(g.admit(t + Duration::from_secs(s), &mut third));
        }
        for _ in 0..MAX_PPS {
            g.admit(t + Duration::from_secs(3), &mut third);
        }
        assert!(third);
    }
}
