//! crossbar: a media switch with an Asterisk-compatible ARI control plane and a
//! thread-per-core RTP data plane.
//!
//! The crate is split along the boundaries in the README's Architecture section:
//! sans-IO cores (`control`, and the media modules) that are handed bytes and time,
//! and the two I/O owners, `host` (HTTP/WebSocket control socket) and `shard`
//! (the data plane threads).

pub mod ari;
pub mod clock;
pub mod codec;
pub mod config;
pub mod control;
pub mod driver;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod jitter;
pub mod media;
pub mod mix;
pub mod recording;
pub mod rtp;
pub mod sdp;
pub mod shard;
pub mod sip;
pub mod sounds;
