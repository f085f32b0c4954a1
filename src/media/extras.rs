//! [`Extras`]: what the core adds to a leg or a bridge besides its media
//! path — a clip playing (a playback), a generator heard while no clip
//! plays (music on hold, silence), and taps (recordings) — and the one place
//! a [`MediaOp`] changes them, for legs and bridges alike.
//!
//! A leg's extras make what the leg hears (its bridge's audio is held back
//! meanwhile, see `path`) and its taps get what it receives; a bridge's are
//! mixed into its mix and its taps get the mix (see `bridge`, `mixing`).

use super::player::{Clip, Player};
use super::tap::{Tap, TapAudio};
use super::{CoreError, MediaOp};

/// A clip, a generator and taps of one leg or bridge.
#[derive(Debug, Default)]
pub(super) struct Extras {
    /// A clip playing.
    pub player: Option<Box<Player>>,
    /// Music on hold or silence, heard while no clip plays.
    pub generator: Option<Box<Player>>,
    /// Recordings.
    pub taps: Vec<Tap>,
}

impl Extras {
    /// True when there is anything at all.
    pub(super) fn any(&self) -> bool {
        self.playing() || !self.taps.is_empty()
    }

    /// True while a clip or a generator plays.
    pub(super) fn playing(&self) -> bool {
        self.player.is_some() || self.generator.is_some()
    }

    /// Applies `op`; `make(key, clip, looping)` builds a player for this
    /// leg or bridge (`None`: it cannot play there). Answers whether the
    /// operation found something to act on.
    pub(super) fn apply(
        &mut self,
        op: MediaOp,
        make: impl Fn(u64, Clip, bool) -> Option<Player>,
    ) -> Result<bool, CoreError> {
        Ok(match op {
            MediaOp::Play { key, clip } => {
                let player = make(key, clip, false).ok_or(CoreError::Unplayable)?;
                self.player = Some(Box::new(player));
                true
            }
            MediaOp::StopPlaying { key } => {
                let found = self.player.as_ref().is_some_and(|p| p.key == key);
                if found {
                    self.player = None;
                }
                found
            }
            MediaOp::Control { key, control } => match self.player.as_mut() {
                Some(p) if p.key == key => p.control(control),
                _ => false,
            },
            MediaOp::Generate(clip) => {
                self.generator = match clip {
                    Some(clip) => Some(Box::new(make(0, clip, true).ok_or(CoreError::Unplayable)?)),
                    None => None,
                };
                true
            }
            MediaOp::StartTap(tap) => {
                self.taps.push(tap);
                true
            }
            MediaOp::StopTap { key } => {
                let before = self.taps.len();
                self.taps.retain(|t| t.key() != key);
                before != self.taps.len()
            }
        })
    }

    /// Hands each tap a frame made by `audio` (one per tap) and forgets the
    /// taps whose consumer has gone.
    pub(super) fn feed_taps(&mut self, audio: impl Fn() -> TapAudio) {
        if self.taps.is_empty() {
            return;
        }
        for tap in &mut self.taps {
            tap.push(audio());
        }
        self.taps.retain(|t| !t.is_closed());
    }
}
