//! The sans-IO media core: the formats legs carry, and everything a shard
//! does with media — the leg table, bridge technology choice and its
//! application, the per-packet path (relay, transcode, jitter buffer), the
//! per-tick mix and RTCP — as one state machine, [`Core`].
//!
//! # The contract with a driver
//! A [`Core`] is handed what happened and the time, and answers with what to
//! send and when to wake it:
//! - [`Core::handle_datagram`]`(now, leg, port, source, bytes, RxBuf)`: a
//!   datagram arrived on one of a leg's sockets;
//! - [`Core::handle_timeout`]`(now)`: the time asked for by
//!   [`Core::poll_timeout`] has come;
//! - commands ([`Core::add_rtp_leg`], [`Core::set_bridge`], …) from the
//!   control plane, forwarded by the driver;
//! - [`Core::poll_transmit`] yields the datagrams to send ([`Transmit`]).
//!
//! It opens no socket, reads no clock, touches no ring and spawns nothing
//! (`tests/sans_io.rs` fails if one of those appears in this module tree).
//! The drivers in `crate::driver` (io_uring, epoll) own sockets, buffers,
//! the clock and the thread; `sim` runs the core on virtual time.
//!
//! # Buffers (see `buffer`)
//! A received datagram stays in the driver's buffer: the core is lent its
//! bytes and an [`RxBuf`] token, and either sends that buffer on (a relay
//! rewrites the header in place) or gives the token back. Frames the core
//! produces come from its own transmit pool ([`TxBuf`]). Neither token is
//! `Copy`: each is sent or released exactly once.
//!
//! # Modules
//! `format` (audio formats), `buffer` (tokens, pool, the one place that
//! builds a [`Transmit`]), `leg` (the leg table with generations), `bridge`
//! (technology choice and application), `path` (what a leg does with what it
//! receives), `mixing` (the softmix tick), `rtcp` (reports received, sent,
//! relayed), `source` (symmetric RTP learning, loop and flood guards),
//! `core` (the [`Core`] API), `sim` (the virtual-time harness).

mod bridge;
mod buffer;
mod core;
pub mod dtmf;
mod extras;
mod format;
mod leg;
mod mixing;
mod path;
pub mod player;
mod rtcp;
pub mod say;
pub mod sim;
mod snoop;
mod source;
pub mod talk;
pub mod tap;
pub mod tones;

use std::net::SocketAddr;

pub use self::buffer::{Payload, RxBuf, Transmit, TxBuf};
pub use self::core::{Core, CoreConfig, LegState, Removed};
pub use self::format::*;
pub use self::leg::{LegRef, Port};
pub use self::snoop::{linear_for, SnoopSpec};

/// A media leg (one channel's media), numbered by the control plane. ARI's
/// string ids never reach the data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u64);

/// A bridge, numbered by the control plane (from the same sequence as legs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BridgeKey(pub u64);

impl From<u64> for LegId {
    fn from(n: u64) -> LegId {
        LegId(n)
    }
}

impl From<u64> for BridgeKey {
    fn from(n: u64) -> BridgeKey {
        BridgeKey(n)
    }
}

impl std::fmt::Display for LegId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "leg {}", self.0)
    }
}

impl std::fmt::Display for BridgeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bridge {}", self.0)
    }
}

/// One member of a bridge as the data plane needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSpec {
    pub leg: LegId,
    /// Joined with `mute=true`: its audio is not heard by the others.
    pub mute: bool,
    /// `role=announcer`: heard by all, hears no one.
    pub announcer: bool,
    /// `absorbDTMF`: its telephone-events are reported but not passed on.
    pub absorb_dtmf: bool,
}

/// What the core tells the control plane about a leg (drained with
/// [`Core::poll_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaEvent {
    /// An RFC 4733 digit ended (once per event).
    Dtmf {
        leg: LegId,
        digit: char,
        duration_ms: u32,
    },
    /// The leg started talking (`TALK_DETECT`).
    TalkingStarted { leg: LegId },
    /// The leg stopped talking after `duration_ms` of talk.
    TalkingFinished { leg: LegId, duration_ms: u32 },
    /// The clip `key` played to a leg or a bridge has ended (or went with
    /// its bridge).
    PlaybackDone { target: Target, key: u64 },
}

/// What a media operation (play, music on hold, record) applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Leg(LegId),
    Bridge(BridgeKey),
}

/// A media operation on a leg or a bridge ([`Core::media_op`]).
#[derive(Debug)]
pub enum MediaOp {
    /// Plays a clip (numbered `key` by the control plane) in place of any
    /// clip playing.
    Play { key: u64, clip: player::Clip },
    /// Stops the clip `key`; not applied if another one plays.
    StopPlaying { key: u64 },
    /// Pauses, seeks... the clip `key`.
    Control {
        key: u64,
        control: player::PlayerControl,
    },
    /// Starts a generator looping `clip` (music on hold, silence) heard
    /// while no clip plays, in place of any generator; `None` stops it.
    Generate(Option<player::Clip>),
    /// Starts a tap (a recording's feed).
    StartTap(tap::Tap),
    /// Stops the tap `key`.
    StopTap { key: u64 },
}

/// The outcome of a [`MediaOp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaDone {
    /// False when the operation found nothing to act on (another clip
    /// plays, no such tap, a seek on a tone).
    pub applied: bool,
    /// A bridge's technology after the operation (playing into or
    /// recording a bridge mixes it).
    pub technology: Option<Technology>,
}

/// The desired state of a bridge; the core chooses the technology.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeSpec {
    pub members: Vec<MemberSpec>,
    pub dtmf_events: bool,
    pub proxy_media: bool,
    pub holding: bool,
}

/// The bridge technology in use, with Asterisk's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Technology {
    SimpleBridge,
    NativeRtp,
    Softmix,
    HoldingBridge,
}

impl Technology {
    /// The name ARI shows in a bridge's `technology` field.
    pub fn name(self) -> &'static str {
        match self {
            Technology::SimpleBridge => "simple_bridge",
            Technology::NativeRtp => "native_rtp",
            Technology::Softmix => "softmix",
            Technology::HoldingBridge => "holding_bridge",
        }
    }
}

/// Which way media is affected by mute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
    Both,
}

/// Why the core refused a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreError {
    /// The leg or bridge is not known here.
    Unknown,
    /// A leg with this id exists already.
    InUse,
    /// The leg has no telephone-event payload type to send digits with.
    NoTelephoneEvent,
    /// The clip cannot be played there (no encoder for the format, or a
    /// rate that cannot be converted).
    Unplayable,
}

/// Counters of one leg.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RtpStats {
    /// RTP packets accepted from the leg's remote (any payload type; not
    /// RTCP, garbage, other sources, loops or floods), or handed to a Local
    /// half: Asterisk's `rxcount`.
    pub rx_packets: u64,
    /// Packets sent to the leg's remote (or handed to a Local half).
    pub tx_packets: u64,
    /// Good packets not passed on: muted, on hold, or no one to send to.
    pub rx_dropped: u64,
    /// Datagrams that are not valid RTP for the leg (short, version, bad
    /// header, truncated, payload type not of its format).
    pub rx_bad: u64,
    /// Datagrams from a source other than the leg's remote (including those
    /// of a source on probation, see `source`).
    pub rx_wrong_source: u64,
    /// Packets this node itself sent that came back to the leg (a loop).
    pub rx_looped: u64,
    /// Packets over the leg's per-second allowance (a flood or a loop).
    pub rx_flood: u64,
    /// Lost frames of the received stream the node concealed (transcode and
    /// mix paths, `dataplane.plc`).
    pub rx_concealed: u64,
    /// Valid RTCP compound datagrams received from the remote, on the RTP
    /// port (muxed) or on the RTCP port.
    pub rx_rtcp: u64,
    /// SR and RR packets among them.
    pub rx_rtcp_reports: u64,
    /// Datagrams on the RTCP port that are not valid RTCP, or not from the
    /// remote's address (invalid RTCP on the RTP port counts in `rx_bad`).
    pub rx_rtcp_bad: u64,
    /// RTCP datagrams sent to the remote: crossbar's own reports (and BYE),
    /// or RTCP relayed from the partner of a `native_rtp` relay.
    pub tx_rtcp: u64,
    /// The sender info of the last SR the remote sent (NTP and RTP
    /// timestamps, its packet and octet counts).
    pub remote_sr: Option<crate::rtp::rtcp::SenderInfo>,
    /// From the last report block the remote sent about our stream (SSRC =
    /// `tx_ssrc`): fraction lost since its previous report (0–255 = 0–100 %).
    pub remote_fraction_lost: u8,
    /// Same block: cumulative packets of our stream the remote lost.
    pub remote_cumulative_lost: i32,
    /// Same block: interarrival jitter the remote measures on our stream, in
    /// RTP timestamp units.
    pub remote_jitter: u32,
    /// The highest `remote_jitter` reported so far.
    pub remote_max_jitter: u32,
    /// Report blocks about our stream received.
    pub remote_reports: u64,
    /// Round-trip time from the last report block that carried an LSR of
    /// one of our SRs (RFC 3550 §6.4.1), in milliseconds.
    pub rtt_ms: Option<f64>,
    /// The counters of the leg's jitter buffer while it is on a mixing path
    /// (since it joined its current mix); `None` off the mixing path.
    pub jitter_buffer: Option<crate::jitter::JitterStats>,
    /// Payload bytes of the packets in `rx_packets` (Asterisk's
    /// `rxoctetcount`).
    pub rx_octets: u64,
    /// Bytes of RTP sent, less the 12-byte fixed header (Asterisk's
    /// `txoctetcount`; RTCP is not counted).
    pub tx_octets: u64,
    /// Packets not sent to the leg: muted out, or no remote known yet.
    pub tx_dropped: u64,
    /// Sends the kernel failed.
    pub tx_errors: u64,
    /// Packets of the received stream lost so far (RFC 3550 A.3: expected −
    /// received; negative with duplicates). RTP legs only.
    pub rx_lost: i64,
    /// Interarrival jitter of the received stream (RFC 3550 A.8), in RTP
    /// timestamp units of the leg's format clock rate (8000 per second for
    /// ulaw, 48000 for opus, ...), as an RTCP report block carries it.
    pub rx_jitter: u32,
    /// The SSRC of the last stream received, once one was.
    pub rx_ssrc: Option<u32>,
    /// Our SSRC on the leg, once something was sent.
    pub tx_ssrc: Option<u32>,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
}

/// True when `addr` means "not known yet" (the leg learns its remote).
pub fn is_unspecified(addr: &SocketAddr) -> bool {
    addr.port() == 0 || addr.ip().is_unspecified()
}
