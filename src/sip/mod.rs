//! SIP signalling, sans-IO: message parsing and printing (`message`, on the
//! `rsip` crate), RFC 3261 §17 transactions (`transaction`), the user agent
//! that keeps calls and dialogs over them (`agent`), dialable URIs (`uri`)
//! and Asterisk's SIP status ↔ Q.850 cause mapping (`cause`).
//!
//! The host (`host::sip`) owns the sockets and the clock and feeds these
//! state machines bytes and instants; they never read either themselves.

pub mod agent;
pub mod cause;
pub mod message;
pub mod transaction;
pub mod uri;
