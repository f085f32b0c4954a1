//! `Playback`: one ARI playback (`POST /channels/{id}/play`, `POST
//! /bridges/{id}/play`) as the control plane knows it — its target, its
//! media in order, which one plays, its state — and its JSON snapshot in
//! Asterisk's field order.
//!
//! States as Asterisk names them (res_stasis_playback.c): `queued` until the
//! target's earlier playbacks are done, `playing` (`paused` while paused),
//! then `done` (played to the end, stopped, cancelled while queued, or its
//! target gone) or `failed` (a medium could not be played).

use serde_json::{json, Value};

/// Where a playback stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaybackState {
    Queued,
    Playing,
    Paused,
    Done,
    Failed,
}

impl PlaybackState {
    pub fn name(self) -> &'static str {
        match self {
            PlaybackState::Queued => "queued",
            PlaybackState::Playing => "playing",
            PlaybackState::Paused => "paused",
            PlaybackState::Done => "done",
            PlaybackState::Failed => "failed",
        }
    }
}

/// What a playback plays to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A channel (by id): heard by that channel only.
    Channel(String),
    /// A bridge (by id): heard by every member.
    Bridge(String),
}

impl Owner {
    /// The playback's `target_uri`.
    pub fn uri(&self) -> String {
        match self {
            Owner::Channel(id) => format!("channel:{id}"),
            Owner::Bridge(id) => format!("bridge:{id}"),
        }
    }
}

/// A playback to a channel or a bridge.
#[derive(Clone, Debug)]
pub struct Playback {
    pub id: String,
    /// The data plane's number for it (unique in the node).
    pub key: u64,
    pub target: Owner,
    pub media: Vec<String>,
    /// The medium playing (or to play next).
    pub index: usize,
    pub language: String,
    /// Where the first medium starts (ms).
    pub offset_ms: u64,
    /// How far `reverse` and `forward` move (ms).
    pub skip_ms: u32,
    pub state: PlaybackState,
}

impl Playback {
    /// The `Playback` model.
    pub fn snapshot(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "media_uri": self.media.get(self.index).or(self.media.last()).cloned().unwrap_or_default(),
        });
        if let Some(next) = self.media.get(self.index + 1) {
            v["next_media_uri"] = json!(next);
        }
        v["target_uri"] = json!(self.target.uri());
        v["language"] = json!(self.language);
        v["state"] = json!(self.state.name());
        v
    }
}
