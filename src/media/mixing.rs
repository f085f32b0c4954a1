//! Softmix (and holding bridges with an announcer) on the shard's tick.
//!
//! [`MixState`] owns one mixing bridge's media state: the [`Mixer`] at the
//! bridge's internal rate (the highest member sample rate: 8, 16 or 48 kHz),
//! per member a decoder, a resampler to the bridge rate, a resampler back and
//! an encoder (for when it talks), one shared encoder per output [`Format`]
//! for the listeners, and all PCM scratch. Everything is allocated when the
//! bridge is set; a tick allocates nothing.
//!
//! # A tick
//! 1. Each member that may speak takes one frame from its jitter buffer
//!    (filled by `path.rs` as packets arrive; see [`crate::jitter`] for the
//!    playout delay, one tick for a leg that arrives in time); a frame that
//!    decodes to one tick of audio is resampled to the bridge rate and added
//!    as a talker. A member with no frame (silent, lost, muted, on hold, not
//!    yet buffered), or whose frame is not one tick long, does not talk and
//!    costs no decoding — except a talker (it talked last tick) whose frame
//!    is missing: its decoder conceals the frame (`dataplane.plc`; libopus
//!    PLC, or waveform repetition fading to silence, see `codec::plc`).
//!    Neither does a G.711 frame that is all silence code (0xFF µ-law, 0xD5
//!    A-law: not decoded), nor one that decodes to all zeros (not added): a
//!    silent member is a listener, which costs a copy of the one listener
//!    frame instead of its own mix and encode.
//! 2. Each member that hears (everyone but announcers; in a holding bridge
//!    everyone but announcers, and only announcers speak) gets one frame:
//!    a talker gets `total − own` encoded with its own encoder; every
//!    non-talker of a format gets the same `total` mix, resampled and
//!    encoded once per format per tick and copied into each packet.
//! 3. Frames go out every tick, silence included (as Asterisk's softmix
//!    does), with the member's own [`crate::rtp::OutStream`] (seq + 1,
//!    timestamp + one tick at the leg's clock rate). A Local half's frame is
//!    ingested by its peer half.
//!
//! # Limits
//! Members may send packets of 10 to 60 ms ([`MAX_PTIME_MS`]): whole
//! packets are decoded into the member's `fifo_in` and each tick takes one
//! tick of audio from it; each member is sent packets of its own packet
//! time, learned from what it sends, through its `fifo_out` (20 ms — one
//! tick — until then, on the shared listener encoding). A membership change
//! keeps every staying member's codec and resampler state
//! ([`MixState::rebuild`]).

use std::collections::HashMap;
use std::time::Instant;

use super::buffer::Packet;
use super::extras::Extras;
use super::leg::LegRef;
use super::path::{Media, HEADER_LEN};
use super::player::Frame;
use super::tap::TapAudio;
use crate::codec::{CodecError, Decoder, Encoder, Resampler, MAX_FRAME_SAMPLES};
use crate::jitter::Tick;
use crate::media::Format;
use crate::mix::Mixer;
use crate::rtp::Pt;

/// What a member of a mixing bridge is to the mix.
pub(super) struct MemberPlan {
    pub leg: LegRef,
    pub format: Format,
    pub speaks: bool,
    pub hears: bool,
}

struct MixMember {
    leg: LegRef,
    format: Format,
    pt: Pt,
    speaks: bool,
    hears: bool,
    /// The byte a payload of pure silence repeats in the member's format
    /// (G.711), if it has one.
    silence_code: Option<u8>,
    /// Samples of one tick at the member's sample rate.
    in_samples: usize,
    /// Samples (at its sample rate) of the packets the member sends: its
    /// packet time, learned from what it sends (0: not known yet).
    packet: usize,
    /// Decoded audio of the member not mixed yet (packets longer than a
    /// tick are mixed over several ticks).
    fifo_in: PcmFifo,
    /// Packets in a row of length `packet`.
    packet_streak: u8,
    /// Samples of the packets sent to the member: one tick, or its own
    /// packet time once known (repacketised through `fifo_out`).
    out_samples: usize,
    /// Mixed audio for the member not sent yet.
    fifo_out: PcmFifo,
    /// The member's RTP clock ticks per sample (× 1, or ½ for G.722).
    clock_num: u32,
    clock_den: u32,
    decoder: Decoder,
    up: Resampler,
    down: Resampler,
    encoder: Encoder,
    /// This tick's frame at the bridge rate.
    pcm: Box<[i16]>,
    talking: bool,
    /// Index of the member's format in `outputs`.
    listener: usize,
}

/// The listeners' mix in one format, encoded once per tick.
struct ListenerOut {
    format: Format,
    down: Resampler,
    encoder: Encoder,
    payload: Box<[u8]>,
    /// Bytes encoded this tick (`None`: not yet).
    len: Option<usize>,
}

/// The media state of one mixing bridge.
pub(super) struct MixState {
    mixer: Mixer,
    /// The mix's sample rate and its samples per tick.
    rate: u32,
    frame: usize,
    members: Vec<MixMember>,
    outputs: Vec<ListenerOut>,
    decoded: Box<[i16]>,
    mixed: Box<[i16]>,
    resampled: Box<[i16]>,
}

/// The longest packet time a member may send or be sent, ms.
pub(super) const MAX_PTIME_MS: u32 = 60;
/// Packets of one new length in a row before a member is sent packets of
/// that length.
const PTIME_SETTLE: u8 = 3;
/// Jitter-buffer frames a member's turn may take in one tick (10 ms
/// packets take two).
const MAX_PULLS: usize = 6;

/// A bounded FIFO of PCM samples, allocated once.
struct PcmFifo {
    buf: Box<[i16]>,
    len: usize,
}

impl PcmFifo {
    fn new(capacity: usize) -> PcmFifo {
        PcmFifo {
            buf: vec![0; capacity].into_boxed_slice(),
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `pcm`; what does not fit is dropped (the newest audio).
    fn push(&mut self, pcm: &[i16]) {
        let n = pcm.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&pcm[..n]);
        self.len += n;
    }

    /// Appends `n` samples of silence.
    fn push_silence(&mut self, n: usize) {
        let n = n.min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].fill(0);
        self.len += n;
    }

    /// Takes the oldest `out.len()` samples, if there are that many.
    fn pop_into(&mut self, out: &mut [i16]) -> bool {
        let n = out.len();
        if n > self.len {
            return false;
        }
        out.copy_from_slice(&self.buf[..n]);
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
        true
    }
}

/// True when `format`'s encoder takes packets of `samples`.
fn valid_packet(format: Format, samples: usize) -> bool {
    let max = tick_samples(format.sample_rate(), MAX_PTIME_MS);
    samples > 0
        && samples <= max
        && match format {
            // 10, 20, 40 or 60 ms.
            Format::Opus => matches!(samples, 480 | 960 | 1920 | 2880),
            Format::G722 => samples % 2 == 0,
            _ => true,
        }
}

/// Samples in one tick at `rate`.
fn tick_samples(rate: u32, tick_ms: u32) -> usize {
    (rate as usize * tick_ms as usize) / 1000
}

/// The largest payload of one tick in `format`: jitter buffer slot size.
pub(super) fn max_payload(format: Format, tick_ms: u32) -> usize {
    match format {
        Format::Opus => crate::codec::OPUS_MAX_PACKET,
        Format::Ulaw | Format::Alaw | Format::G722 => tick_samples(8000, tick_ms),
        Format::Slin | Format::Slin16 | Format::Slin48 => {
            2 * tick_samples(format.sample_rate(), tick_ms)
        }
    }
}

/// The code of zero (µ-law) or of the smallest level (A-law) that a G.711
/// payload of silence repeats.
fn silence_code(format: Format) -> Option<u8> {
    match format {
        Format::Ulaw => Some(0xFF),
        Format::Alaw => Some(0xD5),
        _ => None,
    }
}

/// True when every byte of `payload` is `code` (branch-free, vectorised).
fn all_bytes(payload: &[u8], code: u8) -> bool {
    payload.iter().fold(0, |acc, &b| acc | (b ^ code)) == 0
}

impl MixState {
    /// The mix of `members` on a tick of `tick_ms`, keeping what it can of
    /// `previous` (the bridge's mix before this membership change): a member
    /// still there in the same format keeps its decoder, encoder,
    /// resamplers and concealment state, and the listeners' encoders are
    /// kept per format, so a join or leave costs only the moving member's
    /// codec state and the others hear no artefact. Only a change of the
    /// bridge rate (a first 16 or 48 kHz member) rebuilds everything.
    pub(super) fn rebuild(
        previous: Option<Box<MixState>>,
        members: &[MemberPlan],
        tick_ms: u32,
    ) -> Result<MixState, CodecError> {
        let rate = members
            .iter()
            .map(|m| m.format.sample_rate())
            .max()
            .unwrap_or(8000);
        let frame = tick_samples(rate, tick_ms);
        if frame == 0 || frame > MAX_FRAME_SAMPLES {
            return Err(CodecError::BadLength);
        }
        let previous = previous.filter(|p| p.frame == frame);
        let (mut kept, mut old_outputs, scratch) = match previous {
            Some(p) => {
                let p = *p;
                let kept: HashMap<LegRef, MixMember> =
                    p.members.into_iter().map(|m| (m.leg, m)).collect();
                (
                    kept,
                    p.outputs,
                    Some((p.mixer, p.decoded, p.mixed, p.resampled)),
                )
            }
            None => (HashMap::new(), Vec::new(), None),
        };
        let mut outputs: Vec<ListenerOut> = Vec::new();
        let mut mix_members = Vec::with_capacity(members.len());
        for m in members {
            let listener = match outputs.iter().position(|o| o.format == m.format) {
                Some(i) => i,
                None => {
                    let output = match old_outputs.iter().position(|o| o.format == m.format) {
                        Some(i) => old_outputs.swap_remove(i),
                        None => ListenerOut {
                            format: m.format,
                            down: Resampler::new(rate, m.format.sample_rate())?,
                            encoder: Encoder::new(m.format)?,
                            payload: vec![0; max_payload(m.format, tick_ms).max(1)]
                                .into_boxed_slice(),
                            len: None,
                        },
                    };
                    outputs.push(output);
                    outputs.len() - 1
                }
            };
            let member = match kept.remove(&m.leg) {
                Some(mut old) if old.format == m.format => {
                    old.speaks = m.speaks;
                    old.hears = m.hears;
                    old.listener = listener;
                    old
                }
                _ => MixMember {
                    leg: m.leg,
                    format: m.format,
                    pt: Pt(m.format.payload_type()),
                    speaks: m.speaks,
                    hears: m.hears,
                    silence_code: silence_code(m.format),
                    in_samples: tick_samples(m.format.sample_rate(), tick_ms),
                    packet: 0,
                    packet_streak: 0,
                    fifo_in: PcmFifo::new(3 * tick_samples(m.format.sample_rate(), MAX_PTIME_MS)),
                    out_samples: tick_samples(m.format.sample_rate(), tick_ms),
                    fifo_out: PcmFifo::new(3 * tick_samples(m.format.sample_rate(), MAX_PTIME_MS)),
                    clock_num: m.format.clock_rate(),
                    clock_den: m.format.sample_rate(),
                    decoder: Decoder::new(m.format)?,
                    up: Resampler::new(m.format.sample_rate(), rate)?,
                    down: Resampler::new(rate, m.format.sample_rate())?,
                    encoder: Encoder::new(m.format)?,
                    pcm: vec![0; frame].into_boxed_slice(),
                    talking: false,
                    listener,
                },
            };
            mix_members.push(member);
        }
        let (mixer, decoded, mixed, resampled) = match scratch {
            Some(s) => s,
            None => (
                Mixer::new(frame),
                vec![0; MAX_FRAME_SAMPLES].into_boxed_slice(),
                vec![0; frame].into_boxed_slice(),
                vec![0; MAX_FRAME_SAMPLES].into_boxed_slice(),
            ),
        };
        Ok(MixState {
            mixer,
            rate,
            frame,
            members: mix_members,
            outputs,
            decoded,
            mixed,
            resampled,
        })
    }

    /// The mix's sample rate.
    pub(super) fn rate(&self) -> u32 {
        self.rate
    }

    /// One mix tick: takes a frame per talker and the bridge's clip (or
    /// generator), sends a frame to every member that hears and the mix to
    /// the bridge's taps. Answers the key of a clip that ended.
    pub(super) fn tick(
        &mut self,
        media: &mut Media,
        now: Instant,
        extras: &mut Extras,
    ) -> Option<u64> {
        self.gather(media);
        let ended = self.inject(extras);
        for o in &mut self.outputs {
            o.len = None;
        }
        for i in 0..self.members.len() {
            self.emit(media, now, i);
        }
        if !extras.taps.is_empty() && self.mixer.listener_mix(&mut self.mixed).is_ok() {
            let (rate, mix) = (self.rate, &self.mixed[..self.frame]);
            extras.feed_taps(|| TapAudio::Pcm {
                rate,
                samples: mix.into(),
            });
        }
        ended
    }

    /// Adds the bridge's clip, else its generator, as a talker heard by
    /// every member.
    fn inject(&mut self, extras: &mut Extras) -> Option<u64> {
        let mut ended = None;
        if let Some(p) = extras.player.as_mut() {
            match p.next_pcm(self.frame) {
                Frame::Audio(pcm) => {
                    let _ = self.mixer.add_talker(pcm);
                    return None;
                }
                Frame::Paused => return None,
                Frame::Ended => {
                    ended = Some(p.key);
                    extras.player = None;
                }
            }
        }
        if let Some(g) = extras.generator.as_mut() {
            if let Frame::Audio(pcm) = g.next_pcm(self.frame) {
                let _ = self.mixer.add_talker(pcm);
            }
        }
        ended
    }

    fn gather(&mut self, media: &mut Media) {
        self.mixer.begin_tick();
        let conceal = media.conceal;
        for m in &mut self.members {
            let was_talking = std::mem::replace(&mut m.talking, false);
            if !m.speaks {
                continue;
            }
            let Some(leg) = media.legs.get(m.leg) else {
                continue;
            };
            let muted = leg.mute_in || leg.member_mute || leg.hold;
            let Some(jb) = leg.jitter.as_deref_mut() else {
                continue;
            };
            let frame_ticks = m.clock_ticks(if m.packet > 0 { m.packet } else { m.in_samples });
            jb.set_jitter(leg.rx.jitter(), frame_ticks);
            // Take whole packets until one tick of audio is there.
            for _ in 0..MAX_PULLS {
                if m.fifo_in.len() >= m.in_samples {
                    break;
                }
                match jb.tick() {
                    Tick::Frame { payload, .. } => {
                        if m.silence_code.is_some_and(|code| all_bytes(payload, code)) {
                            // G.711 silence: one byte a sample, not decoded.
                            m.decoder.silence(payload.len());
                            m.fifo_in.push_silence(payload.len());
                            m.note_packet(payload.len());
                        } else if let Ok(n) = m.decoder.decode(payload, &mut self.decoded) {
                            m.fifo_in.push(&self.decoded[..n]);
                            m.note_packet(n);
                        }
                    }
                    // A talker's packet is missing: conceal it (a member
                    // that was not talking costs nothing).
                    Tick::Missing { .. } if conceal && was_talking && m.packet > 0 => {
                        if let Some(Ok(n)) = self
                            .decoded
                            .get_mut(..m.packet)
                            .map(|pcm| m.decoder.conceal(pcm))
                        {
                            leg.stats.rx_concealed += 1;
                            m.fifo_in.push(&self.decoded[..n]);
                        }
                    }
                    Tick::Missing { .. } | Tick::Idle => break,
                }
            }
            // Send the member packets as long as the ones it sends, once it
            // has kept to a new length for a few packets (a sender that
            // alternates does not make its mix start over each time).
            if m.packet != m.out_samples
                && m.packet_streak >= PTIME_SETTLE
                && valid_packet(m.format, m.packet)
            {
                m.out_samples = m.packet;
                m.fifo_out.clear();
            }
            if muted {
                m.fifo_in.clear();
                continue;
            }
            if !m.fifo_in.pop_into(&mut self.decoded[..m.in_samples]) {
                continue;
            }
            let n = m.in_samples;
            if self.decoded[..n].iter().fold(0, |acc, &s| acc | s) == 0 {
                continue; // Silence: nothing to resample or add.
            }
            match m.up.process(&self.decoded[..n], &mut m.pcm) {
                Ok(k) if k == self.frame => {}
                _ => continue,
            }
            if m.pcm.iter().fold(0, |acc, &s| acc | s) == 0 {
                continue; // Decoded to digital silence: adds nothing.
            }
            m.talking = self.mixer.add_talker(&m.pcm).is_ok();
        }
    }

    /// Encodes and sends member `i`'s frame of this tick.
    fn emit(&mut self, media: &mut Media, now: Instant, i: usize) {
        let m = &mut self.members[i];
        if !m.hears {
            return;
        }
        match media.legs.get(m.leg) {
            Some(leg) if leg.mute_out => {
                leg.stats.tx_dropped += 1;
                return;
            }
            Some(_) => {}
            None => return,
        }
        if m.out_samples != m.in_samples {
            self.emit_repacketised(media, now, i);
            return;
        }
        let m = &mut self.members[i];
        let Some(buf) = media.pool.take() else {
            if let Some(leg) = media.legs.get(m.leg) {
                leg.stats.tx_dropped += 1;
            }
            return;
        };
        let frame = self.frame;
        let payload = media
            .pool
            .data(&buf)
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut []);
        let encoded = if m.talking {
            self.mixer
                .talker_mix(&m.pcm, &mut self.mixed)
                .ok()
                .and_then(|()| {
                    m.down
                        .process(&self.mixed[..frame], &mut self.resampled)
                        .ok()
                })
                .and_then(|k| m.encoder.encode(&self.resampled[..k], payload).ok())
        } else {
            let Some(o) = self.outputs.get_mut(m.listener) else {
                media.pool.release(buf);
                return;
            };
            if o.len.is_none() {
                o.len = Some(
                    self.mixer
                        .listener_mix(&mut self.mixed)
                        .ok()
                        .and_then(|()| {
                            o.down
                                .process(&self.mixed[..frame], &mut self.resampled)
                                .ok()
                        })
                        .and_then(|k| o.encoder.encode(&self.resampled[..k], &mut o.payload).ok())
                        .unwrap_or(0),
                );
            }
            let n = o.len.unwrap_or(0);
            match (payload.get_mut(..n), o.payload.get(..n)) {
                (Some(dst), Some(src)) if n > 0 => {
                    dst.copy_from_slice(src);
                    Some(n)
                }
                _ => None,
            }
        };
        let ticks = m.clock_ticks(m.in_samples);
        let header = match (encoded, media.legs.get(m.leg)) {
            (Some(n), Some(leg)) if n > 0 => Some((leg.out.next_local(now, m.pt, ticks, n), n)),
            _ => None,
        };
        let Some((header, n)) = header else {
            media.pool.release(buf);
            return;
        };
        match header.write(media.pool.data(&buf)) {
            Some(h) => media.send_produced(now, m.leg, Packet::Tx { buf, len: h + n }),
            None => media.pool.release(buf),
        }
    }
}

impl MixState {
    /// Member `i`'s tick of audio goes to its `fifo_out`; each whole packet
    /// of its packet time there is encoded and sent.
    fn emit_repacketised(&mut self, media: &mut Media, now: Instant, i: usize) {
        let frame = self.frame;
        let m = &mut self.members[i];
        let mixed = if m.talking {
            self.mixer.talker_mix(&m.pcm, &mut self.mixed)
        } else {
            self.mixer.listener_mix(&mut self.mixed)
        };
        let Some(k) = mixed.ok().and_then(|()| {
            m.down
                .process(&self.mixed[..frame], &mut self.resampled)
                .ok()
        }) else {
            return;
        };
        m.fifo_out.push(&self.resampled[..k]);
        for _ in 0..MAX_PULLS {
            if !m.fifo_out.pop_into(&mut self.decoded[..m.out_samples]) {
                break;
            }
            let Some(buf) = media.pool.take() else {
                if let Some(leg) = media.legs.get(m.leg) {
                    leg.stats.tx_dropped += 1;
                }
                continue;
            };
            let payload = media
                .pool
                .data(&buf)
                .get_mut(HEADER_LEN..)
                .unwrap_or(&mut []);
            let encoded = m
                .encoder
                .encode(&self.decoded[..m.out_samples], payload)
                .ok();
            let ticks = m.clock_ticks(m.out_samples);
            let header = match (encoded, media.legs.get(m.leg)) {
                (Some(n), Some(leg)) if n > 0 => Some((leg.out.next_local(now, m.pt, ticks, n), n)),
                _ => None,
            };
            match header.and_then(|(h, n)| h.write(media.pool.data(&buf)).map(|h| h + n)) {
                Some(len) => media.send_produced(now, m.leg, Packet::Tx { buf, len }),
                None => media.pool.release(buf),
            }
        }
    }
}

impl MixMember {
    /// A packet of `samples` arrived from the member.
    fn note_packet(&mut self, samples: usize) {
        if samples == self.packet {
            self.packet_streak = self.packet_streak.saturating_add(1);
        } else {
            self.packet = samples;
            self.packet_streak = 1;
        }
    }

    /// `samples` at the member's sample rate in its RTP clock's ticks.
    fn clock_ticks(&self, samples: usize) -> u32 {
        (samples as u64 * u64::from(self.clock_num) / u64::from(self.clock_den.max(1))) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(slot: u32, format: Format) -> MemberPlan {
        MemberPlan {
            leg: LegRef::from_parts(slot, 1),
            format,
            speaks: true,
            hears: true,
        }
    }

    /// Where each member's state lives: the same address means the same
    /// (kept) state.
    fn state_of(mix: &MixState) -> Vec<(LegRef, *const i16)> {
        mix.members
            .iter()
            .map(|m| (m.leg, m.pcm.as_ptr()))
            .collect()
    }

    #[test]
    fn a_join_or_leave_keeps_the_other_members_state() {
        let three: Vec<MemberPlan> = (0..3).map(|i| plan(i, Format::G722)).collect();
        let mix = MixState::rebuild(None, &three, 20).unwrap();
        let before = state_of(&mix);
        let mut four = three;
        four.push(plan(3, Format::Ulaw));
        let mix = MixState::rebuild(Some(Box::new(mix)), &four, 20).unwrap();
        let after = state_of(&mix);
        assert_eq!(&after[..3], &before[..], "the three stay as they were");
        assert_eq!(mix.outputs.len(), 2, "one listener encoder per format");
        // Member 1 leaves: 0 and 2 keep theirs.
        let three_again: Vec<MemberPlan> =
            [0, 2, 3].iter().map(|&i| four[i].clone_plan()).collect();
        let mix = MixState::rebuild(Some(Box::new(mix)), &three_again, 20).unwrap();
        let left = state_of(&mix);
        assert_eq!(left[0], after[0]);
        assert_eq!(left[1], after[2]);
        assert_eq!(left[2], after[3]);
        // A 48 kHz member changes the bridge rate: everything is rebuilt.
        let mut wide = three_again;
        wide.push(plan(9, Format::Slin48));
        let mix = MixState::rebuild(Some(Box::new(mix)), &wide, 20).unwrap();
        assert_ne!(state_of(&mix)[0], left[0]);
        assert_eq!(mix.frame, 960);
    }

    impl MemberPlan {
        fn clone_plan(&self) -> MemberPlan {
            MemberPlan {
                leg: self.leg,
                format: self.format,
                speaks: self.speaks,
                hears: self.hears,
            }
        }
    }
}
