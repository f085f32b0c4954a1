//! Playback to a leg: a clip of audio the core sends to the leg on its tick
//! (`POST /channels/{id}/play`), instead of what the leg's bridge would send
//! it, until the clip ends or is stopped.
//!
//! The control plane prepares clips off the shard thread: sound files are
//! read and decoded there and resampled to the leg's rate ([`Clip::Pcm`]);
//! tones are generated here ([`Clip::Tone`]), frame by frame, for as long
//! as their specification says (an endless tone plays until stopped). One
//! clip plays at a time per leg; the control plane queues the rest.

use std::sync::Arc;

use crate::codec::Encoder;
use crate::media::tones::ToneGen;
use crate::media::Format;

/// What to play, at the leg's sample rate.
pub enum Clip {
    /// Decoded, resampled samples.
    Pcm(Arc<[i16]>),
    /// A tone generator.
    Tone(Box<ToneGen>),
}

impl std::fmt::Debug for Clip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Clip::Pcm(s) => write!(f, "Pcm({} samples)", s.len()),
            Clip::Tone(_) => f.write_str("Tone"),
        }
    }
}

/// A clip playing on one leg.
pub struct Player {
    /// The control plane's number for this playback.
    pub key: u64,
    clip: Clip,
    pos: usize,
    encoder: Encoder,
    pcm: Vec<i16>,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("key", &self.key)
            .field("clip", &self.clip)
            .field("pos", &self.pos)
            .finish()
    }
}

impl Player {
    /// A player of `clip` to a leg of `format`; `None` if the format has no
    /// encoder in this build.
    pub fn new(key: u64, clip: Clip, format: Format) -> Option<Player> {
        Some(Player {
            key,
            clip,
            pos: 0,
            encoder: Encoder::new(format).ok()?,
            pcm: Vec::new(),
        })
    }

    /// The next frame of `samples` samples encoded into `out`: its length,
    /// or `None` once the clip has ended (a last partial frame is padded
    /// with silence).
    pub fn next_frame(&mut self, samples: usize, out: &mut [u8]) -> Option<usize> {
        self.pcm.clear();
        self.pcm.resize(samples, 0);
        let more = match &mut self.clip {
            Clip::Pcm(all) => {
                if self.pos >= all.len() {
                    false
                } else {
                    let n = samples.min(all.len() - self.pos);
                    self.pcm[..n].copy_from_slice(&all[self.pos..self.pos + n]);
                    self.pos += n;
                    true
                }
            }
            Clip::Tone(gen) => gen.next_frame(&mut self.pcm),
        };
        if !more {
            return None;
        }
        self.encoder.encode(&self.pcm, out).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pcm_clip_plays_its_samples_then_ends() {
        let samples: Arc<[i16]> = (0..400).map(|i| i as i16).collect::<Vec<_>>().into();
        let mut p = Player::new(1, Clip::Pcm(samples), Format::Slin).unwrap();
        let mut out = [0u8; 1024];
        assert_eq!(p.next_frame(160, &mut out), Some(320));
        assert_eq!(p.next_frame(160, &mut out), Some(320));
        // The last 80 samples, padded to a whole frame.
        assert_eq!(p.next_frame(160, &mut out), Some(320));
        assert_eq!(i16::from_be_bytes([out[0], out[1]]), 320);
        assert_eq!(i16::from_be_bytes([out[200], out[201]]), 0);
        assert_eq!(p.next_frame(160, &mut out), None);
    }
}
