//! `Channel`: one ARI channel (a media leg with a stable id and a name) as the
//! control plane knows it, and its JSON snapshot in Asterisk's field order.

use std::net::SocketAddr;

use serde_json::{json, Map, Value};

use crate::clock::Timestamp;
use crate::media::Format;
use crate::shard::LegId;

/// Channel states, with the names ARI uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    Down,
    Ring,
    Ringing,
    Up,
}

impl ChannelState {
    pub fn name(self) -> &'static str {
        match self {
            ChannelState::Down => "Down",
            ChannelState::Ring => "Ring",
            ChannelState::Ringing => "Ringing",
            ChannelState::Up => "Up",
        }
    }
}

/// What kind of leg the channel is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// `externalMedia`: RTP over UDP to `remote`, from our `local`.
    UnicastRtp {
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// One half of a Local pair; `peer` is the other half's id.
    Local { peer: String, half: u8 },
    /// A SIP call (incoming or outgoing): `call` is the SIP agent's handle,
    /// `local` our RTP address, `endpoint` the configured endpoint it belongs
    /// to, if any.
    Sip {
        call: Option<crate::sip::agent::CallKey>,
        local: SocketAddr,
        endpoint: Option<String>,
    },
    /// A snoop on the channel `target` (`POST /channels/{id}/snoop`).
    Snoop { target: String },
}

/// Where the channel sits in (our absent) dialplan, for the `dialplan` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialplanCep {
    pub context: String,
    pub exten: String,
    pub priority: i64,
}

/// A channel.
#[derive(Clone, Debug)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub leg: LegId,
    pub kind: ChannelKind,
    pub format: Format,
    pub state: ChannelState,
    pub caller: (String, String),
    pub connected: (String, String),
    pub dialplan: DialplanCep,
    pub creationtime: Timestamp,
    pub language: String,
    /// The Stasis application the channel is in, if any.
    pub app: Option<String>,
    /// The application it last left (its `ChannelDestroyed` still goes there).
    pub departed_app: Option<String>,
    /// The args it entered the application with (for `app_data`).
    pub app_args: Vec<String>,
    /// The bridge it is in, if any.
    pub bridge: Option<String>,
    /// Channel variables, in the order they were first set.
    pub vars: Map<String, Value>,
    /// Creation order, for listing.
    pub seq: u64,
    pub muted_in: bool,
    pub muted_out: bool,
    pub held: bool,
    /// An originating Local half that has not been dialed yet (`POST /channels/create`).
    pub awaiting_dial: bool,
    /// Snoop channels on this channel (hung up with it).
    pub snoops: Vec<String>,
    /// The application (and args) the channel enters once answered or dialed.
    pub pending_stasis: Option<(String, Vec<String>)>,
}

impl Channel {
    /// A new channel in state `Down`, in no application and no bridge, with
    /// crossbar's defaults (`default`/`s`/1 dialplan location, language `en`).
    pub fn new(
        id: String,
        name: String,
        leg: LegId,
        kind: ChannelKind,
        format: Format,
        now: Timestamp,
        seq: u64,
    ) -> Channel {
        Channel {
            id,
            name,
            leg,
            kind,
            format,
            state: ChannelState::Down,
            caller: (String::new(), String::new()),
            connected: (String::new(), String::new()),
            dialplan: DialplanCep {
                context: "default".to_string(),
                exten: "s".to_string(),
                priority: 1,
            },
            creationtime: now,
            language: "en".to_string(),
            app: None,
            departed_app: None,
            app_args: Vec::new(),
            bridge: None,
            vars: Map::new(),
            seq,
            muted_in: false,
            muted_out: false,
            held: false,
            awaiting_dial: false,
            snoops: Vec::new(),
            pending_stasis: None,
        }
    }

    /// The JSON snapshot ARI shows (`Channel` model).
    pub fn snapshot(&self) -> Value {
        let app_data = match &self.app {
            Some(app) if self.app_args.is_empty() => app.clone(),
            Some(app) => format!("{app},{}", self.app_args.join(",")),
            None => String::new(),
        };
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "state": self.state.name(),
            "protocol_id": "",
            "caller": { "name": self.caller.0, "number": self.caller.1 },
            "connected": { "name": self.connected.0, "number": self.connected.1 },
            "accountcode": "",
            "dialplan": {
                "context": self.dialplan.context,
                "exten": self.dialplan.exten,
                "priority": self.dialplan.priority,
                "app_name": if self.app.is_some() { "Stasis" } else { "" },
                "app_data": app_data,
            },
            "creationtime": self.creationtime.to_string(),
            "language": self.language,
        });
        if let ChannelKind::UnicastRtp { local, .. } = &self.kind {
            v["channelvars"] = json!({
                "UNICASTRTP_LOCAL_ADDRESS": local.ip().to_string(),
                "UNICASTRTP_LOCAL_PORT": local.port().to_string(),
            });
        }
        v
    }

    /// Built-in read-only variables of the channel.
    pub fn builtin_var(&self, name: &str) -> Option<String> {
        match (&self.kind, name) {
            (ChannelKind::UnicastRtp { local, .. }, "UNICASTRTP_LOCAL_ADDRESS") => {
                Some(local.ip().to_string())
            }
            (ChannelKind::UnicastRtp { local, .. }, "UNICASTRTP_LOCAL_PORT") => {
                Some(local.port().to_string())
            }
            _ => None,
        }
    }

    /// The Local pair peer's id, for a Local half.
    pub fn local_peer(&self) -> Option<&str> {
        match &self.kind {
            ChannelKind::Local { peer, .. } => Some(peer),
            ChannelKind::UnicastRtp { .. }
            | ChannelKind::Sip { .. }
            | ChannelKind::Snoop { .. } => None,
        }
    }

    /// The SIP endpoint a SIP channel belongs to.
    pub fn sip_endpoint(&self) -> Option<&str> {
        match &self.kind {
            ChannelKind::Sip { endpoint, .. } => endpoint.as_deref(),
            _ => None,
        }
    }
}

/// A hangup cause: the Q.850 code and Asterisk's text for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cause {
    pub code: u16,
    pub text: &'static str,
}

impl Cause {
    pub const NORMAL: Cause = Cause {
        code: 16,
        text: "Normal Clearing",
    };

    /// No cause set (Asterisk's `AST_CAUSE_NOTDEFINED`, which `ast_cause2str`
    /// names "Unknown"): how a channel ends whose call failed before any
    /// cause was given, such as a Local channel whose `;2` half has no
    /// extension to run.
    pub const UNKNOWN: Cause = Cause {
        code: 0,
        text: "Unknown",
    };

    /// The dialed channel was not answered in time (`AST_CAUSE_NO_ANSWER`).
    pub const NO_ANSWER: Cause = Cause {
        code: 19,
        text: "User alerting, no answer",
    };

    /// Q.850 38: the network is not functioning correctly and the condition
    /// is likely to last a relatively long period. Given to channels whose
    /// media went with a dead data-plane shard (shards are not restarted);
    /// the same cause as a hangup with `reason=failure`.
    pub const NETWORK_OUT_OF_ORDER: Cause = Cause {
        code: 38,
        text: "Network out of order",
    };

    /// Any Q.850 code, with Asterisk's text for it ("Unknown" for codes it
    /// does not name).
    pub fn of(code: u16) -> Cause {
        Cause {
            code,
            text: crate::sip::cause::cause_text(code),
        }
    }

    /// The cause for a `DELETE /channels/{id}?reason=` value.
    pub fn from_reason(reason: &str) -> Option<Cause> {
        let code = match reason {
            "normal" => 16,
            "busy" => 17,
            "congestion" => 34,
            "no_answer" => 19,
            "timeout" => 18,
            "rejected" => 21,
            "unallocated" => 1,
            "normal_unspecified" => 31,
            "number_incomplete" => 28,
            "codec_mismatch" => 58,
            "interworking" => 127,
            "failure" => 38,
            "answered_elsewhere" => 26,
            _ => return None,
        };
        Cause::from_code(code)
    }

    /// A cause by code (the subset ARI's hangup reasons use).
    pub fn from_code(code: u16) -> Option<Cause> {
        let text = match code {
            1 => "Unallocated (unassigned) number",
            16 => "Normal Clearing",
            17 => "User busy",
            18 => "No user responding",
            19 => "User alerting, no answer",
            21 => "Call Rejected",
            26 => "Answered elsewhere",
            28 => "Invalid number format",
            31 => "Normal, unspecified",
            34 => "Circuit/channel congestion",
            38 => "Network out of order",
            58 => "Bearer capability not available",
            127 => "Interworking, unspecified",
            _ => return None,
        };
        Some(Cause { code, text })
    }

    /// Hangup reasons accepted by `DELETE /channels/{id}`.
    pub const REASONS: &'static [&'static str] = &[
        "normal",
        "busy",
        "congestion",
        "no_answer",
        "timeout",
        "rejected",
        "unallocated",
        "normal_unspecified",
        "number_incomplete",
        "codec_mismatch",
        "interworking",
        "failure",
        "answered_elsewhere",
    ];
}
