//! RFC 4733 telephone-events on RTP legs: digits received and digits sent.
//!
//! Receiving ([`DtmfRx`]), on every leg not in a `native_rtp` bridge (as
//! in Asterisk, where a native bridge relays digits past the core): an event is one RTP timestamp; its packets carry
//! a growing duration and, at the end, the E bit (sent three times). A digit
//! is reported once, when its first end packet arrives, with its duration;
//! retransmitted ends are ignored. An event whose end packets were all lost
//! is reported when the next event (another timestamp) starts.
//!
//! Sending ([`DtmfTx`]): a plan of digits with the gaps ARI's `dtmf`
//! operation gives (`before`, `between`, `after`, `duration`, and `,` for a
//! 500 ms pause, as Asterisk's `ast_dtmf_stream`). Each digit goes out as
//! one event: a first packet with the marker bit, one packet per tick with
//! the duration so far, then three end packets; all carry the event's start
//! timestamp. While a digit plays, the leg sends no audio.

use std::collections::VecDeque;
use std::time::Duration;

use crate::rtp::{RtpTimestamp, Ssrc};

/// The telephone-event payload type crossbar uses where nothing was
/// negotiated (externalMedia legs; configurable with `rtp.telephone_event_pt`).
pub const DEFAULT_PT: u8 = 101;
/// The telephone-event clock rate crossbar sends (RFC 4733 with 8 kHz).
pub const CLOCK_RATE: u32 = 8000;
/// How long `,` in a digit string pauses (Asterisk's `ast_dtmf_stream`).
pub const PAUSE: Duration = Duration::from_millis(500);
/// End packets sent per event (RFC 4733 2.5.1.4 recommends three).
pub const END_PACKETS: u8 = 3;
/// Most steps one `dtmf` request may queue.
pub const MAX_STEPS: usize = 1024;

/// A digit's event code (RFC 4733 3.2): 0–9, `*` 10, `#` 11, A–D 12–15.
pub fn event_of(digit: char) -> Option<u8> {
    match digit.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        d @ 'A'..='D' => Some(d as u8 - b'A' + 12),
        _ => None,
    }
}

/// The digit of an event code.
pub fn digit_of(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// One telephone-event payload (RFC 4733 2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    /// In clock ticks since the event's timestamp.
    pub duration: u16,
}

impl Event {
    /// Parses a payload (its first four bytes; RFC 4733 allows redundant
    /// blocks after, which are ignored).
    pub fn parse(payload: &[u8]) -> Option<Event> {
        let b: [u8; 4] = payload.get(..4)?.try_into().ok()?;
        Some(Event {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// The four payload bytes.
    pub fn bytes(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }
}

/// The receive side of one leg.
#[derive(Debug, Default)]
pub struct DtmfRx {
    /// The event being received: its stream, timestamp, code and duration.
    current: Option<(Ssrc, RtpTimestamp, u8, u16)>,
    /// Whether `current` was reported.
    reported: bool,
}

impl DtmfRx {
    /// A telephone-event packet of stream `ssrc` at timestamp `ts`: the
    /// digits to report now with their durations in ticks (at most two: an
    /// unended previous event and this one).
    pub fn on_packet(&mut self, ssrc: Ssrc, ts: RtpTimestamp, e: &Event) -> Vec<(char, u32)> {
        let mut out = Vec::new();
        let same = matches!(self.current, Some((s, t, _, _)) if s == ssrc && t == ts);
        if !same {
            if let Some((_, _, event, duration)) = self.current {
                if !self.reported {
                    out.extend(digit_of(event).map(|d| (d, u32::from(duration))));
                }
            }
            self.current = Some((ssrc, ts, e.event, e.duration));
            self.reported = false;
        } else if let Some(c) = self.current.as_mut() {
            c.3 = c.3.max(e.duration);
        }
        if e.end && !self.reported {
            self.reported = true;
            let duration = self.current.map_or(e.duration, |c| c.3);
            out.extend(digit_of(e.event).map(|d| (d, u32::from(duration))));
        }
        out
    }
}

/// One step of a send plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing sent for this long (audio flows).
    Gap(Duration),
    /// A digit of this length.
    Digit { event: u8, length: Duration },
}

/// ARI's `dtmf` parameters turned into steps: `before`, then each digit
/// for `duration` with `between` after all but the last, a `,` pausing
/// [`PAUSE`], then `after`. Unknown characters are refused with the first
/// one found.
pub fn plan(
    digits: &str,
    before: Duration,
    between: Duration,
    duration: Duration,
    after: Duration,
) -> Result<Vec<Step>, char> {
    let mut steps = Vec::new();
    if !before.is_zero() {
        steps.push(Step::Gap(before));
    }
    let chars: Vec<char> = digits.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == ',' {
            steps.push(Step::Gap(PAUSE));
            continue;
        }
        let event = event_of(c).ok_or(c)?;
        steps.push(Step::Digit {
            event,
            length: duration,
        });
        let last_digit = chars[i + 1..].iter().all(|c| *c == ',');
        if !last_digit && !between.is_zero() {
            steps.push(Step::Gap(between));
        }
    }
    if !after.is_zero() {
        steps.push(Step::Gap(after));
    }
    Ok(steps)
}

/// A telephone-event packet to send: its payload, whether it starts the
/// event (marker bit) and the event's start (`None`: a new timestamp).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub payload: [u8; 4],
    pub marker: bool,
}

/// The send side of one leg: the plan in progress.
#[derive(Debug)]
pub struct DtmfTx {
    steps: VecDeque<Step>,
    /// The digit playing: its code, its length in ticks, the duration sent
    /// so far, and the end packets sent.
    playing: Option<(u8, u32, u32, u8)>,
    /// Time left in the current gap.
    gap: Duration,
}

impl DtmfTx {
    pub fn new(steps: Vec<Step>) -> DtmfTx {
        DtmfTx {
            steps: steps.into_iter().take(MAX_STEPS).collect(),
            playing: None,
            gap: Duration::ZERO,
        }
    }

    /// Appends another request's steps (a second `dtmf` while one plays).
    pub fn extend(&mut self, steps: Vec<Step>) {
        let room = MAX_STEPS.saturating_sub(self.steps.len());
        self.steps.extend(steps.into_iter().take(room));
    }

    /// Whether a digit is being sent (audio to the leg is held back).
    pub fn in_digit(&self) -> bool {
        self.playing.is_some()
    }

    /// Whether everything was sent.
    pub fn done(&self) -> bool {
        self.playing.is_none() && self.gap.is_zero() && self.steps.is_empty()
    }

    /// One tick of `tick`: the packet to send now, if any.
    pub fn tick(&mut self, tick: Duration) -> Option<Outgoing> {
        let step_ticks = (tick.as_millis() as u32) * CLOCK_RATE / 1000;
        // Bounded: each turn consumes a step or returns.
        for _ in 0..=MAX_STEPS {
            if let Some((event, length, sent, ends)) = self.playing.as_mut() {
                if *sent >= *length {
                    // The end, sent END_PACKETS times.
                    *ends += 1;
                    let e = Event {
                        event: *event,
                        end: true,
                        volume: 10,
                        duration: (*length).min(u32::from(u16::MAX)) as u16,
                    };
                    if *ends >= END_PACKETS {
                        self.playing = None;
                    }
                    return Some(Outgoing {
                        payload: e.bytes(),
                        marker: false,
                    });
                }
                let first = *sent == 0;
                *sent = (*sent + step_ticks).min(*length);
                let e = Event {
                    event: *event,
                    end: false,
                    volume: 10,
                    duration: (*sent).min(u32::from(u16::MAX)) as u16,
                };
                return Some(Outgoing {
                    payload: e.bytes(),
                    marker: first,
                });
            }
            if !self.gap.is_zero() {
                self.gap = self.gap.saturating_sub(tick);
                return None;
            }
            match self.steps.pop_front()? {
                Step::Gap(d) => self.gap = d,
                Step::Digit { event, length } => {
                    let ticks = (length.as_millis() as u32).max(1) * CLOCK_RATE / 1000;
                    self.playing = Some((event, ticks.max(step_ticks), 0, 0));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_codes_map_both_ways() {
        for (c, e) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('A', 12),
            ('d', 15),
        ] {
            assert_eq!(event_of(c), Some(e));
            assert_eq!(
                digit_of(e).map(|d| d.to_ascii_lowercase()),
                Some(c.to_ascii_lowercase())
            );
        }
        assert_eq!(event_of('x'), None);
        assert_eq!(digit_of(16), None);
    }

    #[test]
    fn an_event_is_reported_once_at_its_end() {
        let mut rx = DtmfRx::default();
        let (s, ts) = (Ssrc(7), RtpTimestamp(1000));
        let ev = |duration, end| Event {
            event: 5,
            end,
            volume: 10,
            duration,
        };
        assert!(rx.on_packet(s, ts, &ev(160, false)).is_empty());
        assert!(rx.on_packet(s, ts, &ev(320, false)).is_empty());
        assert_eq!(rx.on_packet(s, ts, &ev(800, true)), vec![('5', 800)]);
        assert!(rx.on_packet(s, ts, &ev(800, true)).is_empty());
        assert!(rx.on_packet(s, ts, &ev(800, true)).is_empty());
        // The next digit without an end packet is reported when a third starts.
        assert!(rx
            .on_packet(
                s,
                RtpTimestamp(5000),
                &Event {
                    event: 11,
                    ..ev(480, false)
                }
            )
            .is_empty());
        assert_eq!(
            rx.on_packet(
                s,
                RtpTimestamp(9000),
                &Event {
                    event: 1,
                    ..ev(160, false)
                }
            ),
            vec![('#', 480)]
        );
    }

    #[test]
    fn a_plan_sends_each_digit_with_its_end_packets() {
        let steps = plan(
            "1,2",
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_millis(100),
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(
            steps,
            vec![
                Step::Digit {
                    event: 1,
                    length: Duration::from_millis(100)
                },
                Step::Gap(Duration::from_millis(100)),
                Step::Gap(PAUSE),
                Step::Digit {
                    event: 2,
                    length: Duration::from_millis(100)
                },
            ]
        );
        assert_eq!(
            plan(
                "1x",
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO
            ),
            Err('x')
        );
        let mut tx = DtmfTx::new(steps);
        let tick = Duration::from_millis(20);
        let mut packets = Vec::new();
        for _ in 0..200 {
            packets.push(tx.tick(tick));
            if tx.done() {
                break;
            }
        }
        let sent: Vec<(Event, bool)> = packets
            .iter()
            .flatten()
            .map(|o| (Event::parse(&o.payload).unwrap(), o.marker))
            .collect();
        // Digit 1: 5 packets of growing duration (160..800), the first
        // marked, then three ends at 800; the same for digit 2.
        let first: Vec<u16> = sent.iter().take(8).map(|(e, _)| e.duration).collect();
        assert_eq!(first, [160, 320, 480, 640, 800, 800, 800, 800]);
        assert!(sent[0].1 && !sent[1].1);
        assert_eq!(sent.iter().take(8).filter(|(e, _)| e.end).count(), 3);
        assert_eq!(sent.len(), 16);
        assert_eq!(sent[8].0.event, 2);
        assert!(sent[8].1);
        // The gap between them: 100 ms + 500 ms of silence = 30 ticks.
        let idle = packets.iter().skip(8).take_while(|p| p.is_none()).count();
        assert_eq!(idle, 30);
        assert!(tx.done());
    }
}
