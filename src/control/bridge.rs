//! `Bridge`: an ARI bridge (mixing or holding) as the control plane knows it —
//! its members in join order, their roles and flags — and its JSON snapshot.

use serde_json::{json, Value};

use crate::clock::Timestamp;
use crate::shard::{BridgeKey, BridgeSpec, LegId, MemberSpec};

/// The bridge's type attributes (`type=mixing,dtmf_events,...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeFlags {
    pub holding: bool,
    pub dtmf_events: bool,
    pub proxy_media: bool,
    pub video_sfu: bool,
    pub video_single: bool,
    pub sdp_label: bool,
}

impl BridgeFlags {
    /// The tokens `type` accepts.
    pub const TOKENS: &'static [&'static str] = &[
        "mixing",
        "holding",
        "dtmf_events",
        "proxy_media",
        "video_sfu",
        "video_single",
        "sdp_label",
    ];

    /// Parses a comma list of type attributes; `Err` names the bad token.
    pub fn parse(list: &str) -> Result<BridgeFlags, String> {
        let mut flags = BridgeFlags::default();
        let mut mixing = false;
        for token in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            match token {
                "mixing" => mixing = true,
                "holding" => flags.holding = true,
                "dtmf_events" => flags.dtmf_events = true,
                "proxy_media" => flags.proxy_media = true,
                "video_sfu" => flags.video_sfu = true,
                "video_single" => flags.video_single = true,
                "sdp_label" => flags.sdp_label = true,
                other => {
                    return Err(format!(
                        "Invalid bridge type '{other}': expected a comma-separated list of {}",
                        Self::TOKENS.join(", ")
                    ))
                }
            }
        }
        if mixing && flags.holding {
            return Err("A bridge is either mixing or holding, not both".to_string());
        }
        Ok(flags)
    }
}

/// A member's options in a bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub channel: String,
    pub role: String,
    pub mute: bool,
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
            "video_mode": if self.flags.video_sfu { "sfu" } else { "talker" },
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
        assert!(BridgeFlags::parse("bogus").unwrap_err().contains("'bogus'"));
        assert!(BridgeFlags::parse("mixing,holding").is_err());
    }
}
