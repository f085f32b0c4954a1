//! Audio codecs of the data plane, sans-IO and allocation-free per packet.
//!
//! This module owns the conversion between RTP payload bytes and signed-linear
//! 16-bit PCM (`i16`, host order) for every [`Format`] crossbar carries, plus the
//! sample-rate conversion between the bridge rates (8, 16 and 48 kHz) and the
//! two-party [`Transcoder`] that chains decode → resample → encode.
//!
//! Invariants shared by every codec here:
//! - Decoding writes into a caller-provided `&mut [i16]` and returns how many
//!   samples it wrote; encoding writes into a caller-provided `&mut [u8]` and
//!   returns how many bytes it wrote. Nothing allocates after construction.
//! - No input can make them panic. A destination that is too small gives
//!   [`CodecError::OutputTooSmall`] *before* any codec state changes, so the
//!   caller can retry with a bigger buffer; a malformed length gives
//!   [`CodecError::BadLength`].
//! - Per-leg state (G.722 ADPCM predictors, Opus encoder/decoder, resampler
//!   history, concealment history) lives in the value; stateless codecs
//!   (G.711, L16) are free functions wrapped by the same [`Decoder`] and
//!   [`Encoder`].
//! - A lost packet is concealed by the decoder ([`Decoder::conceal`]): Opus
//!   with libopus's PLC, the others by waveform repetition ([`plc`]).

pub mod g711;
pub mod g722;
pub mod l16;
#[cfg(feature = "opus")]
pub mod opus;
pub mod plc;
pub mod resample;
mod transcode;

pub use resample::Resampler;
pub use transcode::Transcoder;

use crate::media::Format;
use std::fmt;

/// The largest Opus packet (RFC 6716 §3.2.1), whether or not this build has Opus.
pub const OPUS_MAX_PACKET: usize = 1275;

/// The longest frame any codec here handles: 120 ms at 48 kHz (Opus's maximum).
pub const MAX_FRAME_SAMPLES: usize = 5760;

/// Why a codec operation did not produce output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The destination buffer holds fewer than `needed` elements.
    OutputTooSmall {
        /// Elements (samples or bytes) the operation needs.
        needed: usize,
    },
    /// The input length is not valid for this codec (an odd L16 payload, an odd
    /// number of samples for G.722, a frame size Opus does not support, a frame
    /// longer than [`MAX_FRAME_SAMPLES`]).
    BadLength,
    /// The sample rates cannot be converted (only 8, 16 and 48 kHz exist here).
    UnsupportedRate,
    /// This build has no codec for the format (Opus without the `opus` feature).
    Unavailable,
    /// libopus rejected the operation (corrupt packet, bad argument, ...).
    #[cfg(feature = "opus")]
    Opus(::opus::ErrorCode),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::OutputTooSmall { needed } => {
                write!(f, "output buffer too small ({needed} elements needed)")
            }
            CodecError::BadLength => f.write_str("input length not valid for this codec"),
            CodecError::UnsupportedRate => f.write_str("unsupported sample rate conversion"),
            CodecError::Unavailable => f.write_str("codec not compiled into this build"),
            #[cfg(feature = "opus")]
            CodecError::Opus(code) => write!(f, "opus: {}", code.description()),
        }
    }
}

impl std::error::Error for CodecError {}

/// Returns `Err(OutputTooSmall)` unless `have >= needed`.
pub(crate) fn ensure_room(have: usize, needed: usize) -> Result<(), CodecError> {
    if have < needed {
        Err(CodecError::OutputTooSmall { needed })
    } else {
        Ok(())
    }
}

/// A per-leg decoder for one [`Format`]: payload bytes → PCM at
/// [`Format::sample_rate`], and a stand-in for a lost payload
/// ([`Decoder::conceal`]).
pub struct Decoder {
    kind: DecoderKind,
    /// Waveform repetition for codecs without their own concealment.
    plc: Option<Box<plc::Concealer>>,
}

enum DecoderKind {
    /// G.711 µ-law.
    Ulaw,
    /// G.711 A-law.
    Alaw,
    /// Signed linear big-endian, at any of the three rates.
    L16,
    /// G.722 at 64 kbit/s (its ADPCM state is not updated for a concealed
    /// frame: it re-converges within a frame, where re-encoding the
    /// concealment with an unsynchronised encoder measured far worse).
    G722(Box<g722::G722Decoder>),
    /// Opus, 48 kHz mono.
    #[cfg(feature = "opus")]
    Opus(opus::OpusDecoder),
}

impl Decoder {
    /// A fresh decoder for `format`.
    pub fn new(format: Format) -> Result<Decoder, CodecError> {
        let kind = match format {
            Format::Ulaw => DecoderKind::Ulaw,
            Format::Alaw => DecoderKind::Alaw,
            Format::Slin | Format::Slin16 | Format::Slin48 => DecoderKind::L16,
            Format::G722 => DecoderKind::G722(Box::default()),
            #[cfg(feature = "opus")]
            Format::Opus => DecoderKind::Opus(opus::OpusDecoder::new()?),
            #[cfg(not(feature = "opus"))]
            Format::Opus => return Err(CodecError::Unavailable),
        };
        let plc = match kind {
            #[cfg(feature = "opus")]
            DecoderKind::Opus(_) => None,
            _ => Some(Box::new(plc::Concealer::new(format.sample_rate()))),
        };
        Ok(Decoder { kind, plc })
    }

    /// Decodes one payload into `pcm`, returning the number of samples written.
    pub fn decode(&mut self, payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
        let n = match &mut self.kind {
            DecoderKind::Ulaw => g711::decode_ulaw(payload, pcm),
            DecoderKind::Alaw => g711::decode_alaw(payload, pcm),
            DecoderKind::L16 => l16::decode(payload, pcm),
            DecoderKind::G722(d) => d.decode(payload, pcm),
            #[cfg(feature = "opus")]
            DecoderKind::Opus(d) => d.decode(payload, pcm),
        }?;
        if let (Some(plc), Some(out)) = (self.plc.as_deref_mut(), pcm.get_mut(..n)) {
            plc.record(out);
        }
        Ok(n)
    }

    /// A payload of `samples` of silence arrived and was not decoded (the
    /// mix skips G.711 silence): concealment must not repeat older audio.
    pub fn silence(&mut self, samples: usize) {
        if let Some(plc) = self.plc.as_deref_mut() {
            plc.silence(samples);
        }
    }

    /// Fills all of `pcm` with a stand-in for a lost packet: Opus runs its
    /// own packet-loss concealment (`pcm.len()` must then be a multiple of
    /// 2.5 ms), the other codecs repeat the last pitch period, fading to
    /// silence after 60 ms ([`plc`]). Returns `pcm.len()`.
    pub fn conceal(&mut self, pcm: &mut [i16]) -> Result<usize, CodecError> {
        match (&mut self.kind, self.plc.as_deref_mut()) {
            #[cfg(feature = "opus")]
            (DecoderKind::Opus(d), _) => d.conceal(pcm),
            (_, Some(plc)) => {
                plc.conceal(pcm);
                Ok(pcm.len())
            }
            (_, None) => {
                pcm.fill(0);
                Ok(pcm.len())
            }
        }
    }
}

/// A per-leg encoder for one [`Format`]: PCM at [`Format::sample_rate`] →
/// payload bytes.
pub enum Encoder {
    /// G.711 µ-law.
    Ulaw,
    /// G.711 A-law.
    Alaw,
    /// Signed linear big-endian, at any of the three rates.
    L16,
    /// G.722 at 64 kbit/s.
    G722(Box<g722::G722Encoder>),
    /// Opus, 48 kHz mono, VOIP application.
    #[cfg(feature = "opus")]
    Opus(opus::OpusEncoder),
}

impl Encoder {
    /// A fresh encoder for `format` (Opus at its default bitrate).
    pub fn new(format: Format) -> Result<Encoder, CodecError> {
        Ok(match format {
            Format::Ulaw => Encoder::Ulaw,
            Format::Alaw => Encoder::Alaw,
            Format::Slin | Format::Slin16 | Format::Slin48 => Encoder::L16,
            Format::G722 => Encoder::G722(Box::default()),
            #[cfg(feature = "opus")]
            Format::Opus => Encoder::Opus(opus::OpusEncoder::new(opus::DEFAULT_BITRATE)?),
            #[cfg(not(feature = "opus"))]
            Format::Opus => return Err(CodecError::Unavailable),
        })
    }

    /// Encodes `pcm` into `payload`, returning the number of bytes written.
    pub fn encode(&mut self, pcm: &[i16], payload: &mut [u8]) -> Result<usize, CodecError> {
        match self {
            Encoder::Ulaw => g711::encode_ulaw(pcm, payload),
            Encoder::Alaw => g711::encode_alaw(pcm, payload),
            Encoder::L16 => l16::encode(pcm, payload),
            Encoder::G722(e) => e.encode(pcm, payload),
            #[cfg(feature = "opus")]
            Encoder::Opus(e) => e.encode(pcm, payload),
        }
    }
}
