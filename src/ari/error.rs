//! ARI errors: an HTTP status and the `{"message": ...}` body Asterisk sends.
//! This is the one place where the registry's refusals ([`ControlError`])
//! become statuses and messages.

use std::fmt;

use crate::control::{ControlError, IdKind, SourceUse, MAX_ID_LEN};

/// An error reply. `message` is what the client reads in the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AriError {
    pub status: u16,
    pub message: String,
}

impl AriError {
    pub fn new(status: u16, message: impl Into<String>) -> AriError {
        AriError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> AriError {
        AriError::new(400, message)
    }
    pub fn not_found(message: impl Into<String>) -> AriError {
        AriError::new(404, message)
    }
    pub fn conflict(message: impl Into<String>) -> AriError {
        AriError::new(409, message)
    }
    pub fn precondition(message: impl Into<String>) -> AriError {
        AriError::new(412, message)
    }
    pub fn unprocessable(message: impl Into<String>) -> AriError {
        AriError::new(422, message)
    }
    pub fn internal(message: impl Into<String>) -> AriError {
        AriError::new(500, message)
    }

    /// The reason phrase for the status line and `RESTResponse.reason_phrase`.
    pub fn reason_phrase(&self) -> &'static str {
        reason_phrase(self.status)
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::json!({ "message": self.message }).to_string()
    }
}

impl fmt::Display for AriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl From<ControlError> for AriError {
    fn from(e: ControlError) -> AriError {
        match e {
            ControlError::UnknownChannel(_) => AriError::not_found("Channel not found"),
            ControlError::NotInStasis(_) => AriError::conflict("Channel not in Stasis application"),
            ControlError::UnknownBridge(_) => AriError::not_found("Bridge not found"),
            ControlError::UnknownApp(_) => AriError::not_found("Application does not exist."),
            ControlError::InvalidId { kind, .. } => AriError::bad_request(format!(
                "{} id must be at most {MAX_ID_LEN} characters, without '/' or control characters",
                kind.name()
            )),
            ControlError::IdInUse { kind, id } => {
                AriError::conflict(format!("{} with id '{id}' already exists", kind.name()))
            }
            ControlError::GeneratedIdsExhausted(kind) => AriError::internal(format!(
                "Could not generate an unused {} id",
                match kind {
                    IdKind::Channel => "channel",
                    IdKind::Bridge => "bridge",
                    IdKind::Playback => "playback",
                }
            )),
            ControlError::InvalidEventSource {
                source,
                by: SourceUse::Subscription,
            } => AriError::bad_request(format!(
                "Invalid event source '{source}': expected channel:ID, bridge:ID, endpoint:TECH/RESOURCE or deviceState:NAME"
            )),
            ControlError::InvalidEventSource {
                source,
                by: SourceUse::UserEvent,
            } => AriError::bad_request(format!("Invalid event source URI '{source}'")),
            ControlError::UnknownEventSource {
                source,
                by: SourceUse::Subscription,
            } => AriError::unprocessable(format!("Event source does not exist: {source}")),
            ControlError::UnknownEventSource {
                source,
                by: SourceUse::UserEvent,
            } => AriError::unprocessable(format!("Event source not found: {source}")),
            ControlError::NotSubscribed { source, .. } => AriError::conflict(format!(
                "Application not subscribed to event source {source}"
            )),
            ControlError::InvalidFilter { key } => AriError::bad_request(format!(
                "Filter '{key}' must be a list of objects with a string 'type'"
            )),
        }
    }
}

/// The reason phrase of the statuses ARI uses.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        422 => "Unprocessable Entity",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal of the registry keeps the status and message ARI
    /// clients saw before the registry had its own error type.
    #[test]
    fn control_errors_map_to_the_statuses_and_messages_clients_know() {
        let s = |t: &str| t.to_string();
        let cases = [
            (
                ControlError::UnknownChannel(s("c")),
                404,
                s("Channel not found"),
            ),
            (
                ControlError::NotInStasis(s("c")),
                409,
                s("Channel not in Stasis application"),
            ),
            (
                ControlError::UnknownBridge(s("b")),
                404,
                s("Bridge not found"),
            ),
            (
                ControlError::UnknownApp(s("A")),
                404,
                s("Application does not exist."),
            ),
            (
                ControlError::InvalidId {
                    kind: IdKind::Bridge,
                    id: s("a/b"),
                },
                400,
                s("Bridge id must be at most 128 characters, without '/' or control characters"),
            ),
            (
                ControlError::IdInUse {
                    kind: IdKind::Channel,
                    id: s("c1"),
                },
                409,
                s("Channel with id 'c1' already exists"),
            ),
            (
                ControlError::GeneratedIdsExhausted(IdKind::Bridge),
                500,
                s("Could not generate an unused bridge id"),
            ),
            (
                ControlError::InvalidEventSource {
                    source: s("x"),
                    by: SourceUse::Subscription,
                },
                400,
                s("Invalid event source 'x': expected channel:ID, bridge:ID, endpoint:TECH/RESOURCE or deviceState:NAME"),
            ),
            (
                ControlError::InvalidEventSource {
                    source: s("x"),
                    by: SourceUse::UserEvent,
                },
                400,
                s("Invalid event source URI 'x'"),
            ),
            (
                ControlError::UnknownEventSource {
                    source: s("channel:c"),
                    by: SourceUse::Subscription,
                },
                422,
                s("Event source does not exist: channel:c"),
            ),
            (
                ControlError::UnknownEventSource {
                    source: s("channel:c"),
                    by: SourceUse::UserEvent,
                },
                422,
                s("Event source not found: channel:c"),
            ),
            (
                ControlError::NotSubscribed {
                    app: s("A"),
                    source: s("bridge:b"),
                },
                409,
                s("Application not subscribed to event source bridge:b"),
            ),
            (
                ControlError::InvalidFilter { key: "allowed" },
                400,
                s("Filter 'allowed' must be a list of objects with a string 'type'"),
            ),
        ];
        for (error, status, message) in cases {
            assert_eq!(AriError::from(error), AriError::new(status, message));
        }
    }
}
