//! `/endpoints`: the SIP endpoints of the configuration (`[[sip.endpoint]]`),
//! as Asterisk 22's ARI shows its PJSIP endpoints.
//!
//! **Technology.** crossbar names its SIP technology `SIP` (channels are
//! `SIP/<endpoint>-0000000N`), so endpoints are `{"technology":"SIP",…}`.
//! `PJSIP` is an alias in requests, as dial strings accept both: `GET
//! /endpoints/PJSIP` and `GET /endpoints/PJSIP/{name}` answer the same
//! endpoints (still with technology `SIP`), so unmodified Asterisk
//! applications find them.
//!
//! **Lookups, as Asterisk's** (`res/ari/resource_endpoints.c`,
//! `main/endpoints.c`, `main/stasis_endpoints.c`):
//! - `listByTech` first looks the technology up with a case-sensitive match
//!   (`ast_endpoint_find_by_id`), and a technology exists only once an endpoint
//!   of it does: an unknown technology, a wrongly cased one (`pjsip`), or `SIP`
//!   when no endpoint is configured, is 404 `No Endpoints found - invalid tech
//!   X`.
//! - `get` upper-cases the technology (`ast_tech_to_upper`) and matches the
//!   resource exactly: `pjsip/alice` finds `alice`, `SIP/Alice` does not; a
//!   miss is 404 `Endpoint not found`.
//! - The JSON is `technology, resource, state, channel_ids`
//!   (`ast_endpoint_snapshot_to_json`); `max_channels` only appears when a
//!   channel driver sets a limit, which res_pjsip never does, so it is absent.
//!
//! **State.** Asterisk creates a PJSIP endpoint `offline`
//! (`persistent_endpoint_find_or_create` in
//! `res/res_pjsip/pjsip_configuration.c`), then res_pjsip's options code
//! (`res/res_pjsip/pjsip_options.c`) composes it from its AORs: an AOR without
//! qualify (`qualify_frequency = 0`) counts every contact it has as available
//! (`aor_options->available = ao2_container_count(contacts)`), and the endpoint
//! is `online` when any AOR has an available contact, `offline` otherwise (an
//! endpoint with no AOR, or no contact, is set `offline`). `unknown` is only the
//! state of an endpoint no driver ever set. crossbar has no registration and
//! no qualify; an endpoint's `contact` is a static contact. So:
//! - `contact` set (a static contact, unqualified): **`online`**;
//! - `contact` empty (an endpoint only matched by source address, never
//!   dialed: no contact): **`offline`**.
//!
//! **Events.** The configuration is read once at start, so an endpoint's state
//! never changes while the node runs: no `EndpointStateChange` is ever sent
//! (none is faked).
//!
//! **channel_ids** are the ids of live channels of the endpoint
//! (`ChannelKind::Sip { endpoint: Some(name), .. }`), in creation order, read
//! from the registry under the control lock.

use serde_json::{json, Value};

use super::args::Args;
use super::error::AriError;
use super::spec::Reply;
use crate::config::SipEndpointConfig;
use crate::control::Registry;
use crate::host::Node;

/// crossbar's name for the SIP technology, as endpoints show it.
pub const TECHNOLOGY: &str = "SIP";

/// The technology names requests may use for SIP endpoints: crossbar's and
/// Asterisk's.
const ALIASES: &[&str] = &["SIP", "PJSIP"];

/// An endpoint's state: `online` with a static contact, `offline` without.
pub fn state(endpoint: &SipEndpointConfig) -> &'static str {
    if endpoint.contact.is_empty() {
        "offline"
    } else {
        "online"
    }
}

/// The Endpoint JSON of `endpoint`, its channels read from `reg`.
fn snapshot(reg: &Registry, endpoint: &SipEndpointConfig) -> Value {
    let channel_ids: Vec<&str> = reg
        .channels_sorted()
        .into_iter()
        .filter(|c| c.sip_endpoint() == Some(endpoint.name.as_str()))
        .map(|c| c.id.as_str())
        .collect();
    json!({
        "technology": TECHNOLOGY,
        "resource": endpoint.name,
        "state": state(endpoint),
        "channel_ids": channel_ids,
    })
}

fn all(node: &Node, reg: &Registry) -> Value {
    Value::Array(
        node.config
            .sip
            .endpoint
            .iter()
            .map(|e| snapshot(reg, e))
            .collect(),
    )
}

/// `GET /endpoints`.
pub async fn list(node: &Node, _args: Args) -> Result<Reply, AriError> {
    let ctl = node.lock().await;
    Ok(Reply::Json(all(node, &ctl.reg)))
}

/// `GET /endpoints/{tech}`.
pub async fn list_by_tech(node: &Node, args: Args) -> Result<Reply, AriError> {
    let tech = args.path("tech");
    if !ALIASES.contains(&tech) || node.config.sip.endpoint.is_empty() {
        return Err(AriError::not_found(format!(
            "No Endpoints found - invalid tech {tech}"
        )));
    }
    let ctl = node.lock().await;
    Ok(Reply::Json(all(node, &ctl.reg)))
}

/// `GET /endpoints/{tech}/{resource}`.
pub async fn get(node: &Node, args: Args) -> Result<Reply, AriError> {
    let tech = args.path("tech").to_ascii_uppercase();
    let resource = args.path("resource");
    let endpoint = node
        .config
        .sip
        .endpoint
        .iter()
        .find(|e| e.name == resource)
        .filter(|_| ALIASES.contains(&tech.as_str()))
        .ok_or_else(|| AriError::not_found("Endpoint not found"))?;
    let ctl = node.lock().await;
    Ok(Reply::Json(snapshot(&ctl.reg, endpoint)))
}
