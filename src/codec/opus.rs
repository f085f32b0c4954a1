//! Opus (RFC 6716) through libopus (the `opus` crate, which builds a bundled
//! libopus with cmake): 48 kHz mono, VOIP application.
//!
//! Owns one leg's libopus encoder or decoder. Invariants:
//! - Encoding takes one frame of 2.5, 5, 10, 20, 40 or 60 ms at 48 kHz (120,
//!   240, 480, 960, 1920 or 2880 samples); any other length is
//!   [`CodecError::BadLength`]. Crossbar sends 20 ms frames.
//! - Decoding writes at most `pcm.len()` samples (a 120 ms packet needs 5760);
//!   a too-short buffer or a corrupt packet is an error, never a panic.
//! - A lost packet is bridged by [`OpusDecoder::conceal`] (libopus PLC).
//! - libopus itself allocates only at construction.

use super::CodecError;
use ::opus::{Application, Bitrate, Channels};

/// Opus sample rate used throughout crossbar.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in a 20 ms frame at 48 kHz.
pub const FRAME_20MS: usize = 960;
/// Default encoder bitrate: wideband-plus voice at good quality.
pub const DEFAULT_BITRATE: i32 = 32_000;
/// Encoder complexity (0–10); 5 halves libopus's CPU cost for little quality.
pub const DEFAULT_COMPLEXITY: i32 = 5;
/// The largest packet the encoder is allowed to produce.
pub const MAX_PACKET: usize = super::OPUS_MAX_PACKET;

fn opus_err(e: ::opus::Error) -> CodecError {
    CodecError::Opus(e.code())
}

/// The Opus encoder of one leg.
pub struct OpusEncoder {
    inner: ::opus::Encoder,
}

impl OpusEncoder {
    /// A 48 kHz mono VOIP encoder at `bitrate` bit/s (500..=512000).
    pub fn new(bitrate: i32) -> Result<OpusEncoder, CodecError> {
        let mut inner = ::opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip)
            .map_err(opus_err)?;
        inner
            .set_bitrate(Bitrate::Bits(bitrate))
            .map_err(opus_err)?;
        inner.set_complexity(DEFAULT_COMPLEXITY).map_err(opus_err)?;
        Ok(OpusEncoder { inner })
    }

    /// Encodes one frame of `pcm` into `payload`, returning the packet length.
    pub fn encode(&mut self, pcm: &[i16], payload: &mut [u8]) -> Result<usize, CodecError> {
        if ![120, 240, 480, 960, 1920, 2880].contains(&pcm.len()) {
            return Err(CodecError::BadLength);
        }
        if payload.is_empty() {
            return Err(CodecError::OutputTooSmall { needed: 1 });
        }
        let len = payload.len().min(MAX_PACKET);
        self.inner
            .encode(pcm, &mut payload[..len])
            .map_err(opus_err)
    }
}

/// The Opus decoder of one leg.
pub struct OpusDecoder {
    inner: ::opus::Decoder,
}

impl OpusDecoder {
    /// A 48 kHz mono decoder.
    pub fn new() -> Result<OpusDecoder, CodecError> {
        let inner = ::opus::Decoder::new(SAMPLE_RATE, Channels::Mono).map_err(opus_err)?;
        Ok(OpusDecoder { inner })
    }

    /// Decodes one packet into `pcm`, returning the samples written. An empty
    /// payload is treated as a lost packet (see [`OpusDecoder::conceal`]).
    pub fn decode(&mut self, payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
        if payload.is_empty() {
            return self.conceal(pcm);
        }
        let needed = self.inner.get_nb_samples(payload).map_err(opus_err)?;
        super::ensure_room(pcm.len(), needed)?;
        self.inner.decode(payload, pcm, false).map_err(opus_err)
    }

    /// Packet-loss concealment: fills all of `pcm` (a multiple of 120
    /// samples, 2.5 ms) with libopus's extrapolation of the stream.
    pub fn conceal(&mut self, pcm: &mut [i16]) -> Result<usize, CodecError> {
        if pcm.is_empty() || pcm.len() % 120 != 0 || pcm.len() > super::MAX_FRAME_SAMPLES {
            return Err(CodecError::BadLength);
        }
        self.inner.decode(&[], pcm, false).map_err(opus_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(len: usize, offset: usize) -> Vec<i16> {
        (offset..offset + len)
            .map(|n| {
                (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 48000.0).sin()) as i16
            })
            .collect()
    }

    fn energy(pcm: &[i16]) -> f64 {
        pcm.iter().map(|&s| (s as f64) * (s as f64)).sum::<f64>() / pcm.len() as f64
    }

    #[test]
    fn tone_round_trip_and_plc() {
        let mut enc = OpusEncoder::new(DEFAULT_BITRATE).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut packet = [0u8; MAX_PACKET];
        let mut pcm = [0i16; FRAME_20MS];
        for i in 0..25 {
            let frame = tone(FRAME_20MS, i * FRAME_20MS);
            let n = enc.encode(&frame, &mut packet).unwrap();
            assert!(n > 0 && n < 200, "packet of {n} bytes");
            assert_eq!(dec.decode(&packet[..n], &mut pcm), Ok(FRAME_20MS));
        }
        let e = energy(&pcm);
        let want = energy(&tone(FRAME_20MS, 0));
        assert!(
            e > want * 0.5 && e < want * 2.0,
            "decoded energy {e} vs {want}"
        );
        // A lost packet: PLC continues the tone instead of going silent.
        assert_eq!(dec.conceal(&mut pcm), Ok(FRAME_20MS));
        assert!(energy(&pcm) > want * 0.1);
        assert_eq!(dec.decode(&[], &mut pcm), Ok(FRAME_20MS));
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut enc = OpusEncoder::new(DEFAULT_BITRATE).unwrap();
        assert_eq!(
            enc.encode(&[0; 100], &mut [0u8; 100]),
            Err(CodecError::BadLength)
        );
        assert!(enc.encode(&[0; 960], &mut []).is_err());
        let mut dec = OpusDecoder::new().unwrap();
        let mut pcm = [0i16; 960];
        for garbage in [
            &[0xFFu8; 3][..],
            &[0x03, 0xFF, 0xFF, 0xFF][..],
            &[0xFC; 40][..],
        ] {
            let _ = dec.decode(garbage, &mut pcm); // error or noise, never a panic
        }
        assert_eq!(dec.conceal(&mut pcm[..100]), Err(CodecError::BadLength));
        let mut small = [0i16; 480];
        let mut packet = [0u8; MAX_PACKET];
        let n = enc.encode(&[0; 960], &mut packet).unwrap();
        assert_eq!(
            dec.decode(&packet[..n], &mut small),
            Err(CodecError::OutputTooSmall { needed: 960 })
        );
    }
}
