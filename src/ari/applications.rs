//! `/applications`: the Stasis applications held by events WebSockets, their
//! explicit subscriptions and event filters.

use serde_json::Value;

use super::args::Args;
use super::error::AriError;
use super::spec::Reply;
use crate::host::Node;

/// `GET /applications`.
pub async fn list(node: &Node, _args: Args) -> Result<Reply, AriError> {
    let ctl = node.lock().await;
    let all: Vec<Value> = ctl
        .reg
        .app_names()
        .iter()
        .filter_map(|n| ctl.reg.app_snapshot(n))
        .collect();
    Ok(Reply::Json(Value::Array(all)))
}

/// `GET /applications/{applicationName}`.
pub async fn get(node: &Node, args: Args) -> Result<Reply, AriError> {
    let ctl = node.lock().await;
    ctl.reg
        .app_snapshot(args.path("applicationName"))
        .map(Reply::Json)
        .ok_or_else(|| AriError::not_found("Application does not exist."))
}

/// `POST /applications/{applicationName}/subscription`.
pub async fn subscribe(node: &Node, args: Args) -> Result<Reply, AriError> {
    let mut ctl = node.lock().await;
    ctl.reg
        .subscribe(args.path("applicationName"), args.list("eventSource"))
        .map(Reply::Json)
        .map_err(AriError::from)
}

/// `DELETE /applications/{applicationName}/subscription`.
pub async fn unsubscribe(node: &Node, args: Args) -> Result<Reply, AriError> {
    let mut ctl = node.lock().await;
    ctl.reg
        .unsubscribe(args.path("applicationName"), args.list("eventSource"))
        .map(Reply::Json)
        .map_err(AriError::from)
}

/// `PUT /applications/{applicationName}/eventFilter`.
pub async fn filter(node: &Node, args: Args) -> Result<Reply, AriError> {
    let mut ctl = node.lock().await;
    ctl.reg
        .set_filter(args.path("applicationName"), args.body("filter"))
        .map(Reply::Json)
        .map_err(AriError::from)
}
