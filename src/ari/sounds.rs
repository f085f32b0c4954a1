//! `/sounds`: the prompts under `sounds.path`, as Asterisk's
//! `res/ari/resource_sounds.c` lists them (see [`crate::sounds`] for the
//! index, the languages and the format names).
//!
//! - `GET /sounds` gives every sound with its `(language, format)` pairs,
//!   filtered by `lang` and `format` (exact matches); a sound with no pair
//!   left is not listed, and an empty result is 404 `No sounds found that
//!   matched the query`, as Asterisk.
//! - `GET /sounds/{soundId}` gives one sound, 404 `Sound not found`. An id
//!   with a folder (`digits/1`) is sent percent-encoded (`digits%2F1`).
//! - `text` is the `en` description, absent when there is none.
//!
//! The index is scanned once per process, on the first request (blocking
//! file-system reads, on a blocking thread), then kept: files added later
//! are seen after a restart (Asterisk rescans at every request).

use std::sync::Arc;

use serde_json::Value;

use super::args::Args;
use super::error::AriError;
use super::spec::Reply;
use crate::host::Node;
use crate::sounds::{index_for, SoundIndex};

async fn index(node: &Node) -> Result<Arc<SoundIndex>, AriError> {
    let roots = node.config.sounds.paths();
    tokio::task::spawn_blocking(move || index_for(&roots))
        .await
        .map_err(|_| AriError::internal("Sounds index not available"))
}

/// `GET /sounds`.
pub async fn list(node: &Node, args: Args) -> Result<Reply, AriError> {
    let index = index(node).await?;
    let sounds = index.list_json(args.non_empty("lang"), args.non_empty("format"));
    if sounds.is_empty() {
        return Err(AriError::not_found(
            "No sounds found that matched the query",
        ));
    }
    Ok(Reply::Json(Value::Array(sounds)))
}

/// `GET /sounds/{soundId}`.
pub async fn get(node: &Node, args: Args) -> Result<Reply, AriError> {
    let index = index(node).await?;
    index
        .sound_json(args.path("soundId"), None, None)
        .map(Reply::Json)
        .ok_or_else(|| AriError::not_found("Sound not found"))
}
