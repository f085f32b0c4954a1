//! `/asterisk`: node information, ping and global variables.

use serde_json::{json, Value};

use super::args::Args;
use super::error::AriError;
use super::spec::Reply;
use crate::host::Node;

/// `GET /asterisk/info` (with `only=build,system,config,status`).
pub async fn info(node: &Node, args: Args) -> Result<Reply, AriError> {
    let started = node.started.to_string();
    let sections = [
        (
            "build",
            json!({
                "os": std::env::consts::OS,
                "kernel": kernel_release(),
                "options": "",
                "machine": std::env::consts::ARCH,
                "date": "",
                "user": "",
            }),
        ),
        (
            "system",
            json!({
                "version": format!("crossbar {}", env!("CARGO_PKG_VERSION")),
                "entity_id": node.config.ari.entity_id,
            }),
        ),
        (
            "config",
            json!({
                "name": node.config.ari.system_name,
                "default_language": "en",
                "setid": { "user": "", "group": "" },
            }),
        ),
        (
            "status",
            json!({ "startup_time": started, "last_reload_time": started }),
        ),
    ];
    let only = args.list("only");
    let mut out = serde_json::Map::new();
    for (name, value) in sections {
        if only.is_empty() || only.iter().any(|o| o == name) {
            out.insert(name.to_string(), value);
        }
    }
    Ok(Reply::Json(Value::Object(out)))
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `GET /asterisk/ping`.
pub async fn ping(node: &Node, _args: Args) -> Result<Reply, AriError> {
    Ok(Reply::Json(json!({
        "asterisk_id": node.config.ari.entity_id,
        "ping": "pong",
        "timestamp": node.now().to_string(),
    })))
}

/// `GET /asterisk/variable`.
pub async fn get_global_var(node: &Node, args: Args) -> Result<Reply, AriError> {
    let name = args
        .non_empty("variable")
        .ok_or_else(|| AriError::bad_request("Variable name is required"))?;
    let ctl = node.lock().await;
    Ok(Reply::Json(
        json!({ "value": ctl.reg.global_var(name).unwrap_or_default() }),
    ))
}

/// `POST /asterisk/variable`.
pub async fn set_global_var(node: &Node, args: Args) -> Result<Reply, AriError> {
    let name = args
        .non_empty("variable")
        .ok_or_else(|| AriError::bad_request("Variable name is required"))?;
    let mut ctl = node.lock().await;
    ctl.reg
        .set_global_var(name, args.str("value").unwrap_or(""));
    Ok(Reply::NoContent)
}
