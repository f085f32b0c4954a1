//! The control plane's state: channels, bridges and Stasis applications as ARI
//! sees them, kept by one sans-IO [`Registry`], and the control plane's view
//! of the data plane.
//!
//! What lives here:
//! - [`Registry`] and its parts ([`channel`], [`bridge`], [`app`]);
//! - [`error`]: [`ControlError`], what the registry refuses, named by what went
//!   wrong (ARI turns it into statuses and messages; this module knows no HTTP);
//! - [`ids`]: the [`IdGenerator`](ids::IdGenerator) the registry draws generated
//!   ids and name counters from (real or deterministic);
//! - [`plane`]: [`MediaPlane`](plane::MediaPlane), the data-plane operations the
//!   ARI handlers call, implemented for the shards' `Dataplane`;
//! - `fake` (unit tests only): an in-memory `MediaPlane` that records its calls.
//!
//! The registry never does I/O and never reads the clock: every mutation takes
//! the current [`Timestamp`] and appends the events it causes, already routed to
//! their applications, to an outbox that the host drains after each operation.
//!
//! Invariants:
//! - `control` does not depend on `ari`: the ARI layer calls the registry, never
//!   the other way round.
//! - Events leave in the order the mutations happened; one mutation's events are
//!   appended together (e.g. a hangup's `ChannelHangupRequest` → `ChannelLeftBridge`
//!   → `StasisEnd` → `ChannelDestroyed`, as Asterisk orders them).
//! - An event goes to an application once, and only if the application is held
//!   by a WebSocket and its filter allows the event type.
//! - `channel.bridge == Some(b)` exactly when `b`'s member list names the channel.
//! - A claimed id (given or generated) names no existing channel (resp. bridge).
//! - Routing: channel events go to the channel's application, explicit `channel:`
//!   subscribers and `subscribeAll` apps; bridge events to explicit `bridge:`
//!   subscribers, apps with a channel in the bridge, and `subscribeAll` apps.

pub mod app;
pub mod bridge;
pub mod channel;
pub mod error;
#[cfg(test)]
pub mod fake;
pub mod ids;
pub mod plane;
pub mod playback;
pub mod recording;

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use crate::clock::Timestamp;
use crate::config::BridgePeerMode;
use app::{Application, EventSource};
use bridge::{Bridge, Member};
use channel::{Cause, Channel, ChannelState};
pub use error::{ControlError, IdKind, SourceUse};
use ids::IdGenerator;

/// An event for one application.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub app: String,
    pub event: Value,
}

/// Longest id a client may give a channel or bridge.
pub const MAX_ID_LEN: usize = 128;

/// The control plane's state.
pub struct Registry {
    entity_id: String,
    bridgepeer: BridgePeerMode,
    channels: HashMap<String, Channel>,
    /// Channel ids by media leg (for events from the data plane).
    by_leg: HashMap<crate::media::LegId, String>,
    /// Playbacks by id, and their ids by data-plane key.
    playbacks: HashMap<String, playback::Playback>,
    playback_keys: HashMap<u64, String>,
    /// Live recordings by name, their names by key, and the keys of those
    /// whose target went (for the host to tell the writer).
    recordings: HashMap<String, recording::LiveRecording>,
    recording_keys: HashMap<u64, String>,
    recording_ends: Vec<u64>,
    bridges: HashMap<String, Bridge>,
    /// Channel and bridge ids in creation order (by `seq`), for lists
    /// taken a page at a time.
    channel_order: BTreeMap<u64, String>,
    bridge_order: BTreeMap<u64, String>,
    /// Bridges playing music on hold: (started by the application, the
    /// idle music of a holding bridge).
    bridge_moh: HashMap<String, (bool, bool)>,
    apps: BTreeMap<String, Application>,
    global_vars: Map<String, Value>,
    seq: u64,
    next_key: u64,
    ids: Box<dyn IdGenerator>,
    outbox: Vec<Delivery>,
}

impl Registry {
    /// An empty registry whose generated ids come from `ids`.
    pub fn new(entity_id: &str, bridgepeer: BridgePeerMode, ids: Box<dyn IdGenerator>) -> Registry {
        Registry {
            entity_id: entity_id.to_string(),
            bridgepeer,
            channels: HashMap::new(),
            by_leg: HashMap::new(),
            playbacks: HashMap::new(),
            playback_keys: HashMap::new(),
            recordings: HashMap::new(),
            recording_keys: HashMap::new(),
            recording_ends: Vec::new(),
            bridges: HashMap::new(),
            channel_order: BTreeMap::new(),
            bridge_order: BTreeMap::new(),
            bridge_moh: HashMap::new(),
            apps: BTreeMap::new(),
            global_vars: Map::new(),
            seq: 0,
            next_key: 1,
            ids,
            outbox: Vec::new(),
        }
    }

    /// The events produced since the last call, in order.
    pub fn take_outbox(&mut self) -> Vec<Delivery> {
        std::mem::take(&mut self.outbox)
    }

    /// The node's entity id (`asterisk_id`).
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }

    // ---- applications -------------------------------------------------------

    /// A WebSocket starts holding `name`.
    pub fn hold_app(&mut self, name: &str, subscribe_all: bool) {
        let app = self
            .apps
            .entry(name.to_string())
            .or_insert_with(|| Application::new(name));
        app.holders += 1;
        app.subscribe_all |= subscribe_all;
    }

    /// A WebSocket stops holding `name`; the application goes when none does.
    pub fn release_app(&mut self, name: &str) {
        if let Some(app) = self.apps.get_mut(name) {
            app.holders = app.holders.saturating_sub(1);
            if app.holders == 0 {
                self.apps.remove(name);
            }
        }
    }

    /// Whether an application is registered.
    pub fn has_app(&self, name: &str) -> bool {
        self.apps.contains_key(name)
    }

    /// Names of the registered applications.
    pub fn app_names(&self) -> Vec<String> {
        self.apps.keys().cloned().collect()
    }

    /// The `Application` model.
    pub fn app_snapshot(&self, name: &str) -> Option<Value> {
        let app = self.apps.get(name)?;
        let mut channel_ids: Vec<&str> = self
            .channels_sorted()
            .into_iter()
            .filter(|c| c.app.as_deref() == Some(name))
            .map(|c| c.id.as_str())
            .collect();
        let mut bridge_ids: Vec<&str> = self
            .bridges_sorted()
            .into_iter()
            .filter(|b| {
                b.members.iter().any(|m| {
                    self.channels.get(&m.channel).and_then(|c| c.app.as_deref()) == Some(name)
                })
            })
            .map(|b| b.id.as_str())
            .collect();
        let mut endpoint_ids = Vec::new();
        let mut device_names = Vec::new();
        for source in &app.explicit {
            match EventSource::parse(source) {
                Some(EventSource::Channel(_)) => {
                    let id = &source["channel:".len()..];
                    if !channel_ids.contains(&id) {
                        channel_ids.push(id);
                    }
                }
                Some(EventSource::Bridge(_)) => {
                    let id = &source["bridge:".len()..];
                    if !bridge_ids.contains(&id) {
                        bridge_ids.push(id);
                    }
                }
                Some(EventSource::Endpoint(e)) => endpoint_ids.push(e),
                Some(EventSource::DeviceState(d)) => device_names.push(d),
                None => {}
            }
        }
        Some(json!({
            "name": app.name,
            "channel_ids": channel_ids,
            "bridge_ids": bridge_ids,
            "endpoint_ids": endpoint_ids,
            "device_names": device_names,
            "events_allowed": app.events_allowed,
            "events_disallowed": app.events_disallowed,
        }))
    }

    /// `POST /applications/{app}/subscription`.
    pub fn subscribe(&mut self, app: &str, sources: &[String]) -> Result<Value, ControlError> {
        let parsed = self.check_sources(app, sources)?;
        let entry = self.apps.get_mut(app).ok_or_else(|| app_missing(app))?;
        for source in parsed {
            entry.explicit.insert(source.key());
        }
        self.app_snapshot(app).ok_or_else(|| app_missing(app))
    }

    /// `DELETE /applications/{app}/subscription`.
    pub fn unsubscribe(&mut self, app: &str, sources: &[String]) -> Result<Value, ControlError> {
        let parsed = self.check_sources(app, sources)?;
        let entry = self.apps.get_mut(app).ok_or_else(|| app_missing(app))?;
        if let Some(s) = parsed.iter().find(|s| !entry.explicit.contains(&s.key())) {
            return Err(ControlError::NotSubscribed {
                app: app.to_string(),
                source: s.key(),
            });
        }
        for source in parsed {
            entry.explicit.remove(&source.key());
        }
        self.app_snapshot(app).ok_or_else(|| app_missing(app))
    }

    fn check_sources(
        &self,
        app: &str,
        sources: &[String],
    ) -> Result<Vec<EventSource>, ControlError> {
        if !self.apps.contains_key(app) {
            return Err(app_missing(app));
        }
        let mut parsed = Vec::new();
        for s in sources {
            let source = EventSource::parse(s).ok_or_else(|| ControlError::InvalidEventSource {
                source: s.clone(),
                by: SourceUse::Subscription,
            })?;
            let exists = match &source {
                EventSource::Channel(id) => self.channels.contains_key(id),
                EventSource::Bridge(id) => self.bridges.contains_key(id),
                // No endpoints or device states exist until SIP endpoints are configured.
                EventSource::Endpoint(_) | EventSource::DeviceState(_) => false,
            };
            if !exists {
                return Err(ControlError::UnknownEventSource {
                    source: s.clone(),
                    by: SourceUse::Subscription,
                });
            }
            parsed.push(source);
        }
        Ok(parsed)
    }

    /// `PUT /applications/{app}/eventFilter`.
    pub fn set_filter(&mut self, app: &str, filter: Option<&Value>) -> Result<Value, ControlError> {
        let entry = self.apps.get_mut(app).ok_or_else(|| app_missing(app))?;
        let list = |key: &'static str| -> Result<Vec<Value>, ControlError> {
            match filter.and_then(|f| f.get(key)) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) if items.iter().all(|i| i["type"].is_string()) => {
                    Ok(items.clone())
                }
                Some(_) => Err(ControlError::InvalidFilter { key }),
            }
        };
        entry.events_allowed = list("allowed")?;
        entry.events_disallowed = list("disallowed")?;
        self.app_snapshot(app).ok_or_else(|| app_missing(app))
    }

    // ---- channels -----------------------------------------------------------

    pub fn channel(&self, id: &str) -> Option<&Channel> {
        self.channels.get(id)
    }

    pub fn channel_mut(&mut self, id: &str) -> Option<&mut Channel> {
        self.channels.get_mut(id)
    }

    /// Channels in creation order.
    pub fn channels_sorted(&self) -> Vec<&Channel> {
        self.channel_order
            .values()
            .filter_map(|id| self.channels.get(id))
            .collect()
    }

    /// How many channels there are.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// How many bridges there are.
    pub fn bridge_count(&self) -> usize {
        self.bridges.len()
    }

    /// A channel that exists.
    pub fn existing(&self, id: &str) -> Result<&Channel, ControlError> {
        self.channels
            .get(id)
            .ok_or_else(|| ControlError::UnknownChannel(id.to_string()))
    }

    /// A channel that exists and is in a Stasis application.
    pub fn in_stasis(&self, id: &str) -> Result<&Channel, ControlError> {
        let ch = self.existing(id)?;
        if ch.app.is_none() {
            return Err(ControlError::NotInStasis(id.to_string()));
        }
        Ok(ch)
    }

    /// Takes a channel id: the client's (refused if invalid or taken) or a
    /// generated one.
    pub fn claim_channel_id(&mut self, given: Option<&str>) -> Result<String, ControlError> {
        match given.filter(|s| !s.is_empty()) {
            Some(id) => {
                check_id(id, IdKind::Channel)?;
                if self.channels.contains_key(id) {
                    return Err(ControlError::IdInUse {
                        kind: IdKind::Channel,
                        id: id.to_string(),
                    });
                }
                Ok(id.to_string())
            }
            None => self.generate_channel_id(None),
        }
    }

    /// The ids of a new Local pair (`channelId`, `otherChannelId`), claimed
    /// together so that neither takes the other's: a given id must be free;
    /// `;2` given no id of its own is `<;1's id>;2` when `;1` has one, as in
    /// Asterisk (`ast_unreal_new_channels`); generated ids skip every id taken,
    /// this pair's included.
    pub fn claim_local_ids(
        &mut self,
        one: Option<&str>,
        two: Option<&str>,
    ) -> Result<(String, String), ControlError> {
        let in_use = |id: &str| ControlError::IdInUse {
            kind: IdKind::Channel,
            id: id.to_string(),
        };
        let one = one.filter(|s| !s.is_empty());
        let two = two.filter(|s| !s.is_empty());
        for id in [one, two].into_iter().flatten() {
            check_id(id, IdKind::Channel)?;
            if self.channels.contains_key(id) {
                return Err(in_use(id));
            }
        }
        let two = match (one, two) {
            (Some(a), Some(b)) if a == b => return Err(in_use(b)),
            (_, Some(b)) => Some(b.to_string()),
            (Some(a), None) => {
                let derived = format!("{a};2");
                if self.channels.contains_key(&derived) {
                    return Err(in_use(&derived));
                }
                Some(derived)
            }
            (None, None) => None,
        };
        let one = match one {
            Some(a) => a.to_string(),
            None => self.generate_channel_id(two.as_deref())?,
        };
        let two = match two {
            Some(b) => b,
            None => self.generate_channel_id(Some(&one))?,
        };
        Ok((one, two))
    }

    /// A generated channel id that no channel has and that is not `also_taken`.
    fn generate_channel_id(&mut self, also_taken: Option<&str>) -> Result<String, ControlError> {
        let ids = &mut self.ids;
        let channels = &self.channels;
        unused_id(
            IdKind::Channel,
            channels.len() + usize::from(also_taken.is_some()),
            || ids.channel_id(),
            |id| channels.contains_key(id) || also_taken == Some(id),
        )
    }

    /// A creation sequence number, for listing in creation order.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A fresh data-plane id for a leg.
    pub fn next_leg(&mut self) -> crate::media::LegId {
        crate::media::LegId(self.take_key())
    }

    /// A fresh data-plane key for a bridge.
    pub fn next_bridge_key(&mut self) -> crate::media::BridgeKey {
        crate::media::BridgeKey(self.take_key())
    }

    fn take_key(&mut self) -> u64 {
        let k = self.next_key;
        self.next_key += 1;
        k
    }

    /// The next name suffix: an 8-digit hex counter, as Asterisk names channels.
    pub fn next_name_suffix(&mut self) -> String {
        format!("{:08x}", self.ids.name_counter())
    }

    /// Adds a new channel (`ChannelCreated` to `subscribeAll` apps).
    pub fn insert_channel(&mut self, now: Timestamp, channel: Channel) {
        let snapshot = channel.snapshot();
        let targets = self.subscribe_all_apps();
        self.by_leg.insert(channel.leg, channel.id.clone());
        self.channel_order.insert(channel.seq, channel.id.clone());
        self.channels.insert(channel.id.clone(), channel);
        self.emit(&targets, "ChannelCreated", now, vec![("channel", snapshot)]);
    }

    /// The channel enters `app` (`StasisStart` with `args`).
    pub fn enter_stasis(&mut self, now: Timestamp, id: &str, app: &str, args: Vec<String>) {
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        ch.app = Some(app.to_string());
        ch.departed_app = None;
        ch.app_args = args.clone();
        let snapshot = ch.snapshot();
        self.emit(
            &[app.to_string()],
            "StasisStart",
            now,
            vec![("args", json!(args)), ("channel", snapshot)],
        );
    }

    /// The channel leaves its application (`StasisEnd`).
    pub fn leave_stasis(&mut self, now: Timestamp, id: &str) {
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        let Some(app) = ch.app.take() else {
            return;
        };
        ch.departed_app = Some(app.clone());
        let snapshot = ch.snapshot();
        self.emit(&[app], "StasisEnd", now, vec![("channel", snapshot)]);
    }

    /// A move to an application nobody runs (`ApplicationMoveFailed` in the old one).
    pub fn move_failed(&mut self, now: Timestamp, id: &str, destination: &str, args: Vec<String>) {
        let Some(ch) = self.channels.get(id) else {
            return;
        };
        let Some(app) = ch.app.clone() else {
            return;
        };
        let snapshot = ch.snapshot();
        self.emit(
            &[app],
            "ApplicationMoveFailed",
            now,
            vec![
                ("channel", snapshot),
                ("destination", json!(destination)),
                ("args", json!(args)),
            ],
        );
    }

    /// Sets the channel state (`ChannelStateChange` when it changes).
    pub fn set_state(&mut self, now: Timestamp, id: &str, state: ChannelState) {
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        if ch.state == state {
            return;
        }
        ch.state = state;
        let snapshot = ch.snapshot();
        let targets = self.channel_targets(id);
        self.emit(
            &targets,
            "ChannelStateChange",
            now,
            vec![("channel", snapshot)],
        );
    }

    /// A hangup was asked for (`ChannelHangupRequest`).
    pub fn hangup_request(&mut self, now: Timestamp, id: &str, cause: u16, soft: bool) {
        let Some(ch) = self.channels.get(id) else {
            return;
        };
        let snapshot = ch.snapshot();
        let targets = self.channel_targets(id);
        let mut fields = vec![("cause", json!(cause))];
        if soft {
            fields.insert(0, ("soft", json!(true)));
        }
        fields.push(("channel", snapshot));
        self.emit(&targets, "ChannelHangupRequest", now, fields);
    }

    /// Removes a channel (`ChannelDestroyed`), and every subscription to it.
    pub fn remove_channel(&mut self, now: Timestamp, id: &str, cause: Cause) -> Option<Channel> {
        let targets = self.channel_targets(id);
        self.end_playbacks_of(now, &playback::Owner::Channel(id.to_string()));
        self.end_recordings_of(now, &playback::Owner::Channel(id.to_string()));
        let mut ch = self.channels.remove(id)?;
        self.channel_order.remove(&ch.seq);
        if let channel::ChannelKind::Snoop { target } = &ch.kind {
            if let Some(t) = self.channels.get_mut(target) {
                t.snoops.retain(|s| s != id);
            }
        }
        if self.by_leg.get(&ch.leg).is_some_and(|c| c == id) {
            self.by_leg.remove(&ch.leg);
        }
        ch.state = ChannelState::Down;
        let snapshot = ch.snapshot();
        self.emit(
            &targets,
            "ChannelDestroyed",
            now,
            vec![
                ("cause", json!(cause.code)),
                ("cause_txt", json!(cause.text)),
                ("channel", snapshot),
            ],
        );
        let key = format!("channel:{id}");
        for app in self.apps.values_mut() {
            app.explicit.remove(&key);
        }
        Some(ch)
    }

    /// Sets a channel variable (`ChannelVarset`).
    pub fn set_var(&mut self, now: Timestamp, id: &str, name: &str, value: &str) {
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        if value.is_empty() {
            ch.vars.remove(name);
        } else {
            ch.vars.insert(name.to_string(), json!(value));
        }
        self.varset_event(now, id, name, value);
    }

    /// A channel variable's value: set ones, built-in ones, and BRIDGEPEER.
    pub fn get_var(&self, id: &str, name: &str) -> Option<String> {
        let ch = self.channels.get(id)?;
        if let Some(v) = ch.vars.get(name) {
            return v.as_str().map(str::to_string);
        }
        if name == "BRIDGEPEER" {
            return ch.bridge.as_ref().map(|b| self.bridge_peers(b, id));
        }
        ch.builtin_var(name)
    }

    /// A global variable.
    pub fn global_var(&self, name: &str) -> Option<String> {
        self.global_vars
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }

    /// Sets (or, with an empty value, clears) a global variable.
    pub fn set_global_var(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.global_vars.remove(name);
        } else {
            self.global_vars.insert(name.to_string(), json!(value));
        }
    }

    /// Emits `ChannelHold` / `ChannelUnhold`.
    pub fn hold_event(&mut self, now: Timestamp, id: &str, on: bool) {
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        ch.held = on;
        let snapshot = ch.snapshot();
        let targets = self.channel_targets(id);
        let kind = if on { "ChannelHold" } else { "ChannelUnhold" };
        self.emit(&targets, kind, now, vec![("channel", snapshot)]);
    }

    /// Sets a channel's caller id and connected line together, as one
    /// snapshot update: `ChannelCallerId` if the caller id changed (the
    /// presentation of ids set over ARI is Asterisk's default, 0), then
    /// `ChannelConnectedLine` if the connected line did.
    pub fn set_party(
        &mut self,
        now: Timestamp,
        id: &str,
        caller: (String, String),
        connected: (String, String),
    ) {
        let Some(ch) = self.channels.get_mut(id) else {
            return;
        };
        let caller_changed = ch.caller != caller;
        let connected_changed = ch.connected != connected;
        ch.caller = caller;
        ch.connected = connected;
        let snapshot = ch.snapshot();
        let targets = self.channel_targets(id);
        if caller_changed {
            self.emit(
                &targets,
                "ChannelCallerId",
                now,
                vec![
                    ("caller_presentation", json!(0)),
                    (
                        "caller_presentation_txt",
                        json!("Presentation Allowed, Not Screened"),
                    ),
                    ("channel", snapshot.clone()),
                ],
            );
        }
        if connected_changed {
            self.emit(
                &targets,
                "ChannelConnectedLine",
                now,
                vec![("channel", snapshot)],
            );
        }
    }

    /// Subscribes `app` to a channel's events (as Asterisk subscribes the
    /// originating application to both halves of an originated Local pair).
    pub fn subscribe_channel(&mut self, app: &str, id: &str) {
        if let Some(entry) = self.apps.get_mut(app) {
            entry.explicit.insert(format!("channel:{id}"));
        }
    }

    /// Emits `Dial` events between a caller (optional) and the dialed peer.
    pub fn dial_event(&mut self, now: Timestamp, peer: &str, dialstring: &str, status: &str) {
        let Some(ch) = self.channels.get(peer) else {
            return;
        };
        let snapshot = ch.snapshot();
        let targets = self.channel_targets(peer);
        let mut fields = vec![("dialstatus", json!(status))];
        if status.is_empty() {
            fields.push(("dialstring", json!(dialstring)));
            fields.push(("forward", json!("")));
        }
        fields.push(("peer", snapshot));
        self.emit(&targets, "Dial", now, fields);
    }

    /// `POST /events/user/{name}`: a `ChannelUserevent` to `app` with the
    /// snapshots of `sources`.
    pub fn user_event(
        &mut self,
        now: Timestamp,
        app: &str,
        name: &str,
        sources: &[String],
        variables: Value,
    ) -> Result<(), ControlError> {
        if !self.apps.contains_key(app) {
            return Err(app_missing(app));
        }
        let unknown = |s: &String| ControlError::UnknownEventSource {
            source: s.clone(),
            by: SourceUse::UserEvent,
        };
        let mut fields = vec![("eventname", json!(name))];
        for s in sources {
            match EventSource::parse(s) {
                Some(EventSource::Channel(id)) => match self.channels.get(&id) {
                    Some(c) => fields.push(("channel", c.snapshot())),
                    None => return Err(unknown(s)),
                },
                Some(EventSource::Bridge(id)) => match self.bridges.get(&id) {
                    Some(b) => fields.push(("bridge", b.snapshot())),
                    None => return Err(unknown(s)),
                },
                Some(_) => return Err(unknown(s)),
                None => {
                    return Err(ControlError::InvalidEventSource {
                        source: s.clone(),
                        by: SourceUse::UserEvent,
                    })
                }
            }
        }
        fields.push(("userevent", variables));
        self.emit(&[app.to_string()], "ChannelUserevent", now, fields);
        Ok(())
    }

    // ---- bridges ------------------------------------------------------------

    pub fn bridge(&self, id: &str) -> Option<&Bridge> {
        self.bridges.get(id)
    }

    /// A bridge that exists.
    pub fn existing_bridge(&self, id: &str) -> Result<&Bridge, ControlError> {
        self.bridges
            .get(id)
            .ok_or_else(|| ControlError::UnknownBridge(id.to_string()))
    }

    /// Up to `limit` bridges created after `after` (a `seq`; `None`: from
    /// the first) and no later than `upto`, in creation order, with the
    /// `seq` of the last one.
    pub fn bridges_page(&self, after: Option<u64>, upto: u64, limit: usize) -> Vec<(u64, &Bridge)> {
        let from = after.map_or(0, |a| a.saturating_add(1));
        // After the last one (a full page ended at `upto`): nothing; an
        // empty range, not `range(upto + 1..=upto)`, which panics.
        if from > upto {
            return Vec::new();
        }
        self.bridge_order
            .range(from..=upto)
            .filter_map(|(seq, id)| self.bridges.get(id).map(|b| (*seq, b)))
            .take(limit)
            .collect()
    }

    /// Like [`Registry::bridges_page`], for channels.
    pub fn channels_page(
        &self,
        after: Option<u64>,
        upto: u64,
        limit: usize,
    ) -> Vec<(u64, &Channel)> {
        let from = after.map_or(0, |a| a.saturating_add(1));
        if from > upto {
            return Vec::new();
        }
        self.channel_order
            .range(from..=upto)
            .filter_map(|(seq, id)| self.channels.get(id).map(|c| (*seq, c)))
            .take(limit)
            .collect()
    }

    /// The `seq` the next channel or bridge will get, less one: every
    /// existing one has a `seq` up to it.
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// A bridge's music on hold: (started by the application, idle music
    /// of a holding bridge).
    pub fn bridge_moh(&self, id: &str) -> (bool, bool) {
        self.bridge_moh.get(id).copied().unwrap_or((false, false))
    }

    /// Notes a bridge's music on hold (see [`Registry::bridge_moh`]).
    pub fn set_bridge_moh(&mut self, id: &str, app: bool, idle: bool) {
        if !self.bridges.contains_key(id) || (!app && !idle) {
            self.bridge_moh.remove(id);
        } else {
            self.bridge_moh.insert(id.to_string(), (app, idle));
        }
    }

    /// Bridges in creation order.
    pub fn bridges_sorted(&self) -> Vec<&Bridge> {
        self.bridge_order
            .values()
            .filter_map(|id| self.bridges.get(id))
            .collect()
    }

    /// Takes a bridge id: the client's (refused if invalid or taken) or a
    /// generated one.
    pub fn claim_bridge_id(&mut self, given: Option<&str>) -> Result<String, ControlError> {
        match given.filter(|s| !s.is_empty()) {
            Some(id) => {
                check_id(id, IdKind::Bridge)?;
                if self.bridges.contains_key(id) {
                    return Err(ControlError::IdInUse {
                        kind: IdKind::Bridge,
                        id: id.to_string(),
                    });
                }
                Ok(id.to_string())
            }
            None => {
                let ids = &mut self.ids;
                let bridges = &self.bridges;
                unused_id(
                    IdKind::Bridge,
                    bridges.len(),
                    || ids.bridge_id(),
                    |id| bridges.contains_key(id),
                )
            }
        }
    }

    /// Adds a bridge (`BridgeCreated` to `subscribeAll` apps).
    pub fn insert_bridge(&mut self, now: Timestamp, bridge: Bridge) {
        let snapshot = bridge.snapshot();
        let targets = self.subscribe_all_apps();
        self.bridge_order.insert(bridge.seq, bridge.id.clone());
        self.bridges.insert(bridge.id.clone(), bridge);
        self.emit(&targets, "BridgeCreated", now, vec![("bridge", snapshot)]);
    }

    /// The data plane's view of a bridge as it would be with `members`.
    pub fn bridge_spec(&self, bridge: &Bridge, members: &[Member]) -> crate::shard::BridgeSpec {
        let view = Bridge {
            members: members.to_vec(),
            ..bridge.clone()
        };
        view.spec(|ch| self.channels.get(ch).map(|c| c.leg))
    }

    /// A member joins (`ChannelEnteredBridge`, BRIDGEPEER per the configured mode).
    pub fn join_bridge(
        &mut self,
        now: Timestamp,
        bridge_id: &str,
        member: Member,
        technology: &'static str,
    ) {
        let channel_id = member.channel.clone();
        let Some(bridge) = self.bridges.get_mut(bridge_id) else {
            return;
        };
        bridge.technology = technology;
        bridge.members.push(member);
        let bsnap = bridge.snapshot();
        let Some(ch) = self.channels.get_mut(&channel_id) else {
            return;
        };
        ch.bridge = Some(bridge_id.to_string());
        let csnap = ch.snapshot();
        let mut targets = self.channel_targets(&channel_id);
        merge_targets(&mut targets, self.bridge_targets(bridge_id));
        self.emit(
            &targets,
            "ChannelEnteredBridge",
            now,
            vec![("bridge", bsnap), ("channel", csnap)],
        );
        self.announce_bridgepeers(now, bridge_id, None);
    }

    /// A member leaves (`ChannelLeftBridge`, BRIDGEPEER per the configured mode).
    pub fn leave_bridge(
        &mut self,
        now: Timestamp,
        bridge_id: &str,
        channel_id: &str,
        technology: &'static str,
    ) {
        let mut targets = self.channel_targets(channel_id);
        merge_targets(&mut targets, self.bridge_targets(bridge_id));
        let Some(bridge) = self.bridges.get_mut(bridge_id) else {
            return;
        };
        bridge.technology = technology;
        bridge.members.retain(|m| m.channel != channel_id);
        let bsnap = bridge.snapshot();
        let Some(ch) = self.channels.get_mut(channel_id) else {
            return;
        };
        ch.bridge = None;
        let csnap = ch.snapshot();
        self.emit(
            &targets,
            "ChannelLeftBridge",
            now,
            vec![("bridge", bsnap), ("channel", csnap)],
        );
        self.announce_bridgepeers(now, bridge_id, Some(channel_id));
    }

    // ---- playbacks -----------------------------------------------------------

    /// A playback by id.
    pub fn playback(&self, id: &str) -> Option<&playback::Playback> {
        self.playbacks.get(id)
    }

    /// The playback the data plane numbers `key`.
    pub fn playback_of_key(&self, key: u64) -> Option<&playback::Playback> {
        self.playbacks.get(self.playback_keys.get(&key)?)
    }

    /// An id for a new playback: `given` if free, else a fresh UUID.
    pub fn claim_playback_id(&mut self, given: Option<&str>) -> Result<String, ControlError> {
        match given {
            Some(id) => {
                check_id(id, IdKind::Playback)?;
                if self.playbacks.contains_key(id) {
                    return Err(ControlError::IdInUse {
                        kind: IdKind::Playback,
                        id: id.to_string(),
                    });
                }
                Ok(id.to_string())
            }
            None => Ok(uuid::Uuid::new_v4().to_string()),
        }
    }

    /// Records a new playback (queued; no event yet). Its key is drawn here.
    pub fn insert_playback(
        &mut self,
        id: String,
        target: playback::Owner,
        media: Vec<String>,
        language: String,
        offset_ms: u64,
        skip_ms: u32,
    ) -> &playback::Playback {
        let key = self.take_key();
        self.playback_keys.insert(key, id.clone());
        let p = playback::Playback {
            id: id.clone(),
            key,
            target,
            media,
            index: 0,
            language,
            offset_ms,
            skip_ms,
            state: playback::PlaybackState::Queued,
        };
        self.playbacks.entry(id).or_insert(p)
    }

    /// Whether a playback of `target` is playing (or paused).
    pub fn playing_on(&self, target: &playback::Owner) -> bool {
        self.playbacks.values().any(|p| {
            &p.target == target
                && matches!(
                    p.state,
                    playback::PlaybackState::Playing | playback::PlaybackState::Paused
                )
        })
    }

    /// The oldest queued playback of `target`.
    pub fn next_queued(&self, target: &playback::Owner) -> Option<String> {
        self.playbacks
            .values()
            .filter(|p| &p.target == target && p.state == playback::PlaybackState::Queued)
            .min_by_key(|p| p.key)
            .map(|p| p.id.clone())
    }

    /// Ends every playback of a target that has gone (`done`).
    pub fn end_playbacks_of(&mut self, now: Timestamp, target: &playback::Owner) {
        let ended: Vec<String> = self
            .playbacks
            .values()
            .filter(|p| &p.target == target)
            .map(|p| p.id.clone())
            .collect();
        for playback in ended {
            self.finish_playback(now, &playback, false);
        }
    }

    /// A playback's state (pause, unpause).
    pub fn set_playback_state(&mut self, id: &str, state: playback::PlaybackState) {
        if let Some(p) = self.playbacks.get_mut(id) {
            p.state = state;
        }
    }

    /// The playback starts (`PlaybackStarted`).
    pub fn start_playback(&mut self, now: Timestamp, id: &str) {
        if let Some(p) = self.playbacks.get_mut(id) {
            p.state = playback::PlaybackState::Playing;
            self.playback_event(now, id, "PlaybackStarted");
        }
    }

    /// The playback moves on to its next medium (`PlaybackContinuing`);
    /// false when it had none left.
    pub fn continue_playback(&mut self, now: Timestamp, id: &str) -> bool {
        let Some(p) = self.playbacks.get_mut(id) else {
            return false;
        };
        if p.index + 1 >= p.media.len() {
            return false;
        }
        p.index += 1;
        self.playback_event(now, id, "PlaybackContinuing");
        true
    }

    /// The playback ends (`PlaybackFinished`, state `done` or `failed`) and
    /// is forgotten.
    pub fn finish_playback(&mut self, now: Timestamp, id: &str, failed: bool) {
        let Some(p) = self.playbacks.get_mut(id) else {
            return;
        };
        p.state = if failed {
            playback::PlaybackState::Failed
        } else {
            playback::PlaybackState::Done
        };
        self.playback_event(now, id, "PlaybackFinished");
        if let Some(p) = self.playbacks.remove(id) {
            self.playback_keys.remove(&p.key);
        }
    }

    fn playback_event(&mut self, now: Timestamp, id: &str, kind: &str) {
        let Some(p) = self.playbacks.get(id) else {
            return;
        };
        let snapshot = p.snapshot();
        let targets = match &p.target {
            playback::Owner::Channel(id) => self.channel_targets(id),
            playback::Owner::Bridge(id) => self.bridge_targets(id),
        };
        self.emit(&targets, kind, now, vec![("playback", snapshot)]);
    }

    /// The channel whose media is `leg`.
    pub fn channel_of_leg(&self, leg: crate::media::LegId) -> Option<&str> {
        self.by_leg.get(&leg).map(String::as_str)
    }

    /// A digit ended on channel `id` (`ChannelDtmfReceived`, to the
    /// channel's subscribers).
    pub fn dtmf_received(&mut self, now: Timestamp, id: &str, digit: char, duration_ms: u32) {
        let Some(ch) = self.channels.get(id) else {
            return;
        };
        let snapshot = ch.snapshot();
        let targets = self.channel_targets(id);
        self.emit(
            &targets,
            "ChannelDtmfReceived",
            now,
            vec![
                ("digit", json!(digit.to_string())),
                ("duration_ms", json!(duration_ms)),
                ("channel", snapshot),
            ],
        );
    }

    /// `ChannelTalkingStarted` (`finished` = `None`) or
    /// `ChannelTalkingFinished` with the talk's duration in ms.
    pub fn talking(&mut self, now: Timestamp, id: &str, finished: Option<u32>) {
        let Some(ch) = self.channels.get(id) else {
            return;
        };
        let snapshot = ch.snapshot();
        let targets = self.channel_targets(id);
        match finished {
            None => self.emit(
                &targets,
                "ChannelTalkingStarted",
                now,
                vec![("channel", snapshot)],
            ),
            Some(duration) => self.emit(
                &targets,
                "ChannelTalkingFinished",
                now,
                vec![("channel", snapshot), ("duration", json!(duration))],
            ),
        }
    }

    /// The data plane chose `technology` anew for a bridge whose membership
    /// did not change (a member's new codec). Asterisk publishes no event
    /// for it; the bridge's snapshot shows it.
    pub fn set_technology(&mut self, id: &str, technology: &'static str) {
        if let Some(b) = self.bridges.get_mut(id) {
            b.technology = technology;
        }
    }

    /// Removes an empty bridge (`BridgeDestroyed` to its subscribers).
    /// `targets` are the subscribers computed while its members were still in it.
    pub fn remove_bridge(&mut self, now: Timestamp, id: &str, mut targets: Vec<String>) {
        self.end_playbacks_of(now, &playback::Owner::Bridge(id.to_string()));
        merge_targets(&mut targets, self.bridge_targets(id));
        self.end_recordings_to(now, &playback::Owner::Bridge(id.to_string()), &targets);
        let Some(bridge) = self.bridges.remove(id) else {
            return;
        };
        self.bridge_moh.remove(id);
        self.bridge_order.remove(&bridge.seq);
        self.emit(
            &targets,
            "BridgeDestroyed",
            now,
            vec![("bridge", bridge.snapshot())],
        );
        let key = format!("bridge:{id}");
        for app in self.apps.values_mut() {
            app.explicit.remove(&key);
        }
    }

    /// The apps a bridge's events go to now.
    pub fn bridge_targets(&self, id: &str) -> Vec<String> {
        let mut targets = self.subscribe_all_apps();
        let key = format!("bridge:{id}");
        for app in self.apps.values() {
            if app.explicit.contains(&key) {
                push_target(&mut targets, &app.name);
            }
        }
        if let Some(bridge) = self.bridges.get(id) {
            for m in &bridge.members {
                if let Some(app) = self.channels.get(&m.channel).and_then(|c| c.app.as_ref()) {
                    push_target(&mut targets, app);
                }
            }
        }
        targets
    }

    /// BRIDGEPEER of `channel` in `bridge`: the other members' names.
    fn bridge_peers(&self, bridge: &str, channel: &str) -> String {
        let Some(b) = self.bridges.get(bridge) else {
            return String::new();
        };
        b.members
            .iter()
            .filter(|m| m.channel != channel)
            .filter_map(|m| self.channels.get(&m.channel).map(|c| c.name.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// In Asterisk mode, re-announce BRIDGEPEER on every member (and clear it
    /// on the one that left): O(N) events per change, as Asterisk does.
    fn announce_bridgepeers(&mut self, now: Timestamp, bridge_id: &str, left: Option<&str>) {
        if self.bridgepeer != BridgePeerMode::Asterisk {
            return;
        }
        if let Some(left) = left {
            self.varset_event(now, left, "BRIDGEPEER", "");
        }
        let members: Vec<String> = self
            .bridges
            .get(bridge_id)
            .map(|b| b.members.iter().map(|m| m.channel.clone()).collect())
            .unwrap_or_default();
        if members.len() < 2 {
            return;
        }
        for m in &members {
            let peers = self.bridge_peers(bridge_id, m);
            self.varset_event(now, m, "BRIDGEPEER", &peers);
        }
    }

    fn varset_event(&mut self, now: Timestamp, id: &str, name: &str, value: &str) {
        let Some(ch) = self.channels.get(id) else {
            return;
        };
        let snapshot = ch.snapshot();
        let targets = self.channel_targets(id);
        self.emit(
            &targets,
            "ChannelVarset",
            now,
            vec![
                ("variable", json!(name)),
                ("value", json!(value)),
                ("channel", snapshot),
            ],
        );
    }

    // ---- routing ------------------------------------------------------------

    fn subscribe_all_apps(&self) -> Vec<String> {
        self.apps
            .values()
            .filter(|a| a.subscribe_all)
            .map(|a| a.name.clone())
            .collect()
    }

    /// The apps a channel's events go to now.
    pub fn channel_targets(&self, id: &str) -> Vec<String> {
        let mut targets = self.subscribe_all_apps();
        if let Some(ch) = self.channels.get(id) {
            if let Some(app) = ch.app.as_ref().or(ch.departed_app.as_ref()) {
                push_target(&mut targets, app);
            }
        }
        let key = format!("channel:{id}");
        for app in self.apps.values() {
            if app.explicit.contains(&key) {
                push_target(&mut targets, &app.name);
            }
        }
        targets
    }

    /// Appends `event_type` with `fields` for each target app that is
    /// registered and whose filter allows it.
    fn emit(
        &mut self,
        targets: &[String],
        event_type: &str,
        now: Timestamp,
        fields: Vec<(&str, Value)>,
    ) {
        let mut base = Map::new();
        base.insert("type".into(), json!(event_type));
        base.insert("timestamp".into(), json!(now.to_string()));
        for (k, v) in fields {
            base.insert(k.into(), v);
        }
        base.insert("asterisk_id".into(), json!(self.entity_id));
        for app in targets {
            let Some(a) = self.apps.get(app) else {
                continue;
            };
            if !a.allows(event_type) {
                continue;
            }
            let mut event = base.clone();
            event.insert("application".into(), json!(app));
            self.outbox.push(Delivery {
                app: app.clone(),
                event: Value::Object(event),
            });
        }
    }
}

fn app_missing(app: &str) -> ControlError {
    ControlError::UnknownApp(app.to_string())
}

/// A client-given id: at most [`MAX_ID_LEN`] bytes, no `/`, no control characters.
fn check_id(id: &str, kind: IdKind) -> Result<(), ControlError> {
    if id.len() > MAX_ID_LEN || id.chars().any(|c| c.is_control() || c == '/') {
        return Err(ControlError::InvalidId {
            kind,
            id: id.to_string(),
        });
    }
    Ok(())
}

/// The first generated id not `taken`. A generator that never repeats itself
/// collides at most `in_use` times (once per existing id), so one more try
/// than that always suffices; past it the generator is broken.
fn unused_id(
    kind: IdKind,
    in_use: usize,
    mut generate: impl FnMut() -> String,
    taken: impl Fn(&str) -> bool,
) -> Result<String, ControlError> {
    for _ in 0..=in_use {
        let id = generate();
        if !taken(&id) {
            return Ok(id);
        }
    }
    Err(ControlError::GeneratedIdsExhausted(kind))
}

fn push_target(targets: &mut Vec<String>, app: &str) {
    if !targets.iter().any(|t| t == app) {
        targets.push(app.to_string());
    }
}

fn merge_targets(targets: &mut Vec<String>, more: Vec<String>) {
    for t in more {
        push_target(targets, &t);
    }
}

#[cfg(test)]
mod tests {
    use super::ids::SequentialIds;
    use super::*;

    /// A generator that breaks its contract: always the same ids.
    struct Stuck;

    impl IdGenerator for Stuck {
        fn channel_id(&mut self) -> String {
            "same".to_string()
        }
        fn bridge_id(&mut self) -> String {
            "same".to_string()
        }
        fn name_counter(&mut self) -> u32 {
            0
        }
    }

    fn bridge(id: &str) -> Bridge {
        Bridge {
            id: id.into(),
            key: crate::media::BridgeKey(1),
            name: String::new(),
            flags: Default::default(),
            technology: "simple_bridge",
            members: Vec::new(),
            creationtime: Timestamp(0),
            seq: 1,
        }
    }

    /// A list whose previous page was full and ended on the newest item
    /// asks for the page after it: empty, not a panic (`GET /channels`
    /// with exactly 1,000 channels answered 500, found by the soak).
    #[test]
    fn the_page_after_the_last_is_empty() {
        let mut reg = Registry::new("e", BridgePeerMode::Off, Box::new(SequentialIds::new(5)));
        assert!(reg.channels_page(Some(0), 0, 10).is_empty());
        assert!(reg.bridges_page(Some(0), 0, 10).is_empty());
        let id = "00000000-0000-4000-8000-000000000001";
        let mut b = bridge(id);
        b.seq = reg.next_seq();
        reg.insert_bridge(Timestamp(0), b);
        let upto = reg.last_seq();
        assert_eq!(reg.bridges_page(None, upto, 10).len(), 1);
        assert!(reg.bridges_page(Some(upto), upto, 10).is_empty());
        assert!(reg.channels_page(Some(upto), upto, 10).is_empty());
    }

    #[test]
    fn generated_ids_skip_ids_clients_took() {
        let ids = Box::new(SequentialIds::new(5));
        let mut reg = Registry::new("e", BridgePeerMode::Off, ids);
        let taken = "00000000-0000-4000-8000-000000000001";
        assert_eq!(reg.claim_bridge_id(Some(taken)).unwrap(), taken);
        reg.insert_bridge(Timestamp(0), bridge(taken));
        assert_eq!(
            reg.claim_bridge_id(None).unwrap(),
            "00000000-0000-4000-8000-000000000002"
        );
        assert_eq!(reg.claim_channel_id(None).unwrap(), "5.1");
        assert_eq!(reg.next_name_suffix(), "00000000");
        assert_eq!(reg.next_name_suffix(), "00000001");
    }

    #[test]
    fn a_local_pair_never_claims_one_id_twice() {
        let mut reg = Registry::new("e", BridgePeerMode::Off, Box::new(SequentialIds::new(5)));
        // `;1` takes the id the generator makes next: `;2` is `5.1;2`, as
        // Asterisk names it, not the generator's `5.1` again.
        assert_eq!(
            reg.claim_local_ids(Some("5.1"), None).unwrap(),
            ("5.1".to_string(), "5.1;2".to_string())
        );
        // `;2` takes the next generated id: `;1`'s generated id skips it.
        assert_eq!(
            reg.claim_local_ids(None, Some("5.1")).unwrap(),
            ("5.2".to_string(), "5.1".to_string())
        );
        assert_eq!(
            reg.claim_local_ids(None, None).unwrap(),
            ("5.3".to_string(), "5.4".to_string())
        );
        let conflict = ControlError::IdInUse {
            kind: IdKind::Channel,
            id: "x".into(),
        };
        assert_eq!(reg.claim_local_ids(Some("x"), Some("x")), Err(conflict));
    }

    #[test]
    fn a_local_pair_refuses_ids_in_use() {
        let mut reg = Registry::new("e", BridgePeerMode::Off, Box::new(SequentialIds::new(5)));
        let channel = |id: &str| {
            crate::control::channel::Channel::new(
                id.into(),
                format!("Local/x@A-0;{id}"),
                crate::media::LegId(1),
                crate::control::channel::ChannelKind::Local {
                    peer: String::new(),
                    half: 1,
                },
                crate::media::Format::Ulaw,
                Timestamp(0),
                1,
            )
        };
        reg.insert_channel(Timestamp(0), channel("a;2"));
        reg.insert_channel(Timestamp(0), channel("b"));
        let in_use = |id: &str| ControlError::IdInUse {
            kind: IdKind::Channel,
            id: id.into(),
        };
        assert_eq!(reg.claim_local_ids(Some("a"), None), Err(in_use("a;2")));
        assert_eq!(reg.claim_local_ids(Some("b"), None), Err(in_use("b")));
        assert_eq!(reg.claim_local_ids(None, Some("b")), Err(in_use("b")));
        assert_eq!(
            reg.claim_local_ids(Some("a"), Some("c")).unwrap(),
            ("a".to_string(), "c".to_string())
        );
    }

    #[test]
    fn a_repeating_generator_is_refused_instead_of_looping() {
        let mut reg = Registry::new("e", BridgePeerMode::Off, Box::new(Stuck));
        assert_eq!(reg.claim_bridge_id(None).unwrap(), "same");
        reg.insert_bridge(Timestamp(0), bridge("same"));
        assert_eq!(
            reg.claim_bridge_id(None),
            Err(ControlError::GeneratedIdsExhausted(IdKind::Bridge))
        );
    }

    #[test]
    fn refusals_name_what_went_wrong() {
        let mut reg = Registry::new("e", BridgePeerMode::Off, Box::new(SequentialIds::new(1)));
        assert_eq!(
            reg.existing("x").unwrap_err(),
            ControlError::UnknownChannel("x".into())
        );
        assert_eq!(
            reg.existing_bridge("b").unwrap_err(),
            ControlError::UnknownBridge("b".into())
        );
        assert_eq!(
            reg.claim_channel_id(Some("a/b")).unwrap_err(),
            ControlError::InvalidId {
                kind: IdKind::Channel,
                id: "a/b".into()
            }
        );
        assert_eq!(
            reg.subscribe("A", &[]).unwrap_err(),
            ControlError::UnknownApp("A".into())
        );
        reg.hold_app("A", false);
        assert_eq!(
            reg.subscribe("A", &["nope".into()]).unwrap_err(),
            ControlError::InvalidEventSource {
                source: "nope".into(),
                by: SourceUse::Subscription
            }
        );
        assert_eq!(
            reg.user_event(Timestamp(0), "A", "ev", &["bridge:b".into()], json!({}))
                .unwrap_err(),
            ControlError::UnknownEventSource {
                source: "bridge:b".into(),
                by: SourceUse::UserEvent
            }
        );
        assert_eq!(
            reg.set_filter("A", Some(&json!({"disallowed": [1]})))
                .unwrap_err(),
            ControlError::InvalidFilter { key: "disallowed" }
        );
    }
}
