//! `ControlError`: what the registry refuses, named by what went wrong.
//!
//! The control plane knows nothing of HTTP: the ARI layer maps each variant to
//! a status and the message a client reads (`impl From<ControlError> for
//! AriError` in `ari::error`), in that one place.

use std::fmt;

/// What kind of object an id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Channel,
    Bridge,
    Playback,
}

impl IdKind {
    /// `"Channel"` or `"Bridge"`.
    pub fn name(self) -> &'static str {
        match self {
            IdKind::Channel => "Channel",
            IdKind::Bridge => "Bridge",
            IdKind::Playback => "Playback",
        }
    }
}

/// Which operation named an event source; their replies word it differently,
/// as Asterisk's do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceUse {
    /// `POST`/`DELETE /applications/{app}/subscription`.
    Subscription,
    /// `POST /events/user/{eventName}`.
    UserEvent,
}

/// Why a registry operation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// No channel has this id.
    UnknownChannel(String),
    /// The channel exists but is in no Stasis application.
    NotInStasis(String),
    /// No bridge has this id.
    UnknownBridge(String),
    /// No WebSocket holds an application of this name.
    UnknownApp(String),
    /// A client-given id that is too long or has `/` or control characters.
    InvalidId { kind: IdKind, id: String },
    /// A client-given id that an existing channel or bridge already has.
    IdInUse { kind: IdKind, id: String },
    /// The id generator kept returning ids already in use (a generator that
    /// breaks its contract of never repeating an id).
    GeneratedIdsExhausted(IdKind),
    /// An event source that is not `scheme:name` with a known scheme.
    InvalidEventSource { source: String, by: SourceUse },
    /// A well-formed event source naming nothing that exists.
    UnknownEventSource { source: String, by: SourceUse },
    /// An unsubscription from a source the application is not subscribed to.
    NotSubscribed { app: String, source: String },
    /// An event filter whose `key` (`allowed`/`disallowed`) is not a list of
    /// objects with a string `type`.
    InvalidFilter { key: &'static str },
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::UnknownChannel(id) => write!(f, "no channel '{id}'"),
            ControlError::NotInStasis(id) => {
                write!(f, "channel '{id}' is not in a Stasis application")
            }
            ControlError::UnknownBridge(id) => write!(f, "no bridge '{id}'"),
            ControlError::UnknownApp(name) => write!(f, "no application '{name}'"),
            ControlError::InvalidId { kind, id } => {
                write!(f, "invalid {} id '{id}'", kind.name().to_lowercase())
            }
            ControlError::IdInUse { kind, id } => {
                write!(f, "{} id '{id}' is in use", kind.name().to_lowercase())
            }
            ControlError::GeneratedIdsExhausted(kind) => write!(
                f,
                "every generated {} id was already in use",
                kind.name().to_lowercase()
            ),
            ControlError::InvalidEventSource { source, .. } => {
                write!(f, "invalid event source '{source}'")
            }
            ControlError::UnknownEventSource { source, .. } => {
                write!(f, "event source '{source}' does not exist")
            }
            ControlError::NotSubscribed { app, source } => {
                write!(f, "application '{app}' is not subscribed to '{source}'")
            }
            ControlError::InvalidFilter { key } => write!(f, "invalid event filter '{key}'"),
        }
    }
}

impl std::error::Error for ControlError {}
