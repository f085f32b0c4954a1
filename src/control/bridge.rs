//! `Bridge`: an ARI bridge (mixing or holding) as the control plane knows it —
//! its members in join order, their roles and flags — and its JSON snapshot.

use serde_json::{json, Value};

use crate::clock::Timestamp;
use crate::shard::{BridgeKey, BridgeSpec, LegId, MemberSpec};

/// The bridge's type attributes (`type=mixing,dtmf_events,...`), as
/// Asterisk's `bridge_create_common` (res/res_stasis.c) reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeFlags {
    pub holding: bool,
    pub dtmf_events: bool,
    pub proxy_media: bool,
    /// `video_single`: the bridge's video mode is "single" (one video source
    /// for all). crossbar carries audio only, so, as in Asterisk for a bridge
    /// of audio-only members, the mode shows in the snapshot and nothing else
    /// changes.
    pub video_single: bool,
}

impl BridgeFlags {
    /// The tokens `type` accepts.
    pub const TOKENS: &'static [&'static str] = &[
        "mixing",
        "holding",
        "dtmf_events",
        "proxy_media",
        "video_single",
    ];

    /// Tokens Asterisk accepts that crossbar refuses, and why.
    pub const REFUSED: &'static [(&'static str, &'static str)] = &[
        (
            "video_sfu",
            "crossbar carries no video, and Asterisk's video_sfu also keeps every bridge in a softmix, even of two members, which crossbar's bridges do not offer",
        ),
        (
            "sdp_label",
            "crossbar negotiates no SDP (Asterisk labels the video streams of an SFU bridge with it)",
        ),
    ];

    /// Parses a comma list of type attributes (empty: `mixing`); `Err` names
    /// the bad token. As in Asterisk, a list needs `mixing` or `holding` (a
    /// list of only `dtmf_events`, `proxy_media` or `video_single` creates no
    /// bridge there) and cannot have both.
    pub fn parse(list: &str) -> Result<BridgeFlags, String> {
        let mut flags = BridgeFlags::default();
        let mut mixing = false;
        let mut tokens = 0;
        for token in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            tokens += 1;
            match token {
                "mixing" => mixing = true,
                "holding" => flags.holding = true,
                "dtmf_events" => flags.dtmf_events = true,
                "proxy_media" => flags.proxy_media = true,
                "video_single" => flags.video_single = true,
                other => {
                    if let Some((_, why)) = Self::REFUSED.iter().find(|(t, _)| *t == other) {
                        return Err(format!("Bridge type '{other}' is not supported: {why}"));
                    }
                    return Err(format!(
                        "Invalid bridge type '{other}': expected a comma-separated list of {}",
                        Self::TOKENS.join(", ")
                    ));
                }
            }
        }
        if mixing && flags.holding {
            return Err("A bridge is either mixing or holding, not both".to_string());
        }
        if tokens > 0 && !mixing && !flags.holding {
            return Err(format!(
                "Bridge type '{}' needs 'mixing' or 'holding'",
                list.trim()
            ));
        }
        Ok(flags)
    }

    /// The snapshot's `video_mode`.
    pub fn video_mode(&self) -> &'static str {
        if self.video_single {
            "single"
        } else {
            "talker"
        }
    }
}

/// A member's options in a bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub channel: String,
    pub role: String,
    pub mute: bool,
    /// `absorbDTMF`: its digits do not pass through the bridge.
    pub absorb_dtmf: bool,
}

/// A bridge.
#[derive(Clone, Debug)]
pub struct Bridge {
    pub id: String,
    pub key: BridgeKey,
    pub name: String,
    pub flags: BridgeFlags,
    pub technology: &'static str,
    pub members: Vec<Member>,
    pub creationtime: Timestamp,
    pub seq: u64,
}

impl Bridge {
    /// The JSON snapshot ARI shows (`Bridge` model).
    pub fn snapshot(&self) -> Value {
        json!({
            "id": self.id,
            "technology": self.technology,
            "bridge_type": if self.flags.holding { "holding" } else { "mixing" },
            "bridge_class": "stasis",
            "creator": "Stasis",
            "name": self.name,
            "channels": self.members.iter().map(|m| m.channel.as_str()).collect::<Vec<_>>(),
            "creationtime": self.creationtime.to_string(),
            "video_mode": self.flags.video_mode(),
        })
    }

    /// Whether `channel` is a member.
    pub fn has(&self, channel: &str) -> bool {
        self.members.iter().any(|m| m.channel == channel)
    }

    /// The data plane's view of this bridge, given each member's leg.
    pub fn spec(&self, leg_of: impl Fn(&str) -> Option<LegId>) -> BridgeSpec {
        BridgeSpec {
            members: self
                .members
                .iter()
                .filter_map(|m| {
                    Some(MemberSpec {
                        leg: leg_of(&m.channel)?,
                        mute: m.mute,
                        announcer: m.role == "announcer",
                        absorb_dtmf: m.absorb_dtmf,
                    })
                })
                .collect(),
            dtmf_events: self.flags.dtmf_events,
            proxy_media: self.flags.proxy_media,
            holding: self.flags.holding,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_type_lists() {
        let f = BridgeFlags::parse("mixing,dtmf_events").unwrap();
        assert!(f.dtmf_events && !f.holding);
        assert!(BridgeFlags::parse("holding").unwrap().holding);
        assert_eq!(BridgeFlags::parse("").unwrap(), BridgeFlags::default());
        assert_eq!(BridgeFlags::parse(" , ").unwrap(), BridgeFlags::default());
        assert!(BridgeFlags::parse("bogus").unwrap_err().contains("'bogus'"));
        assert!(BridgeFlags::parse("mixing,holding").is_err());
    }

    #[test]
    fn video_single_shows_in_the_video_mode_and_video_sfu_is_refused() {
        let single = BridgeFlags::parse("mixing, video_single").unwrap();
        assert!(single.video_single);
        assert_eq!(single.video_mode(), "single");
        assert_eq!(
            BridgeFlags::parse("holding").unwrap().video_mode(),
            "talker"
        );
        for token in ["video_sfu", "sdp_label"] {
            let e = BridgeFlags::parse(&format!("mixing,{token}")).unwrap_err();
            assert!(
                e.starts_with(&format!("Bridge type '{token}' is not supported: ")),
                "{e}"
            );
        }
        let e = BridgeFlags::parse("bogus").unwrap_err();
        assert!(!e.contains("video_sfu") && !e.contains("sdp_label"), "{e}");
    }

    #[test]
    fn a_list_without_mixing_or_holding_is_refused() {
        for list in [
            "dtmf_events",
            "proxy_media",
            "video_single",
            "dtmf_events,video_single",
        ] {
            let e = BridgeFlags::parse(list).unwrap_err();
            assert_eq!(
                e,
                format!("Bridge type '{list}' needs 'mixing' or 'holding'")
            );
        }
        assert!(BridgeFlags::parse("holding,video_single").is_ok());
    }
}
