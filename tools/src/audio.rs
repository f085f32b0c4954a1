//! The audio the tool sends and what it listens for: one second of a tone
//! encoded in a leg's format (cycled by the sender), silence, the 1 kHz
//! marker burst of the mix scenario, and the detector that finds the burst's
//! onset in a received µ-law stream (a Goertzel filter at 1 kHz over 5 ms
//! windows, stepped every 1 ms).

use crossbar::codec::Encoder;
use crossbar::media::Format;

/// Samples per 20 ms at 8 kHz.
pub const FRAME_8K: usize = 160;
/// Frequency of the talkers' tone.
pub const TALK_HZ: f64 = 400.0;
/// Frequency of the latency marker.
pub const MARKER_HZ: f64 = 1000.0;
/// Amplitude of the marker burst.
pub const MARKER_AMPLITUDE: f64 = 16_000.0;

/// `frames` consecutive 20 ms frames of a sine at `hz` and `amplitude`
/// (phase-continuous; an integer number of periods per second, so one
/// second loops without a click), encoded in `format`.
pub fn tone(
    format: Format,
    hz: f64,
    amplitude: f64,
    frames: usize,
) -> Result<Vec<Vec<u8>>, String> {
    let rate = format.sample_rate() as usize;
    let per_frame = rate / 50;
    let mut enc = Encoder::new(format).map_err(|e| format!("{format} encoder: {e}"))?;
    let mut out = Vec::with_capacity(frames);
    let mut pcm = vec![0i16; per_frame];
    let mut payload = vec![0u8; 4000];
    for f in 0..frames {
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (f * per_frame + i) as f64 / rate as f64;
            *s = (amplitude * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16;
        }
        let n = enc
            .encode(&pcm, &mut payload)
            .map_err(|e| format!("{format} encode: {e}"))?;
        out.push(payload[..n].to_vec());
    }
    Ok(out)
}

/// Finds onsets of the 1 kHz marker in a stream of 8 kHz samples.
pub struct MarkerDetector {
    history: Vec<i16>,
    since_eval: usize,
    active: bool,
}

/// Window of the Goertzel filter (5 ms: 1 kHz is bin 5, 400 Hz bin 2).
const WINDOW: usize = 40;
/// Evaluate every this many samples.
const STEP: usize = 8;

impl Default for MarkerDetector {
    fn default() -> Self {
        MarkerDetector {
            history: Vec::with_capacity(WINDOW * 4),
            since_eval: 0,
            active: false,
        }
    }
}

impl MarkerDetector {
    /// Feeds one frame; returns the onset's sample offset relative to the
    /// frame's first sample (may be negative: it began in the previous frame).
    pub fn feed(&mut self, samples: &[i16]) -> Option<i64> {
        let mut onset = None;
        for (i, &s) in samples.iter().enumerate() {
            self.history.push(s);
            if self.history.len() > WINDOW {
                self.history.remove(0);
            }
            self.since_eval += 1;
            if self.history.len() < WINDOW || self.since_eval < STEP {
                continue;
            }
            self.since_eval = 0;
            let a = goertzel_amplitude(&self.history, MARKER_HZ, 8000.0);
            if !self.active && a > MARKER_AMPLITUDE * 0.5 {
                self.active = true;
                if onset.is_none() {
                    // Half the window covers the burst when it crosses half amplitude.
                    onset = Some(i as i64 - (WINDOW as i64 / 2) + 1);
                }
            } else if self.active && a < MARKER_AMPLITUDE * 0.15 {
                self.active = false;
            }
        }
        onset
    }
}

/// Amplitude of the `hz` component of `x` (Goertzel).
fn goertzel_amplitude(x: &[i16], hz: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbar::codec::g711;

    #[test]
    fn detects_the_marker_onset_over_a_talker_tone() {
        let talk = tone(Format::Ulaw, TALK_HZ, 3000.0, 50).unwrap();
        let burst = tone(Format::Ulaw, MARKER_HZ, MARKER_AMPLITUDE, 3).unwrap();
        let mut d = MarkerDetector::default();
        let mut pcm = [0i16; FRAME_8K];
        let mut found = Vec::new();
        for f in 0..20 {
            let mut mixed = [0i16; FRAME_8K];
            g711::decode_ulaw(&talk[f % 50], &mut pcm).unwrap();
            mixed.copy_from_slice(&pcm);
            if (5..8).contains(&f) {
                g711::decode_ulaw(&burst[f - 5], &mut pcm).unwrap();
                for (m, p) in mixed.iter_mut().zip(pcm) {
                    *m = m.saturating_add(p);
                }
            }
            if let Some(o) = d.feed(&mixed) {
                found.push((f, o));
            }
        }
        assert_eq!(found.len(), 1, "{found:?}");
        let (f, o) = found[0];
        let at = f as i64 * FRAME_8K as i64 + o;
        assert!((at - 5 * FRAME_8K as i64).abs() <= 16, "{found:?}");
    }
}
