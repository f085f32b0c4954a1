//! Where the ids the node makes up come from: generated channel ids, bridge
//! ids and the counter in channel names. The [`Registry`](super::Registry) is
//! given an [`IdGenerator`]: [`ClockIds`] in the node, [`SequentialIds`] where
//! the ids must be known in advance (tests, reproducible runs).
//!
//! Contract of a generator: it never returns the same channel id, nor the same
//! bridge id, twice. The registry still skips a generated id that a client
//! already took (clients may choose ids of the generated shape), and gives up
//! with `ControlError::GeneratedIdsExhausted` rather than loop if a generator
//! breaks the contract.

use crate::clock::Timestamp;

/// A source of generated ids.
pub trait IdGenerator: Send + Sync {
    /// A new channel id, for a channel the client did not name.
    fn channel_id(&mut self) -> String;
    /// A new bridge id, for a bridge the client did not name.
    fn bridge_id(&mut self) -> String;
    /// The next channel name counter, shown as 8 hex digits
    /// (`UnicastRTP/HOST:PORT-0000000N`); it wraps around.
    fn name_counter(&mut self) -> u32;
}

/// The node's ids: channel ids `<start epoch>.<n>` (seconds since the Unix
/// epoch when the node started, then a counter from 1), bridge ids random
/// UUIDv4, name counters from 0.
#[derive(Debug)]
pub struct ClockIds {
    epoch: u64,
    channels: u64,
    names: u32,
}

impl ClockIds {
    /// Ids of a node started at `started`.
    pub fn new(started: Timestamp) -> ClockIds {
        ClockIds {
            epoch: started.0 / 1000,
            channels: 0,
            names: 0,
        }
    }
}

impl IdGenerator for ClockIds {
    fn channel_id(&mut self) -> String {
        self.channels += 1;
        format!("{}.{}", self.epoch, self.channels)
    }

    fn bridge_id(&mut self) -> String {
        uuid::Uuid::new_v4().to_string()
    }

    fn name_counter(&mut self) -> u32 {
        let n = self.names;
        self.names = self.names.wrapping_add(1);
        n
    }
}

/// Deterministic ids of the same shapes: channel ids `<epoch>.<n>` for a
/// fixed `epoch`, bridge ids UUIDv4-shaped from a counter
/// (`00000000-0000-4000-8000-00000000000N`), name counters from 0. Two
/// registries given equal generators and the same operations make the same
/// ids.
#[derive(Debug)]
pub struct SequentialIds {
    epoch: u64,
    channels: u64,
    bridges: u64,
    names: u32,
}

impl SequentialIds {
    /// Channel ids `<epoch>.1`, `<epoch>.2`, …
    pub fn new(epoch: u64) -> SequentialIds {
        SequentialIds {
            epoch,
            channels: 0,
            bridges: 0,
            names: 0,
        }
    }
}

impl IdGenerator for SequentialIds {
    fn channel_id(&mut self) -> String {
        self.channels += 1;
        format!("{}.{}", self.epoch, self.channels)
    }

    fn bridge_id(&mut self) -> String {
        self.bridges += 1;
        // Version nibble 4 and variant 8: parses as a UUIDv4.
        format!("00000000-0000-4000-8000-{:012x}", self.bridges)
    }

    fn name_counter(&mut self) -> u32 {
        let n = self.names;
        self.names = self.names.wrapping_add(1);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_ids_have_the_documented_shapes() {
        let mut ids = ClockIds::new(Timestamp(1_795_358_696_270));
        assert_eq!(ids.channel_id(), "1795358696.1");
        assert_eq!(ids.channel_id(), "1795358696.2");
        let b = ids.bridge_id();
        let parsed = uuid::Uuid::parse_str(&b).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_ne!(ids.bridge_id(), b);
        assert_eq!((ids.name_counter(), ids.name_counter()), (0, 1));
    }

    #[test]
    fn sequential_ids_repeat_across_generators_and_parse_as_uuids() {
        let (mut a, mut b) = (SequentialIds::new(7), SequentialIds::new(7));
        for _ in 0..3 {
            assert_eq!(a.channel_id(), b.channel_id());
            assert_eq!(a.bridge_id(), b.bridge_id());
        }
        assert_eq!(a.channel_id(), "7.4");
        let bridge = a.bridge_id();
        assert_eq!(bridge, "00000000-0000-4000-8000-000000000004");
        let parsed = uuid::Uuid::parse_str(&bridge).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
    }
}
