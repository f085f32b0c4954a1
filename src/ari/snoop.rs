//! `POST /channels/{channelId}/snoop[/{snoopId}]`: a channel that hears
//! and/or speaks into another (see `media::snoop` for the media).
//!
//! As Asterisk (res/ari/resource_channels.c, res_stasis_snoop.c): `spy`
//! and `whisper` are `none` (default), `in`, `out` or `both`, at least one
//! not `none`; `app` is required; the target need not be in an
//! application. The snoop channel is named `Snoop/<target id>-<8 hex>`, is
//! `Up`, enters `app` with `appArgs` (`StasisStart`), answers 200 with its
//! snapshot, and is hung up when its target is. Its media is signed linear
//! at the target's rate.

use super::args::Args;
use super::channels::{require_app, split_args};
use super::error::AriError;
use super::ops;
use super::spec::Reply;
use crate::control::channel::{Channel, ChannelKind, ChannelState};
use crate::host::Node;
use crate::media::{Direction, SnoopSpec};

/// `POST /channels/{channelId}/snoop`.
pub async fn snoop(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.non_empty("snoopId").map(str::to_string);
    create(node, args, id).await
}

/// `POST /channels/{channelId}/snoop/{snoopId}`.
pub async fn snoop_with_id(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = Some(args.path("snoopId").to_string());
    create(node, args, id).await
}

/// A direction parameter: `None` for `none` or absent.
fn direction(value: Option<&str>, what: &str) -> Result<Option<Direction>, AriError> {
    match value {
        None | Some("") | Some("none") => Ok(None),
        Some("both") => Ok(Some(Direction::Both)),
        Some("in") => Ok(Some(Direction::In)),
        Some("out") => Ok(Some(Direction::Out)),
        Some(_) => Err(AriError::bad_request(format!(
            "Invalid direction specified for {what}"
        ))),
    }
}

async fn create(node: &Node, args: Args, given: Option<String>) -> Result<Reply, AriError> {
    let spy = direction(args.str("spy"), "spy")?;
    let whisper = direction(args.str("whisper"), "whisper")?;
    if spy.is_none() && whisper.is_none() {
        return Err(AriError::bad_request(
            "Direction must be specified for at least spy or whisper",
        ));
    }
    let app = args
        .non_empty("app")
        .ok_or_else(|| AriError::bad_request("Application name is required"))?;
    let app_args = split_args(args.str("appArgs"));
    let target_id = args.path("channelId").to_string();
    let now = node.now();
    let mut ctl = node.lock().await;
    let (target_leg, format) = match ctl.reg.channel(&target_id) {
        Some(t) => (t.leg, t.format),
        None => return Err(AriError::not_found("Provided channel was not found")),
    };
    require_app(&ctl, app)?;
    let id = ctl.reg.claim_channel_id(given.as_deref())?;
    let leg = ctl.reg.next_leg();
    node.dataplane
        .create_snoop_leg(leg, target_leg, SnoopSpec { spy, whisper })
        .await
        .map_err(ops::dataplane_error)?;
    let name = format!("Snoop/{target_id}-{}", ctl.reg.next_name_suffix());
    let seq = ctl.reg.next_seq();
    let kind = ChannelKind::Snoop {
        target: target_id.clone(),
    };
    let linear = crate::media::linear_for(format);
    let mut channel = Channel::new(id.clone(), name, leg, kind, linear, now, seq);
    channel.state = ChannelState::Up;
    ctl.reg.insert_channel(now, channel);
    if let Some(t) = ctl.reg.channel_mut(&target_id) {
        t.snoops.push(id.clone());
    }
    ctl.reg.enter_stasis(now, &id, app, app_args);
    Ok(Reply::Json(ctl.reg.existing(&id)?.snapshot()))
}
