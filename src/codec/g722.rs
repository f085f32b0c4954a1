//! G.722 at 64 kbit/s (mode 1): 16 kHz wideband audio as two ADPCM sub-bands.
//!
//! Owns the encoder and decoder state of one leg, written from the ITU-T G.722
//! algorithm: a 24-tap quadrature mirror filter (QMF) splits the 16 kHz input
//! into a 0–4 kHz and a 4–8 kHz band, each at 8 kHz; the lower band is coded
//! with a 6-bit adaptive quantizer, the higher with 2 bits, each predicted by a
//! pole-zero (2-pole, 6-zero) adaptive predictor driven by the embedded 4-bit
//! (lower) or 2-bit (higher) quantized difference. One byte carries one pair of
//! input samples: `(higher << 6) | lower`.
//!
//! Invariants:
//! - All arithmetic is the standard's 16-bit fixed point (saturating), so the
//!   bit stream interoperates with other G.722 implementations.
//! - Encoding `2n` samples writes `n` bytes; an odd sample count is
//!   [`CodecError::BadLength`] (G.722 codes sample pairs). Decoding `n` bytes
//!   writes `2n` samples. Short destinations give
//!   [`CodecError::OutputTooSmall`] before any state changes. Never panics.
//! - The codec's own delay is 22 samples (QMF analysis + synthesis).

use super::{ensure_room, CodecError};

/// QMF coefficients (half of the symmetric 24-tap filter).
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// Lower-band quantizer decision levels (index 1..=29 used), scaled by `det`.
const Q6: [i32; 30] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919,
];

/// Lower-band codes for a negative / positive difference in interval `i` (1..=30).
const ILN: [u8; 31] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4,
];
const ILP: [u8; 31] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32,
];

/// Magnitudes of the 6-bit inverse quantizer, by interval.
const QQ6: [i32; 31] = [
    0, 17, 54, 91, 130, 170, 211, 254, 300, 347, 396, 447, 501, 558, 618, 682, 750, 822, 899, 982,
    1072, 1170, 1279, 1399, 1535, 1689, 1873, 2088, 2376, 2738, 3101,
];

/// 6-bit inverse quantizer output by lower-band code (decoder, 64 kbit/s).
const QM6: [i32; 64] = build_qm6();

const fn build_qm6() -> [i32; 64] {
    let mut t = [0i32; 64];
    let mut c = 0;
    while c < 64 {
        t[c] = match c {
            0..=3 | 63 => -(QQ6[1] << 3),
            4..=31 => -(QQ6[34 - c] << 3),
            32..=61 => QQ6[62 - c] << 3,
            _ => -(QQ6[2] << 3), // 62
        };
        c += 1;
    }
    t
}

/// 4-bit inverse quantizer output (the embedded code drives the predictor).
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
/// 4-bit code → index into the lower-band scale-factor multipliers.
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
/// Lower-band log scale-factor multipliers.
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];

/// 2-bit inverse quantizer output by higher-band code.
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
/// Higher-band codes for a negative / positive difference, by interval 1..=2.
const IHN: [u8; 3] = [0, 1, 0];
const IHP: [u8; 3] = [0, 3, 2];
/// 2-bit code → index into the higher-band multipliers.
const RH2: [usize; 4] = [2, 1, 2, 1];
/// Higher-band log scale-factor multipliers.
const WH: [i32; 3] = [0, -214, 798];

/// 2^(i/32) × 2048: the anti-log table of the scale factor.
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];

#[inline]
fn sat16(v: i32) -> i32 {
    v.clamp(-32768, 32767)
}

/// The ADPCM state of one sub-band (identical in encoder and decoder).
#[derive(Clone, Debug)]
struct Band {
    /// Predicted signal value.
    s: i32,
    /// Zero-section (FIR) part of the prediction.
    sz: i32,
    /// Reconstructed signal, now and two samples back.
    r: [i32; 3],
    /// Partially reconstructed signal (`sz + d`), now and two back.
    p: [i32; 3],
    /// Pole coefficients `a[1]`, `a[2]`.
    a: [i32; 3],
    /// Quantized difference history `d[0..=6]`.
    d: [i32; 7],
    /// Zero coefficients `b[1..=6]`.
    b: [i32; 7],
    /// Log scale factor.
    nb: i32,
    /// Quantizer scale factor.
    det: i32,
}

impl Band {
    fn new(det: i32) -> Band {
        Band {
            s: 0,
            sz: 0,
            r: [0; 3],
            p: [0; 3],
            a: [0; 3],
            d: [0; 7],
            b: [0; 7],
            nb: 0,
            det,
        }
    }

    /// Scale-factor adaptation (LOGSCL/LOGSCH then SCALEL/SCALEH).
    /// `max_nb` and `shift_base` distinguish the lower (18432, 8) and higher
    /// (22528, 10) band.
    fn adapt_scale(&mut self, multiplier: i32, max_nb: i32, shift_base: i32) {
        self.nb = (((self.nb * 127) >> 7) + multiplier).clamp(0, max_nb);
        let mantissa = ILB[((self.nb >> 6) & 31) as usize];
        let shift = shift_base - (self.nb >> 11);
        let scaled = if shift < 0 {
            mantissa << -shift
        } else {
            mantissa >> shift
        };
        self.det = scaled << 2;
    }

    /// Predictor adaptation and the next prediction, from the quantized
    /// difference `d` of this sample.
    fn adapt_predictor(&mut self, d: i32) {
        self.d[0] = d;
        self.r[0] = sat16(self.s + d);
        self.p[0] = sat16(self.sz + d);

        let sign = |v: i32| v >> 15;
        let (sg0, sg1, sg2) = (sign(self.p[0]), sign(self.p[1]), sign(self.p[2]));

        // Second pole coefficient.
        let f = sat16(self.a[1] << 2);
        let wd2 = if sg0 == sg1 { -f } else { f }.min(32767);
        let mut a2 = (wd2 >> 7) + if sg0 == sg2 { 128 } else { -128 };
        a2 += (self.a[2] * 32512) >> 15;
        let a2 = a2.clamp(-12288, 12288);

        // First pole coefficient, bounded by the stability triangle.
        let a1 = sat16(if sg0 == sg1 { 192 } else { -192 } + ((self.a[1] * 32640) >> 15));
        let limit = sat16(15360 - a2);
        let a1 = a1.clamp(-limit, limit);

        // Zero coefficients (sign-sign LMS with leakage).
        let step = if d == 0 { 0 } else { 128 };
        let sgd = sign(d);
        for i in 1..7 {
            let wd = if sign(self.d[i]) == sgd { step } else { -step };
            self.b[i] = sat16(wd + ((self.b[i] * 32640) >> 15));
        }

        // Delay lines.
        self.d.copy_within(0..6, 1);
        self.r[2] = self.r[1];
        self.r[1] = self.r[0];
        self.p[2] = self.p[1];
        self.p[1] = self.p[0];
        self.a[1] = a1;
        self.a[2] = a2;

        // Prediction for the next sample: pole section + zero section.
        let sp = sat16(
            ((self.a[1] * sat16(self.r[1] + self.r[1])) >> 15)
                + ((self.a[2] * sat16(self.r[2] + self.r[2])) >> 15),
        );
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * sat16(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat16(sz);
        self.s = sat16(sp + self.sz);
    }
}

/// The encoder state of one leg.
#[derive(Clone, Debug)]
pub struct G722Encoder {
    qmf: [i32; 24],
    low: Band,
    high: Band,
}

impl Default for G722Encoder {
    fn default() -> Self {
        G722Encoder::new()
    }
}

impl G722Encoder {
    /// A fresh encoder.
    pub fn new() -> G722Encoder {
        G722Encoder {
            qmf: [0; 24],
            low: Band::new(32),
            high: Band::new(8),
        }
    }

    /// Encodes 16 kHz `pcm` (an even number of samples) into `payload`,
    /// returning `pcm.len() / 2` bytes written.
    pub fn encode(&mut self, pcm: &[i16], payload: &mut [u8]) -> Result<usize, CodecError> {
        if pcm.len() % 2 != 0 {
            return Err(CodecError::BadLength);
        }
        let bytes = pcm.len() / 2;
        ensure_room(payload.len(), bytes)?;
        for (out, pair) in payload.iter_mut().zip(pcm.chunks_exact(2)) {
            *out = self.encode_pair(pair[0], pair[1]);
        }
        Ok(bytes)
    }

    fn encode_pair(&mut self, first: i16, second: i16) -> u8 {
        // Transmit QMF: split into the two 8 kHz bands.
        self.qmf.copy_within(2.., 0);
        self.qmf[22] = first as i32;
        self.qmf[23] = second as i32;
        let (mut odd, mut even) = (0i32, 0i32);
        for (i, &c) in QMF.iter().enumerate() {
            odd += self.qmf[2 * i] * c;
            even += self.qmf[2 * i + 1] * QMF[11 - i];
        }
        let x_low = (even + odd) >> 14;
        let x_high = (even - odd) >> 14;

        // Lower band: 6-bit quantization of the prediction error.
        let e = sat16(x_low - self.low.s);
        let magnitude = if e >= 0 { e } else { -(e + 1) };
        let mut i = 1;
        while i < 30 && magnitude >= (Q6[i] * self.low.det) >> 12 {
            i += 1;
        }
        let code_low = if e < 0 { ILN[i] } else { ILP[i] };
        let embedded = (code_low >> 2) as usize;
        let d_low = (self.low.det * QM4[embedded]) >> 15;
        self.low.adapt_scale(WL[RL42[embedded]], 18432, 8);
        self.low.adapt_predictor(d_low);

        // Higher band: 2-bit quantization.
        let e = sat16(x_high - self.high.s);
        let magnitude = if e >= 0 { e } else { -(e + 1) };
        let interval = if magnitude >= (564 * self.high.det) >> 12 {
            2
        } else {
            1
        };
        let code_high = if e < 0 { IHN[interval] } else { IHP[interval] };
        let d_high = (self.high.det * QM2[code_high as usize]) >> 15;
        self.high
            .adapt_scale(WH[RH2[code_high as usize]], 22528, 10);
        self.high.adapt_predictor(d_high);

        (code_high << 6) | code_low
    }
}

/// The decoder state of one leg.
#[derive(Clone, Debug)]
pub struct G722Decoder {
    qmf: [i32; 24],
    low: Band,
    high: Band,
}

impl Default for G722Decoder {
    fn default() -> Self {
        G722Decoder::new()
    }
}

impl G722Decoder {
    /// A fresh decoder.
    pub fn new() -> G722Decoder {
        G722Decoder {
            qmf: [0; 24],
            low: Band::new(32),
            high: Band::new(8),
        }
    }

    /// Decodes `payload` into 16 kHz `pcm`, returning `2 * payload.len()`
    /// samples written.
    pub fn decode(&mut self, payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
        let samples = payload.len() * 2;
        ensure_room(pcm.len(), samples)?;
        for (&code, pair) in payload.iter().zip(pcm.chunks_exact_mut(2)) {
            let (a, b) = self.decode_byte(code);
            pair[0] = a;
            pair[1] = b;
        }
        Ok(samples)
    }

    fn decode_byte(&mut self, code: u8) -> (i16, i16) {
        let code_low = (code & 0x3F) as usize;
        let code_high = (code >> 6) as usize;

        // Lower band: the full 6 bits reconstruct the output, the embedded
        // 4 bits drive the predictor (as in the encoder).
        let r_low = (self.low.s + ((self.low.det * QM6[code_low]) >> 15)).clamp(-16384, 16383);
        let embedded = code_low >> 2;
        let d_low = (self.low.det * QM4[embedded]) >> 15;
        self.low.adapt_scale(WL[RL42[embedded]], 18432, 8);
        self.low.adapt_predictor(d_low);

        let d_high = (self.high.det * QM2[code_high]) >> 15;
        let r_high = (d_high + self.high.s).clamp(-16384, 16383);
        self.high.adapt_scale(WH[RH2[code_high]], 22528, 10);
        self.high.adapt_predictor(d_high);

        // Receive QMF: recombine the bands into two 16 kHz samples.
        self.qmf.copy_within(2.., 0);
        self.qmf[22] = r_low + r_high;
        self.qmf[23] = r_low - r_high;
        let (mut first, mut second) = (0i32, 0i32);
        for (i, &c) in QMF.iter().enumerate() {
            second += self.qmf[2 * i] * c;
            first += self.qmf[2 * i + 1] * QMF[11 - i];
        }
        (sat16(first >> 11) as i16, sat16(second >> 11) as i16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, amp: f64, len: usize) -> Vec<i16> {
        (0..len)
            .map(|n| {
                (amp * (2.0 * std::f64::consts::PI * freq * n as f64 / 16000.0).sin()).round()
                    as i16
            })
            .collect()
    }

    fn round_trip(input: &[i16]) -> Vec<i16> {
        let mut enc = G722Encoder::new();
        let mut dec = G722Decoder::new();
        let mut out = Vec::new();
        let (mut bytes, mut pcm) = ([0u8; 160], [0i16; 320]);
        for frame in input.chunks(320) {
            let n = enc.encode(frame, &mut bytes).unwrap();
            let m = dec.decode(&bytes[..n], &mut pcm).unwrap();
            out.extend_from_slice(&pcm[..m]);
        }
        out
    }

    fn snr_at_best_lag(want: &[i16], got: &[i16]) -> (f64, usize) {
        (0..64)
            .map(|lag| {
                let (mut sig, mut err) = (0.0f64, 0.0f64);
                for i in 1600..want.len() - 64 {
                    let w = want[i] as f64;
                    let d = got[i + lag] as f64 - w;
                    sig += w * w;
                    err += d * d;
                }
                (10.0 * (sig / err.max(1e-9)).log10(), lag)
            })
            .fold((f64::MIN, 0), |a, b| if b.0 > a.0 { b } else { a })
    }

    #[test]
    fn tone_survives_encode_decode() {
        for (freq, amp) in [
            (1000.0, 8000.0),
            (1000.0, 16000.0),
            (300.0, 4000.0),
            (5000.0, 6000.0),
        ] {
            let input = tone(freq, amp, 16000);
            let output = round_trip(&input);
            let (snr, lag) = snr_at_best_lag(&input, &output);
            assert!(
                snr > 20.0,
                "{freq} Hz at {amp}: SNR {snr:.1} dB (lag {lag})"
            );
            if freq == 300.0 {
                // Unambiguous for a long period: the codec's delay.
                assert_eq!(lag, 22, "codec delay");
            }
        }
    }

    #[test]
    fn silence_stays_silent() {
        let output = round_trip(&[0i16; 16000]);
        let peak = output.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak <= 16, "peak {peak}");
        let after_tone: Vec<i16> = tone(1000.0, 12000.0, 8000)
            .into_iter()
            .chain([0; 16000])
            .collect();
        let output = round_trip(&after_tone);
        let tail_peak = output[16000..]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!(tail_peak <= 16, "tail peak {tail_peak}");
    }

    #[test]
    fn any_bytes_decode_without_panic_and_extremes_encode() {
        let mut dec = G722Decoder::new();
        let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let mut pcm = vec![0i16; 8192];
        assert_eq!(dec.decode(&bytes, &mut pcm), Ok(8192));
        let mut enc = G722Encoder::new();
        let square: Vec<i16> = (0..4096)
            .map(|i| if i % 4 < 2 { i16::MAX } else { i16::MIN })
            .collect();
        let mut out = vec![0u8; 2048];
        assert_eq!(enc.encode(&square, &mut out), Ok(2048));
    }

    #[test]
    fn lengths() {
        let mut enc = G722Encoder::new();
        assert_eq!(
            enc.encode(&[0; 3], &mut [0u8; 4]),
            Err(CodecError::BadLength)
        );
        assert_eq!(
            enc.encode(&[0; 320], &mut [0u8; 100]),
            Err(CodecError::OutputTooSmall { needed: 160 })
        );
        let mut dec = G722Decoder::new();
        assert_eq!(
            dec.decode(&[0; 160], &mut [0i16; 319]),
            Err(CodecError::OutputTooSmall { needed: 320 })
        );
    }
}
