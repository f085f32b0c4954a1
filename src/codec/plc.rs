//! Packet-loss concealment for codecs without their own: pitch-synchronous
//! waveform repetition, after the method of ITU-T G.711 Appendix I
//! (simplified).
//!
//! [`Concealer`] keeps the last [`HISTORY_MS`] of decoded audio. For a lost
//! frame it estimates the pitch period of the most recent audio (the lag,
//! 2.5–15 ms, with the highest normalised autocorrelation) and repeats the
//! last period cyclically, continuing the phase across consecutive lost
//! frames. The first [`FULL_MS`] of a loss play at full level, then the level
//! falls linearly to silence at [`FADE_END_MS`], so a long loss becomes
//! silence rather than a buzz. The first good frame after a loss is
//! cross-faded from the concealed continuation over [`OVERLAP_MS`].
//!
//! Invariants: all memory is allocated in `new`; `record`, `conceal` and
//! `silence` never allocate and cost O(history) (`conceal` O(history ×
//! lags) once per loss, to find the pitch).

/// Audio history kept, in ms.
pub const HISTORY_MS: usize = 40;
/// A loss plays at full level for this long.
pub const FULL_MS: usize = 10;
/// A loss is silent from this long on.
pub const FADE_END_MS: usize = 60;
/// The cross-fade into the first good frame after a loss.
pub const OVERLAP_MS: usize = 2;

/// Waveform-repetition concealment for one stream at one sample rate.
pub struct Concealer {
    /// Samples per ms.
    per_ms: usize,
    /// The last decoded samples, oldest first (a sliding window).
    history: Box<[i16]>,
    /// The pitch period of the current loss, in samples (0: no loss).
    pitch: usize,
    /// Where in the repeated period the next concealed sample comes from.
    phase: usize,
    /// Samples concealed in the current loss.
    concealed: usize,
    /// The continuation the next good frame cross-fades from.
    tail: Box<[i16]>,
}

impl Concealer {
    /// A concealer for audio at `rate` Hz (8000, 16000 or 48000).
    pub fn new(rate: u32) -> Concealer {
        let per_ms = (rate as usize / 1000).max(1);
        Concealer {
            per_ms,
            history: vec![0; HISTORY_MS * per_ms].into_boxed_slice(),
            pitch: 0,
            phase: 0,
            concealed: 0,
            tail: vec![0; OVERLAP_MS * per_ms].into_boxed_slice(),
        }
    }

    /// A good frame was decoded into `pcm`: remembered, and, right after a
    /// loss, cross-faded in place from the concealed continuation.
    pub fn record(&mut self, pcm: &mut [i16]) {
        if self.pitch != 0 {
            let n = self.tail.len().min(pcm.len());
            for (i, (s, &t)) in pcm.iter_mut().zip(self.tail.iter()).take(n).enumerate() {
                let w = (i + 1) as i32;
                let blended =
                    (i32::from(*s) * w + i32::from(t) * (n as i32 + 1 - w)) / (n as i32 + 1);
                *s = blended as i16;
            }
            self.pitch = 0;
            self.concealed = 0;
        }
        self.push(pcm);
    }

    /// A frame of `samples` of silence was received (not decoded).
    pub fn silence(&mut self, samples: usize) {
        self.pitch = 0;
        self.concealed = 0;
        let h = self.history.len();
        let n = samples.min(h);
        self.history.copy_within(n.., 0);
        self.history[h - n..].fill(0);
    }

    /// Fills `out` with the stand-in for a lost frame.
    pub fn conceal(&mut self, out: &mut [i16]) {
        if self.pitch == 0 {
            self.pitch = self.find_pitch();
            self.phase = 0;
        }
        let h = self.history.len();
        let start = h - self.pitch;
        let (full, end) = (FULL_MS * self.per_ms, FADE_END_MS * self.per_ms);
        for s in out.iter_mut() {
            let k = self.concealed;
            let gain = if k < full {
                1.0
            } else if k < end {
                1.0 - (k - full) as f32 / (end - full) as f32
            } else {
                0.0
            };
            *s = (f32::from(self.history[start + self.phase]) * gain) as i16;
            self.phase = (self.phase + 1) % self.pitch;
            self.concealed = self.concealed.saturating_add(1);
        }
        // The continuation a good frame will fade in from.
        let mut phase = self.phase;
        let fading = self.concealed >= full;
        for t in self.tail.iter_mut() {
            let v = self.history[start + phase];
            *t = if fading && self.concealed >= end {
                0
            } else {
                v
            };
            phase = (phase + 1) % self.pitch;
        }
    }

    fn push(&mut self, pcm: &[i16]) {
        let h = self.history.len();
        if pcm.len() >= h {
            self.history.copy_from_slice(&pcm[pcm.len() - h..]);
        } else {
            self.history.copy_within(pcm.len().., 0);
            self.history[h - pcm.len()..].copy_from_slice(pcm);
        }
    }

    /// The lag in 2.5–15 ms with the highest normalised autocorrelation
    /// over the newest 20 ms of history.
    fn find_pitch(&self) -> usize {
        let h = self.history.len();
        let (min_lag, max_lag) = (self.per_ms * 5 / 2, self.per_ms * 15);
        let window = (self.per_ms * 20).min(h - max_lag);
        let recent = &self.history[h - window..];
        let mut best = (max_lag, f64::MIN);
        for lag in min_lag..=max_lag {
            let past = &self.history[h - window - lag..h - lag];
            let (mut xy, mut yy) = (0f64, 0f64);
            for (&x, &y) in recent.iter().zip(past) {
                xy += f64::from(x) * f64::from(y);
                yy += f64::from(y) * f64::from(y);
            }
            let score = if yy > 0.0 { xy / yy.sqrt() } else { 0.0 };
            if score > best.1 {
                best = (lag, score);
            }
        }
        best.0.clamp(1, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, from: usize, n: usize) -> Vec<i16> {
        (from..from + n)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    fn snr(reference: &[i16], got: &[i16]) -> f64 {
        let (mut sig, mut err) = (0f64, 0f64);
        for (&r, &g) in reference.iter().zip(got) {
            sig += f64::from(r) * f64::from(r);
            err += (f64::from(r) - f64::from(g)).powi(2);
        }
        10.0 * (sig / err.max(1.0)).log10()
    }

    #[test]
    fn a_lost_frame_of_a_steady_tone_is_continued() {
        for rate in [8000u32, 16000] {
            let frame = rate as usize / 50;
            let mut plc = Concealer::new(rate);
            for f in 0..5 {
                let mut pcm = tone(250.0, rate, f * frame, frame);
                plc.record(&mut pcm);
            }
            let mut out = vec![0i16; frame];
            plc.conceal(&mut out);
            let reference = tone(250.0, rate, 5 * frame, frame);
            let with = snr(&reference[..frame / 2], &out[..frame / 2]);
            let without = snr(&reference, &vec![0; frame]);
            assert!(with > 15.0, "{rate}: {with:.1} dB");
            assert!(without < 0.1, "{without}");
        }
    }

    #[test]
    fn g722_decoder_conceals_and_recovers() {
        use crate::codec::{Decoder, Encoder};
        use crate::media::Format;
        let (rate, frame) = (16000, 320);
        let mut enc = Encoder::new(Format::G722).unwrap();
        let mut dec = Decoder::new(Format::G722).unwrap();
        let mut payload = [0u8; 160];
        let mut pcm = vec![0i16; frame];
        let mut played = Vec::new();
        for f in 0..12 {
            let n = enc
                .encode(&tone(400.0, rate, f * frame, frame), &mut payload)
                .unwrap();
            if f == 6 {
                dec.conceal(&mut pcm).unwrap(); // frame 6 was lost
            } else {
                dec.decode(&payload[..n], &mut pcm).unwrap();
            }
            played.extend_from_slice(&pcm);
        }
        // The concealed frame and the ones after it still carry the tone
        // (G.722 delays its output by a few samples: compare energy).
        let energy =
            |x: &[i16]| x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64;
        let reference = energy(&played[4 * frame..5 * frame]);
        for f in 6..9 {
            let e = energy(&played[f * frame..(f + 1) * frame]);
            assert!(
                e > reference / 4.0 && e < reference * 4.0,
                "frame {f}: {e} vs {reference}"
            );
        }
    }

    #[test]
    fn a_long_loss_fades_to_silence_and_recovery_is_smooth() {
        let rate = 8000;
        let mut plc = Concealer::new(rate);
        for f in 0..3 {
            plc.record(&mut tone(300.0, rate, f * 160, 160));
        }
        let mut out = vec![0i16; 160];
        plc.conceal(&mut out);
        assert!(out.iter().any(|&s| s.abs() > 4000), "first 20 ms audible");
        for _ in 0..3 {
            plc.conceal(&mut out);
        }
        assert!(out.iter().all(|&s| s == 0), "silent after 60 ms");
        // A good frame after the loss starts from the (silent) continuation.
        let mut good = tone(300.0, rate, 7 * 160, 160);
        let first = good[0];
        plc.record(&mut good);
        assert!(good[0].abs() <= first.abs());
        // Silence received resets: nothing old repeats.
        plc.silence(rate as usize / 1000 * HISTORY_MS);
        plc.conceal(&mut out);
        assert!(out.iter().all(|&s| s == 0));
    }
}
