//! L16: signed linear 16-bit big-endian payloads (Asterisk's slin, slin16,
//! slin48; RFC 3551 L16 mono).
//!
//! Owns the byte order conversion only; the sample rate is the format's. A
//! payload of `2n` bytes is `n` samples. Invariants: an odd payload length is
//! malformed ([`CodecError::BadLength`]); a destination that is too small gives
//! [`CodecError::OutputTooSmall`] and nothing is written. Never panics.

use super::{ensure_room, CodecError};

/// Decodes a big-endian payload into `pcm`; returns `payload.len() / 2`.
pub fn decode(payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
    if payload.len() % 2 != 0 {
        return Err(CodecError::BadLength);
    }
    let samples = payload.len() / 2;
    ensure_room(pcm.len(), samples)?;
    for (out, pair) in pcm.iter_mut().zip(payload.chunks_exact(2)) {
        *out = i16::from_be_bytes([pair[0], pair[1]]);
    }
    Ok(samples)
}

/// Encodes `pcm` big-endian into `payload`; returns `2 * pcm.len()`.
pub fn encode(pcm: &[i16], payload: &mut [u8]) -> Result<usize, CodecError> {
    let bytes = pcm.len() * 2;
    ensure_room(payload.len(), bytes)?;
    for (pair, &s) in payload.chunks_exact_mut(2).zip(pcm) {
        pair.copy_from_slice(&s.to_be_bytes());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian_round_trip() {
        let pcm = [0i16, 1, -1, i16::MAX, i16::MIN, 0x1234];
        let mut bytes = [0u8; 12];
        assert_eq!(encode(&pcm, &mut bytes), Ok(12));
        assert_eq!(&bytes[..6], &[0, 0, 0, 1, 0xFF, 0xFF]);
        assert_eq!(&bytes[10..], &[0x12, 0x34]);
        let mut back = [0i16; 6];
        assert_eq!(decode(&bytes, &mut back), Ok(6));
        assert_eq!(back, pcm);
    }

    #[test]
    fn malformed_lengths() {
        let mut pcm = [0i16; 4];
        assert_eq!(decode(&[1, 2, 3], &mut pcm), Err(CodecError::BadLength));
        assert_eq!(
            decode(&[0; 10], &mut pcm),
            Err(CodecError::OutputTooSmall { needed: 5 })
        );
        assert_eq!(
            encode(&[1, 2], &mut [0u8; 3]),
            Err(CodecError::OutputTooSmall { needed: 4 })
        );
    }
}
