//! A small fixed-capacity jitter buffer for one leg on the mixing path.
//!
//! The mixer asks it for exactly one frame per tick ([`JitterBuffer::tick`]);
//! packets are put in as they arrive ([`JitterBuffer::push`]), in any order.
//! The relay path does not use it (relays never buffer).
//!
//! # State
//! - `Buffering`: nothing played yet (or the stream stopped); playout starts
//!   once `prefetch` frames are held, at the oldest one.
//! - `Playing { next }`: each tick plays `next` if held, else reports it
//!   missing; either way `next` advances by one. After `slots` missing ticks
//!   in a row the buffer goes back to `Buffering` (the talker paused).
//!
//! # Invariants
//! - All memory (`slots × max_payload` bytes) is allocated once in `new`;
//!   `push` and `tick` never allocate, and each does at most O(`slots`) work
//!   whatever the sequence numbers.
//! - A slot holds the frame with sequence number `s` only at index
//!   `s mod slots`; a frame older than `next` is late and dropped; a second
//!   copy of a held frame is a duplicate and dropped; a frame too far ahead
//!   (`s >= next + slots`) makes playout skip forward so it fits.

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
    pub missing: u64,
    /// Frames dropped unplayed because a newer frame forced a skip.
    pub overrun: u64,
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

/// The jitter buffer of one leg.
#[derive(Debug)]
pub struct JitterBuffer {
    slots: Box<[Slot]>,
    data: Box<[u8]>,
    max_payload: usize,
    prefetch: usize,
    held: usize,
    state: State,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer of `slots` frames (at least 2, at most 1024) of up to
    /// `max_payload` bytes each, starting playout once `prefetch` frames are
    /// held (clamped to `1..slots`).
    pub fn new(slots: usize, max_payload: usize, prefetch: usize) -> JitterBuffer {
        let slots = slots.clamp(2, 1024);
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
            prefetch: prefetch.clamp(1, slots - 1),
            held: 0,
            state: State::Buffering,
            stats: JitterStats::default(),
        }
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

    fn index(&self, seq: SeqNo) -> usize {
        usize::from(seq.0) % self.slots.len()
    }

    fn release(&mut self, index: usize) {
        if self.slots[index].full {
            self.slots[index].full = false;
            self.held -= 1;
        }
    }

    /// Offers one packet's payload.
    pub fn push(&mut self, seq: SeqNo, ts: RtpTimestamp, payload: &[u8]) -> Pushed {
        if payload.len() > self.max_payload {
            self.stats.too_big += 1;
            return Pushed::TooBig;
        }
        let n = self.slots.len();
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

    /// Plays one tick: the next frame in order, a gap, or nothing.
    pub fn tick(&mut self) -> Tick<'_> {
        let (next, misses) = match self.state {
            State::Buffering => {
                if self.held < self.prefetch {
                    return Tick::Idle;
                }
                match self.oldest() {
                    Some(seq) => (seq, 0),
                    None => return Tick::Idle,
                }
            }
            State::Playing { next, misses } => (next, misses),
        };
        let i = self.index(next);
        let slot = self.slots[i];
        if slot.full && slot.seq == next {
            self.release(i);
            self.state = State::Playing {
                next: next.next(),
                misses: 0,
            };
            self.stats.played += 1;
            let at = i * self.max_payload;
            return Tick::Frame {
                seq: slot.seq,
                ts: slot.ts,
                payload: &self.data[at..at + usize::from(slot.len)],
            };
        }
        self.stats.missing += 1;
        let misses = misses + 1;
        self.state = if misses >= self.slots.len() && self.held == 0 {
            State::Buffering
        } else {
            State::Playing {
                next: next.next(),
                misses,
            }
        };
        Tick::Missing { seq: next }
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

    #[test]
    fn reorders_and_waits_for_prefetch() {
        let mut jb = JitterBuffer::new(8, 4, 2);
        assert_eq!(push(&mut jb, 11), Pushed::Stored);
        assert_eq!(jb.tick(), Tick::Idle);
        assert_eq!(push(&mut jb, 10), Pushed::Stored);
        assert_eq!(push(&mut jb, 13), Pushed::Stored);
        assert_eq!(push(&mut jb, 12), Pushed::Stored);
        let played: Vec<_> = (0..4).map(|_| frame(&mut jb)).collect();
        assert_eq!(played, vec![Some(10), Some(11), Some(12), Some(13)]);
        assert_eq!(jb.tick(), Tick::Missing { seq: SeqNo(14) });
        assert!(jb.is_empty());
    }

    #[test]
    fn drops_late_and_duplicates_reports_missing() {
        let mut jb = JitterBuffer::new(8, 4, 1);
        push(&mut jb, 65535);
        assert_eq!(frame(&mut jb), Some(65535));
        assert_eq!(push(&mut jb, 65535), Pushed::Late);
        assert_eq!(push(&mut jb, 1), Pushed::Stored);
        assert_eq!(push(&mut jb, 1), Pushed::Duplicate);
        assert_eq!(jb.tick(), Tick::Missing { seq: SeqNo(0) });
        assert_eq!(push(&mut jb, 0), Pushed::Late);
        assert_eq!(frame(&mut jb), Some(1));
        assert_eq!(jb.push(SeqNo(2), RtpTimestamp(0), &[0; 5]), Pushed::TooBig);
        let s = jb.stats();
        assert_eq!(
            (s.late, s.duplicate, s.missing, s.too_big, s.played),
            (2, 1, 1, 1, 2)
        );
    }

    #[test]
    fn skips_forward_on_overrun_and_rebuffers_after_silence() {
        let mut jb = JitterBuffer::new(4, 4, 1);
        push(&mut jb, 100);
        assert_eq!(frame(&mut jb), Some(100));
        push(&mut jb, 101);
        push(&mut jb, 102);
        push(&mut jb, 110); // far ahead: 101 and 102 are dropped, playout jumps
        assert_eq!(jb.stats().overrun, 2);
        assert_eq!(jb.tick(), Tick::Missing { seq: SeqNo(107) });
        for _ in 0..2 {
            jb.tick();
        }
        assert_eq!(frame(&mut jb), Some(110));
        for _ in 0..4 {
            assert!(matches!(jb.tick(), Tick::Missing { .. }));
        }
        assert_eq!(jb.tick(), Tick::Idle);
        push(&mut jb, 5000);
        assert_eq!(frame(&mut jb), Some(5000));
    }

    #[test]
    fn far_jumps_cost_one_pass_over_the_slots() {
        // A remote alternating sequence numbers ~30,000 apart forces a skip
        // on every packet; each must cost O(slots), not O(jump), or one
        // sender stalls the shard's mixing.
        let mut jb = JitterBuffer::new(8, 4, 1);
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
        for _ in 0..7 {
            assert!(matches!(jb.tick(), Tick::Missing { .. }));
        }
        assert_eq!(frame(&mut jb), Some(seq));
    }

    #[test]
    fn random_arrivals_never_panic_and_stay_ordered() {
        let mut rng = XorShift::new(3);
        let mut jb = JitterBuffer::new(16, 4, 3);
        let mut last: Option<u16> = None;
        for i in 0..50_000u32 {
            let base = (i / 2) as u16;
            let seq = base.wrapping_add(rng.below(40) as u16).wrapping_sub(20);
            push(&mut jb, seq);
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
