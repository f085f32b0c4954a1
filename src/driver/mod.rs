//! The data plane's I/O owners: a pinned shard thread that runs one
//! [`Core`] with one of two drivers, io_uring (`uring`) or epoll with
//! `recvmmsg`/`sendmmsg` (`epoll`).
//!
//! A driver owns the sockets, the receive buffers, the clock and the thread;
//! the core owns every media decision. A packet's walk: the driver receives
//! a datagram into one of its buffers, hands it to
//! [`Core::handle_datagram`] with the time, and sends what
//! [`Core::poll_transmit`] yields; it wakes the core at
//! [`Core::poll_timeout`] through a timerfd and serves control-plane
//! [`Command`]s when the shard's eventfd is written.
//!
//! # What the drivers share ([`Shard`])
//! Command handling: binding a leg's RTP/RTCP socket pair (the even port the
//! control plane took from its pool, and the next odd one; a pair with
//! either port taken is answered as in use, and the control plane offers
//! another), forwarding the command to the core, and telling the driver
//! which sockets to watch ([`Watch`]). Sockets are kept by the core's slot
//! number with the [`LegRef`] they belong to, so a completion or an event
//! for a leg that has gone never reaches the leg that reuses its slot. A
//! removed leg's RR + BYE is sent synchronously before its sockets close.
//!
//! # Heartbeat
//! Every turn of a driver's loop publishes the time in the shard's
//! [`Pulse`] (one relaxed atomic store) and ends the loop when the control
//! plane has told the shard to stop. The timerfd is set to the core's next
//! deadline or the next heartbeat (every quarter of
//! `dataplane.shard_stall_ms`), whichever is first, so an idle shard still
//! turns; the heartbeat deadline moves only when it has passed, so a busy
//! shard re-arms its timer no more often than before.
//!
//! # Faults (tests only)
//! [`Command::Inject`] makes the thread stall (sleeping in 10 ms steps,
//! serving nothing, until the stall ends or the shard is told to stop) or
//! panic. The io_uring driver catches a panic long enough to cancel its
//! ring's operations before the buffers they use are freed, then lets it
//! go on: the thread ends and the control plane sees it.
//!
//! # Choosing a driver
//! `dataplane.io = "auto"` probes io_uring once at start ([`uring::probe`]):
//! a ring is created and each feature crossbar uses is tried on a pair of
//! loopback sockets. io_uring unavailable (kernel too old, `ENOSYS`,
//! `kernel.io_uring_disabled`, a seccomp profile's `EPERM`) selects epoll;
//! missing features select their fallbacks. The choice and the reason are
//! logged and exported in `/metrics`.

mod epoll;
mod sockaddr;
mod uring;

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, IoChoice};
use crate::media::{Core, CoreConfig, CoreError, LegRef, LegState, Port, Removed, Transmit};
use crate::shard::{Command, DataplaneError, Fault, LegTransfer};

pub use uring::UringFeatures;

/// An io_uring feature crossbar uses when the kernel has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UringFeature {
    /// Multishot `recvmsg` into provided buffers (Linux 6.0); else one
    /// single-shot `recvmsg` per socket into a buffer the driver picks.
    MultishotRecv,
    /// Provided-buffer rings (Linux 5.19); without them, no multishot recv.
    BufRing,
    /// `send` with a destination address (Linux 6.0); else `sendmsg`.
    SendTo,
    /// `SINGLE_ISSUER` + `DEFER_TASKRUN` ring set-up (Linux 6.1).
    DeferTaskrun,
}

impl UringFeature {
    pub const ALL: [UringFeature; 4] = [
        UringFeature::MultishotRecv,
        UringFeature::BufRing,
        UringFeature::SendTo,
        UringFeature::DeferTaskrun,
    ];

    /// The name in `dataplane.uring_disable`.
    pub fn name(self) -> &'static str {
        match self {
            UringFeature::MultishotRecv => "multishot_recv",
            UringFeature::BufRing => "buf_ring",
            UringFeature::SendTo => "send_to",
            UringFeature::DeferTaskrun => "defer_taskrun",
        }
    }

    /// Parses a comma-separated list of feature names.
    pub fn parse_list(list: &str) -> Result<Vec<UringFeature>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|name| {
                UringFeature::ALL
                    .into_iter()
                    .find(|f| f.name() == name)
                    .ok_or_else(|| {
                        format!(
                            "unknown io_uring feature '{name}' (known: multishot_recv, buf_ring, send_to, defer_taskrun)"
                        )
                    })
            })
            .collect()
    }
}

/// The driver the shards run, and why.
#[derive(Clone, Debug)]
pub struct DriverChoice {
    pub kind: DriverKind,
    /// Why this driver (and these features) were chosen.
    pub reason: String,
}

/// Which driver, with its features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    IoUring(UringFeatures),
    Epoll,
}

impl DriverKind {
    /// The name logged and exported.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::IoUring(_) => "io_uring",
            DriverKind::Epoll => "epoll",
        }
    }
}

/// Chooses the driver from the configuration and what the kernel allows.
pub fn choose(config: &Config) -> io::Result<DriverChoice> {
    let disabled = UringFeature::parse_list(&config.dataplane.uring_disable)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    match config.dataplane.io {
        IoChoice::Epoll => Ok(DriverChoice {
            kind: DriverKind::Epoll,
            reason: "dataplane.io = \"epoll\"".into(),
        }),
        IoChoice::IoUring => match probe_apart(&disabled) {
            Ok((features, notes)) => Ok(DriverChoice {
                kind: DriverKind::IoUring(features),
                reason: format!("dataplane.io = \"io_uring\"; {notes}"),
            }),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("dataplane.io = \"io_uring\" but io_uring is unusable here: {e}"),
            )),
        },
        IoChoice::Auto => match probe_apart(&disabled) {
            Ok((features, notes)) => Ok(DriverChoice {
                kind: DriverKind::IoUring(features),
                reason: format!("auto: io_uring works; {notes}"),
            }),
            Err(e) => Ok(DriverChoice {
                kind: DriverKind::Epoll,
                reason: format!("auto: io_uring unusable ({e}); epoll instead"),
            }),
        },
    }
}

/// Runs the io_uring probe on a thread of its own: completion work of the
/// probe's rings (a plain ring queues it to the submitting thread) then
/// never lands on the caller, where it would interrupt a blocking system
/// call with `EINTR`.
fn probe_apart(disabled: &[UringFeature]) -> io::Result<(UringFeatures, String)> {
    let disabled = disabled.to_vec();
    std::thread::Builder::new()
        .name("io_uring-probe".into())
        .spawn(move || uring::probe(&disabled))?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the io_uring probe panicked")))
}

/// The two sockets of an RTP leg: RTP on an even port, RTCP on the next.
pub struct LegSockets {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl LegSockets {
    fn get(&self, port: Port) -> &UdpSocket {
        match port {
            Port::Rtp => &self.rtp,
            Port::Rtcp => &self.rtcp,
        }
    }
}

/// A leg on its way between shards: its media state and its sockets.
pub struct Moving {
    state: LegState,
    sockets: Option<LegSockets>,
}

/// What a driver does when a leg's sockets come and go.
trait Watch {
    /// Starts receiving on `sockets` for `leg`.
    fn watch(&mut self, leg: LegRef, sockets: &LegSockets);
    /// Stops receiving on `sockets` (about to close).
    fn unwatch(&mut self, leg: LegRef, sockets: &LegSockets);
}

/// What a shard thread shows the control plane, lock-free: when its loop
/// last turned, and whether it is to stop.
pub struct Pulse {
    epoch: Instant,
    /// Milliseconds from `epoch` to the last turn.
    last_turn_ms: AtomicU64,
    stop: AtomicBool,
}

impl Default for Pulse {
    fn default() -> Pulse {
        Pulse::new()
    }
}

impl Pulse {
    /// A pulse whose last turn is now.
    pub fn new() -> Pulse {
        Pulse {
            epoch: Instant::now(),
            last_turn_ms: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// The loop turned at `now`.
    pub fn beat(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.epoch).as_millis();
        self.last_turn_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How long the loop has not turned, at `now`.
    pub fn silence(&self, now: Instant) -> Duration {
        let last = Duration::from_millis(self.last_turn_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(self.epoch)
            .saturating_sub(last)
    }

    /// Tells the shard to stop (it ends its loop at the next turn).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// True once the shard is told to stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// What both drivers share: the core, the sockets by slot, the heartbeat.
struct Shard {
    index: usize,
    core: Core,
    sockets: Vec<Option<(LegRef, LegSockets)>>,
    bind_ip: IpAddr,
    pulse: Arc<Pulse>,
    beat_every: Duration,
    /// When the loop must turn at the latest (the next heartbeat).
    beat_due: Instant,
    /// Where the core's media events go.
    events: tokio::sync::mpsc::Sender<crate::media::MediaEvent>,
    /// Events dropped because the control plane's queue was full.
    events_dropped: u64,
}

fn core_error(e: CoreError) -> DataplaneError {
    match e {
        CoreError::Unknown => DataplaneError::Unknown,
        CoreError::InUse => DataplaneError::Io("leg id already in use".into()),
        CoreError::NoTelephoneEvent => DataplaneError::NoTelephoneEvent,
        CoreError::Unplayable => DataplaneError::Io("the clip cannot be played there".into()),
    }
}

impl Shard {
    fn new(
        index: usize,
        config: &Config,
        pulse: Arc<Pulse>,
        beat_every: Duration,
        events: tokio::sync::mpsc::Sender<crate::media::MediaEvent>,
    ) -> Shard {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let bind_ip = config.rtp.bind_ip;
        let core = Core::new(CoreConfig {
            tick_ms: config.dataplane.mix_tick_ms,
            rtcp_interval_ms: config.dataplane.rtcp_interval_ms,
            cname: format!("crossbar@{bind_ip}"),
            seed,
            plc: config.dataplane.plc,
            ntp_anchor: (Instant::now(), crate::clock::ntp_now()),
        });
        let beat_every = beat_every.max(Duration::from_millis(1));
        Shard {
            index,
            core,
            sockets: Vec::new(),
            bind_ip,
            pulse,
            beat_every,
            beat_due: Instant::now() + beat_every,
            events,
            events_dropped: 0,
        }
    }

    /// The loop turned at `now`: publishes the heartbeat. False when the
    /// shard is told to stop.
    fn turn(&mut self, now: Instant) -> bool {
        self.pulse.beat(now);
        !self.pulse.stopping()
    }

    /// When the driver must wake next: the core's deadline or the next
    /// heartbeat, whichever is first (see the module docs, Heartbeat).
    fn next_wake(&mut self, now: Instant) -> Option<Instant> {
        self.forward_events();
        if now >= self.beat_due {
            self.beat_due = now + self.beat_every;
        }
        Some(
            self.core
                .poll_timeout()
                .map_or(self.beat_due, |due| due.min(self.beat_due)),
        )
    }

    /// Hands the core's media events to the control plane (never blocks: a
    /// full queue drops them, logged once per episode).
    fn forward_events(&mut self) {
        // Bounded by the core's queue (media::core::MAX_EVENTS).
        while let Some(e) = self.core.poll_event() {
            if self.events.try_send(e).is_err() {
                if self.events_dropped == 0 {
                    tracing::warn!(
                        shard = self.index,
                        "the control plane is not taking media events: dropping them"
                    );
                }
                self.events_dropped += 1;
            } else {
                self.events_dropped = 0;
            }
        }
    }

    /// A test's fault (see the module docs, Faults).
    fn suffer(&mut self, fault: Fault) {
        match fault {
            Fault::Stall(length) => {
                let steps = length.as_millis().div_ceil(10);
                for _ in 0..steps {
                    if self.pulse.stopping() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Fault::Panic => panic!("shard {}: panic injected by a test", self.index),
        }
    }

    /// The socket of `leg`'s `port`, if the leg is still the slot's.
    fn socket(&self, leg: LegRef, port: Port) -> Option<&UdpSocket> {
        match self.sockets.get(leg.slot() as usize) {
            Some(Some((r, s))) if *r == leg => Some(s.get(port)),
            _ => None,
        }
    }

    fn put_sockets(&mut self, leg: LegRef, sockets: LegSockets, io: &mut impl Watch) {
        let slot = leg.slot() as usize;
        if self.sockets.len() <= slot {
            self.sockets.resize_with(slot + 1, || None);
        }
        io.watch(leg, &sockets);
        self.sockets[slot] = Some((leg, sockets));
    }

    fn take_sockets(&mut self, leg: LegRef, io: &mut impl Watch) -> Option<LegSockets> {
        let entry = self.sockets.get_mut(leg.slot() as usize)?;
        match entry.take() {
            Some((r, s)) if r == leg => {
                io.unwatch(leg, &s);
                Some(s)
            }
            other => {
                *entry = other;
                None
            }
        }
    }

    /// Serves every queued command; false means stop.
    fn drain_commands(&mut self, commands: &Receiver<Command>, io: &mut impl Watch) -> bool {
        loop {
            match commands.try_recv() {
                Ok(command) => {
                    if !self.command(command, io) {
                        return false;
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Handles one command; false means stop.
    fn command(&mut self, command: Command, io: &mut impl Watch) -> bool {
        match command {
            Command::CreateRtpLeg {
                leg,
                spec,
                port,
                reply,
            } => {
                let result = self.bind_pair(port).and_then(|bound| {
                    let Some((sockets, local)) = bound else {
                        return Ok(None);
                    };
                    let remote =
                        (!crate::media::is_unspecified(&spec.remote)).then_some(spec.remote);
                    let r = self
                        .core
                        .add_rtp_leg(leg, local, remote, spec.format, spec.symmetric)
                        .map_err(core_error)?;
                    self.core
                        .set_telephone_event(leg, spec.dtmf_pt)
                        .map_err(core_error)?;
                    self.put_sockets(r, sockets, io);
                    Ok(Some(local))
                });
                let _ = reply.send(result);
            }
            Command::CreateLocalPair {
                a,
                b,
                format,
                reply,
            } => {
                let _ = reply.send(self.core.add_local_pair(a, b, format).map_err(core_error));
            }
            Command::CreateSnoopLeg {
                leg,
                target,
                spec,
                reply,
            } => {
                let _ = reply.send(
                    self.core
                        .add_snoop_leg(leg, target, spec)
                        .map(|_| ())
                        .map_err(core_error),
                );
            }
            Command::DestroyLeg { leg, reply } => {
                let result = self.core.remove_leg(leg).map(|removed| {
                    let Removed { leg, farewell } = removed;
                    let sockets = self.take_sockets(leg, io);
                    match (farewell, sockets.as_ref()) {
                        (Some(t), Some(s)) => self.send_now(t, s),
                        (Some(t), None) => self.drop_transmit(t),
                        (None, _) => {}
                    }
                });
                let _ = reply.send(result.map_err(core_error));
            }
            Command::SetBridge {
                bridge,
                spec,
                reply,
            } => {
                let _ = reply.send(self.core.set_bridge(bridge, spec).map_err(core_error));
            }
            Command::DestroyBridge { bridge, reply } => {
                let _ = reply.send(self.core.destroy_bridge(bridge).map_err(core_error));
            }
            Command::SetMute {
                leg,
                direction,
                on,
                reply,
            } => {
                let _ = reply.send(self.core.set_mute(leg, direction, on).map_err(core_error));
            }
            Command::Media { target, op, reply } => {
                let _ = reply.send(self.core.media_op(target, op).map_err(core_error));
            }
            Command::SetTalkDetect { leg, params, reply } => {
                let _ = reply.send(self.core.set_talk_detect(leg, params).map_err(core_error));
            }
            Command::SendDtmf { leg, steps, reply } => {
                let _ = reply.send(self.core.send_dtmf(leg, steps).map_err(core_error));
            }
            Command::SetFormat { leg, format, reply } => {
                let _ = reply.send(self.core.set_format(leg, format).map_err(core_error));
            }
            Command::SetRemote { leg, remote, reply } => {
                let _ = reply.send(self.core.set_remote(leg, remote).map_err(core_error));
            }
            Command::SetHold { leg, on, reply } => {
                let _ = reply.send(self.core.set_hold(leg, on).map_err(core_error));
            }
            Command::Stats { leg, reply } => {
                let _ = reply.send(self.core.stats(leg).map_err(core_error));
            }
            Command::Detach { leg, reply } => {
                let result = self.core.detach_leg(leg).map(|(r, state)| {
                    let sockets = self.take_sockets(r, io);
                    LegTransfer(Box::new(Moving { state, sockets }))
                });
                let _ = reply.send(result.map_err(core_error));
            }
            Command::Attach { leg, reply } => {
                let Moving { state, sockets } = *leg.0;
                let result = self.core.attach_leg(state).map(|r| {
                    if let Some(s) = sockets {
                        self.put_sockets(r, s, io);
                    }
                });
                let _ = reply.send(result.map_err(core_error));
            }
            Command::Inject(fault) => self.suffer(fault),
            Command::Shutdown => return false,
        }
        true
    }

    /// Sends `t` at once from `sockets` (a farewell before they close).
    fn send_now(&mut self, t: Transmit, sockets: &LegSockets) {
        let socket = sockets.get(t.port);
        match t.payload {
            crate::media::Payload::Tx { buf, len } => {
                let data = self.core.tx_bytes(&buf);
                let _ = socket.send_to(&data[..len.min(data.len())], t.dest);
                self.core.release_tx(buf);
            }
            // A farewell is always a produced frame; nothing was lent.
            crate::media::Payload::Rx { .. } => {}
        }
    }

    /// Releases what a transmit holds without sending it.
    fn drop_transmit(&mut self, t: Transmit) {
        if let crate::media::Payload::Tx { buf, .. } = t.payload {
            self.core.release_tx(buf);
        }
    }

    /// Binds the pair `port` (RTP, even), `port + 1` (RTCP); `None` when
    /// either is in use.
    fn bind_pair(&mut self, port: u16) -> Result<Option<(LegSockets, SocketAddr)>, DataplaneError> {
        let io_err = |e: io::Error| DataplaneError::Io(e.to_string());
        let Some(odd) = port.checked_add(1).filter(|_| port % 2 == 0) else {
            return Err(DataplaneError::Io(format!(
                "{port} is not an even port below 65535"
            )));
        };
        let in_use = |e: &io::Error| e.kind() == io::ErrorKind::AddrInUse;
        let rtp = match UdpSocket::bind((self.bind_ip, port)) {
            Ok(s) => s,
            Err(e) if in_use(&e) => return Ok(None),
            Err(e) => return Err(io_err(e)),
        };
        let rtcp = match UdpSocket::bind((self.bind_ip, odd)) {
            Ok(s) => s,
            Err(e) if in_use(&e) => return Ok(None),
            Err(e) => return Err(io_err(e)),
        };
        rtp.set_nonblocking(true).map_err(io_err)?;
        rtcp.set_nonblocking(true).map_err(io_err)?;
        let local = rtp.local_addr().map_err(io_err)?;
        Ok(Some((LegSockets { rtp, rtcp }, local)))
    }
}

/// What a shard thread is started with.
pub struct ShardStart {
    pub index: usize,
    pub driver: DriverKind,
    pub commands: Receiver<Command>,
    pub wake: OwnedFd,
    /// The heartbeat the thread publishes, and the stop flag it obeys.
    pub pulse: Arc<Pulse>,
    /// How often an idle shard's loop turns at least.
    pub beat_every: Duration,
    /// Reports the result of the driver's set-up.
    pub ready: std::sync::mpsc::Sender<io::Result<()>>,
    /// Where the core's media events go (to the control plane).
    pub events: tokio::sync::mpsc::Sender<crate::media::MediaEvent>,
}

/// The body of a shard thread: pins it, builds the core, runs the driver
/// until `Shutdown`, until it is told to stop, or until the control plane is
/// gone.
pub fn run_shard(config: &Config, start: ShardStart) {
    if config.dataplane.pin {
        pin_to_core(start.index);
    }
    let shard = Shard::new(
        start.index,
        config,
        start.pulse,
        start.beat_every,
        start.events,
    );
    match start.driver {
        DriverKind::IoUring(features) => {
            uring::run(shard, features, start.commands, start.wake, start.ready)
        }
        DriverKind::Epoll => epoll::run(shard, start.commands, start.wake, start.ready),
    }
}

/// A timerfd on the monotonic clock, set to the core's next deadline.
struct Timer {
    fd: OwnedFd,
    armed: Option<Instant>,
}

impl Timer {
    fn new() -> io::Result<Timer> {
        // SAFETY: timerfd_create has no memory preconditions; the result is
        // checked before use.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Timer { fd, armed: None })
    }

    fn raw(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes the timer fire at `deadline` (`None`: never), if it is not set
    /// for that already.
    fn set(&mut self, deadline: Option<Instant>, now: Instant) {
        if deadline == self.armed {
            return;
        }
        self.armed = deadline;
        let value = match deadline {
            // A zero it_value disarms a timerfd: a deadline already past
            // becomes the shortest wait.
            Some(d) => d
                .saturating_duration_since(now)
                .max(std::time::Duration::from_nanos(1)),
            None => std::time::Duration::ZERO,
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: value.as_secs() as libc::time_t,
                tv_nsec: value.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec on the stack; the old value
        // pointer may be null.
        unsafe {
            libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut());
        }
    }

    /// The timer fired (its expiry was read): it is no longer set.
    fn fired(&mut self) {
        self.armed = None;
    }
}

/// Reads and discards an eventfd's or timerfd's 8-byte counter
/// (non-blocking; nothing to read is fine).
fn drain_counter(fd: std::os::fd::RawFd) {
    let mut value = 0u64;
    // SAFETY: reads at most 8 bytes into a live local u64.
    unsafe {
        libc::read(fd, (&mut value as *mut u64).cast(), 8);
    }
}

/// Pins the calling thread to core `index` (modulo the cores present).
fn pin_to_core(index: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: cpu_set_t is a plain bitmask; zeroed is its empty value, CPU_SET
    // writes within it for an index below CPU_SETSIZE, and sched_setaffinity
    // reads exactly size_of::<cpu_set_t>() bytes from it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(index % cores, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(shard = index, "could not pin shard thread to its core");
        }
    }
}
