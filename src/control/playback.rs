//! `Playback`: one ARI playback (`POST /channels/{id}/play`) as the control
//! plane knows it — its media in order, which one plays, its state — and
//! its JSON snapshot in Asterisk's field order.
//!
//! States as Asterisk names them (res_stasis_playback.c): `queued` until the
//! channel's earlier playbacks are done, `playing`, then `done` (played to
//! the end, stopped, or its channel gone) or `failed` (a medium could not be
//! played).

use serde_json::{json, Value};

/// Where a playback stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaybackState {
    Queued,
    Playing,
    Done,
    Failed,
}

impl PlaybackState {
    pub fn name(self) -> &'static str {
        match self {
            PlaybackState::Queued => "queued",
            PlaybackState::Playing => "playing",
            PlaybackState::Done => "done",
            PlaybackState::Failed => "failed",
        }
    }
}

/// A playback to a channel.
#[derive(Clone, Debug)]
pub struct Playback {
    pub id: String,
    /// The data plane's number for it (unique in the node).
    pub key: u64,
    /// The target channel's id.
    pub channel: String,
    pub media: Vec<String>,
    /// The medium playing (or to play next).
    pub index: usize,
    pub language: String,
    /// Where the first medium starts (ms).
    pub offset_ms: u64,
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
        v["target_uri"] = json!(format!("channel:{}", self.channel));
        v["language"] = json!(self.language);
        v["state"] = json!(self.state.name());
        v
    }
}
