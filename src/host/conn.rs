//! The control socket's connections: its own accept loop over tokio's
//! listener, each connection served by hyper's HTTP/1 builder (with upgrades,
//! for the events WebSockets), and a table of the open connections that
//! enforces the `[ari]` connection keys:
//!
//! - `header_timeout_ms`: a client has that long to send a request's headers,
//!   from connect for the first request and from the request's first byte for
//!   later ones (a slowloris request is cut);
//! - `idle_timeout_ms`: a keep-alive connection with no request for that long
//!   is closed (WebSockets are exempt);
//! - `max_connections`: at the limit, the connection idle the longest is
//!   closed to admit the new one, so a client always gets in unless every
//!   connection is busy (in a request, or a WebSocket); then the new one gets
//!   503;
//! - `max_connections_per_source`: connections from one address beyond it
//!   get 503.
//!
//! Descriptor exhaustion (EMFILE/ENFILE on accept) frees an idle connection,
//! backs off and is logged once per episode, never a 500.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Node;

/// Back-off after an accept that failed for want of descriptors.
const FD_BACKOFF: Duration = Duration::from_millis(100);
/// Time without descriptor exhaustion that ends an episode (and its log line).
const FD_CALM: Duration = Duration::from_secs(10);

/// The limits, from `[ari]`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_total: usize,
    pub max_per_source: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Limits {
    pub fn from_config(c: &crate::config::AriConfig) -> Limits {
        Limits {
            max_total: c.max_connections,
            max_per_source: c.max_connections_per_source,
            header_timeout: Duration::from_millis(c.header_timeout_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
        }
    }
}

struct Entry {
    peer: IpAddr,
    /// Requests being served (in the service).
    busy: u32,
    /// Answered 101: a WebSocket now, exempt from the timers and eviction.
    upgraded: bool,
    /// Accepted, or the last request finished, at.
    since: Instant,
    /// The pending request's headers started at (accept for the first).
    head: Option<Instant>,
    /// Chosen to be closed to admit another connection.
    evicted: bool,
    wake: Arc<Notify>,
}

impl Entry {
    fn idle(&self) -> bool {
        self.busy == 0 && !self.upgraded
    }
}

#[derive(Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, Entry>,
    per_source: HashMap<IpAddr, usize>,
    /// Connections not evicted.
    live: usize,
}

/// Why a connection is closed by the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    Header,
    Idle,
}

/// Why a connection is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerSource,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Total => "Too many connections",
            Refusal::PerSource => "Too many connections from this address",
        }
    }
}

/// The open connections (WebSockets included) of the control socket.
pub struct Table {
    limits: Limits,
    inner: Mutex<Inner>,
}

impl Table {
    pub fn new(limits: Limits) -> Table {
        Table {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open connections (evicted ones still closing included).
    pub fn open(&self) -> usize {
        self.lock().conns.len()
    }

    /// Admits a connection from `peer`, evicting the connection idle the
    /// longest when at the total limit. Returns its id and the wake-up of
    /// the evicted one's task (already marked), or the refusal.
    pub fn admit(&self, peer: IpAddr, now: Instant) -> Result<(u64, Arc<Notify>), Refusal> {
        let mut t = self.lock();
        if t.per_source.get(&peer).copied().unwrap_or(0) >= self.limits.max_per_source {
            return Err(Refusal::PerSource);
        }
        if t.live >= self.limits.max_total && !Self::evict_one(&mut t) {
            return Err(Refusal::Total);
        }
        t.next += 1;
        let id = t.next;
        let wake = Arc::new(Notify::new());
        t.conns.insert(
            id,
            Entry {
                peer,
                busy: 0,
                upgraded: false,
                since: now,
                head: Some(now),
                evicted: false,
                wake: wake.clone(),
            },
        );
        *t.per_source.entry(peer).or_insert(0) += 1;
        t.live += 1;
        Ok((id, wake))
    }

    /// Marks the connection idle the longest as evicted and wakes its task;
    /// false when none is idle.
    pub fn evict_oldest_idle(&self) -> bool {
        Self::evict_one(&mut self.lock())
    }

    fn evict_one(t: &mut Inner) -> bool {
        let victim = t
            .conns
            .iter()
            .filter(|(_, e)| e.idle() && !e.evicted)
            .min_by_key(|(_, e)| e.since)
            .map(|(id, _)| *id);
        let Some(id) = victim else { return false };
        if let Some(e) = t.conns.get_mut(&id) {
            e.evicted = true;
            e.wake.notify_one();
        }
        t.live -= 1;
        true
    }

    fn remove(&self, id: u64) {
        let mut t = self.lock();
        if let Some(e) = t.conns.remove(&id) {
            if !e.evicted {
                t.live -= 1;
            }
            if let Some(n) = t.per_source.get_mut(&e.peer) {
                *n -= 1;
                if *n == 0 {
                    t.per_source.remove(&e.peer);
                }
            }
        }
    }

    /// Bytes arrived: the first of a request's headers starts its timer.
    fn on_bytes(&self, id: u64, now: Instant) {
        let mut t = self.lock();
        if let Some(e) = t.conns.get_mut(&id) {
            if e.idle() && e.head.is_none() {
                e.head = Some(now);
                e.wake.notify_one();
            }
        }
    }

    fn begin(&self, id: u64) {
        if let Some(e) = self.lock().conns.get_mut(&id) {
            e.busy += 1;
            e.head = None;
        }
    }

    fn end(&self, id: u64, upgraded: bool, now: Instant) {
        if let Some(e) = self.lock().conns.get_mut(&id) {
            e.busy = e.busy.saturating_sub(1);
            e.upgraded |= upgraded;
            e.since = now;
            e.wake.notify_one();
        }
    }

    /// When the connection's timer fires, and for what; `None` while it is
    /// busy or a WebSocket.
    fn deadline(&self, id: u64) -> Option<(Instant, Expiry)> {
        let t = self.lock();
        let e = t.conns.get(&id)?;
        if !e.idle() {
            return None;
        }
        Some(match e.head {
            Some(h) => (h + self.limits.header_timeout, Expiry::Header),
            None => (e.since + self.limits.idle_timeout, Expiry::Idle),
        })
    }

    /// True when the connection was evicted and is idle (safe to drop).
    fn evicted_idle(&self, id: u64) -> bool {
        self.lock()
            .conns
            .get(&id)
            .is_some_and(|e| e.evicted && e.idle())
    }
}

/// Removes its connection from the table when the socket is dropped (by its
/// HTTP connection, or by the WebSocket it was upgraded to).
struct Registration {
    table: Arc<Table>,
    node: Arc<Node>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.remove(self.id);
        self.node
            .metrics
            .http_connections_open
            .store(self.table.open() as u64, Ordering::Relaxed);
    }
}

/// A connection's byte stream: plain TCP, or TLS over it (`ari.tls_cert`).
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

macro_rules! each_stream {
    ($s:expr, $io:ident => $e:expr) => {
        match $s {
            Stream::Plain($io) => $e,
            Stream::Tls($io) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each_stream!(self.get_mut(), io => Pin::new(io).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self.get_mut(), io => Pin::new(io).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self.get_mut(), io => Pin::new(io).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self.get_mut(), io => Pin::new(io).poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self.get_mut(), io => Pin::new(io).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        each_stream!(self, io => io.is_write_vectored())
    }
}

/// A connection's stream that reports the bytes it reads (plaintext, after
/// TLS) to the table.
struct Tracked {
    io: Stream,
    reg: Registration,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.reg.table.on_bytes(self.reg.id, Instant::now());
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Ends a request in the table, also when hyper drops it unfinished.
struct Busy {
    table: Arc<Table>,
    id: u64,
    upgraded: bool,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.table.end(self.id, self.upgraded, Instant::now());
    }
}

/// True for the errors of a process or system out of file descriptors.
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Accepts connections on `listener` and serves `app` on each, forever;
/// over TLS when `tls` is given.
pub async fn run(
    node: Arc<Node>,
    listener: TcpListener,
    app: Router,
    tls: Option<super::tls::TlsAcceptor>,
) -> io::Result<()> {
    let table = Arc::new(Table::new(Limits::from_config(&node.config.ari)));
    // Descriptor exhaustion: warned once per episode (an episode ends after
    // FD_CALM without EMFILE).
    let mut last_emfile: Option<Instant> = None;
    let mut last_refusal_log: Option<Instant> = None;
    let mut refused_since_log = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) if is_fd_exhaustion(&e) => {
                node.metrics.inc(&node.metrics.http_accept_fd_exhausted);
                if last_emfile.is_none() {
                    tracing::warn!(
                        "ARI cannot accept connections: {e} (open-file limit {}); closing the connections idle the longest to make room (logged once until {} s without it)",
                        nofile_limit().map_or("unknown".into(), |l| l.to_string()),
                        FD_CALM.as_secs()
                    );
                }
                last_emfile = Some(Instant::now());
                // The evicted connection's task closes it (and counts it):
                // let it run, then accept again; with nothing to evict, back
                // off rather than spin.
                if table.evict_oldest_idle() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else {
                    tokio::time::sleep(FD_BACKOFF).await;
                }
                continue;
            }
            Err(e) => {
                // ECONNABORTED and the like: the client's problem.
                tracing::debug!("ARI accept failed: {e}");
                continue;
            }
        };
        if last_emfile.is_some_and(|t| t.elapsed() >= FD_CALM) {
            last_emfile = None;
            tracing::info!(
                "ARI accepts connections again (no descriptor exhaustion for {} s)",
                FD_CALM.as_secs()
            );
        }
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
        let now = Instant::now();
        match table.admit(peer.ip(), now) {
            Ok((id, wake)) => {
                node.metrics
                    .http_connections_open
                    .store(table.open() as u64, Ordering::Relaxed);
                let reg = Registration {
                    table: table.clone(),
                    node: node.clone(),
                    id,
                };
                tokio::spawn(serve_one(
                    node.clone(),
                    table.clone(),
                    app.clone(),
                    Accepted {
                        stream,
                        reg,
                        tls: tls.clone(),
                    },
                    peer,
                    wake,
                ));
            }
            Err(why) => {
                node.metrics.inc(&node.metrics.http_connections_refused);
                refused_since_log += 1;
                if last_refusal_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
                {
                    tracing::warn!(
                        peer = %peer,
                        refused = refused_since_log,
                        "ARI connection refused with 503: {} (ari.max_connections {}, ari.max_connections_per_source {}; at most one such line per 10 s)",
                        why.reason(),
                        table.limits.max_total,
                        table.limits.max_per_source
                    );
                    last_refusal_log = Some(now);
                    refused_since_log = 0;
                }
                refuse(stream, why);
            }
        }
    }
}

/// Answers 503 on a connection not admitted and closes it, without waiting.
fn refuse(stream: TcpStream, why: Refusal) {
    let body = format!("{{\"message\":\"{}\"}}", why.reason());
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(reply.as_bytes());
}

/// A connection admitted to the table, its TLS handshake still to come.
struct Accepted {
    stream: TcpStream,
    reg: Registration,
    tls: Option<super::tls::TlsAcceptor>,
}

/// The TLS handshake of a connection, within `ari.header_timeout_ms` (and
/// given up when the connection is evicted meanwhile); `None` when it
/// failed, counted and logged (debug: a plain HTTP request to the TLS port
/// ends here).
async fn handshake(
    node: &Node,
    table: &Table,
    acceptor: &super::tls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    wake: &Notify,
) -> Option<Stream> {
    let timeout = table.limits.header_timeout;
    let accept = tokio::time::timeout(timeout, acceptor.accept(stream));
    tokio::pin!(accept);
    // Bounded by the timeout above.
    loop {
        tokio::select! {
            r = accept.as_mut() => {
                return match r {
                    Ok(Ok(tls)) => Some(Stream::Tls(Box::new(tls))),
                    Ok(Err(e)) => {
                        node.metrics.inc(&node.metrics.tls_handshake_failures);
                        tracing::debug!(peer = %peer, "ARI TLS handshake failed: {e}");
                        None
                    }
                    Err(_) => {
                        node.metrics.inc(&node.metrics.tls_handshake_failures);
                        node.metrics.inc(&node.metrics.http_header_timeouts);
                        tracing::debug!(peer = %peer, "ARI TLS handshake not done within ari.header_timeout_ms");
                        None
                    }
                };
            }
            _ = wake.notified() => {
                if table.evicted_idle(id) {
                    node.metrics.inc(&node.metrics.http_connections_evicted);
                    return None;
                }
            }
        }
    }
}

async fn serve_one(
    node: Arc<Node>,
    table: Arc<Table>,
    app: Router,
    accepted: Accepted,
    peer: SocketAddr,
    wake: Arc<Notify>,
) {
    let Accepted { stream, reg, tls } = accepted;
    let id = reg.id;
    let stream = match &tls {
        None => Stream::Plain(stream),
        Some(acceptor) => match handshake(&node, &table, acceptor, stream, peer, id, &wake).await {
            Some(s) => s,
            None => return,
        },
    };
    let io = Tracked { io: stream, reg };
    let service = {
        let table = table.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            table.begin(id);
            let mut busy = Busy {
                table: table.clone(),
                id,
                upgraded: false,
            };
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            let fut = tower_service::Service::call(&mut app.clone(), req);
            async move {
                let resp: Response<Body> = match fut.await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                busy.upgraded = resp.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS;
                drop(busy);
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The node's own timers (the table) replace hyper's header timeout.
    builder.keep_alive(true).header_read_timeout(None);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    loop {
        let deadline = table.deadline(id);
        let sleep_to = deadline.map_or_else(|| Instant::now() + Duration::from_secs(3600), |d| d.0);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %peer, "ARI connection ended: {e}");
                }
                return;
            }
            _ = wake.notified() => {
                if table.evicted_idle(id) {
                    node.metrics.inc(&node.metrics.http_connections_evicted);
                    tracing::debug!(peer = %peer, "ARI connection closed to admit another (idle the longest)");
                    return;
                }
            }
            _ = tokio::time::sleep_until(sleep_to) => {
                // Rechecked: a request may have begun since.
                match table.deadline(id) {
                    Some((at, Expiry::Header)) if at <= Instant::now() => {
                        node.metrics.inc(&node.metrics.http_header_timeouts);
                        tracing::debug!(peer = %peer, "ARI connection closed: request headers not received in time");
                        return;
                    }
                    Some((at, Expiry::Idle)) if at <= Instant::now() => {
                        node.metrics.inc(&node.metrics.http_idle_closed);
                        tracing::debug!(peer = %peer, "ARI keep-alive connection closed: idle");
                        return;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The open-file soft limit.
pub fn nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the rlimit struct we pass, which is
    // a valid, exclusively borrowed local.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}

/// Raises the open-file soft limit to the hard limit; returns (before, after).
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the rlimit struct we pass, which is
    // a valid, exclusively borrowed local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur >= lim.rlim_max {
        return Ok((before, before));
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit only reads the struct we pass, a valid local; raising
    // the soft limit up to the hard limit needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((before, lim.rlim_cur))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per: usize) -> Limits {
        Limits {
            max_total: total,
            max_per_source: per,
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn full_table_evicts_the_longest_idle_and_refuses_when_all_busy() {
        let t = Table::new(limits(2, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let now = Instant::now();
        let (x, _) = t.admit(a, now).unwrap();
        let (y, _) = t.admit(b, now + Duration::from_millis(1)).unwrap();
        // Full: x, idle the longest, is evicted.
        let (z, _) = t.admit(c, now + Duration::from_millis(2)).unwrap();
        assert!(t.evicted_idle(x));
        assert!(!t.evicted_idle(y));
        t.remove(x);
        t.begin(y);
        t.begin(z);
        assert_eq!(t.admit(a, now).err(), Some(Refusal::Total));
        t.end(z, true, now);
        // z is a WebSocket now: not evictable either.
        assert_eq!(t.admit(a, now).err(), Some(Refusal::Total));
        t.end(y, false, now);
        assert!(t.admit(a, now).is_ok());
    }

    #[test]
    fn per_source_cap_refuses() {
        let t = Table::new(limits(10, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        let (x, _) = t.admit(a, now).unwrap();
        t.admit(a, now).unwrap();
        assert_eq!(t.admit(a, now).err(), Some(Refusal::PerSource));
        assert!(t.admit("10.0.0.2".parse().unwrap(), now).is_ok());
        t.remove(x);
        assert!(t.admit(a, now).is_ok());
    }

    #[test]
    fn timers_header_then_idle() {
        let t = Table::new(limits(10, 10));
        let now = Instant::now();
        let (x, _) = t.admit("10.0.0.1".parse().unwrap(), now).unwrap();
        assert_eq!(
            t.deadline(x),
            Some((now + Duration::from_secs(1), Expiry::Header))
        );
        t.begin(x);
        assert_eq!(t.deadline(x), None);
        t.end(x, false, now);
        assert_eq!(
            t.deadline(x),
            Some((now + Duration::from_secs(2), Expiry::Idle))
        );
        let later = now + Duration::from_millis(500);
        t.on_bytes(x, later);
        assert_eq!(
            t.deadline(x),
            Some((later + Duration::from_secs(1), Expiry::Header))
        );
    }
}
