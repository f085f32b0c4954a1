//! Talk detection on what a leg receives (`TALK_DETECT(set)`), as
//! Asterisk's `func_talkdetect.c` over `ast_dsp_silence` does it.
//!
//! Each received audio frame is decoded and its average magnitude (mean of
//! |sample|) compared with the talking threshold: at or above it the frame
//! is talk, below it silence, whose length accumulates. Talking starts on
//! the first talk frame; it finishes once the accumulated silence reaches
//! the silence threshold, and its duration is the time since it started
//! less that silence threshold. Only frames that arrive count: a leg that
//! receives nothing neither starts nor finishes talking.

use std::time::{Duration, Instant};

use crate::codec::Decoder;
use crate::media::Format;

/// Asterisk's default silence before talking finishes (ms).
pub const DEFAULT_SILENCE_MS: u32 = 2500;
/// Asterisk's default talking threshold (`dsp.conf` `silencethreshold`).
pub const DEFAULT_TALKING_THRESHOLD: u32 = 256;

/// What changed with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Talk {
    Started,
    Finished { duration_ms: u32 },
}

/// The detector of one leg.
pub struct TalkDetect {
    silence: Duration,
    threshold: u32,
    decoder: Option<Decoder>,
    pcm: Vec<i16>,
    talking_since: Option<Instant>,
    /// Silence accumulated since the last talk frame.
    quiet: Duration,
}

impl std::fmt::Debug for TalkDetect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TalkDetect")
            .field("silence", &self.silence)
            .field("threshold", &self.threshold)
            .field("talking", &self.talking_since.is_some())
            .finish()
    }
}

impl TalkDetect {
    /// A detector for a leg of `format` (silence in ms, threshold as the
    /// average magnitude per sample).
    pub fn new(format: Format, silence_ms: u32, threshold: u32) -> TalkDetect {
        TalkDetect {
            silence: Duration::from_millis(u64::from(silence_ms.max(1))),
            threshold: threshold.max(1),
            decoder: Decoder::new(format).ok(),
            pcm: vec![0; 48 * 120],
            talking_since: None,
            quiet: Duration::ZERO,
        }
    }

    /// Whether the leg is talking now.
    pub fn talking(&self) -> bool {
        self.talking_since.is_some()
    }

    /// A received audio payload at `now` (samples at `rate` Hz once
    /// decoded); what changed, if anything.
    pub fn on_audio(&mut self, now: Instant, payload: &[u8], rate: u32) -> Option<Talk> {
        let decoder = self.decoder.as_mut()?;
        let n = decoder.decode(payload, &mut self.pcm).ok()?;
        if n == 0 || rate == 0 {
            return None;
        }
        self.on_pcm(now, n, rate)
    }

    /// The frame just decoded into `self.pcm[..n]`.
    fn on_pcm(&mut self, now: Instant, n: usize, rate: u32) -> Option<Talk> {
        let sum: u64 = self.pcm[..n]
            .iter()
            .map(|s| u64::from(s.unsigned_abs()))
            .sum();
        let magnitude = (sum / n as u64) as u32;
        if magnitude >= self.threshold {
            self.quiet = Duration::ZERO;
            if self.talking_since.is_none() {
                self.talking_since = Some(now);
                return Some(Talk::Started);
            }
            return None;
        }
        self.quiet += Duration::from_micros(n as u64 * 1_000_000 / u64::from(rate));
        match self.talking_since {
            Some(since) if self.quiet >= self.silence => {
                self.talking_since = None;
                let talked = now
                    .saturating_duration_since(since)
                    .saturating_sub(self.silence);
                Some(Talk::Finished {
                    duration_ms: talked.as_millis().min(u128::from(u32::MAX)) as u32,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::g711;

    fn frame(amplitude: f64) -> Vec<u8> {
        (0..160)
            .map(|i| {
                let s = amplitude * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin();
                g711::linear_to_ulaw(s as i16)
            })
            .collect()
    }

    #[test]
    fn talk_starts_on_loud_frames_and_finishes_after_the_silence() {
        let mut t = TalkDetect::new(Format::Ulaw, 500, DEFAULT_TALKING_THRESHOLD);
        let t0 = Instant::now();
        let at = |k: u64| t0 + Duration::from_millis(20 * k);
        let mut events = Vec::new();
        // 1 s of silence, 1 s of talk, 1 s of silence.
        for k in 0..150 {
            let loud = (50..100).contains(&k);
            let payload = frame(if loud { 8000.0 } else { 20.0 });
            if let Some(e) = t.on_audio(at(k), &payload, 8000) {
                events.push((k, e));
            }
        }
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0], (50, Talk::Started));
        // Silence from frame 100; 500 ms of it is 25 frames: finished at 124,
        // having talked (124 - 50) * 20 ms - 500 ms = 980 ms.
        assert_eq!(events[1], (124, Talk::Finished { duration_ms: 980 }));
        assert!(!t.talking());
    }

    #[test]
    fn short_pauses_do_not_end_talking() {
        let mut t = TalkDetect::new(Format::Ulaw, 300, DEFAULT_TALKING_THRESHOLD);
        let t0 = Instant::now();
        let mut changes = 0;
        for k in 0..100u64 {
            // 200 ms of talk, 100 ms of quiet, repeated.
            let loud = k % 15 < 10;
            let payload = frame(if loud { 8000.0 } else { 0.0 });
            if t.on_audio(t0 + Duration::from_millis(20 * k), &payload, 8000)
                .is_some()
            {
                changes += 1;
            }
        }
        assert_eq!(changes, 1, "one start, no finish");
        assert!(t.talking());
    }
}
