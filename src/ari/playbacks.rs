//! Playback: `POST /channels/{id}/play[/{playbackId}]`, `POST
//! /bridges/{id}/play[/{playbackId}]`, the `playbacks` resource (get, stop,
//! control) and the playback events; music on hold and silence
//! (`/channels/{id}/moh`, `/channels/{id}/silence`, `/bridges/{id}/moh`).
//!
//! A playback's media play in order (`PlaybackStarted`, a
//! `PlaybackContinuing` between two, `PlaybackFinished` at the end, state
//! `done`, or `failed` when a medium cannot be played); a target's
//! playbacks play one after another, the later ones `queued`. A playback to
//! a channel is heard by that channel only: what it would otherwise hear
//! (its bridge, its music on hold) is held back meanwhile, as Asterisk
//! does. A playback to a bridge is heard by every member (the bridge mixes
//! meanwhile, as Asterisk's announcer channel makes it). Pausing and
//! unpausing publish no event (Asterisk's `paused` state has none).
//!
//! Media: `sound:ID` (the best file of `sounds.path` for the playback's
//! language and the channel's format, read and decoded on the control
//! thread the first time only — `sounds::load_shared` keeps decoded files —
//! and never on a shard; the data plane converts its rate), `tone:` (an indication name
//! of the default zone or a tone string, generated on the shard; an endless
//! tone plays until stopped), `digits:`, `number:` and `characters:` (the
//! prompts saying them, `media::say`), `recording:` (a stored recording
//! of `recordings.path`, read and decoded here).

use std::sync::Arc;

use super::args::Args;
use super::error::AriError;
use super::ops;
use super::spec::Reply;
use crate::clock::Timestamp;
use crate::control::playback::{Owner, PlaybackState};
use crate::host::{Control, Node};
use crate::media::player::{Clip, PlayerControl};
use crate::media::{say, tones, Format, MediaOp, Target};
use crate::sounds::{index_for, load_shared, SoundIndex};

/// The schemes crossbar plays.
const SCHEMES: &[&str] = &[
    "sound:",
    "tone:",
    "digits:",
    "number:",
    "characters:",
    "recording:",
];

/// Asterisk's `PLAYBACK_DEFAULT_SKIPMS`.
const DEFAULT_SKIP_MS: u32 = 3000;

/// `POST /channels/{channelId}/play`.
pub async fn play(node: &Node, args: Args) -> Result<Reply, AriError> {
    let given = args.non_empty("playbackId").map(str::to_string);
    let owner = Owner::Channel(args.path("channelId").to_string());
    start(node, args, owner, given).await
}

/// `POST /channels/{channelId}/play/{playbackId}`.
pub async fn play_with_id(node: &Node, args: Args) -> Result<Reply, AriError> {
    let given = Some(args.path("playbackId").to_string());
    let owner = Owner::Channel(args.path("channelId").to_string());
    start(node, args, owner, given).await
}

/// `POST /bridges/{bridgeId}/play`.
pub async fn bridge_play(node: &Node, args: Args) -> Result<Reply, AriError> {
    let given = args.non_empty("playbackId").map(str::to_string);
    let owner = Owner::Bridge(args.path("bridgeId").to_string());
    start(node, args, owner, given).await
}

/// `POST /bridges/{bridgeId}/play/{playbackId}`.
pub async fn bridge_play_with_id(node: &Node, args: Args) -> Result<Reply, AriError> {
    let given = Some(args.path("playbackId").to_string());
    let owner = Owner::Bridge(args.path("bridgeId").to_string());
    start(node, args, owner, given).await
}

async fn start(
    node: &Node,
    args: Args,
    owner: Owner,
    given: Option<String>,
) -> Result<Reply, AriError> {
    let media = media_list(args.list("media"));
    if media.is_empty() {
        return Err(AriError::bad_request("Missing parameter media"));
    }
    if let Some(m) = media
        .iter()
        .find(|m| !SCHEMES.iter().any(|s| m.starts_with(s)))
    {
        return Err(AriError::bad_request(format!(
            "Media '{m}' is not played by crossbar: it plays sound:, tone:, digits:, number:, characters: and recording: media"
        )));
    }
    let offset_ms = args.int("offsetms").unwrap_or(0).max(0) as u64;
    let skip_ms = match args.int("skipms").unwrap_or(0) {
        0 => DEFAULT_SKIP_MS,
        n => u32::try_from(n).unwrap_or(u32::MAX),
    };
    let now = node.now();
    let mut ctl = node.lock().await;
    let default_language = match &owner {
        Owner::Channel(id) => ctl.reg.in_stasis(id)?.language.clone(),
        Owner::Bridge(id) => {
            ctl.reg.existing_bridge(id)?;
            crate::sounds::DEFAULT_LANGUAGE.to_string()
        }
    };
    let language = args
        .non_empty("lang")
        .map(str::to_string)
        .unwrap_or(default_language);
    let id = ctl.reg.claim_playback_id(given.as_deref())?;
    let snapshot = ctl
        .reg
        .insert_playback(
            id.clone(),
            owner.clone(),
            media,
            language,
            offset_ms,
            skip_ms,
        )
        .snapshot();
    if !ctl.reg.playing_on(&owner) {
        play_next(node, &mut ctl, now, &owner).await;
    }
    Ok(Reply::Created(snapshot, format!("/playbacks/{id}")))
}

/// The media of a play request: comma lists split, except that a piece
/// without a scheme continues the `tone:` before it (a tone string is
/// itself comma separated: `tone:!950/330,!1400/330`).
fn media_list(given: &[String]) -> Vec<String> {
    let mut media: Vec<String> = Vec::new();
    for part in given.iter().flat_map(|m| m.split(',')).map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let has_scheme = part
            .split_once(':')
            .is_some_and(|(scheme, _)| scheme.chars().all(|c| c.is_ascii_alphabetic()));
        match media.last_mut() {
            Some(tone) if !has_scheme && tone.starts_with("tone:") => {
                tone.push(',');
                tone.push_str(part);
            }
            _ => media.push(part.to_string()),
        }
    }
    media
}

/// `GET /playbacks/{playbackId}`.
pub async fn get(node: &Node, args: Args) -> Result<Reply, AriError> {
    let ctl = node.lock().await;
    let p = ctl
        .reg
        .playback(args.path("playbackId"))
        .ok_or_else(|| AriError::not_found("Playback not found"))?;
    Ok(Reply::Json(p.snapshot()))
}

/// `DELETE /playbacks/{playbackId}`: stops it (`PlaybackFinished`, state
/// `done`, as Asterisk reports a stopped or cancelled playback).
pub async fn stop(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("playbackId");
    let now = node.now();
    let mut ctl = node.lock().await;
    let p = ctl
        .reg
        .playback(id)
        .ok_or_else(|| AriError::not_found("Playback not found"))?;
    let (owner, key, active) = (
        p.target.clone(),
        p.key,
        matches!(p.state, PlaybackState::Playing | PlaybackState::Paused),
    );
    if active {
        if let Some(target) = target_of(&ctl, &owner) {
            node.dataplane
                .media_op(target, MediaOp::StopPlaying { key })
                .await
                .map_err(ops::dataplane_error)?;
        }
    }
    ctl.reg.finish_playback(now, id, false);
    if active {
        play_next(node, &mut ctl, now, &owner).await;
    }
    Ok(Reply::NoContent)
}

/// `POST /playbacks/{playbackId}/control`: pause, unpause, restart,
/// reverse, forward — allowed in the states Asterisk allows them
/// (res_stasis_playback.c's operation table): 409 otherwise.
pub async fn control(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("playbackId");
    let operation = args
        .non_empty("operation")
        .ok_or_else(|| AriError::bad_request("Missing operation"))?
        .to_string();
    let mut ctl = node.lock().await;
    let p = ctl
        .reg
        .playback(id)
        .ok_or_else(|| AriError::not_found("Playback not found"))?;
    let (owner, key, state, skip) = (p.target.clone(), p.key, p.state, p.skip_ms);
    let control = match operation.as_str() {
        "pause" => PlayerControl::Pause,
        "unpause" => PlayerControl::Unpause,
        "restart" => PlayerControl::Restart,
        "reverse" => PlayerControl::Reverse(skip),
        "forward" => PlayerControl::Forward(skip),
        other => {
            return Err(AriError::bad_request(format!("Invalid operation {other}")));
        }
    };
    use PlaybackState::*;
    let (send, next) = match (state, control) {
        (Queued, PlayerControl::Restart) => (false, None),
        (Playing, PlayerControl::Unpause) | (Paused, PlayerControl::Pause) => (false, None),
        (Playing, PlayerControl::Pause) => (true, Some(Paused)),
        (Paused, PlayerControl::Unpause) => (true, Some(Playing)),
        (Playing, _) => (true, None),
        _ => {
            return Err(AriError::conflict(format!(
                "Can only {operation} while media is playing"
            )));
        }
    };
    if send {
        if let Some(target) = target_of(&ctl, &owner) {
            node.dataplane
                .media_op(target, MediaOp::Control { key, control })
                .await
                .map_err(ops::dataplane_error)?;
        }
    }
    if let Some(state) = next {
        ctl.reg.set_playback_state(id, state);
    }
    Ok(Reply::NoContent)
}

/// A clip ended on the data plane: the playback's next medium, or its end
/// and the target's next playback.
pub async fn clip_done(node: &Node, ctl: &mut Control, now: Timestamp, key: u64) {
    let Some(p) = ctl.reg.playback_of_key(key) else {
        return;
    };
    let (id, owner) = (p.id.clone(), p.target.clone());
    if ctl.reg.continue_playback(now, &id) {
        if !send_clip(node, ctl, &id).await {
            ctl.reg.finish_playback(now, &id, true);
            play_next(node, ctl, now, &owner).await;
        }
        return;
    }
    ctl.reg.finish_playback(now, &id, false);
    play_next(node, ctl, now, &owner).await;
}

/// Starts the target's oldest queued playback (failed ones end at once,
/// and the next is tried; bounded by the queue).
async fn play_next(node: &Node, ctl: &mut Control, now: Timestamp, owner: &Owner) {
    while let Some(id) = ctl.reg.next_queued(owner) {
        ctl.reg.start_playback(now, &id);
        if send_clip(node, ctl, &id).await {
            return;
        }
        ctl.reg.finish_playback(now, &id, true);
    }
}

/// The data plane's target of a channel or bridge that still exists.
fn target_of(ctl: &Control, owner: &Owner) -> Option<Target> {
    match owner {
        Owner::Channel(id) => ctl.reg.channel(id).map(|c| Target::Leg(c.leg)),
        Owner::Bridge(id) => ctl.reg.bridge(id).map(|b| Target::Bridge(b.key)),
    }
}

/// The format a sound file is chosen for: the channel's, or signed linear
/// for a bridge's mix.
fn format_of(ctl: &Control, owner: &Owner) -> Format {
    match owner {
        Owner::Channel(id) => ctl.reg.channel(id).map_or(Format::Slin, |c| c.format),
        Owner::Bridge(_) => Format::Slin,
    }
}

/// Applies a media operation to a playback's target, noting a bridge's new
/// technology; false when the data plane refused it.
pub async fn apply(node: &Node, ctl: &mut Control, owner: &Owner, op: MediaOp) -> bool {
    let Some(target) = target_of(ctl, owner) else {
        return false;
    };
    match node.dataplane.media_op(target, op).await {
        Ok(done) => {
            if let (Owner::Bridge(id), Some(t)) = (owner, done.technology) {
                ctl.reg.set_technology(id, t.name());
            }
            true
        }
        Err(e) => {
            tracing::warn!(target = ?owner, "media operation refused: {e}");
            false
        }
    }
}

/// Prepares the playback's current medium and hands it to the data plane;
/// false when it cannot be played.
async fn send_clip(node: &Node, ctl: &mut Control, id: &str) -> bool {
    let Some(p) = ctl.reg.playback(id) else {
        return false;
    };
    let owner = p.target.clone();
    let medium = p.media.get(p.index).cloned().unwrap_or_default();
    let offset = if p.index == 0 { p.offset_ms } else { 0 };
    let language = p.language.clone();
    let key = p.key;
    let format = format_of(ctl, &owner);
    let clip = match clip_of(node, &medium, &language, format, offset) {
        Ok(clip) => clip,
        Err(why) => {
            tracing::info!(playback = %id, media = %medium, "playback failed: {why}");
            return false;
        }
    };
    apply(node, ctl, &owner, MediaOp::Play { key, clip }).await
}

/// The clip of one medium, its sound files chosen for `format`.
pub(crate) fn clip_of(
    node: &Node,
    medium: &str,
    language: &str,
    format: Format,
    offset_ms: u64,
) -> Result<Clip, String> {
    if let Some(tone) = medium.strip_prefix("tone:") {
        let spec = tones::parse_tone_uri(tone).map_err(|e| e.to_string())?;
        return Ok(Clip::Tone(Box::new(spec)));
    }
    if let Some(name) = medium.strip_prefix("recording:") {
        let (rate, samples) = super::recordings::stored_pcm(&node.config.recordings.path, name)?;
        let skip = (offset_ms * u64::from(rate) / 1000) as usize;
        let samples = samples.get(skip..).unwrap_or(&[]).into();
        return Ok(Clip::Pcm { rate, samples });
    }
    let index = index_for(&node.config.sounds.paths());
    let ids: Vec<String> = if let Some(id) = medium.strip_prefix("sound:") {
        vec![id.to_string()]
    } else if let Some(digits) = medium.strip_prefix("digits:") {
        tones::parse_digits(digits)
            .into_iter()
            .map(str::to_string)
            .collect()
    } else if let Some(n) = medium.strip_prefix("number:") {
        let n: i64 = n
            .trim()
            .parse()
            .ok()
            .filter(|n: &i64| i32::try_from(*n).is_ok())
            .ok_or_else(|| format!("invalid number '{n}'"))?;
        say::number_sounds(n)
    } else if let Some(chars) = medium.strip_prefix("characters:") {
        // Characters without a prompt are skipped, as Asterisk skips them.
        say::character_sounds(chars)
            .into_iter()
            .filter(|id| index.pick(id, language, format).is_some())
            .collect()
    } else {
        return Err(format!("unsupported media '{medium}'"));
    };
    let mut sounds = ids
        .iter()
        .map(|id| sound(&index, id, language, format))
        .collect::<Result<Vec<_>, String>>()?;
    let (rate, samples) = match sounds.len() {
        0 => return Err(format!("nothing to play in '{medium}'")),
        // One file: the cached samples themselves.
        1 => sounds.remove(0),
        // Several: joined at the first file's rate.
        _ => {
            let rate = sounds[0].0;
            let mut all = Vec::new();
            for (from, pcm) in &sounds {
                all.extend(resampled(pcm, *from, rate)?);
            }
            (rate, all.into())
        }
    };
    let skip = (offset_ms * u64::from(rate) / 1000) as usize;
    let samples = match skip {
        0 => samples,
        _ => samples.get(skip..).unwrap_or(&[]).into(),
    };
    Ok(Clip::Pcm { rate, samples })
}

/// A sound's samples and rate (decoded once, see `sounds::load_shared`).
fn sound(
    index: &SoundIndex,
    id: &str,
    language: &str,
    format: Format,
) -> Result<(u32, Arc<[i16]>), String> {
    let file = index
        .pick(id, language, format)
        .ok_or_else(|| format!("no sound '{id}' for language '{language}'"))?;
    load_shared(file).map_err(|e| e.to_string())
}

/// `pcm` (at `from`) at `rate`.
fn resampled(pcm: &[i16], from: u32, rate: u32) -> Result<Vec<i16>, String> {
    if from == rate {
        return Ok(pcm.to_vec());
    }
    let mut r = crate::codec::Resampler::new(from, rate).map_err(|e| e.to_string())?;
    let mut out = vec![0i16; r.output_len(pcm.len()) + 64];
    let n = r.process(pcm, &mut out).map_err(|e| e.to_string())?;
    out.truncate(n);
    Ok(out)
}

// ---- music on hold and silence ----

/// `POST /channels/{channelId}/moh`.
pub async fn channel_moh_start(node: &Node, args: Args) -> Result<Reply, AriError> {
    let owner = Owner::Channel(args.path("channelId").to_string());
    generate(
        node,
        &owner,
        Some(moh_clip(node, args.non_empty("mohClass"))?),
    )
    .await
}

/// `DELETE /channels/{channelId}/moh`.
pub async fn channel_moh_stop(node: &Node, args: Args) -> Result<Reply, AriError> {
    let owner = Owner::Channel(args.path("channelId").to_string());
    generate(node, &owner, None).await
}

/// `POST /channels/{channelId}/silence`.
pub async fn channel_silence_start(node: &Node, args: Args) -> Result<Reply, AriError> {
    let owner = Owner::Channel(args.path("channelId").to_string());
    generate(node, &owner, Some(Clip::Silence)).await
}

/// `DELETE /channels/{channelId}/silence`.
pub async fn channel_silence_stop(node: &Node, args: Args) -> Result<Reply, AriError> {
    channel_moh_stop(node, args).await
}

/// `POST /bridges/{bridgeId}/moh`.
pub async fn bridge_moh_start(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("bridgeId");
    let clip = moh_clip(node, args.non_empty("mohClass"))?;
    bridge_generator(node, id, Some(clip)).await
}

/// `DELETE /bridges/{bridgeId}/moh`: stops it; a holding bridge's
/// participants hear its idle music again (see [`holding_idle`]).
pub async fn bridge_moh_stop(node: &Node, args: Args) -> Result<Reply, AriError> {
    bridge_generator(node, args.path("bridgeId"), None).await
}

/// Starts or stops the music on hold an application asked of a bridge
/// (under one hold of the control lock, so no membership change runs
/// between the data plane's answer and the registry's note of it).
async fn bridge_generator(node: &Node, id: &str, clip: Option<Clip>) -> Result<Reply, AriError> {
    let mut ctl = node.lock().await;
    let key = ctl.reg.existing_bridge(id)?.key;
    let on = clip.is_some();
    let done = node
        .dataplane
        .media_op(Target::Bridge(key), MediaOp::Generate(clip))
        .await
        .map_err(ops::dataplane_error)?;
    if let Some(t) = done.technology {
        ctl.reg.set_technology(id, t.name());
    }
    ctl.reg.set_bridge_moh(id, on, false);
    if !on {
        holding_idle(node, &mut ctl, id).await;
    }
    Ok(Reply::NoContent)
}

/// A holding bridge entertains its participants as Asterisk's default
/// `idle_mode` does: while it has a participant, no announcer member and no
/// music on hold the application started, its participants hear the
/// `default` class (nothing when there is none, as Asterisk's fallback to a
/// silence generator sounds). Called after every membership change.
pub async fn holding_idle(node: &Node, ctl: &mut Control, bridge_id: &str) {
    let Some(b) = ctl.reg.bridge(bridge_id) else {
        return;
    };
    if !b.flags.holding {
        return;
    }
    let announcer = b.members.iter().any(|m| m.role == "announcer");
    let participant = b.members.iter().any(|m| m.role != "announcer");
    let (app, idle) = ctl.reg.bridge_moh(bridge_id);
    let want = participant && !announcer && !app;
    if want == idle {
        return;
    }
    let clip = match want {
        true => match moh_clip(node, None) {
            Ok(clip) => Some(clip),
            Err(_) => return,
        },
        false => None,
    };
    let owner = Owner::Bridge(bridge_id.to_string());
    if apply(node, ctl, &owner, MediaOp::Generate(clip)).await {
        ctl.reg.set_bridge_moh(bridge_id, false, want);
    }
}

/// The music of a class (`default` when none is given). An unknown class
/// plays `default`, as Asterisk's res_musiconhold falls back to it.
fn moh_clip(node: &Node, class: Option<&str>) -> Result<Clip, AriError> {
    let root = &node.config.sounds.moh_path;
    let class = class.unwrap_or("default");
    let found = crate::sounds::moh_class(root, class).or_else(|| {
        tracing::warn!(
            class,
            "no music on hold class of that name: playing default"
        );
        crate::sounds::moh_class(root, "default")
    });
    match found {
        Some((rate, samples)) => Ok(Clip::Pcm { rate, samples }),
        None => Err(AriError::internal(format!(
            "no music on hold files in {}",
            root.display()
        ))),
    }
}

/// Starts (`Some`) or stops a channel's or bridge's generator.
async fn generate(node: &Node, owner: &Owner, clip: Option<Clip>) -> Result<Reply, AriError> {
    let mut ctl = node.lock().await;
    let target = match owner {
        Owner::Channel(id) => Target::Leg(ctl.reg.in_stasis(id)?.leg),
        Owner::Bridge(id) => Target::Bridge(ctl.reg.existing_bridge(id)?.key),
    };
    let done = node
        .dataplane
        .media_op(target, MediaOp::Generate(clip))
        .await
        .map_err(ops::dataplane_error)?;
    if let (Owner::Bridge(id), Some(t)) = (owner, done.technology) {
        ctl.reg.set_technology(id, t.name());
    }
    Ok(Reply::NoContent)
}

#[cfg(test)]
mod tests {
    use super::media_list;

    #[test]
    fn a_tone_string_keeps_its_commas_and_lists_split() {
        let given = vec![
            "tone:!950/330,!1400/330,!1800/330,0/1000".to_string(),
            "sound:a,sound:b".to_string(),
            "digits:12,tone:ring".to_string(),
        ];
        assert_eq!(
            media_list(&given),
            [
                "tone:!950/330,!1400/330,!1800/330,0/1000",
                "sound:a",
                "sound:b",
                "digits:12",
                "tone:ring"
            ]
        );
        // Not after a tone: a piece of its own (refused later as unknown).
        assert_eq!(
            media_list(&["sound:a,!950/330".to_string()]),
            ["sound:a", "!950/330"]
        );
    }
}
