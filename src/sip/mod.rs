//! SIP signalling, sans-IO: message parsing and printing (`message`, on the
//! `rsip` crate) and RFC 3261 §17 transactions (`transaction`).
//!
//! Groundwork for the SIP issue: nothing here is reachable from the network
//! yet. The host will own the UDP socket and the clock and feed these state
//! machines bytes and instants; they never read either themselves.

pub mod cause;
pub mod message;
pub mod transaction;
pub mod uri;
