//! ARI errors: an HTTP status and the `{"message": ...}` body Asterisk sends.

use std::fmt;

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
        422 => "Unprocessable Entity",
        426 => "Upgrade Required",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}
