//! The leg table: every leg a core carries, in slots guarded by generations.
//!
//! A [`LegRef`] names a slot *and* its generation; a slot's generation
//! changes whenever its leg leaves, so a reference (in a driver's pending
//! completion, a mix member, a relay target) to a leg that has gone never
//! reaches the leg that reuses the slot. The control plane's [`LegId`]s map
//! to slots through `ids`, touched only on the control path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::path::Mode;
use super::source::SourceGuard;
use super::{BridgeKey, Format, LegId, RtpStats};
use crate::jitter::JitterBuffer;
use crate::rtp::{OutStream, ReceiveState, Ssrc};

/// Generations use 28 bits (drivers pack them beside the slot in 64 bits).
const GEN_MASK: u32 = 0x0fff_ffff;

/// A leg as the core and its driver name it: slot and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LegRef {
    slot: u32,
    gen: u32,
}

impl LegRef {
    /// The slot, an index into the table (and a driver's socket table).
    pub fn slot(self) -> u32 {
        self.slot
    }

    /// The slot's generation when the reference was made (28 bits).
    pub fn gen(self) -> u32 {
        self.gen
    }

    /// Rebuilds a reference a driver packed earlier; a stale one is simply
    /// not found.
    pub fn from_parts(slot: u32, gen: u32) -> LegRef {
        LegRef {
            slot,
            gen: gen & GEN_MASK,
        }
    }
}

/// Which of an RTP leg's sockets: RTP (the even port) or RTCP (the next).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    Rtp,
    Rtcp,
}

/// What carries a leg's media.
#[derive(Debug)]
pub(super) enum LegKind {
    /// RTP on a driver's sockets, with the remote (learned when `None`, or
    /// re-learned, as `guard` says).
    Rtp {
        local: SocketAddr,
        remote: Option<SocketAddr>,
        guard: SourceGuard,
    },
    /// A Local channel half; `peer_slot` is the other half on this core.
    Local {
        peer: LegId,
        peer_slot: Option<LegRef>,
    },
    /// A snoop on another leg of this core (see `snoop`).
    Snoop(Box<super::snoop::Snoop>),
}

/// The RTCP side of an RTP leg (RFC 3550 §6): where reports go and their
/// schedule (see `rtcp`).
#[derive(Debug, Default)]
pub(super) struct RtcpLeg {
    /// Where RTCP is sent: the source of the last valid RTCP received on the
    /// RTCP port, else the remote's RTP port + 1 (set when first needed).
    pub remote: Option<SocketAddr>,
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

/// A leg as the core holds it (moved whole between shards).
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
    /// A bridge member whose telephone-events are not passed on.
    pub absorb_dtmf: bool,
    pub hold: bool,
    pub bridge: Option<BridgeKey>,
    pub mode: Mode,
    /// Present while the leg is a member of a mixing bridge.
    pub jitter: Option<Box<JitterBuffer>>,
    /// The SSRC the jitter buffer holds frames of.
    pub mix_ssrc: Option<Ssrc>,
    /// Loss and jitter of what the leg's socket receives.
    pub rx: ReceiveState,
    pub stats: RtpStats,
    /// RTP legs only.
    pub rtcp: Option<RtcpLeg>,
    /// The telephone-event payload type (RFC 4733), if the leg has one.
    pub dtmf_pt: Option<u8>,
    pub dtmf_rx: super::dtmf::DtmfRx,
    /// Digits being sent.
    pub dtmf_tx: Option<Box<super::dtmf::DtmfTx>>,
    /// Talk detection on what the leg receives, when set.
    pub talk: Option<Box<super::talk::TalkDetect>>,
    /// A clip or generator playing to the leg (it then hears nothing
    /// else), and recordings of what it receives.
    pub extras: super::extras::Extras,
    /// The snoop legs spying on or whispering into this leg.
    pub snoops: Vec<LegId>,
}

impl Leg {
    /// True while the core makes what the leg hears (a clip or a
    /// generator): its bridge's audio is held back.
    pub(super) fn playing(&self) -> bool {
        self.extras.playing()
    }
}

impl Leg {
    /// Forgets everything that belonged to its bridge.
    pub(super) fn leave_bridge(&mut self) {
        self.bridge = None;
        self.mode = Mode::Drop;
        self.jitter = None;
        self.mix_ssrc = None;
        self.member_mute = false;
        self.announcer = false;
        self.absorb_dtmf = false;
        self.out.switch_source();
    }
}

struct Slot {
    gen: u32,
    leg: Option<Box<Leg>>,
}

/// The legs of one core.
#[derive(Default)]
pub(super) struct LegTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    ids: HashMap<LegId, u32>,
}

impl LegTable {
    /// The leg `r` names, if it is still there.
    pub(super) fn get(&mut self, r: LegRef) -> Option<&mut Leg> {
        let s = self.slots.get_mut(r.slot as usize)?;
        if s.gen != r.gen {
            return None;
        }
        s.leg.as_deref_mut()
    }

    /// The current reference of the leg with control-plane id `id`.
    pub(super) fn find(&self, id: LegId) -> Option<LegRef> {
        let slot = *self.ids.get(&id)?;
        Some(LegRef {
            slot,
            gen: self.slots[slot as usize].gen,
        })
    }

    pub(super) fn by_id(&mut self, id: LegId) -> Option<&mut Leg> {
        let r = self.find(id)?;
        self.get(r)
    }

    pub(super) fn contains(&self, id: LegId) -> bool {
        self.ids.contains_key(&id)
    }

    /// Every leg with its reference, in slot order.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (LegRef, &mut Leg)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let gen = s.gen;
            s.leg.as_deref_mut().map(|l| {
                (
                    LegRef {
                        slot: i as u32,
                        gen,
                    },
                    l,
                )
            })
        })
    }

    /// Puts a leg in a free slot and links Local halves.
    pub(super) fn insert(&mut self, leg: Box<Leg>) -> LegRef {
        let id = leg.id;
        let peer = match &leg.kind {
            LegKind::Local { peer, .. } => Some(*peer),
            LegKind::Rtp { .. } | LegKind::Snoop(_) => None,
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot { gen: 0, leg: None });
                self.slots.len() as u32 - 1
            }
        };
        let entry = &mut self.slots[slot as usize];
        entry.gen = entry.gen.wrapping_add(1) & GEN_MASK;
        entry.leg = Some(leg);
        let me = LegRef {
            slot,
            gen: entry.gen,
        };
        self.ids.insert(id, slot);
        if let Some(peer) = peer.and_then(|p| self.find(p)) {
            self.set_peer(me, Some(peer));
            self.set_peer(peer, Some(me));
        }
        me
    }

    fn set_peer(&mut self, r: LegRef, value: Option<LegRef>) {
        if let Some(Leg {
            kind: LegKind::Local { peer_slot, .. },
            ..
        }) = self.get(r)
        {
            *peer_slot = value;
        }
    }

    /// Takes a leg out of its slot, unlinks its Local peer, and stops every
    /// other leg forwarding to it.
    pub(super) fn remove(&mut self, r: LegRef) -> Option<Box<Leg>> {
        let entry = self.slots.get_mut(r.slot as usize)?;
        if entry.gen != r.gen {
            return None;
        }
        let leg = entry.leg.take()?;
        entry.gen = entry.gen.wrapping_add(1) & GEN_MASK;
        self.ids.remove(&leg.id);
        self.free.push(r.slot);
        if let LegKind::Local {
            peer_slot: Some(peer),
            ..
        } = leg.kind
        {
            self.set_peer(peer, None);
        }
        for (_, other) in self.iter_mut() {
            if other.mode.target() == Some(r) {
                other.mode = Mode::Drop;
            }
        }
        Some(leg)
    }

    /// Number of legs.
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }
}
