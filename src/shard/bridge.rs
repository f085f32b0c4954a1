//! The bridge technology state machine: from a bridge's desired state
//! ([`BridgeSpec`]) and its members' formats to the technology ARI shows and
//! the media plan the shard applies, re-evaluated on every `set_bridge`
//! (DESIGN.md, "Bridges: the cheapest technology that works").
//!
//! | members | condition | technology | plan |
//! |---|---|---|---|
//! | any | `holding` | `holding_bridge` | announcers mixed to the others, who hear no one else; nothing without an announcer |
//! | 0–1 | | `simple_bridge` | nothing forwarded |
//! | 2 | same format, no `dtmf_events`, no `proxy_media` | `native_rtp` | relay |
//! | 2 | same format, `dtmf_events` or `proxy_media` | `simple_bridge` | relay: payload passed through, header rewritten |
//! | 2 | different formats | `simple_bridge` | transcode per direction |
//! | 3+ | | `softmix` | mix on the tick |
//!
//! An announcer hears no one: in a two-party bridge nothing is forwarded to
//! it; in a mix it gets no frames.

use super::mixing::MixState;
use super::{BridgeSpec, Technology};
use crate::media::Format;

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
/// member order).
pub(super) fn choose(spec: &BridgeSpec, formats: &[Format]) -> (Technology, Plan) {
    if spec.holding {
        let plan = if spec.members.iter().any(|m| m.announcer) {
            Plan::Mix { holding: true }
        } else {
            Plan::Nothing
        };
        return (Technology::HoldingBridge, plan);
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

/// A bridge as the shard holds it.
pub(super) struct Bridge {
    pub spec: BridgeSpec,
    pub technology: Technology,
    pub plan: Plan,
    /// The mix, for `Plan::Mix`.
    pub mix: Option<Box<MixState>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::MemberSpec;

    fn spec(n: u64) -> BridgeSpec {
        BridgeSpec {
            members: (0..n)
                .map(|leg| MemberSpec {
                    leg,
                    mute: false,
                    announcer: false,
                })
                .collect(),
            ..BridgeSpec::default()
        }
    }

    #[test]
    fn technology_table() {
        use Format::*;
        let t = |s: &BridgeSpec, f: &[Format]| choose(s, f);
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
    }
}
