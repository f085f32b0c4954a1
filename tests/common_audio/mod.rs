//! Audio helpers shared by the data plane and end-to-end tests: tone
//! generation, Goertzel single-frequency energy, and SNR with delay search.
//!
//! Stable API (other suites use it): [`tone`], [`goertzel_energy`],
//! [`snr_db`], and G.711 μ-law for tests that speak RTP themselves
//! ([`linear_to_ulaw`], [`ulaw_to_linear`], [`ulaw_tone_packet`]).
#![allow(dead_code)]

/// Amplitude of [`tone`]: leaves room for five tones summed without
/// clipping.
pub const TONE_AMPLITUDE: f64 = 6000.0;

/// `n` samples of a sine of `freq_hz` at `rate` Hz, amplitude
/// [`TONE_AMPLITUDE`], starting at phase 0.
pub fn tone(freq_hz: f64, rate: u32, n: usize) -> Vec<i16> {
    tone_at(freq_hz, rate, 0, n)
}

/// Samples `offset..offset + n` of the same sine as [`tone`] (to produce a
/// continuous tone frame by frame).
pub fn tone_at(freq_hz: f64, rate: u32, offset: usize, n: usize) -> Vec<i16> {
    let w = 2.0 * std::f64::consts::PI * freq_hz / f64::from(rate);
    (offset..offset + n)
        .map(|i| (TONE_AMPLITUDE * (w * i as f64).sin()).round() as i16)
        .collect()
}

/// The energy of `samples` at `freq_hz` (Goertzel), normalised by the
/// length: a full-scale-`A` sine at exactly `freq_hz` gives about `A²/4`
/// whatever the length.
pub fn goertzel_energy(samples: &[i16], freq_hz: f64, rate: u32) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq_hz / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let n = samples.len() as f64;
    power / (n * n)
}

/// Signal-to-noise ratio in dB of `received` against `reference`.
///
/// The delay (received lags reference by 0 to half the received length, at
/// most 9600 samples) is found by the best normalised correlation; then
/// `received[d + i]` is fitted by least squares with `g1·reference[i] +
/// g2·reference[i − 1]` (which covers gain and a fractional delay, as
/// resamplers and codecs introduce), at `d` and its neighbours; the best
/// fit's signal over residual is the SNR. `f64::NEG_INFINITY` when the
/// inputs are too short or silent.
pub fn snr_db(reference: &[i16], received: &[i16]) -> f64 {
    let r: Vec<f64> = reference.iter().map(|&x| f64::from(x)).collect();
    let y: Vec<f64> = received.iter().map(|&x| f64::from(x)).collect();
    let window = r.len().min(y.len() / 2).min(2048);
    if window < 32 {
        return f64::NEG_INFINITY;
    }
    let max_delay = (y.len() - window).min(9600);
    let ref_win = &r[..window];
    let ref_energy: f64 = ref_win.iter().map(|x| x * x).sum();
    let mut best = (0usize, f64::MIN);
    for d in 0..=max_delay {
        let seg = &y[d..d + window];
        let dot: f64 = ref_win.iter().zip(seg).map(|(a, b)| a * b).sum();
        let e: f64 = seg.iter().map(|x| x * x).sum();
        if e <= 0.0 || ref_energy <= 0.0 {
            continue;
        }
        let score = dot / (e * ref_energy).sqrt();
        if score > best.1 {
            best = (d, score);
        }
    }
    let d0 = best.0;
    [d0.saturating_sub(1), d0, d0 + 1]
        .into_iter()
        .map(|d| fit_snr(&r, &y, d))
        .fold(f64::NEG_INFINITY, f64::max)
}

/// SNR of the two-tap least-squares fit of `y[d..]` by `r` (see [`snr_db`]).
fn fit_snr(r: &[f64], y: &[f64], d: usize) -> f64 {
    if d >= y.len() {
        return f64::NEG_INFINITY;
    }
    let n = r.len().min(y.len() - d);
    if n < 2 {
        return f64::NEG_INFINITY;
    }
    let (mut aa, mut ab, mut bb, mut ay, mut by) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for i in 1..n {
        let (a, b, t) = (r[i], r[i - 1], y[d + i]);
        aa += a * a;
        ab += a * b;
        bb += b * b;
        ay += a * t;
        by += b * t;
    }
    let det = aa * bb - ab * ab;
    let (g1, g2) = if det.abs() > 1e-9 * aa * bb {
        ((ay * bb - by * ab) / det, (aa * by - ab * ay) / det)
    } else if aa > 0.0 {
        (ay / aa, 0.0)
    } else {
        return f64::NEG_INFINITY;
    };
    let (mut signal, mut noise) = (0.0, 0.0);
    for i in 1..n {
        let fit = g1 * r[i] + g2 * r[i - 1];
        signal += fit * fit;
        noise += (y[d + i] - fit).powi(2);
    }
    if signal <= 0.0 {
        return f64::NEG_INFINITY;
    }
    10.0 * (signal / noise.max(1e-9)).log10()
}

/// A PCM 16-bit mono WAV file of `samples` at `rate`.
pub fn wav_file(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(2 * rate).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    wav
}

/// The PCMU audio `sock` receives within `within` (RTP payload type 0
/// only; bounded by the time, each read by the socket's timeout).
pub fn receive_ulaw(sock: &std::net::UdpSocket, within: std::time::Duration) -> Vec<i16> {
    let mut pcm = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if n > 12 && buf[1] & 0x7f == 0 {
                pcm.extend(buf[12..n].iter().map(|u| ulaw_to_linear(*u)));
            }
        }
    }
    pcm
}

/// G.711 μ-law encoding of one sample (ITU-T G.711).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s;
    }
    s = (s + 0x84).min(0x7fff);
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// G.711 μ-law decoding of one byte.
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// RTP packet `seq` (PCMU, SSRC `ssrc`) of a continuous `freq_hz` tone of
/// [`TONE_AMPLITUDE`]: 20 ms, phase-continuous across packets.
pub fn ulaw_tone_packet(freq_hz: f64, seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    let samples = tone_at(freq_hz, 8000, usize::from(seq) * 160, 160);
    p.extend(samples.iter().map(|&s| linear_to_ulaw(s)));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_measure_what_they_claim() {
        let t = tone(1000.0, 8000, 1600);
        let e = goertzel_energy(&t, 1000.0, 8000);
        assert!((e / (TONE_AMPLITUDE * TONE_AMPLITUDE / 4.0) - 1.0).abs() < 0.05);
        assert!(goertzel_energy(&t, 400.0, 8000) < e / 1000.0);
        let mut delayed = vec![0i16; 37];
        delayed.extend_from_slice(&t);
        assert!(snr_db(&t, &delayed) > 60.0);
    }
}
