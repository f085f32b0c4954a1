//! The control plane's state: channels, bridges and Stasis applications as ARI
//! sees them, kept by one sans-IO [`Registry`].
//!
//! The registry never does I/O and never reads the clock: every mutation takes
//! the current [`Timestamp`] and appends the events it causes, already routed to
//! their applications, to an outbox that the host drains after each operation.
//!
//! Invariants:
//! - Events leave in the order the mutations happened; one mutation's events are
//!   appended together (e.g. a hangup's `ChannelHangupRequest` → `ChannelLeftBridge`
//!   → `StasisEnd` → `ChannelDestroyed`, as Asterisk orders them).
//! - An event goes to an application once, and only if the application is held
//!   by a WebSocket and its filter allows the event type.
//! - `channel.bridge == Some(b)` exactly when `b`'s member list names the channel.
//! - Routing: channel events go to the channel's application, explicit `channel:`
//!   subscribers and `subscribeAll` apps; bridge events to explicit `bridge:`
//!   subscribers, apps with a channel in the bridge, and `subscribeAll` apps.

pub mod app;
pub mod bridge;
pub mod channel;

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use crate::ari::error::AriError;
use crate::clock::Timestamp;
use crate::config::BridgePeerMode;
use app::{Application, EventSource};
use bridge::{Bridge, Member};
use channel::{Cause, Channel, ChannelState};

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
    bridges: HashMap<String, Bridge>,
    apps: BTreeMap<String, Application>,
    global_vars: Map<String, Value>,
    seq: u64,
    name_seq: u32,
    next_key: u64,
    id_epoch: u64,
    outbox: Vec<Delivery>,
}

impl Registry {
    /// An empty registry; `started` seeds generated channel ids.
    pub fn new(entity_id: &str, bridgepeer: BridgePeerMode, started: Timestamp) -> Registry {
        Registry {
            entity_id: entity_id.to_string(),
            bridgepeer,
            channels: HashMap::new(),
            bridges: HashMap::new(),
            apps: BTreeMap::new(),
            global_vars: Map::new(),
            seq: 0,
            name_seq: 0,
            next_key: 1,
            id_epoch: started.0 / 1000,
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
    pub fn subscribe(&mut self, app: &str, sources: &[String]) -> Result<Value, AriError> {
        let parsed = self.check_sources(app, sources)?;
        let entry = self.apps.get_mut(app).ok_or_else(app_missing)?;
        for source in parsed {
            entry.explicit.insert(source.key());
        }
        self.app_snapshot(app).ok_or_else(app_missing)
    }

    /// `DELETE /applications/{app}/subscription`.
    pub fn unsubscribe(&mut self, app: &str, sources: &[String]) -> Result<Value, AriError> {
        let parsed = self.check_sources(app, sources)?;
        let entry = self.apps.get_mut(app).ok_or_else(app_missing)?;
        if let Some(s) = parsed.iter().find(|s| !entry.explicit.contains(&s.key())) {
            return Err(AriError::conflict(format!(
                "Application not subscribed to event source {}",
                s.key()
            )));
        }
        for source in parsed {
            entry.explicit.remove(&source.key());
        }
        self.app_snapshot(app).ok_or_else(app_missing)
    }

    fn check_sources(&self, app: &str, sources: &[String]) -> Result<Vec<EventSource>, AriError> {
        if !self.apps.contains_key(app) {
            return Err(app_missing());
        }
        let mut parsed = Vec::new();
        for s in sources {
            let source = EventSource::parse(s).ok_or_else(|| {
                AriError::bad_request(format!(
                    "Invalid event source '{s}': expected channel:ID, bridge:ID, endpoint:TECH/RESOURCE or deviceState:NAME"
                ))
            })?;
            let exists = match &source {
                EventSource::Channel(id) => self.channels.contains_key(id),
                EventSource::Bridge(id) => self.bridges.contains_key(id),
                // No endpoints or device states exist until SIP endpoints are configured.
                EventSource::Endpoint(_) | EventSource::DeviceState(_) => false,
            };
            if !exists {
                return Err(AriError::unprocessable(format!(
                    "Event source does not exist: {s}"
                )));
            }
            parsed.push(source);
        }
        Ok(parsed)
    }

    /// `PUT /applications/{app}/eventFilter`.
    pub fn set_filter(&mut self, app: &str, filter: Option<&Value>) -> Result<Value, AriError> {
        let entry = self.apps.get_mut(app).ok_or_else(app_missing)?;
        let list = |key: &str| -> Result<Vec<Value>, AriError> {
            match filter.and_then(|f| f.get(key)) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) if items.iter().all(|i| i["type"].is_string()) => {
                    Ok(items.clone())
                }
                Some(_) => Err(AriError::bad_request(format!(
                    "Filter '{key}' must be a list of objects with a string 'type'"
                ))),
            }
        };
        entry.events_allowed = list("allowed")?;
        entry.events_disallowed = list("disallowed")?;
        self.app_snapshot(app).ok_or_else(app_missing)
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
        let mut v: Vec<&Channel> = self.channels.values().collect();
        v.sort_by_key(|c| c.seq);
        v
    }

    /// A channel that exists, or 404 `Channel not found`.
    pub fn existing(&self, id: &str) -> Result<&Channel, AriError> {
        self.channels
            .get(id)
            .ok_or_else(|| AriError::not_found("Channel not found"))
    }

    /// A channel that exists and is in a Stasis application (404 / 409 otherwise).
    pub fn in_stasis(&self, id: &str) -> Result<&Channel, AriError> {
        let ch = self.existing(id)?;
        if ch.app.is_none() {
            return Err(AriError::conflict("Channel not in Stasis application"));
        }
        Ok(ch)
    }

    /// Takes a channel id: the client's (409 if taken) or a generated one.
    pub fn claim_channel_id(&mut self, given: Option<&str>) -> Result<String, AriError> {
        match given.filter(|s| !s.is_empty()) {
            Some(id) => {
                check_id(id, "Channel")?;
                if self.channels.contains_key(id) {
                    return Err(AriError::conflict(format!(
                        "Channel with id '{id}' already exists"
                    )));
                }
                Ok(id.to_string())
            }
            None => loop {
                self.seq += 1;
                let id = format!("{}.{}", self.id_epoch, self.seq);
                if !self.channels.contains_key(&id) {
                    return Ok(id);
                }
            },
        }
    }

    /// A creation sequence number, for listing in creation order.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A fresh data-plane key for a leg or bridge.
    pub fn next_key(&mut self) -> u64 {
        let k = self.next_key;
        self.next_key += 1;
        k
    }

    /// The next name suffix: an 8-digit hex counter, as Asterisk names channels.
    pub fn next_name_suffix(&mut self) -> String {
        let n = self.name_seq;
        self.name_seq = self.name_seq.wrapping_add(1);
        format!("{n:08x}")
    }

    /// Adds a new channel (`ChannelCreated` to `subscribeAll` apps).
    pub fn insert_channel(&mut self, now: Timestamp, channel: Channel) {
        let snapshot = channel.snapshot();
        let targets = self.subscribe_all_apps();
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
        let mut ch = self.channels.remove(id)?;
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
    ) -> Result<(), AriError> {
        if !self.apps.contains_key(app) {
            return Err(AriError::not_found("Application does not exist."));
        }
        let mut fields = vec![("eventname", json!(name))];
        for s in sources {
            match EventSource::parse(s) {
                Some(EventSource::Channel(id)) => match self.channels.get(&id) {
                    Some(c) => fields.push(("channel", c.snapshot())),
                    None => {
                        return Err(AriError::unprocessable(format!(
                            "Event source not found: {s}"
                        )))
                    }
                },
                Some(EventSource::Bridge(id)) => match self.bridges.get(&id) {
                    Some(b) => fields.push(("bridge", b.snapshot())),
                    None => {
                        return Err(AriError::unprocessable(format!(
                            "Event source not found: {s}"
                        )))
                    }
                },
                Some(_) => {
                    return Err(AriError::unprocessable(format!(
                        "Event source not found: {s}"
                    )))
                }
                None => {
                    return Err(AriError::bad_request(format!(
                        "Invalid event source URI '{s}'"
                    )))
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

    /// A bridge that exists, or 404 `Bridge not found`.
    pub fn existing_bridge(&self, id: &str) -> Result<&Bridge, AriError> {
        self.bridges
            .get(id)
            .ok_or_else(|| AriError::not_found("Bridge not found"))
    }

    /// Bridges in creation order.
    pub fn bridges_sorted(&self) -> Vec<&Bridge> {
        let mut v: Vec<&Bridge> = self.bridges.values().collect();
        v.sort_by_key(|b| b.seq);
        v
    }

    /// Takes a bridge id: the client's (409 if taken) or a UUIDv4.
    pub fn claim_bridge_id(&self, given: Option<&str>) -> Result<String, AriError> {
        match given.filter(|s| !s.is_empty()) {
            Some(id) => {
                check_id(id, "Bridge")?;
                if self.bridges.contains_key(id) {
                    return Err(AriError::conflict(format!(
                        "Bridge with id '{id}' already exists"
                    )));
                }
                Ok(id.to_string())
            }
            None => Ok(uuid::Uuid::new_v4().to_string()),
        }
    }

    /// Adds a bridge (`BridgeCreated` to `subscribeAll` apps).
    pub fn insert_bridge(&mut self, now: Timestamp, bridge: Bridge) {
        let snapshot = bridge.snapshot();
        let targets = self.subscribe_all_apps();
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

    /// Removes an empty bridge (`BridgeDestroyed` to its subscribers).
    /// `targets` are the subscribers computed while its members were still in it.
    pub fn remove_bridge(&mut self, now: Timestamp, id: &str, mut targets: Vec<String>) {
        merge_targets(&mut targets, self.bridge_targets(id));
        let Some(bridge) = self.bridges.remove(id) else {
            return;
        };
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

fn app_missing() -> AriError {
    AriError::not_found("Application does not exist.")
}

fn check_id(id: &str, what: &str) -> Result<(), AriError> {
    if id.len() > MAX_ID_LEN || id.chars().any(|c| c.is_control() || c == '/') {
        return Err(AriError::bad_request(format!(
            "{what} id must be at most {MAX_ID_LEN} characters, without '/' or control characters"
        )));
    }
    Ok(())
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
    use std::net::SocketAddr;

    use super::channel::ChannelKind;
    use super::*;
    use crate::ari::models::{models_of, EVENT_TYPES};
    use crate::media::Format;

    fn channel(id: &str, seq: u64) -> Channel {
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let kind = ChannelKind::UnicastRtp {
            local: addr,
            remote: addr,
        };
        let name = format!("UnicastRTP/{addr}-{seq:08x}");
        Channel::new(
            id.to_string(),
            name,
            seq,
            kind,
            Format::Ulaw,
            Timestamp(0),
            seq,
        )
    }

    /// Drives the registry through every kind of mutation and checks that each
    /// event type it emits is declared in the api-docs models (clients crash on
    /// undeclared types), and that every declared type is really emitted.
    #[test]
    fn every_emitted_event_type_has_a_model() {
        let now = Timestamp(1_795_358_696_270);
        let mut reg = Registry::new("02:fc:00:00:00:01", BridgePeerMode::Asterisk, now);
        reg.hold_app("A", true);
        reg.hold_app("B", false);
        for (i, id) in ["c1", "c2"].into_iter().enumerate() {
            reg.insert_channel(now, channel(id, i as u64 + 1));
            reg.enter_stasis(now, id, "A", vec!["x".into()]);
        }
        let bridge = Bridge {
            id: "b1".into(),
            key: 9,
            name: String::new(),
            flags: Default::default(),
            technology: "simple_bridge",
            members: Vec::new(),
            creationtime: now,
            seq: 3,
        };
        reg.insert_bridge(now, bridge);
        for c in ["c1", "c2"] {
            let m = Member {
                channel: c.into(),
                role: String::new(),
                mute: false,
            };
            reg.join_bridge(now, "b1", m, "native_rtp");
        }
        reg.set_var(now, "c1", "FOO", "bar");
        reg.hold_event(now, "c1", true);
        reg.hold_event(now, "c1", false);
        reg.dial_event(now, "c1", "Local/x@B", "");
        reg.move_failed(now, "c1", "nobody", Vec::new());
        reg.user_event(now, "A", "ping", &["channel:c1".into()], json!({}))
            .unwrap();
        reg.set_state(now, "c2", ChannelState::Ringing);
        reg.hangup_request(now, "c2", 32, true);
        reg.leave_bridge(now, "b1", "c2", "simple_bridge");
        reg.leave_stasis(now, "c2");
        reg.remove_channel(now, "c2", Cause::NORMAL);
        let targets = reg.bridge_targets("b1");
        reg.leave_bridge(now, "b1", "c1", "simple_bridge");
        reg.remove_bridge(now, "b1", targets);

        let models = models_of("events");
        let mut seen = std::collections::BTreeSet::new();
        for d in reg.take_outbox() {
            let ty = d.event["type"].as_str().unwrap().to_string();
            assert!(
                EVENT_TYPES.contains(&ty.as_str()),
                "{ty} is not in EVENT_TYPES"
            );
            assert!(models.iter().any(|m| m.id == ty), "{ty} has no model");
            seen.insert(ty);
        }
        for ty in EVENT_TYPES {
            // ApplicationReplaced is sent by the host when a WebSocket takes an app over.
            if *ty != "ApplicationReplaced" {
                assert!(seen.contains(*ty), "{ty} is declared but never emitted");
            }
        }
    }
}
