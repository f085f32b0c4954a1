//! G.711 µ-law (PCMU) and A-law (PCMA), 8 kHz, one byte per sample.
//!
//! Owns the mapping between 8-bit companded codes and 16-bit linear samples as
//! ITU-T G.711 defines it (the 14-bit µ-law / 13-bit A-law linear range, scaled
//! to 16 bits). Decoding is a 256-entry table built at compile time; encoding
//! computes the segment from the position of the highest set bit.
//!
//! Invariants: `decode(encode(decode(c))) == decode(c)` for every code `c`;
//! encoding is monotonic; the functions are stateless and never panic.
//! Lengths: decoding `n` bytes writes `n` samples, encoding `n` samples writes
//! `n` bytes; a destination shorter than that gives
//! [`CodecError::OutputTooSmall`] and writes nothing.

use super::{ensure_room, CodecError};

/// µ-law bias (33 in the 14-bit domain).
const ULAW_BIAS: i32 = 0x21;
/// Largest 14-bit magnitude µ-law represents before the bias is added.
const ULAW_CLIP: i32 = 8159;

const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let mantissa = (u & 0x0F) as i32;
    let segment = ((u & 0x70) >> 4) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << segment) - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mantissa = ((a & 0x0F) as i32) << 4;
    let segment = ((a & 0x70) >> 4) as i32;
    let magnitude = match segment {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        s => (mantissa + 0x108) << (s - 1),
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw {
            alaw_to_linear(i as u8)
        } else {
            ulaw_to_linear(i as u8)
        };
        i += 1;
    }
    table
}

/// µ-law code → linear sample.
pub static ULAW_DECODE: [i16; 256] = build_table(false);
/// A-law code → linear sample.
pub static ALAW_DECODE: [i16; 256] = build_table(true);

/// Number of significant bits of `v` (0 for 0).
#[inline]
fn bit_len(v: i32) -> u32 {
    32 - (v as u32).leading_zeros()
}

/// Encodes one linear sample to µ-law.
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    // 14-bit magnitude; negative values use the one's complement, as the
    // ITU-T G.191 reference does, so -1..=-4 map to the negative zero code.
    let x = sample as i32;
    let (mask, magnitude): (i32, i32) = if x < 0 {
        (0x7F, !x >> 2)
    } else {
        (0xFF, x >> 2)
    };
    let biased = magnitude.min(ULAW_CLIP) + ULAW_BIAS; // 33..=8192
    let segment = bit_len(biased).saturating_sub(6);
    if segment >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let code = (segment << 4) as i32 | ((biased >> (segment + 1)) & 0x0F);
    (code ^ mask) as u8
}

/// Encodes one linear sample to A-law.
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    let v = (sample as i32) >> 3; // 13-bit
    let (mask, magnitude) = if v >= 0 { (0xD5, v) } else { (0x55, -v - 1) };
    let segment = bit_len(magnitude).saturating_sub(5);
    if segment >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mantissa = if segment < 2 {
        (magnitude >> 1) & 0x0F
    } else {
        (magnitude >> segment) & 0x0F
    };
    (((segment << 4) as i32 | mantissa) ^ mask) as u8
}

/// Decodes µ-law `payload` into `pcm`; returns `payload.len()`.
pub fn decode_ulaw(payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
    decode_with(&ULAW_DECODE, payload, pcm)
}

/// Decodes A-law `payload` into `pcm`; returns `payload.len()`.
pub fn decode_alaw(payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
    decode_with(&ALAW_DECODE, payload, pcm)
}

fn decode_with(table: &[i16; 256], payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
    ensure_room(pcm.len(), payload.len())?;
    for (out, &code) in pcm.iter_mut().zip(payload) {
        *out = table[code as usize];
    }
    Ok(payload.len())
}

/// Encodes `pcm` as µ-law into `payload`; returns `pcm.len()`.
pub fn encode_ulaw(pcm: &[i16], payload: &mut [u8]) -> Result<usize, CodecError> {
    ensure_room(payload.len(), pcm.len())?;
    for (out, &s) in payload.iter_mut().zip(pcm) {
        *out = linear_to_ulaw(s);
    }
    Ok(pcm.len())
}

/// Encodes `pcm` as A-law into `payload`; returns `pcm.len()`.
pub fn encode_alaw(pcm: &[i16], payload: &mut [u8]) -> Result<usize, CodecError> {
    ensure_room(payload.len(), pcm.len())?;
    for (out, &s) in payload.iter_mut().zip(pcm) {
        *out = linear_to_alaw(s);
    }
    Ok(pcm.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_reference_values() {
        assert_eq!(ULAW_DECODE[0xFF], 0);
        assert_eq!(ULAW_DECODE[0x7F], 0);
        assert_eq!(ULAW_DECODE[0x00], -32124);
        assert_eq!(ULAW_DECODE[0x80], 32124);
        assert_eq!(ULAW_DECODE[0xFE], 8);
        assert_eq!(ULAW_DECODE[0x7E], -8);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
    }

    #[test]
    fn alaw_reference_values() {
        assert_eq!(ALAW_DECODE[0xD5], 8);
        assert_eq!(ALAW_DECODE[0x55], -8);
        assert_eq!(ALAW_DECODE[0xAA], 32256);
        assert_eq!(ALAW_DECODE[0x2A], -32256);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            let u = ULAW_DECODE[code as usize];
            // 0x7F is µ-law's negative zero; it re-encodes as positive zero.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(linear_to_ulaw(u), expected, "ulaw {code:#04x}");
            assert_eq!(
                linear_to_alaw(ALAW_DECODE[code as usize]),
                code,
                "alaw {code:#04x}"
            );
        }
    }

    #[test]
    fn every_sample_quantizes_closely_and_monotonically() {
        let (mut last_u, mut last_a) = (i16::MIN, i16::MIN);
        for x in i16::MIN..=i16::MAX {
            let u = ULAW_DECODE[linear_to_ulaw(x) as usize];
            let a = ALAW_DECODE[linear_to_alaw(x) as usize];
            let bound = ((x as i32).abs() / 16).max(16) + 512 * ((x as i32).abs() > 32000) as i32;
            assert!((u as i32 - x as i32).abs() <= bound, "ulaw {x} -> {u}");
            assert!((a as i32 - x as i32).abs() <= bound, "alaw {x} -> {a}");
            assert!(u >= last_u && a >= last_a, "monotonic at {x}");
            (last_u, last_a) = (u, a);
        }
    }

    #[test]
    fn buffers_too_small_are_errors() {
        let mut pcm = [0i16; 2];
        assert_eq!(
            decode_ulaw(&[1, 2, 3], &mut pcm),
            Err(CodecError::OutputTooSmall { needed: 3 })
        );
        let mut out = [0u8; 1];
        assert_eq!(
            encode_alaw(&[1, 2], &mut out),
            Err(CodecError::OutputTooSmall { needed: 2 })
        );
        assert_eq!(decode_alaw(&[], &mut []), Ok(0));
    }
}
