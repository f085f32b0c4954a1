//! Taps: copies of a leg's or a bridge's audio for a consumer off the shard
//! (a recording's writer thread), handed over through a bounded queue.
//!
//! A leg's tap gets what the leg receives from its remote — the caller's
//! voice, as Asterisk records a channel — as the RTP payloads of the leg's
//! format with their sequence numbers and timestamps, not decoded (the
//! consumer decodes them). A bridge's tap gets the bridge's mix, as a member
//! that hears everyone would: PCM at the mix's rate, one tick per frame.
//!
//! Invariants: a tap never blocks the shard — a full queue drops the frame
//! and counts it ([`Tap::dropped`]); a consumer that has gone (its receiver
//! dropped) closes the tap, and the core forgets closed taps. Each frame is
//! one allocation of its payload; nothing else on the tick allocates.

use std::sync::mpsc::{SyncSender, TrySendError};

use super::Format;

/// The audio of one tap frame.
#[derive(Debug)]
pub enum TapAudio {
    /// A received RTP payload of the leg's format.
    Rtp {
        format: Format,
        seq: u16,
        timestamp: u32,
        payload: Box<[u8]>,
    },
    /// One tick of a mix, at `rate`.
    Pcm { rate: u32, samples: Box<[i16]> },
}

/// One frame for a tap's consumer.
#[derive(Debug)]
pub struct TapFrame {
    /// The control plane's number of the tap.
    pub key: u64,
    pub audio: TapAudio,
}

/// The sending end of a tap, held by the core.
pub struct Tap {
    key: u64,
    tx: SyncSender<TapFrame>,
    /// Frames dropped because the consumer's queue was full.
    pub dropped: u64,
    closed: bool,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("key", &self.key)
            .field("dropped", &self.dropped)
            .field("closed", &self.closed)
            .finish()
    }
}

impl Tap {
    /// A tap numbered `key` sending into `tx`.
    pub fn new(key: u64, tx: SyncSender<TapFrame>) -> Tap {
        Tap {
            key,
            tx,
            dropped: 0,
            closed: false,
        }
    }

    pub fn key(&self) -> u64 {
        self.key
    }

    /// True once the consumer has gone.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Hands a frame to the consumer without waiting.
    pub fn push(&mut self, audio: TapAudio) {
        if self.closed {
            return;
        }
        match self.tx.try_send(TapFrame {
            key: self.key,
            audio,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped += 1,
            Err(TrySendError::Disconnected(_)) => self.closed = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_a_gone_consumer_closes() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let mut tap = Tap::new(3, tx);
        let pcm = || TapAudio::Pcm {
            rate: 8000,
            samples: vec![0; 160].into(),
        };
        tap.push(pcm());
        tap.push(pcm());
        assert_eq!(tap.dropped, 1);
        assert_eq!(rx.recv().unwrap().key, 3);
        drop(rx);
        tap.push(pcm());
        assert!(tap.is_closed());
    }
}
