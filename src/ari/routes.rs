//! The route table: every ARI operation crossbar serves, with its parameters
//! and error responses. Requests are routed through it and the api-docs are
//! generated from it, so the docs list exactly what is served.

use super::spec::{Api, DataType, Method, Operation, Param, Resource};
use super::{
    applications, asterisk, bridges, channels, endpoints, events, playbacks, recordings, snoop,
    sounds,
};
use crate::handler;

const CHANNEL_ID: Param = Param::path("channelId", "Channel's id");
const BRIDGE_ID: Param = Param::path("bridgeId", "Bridge's id");
const APP_NAME: Param = Param::path("applicationName", "Application's name");
const VARIABLES: Param = Param::body(
    "variables",
    "The \"variables\" key in the body object holds variable key/value pairs to set on the channel on creation.",
    DataType::Containers,
);
const NOT_FOUND: (u16, &str) = (404, "Channel not found");
const NOT_IN_STASIS: (u16, &str) = (409, "Channel not in a Stasis application");
const STASIS_ERRORS: &[(u16, &str)] = &[NOT_FOUND, NOT_IN_STASIS];

/// A channel operation that takes only the channel id.
const fn on_channel(
    method: Method,
    nickname: &'static str,
    summary: &'static str,
    handler: super::spec::Handler,
) -> Operation {
    Operation {
        method,
        nickname,
        summary,
        response_class: "void",
        params: &[CHANNEL_ID],
        errors: STASIS_ERRORS,
        upgrade: None,
        handler: Some(handler),
        refused: &[],
    }
}

const fn op(
    method: Method,
    nickname: &'static str,
    summary: &'static str,
    response_class: &'static str,
    params: &'static [Param],
    errors: &'static [(u16, &'static str)],
    handler: super::spec::Handler,
) -> Operation {
    Operation {
        method,
        nickname,
        summary,
        response_class,
        params,
        errors,
        upgrade: None,
        handler: Some(handler),
        refused: &[],
    }
}

const ENDPOINT: Param = Param::query(
    "endpoint",
    "Endpoint to call: Local/EXTEN@APP (the ;2 half enters the Stasis application APP; when no application APP is running, calling the pair fails and both halves end with cause 0).",
)
.required()
.missing("Endpoint must be specified");
/// Dialplan parameters of Asterisk's: crossbar has no dialplan, so they
/// cannot act; refused with a 400 that says so, and absent from the
/// api-docs.
const NO_DIALPLAN: &str = "crossbar has no dialplan (name the Stasis application with app)";
const DIALPLAN_REFUSED: &[(&str, &str)] = &[
    ("extension", NO_DIALPLAN),
    ("context", NO_DIALPLAN),
    ("priority", NO_DIALPLAN),
    ("label", NO_DIALPLAN),
];
const ORIGINATE_APP: Param = Param::query(
    "app",
    "The Stasis application the ;1 half enters once answered.",
);
const APP_ARGS: Param = Param::query(
    "appArgs",
    "Comma-separated application arguments (StasisStart args).",
);
const CALLER_ID: Param = Param::query("callerId", "CallerID to use when dialing the endpoint.");
const TIMEOUT: Param = Param::query(
    "timeout",
    "Seconds to wait for the ;2 half to be answered before both halves are hung up with cause 19, or -1 for no timeout (0 and other values below 1: 30 seconds, as Asterisk).",
)
.typed(DataType::Int)
.default("30");
const NEW_CHANNEL_ID: Param = Param::query(
    "channelId",
    "The unique id to assign the channel (;1) on creation.",
);
const OTHER_CHANNEL_ID: Param = Param::query(
    "otherChannelId",
    "The unique id to assign the second (;2) channel.",
);
const ORIGINATOR: Param = Param::query(
    "originator",
    "The unique id of the channel which is originating this one; the new channels take its format.",
);
const FORMATS: Param = Param::query(
    "formats",
    "Comma-separated formats for the channel (ulaw, alaw, slin, slin16, slin48, g722, opus); each must be known, the Local pair takes the first.",
);

const ORIGINATE_PARAMS: &[Param] = &[
    ENDPOINT,
    ORIGINATE_APP,
    APP_ARGS,
    CALLER_ID,
    TIMEOUT,
    VARIABLES,
    NEW_CHANNEL_ID,
    OTHER_CHANNEL_ID,
    ORIGINATOR,
    FORMATS,
];

const ORIGINATE_WITH_ID_PARAMS: &[Param] = &[
    CHANNEL_ID,
    ENDPOINT,
    ORIGINATE_APP,
    APP_ARGS,
    CALLER_ID,
    TIMEOUT,
    VARIABLES,
    OTHER_CHANNEL_ID,
    ORIGINATOR,
    FORMATS,
];

const ORIGINATE_ERRORS: &[(u16, &str)] = &[
    (400, "Invalid parameters for originating a channel."),
    (409, "Channel with given unique ID already exists."),
];

const CREATE_PARAMS: &[Param] = &[
    ENDPOINT,
    Param::query("app", "The Stasis application the ;1 half is placed into.")
        .required()
        .missing("app cannot be empty"),
    APP_ARGS,
    NEW_CHANNEL_ID,
    OTHER_CHANNEL_ID,
    ORIGINATOR,
    FORMATS,
    VARIABLES,
];

const EXTERNAL_MEDIA_PARAMS: &[Param] = &[
    Param::query(
        "channelId",
        "The unique id to assign the channel on creation.",
    ),
    Param::query("app", "Stasis Application to place channel into.")
        .required()
        .missing("app cannot be empty"),
    VARIABLES,
    Param::query(
        "external_host",
        "Hostname/ip:port of the external host, where RTP is sent.",
    ),
    Param::query("encapsulation", "Payload encapsulation protocol.")
        .default("rtp")
        .one_of(&["rtp"]),
    Param::query("transport", "Transport protocol.")
        .default("udp")
        .one_of(&["udp"]),
    Param::query("connection_type", "Connection type (client/server).")
        .default("client")
        .one_of(&["client"]),
    Param::query("format", "Format to encode audio in.")
        .required()
        .missing("format cannot be empty"),
    Param::query("direction", "External media direction.")
        .default("both")
        .one_of(&["both"]),
    Param::query(
        "data",
        "Comma-separated arguments passed to the application (StasisStart args).",
    ),
];

const HANGUP_PARAMS: &[Param] = &[
    CHANNEL_ID,
    Param::query(
        "reason_code",
        "The reason code for hanging up the channel (Q.850 cause).",
    ),
    Param::query("reason", "Reason for hanging up the channel."),
];

const MOVE_PARAMS: &[Param] = &[
    CHANNEL_ID,
    Param::query(
        "app",
        "The channel will be passed to this Stasis application.",
    )
    .required()
    .missing("Missing parameter app"),
    Param::query(
        "appArgs",
        "The application arguments to pass to the Stasis application.",
    ),
];

const CONTINUE_PARAMS: &[Param] = &[CHANNEL_ID];

const REDIRECT_PARAMS: &[Param] = &[
    CHANNEL_ID,
    Param::query(
        "endpoint",
        "The endpoint to redirect the channel to: SIP/sip:user@ip:port, or SIP/NAME for a configured endpoint's contact (PJSIP/ alike).",
    )
    .required()
    .missing("Required parameter endpoint not provided"),
];

const MUTE_PARAMS: &[Param] = &[
    CHANNEL_ID,
    Param::query("direction", "Direction in which to mute audio.")
        .default("both")
        .one_of(&["both", "in", "out"]),
];

const GET_VAR_PARAMS: &[Param] = &[
    CHANNEL_ID,
    Param::query("variable", "The channel variable to get.")
        .required()
        .missing("Variable name is required"),
];

const SET_VAR_PARAMS: &[Param] = &[
    CHANNEL_ID,
    Param::query("variable", "The channel variable to set.")
        .required()
        .missing("Variable name is required"),
    Param::query("value", "The value to set the variable to (empty: unset)."),
];

const DIAL_PARAMS: &[Param] = &[
    CHANNEL_ID,
    Param::query(
        "caller",
        "Channel ID of caller: the dialed channel's connected line becomes the caller's caller id, and it inherits the caller's language and its '_'/'__' variables (a channel that does not exist is a 400).",
    ),
    Param::query(
        "timeout",
        "Seconds to wait for the dialed channel to be answered; then it is hung up with cause 19 (no answer). 0: no timeout.",
    )
    .typed(DataType::Int)
    .default("0")
    .at_least(0),
];

const DTMF_PARAMS: &[Param] = &[
    CHANNEL_ID,
    Param::query(
        "dtmf",
        "DTMF To send: 0-9, A-D, * and #; ',' pauses 500 ms.",
    ),
    Param::query(
        "before",
        "Amount of time to wait before DTMF digits (specified in milliseconds) start.",
    )
    .typed(DataType::Int)
    .at_least(0),
    Param::query(
        "between",
        "Amount of time in between DTMF digits (specified in milliseconds).",
    )
    .typed(DataType::Int)
    .default("100")
    .at_least(0),
    Param::query(
        "duration",
        "Length of each DTMF digit (specified in milliseconds).",
    )
    .typed(DataType::Int)
    .default("100")
    .at_least(0),
    Param::query(
        "after",
        "Amount of time to wait after DTMF digits (specified in milliseconds) end.",
    )
    .typed(DataType::Int)
    .at_least(0),
];

const CHANNELS: &[Api] = &[
    Api {
        path: "/channels",
        description: "Active channels",
        operations: &[
            op(
                Method::Get,
                "list",
                "List all active channels.",
                "List[Channel]",
                &[],
                &[],
                handler!(channels::list),
            ),
            op(
                Method::Post,
                "originate",
                "Create a new channel (originate) and place it in a Stasis application.",
                "Channel",
                ORIGINATE_PARAMS,
                ORIGINATE_ERRORS,
                handler!(channels::originate),
            )
            .refusing(DIALPLAN_REFUSED),
        ],
    },
    Api {
        path: "/channels/create",
        description:
            "Create a channel and place it in a Stasis app, but do not dial the channel yet.",
        operations: &[op(
            Method::Post,
            "create",
            "Create channel.",
            "Channel",
            CREATE_PARAMS,
            &[(409, "Channel with given unique ID already exists.")],
            handler!(channels::create),
        )],
    },
    Api {
        path: "/channels/externalMedia",
        description: "Create a channel to an External Media source/sink.",
        operations: &[op(
            Method::Post,
            "externalMedia",
            "Start an External Media session.",
            "Channel",
            EXTERNAL_MEDIA_PARAMS,
            &[
                (400, "Invalid parameters"),
                (409, "Channel with given unique ID already exists."),
            ],
            handler!(channels::external_media),
        )
        .refusing(&[(
            "transport_data",
            "its externalMedia legs are RTP over UDP, which takes no transport data",
        )])],
    },
    Api {
        path: "/channels/{channelId}",
        description: "Active channel",
        operations: &[
            op(
                Method::Get,
                "get",
                "Channel details.",
                "Channel",
                &[CHANNEL_ID],
                &[NOT_FOUND],
                handler!(channels::get),
            ),
            op(
                Method::Post,
                "originateWithId",
                "Create a new channel (originate with id).",
                "Channel",
                ORIGINATE_WITH_ID_PARAMS,
                ORIGINATE_ERRORS,
                handler!(channels::originate),
            )
            .refusing(DIALPLAN_REFUSED),
            op(
                Method::Delete,
                "hangup",
                "Delete (i.e. hangup) a channel.",
                "void",
                HANGUP_PARAMS,
                &[(400, "Invalid reason for hangup provided"), NOT_FOUND],
                handler!(channels::hangup),
            ),
        ],
    },
    Api {
        path: "/channels/{channelId}/continue",
        description:
            "Exit application; continue execution in the dialplan (crossbar: the channel ends).",
        operations: &[op(
            Method::Post,
            "continueInDialplan",
            "Exit application; the channel ends with Normal Clearing.",
            "void",
            CONTINUE_PARAMS,
            STASIS_ERRORS,
            handler!(channels::continue_in_dialplan),
        )
        .refusing(DIALPLAN_REFUSED)],
    },
    Api {
        path: "/channels/{channelId}/move",
        description: "Move the channel from one Stasis application to another.",
        operations: &[op(
            Method::Post,
            "move",
            "Move the channel from one Stasis application to another.",
            "void",
            MOVE_PARAMS,
            STASIS_ERRORS,
            handler!(channels::move_to),
        )],
    },
    Api {
        path: "/channels/{channelId}/play",
        description: "Play media to a channel",
        operations: &[op(
            Method::Post,
            "play",
            "Start playback of media. The media URI may be any of a number of URI's. Currently sound:, tone:, digits:, number:, characters: and recording: URI's are supported. This operation creates a playback resource that can be used to control the playback of media (pause, rewind, fast forward, etc.)",
            "Playback",
            PLAY_PARAMS,
            PLAY_ERRORS,
            handler!(playbacks::play),
        )],
    },
    Api {
        path: "/channels/{channelId}/play/{playbackId}",
        description: "Play media to a channel",
        operations: &[op(
            Method::Post,
            "playWithId",
            "Start playback of media and specify the playbackId.",
            "Playback",
            PLAY_WITH_ID_PARAMS,
            PLAY_ERRORS,
            handler!(playbacks::play_with_id),
        )],
    },
    Api {
        path: "/channels/{channelId}/record",
        description: "Record audio from a channel",
        operations: &[op(
            Method::Post,
            "record",
            "Start a recording. Records what the channel receives from its remote (the caller's voice), bridged or not; the recording starts after sound:beep when beep is set. This operation creates a live recording resource that can be used to control the recording (stop, pause, mute, cancel).",
            "LiveRecording",
            CHANNEL_RECORD_PARAMS,
            CHANNEL_RECORD_ERRORS,
            handler!(recordings::channel_record),
        )],
    },
    Api {
        path: "/channels/{channelId}/moh",
        description: "Play music on hold to a channel",
        operations: &[
            op(
                Method::Post,
                "startMoh",
                "Play music on hold to a channel: it hears it instead of its bridge until stopped (a playback plays over it).",
                "void",
                MOH_PARAMS,
                STASIS_ERRORS,
                handler!(playbacks::channel_moh_start),
            ),
            on_channel(
                Method::Delete,
                "stopMoh",
                "Stop playing music on hold to a channel.",
                handler!(playbacks::channel_moh_stop),
            ),
        ],
    },
    Api {
        path: "/channels/{channelId}/silence",
        description: "Play silence to a channel",
        operations: &[
            on_channel(
                Method::Post,
                "startSilence",
                "Play silence to a channel: it hears silence instead of its bridge until stopped (replaces music on hold).",
                handler!(playbacks::channel_silence_start),
            ),
            on_channel(
                Method::Delete,
                "stopSilence",
                "Stop playing silence to a channel.",
                handler!(playbacks::channel_silence_stop),
            ),
        ],
    },
    Api {
        path: "/channels/{channelId}/snoop",
        description: "Snoop (spy/whisper) on a channel",
        operations: &[op(
            Method::Post,
            "snoopChannel",
            "Start snooping. Snoop (spy/whisper) on a specific channel.",
            "Channel",
            SNOOP_PARAMS,
            SNOOP_ERRORS,
            handler!(snoop::snoop),
        )],
    },
    Api {
        path: "/channels/{channelId}/snoop/{snoopId}",
        description: "Snoop (spy/whisper) on a channel",
        operations: &[op(
            Method::Post,
            "snoopChannelWithId",
            "Start snooping. Snoop (spy/whisper) on a specific channel.",
            "Channel",
            SNOOP_WITH_ID_PARAMS,
            SNOOP_ERRORS,
            handler!(snoop::snoop_with_id),
        )],
    },
    Api {
        path: "/channels/{channelId}/dtmf",
        description: "Send DTMF to a channel",
        operations: &[op(
            Method::Post,
            "sendDTMF",
            "Send provided DTMF to a given channel: RFC 4733 telephone-events on the channel's RTP leg (externalMedia: rtp.telephone_event_pt; SIP: as negotiated).",
            "void",
            DTMF_PARAMS,
            &[
                (400, "DTMF is required"),
                NOT_FOUND,
                NOT_IN_STASIS,
                (412, "Channel in invalid state"),
            ],
            handler!(channels::send_dtmf),
        )],
    },
    Api {
        path: "/channels/{channelId}/redirect",
        description: "Inform the channel that it should redirect itself to a different location. Note that this will almost certainly cause the channel to exit the application.",
        operations: &[op(
            Method::Post,
            "redirect",
            "Redirect the channel to a different location: an incoming SIP call not yet answered is answered 302 Moved Temporarily with the endpoint as Contact, and ends.",
            "void",
            REDIRECT_PARAMS,
            &[
                (400, "Endpoint parameter not provided"),
                (404, "Channel or endpoint not found"),
                NOT_IN_STASIS,
                (422, "Endpoint is not the same type as the channel"),
                (412, "Channel in invalid state"),
            ],
            handler!(channels::redirect),
        )],
    },
    Api {
        path: "/channels/{channelId}/answer",
        description: "Answer a channel",
        operations: &[on_channel(
            Method::Post,
            "answer",
            "Answer a channel.",
            handler!(channels::answer),
        )],
    },
    Api {
        path: "/channels/{channelId}/ring",
        description: "Send a ringing indication to a channel",
        operations: &[
            on_channel(
                Method::Post,
                "ring",
                "Indicate ringing to a channel.",
                handler!(channels::ring),
            ),
            on_channel(
                Method::Delete,
                "ringStop",
                "Stop ringing indication on a channel if locally generated.",
                handler!(channels::indicate),
            ),
        ],
    },
    Api {
        path: "/channels/{channelId}/progress",
        description: "Send a progress indication to a channel",
        operations: &[on_channel(
            Method::Post,
            "progress",
            "Indicate progress to a channel. On an incoming SIP call: 183 Session Progress with crossbar's SDP answer, and media flows before the answer.",
            handler!(channels::progress),
        )],
    },
    Api {
        path: "/channels/{channelId}/mute",
        description: "Mute a channel",
        operations: &[
            op(
                Method::Post,
                "mute",
                "Mute a channel.",
                "void",
                MUTE_PARAMS,
                STASIS_ERRORS,
                handler!(channels::mute),
            ),
            op(
                Method::Delete,
                "unmute",
                "Unmute a channel.",
                "void",
                MUTE_PARAMS,
                STASIS_ERRORS,
                handler!(channels::unmute),
            ),
        ],
    },
    Api {
        path: "/channels/{channelId}/hold",
        description: "Put a channel on hold",
        operations: &[
            on_channel(
                Method::Post,
                "hold",
                "Hold a channel: its media is not passed on.",
                handler!(channels::hold),
            ),
            on_channel(
                Method::Delete,
                "unhold",
                "Remove a channel from hold.",
                handler!(channels::unhold),
            ),
        ],
    },
    Api {
        path: "/channels/{channelId}/variable",
        description: "Variables on a channel",
        operations: &[
            op(
                Method::Get,
                "getChannelVar",
                "Get the value of a channel variable.",
                "Variable",
                GET_VAR_PARAMS,
                &[
                    (400, "Missing variable parameter."),
                    (404, "Channel or variable not found"),
                    NOT_IN_STASIS,
                ],
                handler!(channels::get_var),
            ),
            op(
                Method::Post,
                "setChannelVar",
                "Set the value of a channel variable.",
                "void",
                SET_VAR_PARAMS,
                &[
                    (400, "Missing variable parameter."),
                    NOT_FOUND,
                    NOT_IN_STASIS,
                ],
                handler!(channels::set_var),
            ),
        ],
    },
    Api {
        path: "/channels/{channelId}/variables",
        description: "Several variables on a channel",
        operations: &[
            op(
                Method::Get,
                "getChannelVars",
                "Get the values of several channel variables.",
                "Variables",
                &[
                    CHANNEL_ID,
                    Param::query("variables", "The channel variables to get.")
                        .required()
                        .multiple()
                        .missing("At least one variable name is required"),
                ],
                &[
                    (400, "Missing variables parameter."),
                    (404, "Channel or variable not found"),
                    NOT_IN_STASIS,
                ],
                handler!(channels::get_vars),
            ),
            op(
                Method::Post,
                "setChannelVars",
                "Set several channel variables.",
                "void",
                &[
                    CHANNEL_ID,
                    Param::body(
                        "variables",
                        "{\"variables\": {\"NAME\": \"value\", ...}}",
                        DataType::Containers,
                    )
                    .required()
                    .missing("The 'variables' field is required"),
                ],
                &[
                    (400, "Missing variables parameter."),
                    NOT_FOUND,
                    NOT_IN_STASIS,
                ],
                handler!(channels::set_vars),
            ),
        ],
    },
    Api {
        path: "/channels/{channelId}/dial",
        description: "Dial a channel",
        operations: &[op(
            Method::Post,
            "dial",
            "Dial a created channel.",
            "void",
            DIAL_PARAMS,
            &[
                (404, "Channel cannot be found."),
                (409, "Channel cannot be dialed."),
            ],
            handler!(channels::dial),
        )],
    },
    Api {
        path: "/channels/{channelId}/rtp_statistics",
        description: "Get RTP statistics information for RTP on a channel",
        operations: &[op(
            Method::Get,
            "rtpstatistics",
            "RTP stats on a channel.",
            "RTPstat",
            &[CHANNEL_ID],
            &[(404, "Channel cannot be found.")],
            handler!(channels::rtp_statistics),
        )],
    },
];

const BRIDGE_CREATE_PARAMS: &[Param] = &[
    Param::query("type", "Comma separated list of bridge type attributes: mixing or holding, plus any of dtmf_events, proxy_media, video_single (video_sfu and sdp_label are refused: crossbar carries no video)."),
    Param::query("bridgeId", "Unique ID to give to the bridge being created."),
    Param::query("name", "Name to give to the bridge being created."),
];

const BRIDGE_CREATE_WITH_ID_PARAMS: &[Param] = &[
    Param::query("type", "Comma separated list of bridge type attributes: mixing or holding, plus any of dtmf_events, proxy_media, video_single (video_sfu and sdp_label are refused: crossbar carries no video)."),
    BRIDGE_ID,
    Param::query("name", "Set the name of the bridge."),
];

const ADD_CHANNEL_PARAMS: &[Param] = &[
    BRIDGE_ID,
    Param::query("channel", "Ids of channels to add to bridge.")
        .required()
        .multiple()
        .missing("Missing parameter channel"),
    Param::query(
        "role",
        "Channel's role in the bridge (announcer: heard by all, hears no one).",
    ),
    Param::query(
        "mute",
        "Mute audio from this channel, preventing it to pass through to the bridge.",
    )
    .typed(DataType::Boolean)
    .default("false"),
    Param::query(
        "absorbDTMF",
        "Absorb DTMF coming from this channel, preventing it to pass through to the bridge (it is still reported).",
    )
    .typed(DataType::Boolean)
    .default("false"),
];

/// addChannel parameters of Asterisk's that crossbar cannot honour yet.
const ADD_CHANNEL_REFUSED: &[(&str, &str)] = &[(
    "inhibitConnectedLineUpdates",
    "it sends no connected-line updates between bridge members",
)];

const REMOVE_CHANNEL_PARAMS: &[Param] = &[
    BRIDGE_ID,
    Param::query("channel", "Ids of channels to remove from bridge.")
        .required()
        .multiple()
        .missing("Missing parameter channel"),
];

const BRIDGES: &[Api] = &[
    Api {
        path: "/bridges",
        description: "Active bridges",
        operations: &[
            op(
                Method::Get,
                "list",
                "List all active bridges.",
                "List[Bridge]",
                &[],
                &[],
                handler!(bridges::list),
            ),
            op(
                Method::Post,
                "create",
                "Create a new bridge.",
                "Bridge",
                BRIDGE_CREATE_PARAMS,
                &[
                    (400, "Invalid bridge type"),
                    (409, "Bridge with the same bridgeId already exists"),
                ],
                handler!(bridges::create),
            ),
        ],
    },
    Api {
        path: "/bridges/{bridgeId}",
        description: "Individual bridge",
        operations: &[
            op(
                Method::Post,
                "createWithId",
                "Create a new bridge with the given id.",
                "Bridge",
                BRIDGE_CREATE_WITH_ID_PARAMS,
                &[
                    (400, "Invalid bridge type"),
                    (409, "Bridge with the same bridgeId already exists"),
                ],
                handler!(bridges::create),
            ),
            op(
                Method::Get,
                "get",
                "Get bridge details.",
                "Bridge",
                &[BRIDGE_ID],
                &[(404, "Bridge not found")],
                handler!(bridges::get),
            ),
            op(
                Method::Delete,
                "destroy",
                "Shut down a bridge; its channels stay in their applications.",
                "void",
                &[BRIDGE_ID],
                &[(404, "Bridge not found")],
                handler!(bridges::destroy),
            ),
        ],
    },
    Api {
        path: "/bridges/{bridgeId}/addChannel",
        description: "Add a channel to a bridge",
        operations: &[op(
            Method::Post,
            "addChannel",
            "Add a channel to a bridge.",
            "void",
            ADD_CHANNEL_PARAMS,
            &[
                (400, "Channel not found"),
                (404, "Bridge not found"),
                (422, "Channel not in Stasis application"),
            ],
            handler!(bridges::add_channel),
        )
        .refusing(ADD_CHANNEL_REFUSED)],
    },
    Api {
        path: "/bridges/{bridgeId}/moh",
        description: "Play music on hold to a bridge",
        operations: &[
            op(
                Method::Post,
                "startMoh",
                "Play music on hold to a bridge: every member hears it (the bridge mixes meanwhile).",
                "void",
                BRIDGE_MOH_PARAMS,
                BRIDGE_MEDIA_ERRORS,
                handler!(playbacks::bridge_moh_start),
            ),
            op(
                Method::Delete,
                "stopMoh",
                "Stop playing music on hold to a bridge.",
                "void",
                &[BRIDGE_ID],
                BRIDGE_MEDIA_ERRORS,
                handler!(playbacks::bridge_moh_stop),
            ),
        ],
    },
    Api {
        path: "/bridges/{bridgeId}/play",
        description: "Play media to the participants of a bridge",
        operations: &[op(
            Method::Post,
            "play",
            "Start playback of media on a bridge. The media URI may be any of a number of URI's. Currently sound:, tone:, digits:, number:, characters: and recording: URI's are supported. This operation creates a playback resource that can be used to control the playback of media (pause, rewind, fast forward, etc.)",
            "Playback",
            BRIDGE_PLAY_PARAMS,
            BRIDGE_MEDIA_ERRORS,
            handler!(playbacks::bridge_play),
        )
        .refusing(&[(
            "announcer_format",
            "crossbar mixes a bridge playback in directly, without an announcer channel",
        )])],
    },
    Api {
        path: "/bridges/{bridgeId}/play/{playbackId}",
        description: "Play media to a bridge",
        operations: &[op(
            Method::Post,
            "playWithId",
            "Start playback of media on a bridge and specify the playbackId.",
            "Playback",
            BRIDGE_PLAY_WITH_ID_PARAMS,
            BRIDGE_MEDIA_ERRORS,
            handler!(playbacks::bridge_play_with_id),
        )
        .refusing(&[(
            "announcer_format",
            "crossbar mixes a bridge playback in directly, without an announcer channel",
        )])],
    },
    Api {
        path: "/bridges/{bridgeId}/record",
        description: "Record audio on a bridge",
        operations: &[op(
            Method::Post,
            "record",
            "Start a recording of the bridge's mix (every member heard). The bridge mixes (softmix) while it is recorded. This operation creates a live recording resource that can be used to control the recording (stop, pause, mute, cancel).",
            "LiveRecording",
            BRIDGE_RECORD_PARAMS,
            BRIDGE_RECORD_ERRORS,
            handler!(recordings::bridge_record),
        )
        .refusing(&[(
            "recorder_format",
            "crossbar records a bridge's mix directly, without a Recorder channel",
        )])],
    },
    Api {
        path: "/bridges/{bridgeId}/removeChannel",
        description: "Remove a channel from a bridge",
        operations: &[op(
            Method::Post,
            "removeChannel",
            "Remove a channel from a bridge.",
            "void",
            REMOVE_CHANNEL_PARAMS,
            &[
                (400, "Channel not found"),
                (404, "Bridge not found"),
                (422, "Channel not in this bridge"),
            ],
            handler!(bridges::remove_channel),
        )],
    },
];

const SUBSCRIPTION_PARAMS: &[Param] = &[
    APP_NAME,
    Param::query("eventSource", "URI for event source (channel:{channelId}, bridge:{bridgeId}, endpoint:{tech}[/{resource}], deviceState:{deviceName}")
        .required()
        .multiple()
        .missing("Missing parameter eventSource"),
];

const APPLICATIONS: &[Api] = &[
    Api {
        path: "/applications",
        description: "Stasis applications",
        operations: &[op(Method::Get, "list", "List all applications.", "List[Application]", &[], &[], handler!(applications::list))],
    },
    Api {
        path: "/applications/{applicationName}",
        description: "Stasis application",
        operations: &[op(Method::Get, "get", "Get details of an application.", "Application", &[APP_NAME], &[(404, "Application does not exist.")], handler!(applications::get))],
    },
    Api {
        path: "/applications/{applicationName}/subscription",
        description: "Stasis application",
        operations: &[
            op(Method::Post, "subscribe", "Subscribe an application to a event source.", "Application", SUBSCRIPTION_PARAMS, &[(400, "Missing parameter."), (404, "Application does not exist."), (422, "Event source does not exist.")], handler!(applications::subscribe)),
            op(Method::Delete, "unsubscribe", "Unsubscribe an application from an event source.", "Application", SUBSCRIPTION_PARAMS, &[(400, "Missing parameter; event source scheme not recognized."), (404, "Application does not exist."), (409, "Application not subscribed to event source."), (422, "Event source does not exist.")], handler!(applications::unsubscribe)),
        ],
    },
    Api {
        path: "/applications/{applicationName}/eventFilter",
        description: "Stasis application",
        operations: &[op(Method::Put, "filter", "Filter application events types.", "Application", &[APP_NAME, Param::body("filter", "Specify which event types to allow/disallow: {\"allowed\": [{\"type\": ...}], \"disallowed\": [...]}", DataType::Object)], &[(400, "Bad request."), (404, "Application does not exist.")], handler!(applications::filter))],
    },
];

const ASTERISK: &[Api] = &[
    Api {
        path: "/asterisk/info",
        description: "Node system information",
        operations: &[op(
            Method::Get,
            "getInfo",
            "Gets node system information.",
            "AsteriskInfo",
            &[Param::query("only", "Filter information returned")
                .multiple()
                .one_of(&["build", "system", "config", "status"])],
            &[],
            handler!(asterisk::info),
        )],
    },
    Api {
        path: "/asterisk/ping",
        description: "Node ping",
        operations: &[op(
            Method::Get,
            "ping",
            "Response pong message.",
            "AsteriskPing",
            &[],
            &[],
            handler!(asterisk::ping),
        )],
    },
    Api {
        path: "/asterisk/variable",
        description: "Global variables",
        operations: &[
            op(
                Method::Get,
                "getGlobalVar",
                "Get the value of a global variable.",
                "Variable",
                &[Param::query("variable", "The variable to get")
                    .required()
                    .missing("Variable name is required")],
                &[(400, "Missing variable parameter.")],
                handler!(asterisk::get_global_var),
            ),
            op(
                Method::Post,
                "setGlobalVar",
                "Set the value of a global variable.",
                "void",
                &[
                    Param::query("variable", "The variable to set")
                        .required()
                        .missing("Variable name is required"),
                    Param::query("value", "The value to set the variable to"),
                ],
                &[(400, "Missing variable parameter.")],
                handler!(asterisk::set_global_var),
            ),
        ],
    },
];

const EVENTS: &[Api] = &[
    Api {
        path: "/events",
        description: "Events from the node to applications",
        operations: &[Operation {
            method: Method::Get,
            nickname: "eventWebsocket",
            summary: "WebSocket connection for events.",
            response_class: "Message",
            params: &[
                Param::query("app", "Applications to subscribe to.")
                    .required()
                    .multiple()
                    .missing("HTTP request is missing param: [app]"),
                Param::query("subscribeAll", "Subscribe to all events, not only the application's.")
                    .typed(DataType::Boolean),
            ],
            errors: &[],
            upgrade: Some("websocket"),
            handler: None,
            refused: &[],
        }],
    },
    Api {
        path: "/events/user/{eventName}",
        description: "Stasis application user events",
        operations: &[op(
            Method::Post,
            "userEvent",
            "Generate a user event.",
            "void",
            &[
                Param::path("eventName", "Event name"),
                Param::query("application", "The name of the application that will receive this event")
                    .required()
                    .missing("Missing parameter application"),
                Param::query("source", "URI for event source (channel:{channelId}, bridge:{bridgeId})").multiple(),
                Param::body("variables", "The \"variables\" key in the body object holds custom key/value pairs to add to the user event.", DataType::Containers),
            ],
            &[(404, "Application does not exist."), (422, "Event source not found."), (400, "Invalid event source URI or userevent data.")],
            handler!(events::user_event),
        )],
    },
];

const TECH: Param = Param::path(
    "tech",
    "Technology of the endpoints: SIP (PJSIP is an alias: it answers the same endpoints, whose technology is SIP).",
);
const RESOURCE: Param = Param::path("resource", "ID of the endpoint (its [[sip.endpoint]] name)");

const ENDPOINTS: &[Api] = &[
    Api {
        path: "/endpoints",
        description: "Asterisk endpoints",
        operations: &[op(
            Method::Get,
            "list",
            "List all endpoints: the configured SIP endpoints.",
            "List[Endpoint]",
            &[],
            &[],
            handler!(endpoints::list),
        )],
    },
    Api {
        path: "/endpoints/{tech}",
        description: "Asterisk endpoints",
        operations: &[op(
            Method::Get,
            "listByTech",
            "List available endpoints for a given endpoint technology: SIP, or PJSIP as an alias of SIP for Asterisk applications (both list the same endpoints, with technology SIP). The technology is matched case-sensitively, and is unknown while no endpoint is configured, as in Asterisk.",
            "List[Endpoint]",
            &[TECH],
            &[(404, "Endpoints not found")],
            handler!(endpoints::list_by_tech),
        )],
    },
    Api {
        path: "/endpoints/{tech}/{resource}",
        description: "Single endpoint",
        operations: &[op(
            Method::Get,
            "get",
            "Details for an endpoint. tech is SIP, or PJSIP as an alias of SIP for Asterisk applications (the endpoint's technology is SIP either way); its case does not matter.",
            "Endpoint",
            &[TECH, RESOURCE],
            &[(404, "Endpoint not found")],
            handler!(endpoints::get),
        )],
    },
];

const MEDIA: Param = Param::query(
    "media",
    "Media URIs to play, in order: sound:ID, tone:NAME-or-tone-string, digits:DIGITS, number:N, characters:TEXT (comma list or repeated parameter).",
)
.required()
.multiple()
.missing("Missing parameter media");
const LANG: Param = Param::query("lang", "For sounds, selects language for sound.");
const OFFSET_MS: Param = Param::query(
    "offsetms",
    "Number of milliseconds to skip before playing. Only applies to the first URI if multiple media URIs are specified.",
)
.typed(DataType::Int)
.at_least(0);
const SKIP_MS: Param = Param::query(
    "skipms",
    "Number of milliseconds to skip for forward/reverse operations (default 3000).",
)
.typed(DataType::Int)
.at_least(0);
const PLAY_PARAMS: &[Param] = &[
    CHANNEL_ID,
    MEDIA,
    LANG,
    OFFSET_MS,
    SKIP_MS,
    Param::query("playbackId", "Playback ID."),
];
const PLAY_WITH_ID_PARAMS: &[Param] = &[
    CHANNEL_ID,
    Param::path("playbackId", "Playback ID."),
    MEDIA,
    LANG,
    OFFSET_MS,
    SKIP_MS,
];
const BRIDGE_PLAY_PARAMS: &[Param] = &[
    BRIDGE_ID,
    MEDIA,
    LANG,
    OFFSET_MS,
    SKIP_MS,
    Param::query("playbackId", "Playback Id."),
];
const BRIDGE_PLAY_WITH_ID_PARAMS: &[Param] = &[
    BRIDGE_ID,
    Param::path("playbackId", "Playback ID."),
    MEDIA,
    LANG,
    OFFSET_MS,
    SKIP_MS,
];
const SPY: Param = Param::query(
    "spy",
    "Direction of audio to spy on: none (default), both, out or in.",
);
const WHISPER: Param = Param::query(
    "whisper",
    "Direction of audio to whisper into: none (default), both, out or in.",
);
const SNOOP_APP: Param = Param::query("app", "Application the snooping channel is placed into")
    .required()
    .missing("Application name is required");
const SNOOP_APP_ARGS: Param = Param::query(
    "appArgs",
    "The application arguments to pass to the Stasis application",
);
const SNOOP_PARAMS: &[Param] = &[
    CHANNEL_ID,
    SPY,
    WHISPER,
    SNOOP_APP,
    SNOOP_APP_ARGS,
    Param::query("snoopId", "Unique ID to assign to snooping channel"),
];
const SNOOP_WITH_ID_PARAMS: &[Param] = &[
    CHANNEL_ID,
    Param::path("snoopId", "Unique ID to assign to snooping channel"),
    SPY,
    WHISPER,
    SNOOP_APP,
    SNOOP_APP_ARGS,
];
const SNOOP_ERRORS: &[(u16, &str)] = &[(400, "Invalid parameters"), (404, "Channel not found")];
const BRIDGE_MEDIA_ERRORS: &[(u16, &str)] = &[(404, "Bridge not found")];
const MOH_CLASS: Param = Param::query(
    "mohClass",
    "Music on hold class to use: a folder of sounds.moh_path (default: the files directly in it).",
);
const MOH_PARAMS: &[Param] = &[CHANNEL_ID, MOH_CLASS];
const BRIDGE_MOH_PARAMS: &[Param] = &[BRIDGE_ID, MOH_CLASS];
const PLAY_ERRORS: &[(u16, &str)] = &[NOT_FOUND, NOT_IN_STASIS, (412, "Channel in invalid state")];

const RECORD_NAME: Param = Param::query(
    "name",
    "Recording's filename (may name subdirectories of recordings.path; no '..')",
)
.required();
const RECORD_FORMAT: Param = Param::query(
    "format",
    "Format to encode audio in: wav, wav16, sln, sln16, sln48, ulaw, alaw or g722",
)
.required();
const RECORD_MAX_DURATION: Param = Param::query(
    "maxDurationSeconds",
    "Maximum duration of the recording, in seconds. 0 for no limit",
)
.typed(DataType::Int)
.default("0");
const RECORD_MAX_SILENCE: Param = Param::query(
    "maxSilenceSeconds",
    "Maximum duration of silence, in seconds. 0 for no limit",
)
.typed(DataType::Int)
.default("0");
const RECORD_IF_EXISTS: Param = Param::query(
    "ifExists",
    "Action to take if a recording with the same name already exists.",
)
.default("fail")
.one_of(&["fail", "overwrite", "append"]);
const RECORD_BEEP: Param = Param::query("beep", "Play beep when recording begins")
    .typed(DataType::Boolean)
    .default("false");
const RECORD_TERMINATE_ON: Param = Param::query("terminateOn", "DTMF input to terminate recording")
    .default("none")
    .one_of(&["none", "any", "*", "#"]);
const CHANNEL_RECORD_PARAMS: &[Param] = &[
    CHANNEL_ID,
    RECORD_NAME,
    RECORD_FORMAT,
    RECORD_MAX_DURATION,
    RECORD_MAX_SILENCE,
    RECORD_IF_EXISTS,
    RECORD_BEEP,
    RECORD_TERMINATE_ON,
];
const BRIDGE_RECORD_PARAMS: &[Param] = &[
    BRIDGE_ID,
    RECORD_NAME,
    RECORD_FORMAT,
    RECORD_MAX_DURATION,
    RECORD_MAX_SILENCE,
    RECORD_IF_EXISTS,
    RECORD_BEEP,
    RECORD_TERMINATE_ON,
];
const CHANNEL_RECORD_ERRORS: &[(u16, &str)] = &[
    (400, "Invalid parameters"),
    NOT_FOUND,
    (409, "Channel is not in a Stasis application; A recording with the same name already exists on the system and can not be overwritten because it is in progress or ifExists=fail"),
    (422, "The format specified is unknown on this system"),
];
const BRIDGE_RECORD_ERRORS: &[(u16, &str)] = &[
    (400, "Invalid parameters"),
    (404, "Bridge not found"),
    (409, "A recording with the same name already exists on the system and can not be overwritten because it is in progress or ifExists=fail"),
    (422, "The format specified is unknown on this system"),
];
const RECORDING_NAME: Param = Param::path("recordingName", "The name of the recording");
const RECORDING_NOT_FOUND: (u16, &str) = (404, "Recording not found");
const RECORDING_SESSION_ERRORS: &[(u16, &str)] =
    &[RECORDING_NOT_FOUND, (409, "Recording not in session")];

const RECORDINGS: &[Api] = &[
    Api {
        path: "/recordings/stored",
        description: "Recordings",
        operations: &[op(Method::Get, "listStored", "List recordings that are complete.", "List[StoredRecording]", &[], &[], handler!(recordings::list_stored))],
    },
    Api {
        path: "/recordings/stored/{recordingName}",
        description: "Individual recording",
        operations: &[
            op(Method::Get, "getStored", "Get a stored recording's details.", "StoredRecording", &[RECORDING_NAME], &[RECORDING_NOT_FOUND], handler!(recordings::get_stored)),
            op(Method::Delete, "deleteStored", "Delete a stored recording.", "void", &[RECORDING_NAME], &[RECORDING_NOT_FOUND], handler!(recordings::delete_stored)),
        ],
    },
    Api {
        path: "/recordings/stored/{recordingName}/file",
        description: "The actual file associated with the stored recording",
        operations: &[op(Method::Get, "getStoredFile", "Get the file associated with the stored recording.", "binary", &[RECORDING_NAME], &[(403, "The recording file could not be opened"), RECORDING_NOT_FOUND], handler!(recordings::get_stored_file))],
    },
    Api {
        path: "/recordings/stored/{recordingName}/copy",
        description: "Copy an individual recording",
        operations: &[op(
            Method::Post,
            "copyStored",
            "Copy a stored recording.",
            "StoredRecording",
            &[
                RECORDING_NAME,
                Param::query("destinationRecordingName", "The destination name of the recording").required(),
            ],
            &[RECORDING_NOT_FOUND, (409, "A recording with the same name already exists on the system")],
            handler!(recordings::copy_stored),
        )],
    },
    Api {
        path: "/recordings/live/{recordingName}",
        description: "A recording that is in progress",
        operations: &[
            op(Method::Get, "getLive", "List live recordings.", "LiveRecording", &[RECORDING_NAME], &[RECORDING_NOT_FOUND], handler!(recordings::get_live)),
            op(Method::Delete, "cancel", "Stop a live recording and discard it.", "void", &[RECORDING_NAME], &[RECORDING_NOT_FOUND], handler!(recordings::cancel)),
        ],
    },
    Api {
        path: "/recordings/live/{recordingName}/stop",
        description: "",
        operations: &[op(Method::Post, "stop", "Stop a live recording and store it.", "void", &[RECORDING_NAME], &[RECORDING_NOT_FOUND], handler!(recordings::stop))],
    },
    Api {
        path: "/recordings/live/{recordingName}/pause",
        description: "",
        operations: &[
            op(Method::Post, "pause", "Pause a live recording. Pausing a recording suspends silence detection, which will be restarted when the recording is unpaused. Paused time is not included in the accounting for maxDurationSeconds.", "void", &[RECORDING_NAME], RECORDING_SESSION_ERRORS, handler!(recordings::pause)),
            op(Method::Delete, "unpause", "Unpause a live recording.", "void", &[RECORDING_NAME], RECORDING_SESSION_ERRORS, handler!(recordings::unpause)),
        ],
    },
    Api {
        path: "/recordings/live/{recordingName}/mute",
        description: "",
        operations: &[
            op(Method::Post, "mute", "Mute a live recording. Muting a recording suspends silence detection, which will be restarted when the recording is unmuted.", "void", &[RECORDING_NAME], RECORDING_SESSION_ERRORS, handler!(recordings::mute)),
            op(Method::Delete, "unmute", "Unmute a live recording.", "void", &[RECORDING_NAME], RECORDING_SESSION_ERRORS, handler!(recordings::unmute)),
        ],
    },
];

const PLAYBACKS: &[Api] = &[
    Api {
        path: "/playbacks/{playbackId}/control",
        description: "Control object for a playback operation.",
        operations: &[op(
            Method::Post,
            "control",
            "Control a playback.",
            "void",
            &[
                Param::path("playbackId", "Playback's id"),
                Param::query("operation", "Operation to perform on the playback: unpause, pause, restart, reverse or forward.")
                    .required()
                    .missing("Missing operation"),
            ],
            &[
                (400, "The provided operation parameter was invalid"),
                (404, "The playback cannot be found"),
                (409, "The operation cannot be performed in the playback's current state"),
            ],
            handler!(playbacks::control),
        )],
    },
    Api {
    path: "/playbacks/{playbackId}",
    description: "Control object for a playback operation.",
    operations: &[
        op(
            Method::Get,
            "get",
            "Get a playback's details.",
            "Playback",
            &[Param::path("playbackId", "Playback's id")],
            &[(404, "The playback cannot be found")],
            handler!(playbacks::get),
        ),
        op(
            Method::Delete,
            "stop",
            "Stop a playback.",
            "void",
            &[Param::path("playbackId", "Playback's id")],
            &[(404, "The playback cannot be found")],
            handler!(playbacks::stop),
        ),
    ],
    },
];

const SOUNDS: &[Api] = &[
    Api {
        path: "/sounds",
        description: "Sounds",
        operations: &[op(
            Method::Get,
            "list",
            "List all sounds: the files under sounds.path, one folder per language.",
            "List[Sound]",
            &[
                Param::query("lang", "Lookup sound for a specific language."),
                Param::query(
                    "format",
                    "Lookup sound in a specific format (as the file is stored: slin, slin16, slin48, ulaw, alaw, g722).",
                ),
            ],
            &[(404, "No sounds found that matched the query")],
            handler!(sounds::list),
        )],
    },
    Api {
        path: "/sounds/{soundId}",
        description: "Individual sound",
        operations: &[op(
            Method::Get,
            "get",
            "Get a sound's details.",
            "Sound",
            &[Param::path(
                "soundId",
                "Sound's id (a folder's / percent-encoded: digits%2F1)",
            )],
            &[(404, "Sound not found")],
            handler!(sounds::get),
        )],
    },
];

/// Every resource crossbar serves, in api-docs order.
pub static RESOURCES: &[Resource] = &[
    Resource {
        name: "asterisk",
        description: "Node resources",
        apis: ASTERISK,
    },
    Resource {
        name: "endpoints",
        description: "Endpoint resources",
        apis: ENDPOINTS,
    },
    Resource {
        name: "channels",
        description: "Channel resources",
        apis: CHANNELS,
    },
    Resource {
        name: "bridges",
        description: "Bridge resources",
        apis: BRIDGES,
    },
    Resource {
        name: "playbacks",
        description: "Playback control resources",
        apis: PLAYBACKS,
    },
    Resource {
        name: "recordings",
        description: "Recording resources",
        apis: RECORDINGS,
    },
    Resource {
        name: "sounds",
        description: "Sound resources",
        apis: SOUNDS,
    },
    Resource {
        name: "events",
        description: "WebSocket resource",
        apis: EVENTS,
    },
    Resource {
        name: "applications",
        description: "Stasis application resources",
        apis: APPLICATIONS,
    },
];
