//! `/events`: the events WebSocket (served by the host's session module) and
//! user events sent to an application.

use serde_json::json;

use super::args::Args;
use super::error::AriError;
use super::spec::Reply;
use crate::host::Node;

/// `POST /events/user/{eventName}`.
pub async fn user_event(node: &Node, args: Args) -> Result<Reply, AriError> {
    let app = args
        .non_empty("application")
        .ok_or_else(|| AriError::bad_request("Missing parameter application"))?;
    let variables = match args.body("variables") {
        Some(v) => v.clone(),
        None => json!({}),
    };
    let now = node.now();
    let mut ctl = node.lock().await;
    ctl.reg.user_event(
        now,
        app,
        args.path("eventName"),
        args.list("source"),
        variables,
    )?;
    Ok(Reply::NoContent)
}
