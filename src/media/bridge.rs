//! The bridge technology state machine: from a bridge's desired state
//! ([`BridgeSpec`]) and its members' formats to the technology ARI shows and
//! the media plan the shard applies, re-evaluated on every `set_bridge`
//! (DESIGN.md, "Bridges: the cheapest technology that works").
//!
//! | members | condition | technology | plan |
//! |---|---|---|---|
//! | any | `holding` | `holding_bridge` | announcers (and the bridge's clip or generator) mixed to the others, who hear no one else; nothing without either |
//! | any | a clip, generator or tap on the bridge | `softmix` | mix on the tick |
//! | 0–1 | | `simple_bridge` | nothing forwarded |
//! | 2 | same format, no `dtmf_events`, no `proxy_media` | `native_rtp` | relay |
//! | 2 | same format, `dtmf_events` or `proxy_media` | `simple_bridge` | relay: payload passed through, header rewritten |
//! | 2 | different formats | `simple_bridge` | transcode per direction |
//! | 3+ | | `softmix` | mix on the tick |
//!
//! An announcer hears no one: in a two-party bridge nothing is forwarded to
//! it; in a mix it gets no frames.
//!
//! A bridge's [`Extras`] — a clip played into it, a generator (music on
//! hold), taps (recordings of its mix) — are the core's, not the spec's:
//! they stay through every `set`, make the bridge mix (as Asterisk's
//! announcer and recorder channels make a bridge softmix), and go when the
//! bridge is destroyed (its clip is then reported ended).
//!
//! [`Bridges::set`] applies a plan: each member's [`Mode`], its jitter
//! buffer on a mixing path, the mix state, and the size of the transmit
//! pool. All allocation of a bridge's media state happens there, on the
//! control path.

use std::collections::HashMap;

use super::extras::Extras;
use super::leg::LegRef;
use super::mixing::{self, MemberPlan, MixState};
use super::path::{Media, Mode, TranscodePath};
use super::player::Player;
use super::{BridgeKey, BridgeSpec, CoreError, Format, LegId, MediaOp, Technology};
use crate::codec::Transcoder;
use crate::jitter::JitterBuffer;

/// How a bridge's members exchange media.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Plan {
    /// Nothing is forwarded.
    Nothing,
    /// Two members of one format: header rewrite, payload untouched.
    Relay,
    /// Two members of different formats.
    Transcode,
    /// The mix tick: `holding` means only announcers speak.
    Mix { holding: bool },
}

/// The technology and plan for `spec` whose members have `formats` (in
/// member order); `extras`: the bridge has a clip, generator or tap.
pub(super) fn choose(spec: &BridgeSpec, formats: &[Format], extras: bool) -> (Technology, Plan) {
    if spec.holding {
        let plan = if extras || spec.members.iter().any(|m| m.announcer) {
            Plan::Mix { holding: true }
        } else {
            Plan::Nothing
        };
        return (Technology::HoldingBridge, plan);
    }
    if extras {
        return (Technology::Softmix, Plan::Mix { holding: false });
    }
    match spec.members.len() {
        0 | 1 => (Technology::SimpleBridge, Plan::Nothing),
        2 => {
            let same = formats.first() == formats.get(1);
            if !same {
                (Technology::SimpleBridge, Plan::Transcode)
            } else if spec.dtmf_events || spec.proxy_media {
                (Technology::SimpleBridge, Plan::Relay)
            } else {
                (Technology::NativeRtp, Plan::Relay)
            }
        }
        _ => (Technology::Softmix, Plan::Mix { holding: false }),
    }
}

/// A bridge as the core holds it.
pub(super) struct Bridge {
    pub spec: BridgeSpec,
    pub technology: Technology,
    pub plan: Plan,
    /// The mix, for `Plan::Mix`.
    pub mix: Option<Box<MixState>>,
    pub extras: Extras,
}

/// Frames a jitter buffer of the mixing path holds.
const JITTER_SLOTS: usize = 8;
/// Most frames a mixing leg's jitter buffer holds back (it starts at one
/// and grows only for a leg whose arrivals need it).
const JITTER_MAX_DELAY: usize = 3;
/// Transmit pool buffers a core always has (produced frames in flight).
pub(super) const TX_POOL_BASE: usize = 256;
/// Transmit pool buffers per member of a transcoding or mixing bridge.
const TX_POOL_PER_MEMBER: usize = 4;

/// The bridges of one core.
#[derive(Default)]
pub(super) struct Bridges {
    map: HashMap<BridgeKey, Bridge>,
    /// Bridges with a mix, ticked in this order.
    mixing: Vec<BridgeKey>,
    /// Clips that ended (or went with their bridge), to report.
    ended: Vec<(BridgeKey, u64)>,
}

impl Bridges {
    /// A bridge's current technology.
    pub(super) fn technology(&self, key: BridgeKey) -> Option<Technology> {
        self.map.get(&key).map(|b| b.technology)
    }

    /// A bridge's current spec.
    pub(super) fn spec(&self, key: BridgeKey) -> Option<BridgeSpec> {
        self.map.get(&key).map(|b| b.spec.clone())
    }

    /// True when some bridge mixes (the core then needs its tick).
    pub(super) fn any_mixing(&self) -> bool {
        !self.mixing.is_empty()
    }

    /// One mix tick of every mixing bridge.
    pub(super) fn tick(&mut self, media: &mut Media, now: std::time::Instant) {
        for key in &self.mixing {
            let Some(b) = self.map.get_mut(key) else {
                continue;
            };
            if let Some(mix) = b.mix.as_deref_mut() {
                if let Some(ended) = mix.tick(media, now, &mut b.extras) {
                    self.ended.push((*key, ended));
                }
            }
        }
    }

    /// A leg that left the core is no member of `key` any more: the spec
    /// the bridge is set again with (a media operation, a codec change)
    /// must not name it. Its media state goes at the next `set`.
    pub(super) fn forget_member(&mut self, key: BridgeKey, leg: LegId) {
        if let Some(b) = self.map.get_mut(&key) {
            b.spec.members.retain(|m| m.leg != leg);
        }
    }

    /// Clips of bridges that ended since the last call.
    pub(super) fn take_ended(&mut self) -> Vec<(BridgeKey, u64)> {
        std::mem::take(&mut self.ended)
    }

    /// Applies a media operation to a bridge's extras and sets the bridge
    /// again when that changes whether it must mix. Answers whether the
    /// operation found something to act on.
    pub(super) fn media_op(
        &mut self,
        media: &mut Media,
        key: BridgeKey,
        op: MediaOp,
        tick_ms: u32,
    ) -> Result<bool, CoreError> {
        let b = self.map.get_mut(&key).ok_or(CoreError::Unknown)?;
        let before = b.extras.any();
        // Clips play at the mix's rate (8 kHz until the bridge mixes).
        let rate = b.mix.as_ref().map_or(8000, |m| m.rate());
        let applied = b.extras.apply(op, |key, clip, looping| {
            Player::new(key, clip, rate, looping)
        })?;
        if before != b.extras.any() {
            let spec = b.spec.clone();
            self.set(media, key, spec, tick_ms)?;
        }
        Ok(applied)
    }

    /// Removes a bridge; its members leave it.
    pub(super) fn destroy(&mut self, media: &mut Media, key: BridgeKey) -> Result<(), CoreError> {
        let old = self.map.remove(&key).ok_or(CoreError::Unknown)?;
        self.mixing.retain(|&b| b != key);
        if let Some(p) = &old.extras.player {
            self.ended.push((key, p.key));
        }
        for m in &old.spec.members {
            leave(media, m.leg, key);
        }
        Ok(())
    }

    /// Applies a bridge's desired state (see the module docs); returns the
    /// technology chosen.
    pub(super) fn set(
        &mut self,
        media: &mut Media,
        key: BridgeKey,
        spec: BridgeSpec,
        tick_ms: u32,
    ) -> Result<Technology, CoreError> {
        if spec.members.iter().any(|m| !media.legs.contains(m.leg)) {
            return Err(CoreError::Unknown);
        }
        // Members still in another bridge leave it first (the other bridge
        // is set again without them), so no leg is in two mixes.
        let mut displaced: Vec<(BridgeKey, LegId)> = spec
            .members
            .iter()
            .filter_map(|m| {
                let from = media.legs.by_id(m.leg)?.bridge?;
                (from != key).then_some((from, m.leg))
            })
            .collect();
        displaced.sort();
        let mut i = 0;
        while i < displaced.len() {
            let from = displaced[i].0;
            let gone: Vec<LegId> = displaced[i..]
                .iter()
                .take_while(|(b, _)| *b == from)
                .map(|(_, l)| *l)
                .collect();
            i += gone.len();
            if let Some(mut other) = self.spec(from) {
                other.members.retain(|m| !gone.contains(&m.leg));
                other.members.retain(|m| media.legs.contains(m.leg));
                self.set(media, from, other, tick_ms)?;
            }
        }
        let mut old = self.map.remove(&key);
        self.mixing.retain(|&b| b != key);
        let old_mix = old.as_mut().and_then(|o| o.mix.take());
        let mut extras = old
            .as_mut()
            .map(|o| std::mem::take(&mut o.extras))
            .unwrap_or_default();
        if let Some(old) = &old {
            for m in &old.spec.members {
                if !spec.members.iter().any(|n| n.leg == m.leg) {
                    leave(media, m.leg, key);
                }
            }
        }
        let refs: Vec<LegRef> = spec
            .members
            .iter()
            .filter_map(|m| media.legs.find(m.leg))
            .collect();
        let formats: Vec<Format> = refs
            .iter()
            .filter_map(|&r| media.legs.get(r).map(|l| l.format))
            .collect();
        let (technology, plan) = choose(&spec, &formats, extras.any());
        let changed = old.as_ref().map(|o| o.technology) != Some(technology);
        for (i, m) in spec.members.iter().enumerate() {
            // The partner in a two-party bridge; an announcer hears no one.
            let other = 1 - i.min(1);
            let partner = match (refs.get(other), spec.members.get(other)) {
                (Some(&to), Some(o)) if !o.announcer && other != i => Some(to),
                _ => None,
            };
            let partner_format = formats.get(other).copied();
            let Some(leg) = media.legs.by_id(m.leg) else {
                continue;
            };
            let previous = std::mem::replace(&mut leg.mode, Mode::Drop);
            leg.mode = match (plan, partner, partner_format) {
                (Plan::Relay, Some(to), _) => Mode::Relay { to },
                (Plan::Transcode, Some(to), Some(to_format)) => match previous {
                    // Same direction as before: keep the codec state.
                    Mode::Transcode(path)
                        if path.to == to
                            && path.tc.from_format() == leg.format
                            && path.tc.to_format() == to_format =>
                    {
                        Mode::Transcode(path)
                    }
                    _ => match Transcoder::new(leg.format, to_format) {
                        Ok(tc) => Mode::Transcode(Box::new(TranscodePath {
                            to,
                            tc,
                            last: None,
                            next_ts: None,
                        })),
                        Err(e) => {
                            tracing::warn!("transcoder: {e}");
                            Mode::Drop
                        }
                    },
                },
                (Plan::Mix { holding }, _, _) if !holding || m.announcer => Mode::Mix,
                _ => Mode::Drop,
            };
            if matches!(leg.mode, Mode::Mix) {
                if leg.jitter.is_none() {
                    leg.jitter = Some(Box::new(JitterBuffer::new(
                        JITTER_SLOTS,
                        mixing::max_payload(leg.format, mixing::MAX_PTIME_MS),
                        1,
                        JITTER_MAX_DELAY,
                    )));
                }
            } else {
                leg.jitter = None;
            }
            leg.bridge = Some(key);
            leg.member_mute = m.mute;
            leg.announcer = m.announcer;
            leg.absorb_dtmf = m.absorb_dtmf;
            if changed {
                leg.out.switch_source();
            }
        }
        let mix = match plan {
            Plan::Mix { holding } => {
                let members: Vec<MemberPlan> = spec
                    .members
                    .iter()
                    .zip(&refs)
                    .zip(&formats)
                    .map(|((m, &leg), &format)| MemberPlan {
                        leg,
                        format,
                        speaks: !holding || m.announcer,
                        hears: !m.announcer,
                    })
                    .collect();
                match MixState::rebuild(old_mix, &members, tick_ms) {
                    Ok(mix) => Some(Box::new(mix)),
                    Err(e) => {
                        tracing::warn!("mix: {e}");
                        None
                    }
                }
            }
            _ => None,
        };
        if let Some(mix) = &mix {
            self.mixing.push(key);
            for p in [&mut extras.player, &mut extras.generator]
                .into_iter()
                .flatten()
            {
                p.set_rate(mix.rate());
            }
        }
        self.map.insert(
            key,
            Bridge {
                spec,
                technology,
                plan,
                mix,
                extras,
            },
        );
        let producing: usize = self
            .map
            .values()
            .filter(|b| matches!(b.plan, Plan::Transcode | Plan::Mix { .. }))
            .map(|b| b.spec.members.len())
            .sum();
        media
            .pool
            .reserve(TX_POOL_BASE + TX_POOL_PER_MEMBER * producing);
        Ok(technology)
    }
}

/// `leg` is no longer a member of `bridge`.
fn leave(media: &mut Media, leg: LegId, bridge: BridgeKey) {
    if let Some(l) = media.legs.by_id(leg) {
        if l.bridge == Some(bridge) {
            l.leave_bridge();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::MemberSpec;

    fn spec(n: u64) -> BridgeSpec {
        BridgeSpec {
            members: (0..n)
                .map(|leg| MemberSpec {
                    leg: crate::media::LegId(leg),
                    mute: false,
                    announcer: false,
                    absorb_dtmf: false,
                })
                .collect(),
            ..BridgeSpec::default()
        }
    }

    #[test]
    fn technology_table() {
        use Format::*;
        let t = |s: &BridgeSpec, f: &[Format]| choose(s, f, false);
        assert_eq!(t(&spec(0), &[]), (Technology::SimpleBridge, Plan::Nothing));
        assert_eq!(
            t(&spec(1), &[Ulaw]),
            (Technology::SimpleBridge, Plan::Nothing)
        );
        assert_eq!(
            t(&spec(2), &[Ulaw, Ulaw]),
            (Technology::NativeRtp, Plan::Relay)
        );
        assert_eq!(
            t(&spec(2), &[Ulaw, Opus]),
            (Technology::SimpleBridge, Plan::Transcode)
        );
        let mut dtmf = spec(2);
        dtmf.dtmf_events = true;
        assert_eq!(
            t(&dtmf, &[Ulaw, Ulaw]),
            (Technology::SimpleBridge, Plan::Relay)
        );
        assert_eq!(
            t(&spec(3), &[Ulaw, Ulaw, Ulaw]),
            (Technology::Softmix, Plan::Mix { holding: false })
        );
        let mut holding = spec(3);
        holding.holding = true;
        assert_eq!(
            t(&holding, &[Ulaw; 3]),
            (Technology::HoldingBridge, Plan::Nothing)
        );
        holding.members[0].announcer = true;
        assert_eq!(
            t(&holding, &[Ulaw; 3]),
            (Technology::HoldingBridge, Plan::Mix { holding: true })
        );
        // A clip, generator or tap makes any bridge mix.
        assert_eq!(
            choose(&spec(2), &[Ulaw, Ulaw], true),
            (Technology::Softmix, Plan::Mix { holding: false })
        );
        holding.members[0].announcer = false;
        assert_eq!(
            choose(&holding, &[Ulaw; 3], true),
            (Technology::HoldingBridge, Plan::Mix { holding: true })
        );
    }
}
