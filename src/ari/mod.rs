//! ARI, the external contract of the control plane: the route table
//! ([`routes`]), its api-docs ([`docs`], [`models`]), request arguments
//! ([`args`]), errors ([`error`]) and the operations per resource
//! ([`channels`], [`bridges`], [`applications`], [`asterisk`], [`endpoints`],
//! [`events`]).
//!
//! Handlers translate an ARI request into registry mutations and data-plane
//! calls (through the node's `control::plane::MediaPlane`); they hold the
//! control lock for the whole operation and never touch media. The registry's
//! refusals (`control::ControlError`, in [`error`]) and the data plane's
//! (`shard::DataplaneError`, in [`ops::dataplane_error`]) become ARI statuses
//! and messages here, and only here.

pub mod applications;
pub mod args;
pub mod asterisk;
pub mod bridges;
pub mod channels;
pub mod docs;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod models;
pub mod ops;
pub mod playbacks;
pub mod recordings;
pub mod routes;
pub mod sip;
pub mod snoop;
pub mod sounds;
pub mod spec;
