//! The control-plane host: the only I/O owner of the control plane. It runs the
//! HTTP/WebSocket control socket on one thread, holds the [`Registry`] behind one
//! async lock, and reaches the data plane through a [`MediaPlane`] (the shards'
//! `Dataplane` in the node).
//!
//! Invariants:
//! - Every ARI operation runs under the control lock from start to finish, so
//!   operations are serialised as on a single control thread and their events
//!   leave in order.
//! - Events are flushed to the WebSockets when the lock guard drops
//!   ([`ControlGuard`]), so no operation can forget to send its events.
//! - The lock is never held across a wait without a deadline: every
//!   data-plane operation resolves within `dataplane.shard_stall_ms`.
//!
//! # Watchdog
//! [`watch_shards`] runs on the control runtime for the node's life: every
//! [`WATCH_EVERY`] it asks the data plane which shards died
//! ([`MediaPlane::check_shards`]: a thread that exited, a loop that stalled,
//! a command that timed out) and ends their channels under the control lock
//! (cause 38, `ari::ops::hangup_lost`). A node with a dead shard stays up for
//! its other shards but reports itself unhealthy in `/metrics`
//! (`crossbar_healthy 0`, `crossbar_shard_up{shard="N"} 0`).

pub mod auth;
pub mod conn;
pub(crate) mod http;
mod metrics;
mod session;
pub mod sip;
#[cfg(test)]
mod tests;
pub mod tls;

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, Mutex, MutexGuard};

use crate::clock::Timestamp;
use crate::config::Config;
use crate::control::ids::{ClockIds, IdGenerator};
use crate::control::plane::MediaPlane;
use crate::control::Registry;

pub use http::serve;
pub use metrics::Metrics;
pub use sip::SipOut;

/// Bytes an event costs in a queue beyond its text: the `String`, its
/// allocation's rounding and the channel's slot.
pub const EVENT_OVERHEAD: usize = 64;

/// The bounds of the events WebSockets' queues in bytes (`ari.ws_queue_bytes`
/// per client, `ari.ws_queue_total_bytes` across clients) and the bytes
/// queued now across clients.
pub struct QueueBudget {
    pub per_client: usize,
    pub total_limit: usize,
    total: AtomicUsize,
}

impl QueueBudget {
    pub fn new(per_client: usize, total_limit: usize) -> QueueBudget {
        QueueBudget {
            per_client,
            total_limit,
            total: AtomicUsize::new(0),
        }
    }

    /// Bytes queued now across all clients.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// Why an event could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The session is gone (or closed by the node).
    Closed,
    /// Over this client's bound (events or bytes): the session is told to end.
    ClientFull,
    /// Over the bound across clients: the caller closes the biggest client.
    TotalFull,
}

/// What a sink holds queued: its bytes, and whether it was closed by the
/// node (its queue no longer counts).
#[derive(Default)]
struct Held {
    bytes: usize,
    closed: bool,
}

/// A WebSocket's outgoing queue of event texts, and the signal that ends the
/// session when the queue overflows. The queue is bounded in events
/// (`ari.ws_queue_events`) and in bytes, per client and across clients
/// ([`QueueBudget`]).
#[derive(Clone)]
pub struct EventSink {
    pub events: mpsc::Sender<String>,
    pub overflow: Arc<tokio::sync::Notify>,
    held: Arc<std::sync::Mutex<Held>>,
    budget: Arc<QueueBudget>,
}

impl EventSink {
    /// A sink queueing up to `capacity` events with no bound in bytes (unit
    /// tests), and the receiving end of its queue.
    pub fn new(capacity: usize) -> (EventSink, mpsc::Receiver<String>) {
        EventSink::with_budget(capacity, Arc::new(QueueBudget::new(usize::MAX, usize::MAX)))
    }

    /// A sink queueing up to `capacity` events (`ari.ws_queue_events`) within
    /// `budget`. A client that stops reading is disconnected when a bound is
    /// reached instead of growing the node's memory. The session reports
    /// each event it takes with [`EventSink::taken`].
    pub fn with_budget(
        capacity: usize,
        budget: Arc<QueueBudget>,
    ) -> (EventSink, mpsc::Receiver<String>) {
        let (events, rx) = mpsc::channel(capacity.max(1));
        let sink = EventSink {
            events,
            overflow: Arc::new(tokio::sync::Notify::new()),
            held: Arc::default(),
            budget,
        };
        (sink, rx)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes queued for this client now.
    pub fn queued_bytes(&self) -> usize {
        self.held().bytes
    }

    /// Queues one event. A client over its own bound is told to end; over
    /// the total bound the caller decides ([`Control::flush`] closes the
    /// biggest client and offers the event, handed back, again).
    fn offer(&self, text: String) -> Result<(), (Refused, String)> {
        let cost = text.len() + EVENT_OVERHEAD;
        let mut held = self.held();
        if held.closed {
            return Err((Refused::Closed, text));
        }
        if held.bytes.saturating_add(cost) > self.budget.per_client {
            drop(held);
            self.overflow.notify_one();
            return Err((Refused::ClientFull, text));
        }
        if self.budget.total().saturating_add(cost) > self.budget.total_limit {
            return Err((Refused::TotalFull, text));
        }
        match self.events.try_send(text) {
            Ok(()) => {
                held.bytes += cost;
                self.budget.total.fetch_add(cost, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(text)) => {
                drop(held);
                self.overflow.notify_one();
                Err((Refused::ClientFull, text))
            }
            Err(mpsc::error::TrySendError::Closed(text)) => Err((Refused::Closed, text)),
        }
    }

    /// The session took `text` off its queue (to write it).
    pub fn taken(&self, text: &str) {
        let cost = text.len() + EVENT_OVERHEAD;
        let mut held = self.held();
        if !held.closed {
            let cost = cost.min(held.bytes);
            held.bytes -= cost;
            self.budget.total.fetch_sub(cost, Ordering::Relaxed);
        }
    }

    /// Closes the sink: nothing more is queued, and what it holds no longer
    /// counts toward the total (the session drops its queue); the session is
    /// told to end. Returns the bytes it held.
    pub fn close(&self) -> usize {
        let mut held = self.held();
        if held.closed {
            return 0;
        }
        held.closed = true;
        let bytes = std::mem::take(&mut held.bytes);
        self.budget.total.fetch_sub(bytes, Ordering::Relaxed);
        drop(held);
        self.overflow.notify_one();
        bytes
    }

    /// Whether the node closed this sink.
    pub fn closed(&self) -> bool {
        self.held().closed
    }

    fn same(&self, other: &EventSink) -> bool {
        Arc::ptr_eq(&self.held, &other.held)
    }
}

/// The control plane's mutable state: the registry and the socket that holds
/// each application. As in Asterisk, a second socket for an application
/// replaces the first: the old one gets `ApplicationReplaced` and no more events.
pub struct Control {
    pub reg: Registry,
    /// The SIP agent and calls, when SIP is on (`sip.bind`).
    pub sip: Option<crate::ari::sip::SipState>,
    /// The recordings' writer (`recordings.path`).
    pub recorder: crate::recording::Recorder,
    sinks: HashMap<String, (u64, EventSink)>,
    next_session: u64,
}

impl Control {
    /// Registers a WebSocket holding `apps`; returns its session id.
    pub fn attach(
        &mut self,
        now: Timestamp,
        apps: &[String],
        subscribe_all: bool,
        sink: EventSink,
    ) -> u64 {
        self.next_session += 1;
        let sid = self.next_session;
        for app in apps {
            match self.sinks.insert(app.clone(), (sid, sink.clone())) {
                Some((_, old)) => {
                    let replaced = serde_json::json!({
                        "type": "ApplicationReplaced",
                        "timestamp": now.to_string(),
                        "asterisk_id": self.reg.entity_id(),
                        "application": app,
                    });
                    // A full queue: the old socket is told to end anyway.
                    let _ = old.offer(replaced.to_string());
                }
                None => self.reg.hold_app(app, subscribe_all),
            }
        }
        sid
    }

    /// Unregisters a WebSocket session from the apps it still holds.
    pub fn detach(&mut self, sid: u64, apps: &[String]) {
        for app in apps {
            if self.sinks.get(app).is_some_and(|(s, _)| *s == sid) {
                self.sinks.remove(app);
                self.reg.release_app(app);
            }
        }
    }

    /// Sends the registry's pending events to the sockets holding their apps.
    /// A socket over its own bound (events or bytes) loses its applications
    /// at once (they are released as if it had closed) and is told to end;
    /// when the bound across sockets is reached, the socket holding the most
    /// bytes is closed the same way, until the event fits.
    fn flush(&mut self, metrics: &Metrics) {
        let mut overflowed = Vec::new();
        for delivery in self.reg.take_outbox() {
            let Some((sid, sink)) = self.sinks.get(&delivery.app) else {
                continue;
            };
            let (sid, sink) = (*sid, sink.clone());
            // Bounded by the number of sockets: each round closes one.
            let mut result = sink
                .offer(delivery.event.to_string())
                .map_err(|(why, text)| (why, Some(text)));
            while let Err((Refused::TotalFull, text)) = &mut result {
                let Some(text) = text.take() else { break };
                let Some((victim_sid, victim)) = self.biggest_open_sink() else {
                    result = Err((Refused::TotalFull, None));
                    break;
                };
                let freed = victim.close();
                metrics.inc(&metrics.ws_slow_closed_total);
                tracing::warn!(
                    freed_bytes = freed,
                    "events WebSocket closed (1008): the queues of all clients reached ari.ws_queue_total_bytes; this client held the most"
                );
                if !overflowed.contains(&victim_sid) {
                    overflowed.push(victim_sid);
                }
                if victim.same(&sink) {
                    result = Err((Refused::Closed, None));
                    break;
                }
                result = sink.offer(text).map_err(|(why, text)| (why, Some(text)));
            }
            match result.map_err(|(why, _)| why) {
                Ok(()) => metrics.inc(&metrics.events_sent),
                Err(Refused::Closed) => metrics.inc(&metrics.events_dropped),
                Err(Refused::ClientFull | Refused::TotalFull) => {
                    metrics.inc(&metrics.events_dropped);
                    if !sink.closed() {
                        let freed = sink.close();
                        metrics.inc(&metrics.ws_slow_closed_total);
                        tracing::warn!(
                            freed_bytes = freed,
                            "events WebSocket closed (1008): the client is not reading its events (ari.ws_queue_bytes or ari.ws_queue_events reached)"
                        );
                    }
                    if !overflowed.contains(&sid) {
                        overflowed.push(sid);
                    }
                }
            }
        }
        for sid in overflowed {
            let apps: Vec<String> = self
                .sinks
                .iter()
                .filter(|(_, (s, _))| *s == sid)
                .map(|(app, _)| app.clone())
                .collect();
            self.detach(sid, &apps);
        }
    }

    /// The open sink holding the most bytes, with its session id.
    fn biggest_open_sink(&self) -> Option<(u64, EventSink)> {
        self.sinks
            .values()
            .filter(|(_, sink)| !sink.closed())
            .max_by_key(|(_, sink)| sink.queued_bytes())
            .map(|(sid, sink)| (*sid, sink.clone()))
    }
}

/// The control lock, held for a whole operation; flushes events on drop.
pub struct ControlGuard<'a> {
    guard: MutexGuard<'a, Control>,
    metrics: &'a Metrics,
}

impl Deref for ControlGuard<'_> {
    type Target = Control;
    fn deref(&self) -> &Control {
        &self.guard
    }
}

impl DerefMut for ControlGuard<'_> {
    fn deref_mut(&mut self) -> &mut Control {
        &mut self.guard
    }
}

impl Drop for ControlGuard<'_> {
    fn drop(&mut self) {
        // Recordings whose channel or bridge went: their files are completed.
        for key in self.guard.reg.take_recording_ends() {
            self.guard.recorder.end(key, crate::recording::End::Stopped);
        }
        self.guard.flush(self.metrics);
        if let Some(sip) = self.guard.sip.as_mut() {
            sip.flush();
        }
    }
}

/// Everything an ARI handler can reach.
pub struct Node {
    pub config: Config,
    pub dataplane: Box<dyn MediaPlane>,
    pub metrics: Metrics,
    /// Failed-login accounting per source (logging and slowing).
    pub auth: auth::Guard,
    pub started: Timestamp,
    /// The events WebSockets' queues, bounded in bytes.
    pub ws_budget: Arc<QueueBudget>,
    /// Events WebSockets open (or upgrading) now, at most
    /// `ari.max_event_sockets`.
    pub ws_open: Arc<AtomicUsize>,
    control: Mutex<Control>,
    me: Weak<Node>,
}

impl Node {
    /// A node around a started data plane, with channel ids `<start
    /// epoch>.<n>` and UUIDv4 bridge ids.
    pub fn new(config: Config, dataplane: Box<dyn MediaPlane>) -> Arc<Node> {
        let started = Timestamp::now();
        Node::with_ids(config, dataplane, started, Box::new(ClockIds::new(started)))
    }

    /// A node started at `started` whose generated ids come from `ids`.
    pub fn with_ids(
        config: Config,
        dataplane: Box<dyn MediaPlane>,
        started: Timestamp,
        ids: Box<dyn IdGenerator>,
    ) -> Arc<Node> {
        let reg = Registry::new(&config.ari.entity_id, config.ari.bridgepeer, ids);
        let recorder = crate::recording::Recorder::new(config.recordings.path.clone());
        Arc::new_cyclic(|me| Node {
            me: me.clone(),
            auth: auth::Guard::new(
                config.ari.auth_fail_limit,
                std::time::Duration::from_secs(u64::from(config.ari.auth_fail_window_s)),
            ),
            ws_budget: Arc::new(QueueBudget::new(
                config.ari.ws_queue_bytes,
                config.ari.ws_queue_total_bytes,
            )),
            ws_open: Arc::new(AtomicUsize::new(0)),
            config,
            dataplane,
            metrics: Metrics::default(),
            started,
            control: Mutex::new(Control {
                reg,
                sip: None,
                recorder,
                sinks: HashMap::new(),
                next_session: 0,
            }),
        })
    }

    /// Takes the control lock for one operation.
    pub async fn lock(&self) -> ControlGuard<'_> {
        ControlGuard {
            guard: self.control.lock().await,
            metrics: &self.metrics,
        }
    }

    /// A strong handle to this node, for work scheduled after a reply (timers).
    pub fn handle(&self) -> Option<Arc<Node>> {
        self.me.upgrade()
    }

    /// The current time, read once per operation by the host.
    pub fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Turns the data plane's media events (`Dataplane::take_events`) into ARI
/// events, for the node's life (ends when the shards are gone).
pub async fn watch_media(
    node: Weak<Node>,
    mut events: tokio::sync::mpsc::Receiver<crate::media::MediaEvent>,
) {
    // Bounded by the node's life: ends when every shard's sender is gone.
    while let Some(event) = events.recv().await {
        let Some(node) = node.upgrade() else {
            return;
        };
        let now = node.now();
        let mut ctl = node.lock().await;
        match event {
            crate::media::MediaEvent::Dtmf {
                leg,
                digit,
                duration_ms,
            } => {
                if let Some(id) = ctl.reg.channel_of_leg(leg).map(str::to_string) {
                    ctl.reg.dtmf_received(now, &id, digit, duration_ms);
                    crate::ari::recordings::dtmf(&node, &mut ctl, &id, digit).await;
                }
            }
            crate::media::MediaEvent::PlaybackDone { key, .. } => {
                // A recording's beep, or a playback's clip.
                if !crate::ari::recordings::beep_done(&node, &mut ctl, now, key).await {
                    crate::ari::playbacks::clip_done(&node, &mut ctl, now, key).await;
                }
            }
            crate::media::MediaEvent::TalkingStarted { leg } => {
                if let Some(id) = ctl.reg.channel_of_leg(leg).map(str::to_string) {
                    ctl.reg.talking(now, &id, None);
                }
            }
            crate::media::MediaEvent::TalkingFinished { leg, duration_ms } => {
                if let Some(id) = ctl.reg.channel_of_leg(leg).map(str::to_string) {
                    ctl.reg.talking(now, &id, Some(duration_ms));
                }
            }
        }
    }
}

/// How often the watchdog looks at the shards.
pub const WATCH_EVERY: Duration = Duration::from_millis(500);

/// The watchdog (see the module docs): one [`check_shards`] every
/// [`WATCH_EVERY`], for as long as the node exists.
pub async fn watch_shards(node: Weak<Node>) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Bounded by the node's life: the loop ends once the node is dropped.
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else {
            return;
        };
        check_shards(&node).await;
    }
}

/// One look at the shards: ends the channels of each shard newly found dead
/// (under the control lock, so their events leave in order); answers how
/// many were ended.
pub async fn check_shards(node: &Node) -> usize {
    let downs = node.dataplane.check_shards();
    if downs.is_empty() {
        return 0;
    }
    let now = node.now();
    let mut ctl = node.lock().await;
    let mut total = 0;
    for down in &downs {
        let ended = crate::ari::ops::hangup_lost(node, &mut ctl, now, down).await;
        tracing::error!(
            shard = down.shard,
            channels = ended,
            "node unhealthy: data plane shard {} is dead ({}); its {ended} channels were hung up (cause 38)",
            down.shard,
            down.reason
        );
        total += ended;
    }
    total
}
