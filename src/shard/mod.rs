//! The data plane as the control plane sees it: [`Dataplane`], a handle to the
//! shard threads, reached only by messages, and the watch over them.
//!
//! Invariants:
//! - The control plane never touches a socket or media state: it sends a
//!   [`Command`] to the shard that owns the leg or bridge and awaits the reply.
//! - Every command has a deadline (`dataplane.shard_stall_ms`, for the wait
//!   for room in the queue and the reply together): a command not answered
//!   by then fails with [`DataplaneError::Timeout`] and the shard is given up
//!   (declared dead, see *Health*). No caller waits on a shard without one.
//! - RTP ports come from one pool shared by every shard ([`PortPool`]): the
//!   `Dataplane` picks a free even/odd pair and the shard binds it; a pair
//!   returns to the pool when its leg is destroyed (or, for a dead shard, once
//!   its thread has exited and so closed its sockets). A leg's socket lives on
//!   exactly one shard.
//! - Ids here ([`LegId`], [`BridgeKey`]) are small numbers the control plane
//!   assigns; ARI's string ids never reach the data plane.
//! - A command wakes its shard through an eventfd its driver watches.
//!
//! # Placement
//! A new RTP leg or Local pair (both halves) is created on the least-loaded
//! live shard, a shard's load being the legs and bridges it holds (ties go
//! to the lowest index). A bridge first set with members lives on the shard
//! of its first member; one first set empty on the least-loaded shard; it
//! stays there. [`Dataplane::set_bridge`] first gathers everything that must
//! share the bridge's shard — its members, the other half of each Local pair
//! among them, and, transitively, the bridges those are in and their members
//! — and moves each leg that lives elsewhere: the old shard cancels the leg's
//! operations and hands its state (socket and RTP state) back in a message
//! ([`Command::Detach`]), the new shard adopts it ([`Command::Attach`]);
//! other bridges involved are re-created on the new shard. So a bridge and
//! all its legs live on one shard. Nothing is shared between shards; the
//! routing table here is touched only by the control plane. Commands of one
//! leg must not be issued concurrently with a `set_bridge` that moves it
//! (the control plane serialises them per bridge).
//!
//! # Health
//! Each shard thread publishes a heartbeat ([`Pulse`]) on every turn of its
//! loop, and an idle shard still turns at least every quarter of
//! `dataplane.shard_stall_ms` (its timer). [`Dataplane::check_shards`],
//! called by the control plane's watchdog (`host::watch_shards`, every
//! 500 ms), declares a shard dead when its thread has exited (a panic: the
//! message is logged) or its loop has not turned for `shard_stall_ms`; a
//! command timing out gives its shard up at once. A dead shard is told to
//! stop (if it ever runs again it exits), is never chosen again, and every
//! later command for its legs or bridges fails at once with
//! [`DataplaneError::ShardGone`]; destroying them only forgets them. Each
//! death is reported once, with the legs and bridges lost, so the control
//! plane can end their channels. Shards are not restarted: a node with a
//! dead shard reports itself unhealthy until it is restarted.
//!
//! Fault injection for tests ([`Dataplane::inject_fault`], [`Fault`]) makes
//! a shard thread stall or panic; no configuration or ARI route reaches it.
//!
//! # Inside a shard
//! Each shard thread runs the sans-IO media core ([`crate::media::Core`])
//! with an I/O driver ([`crate::driver`]: io_uring or epoll, chosen once
//! at start); commands reach it through the shard's bounded queue and an
//! eventfd write.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::config::Config;
use crate::driver::{DriverChoice, Pulse, ShardStart};
use crate::media::{Format, MediaEvent};

pub use crate::media::{BridgeKey, BridgeSpec, Direction, LegId, MemberSpec, RtpStats, Technology};

/// What a new RTP leg is to talk to.
#[derive(Clone, Debug)]
pub struct LegSpec {
    /// Where media is sent (externalMedia's `external_host`); an
    /// unspecified address or port 0 means "learn it from the first packet".
    pub remote: SocketAddr,
    /// The leg's audio format.
    pub format: Format,
    /// Whether received RTP may move `remote` (symmetric RTP for SIP peers
    /// behind NAT); a leg without a remote always learns.
    pub symmetric: bool,
    /// The telephone-event payload type (RFC 4733) the leg reports and sends
    /// digits with; `None`: no digits.
    pub dtmf_pt: Option<u8>,
}

/// Why the data plane refused a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataplaneError {
    /// No free RTP port pair in the pool.
    NoPorts,
    /// The leg or bridge is not known to the data plane.
    Unknown,
    /// The shard is dead (its thread exited, or it was given up as stalled),
    /// or no shard is left to place a new leg on.
    ShardGone,
    /// The shard's command queue stayed full until the deadline.
    Busy,
    /// The shard did not answer by the deadline (`dataplane.shard_stall_ms`);
    /// it is given up.
    Timeout,
    /// The leg has no telephone-event payload type (RFC 4733) to send
    /// digits with.
    NoTelephoneEvent,
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
            DataplaneError::Timeout => f.write_str("data plane shard did not answer in time"),
            DataplaneError::NoTelephoneEvent => {
                f.write_str("the leg has no telephone-event payload type")
            }
            DataplaneError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, DataplaneError>>;

/// A fault a test makes a shard thread suffer ([`Dataplane::inject_fault`]).
/// A test hook: no configuration key or ARI route reaches it.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The shard thread sleeps for this long in 10 ms steps, serving nothing
    /// (a stuck loop); it wakes early once the shard is told to stop.
    Stall(Duration),
    /// The shard thread panics.
    Panic,
}

/// A message from the control plane to one shard.
#[derive(Debug)]
pub enum Command {
    /// Binds the pair `port` (RTP), `port + 1` (RTCP) for a new leg; answers
    /// the local address, or `None` when either port is in use (the
    /// `Dataplane` then offers another pair).
    CreateRtpLeg {
        leg: LegId,
        spec: LegSpec,
        port: u16,
        reply: Reply<Option<SocketAddr>>,
    },
    CreateLocalPair {
        a: LegId,
        b: LegId,
        format: Format,
        reply: Reply<()>,
    },
    /// A snoop leg on `target`, a leg of the shard.
    CreateSnoopLeg {
        leg: LegId,
        target: LegId,
        spec: crate::media::SnoopSpec,
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
    /// A media operation (play, music on hold, record) on a leg or bridge.
    Media {
        target: crate::media::Target,
        op: crate::media::MediaOp,
        reply: Reply<crate::media::MediaDone>,
    },
    SetTalkDetect {
        leg: LegId,
        params: Option<(u32, u32)>,
        reply: Reply<()>,
    },
    SendDtmf {
        leg: LegId,
        steps: Vec<crate::media::dtmf::Step>,
        reply: Reply<()>,
    },
    SetFormat {
        leg: LegId,
        format: Format,
        reply: Reply<Option<Technology>>,
    },
    SetRemote {
        leg: LegId,
        remote: Option<SocketAddr>,
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
    /// A test's fault (see [`Fault`]); no reply.
    #[doc(hidden)]
    Inject(Fault),
    Shutdown,
}

/// A leg's whole state (sockets included) on its way between shards; opaque.
pub struct LegTransfer(pub(crate) Box<crate::driver::Moving>);

impl fmt::Debug for LegTransfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LegTransfer")
    }
}

/// A shard found dead by [`Dataplane::check_shards`], and what was lost
/// with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardDown {
    pub shard: usize,
    /// Why it was declared dead (also logged).
    pub reason: String,
    /// The legs that lived on it, ascending: their media is gone.
    pub legs: Vec<LegId>,
    /// The bridges that lived on it, ascending.
    pub bridges: Vec<BridgeKey>,
}

/// The RTP port pairs of `rtp.port_min..=rtp.port_max`, shared by every
/// shard: the even port of each free pair, least recently freed first (a
/// port just closed is the last to be reused).
struct PortPool {
    free: VecDeque<u16>,
    /// Pairs in the range.
    total: usize,
    /// Pairs that a dead shard's thread may still hold bound, by shard:
    /// freed once that thread has exited.
    held: Vec<Vec<u16>>,
}

impl PortPool {
    fn new(min: u16, max: u16, shards: usize) -> PortPool {
        let first = u32::from(min) + u32::from(min & 1);
        let free: VecDeque<u16> = (first..u32::from(max))
            .step_by(2)
            .filter_map(|p| u16::try_from(p).ok())
            .collect();
        PortPool {
            total: free.len(),
            free,
            held: vec![Vec::new(); shards],
        }
    }
}

/// Where a leg lives, what binds it, which port pair it holds.
#[derive(Clone, Debug)]
struct LegRoute {
    shard: usize,
    /// The other half of a Local pair.
    peer: Option<LegId>,
    /// Snoop legs on this leg, or the target of this snoop leg: they share
    /// a shard.
    linked: Vec<LegId>,
    /// The even port of its RTP/RTCP pair (RTP legs).
    port: Option<u16>,
}

/// A shard's life as the control plane sees it.
#[derive(Debug)]
enum Life {
    Up,
    Down {
        reason: String,
        /// Its death was reported by `check_shards`.
        reported: bool,
        /// Its thread has exited (its sockets are closed).
        exited: bool,
    },
}

/// Where the control plane's ids live, and what binds them together.
struct Routes {
    legs: HashMap<LegId, LegRoute>,
    /// Bridge → (shard, members).
    bridges: HashMap<BridgeKey, (usize, BridgeSpec)>,
    /// Leg → the bridge it is a member of.
    membership: HashMap<LegId, BridgeKey>,
    /// Legs and bridges per shard.
    load: Vec<usize>,
    life: Vec<Life>,
    ports: PortPool,
}

impl Routes {
    fn up(&self, shard: usize) -> bool {
        matches!(self.life.get(shard), Some(Life::Up))
    }

    /// The live shard holding the fewest legs and bridges (lowest index on
    /// a tie); `None` when every shard is dead.
    fn least_loaded(&self) -> Option<usize> {
        (0..self.life.len())
            .filter(|&s| self.up(s))
            .min_by_key(|&s| (self.load[s], s))
    }

    fn add_leg(&mut self, leg: LegId, route: LegRoute) {
        self.load[route.shard] += 1;
        if let Some(old) = self.legs.insert(leg, route) {
            self.load[old.shard] -= 1;
        }
    }

    /// Forgets a leg: its Local peer's link, its membership, its load; its
    /// port goes back to the pool (or is held while a dead shard's thread
    /// may still have it bound).
    fn remove_leg(&mut self, leg: LegId) {
        let Some(route) = self.legs.remove(&leg) else {
            return;
        };
        self.load[route.shard] -= 1;
        if let Some(peer) = route.peer {
            if let Some(r) = self.legs.get_mut(&peer) {
                r.peer = None;
            }
        }
        for other in &route.linked {
            if let Some(r) = self.legs.get_mut(other) {
                r.linked.retain(|l| *l != leg);
            }
        }
        self.membership.remove(&leg);
        if let Some(port) = route.port {
            self.return_port(route.shard, port);
        }
    }

    fn move_leg(&mut self, leg: LegId, to: usize) {
        if let Some(r) = self.legs.get_mut(&leg) {
            self.load[r.shard] -= 1;
            self.load[to] += 1;
            r.shard = to;
        }
    }

    /// Gives `port`, last bound on `shard`, back to the pool: at once unless
    /// `shard` is (or may be) dead with its thread still there.
    fn return_port(&mut self, shard: usize, port: u16) {
        match self.life.get(shard) {
            Some(Life::Up | Life::Down { exited: true, .. }) => self.ports.free.push_back(port),
            _ => self.ports.held[shard].push(port),
        }
    }

    /// Holds `port` until `shard`'s thread is known to have exited: a
    /// command carrying it may still be served there.
    fn hold_port(&mut self, shard: usize, port: u16) {
        match self.life.get(shard) {
            Some(Life::Down { exited: true, .. }) => self.ports.free.push_back(port),
            _ => self.ports.held[shard].push(port),
        }
    }

    /// `shard` is dead and its thread is over (its sockets are closed): the
    /// pairs it held return to the pool.
    fn thread_exited(&mut self, shard: usize) {
        if let Some(Life::Down { exited, .. }) = self.life.get_mut(shard) {
            *exited = true;
            let held = std::mem::take(&mut self.ports.held[shard]);
            self.ports.free.extend(held);
        }
    }

    /// Records `bridge` on `shard` with `spec`, and its members' membership.
    fn put_bridge(&mut self, bridge: BridgeKey, shard: usize, spec: BridgeSpec) {
        self.load[shard] += 1;
        let members: Vec<LegId> = spec.members.iter().map(|m| m.leg).collect();
        if let Some((old_shard, old)) = self.bridges.insert(bridge, (shard, spec)) {
            self.load[old_shard] -= 1;
            for m in old.members {
                if self.membership.get(&m.leg) == Some(&bridge) {
                    self.membership.remove(&m.leg);
                }
            }
        }
        for leg in members {
            self.membership.insert(leg, bridge);
        }
    }

    fn remove_bridge(&mut self, bridge: BridgeKey) {
        if let Some((shard, spec)) = self.bridges.remove(&bridge) {
            self.load[shard] -= 1;
            for m in spec.members {
                if self.membership.get(&m.leg) == Some(&bridge) {
                    self.membership.remove(&m.leg);
                }
            }
        }
    }
}

/// One shard as the handle sees it.
struct ShardHandle {
    commands: std_mpsc::SyncSender<Command>,
    wake: OwnedFd,
    pulse: Arc<Pulse>,
}

/// The control plane's handle to every shard.
pub struct Dataplane {
    driver: DriverChoice,
    shards: Vec<ShardHandle>,
    /// The shard threads by index; taken once joined.
    threads: Mutex<Vec<Option<JoinHandle<()>>>>,
    routes: Mutex<Routes>,
    /// `dataplane.shard_stall_ms`.
    stall: Duration,
    /// The receiving end of the shards' media events, until taken.
    events: Mutex<Option<tokio::sync::mpsc::Receiver<MediaEvent>>>,
}

/// Media events waiting for the control plane, all shards together; beyond,
/// a shard drops new ones (and logs it once).
pub const EVENT_QUEUE: usize = 65_536;

/// Depth of each shard's command queue.
const COMMAND_QUEUE: usize = 4096;

/// Port pairs one leg creation offers its shard at most when pairs turn
/// out to be in use (bound by something outside crossbar).
const MAX_BIND_TRIES: usize = 64;

/// How long dropping the `Dataplane` waits for its shard threads to end:
/// this many polls, 5 ms apart (2 s).
const STOP_POLLS: u32 = 400;

impl Dataplane {
    /// Starts the shards described by `config`.
    pub fn start(config: &Config) -> std::io::Result<Dataplane> {
        let driver = crate::driver::choose(config)?;
        let count = config.shard_count();
        let stall = Duration::from_millis(u64::from(config.dataplane.shard_stall_ms));
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(EVENT_QUEUE);
        let mut this = Dataplane {
            driver: driver.clone(),
            shards: Vec::with_capacity(count),
            threads: Mutex::new(Vec::with_capacity(count)),
            routes: Mutex::new(Routes {
                legs: HashMap::new(),
                bridges: HashMap::new(),
                membership: HashMap::new(),
                load: vec![0; count],
                life: (0..count).map(|_| Life::Up).collect(),
                ports: PortPool::new(config.rtp.port_min, config.rtp.port_max, count),
            }),
            stall,
            events: Mutex::new(Some(events_rx)),
        };
        for index in 0..count {
            let (tx, rx) = std_mpsc::sync_channel(COMMAND_QUEUE);
            // SAFETY: eventfd has no memory preconditions; the result is
            // checked before use.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: `fd` is a fresh descriptor nobody else owns.
            let wake = unsafe { OwnedFd::from_raw_fd(fd) };
            let pulse = Arc::new(Pulse::new());
            let (ready_tx, ready_rx) = std_mpsc::channel();
            let start = ShardStart {
                index,
                driver: driver.kind,
                commands: rx,
                wake: wake.try_clone()?,
                pulse: pulse.clone(),
                beat_every: stall / 4,
                ready: ready_tx,
                events: events_tx.clone(),
            };
            let shard_config = config.clone();
            let thread = std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn(move || crate::driver::run_shard(&shard_config, start))?;
            this.lock_threads().push(Some(thread));
            this.shards.push(ShardHandle {
                commands: tx,
                wake,
                pulse,
            });
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

    /// The number of shards (dead ones included).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        // A panic while holding the lock leaves plain maps behind: usable.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<Option<JoinHandle<()>>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shard a leg lives on now; `Unknown` for a leg that does not exist.
    fn leg_shard(&self, leg: LegId) -> Result<usize, DataplaneError> {
        self.routes()
            .legs
            .get(&leg)
            .map(|r| r.shard)
            .ok_or(DataplaneError::Unknown)
    }

    /// Sends a command to `shard` and waits for its reply, both within the
    /// deadline (`dataplane.shard_stall_ms`). A shard that misses it is given
    /// up; a dead shard is not asked.
    async fn call<T>(
        &self,
        shard: usize,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, DataplaneError> {
        let handle = self.shards.get(shard).ok_or(DataplaneError::ShardGone)?;
        if !self.routes().up(shard) {
            return Err(DataplaneError::ShardGone);
        }
        let deadline = tokio::time::Instant::now() + self.stall;
        let (tx, rx) = oneshot::channel();
        let mut command = make(tx);
        // Never block the control thread on a full queue: wake the shard and
        // retry asynchronously, until the deadline.
        loop {
            match handle.commands.try_send(command) {
                Ok(()) => break,
                Err(std_mpsc::TrySendError::Disconnected(_)) => {
                    return Err(DataplaneError::ShardGone)
                }
                Err(std_mpsc::TrySendError::Full(back)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(DataplaneError::Busy);
                    }
                    command = back;
                    wake(&handle.wake);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        wake(&handle.wake);
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            // The shard dropped the reply unanswered: its thread is gone.
            Ok(Err(_)) => Err(DataplaneError::ShardGone),
            Err(_) => {
                self.give_up(
                    shard,
                    format!(
                        "a command was not answered within {} ms (dataplane.shard_stall_ms)",
                        self.stall.as_millis()
                    ),
                );
                Err(DataplaneError::Timeout)
            }
        }
    }

    /// Declares `shard` dead for `reason` (reported by the next
    /// [`Dataplane::check_shards`]) and tells its thread to stop.
    fn give_up(&self, shard: usize, reason: String) {
        let mut routes = self.routes();
        if let Some(life @ Life::Up) = routes.life.get_mut(shard) {
            *life = Life::Down {
                reason,
                reported: false,
                exited: false,
            };
        }
        drop(routes);
        if let Some(handle) = self.shards.get(shard) {
            handle.pulse.stop();
            wake(&handle.wake);
        }
    }

    /// Binds a socket pair for a new RTP leg, on the least-loaded live
    /// shard, from the shared port pool; returns its local address.
    pub async fn create_rtp_leg(
        &self,
        leg: LegId,
        spec: LegSpec,
    ) -> Result<SocketAddr, DataplaneError> {
        let tries = self.routes().ports.free.len().clamp(1, MAX_BIND_TRIES);
        for _ in 0..tries {
            let (shard, port) = {
                let mut routes = self.routes();
                if routes.legs.contains_key(&leg) {
                    return Err(DataplaneError::Io("leg id already in use".into()));
                }
                let shard = routes.least_loaded().ok_or(DataplaneError::ShardGone)?;
                let port = routes
                    .ports
                    .free
                    .pop_front()
                    .ok_or(DataplaneError::NoPorts)?;
                (shard, port)
            };
            let spec = spec.clone();
            let result = self
                .call(shard, |reply| Command::CreateRtpLeg {
                    leg,
                    spec,
                    port,
                    reply,
                })
                .await;
            let mut routes = self.routes();
            match result {
                Ok(Some(local)) => {
                    let route = LegRoute {
                        shard,
                        peer: None,
                        linked: Vec::new(),
                        port: Some(port),
                    };
                    routes.add_leg(leg, route);
                    return Ok(local);
                }
                // Bound by something else: to the back of the queue.
                Ok(None) => routes.ports.free.push_back(port),
                // The command may still be served by a shard that is gone
                // or given up: the pair is held until its thread has exited.
                Err(e @ (DataplaneError::Timeout | DataplaneError::ShardGone)) => {
                    routes.hold_port(shard, port);
                    return Err(e);
                }
                Err(e) => {
                    routes.ports.free.push_back(port);
                    return Err(e);
                }
            }
        }
        Err(DataplaneError::NoPorts)
    }

    /// Creates the two halves of a Local channel pair, joined back to back,
    /// on the least-loaded live shard.
    pub async fn create_local_pair(
        &self,
        a: LegId,
        b: LegId,
        format: Format,
    ) -> Result<(), DataplaneError> {
        let shard = {
            let routes = self.routes();
            if routes.legs.contains_key(&a) || routes.legs.contains_key(&b) {
                return Err(DataplaneError::Io("leg id already in use".into()));
            }
            routes.least_loaded().ok_or(DataplaneError::ShardGone)?
        };
        self.call(shard, |reply| Command::CreateLocalPair {
            a,
            b,
            format,
            reply,
        })
        .await?;
        let mut routes = self.routes();
        for (leg, peer) in [(a, b), (b, a)] {
            let route = LegRoute {
                shard,
                peer: Some(peer),
                linked: Vec::new(),
                port: None,
            };
            routes.add_leg(leg, route);
        }
        Ok(())
    }

    /// Creates a snoop leg on `target`, on its shard (they stay together).
    pub async fn create_snoop_leg(
        &self,
        leg: LegId,
        target: LegId,
        spec: crate::media::SnoopSpec,
    ) -> Result<(), DataplaneError> {
        let shard = {
            let routes = self.routes();
            if routes.legs.contains_key(&leg) {
                return Err(DataplaneError::Io("leg id already in use".into()));
            }
            let shard = routes
                .legs
                .get(&target)
                .map(|r| r.shard)
                .ok_or(DataplaneError::Unknown)?;
            if !routes.up(shard) {
                return Err(DataplaneError::ShardGone);
            }
            shard
        };
        self.call(shard, |reply| Command::CreateSnoopLeg {
            leg,
            target,
            spec,
            reply,
        })
        .await?;
        let mut routes = self.routes();
        routes.add_leg(
            leg,
            LegRoute {
                shard,
                peer: None,
                linked: vec![target],
                port: None,
            },
        );
        if let Some(t) = routes.legs.get_mut(&target) {
            t.linked.push(leg);
        }
        Ok(())
    }

    /// Removes a leg (and closes its socket). A leg of a dead shard is only
    /// forgotten.
    pub async fn destroy_leg(&self, leg: LegId) -> Result<(), DataplaneError> {
        let shard = {
            let mut routes = self.routes();
            let shard = routes
                .legs
                .get(&leg)
                .map(|r| r.shard)
                .ok_or(DataplaneError::Unknown)?;
            if !routes.up(shard) {
                routes.remove_leg(leg);
                return Ok(());
            }
            shard
        };
        match self
            .call(shard, |reply| Command::DestroyLeg { leg, reply })
            .await
        {
            Ok(()) => {
                self.routes().remove_leg(leg);
                Ok(())
            }
            Err(DataplaneError::Unknown) => {
                self.routes().remove_leg(leg);
                Err(DataplaneError::Unknown)
            }
            Err(e) => Err(e),
        }
    }

    /// Sets a bridge's membership and flags; returns the technology chosen.
    /// Members living on other shards are moved to the bridge's shard first
    /// (see the module docs, Placement). A bridge of a dead shard is placed
    /// anew.
    pub async fn set_bridge(
        &self,
        bridge: BridgeKey,
        spec: BridgeSpec,
    ) -> Result<Technology, DataplaneError> {
        let (target, moves, rebuilds) = {
            let mut routes = self.routes();
            for m in &spec.members {
                match routes.legs.get(&m.leg) {
                    None => return Err(DataplaneError::Unknown),
                    Some(r) if !routes.up(r.shard) => return Err(DataplaneError::ShardGone),
                    Some(_) => {}
                }
            }
            if let Some(&(shard, _)) = routes.bridges.get(&bridge) {
                if !routes.up(shard) {
                    // Its media went with its shard: it starts again.
                    routes.remove_bridge(bridge);
                }
            }
            let target = match routes.bridges.get(&bridge) {
                Some((shard, _)) => *shard,
                None => match spec.members.first().and_then(|m| routes.legs.get(&m.leg)) {
                    Some(r) => r.shard,
                    None => routes.least_loaded().ok_or(DataplaneError::ShardGone)?,
                },
            };
            // Everything that must share the target shard.
            let mut legs: HashSet<LegId> = HashSet::new();
            let mut bridges: HashSet<BridgeKey> = HashSet::new();
            let mut queue: Vec<LegId> = spec.members.iter().map(|m| m.leg).collect();
            while let Some(leg) = queue.pop() {
                if !legs.insert(leg) {
                    continue;
                }
                if let Some(route) = routes.legs.get(&leg) {
                    queue.extend(route.peer);
                    queue.extend(route.linked.iter().copied());
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
                .filter_map(|l| routes.legs.get(&l).map(|r| (l, r.shard)))
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
            // From here the leg is the target's, whatever the answer: on a
            // failure it is lost with the target.
            self.routes().move_leg(leg, target);
            self.call(target, |reply| Command::Attach { leg: state, reply })
                .await?;
        }
        for (other, _, other_spec) in rebuilds {
            let spec = other_spec.clone();
            self.routes().put_bridge(other, target, other_spec);
            self.call(target, |reply| Command::SetBridge {
                bridge: other,
                spec,
                reply,
            })
            .await?;
        }
        let members = spec.clone();
        let technology = self
            .call(target, |reply| Command::SetBridge {
                bridge,
                spec,
                reply,
            })
            .await?;
        self.routes().put_bridge(bridge, target, members);
        Ok(technology)
    }

    /// Removes a bridge. A bridge of a dead shard is only forgotten.
    pub async fn destroy_bridge(&self, bridge: BridgeKey) -> Result<(), DataplaneError> {
        let shard = {
            let mut routes = self.routes();
            let shard = routes
                .bridges
                .get(&bridge)
                .map(|r| r.0)
                .ok_or(DataplaneError::Unknown)?;
            if !routes.up(shard) {
                routes.remove_bridge(bridge);
                return Ok(());
            }
            shard
        };
        let result = self
            .call(shard, |reply| Command::DestroyBridge { bridge, reply })
            .await;
        if matches!(result, Ok(()) | Err(DataplaneError::Unknown)) {
            self.routes().remove_bridge(bridge);
        }
        result
    }

    /// Mutes or unmutes a leg in one or both directions.
    pub async fn set_mute(
        &self,
        leg: LegId,
        direction: Direction,
        on: bool,
    ) -> Result<(), DataplaneError> {
        let shard = self.leg_shard(leg)?;
        self.call(shard, |reply| Command::SetMute {
            leg,
            direction,
            on,
            reply,
        })
        .await
    }

    /// Applies a media operation (play, music on hold, record) to a leg or
    /// a bridge on its shard.
    pub async fn media_op(
        &self,
        target: crate::media::Target,
        op: crate::media::MediaOp,
    ) -> Result<crate::media::MediaDone, DataplaneError> {
        let shard = match target {
            crate::media::Target::Leg(leg) => self.leg_shard(leg)?,
            crate::media::Target::Bridge(bridge) => {
                let routes = self.routes();
                let shard = routes
                    .bridges
                    .get(&bridge)
                    .map(|r| r.0)
                    .ok_or(DataplaneError::Unknown)?;
                if !routes.up(shard) {
                    return Err(DataplaneError::ShardGone);
                }
                shard
            }
        };
        self.call(shard, |reply| Command::Media { target, op, reply })
            .await
    }

    /// Starts (silence ms, threshold) or stops talk detection on a leg.
    pub async fn set_talk_detect(
        &self,
        leg: LegId,
        params: Option<(u32, u32)>,
    ) -> Result<(), DataplaneError> {
        let shard = self.leg_shard(leg)?;
        self.call(shard, |reply| Command::SetTalkDetect { leg, params, reply })
            .await
    }

    /// Sends digits on a leg as RFC 4733 events.
    pub async fn send_dtmf(
        &self,
        leg: LegId,
        steps: Vec<crate::media::dtmf::Step>,
    ) -> Result<(), DataplaneError> {
        let shard = self.leg_shard(leg)?;
        self.call(shard, |reply| Command::SendDtmf { leg, steps, reply })
            .await
    }

    /// The media events of every shard (digits, …); the first call takes
    /// the receiver, later calls get `None`.
    pub fn take_events(&self) -> Option<tokio::sync::mpsc::Receiver<MediaEvent>> {
        self.events.lock().ok()?.take()
    }

    /// Changes a leg's format; answers its bridge's technology, chosen anew.
    pub async fn set_format(
        &self,
        leg: LegId,
        format: Format,
    ) -> Result<Option<Technology>, DataplaneError> {
        let shard = self.leg_shard(leg)?;
        self.call(shard, |reply| Command::SetFormat { leg, format, reply })
            .await
    }

    /// Points an RTP leg at a new remote (`None`: learn it).
    pub async fn set_remote(
        &self,
        leg: LegId,
        remote: Option<SocketAddr>,
    ) -> Result<(), DataplaneError> {
        let shard = self.leg_shard(leg)?;
        self.call(shard, |reply| Command::SetRemote { leg, remote, reply })
            .await
    }

    /// Puts a leg on hold (its media is not passed on) or takes it off.
    pub async fn set_hold(&self, leg: LegId, on: bool) -> Result<(), DataplaneError> {
        let shard = self.leg_shard(leg)?;
        self.call(shard, |reply| Command::SetHold { leg, on, reply })
            .await
    }

    /// A leg's counters.
    pub async fn rtp_stats(&self, leg: LegId) -> Result<RtpStats, DataplaneError> {
        let shard = self.leg_shard(leg)?;
        self.call(shard, |reply| Command::Stats { leg, reply })
            .await
    }

    /// The shard a leg lives on now (for tests and diagnostics).
    pub fn shard_of_leg(&self, leg: LegId) -> Option<usize> {
        self.routes().legs.get(&leg).map(|r| r.shard)
    }

    /// RTP port pairs free in the shared pool now, and pairs in the range:
    /// equal when no leg holds one (and no dead shard's thread may).
    pub fn rtp_port_pairs(&self) -> (usize, usize) {
        let routes = self.routes();
        (routes.ports.free.len(), routes.ports.total)
    }

    /// Which shards are alive, by index (false once declared dead).
    pub fn shards_up(&self) -> Vec<bool> {
        let routes = self.routes();
        (0..self.shards.len()).map(|s| routes.up(s)).collect()
    }

    /// Looks at every shard: one whose thread has exited, whose loop has not
    /// turned for `dataplane.shard_stall_ms`, or that was given up after a
    /// command timed out, is declared dead (logged at error level, told to
    /// stop). Answers the deaths not reported before, each once, with the
    /// legs and bridges lost. Ports a dead shard held return to the pool
    /// once its thread has exited. Never blocks.
    pub fn check_shards(&self) -> Vec<ShardDown> {
        let now = Instant::now();
        let mut threads = self.lock_threads();
        let mut routes = self.routes();
        let mut downs = Vec::new();
        for (index, handle) in self.shards.iter().enumerate() {
            let finished = threads
                .get(index)
                .and_then(Option::as_ref)
                .is_none_or(JoinHandle::is_finished);
            // A finished thread is joined at once (it returns immediately),
            // for its panic message.
            let ended = if finished {
                threads
                    .get_mut(index)
                    .and_then(Option::take)
                    .map(|t| match t.join() {
                        Ok(()) => "its thread exited".to_string(),
                        Err(panic) => format!("its thread panicked: {}", panic_text(&*panic)),
                    })
            } else {
                None
            };
            if routes.up(index) {
                let silence = handle.pulse.silence(now);
                let reason = if finished {
                    Some(ended.clone().unwrap_or_else(|| "its thread exited".into()))
                } else if silence > self.stall {
                    Some(format!(
                        "its loop has not turned for {} ms (dataplane.shard_stall_ms = {})",
                        silence.as_millis(),
                        self.stall.as_millis()
                    ))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    routes.life[index] = Life::Down {
                        reason,
                        reported: false,
                        exited: false,
                    };
                }
            }
            let Life::Down {
                reason,
                reported,
                exited,
            } = &mut routes.life[index]
            else {
                continue;
            };
            if let Some(how) = ended.as_deref().filter(|_| *reported) {
                if how.starts_with("its thread panicked") {
                    tracing::error!(shard = index, "dead data plane shard {index}: {how}");
                } else {
                    tracing::info!(shard = index, "dead data plane shard {index}: {how}");
                }
            }
            let release = finished && !*exited;
            let report = (!*reported).then(|| {
                *reported = true;
                reason.clone()
            });
            if release {
                routes.thread_exited(index);
            }
            let Some(reason) = report else {
                continue;
            };
            handle.pulse.stop();
            wake(&handle.wake);
            let mut legs: Vec<LegId> = routes
                .legs
                .iter()
                .filter(|(_, r)| r.shard == index)
                .map(|(l, _)| *l)
                .collect();
            legs.sort();
            let mut bridges: Vec<BridgeKey> = routes
                .bridges
                .iter()
                .filter(|(_, (s, _))| *s == index)
                .map(|(b, _)| *b)
                .collect();
            bridges.sort();
            tracing::error!(
                shard = index,
                legs = legs.len(),
                bridges = bridges.len(),
                "data plane shard {index} is dead: {reason}; its legs and bridges are lost"
            );
            downs.push(ShardDown {
                shard: index,
                reason,
                legs,
                bridges,
            });
        }
        downs
    }

    /// Makes shard `shard` suffer `fault` (test hook; see [`Fault`]). The
    /// command is queued without waiting for the shard.
    #[doc(hidden)]
    pub fn inject_fault(&self, shard: usize, fault: Fault) -> Result<(), DataplaneError> {
        let handle = self.shards.get(shard).ok_or(DataplaneError::Unknown)?;
        match handle.commands.try_send(Command::Inject(fault)) {
            Ok(()) => {
                wake(&handle.wake);
                Ok(())
            }
            Err(std_mpsc::TrySendError::Full(_)) => Err(DataplaneError::Busy),
            Err(std_mpsc::TrySendError::Disconnected(_)) => Err(DataplaneError::ShardGone),
        }
    }
}

/// The text of a panic's payload.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

impl Drop for Dataplane {
    /// Tells every shard to stop and waits, bounded, for the threads; one
    /// that does not end (stuck) is left behind rather than hanging the
    /// caller.
    fn drop(&mut self) {
        for shard in &self.shards {
            shard.pulse.stop();
            let _ = shard.commands.try_send(Command::Shutdown);
            wake(&shard.wake);
        }
        let threads: Vec<JoinHandle<()>> = self.lock_threads().drain(..).flatten().collect();
        for _ in 0..STOP_POLLS {
            if threads.iter().all(JoinHandle::is_finished) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for t in threads {
            let name = t.thread().name().unwrap_or("shard").to_string();
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::error!("{name} did not stop within 2 s; left running");
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(shards: usize, min: u16, max: u16) -> Routes {
        Routes {
            legs: HashMap::new(),
            bridges: HashMap::new(),
            membership: HashMap::new(),
            load: vec![0; shards],
            life: (0..shards).map(|_| Life::Up).collect(),
            ports: PortPool::new(min, max, shards),
        }
    }

    fn rtp_leg(shard: usize, port: u16) -> LegRoute {
        LegRoute {
            shard,
            peer: None,
            linked: Vec::new(),
            port: Some(port),
        }
    }

    #[test]
    fn pool_holds_even_ports_of_whole_pairs() {
        assert_eq!(
            routes(1, 10_001, 10_008).ports.free,
            [10_002, 10_004, 10_006]
        );
        assert_eq!(routes(1, 10_000, 10_001).ports.free, [10_000]);
        assert!(routes(1, 65_534, 65_535).ports.free.contains(&65_534));
        assert!(routes(1, 10_001, 10_002).ports.free.is_empty());
    }

    #[test]
    fn least_loaded_counts_legs_and_bridges_of_live_shards() {
        let mut r = routes(3, 10_000, 10_099);
        assert_eq!(r.least_loaded(), Some(0));
        r.add_leg(LegId(1), rtp_leg(0, 10_000));
        r.put_bridge(BridgeKey(1), 1, BridgeSpec::default());
        assert_eq!(r.least_loaded(), Some(2));
        r.add_leg(LegId(2), rtp_leg(2, 10_002));
        assert_eq!(r.least_loaded(), Some(0), "ties go to the lowest index");
        r.move_leg(LegId(1), 1);
        assert_eq!(r.load, [0, 2, 1]);
        r.life[0] = Life::Down {
            reason: "test".into(),
            reported: false,
            exited: false,
        };
        assert_eq!(r.least_loaded(), Some(2), "a dead shard is never chosen");
        r.remove_bridge(BridgeKey(1));
        r.remove_leg(LegId(1));
        assert_eq!(r.load, [0, 0, 1]);
    }

    #[test]
    fn a_dead_shards_pairs_return_only_once_its_thread_is_over() {
        let mut r = routes(2, 10_000, 10_007);
        let port = r.ports.free.pop_front().unwrap();
        r.add_leg(LegId(1), rtp_leg(0, port));
        let other = r.ports.free.pop_front().unwrap();
        r.add_leg(LegId(2), rtp_leg(1, other));
        r.life[0] = Life::Down {
            reason: "test".into(),
            reported: true,
            exited: false,
        };
        r.remove_leg(LegId(1));
        assert!(!r.ports.free.contains(&port), "held while the thread runs");
        r.thread_exited(1);
        assert!(
            !r.ports.free.contains(&port),
            "only the dead shard's release"
        );
        r.thread_exited(0);
        assert_eq!(r.ports.free.back(), Some(&port));
        r.remove_leg(LegId(2));
        assert_eq!(r.ports.free.back(), Some(&other), "a live shard's at once");
    }
}
