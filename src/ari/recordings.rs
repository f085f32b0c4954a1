//! Recording: `POST /channels/{id}/record`, `POST /bridges/{id}/record`,
//! the `recordings` resource (live: get, stop, cancel, pause, mute; stored:
//! list, get, file, copy, delete) and the recording events, as Asterisk
//! 22's resource_recordings.c, resource_channels.c and
//! res_stasis_recording.c have them.
//!
//! A recording is a tap on its target (`media::tap`: what a channel
//! receives from its remote, or a bridge's whole mix) feeding the writer
//! thread (`crate::recording`), which writes `recordings.path/NAME.FORMAT`.
//! The reply (201, `Location: /recordings/live/NAME`) shows it `queued`;
//! `RecordingStarted` follows once the tap runs — after `sound:beep` has
//! played to the target when `beep` is set. `RecordingFinished` (state
//! `done`) comes when the writer has completed the file: stopped, a
//! `terminateOn` digit, `maxDurationSeconds`, `maxSilenceSeconds`, or
//! cancelled (the file is removed; Asterisk reports the end of a cancelled
//! recording as `done` too). The target's end ends its recordings at once
//! (`RecordingFinished` before `ChannelDestroyed`/`BridgeDestroyed`, without
//! durations). A writing error (a full disk) gives `RecordingFailed` with
//! its `cause`, and stops the tap; the call goes on.

use std::path::{Component, Path, PathBuf};

use serde_json::{json, Value};

use super::args::Args;
use super::error::AriError;
use super::playbacks;
use super::spec::Reply;
use crate::clock::Timestamp;
use crate::control::playback::Owner;
use crate::control::recording::RecordingState;
use crate::host::{Control, Node};
use crate::media::tap::Tap;
use crate::media::{Format, MediaOp};
use crate::recording::{End, IfExists, Limits, Report, Spec};
use crate::sounds::FileFormat;

/// How deep `GET /recordings/stored` looks into subdirectories.
const MAX_DEPTH: usize = 16;

/// `POST /channels/{channelId}/record`.
pub async fn channel_record(node: &Node, args: Args) -> Result<Reply, AriError> {
    let owner = Owner::Channel(args.path("channelId").to_string());
    record(node, args, owner).await
}

/// `POST /bridges/{bridgeId}/record`.
pub async fn bridge_record(node: &Node, args: Args) -> Result<Reply, AriError> {
    let owner = Owner::Bridge(args.path("bridgeId").to_string());
    record(node, args, owner).await
}

/// The file of recording `name` in `dir` without its extension; `None`
/// for a name that is empty, absolute, or steps out of `dir` (`..`).
pub fn recording_path(dir: &Path, name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('\0') || name.ends_with('/') {
        return None;
    }
    let rel = Path::new(name);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(dir.join(rel))
}

/// `path` with `.ext` appended (names may hold dots).
fn with_ext(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Whether `path`'s directory, as far as it exists, is inside `root` once
/// symbolic links are resolved (Asterisk checks the real path too).
fn inside(root: &Path, path: &Path) -> bool {
    let Ok(root) = root.canonicalize() else {
        return true;
    };
    let mut dir = path.parent();
    while let Some(d) = dir {
        if let Ok(real) = d.canonicalize() {
            return real.starts_with(&root);
        }
        dir = d.parent();
    }
    true
}

/// The stored recording `path` (without extension): its file and format,
/// the first recording format found in name order.
fn find_stored(path: &Path) -> Option<(PathBuf, String)> {
    let dir = path.parent()?;
    let stem = path.file_name()?.to_str()?;
    let mut found: Vec<(PathBuf, String)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let file_name = e.file_name();
            let file_name = file_name.to_str()?;
            let ext = file_name.strip_prefix(stem)?.strip_prefix('.')?;
            FileFormat::from_ext(ext)?;
            e.file_type()
                .ok()?
                .is_file()
                .then(|| (e.path(), ext.to_string()))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

async fn record(node: &Node, args: Args, owner: Owner) -> Result<Reply, AriError> {
    let name = args
        .non_empty("name")
        .ok_or_else(|| AriError::bad_request("Missing parameter name"))?
        .to_string();
    let format = args
        .non_empty("format")
        .ok_or_else(|| AriError::bad_request("Missing parameter format"))?
        .to_string();
    let max_duration = args.int("maxDurationSeconds").unwrap_or(0);
    if max_duration < 0 {
        return Err(AriError::bad_request(
            "max_duration_seconds cannot be negative",
        ));
    }
    let max_silence = args.int("maxSilenceSeconds").unwrap_or(0);
    if max_silence < 0 {
        return Err(AriError::bad_request(
            "max_silence_seconds cannot be negative",
        ));
    }
    let terminate_on: &'static str = match args.non_empty("terminateOn").unwrap_or("none") {
        "none" => "",
        "any" => "#*0123456789abcd",
        "*" => "*",
        "#" => "#",
        _ => return Err(AriError::bad_request("terminateOn invalid")),
    };
    let if_exists = match args.non_empty("ifExists").unwrap_or("fail") {
        "fail" => IfExists::Fail,
        "overwrite" => IfExists::Overwrite,
        "append" => IfExists::Append,
        _ => return Err(AriError::bad_request("ifExists invalid")),
    };
    let beep = args.bool("beep");
    let now = node.now();
    let mut ctl = node.lock().await;
    match &owner {
        Owner::Channel(id) => {
            ctl.reg.in_stasis(id)?;
        }
        Owner::Bridge(id) => {
            ctl.reg.existing_bridge(id)?;
        }
    }
    let Some(file) = FileFormat::from_ext(&format) else {
        return Err(AriError::unprocessable(
            "specified format is unknown on this system",
        ));
    };
    let base = recording_path(ctl.recorder.dir(), &name)
        .filter(|p| inside(ctl.recorder.dir(), p))
        .ok_or_else(|| AriError::bad_request("Recording name invalid"))?;
    let exists = || {
        AriError::conflict(format!(
            "Recording '{name}' already exists and can not be overwritten"
        ))
    };
    if ctl.reg.recording(&name).is_some() {
        return Err(exists());
    }
    if if_exists == IfExists::Fail && find_stored(&base).is_some() {
        return Err(exists());
    }
    let spec = Spec {
        path: with_ext(&base, &format),
        file,
        if_exists,
        limits: Limits {
            max_duration_ms: (max_duration as u64).saturating_mul(1000),
            max_silence_ms: (max_silence as u64).saturating_mul(1000),
        },
    };
    if let Owner::Channel(id) = &owner {
        // Asterisk's record_file answers the channel first (ast_auto_answer).
        if ctl
            .reg
            .channel(id)
            .is_some_and(|c| c.state != crate::control::channel::ChannelState::Up)
        {
            super::sip::answer(&mut ctl, id);
            super::ops::answer(&mut ctl, now, id);
        }
    }
    let rec = ctl
        .reg
        .insert_recording(name.clone(), format, owner.clone(), terminate_on);
    let (snapshot, key) = (rec.snapshot(), rec.key);
    let location = format!("/recordings/live/{}", uri_encode(&name));
    ctl.recorder.prepare(key, spec);
    if !(beep && play_beep(node, &mut ctl, &owner, key).await) {
        begin(node, &mut ctl, now, key).await;
    }
    Ok(Reply::Created(snapshot, location))
}

/// Plays `sound:beep` to the target with the recording's key; false when
/// there is none to play (the recording starts at once).
async fn play_beep(node: &Node, ctl: &mut Control, owner: &Owner, key: u64) -> bool {
    if ctl.reg.playing_on(owner) {
        // A clip would replace the playback's: the playback goes on, and
        // the recording starts without its beep.
        tracing::info!(target = ?owner, "recording without its beep: a playback plays");
        return false;
    }
    let format = match owner {
        Owner::Channel(id) => ctl.reg.channel(id).map_or(Format::Slin, |c| c.format),
        Owner::Bridge(_) => Format::Slin,
    };
    let language = match owner {
        Owner::Channel(id) => ctl
            .reg
            .channel(id)
            .map_or(crate::sounds::DEFAULT_LANGUAGE.to_string(), |c| {
                c.language.clone()
            }),
        Owner::Bridge(_) => crate::sounds::DEFAULT_LANGUAGE.to_string(),
    };
    match playbacks::clip_of(node, "sound:beep", &language, format, 0) {
        Ok(clip) => playbacks::apply(node, ctl, owner, MediaOp::Play { key, clip }).await,
        Err(why) => {
            tracing::warn!("recording without its beep: {why}");
            false
        }
    }
}

/// A clip ended: if it was a recording's beep, the recording starts; false
/// when `key` is no recording's.
pub async fn beep_done(node: &Node, ctl: &mut Control, now: Timestamp, key: u64) -> bool {
    let Some(r) = ctl.reg.recording_of_key(key) else {
        return false;
    };
    if r.state == RecordingState::Queued {
        begin(node, ctl, now, key).await;
    }
    true
}

/// Starts writing the recording `key`: the writer, then the tap
/// (`RecordingStarted`), or `RecordingFailed`.
async fn begin(node: &Node, ctl: &mut Control, now: Timestamp, key: u64) {
    let Some(spec) = ctl.recorder.take_prepared(key) else {
        return;
    };
    let Some(r) = ctl.reg.recording_of_key(key) else {
        return;
    };
    let (name, owner) = (r.name.clone(), r.target.clone());
    watch_reports(node, ctl);
    let frames = match ctl.recorder.start(key, spec) {
        Ok(frames) => frames,
        Err(e) => {
            ctl.reg
                .finish_recording(now, &name, None, Some(&format!("Could not start: {e}")));
            return;
        }
    };
    if playbacks::apply(node, ctl, &owner, MediaOp::StartTap(Tap::new(key, frames))).await {
        ctl.reg.recording_started(now, &name);
    } else {
        ctl.recorder.end(key, End::Cancelled);
        ctl.reg.finish_recording(
            now,
            &name,
            None,
            Some("The target's media could not be recorded"),
        );
    }
}

/// Starts the task consuming the writer's reports, once per node.
fn watch_reports(node: &Node, ctl: &mut Control) {
    if let (Some(rx), Some(node)) = (ctl.recorder.take_reports(), node.handle()) {
        tokio::spawn(watch(std::sync::Arc::downgrade(&node), rx));
    }
}

/// The writer's reports, under the control lock, for the node's life.
pub async fn watch(
    node: std::sync::Weak<Node>,
    mut reports: tokio::sync::mpsc::UnboundedReceiver<Report>,
) {
    // Bounded by the node's life: ends when the recorder (its sender) goes.
    while let Some(report) = reports.recv().await {
        let Some(node) = node.upgrade() else {
            return;
        };
        let now = node.now();
        let mut ctl = node.lock().await;
        let key = match &report {
            Report::Finished { key, .. } | Report::Failed { key, .. } => *key,
        };
        let Some(r) = ctl.reg.recording_of_key(key) else {
            continue;
        };
        let (name, owner, tapping) = (r.name.clone(), r.target.clone(), r.tapping);
        if tapping {
            stop_tap(&node, &mut ctl, &owner, key).await;
        }
        match report {
            Report::Finished {
                duration_s,
                talking_s,
                ..
            } => ctl
                .reg
                .finish_recording(now, &name, Some((duration_s, talking_s)), None),
            Report::Failed { cause, .. } => {
                tracing::warn!(recording = %name, "recording failed: {cause}");
                ctl.reg.finish_recording(now, &name, None, Some(&cause));
            }
        }
    }
}

/// Stops a recording's tap (a bridge may go back to a cheaper technology).
async fn stop_tap(node: &Node, ctl: &mut Control, owner: &Owner, key: u64) {
    if let Some(r) = ctl
        .reg
        .recording_of_key(key)
        .map(|r| r.name.clone())
        .and_then(|n| ctl.reg.recording_mut(&n))
    {
        r.tapping = false;
    }
    playbacks::apply(node, ctl, owner, MediaOp::StopTap { key }).await;
}

/// A digit arrived on channel `id`: its recordings, and its bridge's (a
/// member's digit reaches Asterisk's Recorder channel in the bridge), that
/// stop on it stop.
pub async fn dtmf(node: &Node, ctl: &mut Control, id: &str, digit: char) {
    let mut names = ctl.reg.recordings_of(&Owner::Channel(id.to_string()));
    if let Some(bridge) = ctl.reg.channel(id).and_then(|c| c.bridge.clone()) {
        names.extend(ctl.reg.recordings_of(&Owner::Bridge(bridge)));
    }
    for name in names {
        let stops = ctl
            .reg
            .recording(&name)
            .is_some_and(|r| r.state.in_session() && r.stops_on(digit));
        if stops {
            end(node, ctl, &name, End::Stopped).await;
        }
    }
}

/// Stops (or cancels) a recording in session: its tap stops, the writer
/// completes (or removes) the file and reports (`watch`).
async fn end(node: &Node, ctl: &mut Control, name: &str, how: End) {
    let Some(r) = ctl.reg.recording_mut(name) else {
        return;
    };
    r.state = if how == End::Cancelled {
        RecordingState::Canceled
    } else {
        RecordingState::Done
    };
    let (key, owner) = (r.key, r.target.clone());
    stop_tap(node, ctl, &owner, key).await;
    ctl.recorder.end(key, how);
}

/// `%XX` for every byte but unreserved characters (Asterisk's
/// `ast_uri_encode` with `ast_uri_http`).
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn not_found() -> AriError {
    AriError::not_found("Recording not found")
}

fn not_in_session() -> AriError {
    AriError::conflict("Recording not in session")
}

/// `GET /recordings/live/{recordingName}`.
pub async fn get_live(node: &Node, args: Args) -> Result<Reply, AriError> {
    let ctl = node.lock().await;
    let r = ctl
        .reg
        .recording(args.path("recordingName"))
        .ok_or_else(not_found)?;
    Ok(Reply::Json(r.snapshot()))
}

/// `POST /recordings/live/{recordingName}/stop` and `DELETE
/// /recordings/live/{recordingName}` (cancel), as Asterisk's operation
/// table has them: a queued recording is dropped (`canceled`).
async fn stop_or_cancel(node: &Node, args: Args, how: End) -> Result<Reply, AriError> {
    let name = args.path("recordingName").to_string();
    let now = node.now();
    let mut ctl = node.lock().await;
    let state = ctl.reg.recording(&name).ok_or_else(not_found)?.state;
    match state {
        RecordingState::Queued => {
            if let Some(r) = ctl.reg.recording_mut(&name) {
                r.state = RecordingState::Canceled;
            }
            let key = ctl.reg.recording(&name).map(|r| r.key);
            if let Some(key) = key {
                ctl.recorder.take_prepared(key);
            }
            ctl.reg.finish_recording(now, &name, None, None);
        }
        s if s.in_session() => end(node, &mut ctl, &name, how).await,
        _ => return Err(not_in_session()),
    }
    Ok(Reply::NoContent)
}

pub async fn stop(node: &Node, args: Args) -> Result<Reply, AriError> {
    stop_or_cancel(node, args, End::Stopped).await
}

pub async fn cancel(node: &Node, args: Args) -> Result<Reply, AriError> {
    stop_or_cancel(node, args, End::Cancelled).await
}

/// Pause, unpause, mute, unmute: allowed while recording or paused.
async fn control(
    node: &Node,
    args: Args,
    pause: Option<bool>,
    mute: Option<bool>,
) -> Result<Reply, AriError> {
    let name = args.path("recordingName");
    let mut ctl = node.lock().await;
    let r = ctl.reg.recording(name).ok_or_else(not_found)?;
    let (key, state) = (r.key, r.state);
    // Asterisk's operation table: every one of them applies while
    // recording or paused (pausing a paused one, unpausing a recording one
    // do nothing).
    let allowed = state.in_session();
    if !allowed {
        return Err(not_in_session());
    }
    if let Some(paused) = pause {
        ctl.recorder.pause(key, paused);
        if let Some(r) = ctl.reg.recording_mut(name) {
            r.state = if paused {
                RecordingState::Paused
            } else {
                RecordingState::Recording
            };
        }
    }
    if let Some(muted) = mute {
        ctl.recorder.mute(key, muted);
    }
    Ok(Reply::NoContent)
}

pub async fn pause(node: &Node, args: Args) -> Result<Reply, AriError> {
    control(node, args, Some(true), None).await
}

pub async fn unpause(node: &Node, args: Args) -> Result<Reply, AriError> {
    control(node, args, Some(false), None).await
}

pub async fn mute(node: &Node, args: Args) -> Result<Reply, AriError> {
    control(node, args, None, Some(true)).await
}

pub async fn unmute(node: &Node, args: Args) -> Result<Reply, AriError> {
    control(node, args, None, Some(false)).await
}

// ---- stored recordings ----

fn stored_json(name: &str, format: &str) -> Value {
    json!({"name": name, "format": format})
}

/// Every recording file under `dir` (names relative to it, without their
/// extension), in name order.
fn list_dir(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<Value>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else {
            continue;
        };
        let file_name = e.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if kind.is_dir() && depth < MAX_DEPTH {
            list_dir(&e.path(), &format!("{prefix}{file_name}/"), depth + 1, out);
        } else if kind.is_file() {
            if let Some((stem, ext)) = file_name.rsplit_once('.') {
                if FileFormat::from_ext(ext).is_some() && !stem.is_empty() {
                    out.push(stored_json(&format!("{prefix}{stem}"), ext));
                }
            }
        }
    }
}

/// `GET /recordings/stored`.
pub async fn list_stored(node: &Node, _args: Args) -> Result<Reply, AriError> {
    let dir = node.config.recordings.path.clone();
    let mut all = Vec::new();
    list_dir(&dir, "", 0, &mut all);
    all.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Reply::Json(Value::Array(all)))
}

/// The stored recording `name`: its file and format (404 otherwise).
fn stored(node: &Node, name: &str) -> Result<(PathBuf, String), AriError> {
    let root = &node.config.recordings.path;
    recording_path(root, name)
        .filter(|p| inside(root, p))
        .and_then(|p| find_stored(&p))
        .ok_or_else(not_found)
}

/// The samples of the stored recording `name` (for `recording:` media).
pub fn stored_pcm(root: &Path, name: &str) -> Result<(u32, Vec<i16>), String> {
    let (path, ext) = recording_path(root, name)
        .filter(|p| inside(root, p))
        .and_then(|p| find_stored(&p))
        .ok_or_else(|| format!("no stored recording '{name}'"))?;
    let file = FileFormat::from_ext(&ext).ok_or_else(|| format!("unknown format '{ext}'"))?;
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let pcm = crate::sounds::decode(file, &bytes).map_err(|e| e.to_string())?;
    Ok((pcm.rate, pcm.samples))
}

/// `GET /recordings/stored/{recordingName}`.
pub async fn get_stored(node: &Node, args: Args) -> Result<Reply, AriError> {
    let name = args.path("recordingName");
    let (_, format) = stored(node, name)?;
    Ok(Reply::Json(stored_json(name, &format)))
}

/// `GET /recordings/stored/{recordingName}/file`: the bytes, with
/// Asterisk's `Content-Type` (`audio/` and the extension).
pub async fn get_stored_file(node: &Node, args: Args) -> Result<Reply, AriError> {
    let (path, format) = stored(node, args.path("recordingName"))?;
    let bytes =
        std::fs::read(&path).map_err(|_| AriError::new(403, "Recording could not be opened"))?;
    let content_type = match format.as_str() {
        "wav" => "audio/wav",
        "wav16" => "audio/wav16",
        "sln" => "audio/sln",
        "slin" => "audio/slin",
        "raw" => "audio/raw",
        "sln16" => "audio/sln16",
        "sln48" => "audio/sln48",
        "ulaw" => "audio/ulaw",
        "ul" => "audio/ul",
        "pcm" => "audio/pcm",
        "mu" => "audio/mu",
        "ulw" => "audio/ulw",
        "alaw" => "audio/alaw",
        "al" => "audio/al",
        "alw" => "audio/alw",
        "g722" => "audio/g722",
        _ => "application/octet-stream",
    };
    Ok(Reply::File(content_type, bytes))
}

/// `DELETE /recordings/stored/{recordingName}`.
pub async fn delete_stored(node: &Node, args: Args) -> Result<Reply, AriError> {
    let (path, _) = stored(node, args.path("recordingName"))?;
    std::fs::remove_file(&path).map_err(|e| {
        tracing::warn!("deleting {}: {e}", path.display());
        AriError::internal("Delete failed")
    })?;
    Ok(Reply::NoContent)
}

/// `POST /recordings/stored/{recordingName}/copy`.
pub async fn copy_stored(node: &Node, args: Args) -> Result<Reply, AriError> {
    let (from, format) = stored(node, args.path("recordingName"))?;
    let destination = args
        .non_empty("destinationRecordingName")
        .ok_or_else(|| AriError::bad_request("Missing parameter destinationRecordingName"))?;
    let root = &node.config.recordings.path;
    let Some(base) = recording_path(root, destination).filter(|p| inside(root, p)) else {
        return Err(AriError::new(403, "Destination file path is forbidden"));
    };
    if find_stored(&base).is_some() {
        return Err(AriError::conflict(
            "A recording with the same name already exists on the system",
        ));
    }
    let to = with_ext(&base, &format);
    let copied = to
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::copy(&from, &to));
    if let Err(e) = copied {
        tracing::warn!("copying {} to {}: {e}", from.display(), to.display());
        return Err(AriError::internal("Copy failed"));
    }
    Ok(Reply::Json(stored_json(destination, &format)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_in_the_directory() {
        let dir = Path::new("/r");
        assert_eq!(recording_path(dir, "a"), Some(PathBuf::from("/r/a")));
        assert_eq!(
            recording_path(dir, "a/b.c"),
            Some(PathBuf::from("/r/a/b.c"))
        );
        assert_eq!(uri_encode("a/b c"), "a%2Fb%20c");
        for bad in ["", "../a", "a/../../b", "/etc/passwd", "a/", ".", "./a"] {
            assert_eq!(recording_path(dir, bad), None, "{bad}");
        }
    }

    #[test]
    fn a_symbolic_link_out_of_the_directory_is_outside() {
        let base = std::env::temp_dir().join(format!("crossbar-inside-{}", std::process::id()));
        let root = base.join("rec");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(base.join("elsewhere")).unwrap();
        let _ = std::os::unix::fs::symlink(base.join("elsewhere"), root.join("out"));
        assert!(inside(&root, &root.join("a")));
        assert!(inside(&root, &root.join("sub/a")));
        assert!(inside(&root, &root.join("new/dir/a")));
        assert!(!inside(&root, &root.join("out/a")));
        assert!(!inside(&root, &root.join("out/x/a")));
        let _ = std::fs::remove_dir_all(&base);
    }
}
