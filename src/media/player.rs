//! Players: audio the core makes on its tick — a clip played to a leg
//! (`POST /channels/{id}/play`) or mixed into a bridge (`POST
//! /bridges/{id}/play`), and the generators that fill a leg's or a bridge's
//! idle time (music on hold, silence).
//!
//! The control plane prepares clips off the shard thread: sound files are
//! read and decoded there ([`Clip::Pcm`], at the file's rate); tones are
//! generated here ([`Clip::Tone`]), frame by frame, for as long as their
//! specification says (an endless tone plays until stopped). A player
//! converts its clip to the rate it plays at (a leg's sample rate, or a
//! mix's) with its own resampler, so a clip does not depend on what it is
//! played to. One clip plays at a time per leg or bridge (the control plane
//! queues the rest) and one generator runs beside it, heard only while no
//! clip plays.
//!
//! Invariants: a player makes exactly the samples asked for each tick (a
//! last partial frame is padded with silence); a paused player makes
//! nothing and keeps its place; a looping player never ends.

use std::sync::Arc;

use crate::codec::{Encoder, Resampler};
use crate::media::tones::{ToneGen, ToneSpec};
use crate::media::Format;

/// What to play.
pub enum Clip {
    /// Decoded samples at `rate` (8, 16 or 48 kHz).
    Pcm { rate: u32, samples: Arc<[i16]> },
    /// A tone, generated at the rate it plays at.
    Tone(Box<ToneSpec>),
    /// Silence, for ever (`POST /channels/{id}/silence`).
    Silence,
}

impl std::fmt::Debug for Clip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Clip::Pcm { rate, samples } => write!(f, "Pcm({} samples at {rate})", samples.len()),
            Clip::Tone(_) => f.write_str("Tone"),
            Clip::Silence => f.write_str("Silence"),
        }
    }
}

/// A change to a playing clip (`POST /playbacks/{id}/control`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayerControl {
    Pause,
    Unpause,
    /// Back to the start.
    Restart,
    /// Back by so many ms (to the start at most).
    Reverse(u32),
    /// On by so many ms (to the end at most).
    Forward(u32),
}

enum Source {
    Pcm {
        samples: Arc<[i16]>,
        /// Next sample of `samples` to play.
        pos: usize,
        /// From the clip's rate to the player's, when they differ.
        resampler: Option<Resampler>,
        /// Samples of the clip per output sample (ratio as from/to).
        from: u32,
        to: u32,
    },
    Tone {
        gen: ToneGen,
        spec: ToneSpec,
    },
    Silence,
}

/// One tick's output of a player.
pub enum Frame<'a> {
    /// Audio at the player's rate.
    Audio(&'a [i16]),
    /// Paused: nothing this tick.
    Paused,
    /// The clip has ended.
    Ended,
}

/// A clip playing to one leg or into one bridge.
pub struct Player {
    /// The control plane's number for this playback (or generator).
    pub key: u64,
    source: Source,
    looping: bool,
    paused: bool,
    /// The rate the player plays at.
    rate: u32,
    /// Encodes for a leg; `None` for a mix (which takes PCM).
    encoder: Option<Encoder>,
    pcm: Vec<i16>,
    raw: Vec<i16>,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("key", &self.key)
            .field("rate", &self.rate)
            .field("looping", &self.looping)
            .field("paused", &self.paused)
            .finish()
    }
}

impl Player {
    /// A player of `clip` to a leg of `format`; `None` if the format has no
    /// encoder in this build or the clip's rate cannot be converted.
    pub fn for_leg(key: u64, clip: Clip, format: Format, looping: bool) -> Option<Player> {
        let mut p = Player::new(key, clip, format.sample_rate(), looping)?;
        p.encoder = Some(Encoder::new(format).ok()?);
        Some(p)
    }

    /// A player of `clip` making PCM at `rate` (for a mix).
    pub fn new(key: u64, clip: Clip, rate: u32, looping: bool) -> Option<Player> {
        let source = match clip {
            Clip::Pcm {
                rate: from,
                samples,
            } => Source::Pcm {
                samples,
                pos: 0,
                resampler: if from == rate {
                    None
                } else {
                    Some(Resampler::new(from, rate).ok()?)
                },
                from,
                to: rate,
            },
            Clip::Tone(spec) => Source::Tone {
                gen: ToneGen::new((*spec).clone(), rate).ok()?,
                spec: *spec,
            },
            Clip::Silence => Source::Silence,
        };
        Some(Player {
            key,
            source,
            looping,
            paused: false,
            rate,
            encoder: None,
            pcm: Vec::new(),
            raw: Vec::new(),
        })
    }

    /// The rate the player makes audio at.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Plays at `rate` from now on (a mix whose rate changed): a clip keeps
    /// its place, a tone starts again at the new rate.
    pub fn set_rate(&mut self, rate: u32) {
        if rate == self.rate {
            return;
        }
        match &mut self.source {
            Source::Pcm {
                resampler,
                from,
                to,
                ..
            } => {
                *resampler = if *from == rate {
                    None
                } else {
                    match Resampler::new(*from, rate) {
                        Ok(r) => Some(r),
                        Err(_) => return,
                    }
                };
                *to = rate;
            }
            Source::Tone { gen, spec } => match ToneGen::new(spec.clone(), rate) {
                Ok(g) => *gen = g,
                Err(_) => return,
            },
            Source::Silence => {}
        }
        self.rate = rate;
    }

    /// Applies a control; false when it means nothing to this clip (a
    /// reverse or forward on a tone).
    pub fn control(&mut self, control: PlayerControl) -> bool {
        match (control, &mut self.source) {
            (PlayerControl::Pause, _) => self.paused = true,
            (PlayerControl::Unpause, _) => self.paused = false,
            (PlayerControl::Restart, Source::Pcm { pos, resampler, .. }) => {
                *pos = 0;
                if let Some(r) = resampler {
                    r.reset();
                }
                self.paused = false;
            }
            (PlayerControl::Restart, Source::Tone { gen, .. }) => {
                gen.restart();
                self.paused = false;
            }
            (PlayerControl::Restart, Source::Silence) => self.paused = false,
            (PlayerControl::Reverse(ms), Source::Pcm { pos, from, .. }) => {
                *pos = pos.saturating_sub(ms_to_samples(ms, *from));
            }
            (
                PlayerControl::Forward(ms),
                Source::Pcm {
                    pos, from, samples, ..
                },
            ) => {
                *pos = pos
                    .saturating_add(ms_to_samples(ms, *from))
                    .min(samples.len());
            }
            (PlayerControl::Reverse(_) | PlayerControl::Forward(_), _) => return false,
        }
        true
    }

    /// The next `samples` samples at the player's rate.
    pub fn next_pcm(&mut self, samples: usize) -> Frame<'_> {
        if self.paused {
            return Frame::Paused;
        }
        self.pcm.clear();
        self.pcm.resize(samples, 0);
        let more = match &mut self.source {
            Source::Pcm {
                samples: all,
                pos,
                resampler,
                from,
                to,
            } => {
                if *pos >= all.len() && self.looping && !all.is_empty() {
                    *pos = 0;
                }
                if *pos >= all.len() {
                    false
                } else {
                    match resampler {
                        None => {
                            let n = samples.min(all.len() - *pos);
                            self.pcm[..n].copy_from_slice(&all[*pos..*pos + n]);
                            *pos += n;
                        }
                        Some(r) => {
                            // Integer ratios (see codec::resample): whole
                            // input frames make whole output frames.
                            let want = samples * *from as usize / (*to).max(1) as usize;
                            self.raw.clear();
                            self.raw.resize(want, 0);
                            let n = want.min(all.len() - *pos);
                            self.raw[..n].copy_from_slice(&all[*pos..*pos + n]);
                            *pos += n;
                            let need = r.output_len(want).max(samples);
                            self.pcm.resize(need, 0);
                            if r.process(&self.raw, &mut self.pcm[..need]).is_err() {
                                self.pcm.fill(0);
                            }
                            self.pcm.truncate(samples);
                        }
                    }
                    true
                }
            }
            Source::Tone { gen, .. } => gen.next_frame(&mut self.pcm),
            Source::Silence => true,
        };
        if more {
            Frame::Audio(&self.pcm)
        } else {
            Frame::Ended
        }
    }

    /// The next frame of `samples` samples encoded for the leg into `out`:
    /// its length, `Some(0)` while paused, `None` once the clip has ended.
    pub fn next_frame(&mut self, samples: usize, out: &mut [u8]) -> Option<usize> {
        let mut encoder = self.encoder.take()?;
        let n = match self.next_pcm(samples) {
            Frame::Audio(pcm) => encoder.encode(pcm, out).ok(),
            Frame::Paused => Some(0),
            Frame::Ended => None,
        };
        self.encoder = Some(encoder);
        n
    }
}

fn ms_to_samples(ms: u32, rate: u32) -> usize {
    (u64::from(ms) * u64::from(rate) / 1000) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Arc<[i16]> {
        (0..n).map(|i| i as i16).collect::<Vec<_>>().into()
    }

    #[test]
    fn a_pcm_clip_plays_its_samples_then_ends() {
        let clip = Clip::Pcm {
            rate: 8000,
            samples: ramp(400),
        };
        let mut p = Player::for_leg(1, clip, Format::Slin, false).unwrap();
        let mut out = [0u8; 1024];
        assert_eq!(p.next_frame(160, &mut out), Some(320));
        assert_eq!(p.next_frame(160, &mut out), Some(320));
        // The last 80 samples, padded to a whole frame.
        assert_eq!(p.next_frame(160, &mut out), Some(320));
        assert_eq!(i16::from_be_bytes([out[0], out[1]]), 320);
        assert_eq!(i16::from_be_bytes([out[200], out[201]]), 0);
        assert_eq!(p.next_frame(160, &mut out), None);
    }

    #[test]
    fn pause_keeps_the_place_and_seeking_moves_it() {
        let clip = Clip::Pcm {
            rate: 8000,
            samples: ramp(16000),
        };
        let mut p = Player::new(1, clip, 8000, false).unwrap();
        let first = |p: &mut Player| match p.next_pcm(160) {
            Frame::Audio(a) => Some(a[0]),
            _ => None,
        };
        assert_eq!(first(&mut p), Some(0));
        assert!(p.control(PlayerControl::Pause));
        assert!(matches!(p.next_pcm(160), Frame::Paused));
        p.control(PlayerControl::Unpause);
        assert_eq!(first(&mut p), Some(160));
        p.control(PlayerControl::Forward(1000));
        assert_eq!(first(&mut p), Some(320 + 8000));
        p.control(PlayerControl::Reverse(3000));
        assert_eq!(first(&mut p), Some(0));
        p.control(PlayerControl::Forward(60_000));
        assert!(matches!(p.next_pcm(160), Frame::Ended));
        p.control(PlayerControl::Restart);
        assert_eq!(first(&mut p), Some(0));
    }

    #[test]
    fn a_looping_clip_starts_again_and_a_clip_is_resampled_to_the_player() {
        let clip = Clip::Pcm {
            rate: 8000,
            samples: ramp(200),
        };
        let mut p = Player::new(1, clip, 8000, true).unwrap();
        for _ in 0..10 {
            assert!(matches!(p.next_pcm(160), Frame::Audio(_)));
        }
        let clip = Clip::Pcm {
            rate: 8000,
            samples: vec![1000i16; 8000].into(),
        };
        let mut p = Player::new(1, clip, 16000, false).unwrap();
        let mut frames = 0;
        for _ in 0..60 {
            match p.next_pcm(320) {
                Frame::Audio(a) => {
                    assert_eq!(a.len(), 320);
                    frames += 1;
                }
                _ => break,
            }
        }
        assert_eq!(frames, 50, "one second at 8 kHz is 50 frames at 16 kHz");
    }
}
