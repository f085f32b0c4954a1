//! Snoop legs (`POST /channels/{id}/snoop`): a leg without sockets that
//! hears a target leg (spy) and/or speaks into it (whisper), and is bridged
//! and recorded like any other leg.
//!
//! Directions are the target's, as Asterisk's: **in** is what the target
//! sends us (its caller's voice), **out** is what we send the target (what
//! its caller hears).
//! - **Spy**: the target's audio of the spied directions is decoded as it
//!   passes (`Snoop::feed`) into one FIFO per direction; on each tick the
//!   snoop leg "receives" one frame, the sum of the directions, in signed
//!   linear at the target's rate, and passes it on as its mode says (like
//!   a packet from a remote).
//! - **Whisper**: what the snoop leg is sent (by its bridge) is decoded into
//!   the whisper FIFO; each packet passing the target in a whispered
//!   direction is decoded, the whisper added, and encoded again in place.
//!   Only codecs whose encoding of a frame has a fixed length (G.711,
//!   G.722, signed linear) are whispered into; an Opus packet passes
//!   unchanged.
//!
//! Invariants: FIFOs are bounded (three ticks; the oldest audio goes first
//! when a direction runs ahead); a snoop leg and its target live on the
//! same core (the data plane moves them together); a tick allocates
//! nothing.

use super::{Direction, Format};
use crate::codec::{Decoder, Encoder, MAX_FRAME_SAMPLES};
use crate::rtp::OutStream;

/// What a snoop does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnoopSpec {
    /// The target's directions heard by the snoop leg.
    pub spy: Option<Direction>,
    /// The target's directions the snoop leg speaks into.
    pub whisper: Option<Direction>,
}

/// A bounded FIFO of PCM that drops its oldest samples when full.
#[derive(Debug)]
struct Fifo {
    buf: Box<[i16]>,
    len: usize,
}

impl Fifo {
    fn new(capacity: usize) -> Fifo {
        Fifo {
            buf: vec![0; capacity].into_boxed_slice(),
            len: 0,
        }
    }

    fn push(&mut self, pcm: &[i16]) {
        let cap = self.buf.len();
        let pcm = &pcm[pcm.len().saturating_sub(cap)..];
        let overflow = (self.len + pcm.len()).saturating_sub(cap);
        if overflow > 0 {
            self.buf.copy_within(overflow..self.len, 0);
            self.len -= overflow;
        }
        self.buf[self.len..self.len + pcm.len()].copy_from_slice(pcm);
        self.len += pcm.len();
    }

    /// Adds the oldest `out.len()` samples (or what there is) into `out`,
    /// saturating, and removes them.
    fn mix_into(&mut self, out: &mut [i16]) {
        let n = out.len().min(self.len);
        for (o, s) in out.iter_mut().zip(&self.buf[..n]) {
            *o = o.saturating_add(*s);
        }
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

/// One decoded direction of the target.
struct Feed {
    decoder: Decoder,
    fifo: Fifo,
}

/// Whispering into one direction of the target.
struct Whisper {
    /// What the snoop leg was sent, at the target's rate, not yet mixed.
    fifo: Fifo,
    decoder: Decoder,
    encoder: Encoder,
}

/// The state of a snoop leg.
pub(super) struct Snoop {
    pub target: super::LegId,
    /// The format of the snoop leg: signed linear at the target's rate.
    pub format: Format,
    /// The stream of the frames the snoop leg "receives".
    pub stream: OutStream,
    spy_in: Option<Feed>,
    spy_out: Option<Feed>,
    whisper_in: Option<Whisper>,
    whisper_out: Option<Whisper>,
    pcm: Box<[i16]>,
    mixed: Box<[i16]>,
    scratch: Box<[u8]>,
}

impl std::fmt::Debug for Snoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snoop")
            .field("target", &self.target)
            .field("spy_in", &self.spy_in.is_some())
            .field("spy_out", &self.spy_out.is_some())
            .field("whisper_in", &self.whisper_in.is_some())
            .field("whisper_out", &self.whisper_out.is_some())
            .finish()
    }
}

/// Signed linear at `format`'s rate.
pub fn linear_for(format: Format) -> Format {
    match format.sample_rate() {
        16000 => Format::Slin16,
        48000 => Format::Slin48,
        _ => Format::Slin,
    }
}

fn has(d: Option<Direction>, want: Direction) -> bool {
    matches!(
        (d, want),
        (Some(Direction::Both), _)
            | (Some(Direction::In), Direction::In)
            | (Some(Direction::Out), Direction::Out)
    )
}

impl Snoop {
    /// A snoop of `target` whose format is `format`, with `tick_samples`
    /// samples per tick at its rate; `None` if the format has no codec.
    pub(super) fn new(
        target: super::LegId,
        format: Format,
        spec: SnoopSpec,
        tick_samples: usize,
        stream: OutStream,
    ) -> Option<Snoop> {
        let cap = 3 * tick_samples.max(1);
        let feed = |on: bool| -> Option<Option<Feed>> {
            if !on {
                return Some(None);
            }
            Some(Some(Feed {
                decoder: Decoder::new(format).ok()?,
                fifo: Fifo::new(cap),
            }))
        };
        let whisper = |on: bool| -> Option<Option<Whisper>> {
            if !on {
                return Some(None);
            }
            Some(Some(Whisper {
                fifo: Fifo::new(cap),
                decoder: Decoder::new(format).ok()?,
                encoder: Encoder::new(format).ok()?,
            }))
        };
        Some(Snoop {
            target,
            format: linear_for(format),
            stream,
            spy_in: feed(has(spec.spy, Direction::In))?,
            spy_out: feed(has(spec.spy, Direction::Out))?,
            whisper_in: whisper(has(spec.whisper, Direction::In))?,
            whisper_out: whisper(has(spec.whisper, Direction::Out))?,
            pcm: vec![0; MAX_FRAME_SAMPLES].into_boxed_slice(),
            mixed: vec![0; MAX_FRAME_SAMPLES].into_boxed_slice(),
            scratch: vec![0; 2 * MAX_FRAME_SAMPLES].into_boxed_slice(),
        })
    }

    /// A payload of the target's format passed the target in `direction`:
    /// spied on if that direction is.
    pub(super) fn feed(&mut self, direction: Direction, payload: &[u8]) {
        let feed = match direction {
            Direction::In => self.spy_in.as_mut(),
            Direction::Out => self.spy_out.as_mut(),
            Direction::Both => None,
        };
        if let Some(f) = feed {
            if let Ok(n) = f.decoder.decode(payload, &mut self.pcm) {
                f.fifo.push(&self.pcm[..n]);
            }
        }
    }

    /// One tick of what the snoop hears, `samples` long, into `out`; false
    /// when it spies on nothing.
    pub(super) fn heard(&mut self, samples: usize, out: &mut [i16]) -> bool {
        if self.spy_in.is_none() && self.spy_out.is_none() {
            return false;
        }
        let Some(out) = out.get_mut(..samples) else {
            return false;
        };
        out.fill(0);
        for f in [self.spy_in.as_mut(), self.spy_out.as_mut()]
            .into_iter()
            .flatten()
        {
            f.fifo.mix_into(out);
        }
        true
    }

    /// The snoop leg was sent a signed linear payload (big-endian, RTP's
    /// L16): the audio it whispers.
    pub(super) fn sent(&mut self, payload: &[u8]) {
        let n = (payload.len() / 2).min(self.pcm.len());
        for (i, s) in self.pcm[..n].iter_mut().enumerate() {
            *s = i16::from_be_bytes([payload[2 * i], payload[2 * i + 1]]);
        }
        for w in [self.whisper_in.as_mut(), self.whisper_out.as_mut()]
            .into_iter()
            .flatten()
        {
            w.fifo.push(&self.pcm[..n]);
        }
    }

    /// Adds the whisper to a payload of the target's format passing it in
    /// `direction` (in place): true if it did. A payload whose encoding
    /// changes length (Opus) is left as it is.
    pub(super) fn whisper_into(&mut self, direction: Direction, payload: &mut [u8]) -> bool {
        let w = match direction {
            Direction::In => self.whisper_in.as_mut(),
            Direction::Out => self.whisper_out.as_mut(),
            Direction::Both => None,
        };
        let Some(w) = w else {
            return false;
        };
        let Ok(n) = w.decoder.decode(payload, &mut self.mixed) else {
            return false;
        };
        if w.fifo.len == 0 {
            return false;
        }
        w.fifo.mix_into(&mut self.mixed[..n]);
        match w.encoder.encode(&self.mixed[..n], &mut self.scratch) {
            Ok(len) if len == payload.len() => {
                payload.copy_from_slice(&self.scratch[..len]);
                true
            }
            _ => false,
        }
    }
}
