//! The data plane as the control plane sees it: [`Dataplane`], a handle to the
//! shard threads, reached only by messages.
//!
//! Invariants:
//! - The control plane never touches a socket or media state: it sends a
//!   [`Command`] to the shard that owns the leg or bridge and awaits the reply.
//! - A shard owns a disjoint slice of the RTP port range; a leg's socket lives on
//!   exactly one shard.
//! - Ids here ([`LegId`], [`BridgeKey`]) are small numbers the control plane
//!   assigns; ARI's string ids never reach the data plane.
//! - A command wakes its shard through an eventfd its driver watches.
//!
//! # Placement
//! A new RTP leg or Local pair is created on shard `id % n` (a Local pair on
//! the shard of its first half). A bridge lives on the shard of its first
//! member when it is first set (or `bridge % n` when empty) and stays there.
//! [`Dataplane::set_bridge`] first gathers everything that must share the
//! bridge's shard — its members, the other half of each Local pair among
//! them, and, transitively, the bridges those are in and their members — and
//! moves each leg that lives elsewhere: the old shard cancels the leg's
//! operations and hands its state (socket and RTP state) back in a message
//! ([`Command::Detach`]), the new shard adopts it ([`Command::Attach`]);
//! other bridges involved are re-created on the new shard. Nothing is
//! shared between shards; the routing table here is touched only by the
//! control plane. Commands of one leg must not be issued concurrently with a
//! `set_bridge` that moves it (the control plane serialises them per bridge).
//!
//! # Inside a shard
//! Each shard thread runs the sans-IO media core ([`crate::media::Core`])
//! with an I/O driver ([`crate::driver`]: io_uring or epoll, chosen once
//! at start); commands reach it through the shard's bounded queue and an
//! eventfd write.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::config::Config;
use crate::driver::{DriverChoice, ShardStart};
use crate::media::Format;

pub use crate::media::{BridgeKey, BridgeSpec, Direction, LegId, MemberSpec, RtpStats, Technology};

/// What a new RTP leg is to talk to.
#[derive(Clone, Debug)]
pub struct LegSpec {
    /// Where media is sent (externalMedia's `external_host`); an
    /// unspecified address or port 0 means "learn it from the first packet".
    pub remote: SocketAddr,
    /// The leg's audio format.
    pub format: Format,
}

/// Why the data plane refused a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataplaneError {
    /// No free RTP port in the shard's slice.
    NoPorts,
    /// The leg or bridge is not known to the shard.
    Unknown,
    /// The shard thread is gone (a bug, or shutdown).
    ShardGone,
    /// The shard's command queue stayed full for [`QUEUE_FULL_PATIENCE`].
    Busy,
    /// A socket error.
    Io(String),
}

impl fmt::Display for DataplaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataplaneError::NoPorts => f.write_str("no free RTP port"),
            DataplaneError::Busy => f.write_str("data plane shard is not keeping up with commands"),
            DataplaneError::Unknown => f.write_str("unknown leg or bridge"),
            DataplaneError::ShardGone => f.write_str("data plane shard is gone"),
            DataplaneError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, DataplaneError>>;

/// A message from the control plane to one shard.
#[derive(Debug)]
pub enum Command {
    CreateRtpLeg {
        leg: LegId,
        spec: LegSpec,
        reply: Reply<SocketAddr>,
    },
    CreateLocalPair {
        a: LegId,
        b: LegId,
        format: Format,
        reply: Reply<()>,
    },
    DestroyLeg {
        leg: LegId,
        reply: Reply<()>,
    },
    SetBridge {
        bridge: BridgeKey,
        spec: BridgeSpec,
        reply: Reply<Technology>,
    },
    DestroyBridge {
        bridge: BridgeKey,
        reply: Reply<()>,
    },
    SetMute {
        leg: LegId,
        direction: Direction,
        on: bool,
        reply: Reply<()>,
    },
    SetHold {
        leg: LegId,
        on: bool,
        reply: Reply<()>,
    },
    Stats {
        leg: LegId,
        reply: Reply<RtpStats>,
    },
    /// Removes a leg from this shard and hands its state back (to move it).
    Detach {
        leg: LegId,
        reply: Reply<LegTransfer>,
    },
    /// Adopts a leg detached from another shard.
    Attach {
        leg: LegTransfer,
        reply: Reply<()>,
    },
    Shutdown,
}

/// A leg's whole state (sockets included) on its way between shards; opaque.
pub struct LegTransfer(pub(crate) Box<crate::driver::Moving>);

impl fmt::Debug for LegTransfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LegTransfer")
    }
}

/// Where the control plane's ids live, and what binds them together.
#[derive(Default)]
struct Routes {
    /// Leg → (shard, Local pair peer).
    legs: HashMap<LegId, (usize, Option<LegId>)>,
    /// Bridge → (shard, members).
    bridges: HashMap<BridgeKey, (usize, BridgeSpec)>,
    /// Leg → the bridge it is a member of.
    membership: HashMap<LegId, BridgeKey>,
}

/// One shard as the handle sees it.
struct ShardHandle {
    commands: std_mpsc::SyncSender<Command>,
    wake: OwnedFd,
}

/// The control plane's handle to every shard.
pub struct Dataplane {
    driver: DriverChoice,
    shards: Vec<ShardHandle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    routes: Mutex<Routes>,
}

/// Depth of each shard's command queue.
const COMMAND_QUEUE: usize = 4096;

/// How long a command waits for room in a full shard queue before the ARI
/// operation fails with 503.
const QUEUE_FULL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

impl Dataplane {
    /// Starts the shards described by `config`.
    pub fn start(config: &Config) -> std::io::Result<Dataplane> {
        let driver = crate::driver::choose(config)?;
        let count = config.shard_count();
        let min = u32::from(config.rtp.port_min);
        let max = u32::from(config.rtp.port_max);
        let span = (max - min + 1) / count as u32;
        let mut this = Dataplane {
            driver: driver.clone(),
            shards: Vec::with_capacity(count),
            threads: Vec::with_capacity(count),
            routes: Mutex::default(),
        };
        for index in 0..count {
            let lo = min + span * index as u32;
            let hi = if index + 1 == count {
                max
            } else {
                lo + span - 1
            };
            let (tx, rx) = std_mpsc::sync_channel(COMMAND_QUEUE);
            // SAFETY: eventfd has no memory preconditions; the result is
            // checked before use.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: `fd` is a fresh descriptor nobody else owns.
            let wake = unsafe { OwnedFd::from_raw_fd(fd) };
            let (ready_tx, ready_rx) = std_mpsc::channel();
            let start = ShardStart {
                index,
                ports: lo as u16..=hi as u16,
                driver: driver.kind,
                commands: rx,
                wake: wake.try_clone()?,
                ready: ready_tx,
            };
            let shard_config = config.clone();
            this.threads.push(
                std::thread::Builder::new()
                    .name(format!("shard-{index}"))
                    .spawn(move || crate::driver::run_shard(&shard_config, start))?,
            );
            this.shards.push(ShardHandle { commands: tx, wake });
            let ready = ready_rx
                .recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("shard thread died at start")));
            if let Err(e) = ready {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("shard {index}: {} set-up failed: {e}", driver.kind.name()),
                ));
            }
        }
        Ok(this)
    }

    /// The I/O driver the shards run, and why it was chosen.
    pub fn driver(&self) -> &DriverChoice {
        &self.driver
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard a new id is created on.
    fn home(&self, id: u64) -> usize {
        (id % self.shards.len() as u64) as usize
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        // A panic while holding the lock leaves plain maps behind: usable.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shard a leg lives on now.
    fn leg_shard(&self, leg: LegId) -> usize {
        self.routes()
            .legs
            .get(&leg)
            .map_or_else(|| self.home(leg), |r| r.0)
    }

    async fn call<T>(
        &self,
        shard: usize,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, DataplaneError> {
        let (tx, rx) = oneshot::channel();
        let handle = &self.shards[shard];
        let mut command = make(tx);
        // Never block the control thread on a full queue: wake the shard and
        // retry asynchronously, for a bounded time.
        let deadline = std::time::Instant::now() + QUEUE_FULL_PATIENCE;
        loop {
            match handle.commands.try_send(command) {
                Ok(()) => break,
                Err(std_mpsc::TrySendError::Disconnected(_)) => {
                    return Err(DataplaneError::ShardGone)
                }
                Err(std_mpsc::TrySendError::Full(back)) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(DataplaneError::Busy);
                    }
                    command = back;
                    wake(&handle.wake);
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        }
        wake(&handle.wake);
        rx.await.map_err(|_| DataplaneError::ShardGone)?
    }

    /// Binds a socket for a new RTP leg; returns its local address.
    pub async fn create_rtp_leg(
        &self,
        leg: LegId,
        spec: LegSpec,
    ) -> Result<SocketAddr, DataplaneError> {
        let shard = self.home(leg);
        let local = self
            .call(shard, |reply| Command::CreateRtpLeg { leg, spec, reply })
            .await?;
        self.routes().legs.insert(leg, (shard, None));
        Ok(local)
    }

    /// Creates the two halves of a Local channel pair, joined back to back.
    pub async fn create_local_pair(
        &self,
        a: LegId,
        b: LegId,
        format: Format,
    ) -> Result<(), DataplaneError> {
        let shard = self.home(a);
        self.call(shard, |reply| Command::CreateLocalPair {
            a,
            b,
            format,
            reply,
        })
        .await?;
        let mut routes = self.routes();
        routes.legs.insert(a, (shard, Some(b)));
        routes.legs.insert(b, (shard, Some(a)));
        Ok(())
    }

    /// Removes a leg (and closes its socket).
    pub async fn destroy_leg(&self, leg: LegId) -> Result<(), DataplaneError> {
        let shard = self.leg_shard(leg);
        self.call(shard, |reply| Command::DestroyLeg { leg, reply })
            .await?;
        let mut routes = self.routes();
        if let Some((_, Some(peer))) = routes.legs.remove(&leg) {
            if let Some(r) = routes.legs.get_mut(&peer) {
                r.1 = None;
            }
        }
        routes.membership.remove(&leg);
        Ok(())
    }

    /// Sets a bridge's membership and flags; returns the technology chosen.
    /// Members living on other shards are moved to the bridge's shard first
    /// (see the module docs, Placement).
    pub async fn set_bridge(
        &self,
        bridge: BridgeKey,
        spec: BridgeSpec,
    ) -> Result<Technology, DataplaneError> {
        let (target, moves, rebuilds) = {
            let routes = self.routes();
            if spec
                .members
                .iter()
                .any(|m| !routes.legs.contains_key(&m.leg))
            {
                return Err(DataplaneError::Unknown);
            }
            let target = match routes.bridges.get(&bridge) {
                Some((shard, _)) => *shard,
                None => spec
                    .members
                    .first()
                    .and_then(|m| routes.legs.get(&m.leg))
                    .map_or_else(|| self.home(bridge), |r| r.0),
            };
            // Everything that must share the target shard.
            let mut legs: HashSet<LegId> = HashSet::new();
            let mut bridges: HashSet<BridgeKey> = HashSet::new();
            let mut queue: Vec<LegId> = spec.members.iter().map(|m| m.leg).collect();
            while let Some(leg) = queue.pop() {
                if !legs.insert(leg) {
                    continue;
                }
                if let Some((_, Some(peer))) = routes.legs.get(&leg) {
                    queue.push(*peer);
                }
                if let Some(&other) = routes.membership.get(&leg) {
                    if other != bridge && bridges.insert(other) {
                        if let Some((_, other_spec)) = routes.bridges.get(&other) {
                            queue.extend(other_spec.members.iter().map(|m| m.leg));
                        }
                    }
                }
            }
            let moves: Vec<(LegId, usize)> = legs
                .into_iter()
                .filter_map(|l| routes.legs.get(&l).map(|r| (l, r.0)))
                .filter(|(_, shard)| *shard != target)
                .collect();
            let rebuilds: Vec<(BridgeKey, usize, BridgeSpec)> = bridges
                .into_iter()
                .filter_map(|b| {
                    routes
                        .bridges
                        .get(&b)
                        .map(|(s, spec)| (b, *s, spec.clone()))
                })
                .filter(|(_, shard, _)| *shard != target)
                .collect();
            (target, moves, rebuilds)
        };
        for (other, from, _) in &rebuilds {
            let other = *other;
            self.call(*from, |reply| Command::DestroyBridge {
                bridge: other,
                reply,
            })
            .await?;
        }
        for (leg, from) in moves {
            let state = self
                .call(from, |reply| Command::Detach { leg, reply })
                .await?;
            self.call(target, |reply| Command::Attach { leg: state, reply })
                .await?;
            if let Some(r) = self.routes().legs.get_mut(&leg) {
                r.0 = target;
            }
        }
        for (other, _, other_spec) in rebuilds {
            let spec = other_spec.clone();
            self.call(target, |reply| Command::SetBridge {
                bridge: other,
                spec,
                reply,
            })
            .await?;
            self.routes().bridges.insert(other, (target, other_spec));
        }
        let members = spec.clone();
        let technology = self
            .call(target, |reply| Command::SetBridge {
                bridge,
                spec,
                reply,
            })
            .await?;
        let mut routes = self.routes();
        if let Some((_, old)) = routes.bridges.insert(bridge, (target, members.clone())) {
            for m in old.members {
                if routes.membership.get(&m.leg) == Some(&bridge) {
                    routes.membership.remove(&m.leg);
                }
            }
        }
        for m in &members.members {
            routes.membership.insert(m.leg, bridge);
        }
        Ok(technology)
    }

    /// Removes a bridge.
    pub async fn destroy_bridge(&self, bridge: BridgeKey) -> Result<(), DataplaneError> {
        let shard = self
            .routes()
            .bridges
            .get(&bridge)
            .map_or_else(|| self.home(bridge), |r| r.0);
        self.call(shard, |reply| Command::DestroyBridge { bridge, reply })
            .await?;
        let mut routes = self.routes();
        if let Some((_, spec)) = routes.bridges.remove(&bridge) {
            for m in spec.members {
                if routes.membership.get(&m.leg) == Some(&bridge) {
                    routes.membership.remove(&m.leg);
                }
            }
        }
        Ok(())
    }

    /// Mutes or unmutes a leg in one or both directions.
    pub async fn set_mute(
        &self,
        leg: LegId,
        direction: Direction,
        on: bool,
    ) -> Result<(), DataplaneError> {
        let shard = self.leg_shard(leg);
        self.call(shard, |reply| Command::SetMute {
            leg,
            direction,
            on,
            reply,
        })
        .await
    }

    /// Puts a leg on hold (its media is not passed on) or takes it off.
    pub async fn set_hold(&self, leg: LegId, on: bool) -> Result<(), DataplaneError> {
        let shard = self.leg_shard(leg);
        self.call(shard, |reply| Command::SetHold { leg, on, reply })
            .await
    }

    /// A leg's counters.
    pub async fn rtp_stats(&self, leg: LegId) -> Result<RtpStats, DataplaneError> {
        let shard = self.leg_shard(leg);
        self.call(shard, |reply| Command::Stats { leg, reply })
            .await
    }

    /// The shard a leg lives on now (for tests and diagnostics).
    pub fn shard_of_leg(&self, leg: LegId) -> Option<usize> {
        self.routes().legs.get(&leg).map(|r| r.0)
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        for shard in &self.shards {
            if shard.commands.send(Command::Shutdown).is_ok() {
                wake(&shard.wake);
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Wakes a shard: one eventfd write its ring's pending read completes on.
fn wake(fd: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live local array to an eventfd we own.
    unsafe {
        libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len());
    }
}
