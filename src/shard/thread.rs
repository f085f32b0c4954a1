//! One shard: a thread that owns the sockets of its legs and the state of its
//! bridges, and serves [`Command`]s from the control plane.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::mpsc::Receiver;

use super::{BridgeKey, BridgeSpec, Command, DataplaneError, LegId, LegSpec, RtpStats, Technology};

/// A leg as the shard holds it.
struct Leg {
    socket: Option<UdpSocket>,
    remote: Option<SocketAddr>,
    stats: RtpStats,
}

/// A shard's state.
pub(super) struct Shard {
    index: usize,
    bind_ip: IpAddr,
    ports: RangeInclusive<u16>,
    next_port: u16,
    legs: HashMap<LegId, Leg>,
    bridges: HashMap<BridgeKey, BridgeSpec>,
}

impl Shard {
    pub(super) fn new(index: usize, bind_ip: IpAddr, ports: RangeInclusive<u16>) -> Shard {
        let next_port = *ports.start();
        Shard {
            index,
            bind_ip,
            ports,
            next_port,
            legs: HashMap::new(),
            bridges: HashMap::new(),
        }
    }

    /// Serves commands until `Shutdown` or until the control plane is gone.
    pub(super) fn run(mut self, commands: Receiver<Command>, pin: bool) {
        if pin {
            pin_to_core(self.index);
        }
        while let Ok(command) = commands.recv() {
            if !self.handle(command) {
                break;
            }
        }
    }

    /// Handles one command; false means stop.
    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::CreateRtpLeg { leg, spec, reply } => {
                let _ = reply.send(self.create_rtp_leg(leg, spec));
            }
            Command::CreateLocalPair { a, b, reply, .. } => {
                for id in [a, b] {
                    self.legs.insert(
                        id,
                        Leg {
                            socket: None,
                            remote: None,
                            stats: RtpStats::default(),
                        },
                    );
                }
                let _ = reply.send(Ok(()));
            }
            Command::DestroyLeg { leg, reply } => {
                let _ = reply.send(
                    self.legs
                        .remove(&leg)
                        .map(|_| ())
                        .ok_or(DataplaneError::Unknown),
                );
            }
            Command::SetBridge {
                bridge,
                spec,
                reply,
            } => {
                let tech = if spec.holding {
                    Technology::HoldingBridge
                } else {
                    Technology::SimpleBridge
                };
                self.bridges.insert(bridge, spec);
                let _ = reply.send(Ok(tech));
            }
            Command::DestroyBridge { bridge, reply } => {
                let _ = reply.send(
                    self.bridges
                        .remove(&bridge)
                        .map(|_| ())
                        .ok_or(DataplaneError::Unknown),
                );
            }
            Command::SetMute { leg, reply, .. } | Command::SetHold { leg, reply, .. } => {
                let known = self.legs.contains_key(&leg);
                let _ = reply.send(if known {
                    Ok(())
                } else {
                    Err(DataplaneError::Unknown)
                });
            }
            Command::Stats { leg, reply } => {
                let _ = reply.send(
                    self.legs
                        .get(&leg)
                        .map(|l| RtpStats {
                            local: l.socket.as_ref().and_then(|s| s.local_addr().ok()),
                            remote: l.remote,
                            ..l.stats.clone()
                        })
                        .ok_or(DataplaneError::Unknown),
                );
            }
            Command::Shutdown => return false,
        }
        true
    }

    /// Binds the next free even port of the shard's slice.
    fn create_rtp_leg(&mut self, leg: LegId, spec: LegSpec) -> Result<SocketAddr, DataplaneError> {
        let (lo, hi) = (*self.ports.start(), *self.ports.end());
        let slots = u32::from(hi - lo) / 2 + 1;
        for _ in 0..slots {
            let port = self.next_port & !1;
            let port = if port < lo { lo + (lo & 1) } else { port };
            self.next_port = if u32::from(port) + 2 > u32::from(hi) {
                lo
            } else {
                port + 2
            };
            match UdpSocket::bind((self.bind_ip, port)) {
                Ok(socket) => {
                    let local = socket
                        .local_addr()
                        .map_err(|e| DataplaneError::Io(e.to_string()))?;
                    self.legs.insert(
                        leg,
                        Leg {
                            socket: Some(socket),
                            remote: Some(spec.remote),
                            stats: RtpStats::default(),
                        },
                    );
                    return Ok(local);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(DataplaneError::Io(e.to_string())),
            }
        }
        Err(DataplaneError::NoPorts)
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
