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

mod thread;

use std::fmt;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;

use tokio::sync::oneshot;

use crate::config::Config;
use crate::media::Format;

/// A media leg (one channel's media), numbered by the control plane.
pub type LegId = u64;
/// A bridge, numbered by the control plane.
pub type BridgeKey = u64;

/// What a new RTP leg is to talk to.
#[derive(Clone, Debug)]
pub struct LegSpec {
    /// Where media is sent (externalMedia's `external_host`).
    pub remote: SocketAddr,
    /// The leg's audio format.
    pub format: Format,
}

/// One member of a bridge as the data plane needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSpec {
    pub leg: LegId,
    /// Joined with `mute=true`: its audio is not heard by the others.
    pub mute: bool,
    /// `role=announcer`: heard by all, hears no one.
    pub announcer: bool,
}

/// The desired state of a bridge; the shard chooses the technology.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeSpec {
    pub members: Vec<MemberSpec>,
    pub dtmf_events: bool,
    pub proxy_media: bool,
    pub holding: bool,
}

/// The bridge technology in use, with Asterisk's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Technology {
    SimpleBridge,
    NativeRtp,
    Softmix,
    HoldingBridge,
}

impl Technology {
    /// The name ARI shows in a bridge's `technology` field.
    pub fn name(self) -> &'static str {
        match self {
            Technology::SimpleBridge => "simple_bridge",
            Technology::NativeRtp => "native_rtp",
            Technology::Softmix => "softmix",
            Technology::HoldingBridge => "holding_bridge",
        }
    }
}

/// Which way media is affected by mute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
    Both,
}

/// Counters of one leg.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtpStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_dropped: u64,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
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
    /// A socket error.
    Io(String),
}

impl fmt::Display for DataplaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataplaneError::NoPorts => f.write_str("no free RTP port"),
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
    Shutdown,
}

/// The control plane's handle to every shard.
pub struct Dataplane {
    shards: Vec<std_mpsc::SyncSender<Command>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Depth of each shard's command queue.
const COMMAND_QUEUE: usize = 4096;

impl Dataplane {
    /// Starts the shards described by `config`.
    pub fn start(config: &Config) -> std::io::Result<Dataplane> {
        let count = config.shard_count();
        let min = u32::from(config.rtp.port_min);
        let max = u32::from(config.rtp.port_max);
        let span = (max - min + 1) / count as u32;
        let mut shards = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let lo = min + span * index as u32;
            let hi = if index + 1 == count {
                max
            } else {
                lo + span - 1
            };
            let (tx, rx) = std_mpsc::sync_channel(COMMAND_QUEUE);
            let shard = thread::Shard::new(index, config.rtp.bind_ip, lo as u16..=hi as u16);
            let pin = config.dataplane.pin;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("shard-{index}"))
                    .spawn(move || shard.run(rx, pin))?,
            );
            shards.push(tx);
        }
        Ok(Dataplane { shards, threads })
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that owns `leg` or `bridge` ids: legs and bridges are spread
    /// over shards by id (a bridge's members are moved to its shard later).
    fn shard_of(&self, id: u64) -> &std_mpsc::SyncSender<Command> {
        &self.shards[(id % self.shards.len() as u64) as usize]
    }

    async fn call<T>(
        &self,
        id: u64,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, DataplaneError> {
        let (tx, rx) = oneshot::channel();
        self.shard_of(id)
            .send(make(tx))
            .map_err(|_| DataplaneError::ShardGone)?;
        rx.await.map_err(|_| DataplaneError::ShardGone)?
    }

    /// Binds a socket for a new RTP leg; returns its local address.
    pub async fn create_rtp_leg(
        &self,
        leg: LegId,
        spec: LegSpec,
    ) -> Result<SocketAddr, DataplaneError> {
        self.call(leg, |reply| Command::CreateRtpLeg { leg, spec, reply })
            .await
    }

    /// Creates the two halves of a Local channel pair, joined back to back.
    pub async fn create_local_pair(
        &self,
        a: LegId,
        b: LegId,
        format: Format,
    ) -> Result<(), DataplaneError> {
        self.call(a, |reply| Command::CreateLocalPair {
            a,
            b,
            format,
            reply,
        })
        .await
    }

    /// Removes a leg (and closes its socket).
    pub async fn destroy_leg(&self, leg: LegId) -> Result<(), DataplaneError> {
        self.call(leg, |reply| Command::DestroyLeg { leg, reply })
            .await
    }

    /// Sets a bridge's membership and flags; returns the technology chosen.
    pub async fn set_bridge(
        &self,
        bridge: BridgeKey,
        spec: BridgeSpec,
    ) -> Result<Technology, DataplaneError> {
        self.call(bridge, |reply| Command::SetBridge {
            bridge,
            spec,
            reply,
        })
        .await
    }

    /// Removes a bridge.
    pub async fn destroy_bridge(&self, bridge: BridgeKey) -> Result<(), DataplaneError> {
        self.call(bridge, |reply| Command::DestroyBridge { bridge, reply })
            .await
    }

    /// Mutes or unmutes a leg in one or both directions.
    pub async fn set_mute(
        &self,
        leg: LegId,
        direction: Direction,
        on: bool,
    ) -> Result<(), DataplaneError> {
        self.call(leg, |reply| Command::SetMute {
            leg,
            direction,
            on,
            reply,
        })
        .await
    }

    /// Puts a leg on hold (its media is not passed on) or takes it off.
    pub async fn set_hold(&self, leg: LegId, on: bool) -> Result<(), DataplaneError> {
        self.call(leg, |reply| Command::SetHold { leg, on, reply })
            .await
    }

    /// A leg's counters.
    pub async fn rtp_stats(&self, leg: LegId) -> Result<RtpStats, DataplaneError> {
        self.call(leg, |reply| Command::Stats { leg, reply }).await
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        for shard in &self.shards {
            let _ = shard.send(Command::Shutdown);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
