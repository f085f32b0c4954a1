//! Playback to channels: `POST /channels/{id}/play[/{playbackId}]`, the
//! `playbacks` resource (get, stop) and the playback events.
//!
//! A playback's media play in order (`PlaybackStarted`, a
//! `PlaybackContinuing` between two, `PlaybackFinished` at the end, state
//! `done`, or `failed` when a medium cannot be played); a channel's
//! playbacks play one after another, the later ones `queued`. What the
//! channel would otherwise hear (its bridge) is held back while a clip
//! plays, as Asterisk does.
//!
//! Media: `sound:ID` (the best file of `sounds.path` for the playback's
//! language and the channel's format, read and decoded here, on the control
//! thread, and resampled to the channel's rate; never on a shard),
//! `tone:` (an indication name of the default zone or a tone string,
//! generated on the shard; an endless tone plays until stopped) and
//! `digits:` (the digit prompts, one after another). Other schemes
//! (`characters:`, `number:`, `recording:`) are refused with 400.

use std::sync::Arc;

use super::args::Args;
use super::error::AriError;
use super::ops;
use super::spec::Reply;
use crate::clock::Timestamp;
use crate::codec::resample::Resampler;
use crate::host::{Control, Node};
use crate::media::player::Clip;
use crate::media::{tones, Format};
use crate::sounds::{index_for, load, Pcm, SoundIndex};

/// The schemes crossbar plays.
const SCHEMES: &[&str] = &["sound:", "tone:", "digits:"];

/// `POST /channels/{channelId}/play`.
pub async fn play(node: &Node, args: Args) -> Result<Reply, AriError> {
    start(node, args, None).await
}

/// `POST /channels/{channelId}/play/{playbackId}`.
pub async fn play_with_id(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("playbackId").to_string();
    start(node, args, Some(id)).await
}

async fn start(node: &Node, args: Args, given: Option<String>) -> Result<Reply, AriError> {
    let channel = args.path("channelId").to_string();
    let media: Vec<String> = args
        .list("media")
        .iter()
        .flat_map(|m| m.split(','))
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect();
    if media.is_empty() {
        return Err(AriError::bad_request("Missing parameter media"));
    }
    if let Some(m) = media
        .iter()
        .find(|m| !SCHEMES.iter().any(|s| m.starts_with(s)))
    {
        return Err(AriError::bad_request(format!(
            "Media '{m}' is not played by crossbar: it plays sound:, tone: and digits: media"
        )));
    }
    let offset_ms = args.int("offsetms").unwrap_or(0).max(0) as u64;
    let now = node.now();
    let mut ctl = node.lock().await;
    let ch = ctl.reg.in_stasis(&channel)?;
    let language = args
        .non_empty("lang")
        .map(str::to_string)
        .unwrap_or_else(|| ch.language.clone());
    let id = ctl.reg.claim_playback_id(given.as_deref())?;
    let snapshot = ctl
        .reg
        .insert_playback(id.clone(), &channel, media, language, offset_ms)
        .snapshot();
    if !ctl.reg.playing_on(&channel) {
        play_next(node, &mut ctl, now, &channel).await;
    }
    Ok(Reply::Created(snapshot))
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
/// `done`, as Asterisk reports a stopped playback).
pub async fn stop(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("playbackId");
    let now = node.now();
    let mut ctl = node.lock().await;
    let p = ctl
        .reg
        .playback(id)
        .ok_or_else(|| AriError::not_found("Playback not found"))?;
    let (channel, key, playing) = (
        p.channel.clone(),
        p.key,
        p.state == crate::control::playback::PlaybackState::Playing,
    );
    if playing {
        if let Some(leg) = ctl.reg.channel(&channel).map(|c| c.leg) {
            node.dataplane
                .stop_playing(leg, key)
                .await
                .map_err(ops::dataplane_error)?;
        }
    }
    ctl.reg.finish_playback(now, id, false);
    if playing {
        play_next(node, &mut ctl, now, &channel).await;
    }
    Ok(Reply::NoContent)
}

/// A clip ended on the data plane: the playback's next medium, or its end
/// and the channel's next playback.
pub async fn clip_done(node: &Node, ctl: &mut Control, now: Timestamp, key: u64) {
    let Some(p) = ctl.reg.playback_of_key(key) else {
        return;
    };
    let (id, channel) = (p.id.clone(), p.channel.clone());
    if ctl.reg.continue_playback(now, &id) {
        if !send_clip(node, ctl, &id).await {
            ctl.reg.finish_playback(now, &id, true);
            play_next(node, ctl, now, &channel).await;
        }
        return;
    }
    ctl.reg.finish_playback(now, &id, false);
    play_next(node, ctl, now, &channel).await;
}

/// Starts the channel's oldest queued playback (failed ones end at once,
/// and the next is tried; bounded by the queue).
async fn play_next(node: &Node, ctl: &mut Control, now: Timestamp, channel: &str) {
    while let Some(id) = ctl.reg.next_queued(channel) {
        ctl.reg.start_playback(now, &id);
        if send_clip(node, ctl, &id).await {
            return;
        }
        ctl.reg.finish_playback(now, &id, true);
    }
}

/// Prepares the playback's current medium and hands it to the data plane;
/// false when it cannot be played.
async fn send_clip(node: &Node, ctl: &mut Control, id: &str) -> bool {
    let Some(p) = ctl.reg.playback(id) else {
        return false;
    };
    let Some(ch) = ctl.reg.channel(&p.channel) else {
        return false;
    };
    let (leg, format) = (ch.leg, ch.format);
    let medium = p.media.get(p.index).cloned().unwrap_or_default();
    let offset = if p.index == 0 { p.offset_ms } else { 0 };
    let language = p.language.clone();
    let key = p.key;
    let clip = match clip_of(node, &medium, &language, format, offset) {
        Ok(clip) => clip,
        Err(why) => {
            tracing::info!(playback = %id, media = %medium, "playback failed: {why}");
            return false;
        }
    };
    match node.dataplane.play(leg, key, clip).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(playback = %id, "playback not started: {e}");
            false
        }
    }
}

/// The clip of one medium for a channel of `format`.
fn clip_of(
    node: &Node,
    medium: &str,
    language: &str,
    format: Format,
    offset_ms: u64,
) -> Result<Clip, String> {
    let rate = format.sample_rate();
    if let Some(tone) = medium.strip_prefix("tone:") {
        let spec = tones::parse_tone_uri(tone).map_err(|e| e.to_string())?;
        let gen = tones::ToneGen::new(spec, rate).map_err(|e| e.to_string())?;
        return Ok(Clip::Tone(Box::new(gen)));
    }
    let index = index_for(&node.config.sounds.paths());
    let ids: Vec<String> = if let Some(id) = medium.strip_prefix("sound:") {
        vec![id.to_string()]
    } else if let Some(digits) = medium.strip_prefix("digits:") {
        tones::parse_digits(digits)
            .into_iter()
            .map(str::to_string)
            .collect()
    } else {
        return Err(format!("unsupported media '{medium}'"));
    };
    let mut samples = Vec::new();
    for id in &ids {
        samples.extend(sound_at(&index, id, language, format, rate)?);
    }
    let skip = (offset_ms * u64::from(rate) / 1000) as usize;
    let samples: Arc<[i16]> = samples.get(skip..).unwrap_or(&[]).to_vec().into();
    Ok(Clip::Pcm(samples))
}

/// A sound's samples at `rate`.
fn sound_at(
    index: &SoundIndex,
    id: &str,
    language: &str,
    format: Format,
    rate: u32,
) -> Result<Vec<i16>, String> {
    let file = index
        .pick(id, language, format)
        .ok_or_else(|| format!("no sound '{id}' for language '{language}'"))?;
    let Pcm {
        rate: from,
        samples,
    } = load(file).map_err(|e| e.to_string())?;
    if from == rate {
        return Ok(samples);
    }
    let mut resampler = Resampler::new(from, rate).map_err(|e| e.to_string())?;
    let mut out = vec![0i16; resampler.output_len(samples.len()) + 64];
    let n = resampler
        .process(&samples, &mut out)
        .map_err(|e| e.to_string())?;
    out.truncate(n);
    Ok(out)
}
