//! [`MediaPlane`]: the data plane as the ARI operations use it — create and
//! destroy legs, set and destroy bridges, mute, hold, statistics — behind an
//! object-safe trait, so the control plane runs against the shards
//! ([`Dataplane`], implemented here by delegation) or against anything else
//! that keeps the same contract (the test fake, `control::fake`).
//!
//! Contract, as [`Dataplane`] keeps it: an operation's future resolves once
//! the data plane has applied it (or refused it, leaving nothing half done);
//! `set_bridge` answers the technology chosen for exactly the membership
//! given; legs and bridges are numbered by the caller ([`LegId`],
//! [`BridgeKey`]). Every operation resolves within the plane's deadline
//! (`Timeout` otherwise), so a caller holding the control lock across one
//! never waits without a bound. A plane may lose a shard: `check_shards`
//! reports each loss once, with the legs and bridges that went with it
//! (the control plane then ends their channels); afterwards operations on
//! those legs fail with `ShardGone`, destroying them only forgets them, and
//! a lost bridge set again is placed anew. Errors are [`DataplaneError`],
//! which may gain variants: callers match it with a fallback arm.

use crate::driver::DriverChoice;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::media::dtmf::Step;
use crate::media::Format;
use crate::media::{MediaDone, MediaOp, SnoopSpec, Target};
use crate::shard::{
    BridgeKey, BridgeSpec, Dataplane, DataplaneError, Direction, LegId, LegSpec, RtpStats,
    ShardDown, Technology,
};

/// A data-plane operation in flight.
pub type PlaneFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DataplaneError>> + Send + 'a>>;

/// The data plane's operations, as the control plane calls them.
pub trait MediaPlane: Send + Sync {
    /// The number of shards (for `/metrics`).
    fn shard_count(&self) -> usize;
    /// Binds a socket for a new RTP leg; answers its local address.
    fn create_rtp_leg(&self, leg: LegId, spec: LegSpec) -> PlaneFuture<'_, SocketAddr>;
    /// Creates the two halves of a Local pair, joined back to back.
    fn create_local_pair(&self, a: LegId, b: LegId, format: Format) -> PlaneFuture<'_, ()>;
    /// Creates a snoop leg on `target` (see `media::SnoopSpec`).
    fn create_snoop_leg(&self, leg: LegId, target: LegId, spec: SnoopSpec) -> PlaneFuture<'_, ()>;
    /// Removes a leg; `Unknown` if there is none.
    fn destroy_leg(&self, leg: LegId) -> PlaneFuture<'_, ()>;
    /// Sets a bridge's membership and flags (creating it if new); answers the
    /// technology chosen. `Unknown` if a member leg does not exist.
    fn set_bridge(&self, bridge: BridgeKey, spec: BridgeSpec) -> PlaneFuture<'_, Technology>;
    /// Removes a bridge.
    fn destroy_bridge(&self, bridge: BridgeKey) -> PlaneFuture<'_, ()>;
    /// Mutes or unmutes a leg in one or both directions.
    fn set_mute(&self, leg: LegId, direction: Direction, on: bool) -> PlaneFuture<'_, ()>;
    /// Applies a media operation (play, music on hold, record) to a leg or
    /// a bridge (`Unknown` if there is none).
    fn media_op(&self, target: Target, op: MediaOp) -> PlaneFuture<'_, MediaDone>;
    /// Starts (silence ms, threshold) or stops talk detection on a leg.
    fn set_talk_detect(&self, leg: LegId, params: Option<(u32, u32)>) -> PlaneFuture<'_, ()>;
    /// Sends digits on a leg as RFC 4733 events.
    fn send_dtmf(&self, leg: LegId, steps: Vec<Step>) -> PlaneFuture<'_, ()>;
    /// Changes a leg's format; answers its bridge's technology, chosen
    /// anew (`None` outside a bridge).
    fn set_format(&self, leg: LegId, format: Format) -> PlaneFuture<'_, Option<Technology>>;
    /// Points an RTP leg at a new remote (`None`: learn it).
    fn set_remote(&self, leg: LegId, remote: Option<SocketAddr>) -> PlaneFuture<'_, ()>;
    /// Puts a leg on hold or takes it off.
    fn set_hold(&self, leg: LegId, on: bool) -> PlaneFuture<'_, ()>;
    /// A leg's counters.
    fn rtp_stats(&self, leg: LegId) -> PlaneFuture<'_, RtpStats>;
    /// The shard a leg lives on now, if it exists (diagnostics).
    fn shard_of_leg(&self, leg: LegId) -> Option<usize>;
    /// The I/O driver the shards run and why (for `/metrics`); `None` for a
    /// plane without one.
    fn driver(&self) -> Option<&DriverChoice>;
    /// Which shards are alive, by index (for `/metrics`).
    fn shards_up(&self) -> Vec<bool>;
    /// Shards found dead since the last call, each reported once with the
    /// legs and bridges lost; never blocks (the watchdog calls it).
    fn check_shards(&self) -> Vec<ShardDown>;
    /// RTP port pairs free in the pool now and in all (for `/metrics`);
    /// `None` for a plane without a pool.
    fn rtp_port_pairs(&self) -> Option<(usize, usize)> {
        None
    }
}

impl MediaPlane for Dataplane {
    fn shard_count(&self) -> usize {
        Dataplane::shard_count(self)
    }

    fn create_rtp_leg(&self, leg: LegId, spec: LegSpec) -> PlaneFuture<'_, SocketAddr> {
        Box::pin(Dataplane::create_rtp_leg(self, leg, spec))
    }

    fn create_local_pair(&self, a: LegId, b: LegId, format: Format) -> PlaneFuture<'_, ()> {
        Box::pin(Dataplane::create_local_pair(self, a, b, format))
    }

    fn create_snoop_leg(&self, leg: LegId, target: LegId, spec: SnoopSpec) -> PlaneFuture<'_, ()> {
        Box::pin(Dataplane::create_snoop_leg(self, leg, target, spec))
    }

    fn destroy_leg(&self, leg: LegId) -> PlaneFuture<'_, ()> {
        Box::pin(Dataplane::destroy_leg(self, leg))
    }

    fn set_bridge(&self, bridge: BridgeKey, spec: BridgeSpec) -> PlaneFuture<'_, Technology> {
        Box::pin(Dataplane::set_bridge(self, bridge, spec))
    }

    fn destroy_bridge(&self, bridge: BridgeKey) -> PlaneFuture<'_, ()> {
        Box::pin(Dataplane::destroy_bridge(self, bridge))
    }

    fn set_mute(&self, leg: LegId, direction: Direction, on: bool) -> PlaneFuture<'_, ()> {
        Box::pin(Dataplane::set_mute(self, leg, direction, on))
    }

    fn media_op(&self, target: Target, op: MediaOp) -> PlaneFuture<'_, MediaDone> {
        Box::pin(Dataplane::media_op(self, target, op))
    }

    fn set_talk_detect(&self, leg: LegId, params: Option<(u32, u32)>) -> PlaneFuture<'_, ()> {
        Box::pin(Dataplane::set_talk_detect(self, leg, params))
    }

    fn send_dtmf(&self, leg: LegId, steps: Vec<Step>) -> PlaneFuture<'_, ()> {
        Box::pin(Dataplane::send_dtmf(self, leg, steps))
    }

    fn set_format(&self, leg: LegId, format: Format) -> PlaneFuture<'_, Option<Technology>> {
        Box::pin(Dataplane::set_format(self, leg, format))
    }

    fn set_remote(&self, leg: LegId, remote: Option<SocketAddr>) -> PlaneFuture<'_, ()> {
        Box::pin(Dataplane::set_remote(self, leg, remote))
    }

    fn set_hold(&self, leg: LegId, on: bool) -> PlaneFuture<'_, ()> {
        Box::pin(Dataplane::set_hold(self, leg, on))
    }

    fn rtp_stats(&self, leg: LegId) -> PlaneFuture<'_, RtpStats> {
        Box::pin(Dataplane::rtp_stats(self, leg))
    }

    fn shard_of_leg(&self, leg: LegId) -> Option<usize> {
        Dataplane::shard_of_leg(self, leg)
    }

    fn driver(&self) -> Option<&DriverChoice> {
        Some(Dataplane::driver(self))
    }

    fn shards_up(&self) -> Vec<bool> {
        Dataplane::shards_up(self)
    }

    fn check_shards(&self) -> Vec<ShardDown> {
        Dataplane::check_shards(self)
    }

    fn rtp_port_pairs(&self) -> Option<(usize, usize)> {
        Some(Dataplane::rtp_port_pairs(self))
    }
}

/// A shared plane (a test keeps one handle to inject faults while the node
/// owns the other).
impl<P: MediaPlane + ?Sized> MediaPlane for Arc<P> {
    fn shard_count(&self) -> usize {
        (**self).shard_count()
    }

    fn create_rtp_leg(&self, leg: LegId, spec: LegSpec) -> PlaneFuture<'_, SocketAddr> {
        (**self).create_rtp_leg(leg, spec)
    }

    fn create_local_pair(&self, a: LegId, b: LegId, format: Format) -> PlaneFuture<'_, ()> {
        (**self).create_local_pair(a, b, format)
    }

    fn create_snoop_leg(&self, leg: LegId, target: LegId, spec: SnoopSpec) -> PlaneFuture<'_, ()> {
        (**self).create_snoop_leg(leg, target, spec)
    }

    fn destroy_leg(&self, leg: LegId) -> PlaneFuture<'_, ()> {
        (**self).destroy_leg(leg)
    }

    fn set_bridge(&self, bridge: BridgeKey, spec: BridgeSpec) -> PlaneFuture<'_, Technology> {
        (**self).set_bridge(bridge, spec)
    }

    fn destroy_bridge(&self, bridge: BridgeKey) -> PlaneFuture<'_, ()> {
        (**self).destroy_bridge(bridge)
    }

    fn set_mute(&self, leg: LegId, direction: Direction, on: bool) -> PlaneFuture<'_, ()> {
        (**self).set_mute(leg, direction, on)
    }

    fn media_op(&self, target: Target, op: MediaOp) -> PlaneFuture<'_, MediaDone> {
        (**self).media_op(target, op)
    }

    fn set_talk_detect(&self, leg: LegId, params: Option<(u32, u32)>) -> PlaneFuture<'_, ()> {
        (**self).set_talk_detect(leg, params)
    }

    fn send_dtmf(&self, leg: LegId, steps: Vec<Step>) -> PlaneFuture<'_, ()> {
        (**self).send_dtmf(leg, steps)
    }

    fn set_format(&self, leg: LegId, format: Format) -> PlaneFuture<'_, Option<Technology>> {
        (**self).set_format(leg, format)
    }

    fn set_remote(&self, leg: LegId, remote: Option<SocketAddr>) -> PlaneFuture<'_, ()> {
        (**self).set_remote(leg, remote)
    }

    fn set_hold(&self, leg: LegId, on: bool) -> PlaneFuture<'_, ()> {
        (**self).set_hold(leg, on)
    }

    fn rtp_stats(&self, leg: LegId) -> PlaneFuture<'_, RtpStats> {
        (**self).rtp_stats(leg)
    }

    fn shard_of_leg(&self, leg: LegId) -> Option<usize> {
        (**self).shard_of_leg(leg)
    }

    fn driver(&self) -> Option<&DriverChoice> {
        (**self).driver()
    }

    fn shards_up(&self) -> Vec<bool> {
        (**self).shards_up()
    }

    fn check_shards(&self) -> Vec<ShardDown> {
        (**self).check_shards()
    }

    fn rtp_port_pairs(&self) -> Option<(usize, usize)> {
        (**self).rtp_port_pairs()
    }
}
