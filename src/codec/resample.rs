//! Sample-rate conversion between the bridge rates: 8, 16 and 48 kHz.
//!
//! Owns one direction of one stream's rate conversion. Every pair of these
//! rates has an integer ratio R ∈ {2, 3, 6}, so a polyphase FIR does the job
//! exactly: upsampling by R runs R sub-filters per input sample; downsampling
//! by R evaluates the full filter once per R input samples. The low-pass is a
//! Kaiser-windowed sinc ([`TAPS_PER_PHASE`] × R taps, cut-off at 0.9 of the
//! lower Nyquist frequency, about 75 dB stop-band), built once at construction.
//!
//! Invariants:
//! - The delay line (and, downsampling, the phase) persists across calls, so
//!   consecutive frames join without clicks; [`Resampler::reset`] forgets it.
//! - [`Resampler::process`] never allocates; it needs exactly
//!   [`Resampler::output_len`] output samples and refuses a smaller buffer
//!   with [`CodecError::OutputTooSmall`] before touching any state.
//! - The same rate in and out is an exact copy.
//! - The group delay is `(TAPS_PER_PHASE × R − 1) / 2` samples at the higher rate.

use super::{ensure_room, CodecError};

/// Taps of each polyphase branch.
pub const TAPS_PER_PHASE: usize = 48;

/// Kaiser window β (≈ 75 dB stop-band attenuation).
const KAISER_BETA: f64 = 7.5;

/// Cut-off as a fraction of the lower rate's Nyquist frequency.
const CUTOFF: f64 = 0.9;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Direction {
    Same,
    Up,
    Down,
}

/// A stateful rate converter for one stream.
#[derive(Clone, Debug)]
pub struct Resampler {
    from: u32,
    to: u32,
    direction: Direction,
    ratio: usize,
    /// Up: `ratio` branches of `TAPS_PER_PHASE` coefficients, each scaled by
    /// `ratio`. Down: the full filter, `TAPS_PER_PHASE * ratio` coefficients.
    coeffs: Vec<f32>,
    /// Doubled delay line: `history[pos..pos + len]` is newest-first.
    history: Vec<f32>,
    pos: usize,
    /// Downsampling: input samples taken since the last output.
    phase: usize,
}

fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..50 {
        term *= (half / k as f64) * (half / k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// A unity-DC-gain low-pass of `len` taps with cut-off `fc` (cycles/sample).
fn design_lowpass(len: usize, fc: f64) -> Vec<f64> {
    let mid = (len as f64 - 1.0) / 2.0;
    let denom = bessel_i0(KAISER_BETA);
    let mut h: Vec<f64> = (0..len)
        .map(|i| {
            let t = i as f64 - mid;
            let sinc = if t == 0.0 {
                2.0 * fc
            } else {
                (2.0 * std::f64::consts::PI * fc * t).sin() / (std::f64::consts::PI * t)
            };
            let r = t / (mid + 0.5);
            let window = bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / denom;
            sinc * window
        })
        .collect();
    let sum: f64 = h.iter().sum();
    h.iter_mut().for_each(|c| *c /= sum);
    h
}

impl Resampler {
    /// A converter from `from` Hz to `to` Hz; both must be 8000, 16000 or 48000.
    pub fn new(from: u32, to: u32) -> Result<Resampler, CodecError> {
        const RATES: [u32; 3] = [8000, 16000, 48000];
        if !RATES.contains(&from) || !RATES.contains(&to) {
            return Err(CodecError::UnsupportedRate);
        }
        let (direction, ratio) = match from.cmp(&to) {
            std::cmp::Ordering::Equal => (Direction::Same, 1),
            std::cmp::Ordering::Less => (Direction::Up, (to / from) as usize),
            std::cmp::Ordering::Greater => (Direction::Down, (from / to) as usize),
        };
        let len = TAPS_PER_PHASE * ratio;
        let h = design_lowpass(len, CUTOFF * 0.5 / ratio as f64);
        let (coeffs, line) = match direction {
            Direction::Same => (Vec::new(), 0),
            Direction::Up => {
                let mut c = Vec::with_capacity(len);
                for phase in 0..ratio {
                    for tap in 0..TAPS_PER_PHASE {
                        c.push((h[phase + tap * ratio] * ratio as f64) as f32);
                    }
                }
                (c, TAPS_PER_PHASE)
            }
            Direction::Down => (h.iter().map(|&c| c as f32).collect(), len),
        };
        Ok(Resampler {
            from,
            to,
            direction,
            ratio,
            coeffs,
            history: vec![0.0; 2 * line],
            pos: 0,
            phase: 0,
        })
    }

    /// Input rate in Hz.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// Output rate in Hz.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Forgets the history (a new stream starts).
    pub fn reset(&mut self) {
        self.history.fill(0.0);
        self.pos = 0;
        self.phase = 0;
    }

    /// The number of samples the next `process` call writes for `input_len`
    /// input samples.
    pub fn output_len(&self, input_len: usize) -> usize {
        match self.direction {
            Direction::Same => input_len,
            Direction::Up => input_len * self.ratio,
            Direction::Down => (self.phase + input_len) / self.ratio,
        }
    }

    /// Converts `input` into `output`, returning the number of samples written
    /// (see [`Resampler::output_len`]).
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<usize, CodecError> {
        let produced = self.output_len(input.len());
        ensure_room(output.len(), produced)?;
        match self.direction {
            Direction::Same => output[..input.len()].copy_from_slice(input),
            Direction::Up => self.upsample(input, &mut output[..produced]),
            Direction::Down => self.downsample(input, &mut output[..produced]),
        }
        Ok(produced)
    }

    #[inline]
    fn push(&mut self, x: f32) {
        let len = self.history.len() / 2;
        self.pos = if self.pos == 0 { len - 1 } else { self.pos - 1 };
        self.history[self.pos] = x;
        self.history[self.pos + len] = x;
    }

    fn upsample(&mut self, input: &[i16], output: &mut [i16]) {
        let mut outs = output.chunks_exact_mut(self.ratio);
        for (&x, out) in input.iter().zip(&mut outs) {
            self.push(x as f32);
            let window = &self.history[self.pos..self.pos + TAPS_PER_PHASE];
            for (o, branch) in out.iter_mut().zip(self.coeffs.chunks_exact(TAPS_PER_PHASE)) {
                *o = to_i16(dot(branch, window));
            }
        }
    }

    fn downsample(&mut self, input: &[i16], output: &mut [i16]) {
        let len = self.coeffs.len();
        let mut outs = output.iter_mut();
        for &x in input {
            self.push(x as f32);
            self.phase += 1;
            if self.phase == self.ratio {
                self.phase = 0;
                let window = &self.history[self.pos..self.pos + len];
                if let Some(o) = outs.next() {
                    *o = to_i16(dot(&self.coeffs, window));
                }
            }
        }
    }
}

/// Dot product with 8 independent accumulators, so it vectorises.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

#[inline]
fn to_i16(v: f32) -> i16 {
    // `as` saturates (and maps NaN to 0).
    v.round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, freq: f64, amp: f64, len: usize) -> Vec<i16> {
        (0..len)
            .map(|n| {
                (amp * (2.0 * std::f64::consts::PI * freq * n as f64 / rate as f64).sin()).round()
                    as i16
            })
            .collect()
    }

    /// Runs `signal` through `r` in 20 ms frames.
    fn run_framed(r: &mut Resampler, signal: &[i16], frame: usize) -> Vec<i16> {
        let mut out = Vec::new();
        let mut buf = vec![0i16; frame * 6];
        for chunk in signal.chunks(frame) {
            let n = r.process(chunk, &mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// SNR (dB) of `got` against `want` at the best lag up to `max_lag`, with
    /// `skip` samples of start-up ignored.
    pub(crate) fn aligned_snr(
        want: &[i16],
        got: &[i16],
        max_lag: usize,
        skip: usize,
    ) -> (f64, usize) {
        let mut best = (f64::MIN, 0);
        for lag in 0..=max_lag {
            let n = want.len().min(got.len().saturating_sub(lag));
            if n <= skip {
                continue;
            }
            let (mut sig, mut err) = (0.0f64, 0.0f64);
            for i in skip..n {
                let w = want[i] as f64;
                let d = got[i + lag] as f64 - w;
                sig += w * w;
                err += d * d;
            }
            let snr = 10.0 * (sig / err.max(1e-9)).log10();
            if snr > best.0 {
                best = (snr, lag);
            }
        }
        best
    }

    /// Estimated frequency from zero crossings.
    fn frequency(signal: &[i16], rate: u32) -> f64 {
        let crossings = signal.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
        crossings as f64 * rate as f64 / signal.len() as f64
    }

    #[test]
    fn up_then_down_keeps_the_tone() {
        for (low, high) in [(8000, 16000), (8000, 48000), (16000, 48000)] {
            let input = tone(low, 1000.0, 12000.0, low as usize);
            let mut up = Resampler::new(low, high).unwrap();
            let mut down = Resampler::new(high, low).unwrap();
            let frame = low as usize / 50;
            let high_signal = run_framed(&mut up, &input, frame);
            assert_eq!(high_signal.len(), input.len() * (high / low) as usize);
            let f = frequency(&high_signal[high as usize / 10..], high);
            assert!((f - 1000.0).abs() < 15.0, "{low}->{high}: {f} Hz");
            let back = run_framed(&mut down, &high_signal, high as usize / 50);
            assert_eq!(back.len(), input.len());
            let (snr, lag) = aligned_snr(&input, &back, 200, 400);
            assert!(snr > 30.0, "{low}<->{high}: SNR {snr:.1} dB at lag {lag}");
        }
    }

    #[test]
    fn upsampled_tone_matches_the_ideal_tone() {
        let input = tone(8000, 1000.0, 10000.0, 8000);
        // The even-length filter delays by (N - 1) / 2 = 143.5 samples at 48 kHz.
        let delay = (TAPS_PER_PHASE * 6 - 1) as f64 / 2.0;
        let ideal: Vec<i16> = (0..48000)
            .map(|n| {
                let t = (n as f64 - delay) / 48000.0;
                (10000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()).round() as i16
            })
            .collect();
        let mut up = Resampler::new(8000, 48000).unwrap();
        let out = run_framed(&mut up, &input, 160);
        let (snr, lag) = aligned_snr(&ideal, &out, 10, 2000);
        assert!(snr > 30.0, "SNR {snr:.1} dB at lag {lag}");
        assert_eq!(lag, 0);
    }

    #[test]
    fn frame_boundaries_do_not_matter() {
        let input = tone(48000, 440.0, 20000.0, 4800);
        let mut whole = Resampler::new(48000, 8000).unwrap();
        let mut out_whole = vec![0i16; 800];
        assert_eq!(whole.process(&input, &mut out_whole), Ok(800));
        let mut pieces = Resampler::new(48000, 8000).unwrap();
        let mut out_pieces = Vec::new();
        let mut buf = [0i16; 64];
        for chunk in input.chunks(37) {
            let n = pieces.process(chunk, &mut buf).unwrap();
            out_pieces.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out_pieces, out_whole);
    }

    #[test]
    fn rejects_unknown_rates_and_small_buffers() {
        assert_eq!(
            Resampler::new(8000, 44100).err(),
            Some(CodecError::UnsupportedRate)
        );
        let mut r = Resampler::new(8000, 16000).unwrap();
        let mut out = [0i16; 3];
        assert_eq!(
            r.process(&[1, 2], &mut out),
            Err(CodecError::OutputTooSmall { needed: 4 })
        );
        let mut same = Resampler::new(16000, 16000).unwrap();
        let mut out = [0i16; 3];
        assert_eq!(same.process(&[1, 2, 3], &mut out), Ok(3));
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn extreme_input_saturates_without_panic() {
        let square: Vec<i16> = (0..960)
            .map(|i| if (i / 7) % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        for (a, b) in [(8000, 48000), (48000, 8000), (16000, 48000), (48000, 16000)] {
            let mut r = Resampler::new(a, b).unwrap();
            let mut out = vec![0i16; 960 * 6];
            let n = r.process(&square, &mut out).unwrap();
            assert!(n > 0);
        }
    }
}
