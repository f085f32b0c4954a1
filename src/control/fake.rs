//! Test support (compiled for the crate's unit tests only): [`FakePlane`], a
//! [`MediaPlane`] with no shard thread and no socket, so ARI operations can
//! run end to end — handlers, registry, events — in a plain `#[tokio::test]`.
//!
//! It keeps what a data plane must keep for the control plane to be checked
//! against it: which legs and bridges exist (an operation on an unknown leg
//! or bridge answers `Unknown`, as the shards do), and every call it got, in
//! order, including the refused ones. It can be told to refuse the next call
//! of an operation ([`FakePlane::fail_next`]) and which technology
//! `set_bridge` answers ([`FakePlane::report_technology`]; `simple_bridge`
//! until told). It does not choose technologies by the shard's table: the
//! test says what the data plane answers and checks that ARI shows it.
//!
//! Every leg and bridge lives on one shard, the lowest one alive. A test can
//! make a shard die ([`FakePlane::lose_shard`]): as the shards' `Dataplane`
//! does, the next `check_shards` reports it once with what lived on it; then
//! operations on its legs answer `ShardGone`, destroying them or its bridges
//! only forgets them, a lost bridge set again is placed anew, and new legs
//! go to the next shard alive (`ShardGone` when none is left).
//!
//! Clones share one state, so a test keeps a clone to inspect while the node
//! owns the other.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use super::plane::{MediaPlane, PlaneFuture};
use crate::media::Format;
use crate::shard::{
    BridgeKey, BridgeSpec, DataplaneError, Direction, LegId, LegSpec, RtpStats, ShardDown,
    Technology,
};

/// The operations of [`MediaPlane`] that are asked of the data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    CreateRtpLeg,
    CreateLocalPair,
    CreateSnoopLeg,
    DestroyLeg,
    SetBridge,
    DestroyBridge,
    SetMute,
    Media,
    SetTalkDetect,
    SendDtmf,
    SetFormat,
    SetRemote,
    SetHold,
    RtpStats,
}

/// One call the fake got, with its arguments.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    CreateRtpLeg {
        leg: LegId,
        remote: SocketAddr,
        format: Format,
    },
    CreateLocalPair {
        a: LegId,
        b: LegId,
        format: Format,
    },
    CreateSnoopLeg {
        leg: LegId,
        target: LegId,
        spec: crate::media::SnoopSpec,
    },
    DestroyLeg {
        leg: LegId,
    },
    SetBridge {
        bridge: BridgeKey,
        spec: BridgeSpec,
    },
    DestroyBridge {
        bridge: BridgeKey,
    },
    SetMute {
        leg: LegId,
        direction: Direction,
        on: bool,
    },
    /// A media operation, by its debug form (clips and taps do not compare).
    Media {
        target: crate::media::Target,
        op: String,
    },
    SetTalkDetect {
        leg: LegId,
        params: Option<(u32, u32)>,
    },
    SendDtmf {
        leg: LegId,
        steps: Vec<crate::media::dtmf::Step>,
    },
    SetFormat {
        leg: LegId,
        format: Format,
    },
    SetRemote {
        leg: LegId,
        remote: Option<SocketAddr>,
    },
    SetHold {
        leg: LegId,
        on: bool,
    },
    RtpStats {
        leg: LegId,
    },
}

impl Call {
    /// The operation called.
    pub fn op(&self) -> Op {
        match self {
            Call::CreateRtpLeg { .. } => Op::CreateRtpLeg,
            Call::CreateLocalPair { .. } => Op::CreateLocalPair,
            Call::CreateSnoopLeg { .. } => Op::CreateSnoopLeg,
            Call::DestroyLeg { .. } => Op::DestroyLeg,
            Call::SetBridge { .. } => Op::SetBridge,
            Call::DestroyBridge { .. } => Op::DestroyBridge,
            Call::SetMute { .. } => Op::SetMute,
            Call::Media { .. } => Op::Media,
            Call::SetTalkDetect { .. } => Op::SetTalkDetect,
            Call::SendDtmf { .. } => Op::SendDtmf,
            Call::SetFormat { .. } => Op::SetFormat,
            Call::SetRemote { .. } => Op::SetRemote,
            Call::SetHold { .. } => Op::SetHold,
            Call::RtpStats { .. } => Op::RtpStats,
        }
    }
}

#[derive(Debug)]
struct State {
    calls: Vec<Call>,
    /// Refusals still to give, in the order they were asked for.
    failures: Vec<(Op, DataplaneError)>,
    technology: Technology,
    shards: usize,
    legs: BTreeSet<LegId>,
    bridges: BTreeMap<BridgeKey, BridgeSpec>,
    /// What `rtp_stats` answers (with the leg's local address filled in).
    stats: RtpStats,
    /// Shards dead.
    down: BTreeSet<usize>,
    /// Deaths not reported yet.
    unreported: Vec<ShardDown>,
    /// Legs and bridges that went with a dead shard, not yet destroyed.
    lost_legs: BTreeSet<LegId>,
    lost_bridges: BTreeSet<BridgeKey>,
}

impl State {
    /// The shard everything lives on: the lowest one alive.
    fn home(&self) -> Option<usize> {
        (0..self.shards).find(|s| !self.down.contains(s))
    }
}

/// A data plane in memory; see the module docs.
#[derive(Clone, Debug)]
pub struct FakePlane {
    state: Arc<Mutex<State>>,
}

impl Default for FakePlane {
    fn default() -> FakePlane {
        FakePlane::new()
    }
}

impl FakePlane {
    /// No legs, no bridges, one shard, answering `simple_bridge`.
    pub fn new() -> FakePlane {
        FakePlane {
            state: Arc::new(Mutex::new(State {
                calls: Vec::new(),
                failures: Vec::new(),
                technology: Technology::SimpleBridge,
                shards: 1,
                legs: BTreeSet::new(),
                bridges: BTreeMap::new(),
                stats: RtpStats::default(),
                down: BTreeSet::new(),
                unreported: Vec::new(),
                lost_legs: BTreeSet::new(),
                lost_bridges: BTreeSet::new(),
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves plain data behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next call of `op` is refused with `error` (and changes nothing).
    pub fn fail_next(&self, op: Op, error: DataplaneError) {
        self.state().failures.push((op, error));
    }

    /// From now on `set_bridge` answers `technology`.
    pub fn report_technology(&self, technology: Technology) {
        self.state().technology = technology;
    }

    /// `rtp_stats` answers `stats` (with the leg's local address) from now on.
    pub fn report_stats(&self, stats: RtpStats) {
        self.state().stats = stats;
    }

    /// `shard_count` answers `shards` from now on.
    pub fn set_shard_count(&self, shards: usize) {
        self.state().shards = shards;
    }

    /// Shard `shard` dies for `reason`; if everything lived there, every
    /// leg and bridge is lost with it (see the module docs).
    pub fn lose_shard(&self, shard: usize, reason: &str) {
        let mut state = self.state();
        let home = state.home();
        if !state.down.insert(shard) {
            return;
        }
        let (legs, bridges) = if home == Some(shard) {
            let legs = std::mem::take(&mut state.legs);
            let bridges = std::mem::take(&mut state.bridges);
            (legs, bridges.into_keys().collect())
        } else {
            (BTreeSet::new(), BTreeSet::new())
        };
        state.lost_legs.extend(legs.iter().copied());
        state.lost_bridges.extend(bridges.iter().copied());
        state.unreported.push(ShardDown {
            shard,
            reason: reason.to_string(),
            legs: legs.into_iter().collect(),
            bridges: bridges.into_iter().collect(),
        });
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Every call so far, in order; forgets them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state().calls)
    }

    /// The legs that exist.
    pub fn legs(&self) -> Vec<LegId> {
        self.state().legs.iter().copied().collect()
    }

    /// A bridge's current membership and flags, if it exists.
    pub fn bridge(&self, bridge: BridgeKey) -> Option<BridgeSpec> {
        self.state().bridges.get(&bridge).cloned()
    }

    /// Records `call`, then gives the refusal asked for its operation, if
    /// any, or applies it with `apply`.
    fn handle<T: Send + 'static>(
        &self,
        call: Call,
        apply: impl FnOnce(&mut State) -> Result<T, DataplaneError>,
    ) -> PlaneFuture<'_, T> {
        let mut state = self.state();
        let op = call.op();
        state.calls.push(call);
        let result = match state.failures.iter().position(|(o, _)| *o == op) {
            Some(i) => Err(state.failures.remove(i).1),
            None => apply(&mut state),
        };
        Box::pin(std::future::ready(result))
    }
}

/// The local address the fake gives leg `leg`: 127.0.0.1, an even port.
fn local_addr(leg: LegId) -> SocketAddr {
    let port = 10_000 + 2 * (leg.0 % 27_000);
    SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap_or(10_000)))
}

fn known(state: &State, leg: LegId) -> Result<(), DataplaneError> {
    if state.legs.contains(&leg) {
        Ok(())
    } else if state.lost_legs.contains(&leg) {
        Err(DataplaneError::ShardGone)
    } else {
        Err(DataplaneError::Unknown)
    }
}

/// A new leg id: not in use, and a shard alive to hold it.
fn placeable(state: &State, leg: LegId) -> Result<(), DataplaneError> {
    if state.legs.contains(&leg) || state.lost_legs.contains(&leg) {
        return Err(DataplaneError::Io("leg id already in use".into()));
    }
    state.home().map(|_| ()).ok_or(DataplaneError::ShardGone)
}

impl MediaPlane for FakePlane {
    fn shard_count(&self) -> usize {
        self.state().shards
    }

    fn create_rtp_leg(&self, leg: LegId, spec: LegSpec) -> PlaneFuture<'_, SocketAddr> {
        let call = Call::CreateRtpLeg {
            leg,
            remote: spec.remote,
            format: spec.format,
        };
        self.handle(call, |s| {
            placeable(s, leg)?;
            s.legs.insert(leg);
            Ok(local_addr(leg))
        })
    }

    fn create_local_pair(&self, a: LegId, b: LegId, format: Format) -> PlaneFuture<'_, ()> {
        self.handle(Call::CreateLocalPair { a, b, format }, |s| {
            placeable(s, a)?;
            placeable(s, b)?;
            s.legs.insert(a);
            s.legs.insert(b);
            Ok(())
        })
    }

    fn create_snoop_leg(
        &self,
        leg: LegId,
        target: LegId,
        spec: crate::media::SnoopSpec,
    ) -> PlaneFuture<'_, ()> {
        self.handle(Call::CreateSnoopLeg { leg, target, spec }, move |s| {
            known(s, target)?;
            placeable(s, leg)?;
            s.legs.insert(leg);
            Ok(())
        })
    }

    fn destroy_leg(&self, leg: LegId) -> PlaneFuture<'_, ()> {
        self.handle(Call::DestroyLeg { leg }, |s| {
            if s.lost_legs.remove(&leg) {
                return Ok(());
            }
            known(s, leg)?;
            s.legs.remove(&leg);
            for spec in s.bridges.values_mut() {
                spec.members.retain(|m| m.leg != leg);
            }
            Ok(())
        })
    }

    fn set_bridge(&self, bridge: BridgeKey, spec: BridgeSpec) -> PlaneFuture<'_, Technology> {
        let call = Call::SetBridge {
            bridge,
            spec: spec.clone(),
        };
        self.handle(call, |s| {
            for m in &spec.members {
                known(s, m.leg)?;
            }
            s.home().ok_or(DataplaneError::ShardGone)?;
            s.lost_bridges.remove(&bridge);
            s.bridges.insert(bridge, spec);
            Ok(s.technology)
        })
    }

    fn destroy_bridge(&self, bridge: BridgeKey) -> PlaneFuture<'_, ()> {
        self.handle(Call::DestroyBridge { bridge }, |s| {
            if s.lost_bridges.remove(&bridge) {
                return Ok(());
            }
            s.bridges
                .remove(&bridge)
                .map(|_| ())
                .ok_or(DataplaneError::Unknown)
        })
    }

    fn set_mute(&self, leg: LegId, direction: Direction, on: bool) -> PlaneFuture<'_, ()> {
        self.handle(Call::SetMute { leg, direction, on }, |s| known(s, leg))
    }

    fn media_op(
        &self,
        target: crate::media::Target,
        op: crate::media::MediaOp,
    ) -> PlaneFuture<'_, crate::media::MediaDone> {
        let name = format!("{op:?}");
        self.handle(Call::Media { target, op: name }, move |s| {
            match target {
                crate::media::Target::Leg(leg) => known(s, leg)?,
                crate::media::Target::Bridge(b) if s.bridges.contains_key(&b) => {}
                crate::media::Target::Bridge(_) => return Err(DataplaneError::Unknown),
            }
            Ok(crate::media::MediaDone {
                applied: true,
                technology: None,
            })
        })
    }

    fn set_talk_detect(&self, leg: LegId, params: Option<(u32, u32)>) -> PlaneFuture<'_, ()> {
        self.handle(Call::SetTalkDetect { leg, params }, |s| known(s, leg))
    }

    fn send_dtmf(&self, leg: LegId, steps: Vec<crate::media::dtmf::Step>) -> PlaneFuture<'_, ()> {
        self.handle(Call::SendDtmf { leg, steps }, |s| known(s, leg))
    }

    fn set_format(&self, leg: LegId, format: Format) -> PlaneFuture<'_, Option<Technology>> {
        self.handle(Call::SetFormat { leg, format }, |s| {
            known(s, leg)?;
            Ok(None)
        })
    }

    fn set_remote(&self, leg: LegId, remote: Option<SocketAddr>) -> PlaneFuture<'_, ()> {
        self.handle(Call::SetRemote { leg, remote }, |s| known(s, leg))
    }

    fn set_hold(&self, leg: LegId, on: bool) -> PlaneFuture<'_, ()> {
        self.handle(Call::SetHold { leg, on }, |s| known(s, leg))
    }

    fn rtp_stats(&self, leg: LegId) -> PlaneFuture<'_, RtpStats> {
        self.handle(Call::RtpStats { leg }, |s| {
            known(s, leg)?;
            Ok(RtpStats {
                local: Some(local_addr(leg)),
                ..s.stats.clone()
            })
        })
    }

    fn shard_of_leg(&self, leg: LegId) -> Option<usize> {
        let state = self.state();
        if state.legs.contains(&leg) {
            state.home()
        } else {
            None
        }
    }

    fn driver(&self) -> Option<&crate::driver::DriverChoice> {
        None
    }

    fn shards_up(&self) -> Vec<bool> {
        let state = self.state();
        (0..state.shards)
            .map(|s| !state.down.contains(&s))
            .collect()
    }

    fn check_shards(&self) -> Vec<ShardDown> {
        std::mem::take(&mut self.state().unreported)
    }
}
