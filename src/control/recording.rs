//! `LiveRecording`: one ARI recording (`POST /channels/{id}/record`, `POST
//! /bridges/{id}/record`) as the control plane knows it — its name, file
//! format, target, state and, once finished, its durations — with its JSON
//! snapshot, and the registry's part that keeps them and publishes
//! `RecordingStarted`, `RecordingFinished` and `RecordingFailed`.
//!
//! States as Asterisk names them (res_stasis_recording.c): `queued` (the
//! beep plays), `recording`, `paused`, then `done` (stopped, ended by a
//! limit or a digit, or its target gone), `canceled` (cancelled: the file
//! is removed) or `failed`. A recording is live (found by
//! `/recordings/live/{name}`) until its writer reported the file complete;
//! then it is forgotten, as Asterisk forgets it.

use serde_json::{json, Value};

use super::playback::Owner;
use super::Registry;
use crate::clock::Timestamp;

/// Where a recording stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordingState {
    Queued,
    Recording,
    Paused,
    Done,
    Failed,
    Canceled,
}

impl RecordingState {
    pub fn name(self) -> &'static str {
        match self {
            RecordingState::Queued => "queued",
            RecordingState::Recording => "recording",
            RecordingState::Paused => "paused",
            RecordingState::Done => "done",
            RecordingState::Failed => "failed",
            RecordingState::Canceled => "canceled",
        }
    }

    /// Writing (or paused): the operations of a recording in session apply.
    pub fn in_session(self) -> bool {
        matches!(self, RecordingState::Recording | RecordingState::Paused)
    }
}

/// A recording of a channel or a bridge.
#[derive(Clone, Debug)]
pub struct LiveRecording {
    pub name: String,
    /// The data plane's (and the writer's) number for it.
    pub key: u64,
    /// The file extension (`wav`, `ulaw`, ...).
    pub format: String,
    pub target: Owner,
    pub state: RecordingState,
    /// Seconds, once finished.
    pub duration: Option<i64>,
    /// Seconds of talk, once finished, with a silence limit.
    pub talking_duration: Option<i64>,
    /// The digits that stop it (`terminateOn`), empty for none.
    pub terminate_on: &'static str,
    /// Whether its tap runs (started, not yet stopped).
    pub tapping: bool,
    /// Whether it started writing (`RecordingStarted` was sent).
    pub started: bool,
}

impl LiveRecording {
    /// The `LiveRecording` model.
    pub fn snapshot(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "format": self.format,
            "state": self.state.name(),
            "target_uri": self.target.uri(),
        });
        if let Some(d) = self.duration {
            v["duration"] = json!(d);
            if let Some(t) = self.talking_duration {
                v["talking_duration"] = json!(t);
                v["silence_duration"] = json!(d - t);
            }
        }
        v
    }

    /// Whether `digit` stops it.
    pub fn stops_on(&self, digit: char) -> bool {
        self.terminate_on
            .chars()
            .any(|c| c.eq_ignore_ascii_case(&digit))
    }
}

impl Registry {
    /// A live recording by name.
    pub fn recording(&self, name: &str) -> Option<&LiveRecording> {
        self.recordings.get(name)
    }

    pub fn recording_mut(&mut self, name: &str) -> Option<&mut LiveRecording> {
        self.recordings.get_mut(name)
    }

    /// The live recording the data plane and the writer number `key`.
    pub fn recording_of_key(&self, key: u64) -> Option<&LiveRecording> {
        self.recordings.get(self.recording_keys.get(&key)?)
    }

    /// The live recordings of a channel or bridge, by name.
    pub fn recordings_of(&self, target: &Owner) -> Vec<String> {
        let mut names: Vec<String> = self
            .recordings
            .values()
            .filter(|r| &r.target == target)
            .map(|r| r.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Records a new recording (`queued`; no event yet); its key is drawn
    /// here. The caller checked that no live recording has its name.
    pub fn insert_recording(
        &mut self,
        name: String,
        format: String,
        target: Owner,
        terminate_on: &'static str,
    ) -> &LiveRecording {
        let key = self.take_key();
        self.recording_keys.insert(key, name.clone());
        let r = LiveRecording {
            name: name.clone(),
            key,
            format,
            target,
            state: RecordingState::Queued,
            duration: None,
            talking_duration: None,
            terminate_on,
            tapping: false,
            started: false,
        };
        self.recordings.entry(name).or_insert(r)
    }

    /// The recording starts writing (`RecordingStarted`).
    pub fn recording_started(&mut self, now: Timestamp, name: &str) {
        if let Some(r) = self.recordings.get_mut(name) {
            r.state = RecordingState::Recording;
            r.tapping = true;
            r.started = true;
            self.recording_event(now, name, "RecordingStarted", None, &[]);
        }
    }

    /// The recording ends: `RecordingFinished` (state `done`, or `canceled`
    /// for one cancelled before it started) or, with a `cause`,
    /// `RecordingFailed`; it is forgotten.
    pub fn finish_recording(
        &mut self,
        now: Timestamp,
        name: &str,
        durations: Option<(i64, Option<i64>)>,
        cause: Option<&str>,
    ) {
        self.end_recording(now, name, durations, cause, &[]);
    }

    fn end_recording(
        &mut self,
        now: Timestamp,
        name: &str,
        durations: Option<(i64, Option<i64>)>,
        cause: Option<&str>,
        also: &[String],
    ) {
        let Some(r) = self.recordings.get_mut(name) else {
            return;
        };
        r.state = match (cause, r.state) {
            (Some(_), _) => RecordingState::Failed,
            (None, RecordingState::Queued | RecordingState::Canceled) if !r.started => {
                RecordingState::Canceled
            }
            _ => RecordingState::Done,
        };
        if let Some((duration, talking)) = durations {
            r.duration = Some(duration);
            r.talking_duration = talking;
        }
        let kind = if cause.is_some() {
            "RecordingFailed"
        } else {
            "RecordingFinished"
        };
        self.recording_event(now, name, kind, cause, also);
        if let Some(r) = self.recordings.remove(name) {
            self.recording_keys.remove(&r.key);
        }
    }

    /// Ends the recordings of a channel or bridge that has gone (`done`);
    /// their writers are to be told ([`Registry::take_recording_ends`]).
    pub fn end_recordings_of(&mut self, now: Timestamp, target: &Owner) {
        self.end_recordings_to(now, target, &[]);
    }

    /// [`Registry::end_recordings_of`], the events also going to `also`
    /// (the apps of a bridge's members, who have left it already).
    pub fn end_recordings_to(&mut self, now: Timestamp, target: &Owner, also: &[String]) {
        for name in self.recordings_of(target) {
            if let Some(r) = self.recordings.get_mut(&name) {
                r.state = RecordingState::Done;
                let key = r.key;
                self.recording_ends.push(key);
            }
            self.end_recording(now, &name, None, None, also);
        }
    }

    /// The keys of recordings ended by their target's end, whose files the
    /// writer has to complete.
    pub fn take_recording_ends(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.recording_ends)
    }

    fn recording_event(
        &mut self,
        now: Timestamp,
        name: &str,
        kind: &str,
        cause: Option<&str>,
        also: &[String],
    ) {
        let Some(r) = self.recordings.get(name) else {
            return;
        };
        let mut snapshot = r.snapshot();
        if let Some(cause) = cause {
            snapshot["cause"] = json!(cause);
        }
        let mut targets = match &r.target {
            Owner::Channel(id) => self.channel_targets(id),
            Owner::Bridge(id) => self.bridge_targets(id),
        };
        super::merge_targets(&mut targets, also.to_vec());
        self.emit(&targets, kind, now, vec![("recording", snapshot)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_show_durations_once_known() {
        let mut r = LiveRecording {
            name: "a/b".into(),
            key: 1,
            format: "wav".into(),
            target: Owner::Channel("c1".into()),
            state: RecordingState::Queued,
            duration: None,
            talking_duration: None,
            terminate_on: "#",
            tapping: false,
            started: false,
        };
        assert_eq!(
            r.snapshot(),
            json!({"name": "a/b", "format": "wav", "state": "queued", "target_uri": "channel:c1"})
        );
        r.duration = Some(10);
        r.talking_duration = Some(7);
        let s = r.snapshot();
        assert_eq!(s["duration"], 10);
        assert_eq!(s["talking_duration"], 7);
        assert_eq!(s["silence_duration"], 3);
        assert!(r.stops_on('#'));
        assert!(!r.stops_on('1'));
    }
}
