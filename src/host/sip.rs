//! The SIP I/O owner: the UDP socket and the TCP listener on `sip.bind`,
//! the clock of the SIP agent, and the per-source rate limit.
//!
//! One task ([`run`]) receives datagrams and framed TCP messages, hands
//! them to the agent under the control lock and then lets
//! `ari::sip::handle_events` turn the agent's call events into channel
//! changes, all in that one lock; it also sleeps until the agent's next
//! timeout. What the agent sends leaves through [`SipOut`] when the lock is
//! released (the guard calls `SipState::flush`), from whichever task held
//! the lock: UDP with a non-blocking send, TCP through the connection's
//! bounded writer queue.
//!
//! Invariants and limits:
//! - A message larger than `sip.max_message` is answered 413 (when it is a
//!   request whose head can be read) and never parsed.
//! - A source IP sending more than `sip.source_rate` messages in a second
//!   has the excess dropped and counted (`crossbar_sip_dropped_total`),
//!   unless it is in `sip.trusted`: a proxy carries everybody's calls.
//! - At most [`MAX_TCP`] TCP connections; one whose writer queue is full
//!   ([`TCP_QUEUE`] messages) loses messages rather than blocking the node;
//!   a connection idle for [`TCP_IDLE`] is closed.
//! - Transport 0 is UDP; TCP connections are numbered from 1.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Notify};

use super::Node;
use crate::config::Cidr;
use crate::sip::message::{frame, FrameError};
use crate::sip::transaction::{Transmit, TransportId};

/// Most TCP connections at once.
pub const MAX_TCP: usize = 1024;
/// Messages queued for one TCP connection before more are dropped.
pub const TCP_QUEUE: usize = 256;
/// A TCP connection with nothing received for this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(600);

type TcpWriters = Arc<Mutex<HashMap<u32, mpsc::Sender<Vec<u8>>>>>;

/// Where the agent's messages leave.
#[derive(Clone)]
pub struct SipOut {
    udp: Arc<UdpSocket>,
    tcp: TcpWriters,
    wake: Arc<Notify>,
}

impl SipOut {
    /// Sends one message without waiting (UDP: a full socket buffer drops
    /// it, as the network could; the transaction layer retransmits).
    pub fn send(&self, t: Transmit) {
        if t.transport == TransportId(0) {
            if let Err(e) = self.udp.try_send_to(&t.bytes, t.to) {
                tracing::debug!("sip: send to {} failed: {e}", t.to);
            }
            return;
        }
        let writer = self
            .tcp
            .lock()
            .ok()
            .and_then(|m| m.get(&t.transport.0).cloned());
        match writer {
            Some(w) => {
                if w.try_send(t.bytes).is_err() {
                    tracing::debug!("sip: TCP connection {} is not keeping up", t.transport.0);
                }
            }
            None => tracing::debug!("sip: TCP connection {} is gone", t.transport.0),
        }
    }

    /// Tells the SIP task to look at the agent's next timeout again.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The bound sockets, before the task runs.
pub struct SipSockets {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    writers: TcpWriters,
    wake: Arc<Notify>,
}

impl SipSockets {
    /// Binds UDP and TCP on `addr` (a port of 0 takes the same free port
    /// for both).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<SipSockets> {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(udp.local_addr()?).await?;
        Ok(SipSockets {
            udp: Arc::new(udp),
            tcp,
            writers: Arc::new(Mutex::new(HashMap::new())),
            wake: Arc::new(Notify::new()),
        })
    }

    /// The address bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// The sending half, for the agent's state.
    pub fn out(&self) -> SipOut {
        SipOut {
            udp: self.udp.clone(),
            tcp: self.writers.clone(),
            wake: self.wake.clone(),
        }
    }
}

/// Starts SIP on `sip.bind` (nothing when it is "off"): binds, gives the
/// control state its agent, spawns [`run`]. Answers the address bound.
pub async fn start(node: &Arc<Node>) -> Result<Option<SocketAddr>, String> {
    let Some(bind) = node.config.sip.bind_addr() else {
        return Ok(None);
    };
    let sockets = SipSockets::bind(bind)
        .await
        .map_err(|e| format!("cannot listen for SIP on {bind}: {e}"))?;
    let bound = sockets
        .local_addr()
        .map_err(|e| format!("SIP socket: {e}"))?;
    // What peers are told to reach (Via, Contact): the bound address, or
    // the RTP address when bound to every interface.
    let advertised = if bound.ip().is_unspecified() {
        let ip = node.config.rtp.bind_ip;
        let ip = if ip.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            ip
        };
        SocketAddr::new(ip, bound.port())
    } else {
        bound
    };
    let state = crate::ari::sip::SipState::new(&node.config, advertised, sockets.out())?;
    node.lock().await.sip = Some(state);
    tokio::spawn(run(node.clone(), sockets));
    Ok(Some(bound))
}

/// A message from a TCP connection.
struct Inbound {
    transport: TransportId,
    from: SocketAddr,
    bytes: Vec<u8>,
    /// The head of a message that cannot be framed, and the status it gets.
    refusal: Option<u16>,
}

/// The per-source rate limit: messages per source IP per second.
struct RateLimit {
    per_second: u32,
    sources: HashMap<IpAddr, (Instant, u32)>,
    /// Sources not limited (`sip.trusted`).
    exempt: Vec<Cidr>,
}

impl RateLimit {
    /// Whether a message from `ip` is taken.
    fn admit(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.exempt.iter().any(|c| c.contains(ip)) {
            return true;
        }
        if self.sources.len() > 65_536 {
            // Forget sources whose window ended (bounded memory).
            self.sources
                .retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(1));
        }
        let entry = self.sources.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(1) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_second
    }
}

/// The SIP task: runs for the node's life.
pub async fn run(node: Arc<Node>, sockets: SipSockets) {
    let max = node.config.sip.max_message;
    let mut limit = RateLimit {
        per_second: node.config.sip.source_rate,
        sources: HashMap::new(),
        exempt: Cidr::parse_list(&node.config.sip.trusted).unwrap_or_default(),
    };
    let (inbox_tx, mut inbox) = mpsc::channel::<Inbound>(1024);
    let mut next_tcp: u32 = 1;
    let mut buf = vec![0u8; 65_536];
    // Runs until the process ends; each turn handles one input.
    loop {
        let deadline = {
            let mut ctl = node.lock().await;
            ctl.sip.as_mut().and_then(|s| s.armed_timeout())
        };
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = sockets.udp.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let bytes = &buf[..n];
                    if !limit.admit(Instant::now(), from.ip()) {
                        dropped(&node, "rx_rate").await;
                        continue;
                    }
                    let refusal = (n > max).then_some(413);
                    deliver(&node, TransportId(0), from, bytes, refusal).await;
                }
                Err(e) => {
                    tracing::debug!("sip: UDP receive error: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(m) = inbox.recv() => {
                if !limit.admit(Instant::now(), m.from.ip()) {
                    dropped(&node, "rx_rate").await;
                    continue;
                }
                deliver(&node, m.transport, m.from, &m.bytes, m.refusal).await;
            }
            r = sockets.tcp.accept() => match r {
                Ok((stream, from)) => {
                    let open = sockets.writers.lock().map(|m| m.len()).unwrap_or(MAX_TCP);
                    if open >= MAX_TCP {
                        dropped(&node, "tcp_refused").await;
                        continue;
                    }
                    let id = next_tcp;
                    next_tcp = next_tcp.wrapping_add(1).max(1);
                    let (tx, rx) = mpsc::channel(TCP_QUEUE);
                    if let Ok(mut m) = sockets.writers.lock() {
                        m.insert(id, tx);
                    }
                    tokio::spawn(connection(
                        stream,
                        from,
                        TransportId(id),
                        max,
                        inbox_tx.clone(),
                        rx,
                        sockets.writers.clone(),
                    ));
                }
                Err(e) => {
                    tracing::debug!("sip: TCP accept error: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = sleep => {
                let now = node.now();
                let mut ctl = node.lock().await;
                if let Some(sip) = ctl.sip.as_mut() {
                    sip.agent.handle_timeout(Instant::now());
                }
                crate::ari::sip::handle_events(&node, &mut ctl, now).await;
            }
            _ = sockets.wake.notified() => {}
        }
    }
}

async fn dropped(node: &Node, why: &'static str) {
    let mut ctl = node.lock().await;
    if let Some(sip) = ctl.sip.as_mut() {
        sip.agent.count_dropped(why);
    }
}

/// One message into the agent, and the events it caused into channels.
async fn deliver(
    node: &Node,
    transport: TransportId,
    from: SocketAddr,
    bytes: &[u8],
    refusal: Option<u16>,
) {
    let now = node.now();
    let mut ctl = node.lock().await;
    let Some(sip) = ctl.sip.as_mut() else {
        return;
    };
    if let Some(code) = refusal {
        sip.agent.refuse_raw(transport, from, bytes, code);
        return;
    }
    sip.agent.receive(Instant::now(), transport, from, bytes);
    crate::ari::sip::handle_events(node, &mut ctl, now).await;
}

/// One TCP connection: frames what it reads (RFC 3261 18.3) into the
/// inbox, writes what the agent queues for it.
async fn connection(
    stream: TcpStream,
    from: SocketAddr,
    transport: TransportId,
    max: usize,
    inbox: mpsc::Sender<Inbound>,
    mut outbox: mpsc::Receiver<Vec<u8>>,
    writers: TcpWriters,
) {
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = outbox.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16_384];
    // Ends when the peer closes, errs, idles or sends what cannot be framed.
    loop {
        let n = match tokio::time::timeout(TCP_IDLE, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut fatal = false;
        // Bounded: each turn consumes a complete message from `buf`.
        loop {
            match frame(&buf, max) {
                Ok(Some((skip, len))) => {
                    let bytes = buf[skip..skip + len].to_vec();
                    buf.drain(..skip + len);
                    let m = Inbound {
                        transport,
                        from,
                        bytes,
                        refusal: None,
                    };
                    if inbox.send(m).await.is_err() {
                        fatal = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let head_end = buf
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .unwrap_or(buf.len().min(max));
                    let m = Inbound {
                        transport,
                        from,
                        bytes: buf[..head_end].to_vec(),
                        refusal: Some(if e == FrameError::TooLarge { 413 } else { 400 }),
                    };
                    let _ = inbox.send(m).await;
                    fatal = true;
                    break;
                }
            }
        }
        if fatal {
            break;
        }
    }
    // Let queued responses (a 413) go out before the socket closes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    if let Ok(mut m) = writers.lock() {
        m.remove(&transport.0);
    }
    let _ = writer.await;
}
