//! `Application`: a Stasis application, which exists while at least one events
//! WebSocket holds it, with its explicit subscriptions and event filter.

use std::collections::BTreeSet;

use serde_json::Value;

/// A registered Stasis application.
#[derive(Clone, Debug, Default)]
pub struct Application {
    pub name: String,
    /// How many WebSockets hold it.
    pub holders: usize,
    /// Any holder asked for `subscribeAll=true`.
    pub subscribe_all: bool,
    /// Explicit subscriptions, as event source strings (`channel:ID`, `bridge:ID`,
    /// `endpoint:TECH/RES`, `deviceState:NAME`).
    pub explicit: BTreeSet<String>,
    /// Event filter: when non-empty, only these `{"type": ...}` are sent.
    pub events_allowed: Vec<Value>,
    /// Event filter: these `{"type": ...}` are never sent.
    pub events_disallowed: Vec<Value>,
}

impl Application {
    pub fn new(name: &str) -> Application {
        Application {
            name: name.to_string(),
            ..Application::default()
        }
    }

    /// Whether the filter lets an event of `event_type` through.
    pub fn allows(&self, event_type: &str) -> bool {
        let listed = |list: &[Value]| list.iter().any(|f| f["type"] == event_type);
        if !self.events_allowed.is_empty() && !listed(&self.events_allowed) {
            return false;
        }
        !listed(&self.events_disallowed)
    }
}

/// An event source named in a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventSource {
    Channel(String),
    Bridge(String),
    Endpoint(String),
    DeviceState(String),
}

impl EventSource {
    /// Parses `scheme:name`.
    pub fn parse(s: &str) -> Option<EventSource> {
        let (scheme, name) = s.split_once(':')?;
        if name.is_empty() {
            return None;
        }
        let name = name.to_string();
        Some(match scheme {
            "channel" => EventSource::Channel(name),
            "bridge" => EventSource::Bridge(name),
            "endpoint" => EventSource::Endpoint(name),
            "deviceState" => EventSource::DeviceState(name),
            _ => return None,
        })
    }

    /// The canonical `scheme:name` form.
    pub fn key(&self) -> String {
        match self {
            EventSource::Channel(n) => format!("channel:{n}"),
            EventSource::Bridge(n) => format!("bridge:{n}"),
            EventSource::Endpoint(n) => format!("endpoint:{n}"),
            EventSource::DeviceState(n) => format!("deviceState:{n}"),
        }
    }
}
