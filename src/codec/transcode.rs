//! Two-party transcoding (`simple_bridge`): one payload of format A becomes one
//! payload of format B, through signed linear and, if the rates differ, the
//! resampler.
//!
//! Owns one direction of one bridge leg pair: the decoder of A, the resampler,
//! the encoder of B and two PCM scratch buffers of [`MAX_FRAME_SAMPLES`],
//! allocated once at construction. Invariants: no allocation per packet; a
//! frame longer than 120 ms at either rate is [`CodecError::BadLength`]; codec
//! state persists across frames (call [`Transcoder::conceal`] for a lost
//! packet so the decoder and resampler stay continuous).

use super::{CodecError, Decoder, Encoder, Resampler, MAX_FRAME_SAMPLES};
use crate::media::Format;

/// Converts frames from one [`Format`] to another.
pub struct Transcoder {
    from: Format,
    to: Format,
    decoder: Decoder,
    resampler: Resampler,
    encoder: Encoder,
    decoded: Box<[i16]>,
    resampled: Box<[i16]>,
    last_samples: usize,
    /// Output audio waiting to be packetised, when the output format cannot
    /// take a frame as long as the input's (Opus: 10, 20, 40 or 60 ms).
    pending: Box<[i16]>,
    pending_len: usize,
    /// Samples (output rate) of the last packet produced.
    last_out: usize,
}

/// True when `format`'s encoder takes a frame of `samples` in one packet.
fn one_packet(format: Format, samples: usize) -> bool {
    match format {
        Format::Opus => matches!(samples, 480 | 960 | 1920 | 2880),
        _ => samples > 0,
    }
}

impl Transcoder {
    /// A transcoder from `from` to `to` (any pair, the same format included).
    pub fn new(from: Format, to: Format) -> Result<Transcoder, CodecError> {
        Ok(Transcoder {
            from,
            to,
            decoder: Decoder::new(from)?,
            resampler: Resampler::new(from.sample_rate(), to.sample_rate())?,
            encoder: Encoder::new(to)?,
            decoded: vec![0; MAX_FRAME_SAMPLES].into_boxed_slice(),
            resampled: vec![0; MAX_FRAME_SAMPLES].into_boxed_slice(),
            last_samples: 0,
            pending: vec![0; 2 * MAX_FRAME_SAMPLES].into_boxed_slice(),
            pending_len: 0,
            last_out: 0,
        })
    }

    /// The input format.
    pub fn from_format(&self) -> Format {
        self.from
    }

    /// The output format.
    pub fn to_format(&self) -> Format {
        self.to
    }

    /// Transcodes one payload into `out`, returning the bytes written: 0 when
    /// the output waits for more input (a frame the output format cannot
    /// carry alone is repacketised into 20 ms packets; [`Transcoder::next`]
    /// gives any further packet ready).
    pub fn transcode(&mut self, payload: &[u8], out: &mut [u8]) -> Result<usize, CodecError> {
        let samples = match self.decoder.decode(payload, &mut self.decoded) {
            Err(CodecError::OutputTooSmall { .. }) => return Err(CodecError::BadLength),
            other => other?,
        };
        self.finish(samples, out)
    }

    /// Produces the output for a lost input frame of `samples` samples at the
    /// input rate (Opus PLC, silence otherwise), returning the bytes written.
    pub fn conceal(&mut self, samples: usize, out: &mut [u8]) -> Result<usize, CodecError> {
        let pcm = self
            .decoded
            .get_mut(..samples)
            .ok_or(CodecError::BadLength)?;
        let samples = self.decoder.conceal(pcm)?;
        self.finish(samples, out)
    }

    /// Samples (at the input format's sample rate) of the last frame
    /// transcoded or concealed.
    pub fn last_samples(&self) -> usize {
        self.last_samples
    }

    /// The duration of the last packet produced, in the output format's RTP
    /// clock ticks: for its timestamp.
    pub fn last_out_ticks(&self) -> u32 {
        (self.last_out as u64 * u64::from(self.to.clock_rate())
            / u64::from(self.to.sample_rate().max(1))) as u32
    }

    /// One more packet of repacketised output, if a whole one is waiting.
    pub fn next(&mut self, out: &mut [u8]) -> Option<Result<usize, CodecError>> {
        let packet = (self.to.sample_rate() / 50) as usize;
        if self.pending_len < packet {
            return None;
        }
        let r = self.encoder.encode(&self.pending[..packet], out);
        self.pending.copy_within(packet..self.pending_len, 0);
        self.pending_len -= packet;
        self.last_out = packet;
        Some(r)
    }

    fn finish(&mut self, samples: usize, out: &mut [u8]) -> Result<usize, CodecError> {
        self.last_samples = samples;
        if self.resampler.output_len(samples) > MAX_FRAME_SAMPLES {
            return Err(CodecError::BadLength);
        }
        let n = self
            .resampler
            .process(&self.decoded[..samples], &mut self.resampled)?;
        if self.pending_len == 0 && one_packet(self.to, n) {
            self.last_out = n;
            return self.encoder.encode(&self.resampled[..n], out);
        }
        let room = self.pending.len() - self.pending_len;
        let take = n.min(room);
        self.pending[self.pending_len..self.pending_len + take]
            .copy_from_slice(&self.resampled[..take]);
        self.pending_len += take;
        self.next(out).unwrap_or(Ok(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, len: usize, offset: usize) -> Vec<i16> {
        (offset..offset + len)
            .map(|n| {
                (6000.0 * (2.0 * std::f64::consts::PI * 700.0 * n as f64 / rate as f64).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn ulaw_to_alaw_matches_direct_requantization() {
        let mut t = Transcoder::new(Format::Ulaw, Format::Alaw).unwrap();
        let pcm = tone(8000, 160, 0);
        let mut ulaw = [0u8; 160];
        super::super::g711::encode_ulaw(&pcm, &mut ulaw).unwrap();
        let mut alaw = [0u8; 160];
        assert_eq!(t.transcode(&ulaw, &mut alaw), Ok(160));
        for (u, a) in ulaw.iter().zip(&alaw) {
            let via = super::super::g711::ULAW_DECODE[*u as usize];
            assert_eq!(*a, super::super::g711::linear_to_alaw(via));
        }
    }

    #[test]
    fn every_pair_converts_frames_and_losses() {
        for from in Format::available() {
            let mut encoder = Encoder::new(from).unwrap();
            let samples = from.sample_rate() as usize / 50;
            for to in Format::available() {
                let mut t = Transcoder::new(from, to).unwrap();
                assert_eq!((t.from_format(), t.to_format()), (from, to));
                let mut payload = [0u8; 2000];
                let mut out = [0u8; 2000];
                let expected_len = match to {
                    Format::Ulaw | Format::Alaw => Some(160),
                    Format::Slin => Some(320),
                    Format::Slin16 => Some(640),
                    Format::Slin48 => Some(1920),
                    Format::G722 => Some(160),
                    Format::Opus => None,
                };
                for i in 0..5 {
                    let n = encoder
                        .encode(
                            &tone(from.sample_rate(), samples, i * samples),
                            &mut payload,
                        )
                        .unwrap();
                    let m = t.transcode(&payload[..n], &mut out).unwrap();
                    if let Some(len) = expected_len {
                        assert_eq!(m, len, "{from} -> {to}");
                    }
                    assert!(m > 0);
                }
                let m = t.conceal(samples, &mut out).unwrap();
                assert!(m > 0, "{from} -> {to} conceal");
            }
        }
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut t = Transcoder::new(Format::Ulaw, Format::Slin48).unwrap();
        let mut out = vec![0u8; 100_000];
        assert_eq!(
            t.transcode(&[0xFF; 1000], &mut out),
            Err(CodecError::BadLength)
        );
        assert_eq!(
            t.transcode(&[0xFF; 7000], &mut out),
            Err(CodecError::BadLength)
        );
        assert_eq!(t.conceal(10_000, &mut out), Err(CodecError::BadLength));
        assert_eq!(t.transcode(&[0xFF; 160], &mut out), Ok(1920));
    }
}
