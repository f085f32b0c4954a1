//! The models the api-docs declare: the JSON objects crossbar sends, field by
//! field, so that clients that build themselves from the docs (ari-client,
//! asyncari) can type every reply and every event.
//!
//! Invariant: every event type the registry emits has a model here, listed in
//! the `Event` model's `subTypes` (ari-client and asyncari crash on an event type
//! they have no model for). A test checks the registry's event names against
//! this table.

/// One property of a model: name, Swagger type, required, description.
pub type Prop = (&'static str, &'static str, bool, &'static str);

/// A model declaration. Event models (`Event` and the types in
/// [`EVENT_TYPES`]) list only their own properties; [`Model::all_props`] adds
/// [`EVENT_BASE`].
pub struct Model {
    pub id: &'static str,
    pub description: &'static str,
    pub props: &'static [Prop],
    pub sub_types: &'static [&'static str],
}

impl Model {
    /// Every property of the model, the event envelope first for events.
    pub fn all_props(&self) -> impl Iterator<Item = &'static Prop> {
        let is_event = self.id == "Event" || EVENT_TYPES.contains(&self.id);
        let base: &'static [Prop] = if is_event { EVENT_BASE } else { &[] };
        base.iter().chain(self.props.iter())
    }
}

/// The properties every event has; the docs put them first in `Event` and in
/// each event type's model.
pub const EVENT_BASE: &[Prop] = &[
    (
        "type",
        "string",
        true,
        "Indicates the type of this message.",
    ),
    (
        "asterisk_id",
        "string",
        false,
        "The unique ID for the node that raised this event.",
    ),
    (
        "application",
        "string",
        true,
        "Name of the application receiving the event.",
    ),
    (
        "timestamp",
        "Date",
        true,
        "Time at which this event was created.",
    ),
];

/// Every event type crossbar emits.
pub const EVENT_TYPES: &[&str] = &[
    "ApplicationMoveFailed",
    "ApplicationReplaced",
    "BridgeCreated",
    "BridgeDestroyed",
    "ChannelCallerId",
    "ChannelConnectedLine",
    "ChannelCreated",
    "ChannelDestroyed",
    "ChannelDtmfReceived",
    "ChannelEnteredBridge",
    "ChannelHangupRequest",
    "ChannelHold",
    "ChannelLeftBridge",
    "ChannelStateChange",
    "ChannelTalkingFinished",
    "ChannelTalkingStarted",
    "ChannelUnhold",
    "ChannelUserevent",
    "ChannelVarset",
    "Dial",
    "PlaybackContinuing",
    "PlaybackFinished",
    "PlaybackStarted",
    "RecordingFailed",
    "RecordingFinished",
    "RecordingStarted",
    "StasisEnd",
    "StasisStart",
];

/// All models, by the resource file that declares them.
pub fn models_of(resource: &str) -> &'static [Model] {
    match resource {
        "asterisk" => ASTERISK,
        "channels" => CHANNELS,
        "bridges" => BRIDGES,
        "applications" => APPLICATIONS,
        "endpoints" => ENDPOINTS,
        "sounds" => SOUNDS,
        "playbacks" => PLAYBACKS,
        "recordings" => RECORDINGS,
        "events" => EVENTS,
        _ => &[],
    }
}

const ASTERISK: &[Model] = &[
    Model {
        id: "BuildInfo",
        description: "Info about how the node was built",
        sub_types: &[],
        props: &[
            ("os", "string", true, "OS the node was built on."),
            (
                "kernel",
                "string",
                true,
                "Kernel version the node was built on.",
            ),
            ("options", "string", true, "Compile time options."),
            ("machine", "string", true, "Machine architecture."),
            ("date", "string", true, "Date the node was built."),
            ("user", "string", true, "Username that built the node."),
        ],
    },
    Model {
        id: "SystemInfo",
        description: "Info about the node",
        sub_types: &[],
        props: &[
            ("version", "string", true, "The node's version."),
            ("entity_id", "string", true, "The node's entity id."),
        ],
    },
    Model {
        id: "SetId",
        description: "Effective user/group id",
        sub_types: &[],
        props: &[
            ("user", "string", true, "Effective user id."),
            ("group", "string", true, "Effective group id."),
        ],
    },
    Model {
        id: "ConfigInfo",
        description: "Info about the node's configuration",
        sub_types: &[],
        props: &[
            ("name", "string", true, "The node's system name."),
            (
                "default_language",
                "string",
                true,
                "Default language for media playback.",
            ),
            (
                "setid",
                "SetId",
                true,
                "Effective user/group id for running the node.",
            ),
        ],
    },
    Model {
        id: "StatusInfo",
        description: "Info about the node's status",
        sub_types: &[],
        props: &[
            (
                "startup_time",
                "Date",
                true,
                "Time when the node was started.",
            ),
            (
                "last_reload_time",
                "Date",
                true,
                "Time when the node's configuration was last loaded.",
            ),
        ],
    },
    Model {
        id: "AsteriskInfo",
        description: "Node system information",
        sub_types: &[],
        props: &[
            (
                "build",
                "BuildInfo",
                false,
                "Info about how the node was built.",
            ),
            (
                "system",
                "SystemInfo",
                false,
                "Info about the system running the node.",
            ),
            (
                "config",
                "ConfigInfo",
                false,
                "Info about the node's configuration.",
            ),
            (
                "status",
                "StatusInfo",
                false,
                "Info about the node's status.",
            ),
        ],
    },
    Model {
        id: "AsteriskPing",
        description: "Node ping information",
        sub_types: &[],
        props: &[
            ("asterisk_id", "string", true, "The node's entity id."),
            ("ping", "string", true, "Always string value is pong."),
            (
                "timestamp",
                "string",
                true,
                "The timestamp string of the request.",
            ),
        ],
    },
    Model {
        id: "Variable",
        description: "The value of a channel variable",
        sub_types: &[],
        props: &[(
            "value",
            "string",
            true,
            "The value of the variable requested.",
        )],
    },
];

const CHANNELS: &[Model] = &[
    Model {
        id: "CallerID",
        description: "Caller identification",
        sub_types: &[],
        props: &[
            ("name", "string", true, "Name."),
            ("number", "string", true, "Number."),
        ],
    },
    Model {
        id: "DialplanCEP",
        description: "Dialplan location (context/extension/priority)",
        sub_types: &[],
        props: &[
            ("context", "string", true, "Context in the dialplan."),
            ("exten", "string", true, "Extension in the dialplan."),
            ("priority", "long", true, "Priority in the dialplan."),
            (
                "app_name",
                "string",
                true,
                "Name of current dialplan application.",
            ),
            (
                "app_data",
                "string",
                true,
                "Parameter of current dialplan application.",
            ),
        ],
    },
    Model {
        id: "Channel",
        description: "A specific communication connection between the node and an endpoint.",
        sub_types: &[],
        props: &[
            ("id", "string", true, "Unique identifier of the channel."),
            (
                "name",
                "string",
                true,
                "Name of the channel (i.e. UnicastRTP/127.0.0.1:4000-00000001).",
            ),
            ("state", "string", true, "Channel state."),
            (
                "protocol_id",
                "string",
                true,
                "Protocol id from underlying channel driver.",
            ),
            ("caller", "CallerID", true, "Caller identification."),
            (
                "connected",
                "CallerID",
                true,
                "Connected line identification.",
            ),
            ("accountcode", "string", true, "Account code."),
            (
                "dialplan",
                "DialplanCEP",
                true,
                "Current location (crossbar has no dialplan; Stasis application and args).",
            ),
            (
                "creationtime",
                "Date",
                true,
                "Timestamp when channel was created.",
            ),
            ("language", "string", true, "The default spoken language."),
            (
                "channelvars",
                "object",
                false,
                "Channel variables (UNICASTRTP_LOCAL_ADDRESS/PORT for external media).",
            ),
        ],
    },
    RTP_STAT,
];

const RTP_STAT: Model = Model {
    id: "RTPstat",
    description: "A statistics of a RTP. The fields Asterisk defines mean what they mean in Asterisk 22 (res_rtp_asterisk.c), in its units: jitter and round-trip time in seconds. The others are crossbar's.",
    sub_types: &[],
    props: &[
        (
            "txcount",
            "int",
            true,
            "Packets sent to the leg's remote (or handed to the other Local half).",
        ),
        (
            "rxcount",
            "int",
            true,
            "Datagrams received on the leg's socket (or handed over by the other Local half), dropped ones included.",
        ),
        (
            "txjitter",
            "double",
            false,
            "Interarrival jitter (RFC 3550) crossbar measures on the stream it receives, in seconds; present once a stream was received. The name is Asterisk's: its txjitter holds the jitter it measures on what it receives.",
        ),
        (
            "rxjitter",
            "double",
            false,
            "Interarrival jitter the remote reports on the stream crossbar sends (its last RTCP report block), in seconds, as Asterisk's rxjitter; present once the remote reported.",
        ),
        (
            "remote_maxjitter",
            "double",
            false,
            "Highest jitter the remote reported on the stream crossbar sends, in seconds.",
        ),
        (
            "txploss",
            "int",
            false,
            "Cumulative packets of the stream crossbar sends that the remote reports lost (its last report block); present once the remote reported.",
        ),
        (
            "rxploss",
            "int",
            true,
            "Packets of the received stream lost so far (RFC 3550 cumulative loss; never below 0).",
        ),
        (
            "rtt",
            "double",
            false,
            "Round-trip time from the remote's last report that echoed one of our SRs, in seconds.",
        ),
        ("local_ssrc", "int", false, "Our SSRC on this leg, once something was sent."),
        ("remote_ssrc", "int", false, "The remote's SSRC, once something was received."),
        ("txoctetcount", "int", true, "Bytes sent (RTP headers included)."),
        ("rxoctetcount", "int", true, "Bytes of the datagrams counted in rxcount."),
        (
            "channel_uniqueid",
            "string",
            true,
            "The Asterisk channel's unique ID that owns this instance.",
        ),
        (
            "rxdropped",
            "int",
            true,
            "Good packets not passed on: muted, on hold, or no one to send to.",
        ),
        (
            "rxbad",
            "int",
            true,
            "Datagrams that were not valid RTP for the leg's format (dropped).",
        ),
        (
            "rxwrongsource",
            "int",
            true,
            "Datagrams from a source other than the leg's remote, including a source on probation before it is learned (dropped).",
        ),
        (
            "rxlooped",
            "int",
            true,
            "Packets this node sent that came back to the leg: a loop (dropped).",
        ),
        (
            "rxflood",
            "int",
            true,
            "Packets beyond the leg's allowance of 1000 a second (dropped).",
        ),
        (
            "rxconcealed",
            "int",
            true,
            "Lost frames of the received stream replaced by concealment (transcode and softmix paths).",
        ),
        ("rxrtcp", "int", true, "Valid RTCP compound datagrams received from the remote."),
        (
            "rxrtcpreports",
            "int",
            false,
            "RTCP sender and receiver reports received.",
        ),
        (
            "rxrtcpbad",
            "int",
            false,
            "Datagrams on the RTCP port that were not valid RTCP from the remote.",
        ),
        ("txrtcp", "int", false, "RTCP packets sent."),
        (
            "txdropped",
            "int",
            true,
            "Packets not sent (muted out, or no remote known yet).",
        ),
        ("txerrors", "int", true, "Sends the kernel refused."),
        (
            "remote_fraction_lost",
            "int",
            false,
            "Fraction of our stream lost in the remote's last report interval (0-255 = 0-100%).",
        ),
        (
            "local_address",
            "string",
            false,
            "Local address of the leg's socket.",
        ),
        (
            "remote_address",
            "string",
            false,
            "Remote address media is sent to.",
        ),
        (
            "jitterbuffer",
            "object",
            false,
            "On a mixing path: the leg's jitter buffer counters since it joined its mix (played, missing, late, duplicate, skipped, stalls, overrun, trimmed, restarts: times it started over for a new stream).",
        ),
    ],
};

const BRIDGES: &[Model] = &[
    Model { id: "Bridge", description: "The merging of media from one or more channels.", sub_types: &[], props: &[
        ("id", "string", true, "Unique identifier for this bridge."),
        ("technology", "string", true, "Name of the current bridging technology (native_rtp, simple_bridge, softmix, holding_bridge)."),
        ("bridge_type", "string", true, "Type of bridge technology (mixing, holding)."),
        ("bridge_class", "string", true, "Bridging class."),
        ("creator", "string", true, "Entity that created the bridge."),
        ("name", "string", true, "Name the creator gave the bridge."),
        ("channels", "List[string]", true, "Ids of channels participating in this bridge."),
        ("creationtime", "Date", true, "Timestamp when bridge was created."),
        ("video_mode", "string", false, "The video mode the bridge uses."),
    ]},
];

const ENDPOINTS: &[Model] = &[Model {
    id: "Endpoint",
    description: "An external device that may offer/accept calls to/from the node.\n\nUnlike most resources, which have a single unique identifier, an endpoint is uniquely identified by the technology/resource pair.",
    sub_types: &[],
    props: &[
        ("technology", "string", true, "Technology of the endpoint (SIP)."),
        (
            "resource",
            "string",
            true,
            "Identifier of the endpoint, specific to the given technology.",
        ),
        (
            "state",
            "string",
            false,
            "Endpoint's state: unknown, offline or online (online with a static contact, offline without).",
        ),
        (
            "channel_ids",
            "List[string]",
            true,
            "Id's of channels associated with this endpoint",
        ),
    ],
}];

const PLAYBACKS: &[Model] = &[Model {
    id: "Playback",
    description: "Object representing the playback of media to a channel",
    sub_types: &[],
    props: &[
        ("id", "string", true, "ID for this playback operation"),
        (
            "media_uri",
            "string",
            true,
            "The URI for the media currently being played back.",
        ),
        (
            "next_media_uri",
            "string",
            false,
            "If a list of URIs is being played, the next media URI to be played back.",
        ),
        (
            "target_uri",
            "string",
            true,
            "URI for the channel or bridge to play the media on",
        ),
        (
            "language",
            "string",
            false,
            "For media types that support multiple languages, the language requested for playback.",
        ),
        (
            "state",
            "string",
            true,
            "Current state of the playback operation.",
        ),
    ],
}];

const RECORDINGS: &[Model] = &[
    Model {
        id: "StoredRecording",
        description: "A past recording that may be played back.",
        sub_types: &[],
        props: &[
            ("name", "string", true, ""),
            ("format", "string", true, ""),
        ],
    },
    Model {
        id: "LiveRecording",
        description: "A recording that is in progress",
        sub_types: &[],
        props: &[
            ("name", "string", true, "Base name for the recording"),
            ("format", "string", true, "Recording format (wav, gsm, etc.)"),
            (
                "target_uri",
                "string",
                true,
                "URI for the channel or bridge being recorded",
            ),
            ("state", "string", true, ""),
            (
                "duration",
                "int",
                false,
                "Duration in seconds of the recording",
            ),
            (
                "talking_duration",
                "int",
                false,
                "Duration of talking, in seconds, detected in the recording. This is only available if the recording was initiated with a non-zero maxSilenceSeconds.",
            ),
            (
                "silence_duration",
                "int",
                false,
                "Duration of silence, in seconds, detected in the recording. This is only available if the recording was initiated with a non-zero maxSilenceSeconds.",
            ),
            ("cause", "string", false, "Cause for recording failure if failed"),
        ],
    },
];

const SOUNDS: &[Model] = &[
    Model {
        id: "FormatLangPair",
        description: "Identifies the format and language of a sound file",
        sub_types: &[],
        props: &[
            ("language", "string", true, ""),
            ("format", "string", true, ""),
        ],
    },
    Model {
        id: "Sound",
        description: "A media file that may be played back.",
        sub_types: &[],
        props: &[
            ("id", "string", true, "Sound's identifier."),
            (
                "text",
                "string",
                false,
                "Text description of the sound, usually the words spoken.",
            ),
            (
                "formats",
                "List[FormatLangPair]",
                true,
                "The formats and languages in which this sound is available.",
            ),
        ],
    },
];

const APPLICATIONS: &[Model] = &[Model {
    id: "Application",
    description: "Details of a Stasis application",
    sub_types: &[],
    props: &[
        ("name", "string", true, "Name of this application."),
        (
            "channel_ids",
            "List[string]",
            true,
            "Id's for channels subscribed to.",
        ),
        (
            "bridge_ids",
            "List[string]",
            true,
            "Id's for bridges subscribed to.",
        ),
        (
            "endpoint_ids",
            "List[string]",
            true,
            "{tech}/{resource} for endpoints subscribed to.",
        ),
        (
            "device_names",
            "List[string]",
            true,
            "Names of the devices subscribed to.",
        ),
        (
            "events_allowed",
            "List[object]",
            true,
            "Event types sent to the application.",
        ),
        (
            "events_disallowed",
            "List[object]",
            true,
            "Event types not sent to the application.",
        ),
    ],
}];

const EVENTS: &[Model] = &[
    Model {
        id: "Message",
        description: "Base type for errors and events",
        sub_types: &["MissingParams", "Event"],
        props: &[
            (
                "type",
                "string",
                true,
                "Indicates the type of this message.",
            ),
            (
                "asterisk_id",
                "string",
                false,
                "The unique ID for the node that raised this message.",
            ),
        ],
    },
    Model {
        id: "MissingParams",
        description: "Error event sent when required params are missing.",
        sub_types: &[],
        props: &[
            (
                "type",
                "string",
                true,
                "Indicates the type of this message.",
            ),
            (
                "params",
                "List[string]",
                true,
                "A list of the missing parameters.",
            ),
        ],
    },
    Model {
        id: "Event",
        description: "Base type for asynchronous events from the node.",
        sub_types: EVENT_TYPES,
        props: &[],
    },
    Model {
        id: "ApplicationMoveFailed",
        description:
            "Notification that trying to move a channel to another Stasis application failed.",
        sub_types: &[],
        props: &[
            (
                "channel",
                "Channel",
                true,
                "The channel that failed to move.",
            ),
            (
                "destination",
                "string",
                true,
                "The application it was to move to.",
            ),
            (
                "args",
                "List[string]",
                true,
                "Arguments to the application.",
            ),
        ],
    },
    Model {
        id: "ApplicationReplaced",
        description: "Notification that another WebSocket has taken over for an application.",
        sub_types: &[],
        props: &[],
    },
    Model {
        id: "BridgeCreated",
        description: "Notification that a bridge has been created.",
        sub_types: &[],
        props: &[("bridge", "Bridge", true, "The bridge.")],
    },
    Model {
        id: "BridgeDestroyed",
        description: "Notification that a bridge has been destroyed.",
        sub_types: &[],
        props: &[("bridge", "Bridge", true, "The bridge.")],
    },
    Model {
        id: "ChannelCallerId",
        description: "Channel changed Caller ID.",
        sub_types: &[],
        props: &[
            (
                "caller_presentation",
                "int",
                true,
                "The integer representation of the Caller Presentation value.",
            ),
            (
                "caller_presentation_txt",
                "string",
                true,
                "The text representation of the Caller Presentation value.",
            ),
            (
                "channel",
                "Channel",
                true,
                "The channel that changed Caller ID.",
            ),
        ],
    },
    Model {
        id: "ChannelConnectedLine",
        description: "Channel changed Connected Line.",
        sub_types: &[],
        props: &[(
            "channel",
            "Channel",
            true,
            "The channel whose connected line has changed.",
        )],
    },
    Model {
        id: "ChannelCreated",
        description: "Notification that a channel has been created.",
        sub_types: &[],
        props: &[("channel", "Channel", true, "The channel.")],
    },
    Model {
        id: "ChannelDestroyed",
        description: "Notification that a channel has been destroyed.",
        sub_types: &[],
        props: &[
            (
                "cause",
                "int",
                true,
                "Integer representation of the cause of the hangup.",
            ),
            (
                "cause_txt",
                "string",
                true,
                "Text representation of the cause of the hangup.",
            ),
            ("channel", "Channel", true, "The channel."),
        ],
    },
    Model {
        id: "ChannelEnteredBridge",
        description: "Notification that a channel has entered a bridge.",
        sub_types: &[],
        props: &[
            (
                "bridge",
                "Bridge",
                true,
                "The bridge, with its technology and members at that moment.",
            ),
            ("channel", "Channel", false, "The channel."),
        ],
    },
    Model {
        id: "ChannelHangupRequest",
        description: "A hangup was requested on the channel.",
        sub_types: &[],
        props: &[
            (
                "cause",
                "int",
                false,
                "Integer representation of the cause of the hangup.",
            ),
            (
                "soft",
                "boolean",
                false,
                "Whether the hangup request was a soft hangup request.",
            ),
            (
                "channel",
                "Channel",
                true,
                "The channel on which the hangup was requested.",
            ),
        ],
    },
    Model {
        id: "ChannelDtmfReceived",
        description: "DTMF received on a channel. This event is sent when the DTMF ends. There is no notification about the start of DTMF",
        sub_types: &[],
        props: &[
            (
                "digit",
                "string",
                true,
                "DTMF digit received (0-9, A-E, # or *)",
            ),
            (
                "duration_ms",
                "int",
                true,
                "Number of milliseconds DTMF was received",
            ),
            (
                "channel",
                "Channel",
                true,
                "The channel on which DTMF was received",
            ),
        ],
    },
    Model {
        id: "PlaybackStarted",
        description: "Event showing the start of a media playback operation.",
        sub_types: &[],
        props: &[("playback", "Playback", true, "Playback control object")],
    },
    Model {
        id: "PlaybackContinuing",
        description: "Event showing the continuation of a media playback operation from one media URI to the next in the list.",
        sub_types: &[],
        props: &[("playback", "Playback", true, "Playback control object")],
    },
    Model {
        id: "RecordingStarted",
        description: "Event showing the start of a recording operation.",
        sub_types: &[],
        props: &[("recording", "LiveRecording", true, "Recording control object")],
    },
    Model {
        id: "RecordingFinished",
        description: "Event showing the completion of a recording operation.",
        sub_types: &[],
        props: &[("recording", "LiveRecording", true, "Recording control object")],
    },
    Model {
        id: "RecordingFailed",
        description: "Event showing failure of a recording operation.",
        sub_types: &[],
        props: &[("recording", "LiveRecording", true, "Recording control object")],
    },
    Model {
        id: "PlaybackFinished",
        description: "Event showing the completion of a media playback operation.",
        sub_types: &[],
        props: &[("playback", "Playback", true, "Playback control object")],
    },
    Model {
        id: "ChannelTalkingFinished",
        description: "Talking is no longer detected on the channel.",
        sub_types: &[],
        props: &[
            (
                "channel",
                "Channel",
                true,
                "The channel on which talking completed.",
            ),
            (
                "duration",
                "int",
                true,
                "The length of time, in milliseconds, that talking was detected on the channel",
            ),
        ],
    },
    Model {
        id: "ChannelTalkingStarted",
        description: "Talking was detected on the channel.",
        sub_types: &[],
        props: &[(
            "channel",
            "Channel",
            true,
            "The channel on which talking started.",
        )],
    },
    Model {
        id: "ChannelHold",
        description: "A channel initiated a media hold.",
        sub_types: &[],
        props: &[(
            "channel",
            "Channel",
            true,
            "The channel that initiated the hold event.",
        )],
    },
    Model {
        id: "ChannelLeftBridge",
        description: "Notification that a channel has left a bridge.",
        sub_types: &[],
        props: &[
            (
                "bridge",
                "Bridge",
                true,
                "The bridge, with its technology and members at that moment.",
            ),
            ("channel", "Channel", true, "The channel."),
        ],
    },
    Model {
        id: "ChannelStateChange",
        description: "Notification of a channel's state change.",
        sub_types: &[],
        props: &[("channel", "Channel", true, "The channel.")],
    },
    Model {
        id: "ChannelUnhold",
        description: "A channel initiated a media unhold.",
        sub_types: &[],
        props: &[(
            "channel",
            "Channel",
            true,
            "The channel that initiated the unhold event.",
        )],
    },
    Model {
        id: "ChannelUserevent",
        description: "User-generated event with additional user-defined fields in the object.",
        sub_types: &[],
        props: &[
            ("eventname", "string", true, "The name of the user event."),
            (
                "channel",
                "Channel",
                false,
                "A channel that is signaled with the user event.",
            ),
            (
                "bridge",
                "Bridge",
                false,
                "A bridge that is signaled with the user event.",
            ),
            ("userevent", "object", true, "Custom Userevent data."),
        ],
    },
    Model {
        id: "ChannelVarset",
        description: "Channel variable changed.",
        sub_types: &[],
        props: &[
            ("variable", "string", true, "The variable that changed."),
            ("value", "string", true, "The new value of the variable."),
            (
                "channel",
                "Channel",
                false,
                "The channel on which the variable was set.",
            ),
        ],
    },
    Model {
        id: "Dial",
        description: "Dialing state has changed.",
        sub_types: &[],
        props: &[
            (
                "dialstatus",
                "string",
                true,
                "Current status of the dialing attempt to the peer.",
            ),
            (
                "dialstring",
                "string",
                false,
                "The dial string for calling the peer channel.",
            ),
            (
                "forward",
                "string",
                false,
                "Forwarding target requested by the original dialed channel.",
            ),
            ("peer", "Channel", true, "The dialed channel."),
        ],
    },
    Model {
        id: "StasisEnd",
        description: "Notification that a channel has left a Stasis application.",
        sub_types: &[],
        props: &[("channel", "Channel", true, "The channel.")],
    },
    Model {
        id: "StasisStart",
        description: "Notification that a channel has entered a Stasis application.",
        sub_types: &[],
        props: &[
            (
                "args",
                "List[string]",
                true,
                "Arguments to the application.",
            ),
            ("channel", "Channel", true, "The channel."),
            (
                "replace_channel",
                "Channel",
                false,
                "The channel it replaces, if any.",
            ),
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::config::BridgePeerMode;
    use crate::control::bridge::{Bridge, Member};
    use crate::control::channel::{Cause, Channel, ChannelKind, ChannelState};
    use crate::control::ids::SequentialIds;
    use crate::control::Registry;
    use crate::media::Format;
    use serde_json::json;

    fn model(resource: &str, id: &str) -> &'static Model {
        models_of(resource)
            .iter()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("{id} model"))
    }

    /// The keys of `snapshot` are exactly declared by `model`, and every
    /// required property is present.
    fn check(snapshot: &serde_json::Value, model: &Model) {
        let object = snapshot.as_object().expect("an object");
        for key in object.keys() {
            assert!(
                model.all_props().any(|p| p.0 == key),
                "{key} is sent but not in the {} model",
                model.id
            );
        }
        for p in model.all_props().filter(|p| p.2) {
            assert!(object.contains_key(p.0), "{}.{} is missing", model.id, p.0);
        }
    }

    #[test]
    fn channel_and_bridge_snapshots_match_their_models() {
        let addr = "127.0.0.1:4000".parse().unwrap();
        let kind = ChannelKind::UnicastRtp {
            local: addr,
            remote: addr,
        };
        let name = "UnicastRTP/127.0.0.1:4000-00000000".to_string();
        let mut ch = Channel::new(
            "c1".into(),
            name,
            crate::media::LegId(1),
            kind,
            Format::Ulaw,
            Timestamp(0),
            1,
        );
        ch.app = Some("A".into());
        check(&ch.snapshot(), model("channels", "Channel"));
        let bridge = Bridge {
            id: "b1".into(),
            key: crate::media::BridgeKey(2),
            name: "n".into(),
            flags: Default::default(),
            technology: "native_rtp",
            members: vec![Member {
                channel: "c1".into(),
                role: String::new(),
                mute: false,
                absorb_dtmf: false,
            }],
            creationtime: Timestamp(0),
            seq: 2,
        };
        check(&bridge.snapshot(), model("bridges", "Bridge"));
    }

    fn channel(id: &str, seq: u64) -> Channel {
        let addr = "127.0.0.1:4000".parse().unwrap();
        let kind = ChannelKind::UnicastRtp {
            local: addr,
            remote: addr,
        };
        let name = format!("UnicastRTP/{addr}-{seq:08x}");
        Channel::new(
            id.to_string(),
            name,
            crate::media::LegId(seq),
            kind,
            Format::Ulaw,
            Timestamp(0),
            seq,
        )
    }

    /// Drives the registry through every kind of mutation and checks that each
    /// event type it emits is declared in the api-docs models (clients crash on
    /// undeclared types), and that every declared type is really emitted.
    #[test]
    fn every_emitted_event_type_has_a_model() {
        let now = Timestamp(1_795_358_696_270);
        let ids = Box::new(SequentialIds::new(1));
        let mut reg = Registry::new("02:fc:00:00:00:01", BridgePeerMode::Asterisk, ids);
        reg.hold_app("A", true);
        reg.hold_app("B", false);
        for (i, id) in ["c1", "c2"].into_iter().enumerate() {
            reg.insert_channel(now, channel(id, i as u64 + 1));
            reg.enter_stasis(now, id, "A", vec!["x".into()]);
        }
        let bridge = Bridge {
            id: "b1".into(),
            key: crate::media::BridgeKey(9),
            name: String::new(),
            flags: Default::default(),
            technology: "simple_bridge",
            members: Vec::new(),
            creationtime: now,
            seq: 3,
        };
        reg.insert_bridge(now, bridge);
        for c in ["c1", "c2"] {
            let m = Member {
                channel: c.into(),
                role: String::new(),
                mute: false,
                absorb_dtmf: false,
            };
            reg.join_bridge(now, "b1", m, "native_rtp");
        }
        reg.set_var(now, "c1", "FOO", "bar");
        let alice = ("Alice".to_string(), "100".to_string());
        reg.set_party(now, "c1", alice.clone(), alice);
        reg.hold_event(now, "c1", true);
        reg.hold_event(now, "c1", false);
        reg.dial_event(now, "c1", "Local/x@B", "");
        reg.move_failed(now, "c1", "nobody", Vec::new());
        reg.user_event(now, "A", "ping", &["channel:c1".into()], json!({}))
            .unwrap();
        reg.set_state(now, "c2", ChannelState::Ringing);
        reg.hangup_request(now, "c2", 32, true);
        reg.leave_bridge(now, "b1", "c2", "simple_bridge");
        reg.dtmf_received(now, "c2", '5', 100);
        reg.talking(now, "c2", None);
        reg.insert_playback(
            "p1".into(),
            crate::control::playback::Owner::Channel("c2".into()),
            vec!["sound:a".into(), "sound:b".into()],
            "en".into(),
            0,
            3000,
        );
        reg.start_playback(now, "p1");
        assert!(reg.continue_playback(now, "p1"));
        reg.finish_playback(now, "p1", false);
        for (name, failed) in [("r1", false), ("r2", true)] {
            reg.insert_recording(
                name.into(),
                "wav".into(),
                crate::control::playback::Owner::Channel("c2".into()),
                "",
            );
            reg.recording_started(now, name);
            reg.finish_recording(now, name, Some((3, None)), failed.then_some("disk full"));
        }
        reg.talking(now, "c2", Some(1200));
        reg.leave_stasis(now, "c2");
        reg.remove_channel(now, "c2", Cause::NORMAL);
        let targets = reg.bridge_targets("b1");
        reg.leave_bridge(now, "b1", "c1", "simple_bridge");
        reg.remove_bridge(now, "b1", targets);

        let models = models_of("events");
        let mut seen = std::collections::BTreeSet::new();
        for d in reg.take_outbox() {
            let ty = d.event["type"].as_str().unwrap().to_string();
            assert!(
                EVENT_TYPES.contains(&ty.as_str()),
                "{ty} is not in EVENT_TYPES"
            );
            assert!(models.iter().any(|m| m.id == ty), "{ty} has no model");
            seen.insert(ty);
        }
        for ty in EVENT_TYPES {
            // ApplicationReplaced is sent by the host when a WebSocket takes an app over.
            if *ty != "ApplicationReplaced" {
                assert!(seen.contains(*ty), "{ty} is declared but never emitted");
            }
        }
    }
}
