//! `/bridges`: mixing and holding bridges, their members and roles. The
//! `technology` a bridge reports is the one its shard confirmed for the
//! current membership.

use super::args::Args;
use super::error::AriError;
use super::ops;
use super::spec::Reply;
use crate::control::bridge::{Bridge, BridgeFlags, Member};
use crate::host::Node;
use crate::shard::BridgeSpec;

/// `GET /bridges`.
pub async fn list(node: &Node, _args: Args) -> Result<Reply, AriError> {
    let body = ops::paged_list(node, |ctl, after, upto| {
        ctl.reg
            .bridges_page(after, upto, ops::LIST_PAGE)
            .into_iter()
            .map(|(seq, b)| (seq, b.snapshot()))
            .collect()
    })
    .await;
    Ok(Reply::JsonText(body))
}

/// `GET /bridges/{bridgeId}`.
pub async fn get(node: &Node, args: Args) -> Result<Reply, AriError> {
    let ctl = node.lock().await;
    Ok(Reply::Json(
        ctl.reg.existing_bridge(args.path("bridgeId"))?.snapshot(),
    ))
}

/// `POST /bridges` and `POST /bridges/{bridgeId}`.
pub async fn create(node: &Node, args: Args) -> Result<Reply, AriError> {
    let flags =
        BridgeFlags::parse(args.str("type").unwrap_or("")).map_err(AriError::bad_request)?;
    let now = node.now();
    let mut ctl = node.lock().await;
    let id = ctl.reg.claim_bridge_id(args.str("bridgeId"))?;
    let key = ctl.reg.next_bridge_key();
    let spec = BridgeSpec {
        members: Vec::new(),
        dtmf_events: flags.dtmf_events,
        proxy_media: flags.proxy_media,
        holding: flags.holding,
    };
    let tech = node
        .dataplane
        .set_bridge(key, spec)
        .await
        .map_err(ops::dataplane_error)?;
    let seq = ctl.reg.next_seq();
    let bridge = Bridge {
        id: id.clone(),
        key,
        name: args.str("name").unwrap_or("").to_string(),
        flags,
        technology: tech.name(),
        members: Vec::new(),
        creationtime: now,
        seq,
    };
    let snapshot = bridge.snapshot();
    ctl.reg.insert_bridge(now, bridge);
    Ok(Reply::Json(snapshot))
}

/// `DELETE /bridges/{bridgeId}`: members leave (and stay in their
/// applications), then the bridge goes.
pub async fn destroy(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("bridgeId");
    let now = node.now();
    let mut ctl = node.lock().await;
    let bridge = ctl.reg.existing_bridge(id)?;
    let key = bridge.key;
    let tech = bridge.technology;
    let members: Vec<String> = bridge.members.iter().map(|m| m.channel.clone()).collect();
    let targets = ctl.reg.bridge_targets(id);
    node.dataplane
        .destroy_bridge(key)
        .await
        .map_err(ops::dataplane_error)?;
    // Its playbacks end first, while its members' apps still hear it.
    ctl.reg.end_playbacks_of(
        now,
        &crate::control::playback::Owner::Bridge(id.to_string()),
    );
    for channel in &members {
        ctl.reg.leave_bridge(now, id, channel, tech);
        super::sip::direct_media(&mut ctl, id, Some(channel));
    }
    ctl.reg.remove_bridge(now, id, targets);
    Ok(Reply::NoContent)
}

/// `POST /bridges/{bridgeId}/addChannel`.
pub async fn add_channel(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("bridgeId");
    let channels = args.list("channel");
    let role = args.str("role").unwrap_or("").to_string();
    let mute = args.bool("mute");
    let absorb_dtmf = args.bool("absorbDTMF");
    let now = node.now();
    let mut ctl = node.lock().await;
    ctl.reg.existing_bridge(id)?;
    for ch in channels {
        let c = ctl
            .reg
            .channel(ch)
            .ok_or_else(|| AriError::bad_request("Channel not found"))?;
        if c.app.is_none() {
            return Err(AriError::unprocessable("Channel not in Stasis application"));
        }
    }
    for ch in channels {
        let member = Member {
            channel: ch.clone(),
            role: role.clone(),
            mute,
            absorb_dtmf,
        };
        ops::join_bridge(node, &mut ctl, now, id, member).await?;
    }
    Ok(Reply::NoContent)
}

/// `POST /bridges/{bridgeId}/removeChannel`.
pub async fn remove_channel(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("bridgeId");
    let channels = args.list("channel");
    let now = node.now();
    let mut ctl = node.lock().await;
    let bridge = ctl.reg.existing_bridge(id)?;
    for ch in channels {
        if ctl.reg.channel(ch).is_none() {
            return Err(AriError::bad_request("Channel not found"));
        }
        if !bridge.has(ch) {
            return Err(AriError::unprocessable("Channel not in this bridge"));
        }
    }
    for ch in channels {
        ops::leave_bridge(node, &mut ctl, now, id, ch).await?;
    }
    Ok(Reply::NoContent)
}
