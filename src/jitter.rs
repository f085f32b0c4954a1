//! A small fixed-capacity, adaptive jitter buffer for one leg on the mixing
//! path.
//!
//! The mixer asks it for exactly one frame per tick ([`JitterBuffer::tick`]);
//! packets are put in as they arrive ([`JitterBuffer::push`]), in any order.
//! The relay path does not use it (relays never buffer).
//!
//! # State
//! - `Buffering`: nothing played yet (or the stream stopped); playout starts
//!   once `floor` frames are held (see below), at the oldest one.
//! - `Playing { next }`: each tick plays `next` if held. When it is not:
//!   - nothing is held at all: the frame is late (or the talker paused), so
//!     playout *stalls* — the tick reports it missing and `next` stays, to be
//!     played when it comes; after `slots` such ticks in a row the buffer goes
//!     back to `Buffering` (the talker stopped);
//!   - the frame after it is held: `next` was lost (or is too late to
//!     matter): that one plays now, so one lost frame costs no delay;
//!   - otherwise the tick reports `next` missing and moves past it.
//!
//! # Playout delay
//! The delay a frame sees is the number of frames held when a tick comes
//! (the *level*) minus one, in ticks, plus however long before the tick it
//! arrived. It adapts between `min_delay` and `max_delay` frames of level:
//! - the *floor* is `min_delay + ⌊3·J / frame⌋` (at most `max_delay`), where
//!   `J` is the leg's RFC 3550 interarrival jitter, which the caller measures
//!   and passes with [`JitterBuffer::set_jitter`]; with a clean stream it is
//!   `min_delay` (1 on the mixing path: a frame waits at most one tick);
//! - the level *grows* by one frame on a stall (a late frame plays one tick
//!   later instead of being dropped), and a tick that finds fewer than
//!   `floor` frames stalls on purpose, so a jittery leg gets its 2–3 frames;
//! - it *shrinks* by one frame (the oldest is dropped, `trimmed`) when every
//!   tick of a calm window found more than `floor` frames. The window is one
//!   second and doubles (up to 30 s) each time a stall follows a shrink
//!   within it, so a leg whose arrivals need the extra frame keeps it instead
//!   of oscillating; it resets when the stream restarts;
//! - frames above `max_delay` are dropped at once (`trimmed`).
//!
//! # Invariants
//! - All memory (`slots × max_payload` bytes) is allocated once in `new`;
//!   `push`, `tick` and `set_jitter` never allocate, and each does at most
//!   O(`slots`) work whatever the sequence numbers.
//! - A slot holds the frame with sequence number `s` only at index
//!   `s mod slots`; a frame older than `next` is late and dropped; a second
//!   copy of a held frame is a duplicate and dropped; a frame too far ahead
//!   (`s >= next + slots`) makes playout skip forward so it fits.
//! - Frames play in sequence order; none plays twice.

use crate::rtp::{RtpTimestamp, SeqNo};

/// What `push` did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Held for playout.
    Stored,
    /// Older than what is being played: dropped.
    Late,
    /// Already held: dropped.
    Duplicate,
    /// Larger than the buffer's frame size: dropped.
    TooBig,
}

/// What one tick yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Tick<'a> {
    /// The next frame in order.
    Frame {
        seq: SeqNo,
        ts: RtpTimestamp,
        payload: &'a [u8],
    },
    /// The next frame is missing (lost or late): conceal.
    Missing { seq: SeqNo },
    /// Not playing (nothing buffered yet, or the stream paused).
    Idle,
}

/// Counters of one jitter buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub stored: u64,
    pub late: u64,
    pub duplicate: u64,
    pub too_big: u64,
    pub played: u64,
    /// Ticks that played nothing.
    pub missing: u64,
    /// Frames never played: a later one played in their turn (lost).
    pub skipped: u64,
    /// Ticks that held playout back (counted in `missing` too): nothing to
    /// play, or fewer frames than the jitter floor.
    pub stalls: u64,
    /// Frames dropped unplayed because a newer frame forced a skip.
    pub overrun: u64,
    /// Frames dropped unplayed to bring the delay back down.
    pub trimmed: u64,
    /// Times the buffer started over for a new stream (SSRC change or
    /// sequence restart).
    pub restarts: u64,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    seq: SeqNo,
    ts: RtpTimestamp,
    len: u16,
    full: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Buffering,
    Playing { next: SeqNo, misses: usize },
}

/// Ticks of the first calm window after which an unneeded frame is dropped.
const WINDOW: u32 = 50;
/// A packet this far behind what plays is a restarted sequence, not a late
/// frame (RFC 3550 A.1's MAX_MISORDER).
const MAX_MISORDER: i16 = 100;
/// The longest calm window (the window doubles on each stall after a trim).
const MAX_WINDOW: u32 = 1500;
/// Jitter floor: a frame of delay over `min_delay` per this many `J`s in one
/// frame (about 3.4 standard deviations of the transit time).
const JITTER_MARGIN: u64 = 3;

/// The jitter buffer of one leg.
#[derive(Debug)]
pub struct JitterBuffer {
    slots: Box<[Slot]>,
    data: Box<[u8]>,
    max_payload: usize,
    min_delay: usize,
    max_delay: usize,
    /// Frames playout starts with and does not shrink below.
    floor: usize,
    held: usize,
    state: State,
    stats: JitterStats,
    /// Fewest frames held at a tick in the current calm window.
    window_min: usize,
    window_ticks: u32,
    /// Length of a calm window, ticks.
    window: u32,
    /// Ticks since the last trim of a calm window.
    since_trim: u32,
}

impl JitterBuffer {
    /// A buffer of `slots` frames (at least 2, at most 1024) of up to
    /// `max_payload` bytes each, whose playout delay adapts between
    /// `min_delay` and `max_delay` frames (clamped to `1..slots`; equal
    /// values fix it).
    pub fn new(
        slots: usize,
        max_payload: usize,
        min_delay: usize,
        max_delay: usize,
    ) -> JitterBuffer {
        let slots = slots.clamp(2, 1024);
        let max_delay = max_delay.clamp(1, slots - 1);
        let min_delay = min_delay.clamp(1, max_delay);
        let empty = Slot {
            seq: SeqNo(0),
            ts: RtpTimestamp(0),
            len: 0,
            full: false,
        };
        let max_payload = max_payload.min(usize::from(u16::MAX));
        JitterBuffer {
            slots: vec![empty; slots].into_boxed_slice(),
            data: vec![0; slots * max_payload].into_boxed_slice(),
            max_payload,
            min_delay,
            max_delay,
            floor: min_delay,
            held: 0,
            state: State::Buffering,
            stats: JitterStats::default(),
            window_min: usize::MAX,
            window_ticks: 0,
            window: WINDOW,
            since_trim: u32::MAX,
        }
    }

    /// Forgets every held frame and starts buffering again: a new stream
    /// (another SSRC, or a sequence restart) does not continue the old one.
    pub fn restart(&mut self) {
        for i in 0..self.slots.len() {
            self.release(i);
        }
        self.state = State::Buffering;
        self.window = WINDOW;
        self.restart_window();
        self.stats.restarts += 1;
    }

    /// Counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Frames currently held.
    pub fn len(&self) -> usize {
        self.held
    }

    /// True when no frame is held.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// The fewest frames playout aims to hold at a tick (`min_delay`, raised
    /// by the arrival jitter).
    pub fn floor(&self) -> usize {
        self.floor
    }

    /// The sequence number the next tick plays (or reports missing) while
    /// playing; `None` while buffering.
    pub fn next_to_play(&self) -> Option<SeqNo> {
        match self.state {
            State::Playing { next, .. } => Some(next),
            State::Buffering => None,
        }
    }

    /// Sets the leg's interarrival jitter `jitter` (RFC 3550, RTP timestamp
    /// units) for frames of `frame` timestamp units: the floor becomes
    /// `min_delay + ⌊3·jitter / frame⌋`, at most `max_delay`.
    pub fn set_jitter(&mut self, jitter: u32, frame: u32) {
        let extra = if frame == 0 {
            0
        } else {
            (JITTER_MARGIN * u64::from(jitter) / u64::from(frame)) as usize
        };
        self.floor = self.min_delay.saturating_add(extra).min(self.max_delay);
    }

    fn index(&self, seq: SeqNo) -> usize {
        usize::from(seq.0) % self.slots.len()
    }

    /// True when the slot of `seq` holds `seq`.
    fn holds(&self, seq: SeqNo) -> bool {
        let slot = self.slots[self.index(seq)];
        slot.full && slot.seq == seq
    }

    fn release(&mut self, index: usize) {
        if self.slots[index].full {
            self.slots[index].full = false;
            self.held -= 1;
        }
    }

    fn restart_window(&mut self) {
        self.window_min = usize::MAX;
        self.window_ticks = 0;
    }

    /// Offers one packet's payload.
    pub fn push(&mut self, seq: SeqNo, ts: RtpTimestamp, payload: &[u8]) -> Pushed {
        if payload.len() > self.max_payload {
            self.stats.too_big += 1;
            return Pushed::TooBig;
        }
        let n = self.slots.len();
        if let State::Playing { next, .. } = self.state {
            if seq.delta(next) < -MAX_MISORDER {
                // Far behind what plays: the sender restarted its sequence.
                self.restart();
            }
        }
        if let State::Playing { next, misses } = self.state {
            let ahead = seq.delta(next);
            if ahead < 0 {
                self.stats.late += 1;
                return Pushed::Late;
            }
            if ahead as usize >= n {
                // Skip forward so that `seq` is the newest slot. A skip of
                // `n` or more passes every slot, so at most `n` are visited
                // (a jump of 30,000 must not cost 30,000 steps per packet).
                let new_next = SeqNo(seq.0.wrapping_sub(n as u16 - 1));
                let skip = usize::from(new_next.0.wrapping_sub(next.0));
                let mut s = next;
                for _ in 0..skip.min(n) {
                    let i = self.index(s);
                    let slot = self.slots[i];
                    if slot.full && slot.seq.delta(next) >= 0 && new_next.delta(slot.seq) > 0 {
                        self.stats.overrun += 1;
                    }
                    self.release(i);
                    s = s.next();
                }
                self.state = State::Playing {
                    next: new_next,
                    misses,
                };
            }
        }
        if self.state == State::Buffering && self.held > 0 {
            // Frames held while buffering must stay within `slots` of each
            // other, or playout (which starts at the oldest) could never
            // reach the others: they would be held for ever, counted in the
            // level, and trimmed in place of good ones. A newer frame that
            // far from them is a new stream: they go.
            for i in 0..n {
                let slot = self.slots[i];
                if slot.full && usize::from(slot.seq.delta(seq).unsigned_abs()) >= n {
                    self.release(i);
                    self.stats.overrun += 1;
                }
            }
        }
        let i = self.index(seq);
        let slot = self.slots[i];
        if slot.full {
            if slot.seq == seq {
                self.stats.duplicate += 1;
                return Pushed::Duplicate;
            }
            // While buffering, a stale frame from an older window: replace.
            self.release(i);
        }
        let at = i * self.max_payload;
        self.data[at..at + payload.len()].copy_from_slice(payload);
        self.slots[i] = Slot {
            seq,
            ts,
            len: payload.len() as u16,
            full: true,
        };
        self.held += 1;
        self.stats.stored += 1;
        Pushed::Stored
    }

    /// The oldest held sequence number (while buffering).
    fn oldest(&self) -> Option<SeqNo> {
        let mut oldest: Option<SeqNo> = None;
        for slot in self.slots.iter().filter(|s| s.full) {
            match oldest {
                Some(o) if !o.is_newer_than(slot.seq) => {}
                _ => oldest = Some(slot.seq),
            }
        }
        oldest
    }

    /// Holds playout back one tick at `next`.
    fn stall(&mut self, next: SeqNo, misses: usize) -> Tick<'static> {
        self.stats.missing += 1;
        self.stats.stalls += 1;
        if self.since_trim < self.window {
            // The last trim took a frame this leg needed: be slower next time.
            self.window = (self.window * 2).min(MAX_WINDOW);
        }
        self.since_trim = u32::MAX;
        self.restart_window();
        self.state = if misses >= self.slots.len() {
            self.window = WINDOW;
            State::Buffering
        } else {
            State::Playing { next, misses }
        };
        Tick::Missing { seq: next }
    }

    /// Plays one tick: the next frame in order, a gap, or nothing.
    pub fn tick(&mut self) -> Tick<'_> {
        let (mut next, misses) = match self.state {
            State::Buffering => {
                if self.held < self.floor {
                    return Tick::Idle;
                }
                match self.oldest() {
                    Some(seq) => {
                        self.restart_window();
                        (seq, 0)
                    }
                    None => return Tick::Idle,
                }
            }
            State::Playing { next, misses } => (next, misses),
        };
        let level = self.held;
        if level == 0 {
            // Late, lost, or the talker paused: wait for it.
            return self.stall(next, misses + 1);
        }
        if level < self.floor {
            // The arrival jitter needs more delay than this: grow.
            return self.stall(next, 0);
        }
        self.since_trim = self.since_trim.saturating_add(1);
        self.window_min = self.window_min.min(level);
        self.window_ticks += 1;
        let mut excess = level - level.min(self.max_delay);
        if excess == 0 && self.window_ticks >= self.window {
            if self.window_min > self.floor {
                excess = 1;
            }
            self.restart_window();
        }
        if excess > 0 {
            // Drop the oldest frames; held frames are all in
            // `next..next + slots`, so one pass finds them.
            for _ in 0..self.slots.len() {
                if excess == 0 {
                    break;
                }
                let i = self.index(next);
                if self.holds(next) {
                    self.release(i);
                    self.stats.trimmed += 1;
                    excess -= 1;
                }
                next = next.next();
            }
            self.since_trim = 0;
            self.restart_window();
        }
        let seq = if self.holds(next) {
            next
        } else if self.holds(next.next()) {
            // `next` was lost, or comes too late to matter: play on.
            self.stats.skipped += 1;
            next.next()
        } else {
            self.stats.missing += 1;
            self.state = State::Playing {
                next: next.next(),
                misses: 0,
            };
            return Tick::Missing { seq: next };
        };
        let i = self.index(seq);
        let slot = self.slots[i];
        self.release(i);
        self.state = State::Playing {
            next: seq.next(),
            misses: 0,
        };
        self.stats.played += 1;
        let at = i * self.max_payload;
        Tick::Frame {
            seq: slot.seq,
            ts: slot.ts,
            payload: &self.data[at..at + usize::from(slot.len)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::xorshift::XorShift;

    fn frame(jb: &mut JitterBuffer) -> Option<u16> {
        match jb.tick() {
            Tick::Frame { seq, payload, .. } => {
                assert_eq!(payload, &seq.0.to_be_bytes());
                Some(seq.0)
            }
            Tick::Missing { .. } | Tick::Idle => None,
        }
    }

    fn push(jb: &mut JitterBuffer, seq: u16) -> Pushed {
        jb.push(
            SeqNo(seq),
            RtpTimestamp(u32::from(seq) * 160),
            &seq.to_be_bytes(),
        )
    }

    /// `ticks` ticks of a clean stream, frame `seq` arriving before each:
    /// every tick plays the frame `delay` ticks older.
    fn steady(jb: &mut JitterBuffer, seq: &mut u16, ticks: usize, delay: u16) {
        for _ in 0..ticks {
            assert_eq!(push(jb, *seq), Pushed::Stored);
            assert_eq!(frame(jb), Some(seq.wrapping_sub(delay)), "at {seq}");
            *seq = seq.wrapping_add(1);
        }
    }

    #[test]
    fn reorders_and_waits_for_the_floor() {
        let mut jb = JitterBuffer::new(8, 4, 1, 4);
        assert_eq!(jb.tick(), Tick::Idle);
        assert_eq!(push(&mut jb, 11), Pushed::Stored);
        assert_eq!(push(&mut jb, 10), Pushed::Stored);
        assert_eq!(push(&mut jb, 13), Pushed::Stored);
        assert_eq!(push(&mut jb, 12), Pushed::Stored);
        let played: Vec<_> = (0..4).map(|_| frame(&mut jb)).collect();
        assert_eq!(played, vec![Some(10), Some(11), Some(12), Some(13)]);
        assert_eq!(jb.tick(), Tick::Missing { seq: SeqNo(14) });
        assert!(jb.is_empty());

        // A floor of 2 waits for two frames, and keeps two.
        let mut jb = JitterBuffer::new(8, 4, 2, 4);
        assert_eq!(push(&mut jb, 11), Pushed::Stored);
        assert_eq!(jb.tick(), Tick::Idle);
        assert_eq!(push(&mut jb, 10), Pushed::Stored);
        assert_eq!(frame(&mut jb), Some(10));
        assert_eq!(jb.tick(), Tick::Missing { seq: SeqNo(11) });
        push(&mut jb, 12);
        assert_eq!(frame(&mut jb), Some(11));
        assert_eq!(jb.stats().stalls, 1);
    }

    #[test]
    fn a_sequence_restart_starts_over_instead_of_waiting() {
        let mut jb = JitterBuffer::new(8, 4, 1, 3);
        let mut seq = 30_000;
        steady(&mut jb, &mut seq, 10, 0);
        // The sender restarts at 5: far behind, so not late but a new stream.
        assert_eq!(push(&mut jb, 5), Pushed::Stored);
        assert_eq!(frame(&mut jb), Some(5));
        let mut seq = 6;
        steady(&mut jb, &mut seq, 10, 0);
        // A little behind is still late.
        assert_eq!(push(&mut jb, 10), Pushed::Late);
        assert_eq!(jb.stats().restarts, 1);
        jb.restart();
        assert_eq!(jb.tick(), Tick::Idle);
        assert_eq!(jb.stats().restarts, 2);
    }

    #[test]
    fn drops_late_and_duplicates_skips_a_lost_frame() {
        let mut jb = JitterBuffer::new(8, 4, 1, 3);
        push(&mut jb, 65535);
        assert_eq!(frame(&mut jb), Some(65535));
        assert_eq!(push(&mut jb, 65535), Pushed::Late);
        assert_eq!(push(&mut jb, 1), Pushed::Stored);
        assert_eq!(push(&mut jb, 1), Pushed::Duplicate);
        // 0 is missing but 1 is here: 1 plays in 0's turn.
        assert_eq!(frame(&mut jb), Some(1));
        assert_eq!(push(&mut jb, 0), Pushed::Late);
        assert_eq!(jb.push(SeqNo(2), RtpTimestamp(0), &[0; 5]), Pushed::TooBig);
        let s = jb.stats();
        assert_eq!(
            (
                s.late,
                s.duplicate,
                s.skipped,
                s.missing,
                s.too_big,
                s.played
            ),
            (2, 1, 1, 0, 1, 2)
        );
    }

    #[test]
    fn skips_forward_on_overrun_and_rebuffers_after_silence() {
        let mut jb = JitterBuffer::new(4, 4, 1, 3);
        push(&mut jb, 100);
        assert_eq!(frame(&mut jb), Some(100));
        push(&mut jb, 101);
        push(&mut jb, 102);
        push(&mut jb, 110); // far ahead: 101 and 102 are dropped, playout jumps
        assert_eq!(jb.stats().overrun, 2);
        assert_eq!(jb.tick(), Tick::Missing { seq: SeqNo(107) });
        assert_eq!(jb.tick(), Tick::Missing { seq: SeqNo(108) });
        assert_eq!(frame(&mut jb), Some(110)); // in 109's turn
        for _ in 0..4 {
            assert_eq!(jb.tick(), Tick::Missing { seq: SeqNo(111) });
        }
        assert_eq!(jb.tick(), Tick::Idle);
        push(&mut jb, 5000);
        assert_eq!(frame(&mut jb), Some(5000));
    }

    #[test]
    fn frames_far_apart_while_buffering_do_not_strand_one() {
        // Found by the jitter_buffer fuzz target: two frames pushed before
        // the first tick, further apart than the slots, left one outside
        // the playout window: held for ever, counted in the level (more
        // than max_delay held after a tick), trimmed in place of good
        // frames.
        let mut jb = JitterBuffer::new(8, 4, 1, 1);
        push(&mut jb, 10);
        push(&mut jb, 30_000);
        assert_eq!(jb.len(), 1);
        assert_eq!(jb.stats().overrun, 1);
        assert_eq!(frame(&mut jb), Some(30_000));
        assert!(jb.is_empty());
        let mut seq = 30_001;
        steady(&mut jb, &mut seq, 100, 0);
        assert_eq!(jb.stats().trimmed, 0);
        // Within the slots of each other, both stay.
        let mut jb = JitterBuffer::new(8, 4, 1, 3);
        push(&mut jb, 65_533);
        push(&mut jb, 3);
        assert_eq!(jb.len(), 2);
        assert_eq!(frame(&mut jb), Some(65_533));
    }

    #[test]
    fn far_jumps_cost_one_pass_over_the_slots() {
        // A remote alternating sequence numbers ~30,000 apart forces a skip
        // on every packet; each must cost O(slots), not O(jump), or one
        // sender stalls the shard's mixing.
        let mut jb = JitterBuffer::new(8, 4, 1, 3);
        push(&mut jb, 0);
        assert_eq!(frame(&mut jb), Some(0));
        push(&mut jb, 1);
        push(&mut jb, 2);
        let started = std::time::Instant::now();
        let mut seq = 2u16;
        for _ in 0..200_000 {
            seq = seq.wrapping_add(30_000);
            assert_eq!(push(&mut jb, seq), Pushed::Stored);
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "200,000 far jumps took {:?}",
            started.elapsed()
        );
        // Only the first skip passed held frames (1 and 2); each later one
        // passed the single frame before it.
        assert_eq!(jb.stats().overrun, 2 + 199_999);
        assert_eq!(jb.len(), 1);
        for _ in 0..6 {
            assert!(matches!(jb.tick(), Tick::Missing { .. }));
        }
        assert_eq!(frame(&mut jb), Some(seq));
    }

    #[test]
    fn random_arrivals_never_panic_and_stay_ordered() {
        for (min, max) in [(1, 3), (3, 3), (1, 15)] {
            let mut rng = XorShift::new(3);
            let mut jb = JitterBuffer::new(16, 4, min, max);
            let mut last: Option<u16> = None;
            for i in 0..50_000u32 {
                let base = (i / 2) as u16;
                let seq = base.wrapping_add(rng.below(40) as u16).wrapping_sub(20);
                push(&mut jb, seq);
                if i % 997 == 0 {
                    jb.set_jitter(rng.below(1000), 160);
                }
                if i % 2 == 0 {
                    if let Some(s) = frame(&mut jb) {
                        if let Some(l) = last {
                            assert!(SeqNo(s).is_newer_than(SeqNo(l)), "{s} after {l}");
                        }
                        last = Some(s);
                    }
                }
                assert!(jb.len() <= 16);
            }
        }
    }

    #[test]
    fn a_clean_stream_plays_each_frame_at_the_next_tick() {
        let mut jb = JitterBuffer::new(8, 4, 1, 3);
        let mut seq = 40_000u16;
        steady(&mut jb, &mut seq, 2_000, 0);
        let s = jb.stats();
        assert_eq!((s.played, s.missing, s.stalls, s.trimmed), (2_000, 0, 0, 0));
    }

    #[test]
    fn a_late_frame_stalls_then_the_extra_frame_is_trimmed_after_a_calm_window() {
        let mut jb = JitterBuffer::new(8, 4, 1, 3);
        let mut seq = 65_500u16; // wraps on the way
        steady(&mut jb, &mut seq, 100, 0);
        // Frame `seq` comes just after its tick: playout waits for it rather
        // than dropping it, and from then on holds one frame more.
        assert_eq!(jb.tick(), Tick::Missing { seq: SeqNo(seq) });
        assert_eq!(push(&mut jb, seq), Pushed::Stored);
        seq = seq.wrapping_add(1);
        steady(&mut jb, &mut seq, WINDOW as usize - 1, 1);
        // Every tick of the window held two frames where one does: the
        // oldest is dropped and the delay is one tick again.
        steady(&mut jb, &mut seq, 1, 0);
        steady(&mut jb, &mut seq, 500, 0);
        let s = jb.stats();
        assert_eq!((s.late, s.stalls, s.trimmed, s.missing), (0, 1, 1, 1));
    }

    #[test]
    fn a_stall_soon_after_a_trim_doubles_the_calm_window() {
        let mut jb = JitterBuffer::new(8, 4, 1, 3);
        let mut seq = 7u16;
        steady(&mut jb, &mut seq, 10, 0);
        let mut window = WINDOW as usize;
        for round in 0..3 {
            // Late once: grow; keep the frame for a whole window; trim.
            assert_eq!(jb.tick(), Tick::Missing { seq: SeqNo(seq) });
            push(&mut jb, seq);
            seq = seq.wrapping_add(1);
            steady(&mut jb, &mut seq, window - 1, 1);
            steady(&mut jb, &mut seq, 10, 0);
            assert_eq!(jb.stats().trimmed, round + 1);
            window *= 2; // the next stall comes 10 ticks after the trim
        }
        // A trim that held: the next stall, long after it, does not double.
        steady(&mut jb, &mut seq, window, 0);
        assert_eq!(jb.tick(), Tick::Missing { seq: SeqNo(seq) });
        push(&mut jb, seq);
        seq = seq.wrapping_add(1);
        steady(&mut jb, &mut seq, window / 2 - 1, 1);
        steady(&mut jb, &mut seq, 1, 0);
        assert_eq!(jb.stats().trimmed, 4);
    }

    #[test]
    fn a_lost_frame_costs_one_tick_and_no_delay() {
        let mut jb = JitterBuffer::new(8, 4, 1, 3);
        let mut seq = 1_000u16;
        steady(&mut jb, &mut seq, 20, 0);
        // `seq` never comes; the tick finds nothing and waits...
        assert_eq!(jb.tick(), Tick::Missing { seq: SeqNo(seq) });
        seq += 1;
        // ...and the next one plays the frame after it, with no extra delay.
        steady(&mut jb, &mut seq, 200, 0);
        let s = jb.stats();
        assert_eq!((s.missing, s.skipped, s.trimmed, s.late), (1, 1, 0, 0));
    }

    #[test]
    fn jitter_raises_the_floor_up_to_the_maximum() {
        let mut jb = JitterBuffer::new(8, 4, 1, 3);
        assert_eq!(jb.floor(), 1);
        jb.set_jitter(50, 160); // 6 ms at 8 kHz: 3 J < one frame
        assert_eq!(jb.floor(), 1);
        jb.set_jitter(60, 160);
        assert_eq!(jb.floor(), 2);
        jb.set_jitter(5_000, 160);
        assert_eq!(jb.floor(), 3);
        jb.set_jitter(0, 0);
        assert_eq!(jb.floor(), 1);

        // A jittery leg starts with its floor, grows to it while playing,
        // and is never trimmed below it.
        let mut seq = 300u16;
        steady(&mut jb, &mut seq, 10, 0);
        jb.set_jitter(60, 160);
        assert_eq!(jb.tick(), Tick::Missing { seq: SeqNo(seq) });
        push(&mut jb, seq);
        seq += 1;
        steady(&mut jb, &mut seq, 1_000, 1);
        let s = jb.stats();
        assert_eq!((s.stalls, s.trimmed), (1, 0));
        // The jitter goes away: the extra frame goes after a calm window.
        jb.set_jitter(0, 160);
        steady(&mut jb, &mut seq, WINDOW as usize - 1, 1);
        steady(&mut jb, &mut seq, 100, 0);
        assert_eq!(jb.stats().trimmed, 1);
    }

    #[test]
    fn frames_above_the_maximum_delay_are_dropped_at_once() {
        let mut jb = JitterBuffer::new(8, 4, 1, 3);
        let mut seq = 0u16;
        steady(&mut jb, &mut seq, 5, 0);
        for s in 5..10 {
            push(&mut jb, s); // a burst of five
        }
        assert_eq!(frame(&mut jb), Some(7)); // 5 and 6 dropped: three held
        assert_eq!(jb.stats().trimmed, 2);
        assert_eq!(frame(&mut jb), Some(8));
        assert_eq!(frame(&mut jb), Some(9));
        assert_eq!(jb.stats().late, 0);
    }
}
