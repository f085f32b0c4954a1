//! Operations shared by several ARI resources: joining and leaving bridges,
//! hanging up (with Local pair propagation), answering, ending the channels
//! of a dead shard. Each one asks the data plane first and records the
//! outcome in the registry only once the shard has confirmed, so events
//! always show what the data plane really does (a dead shard confirms
//! nothing: see [`hangup_lost`]).

use std::collections::HashSet;

use super::error::AriError;
use crate::clock::Timestamp;
use crate::control::bridge::Member;
use crate::control::channel::{Cause, ChannelState};
use crate::host::{Control, Node};
use crate::shard::{DataplaneError, LegId, ShardDown};

/// Maps a data-plane failure to an ARI error: 503 for what a node under
/// strain or with a failed shard does (no port, queue full, no answer in
/// time, shard dead), 500 for the rest.
pub fn dataplane_error(e: DataplaneError) -> AriError {
    match e {
        DataplaneError::NoPorts => AriError::new(503, "No free RTP port on this node"),
        DataplaneError::Busy => AriError::new(503, "Data plane busy: a shard is not keeping up"),
        DataplaneError::Timeout => AriError::new(
            503,
            "Data plane timeout: a shard did not answer in time (it is given up)",
        ),
        DataplaneError::ShardGone => AriError::new(
            503,
            "Data plane shard is down: this channel or bridge's media is gone",
        ),
        // Out of file descriptors is strain, not a bug: 503, and the reason
        // in the log.
        DataplaneError::Io(m) if is_fd_exhaustion(&m) => {
            tracing::warn!("data plane out of file descriptors: {m}");
            AriError::new(503, "Out of file descriptors on this node")
        }
        other => AriError::internal(format!("Data plane: {other}")),
    }
}

/// True for a socket error text of EMFILE or ENFILE.
fn is_fd_exhaustion(m: &str) -> bool {
    m.contains("Too many open files")
        || m.contains(&format!("os error {}", libc::EMFILE))
        || m.contains(&format!("os error {}", libc::ENFILE))
}

/// Adds `member` to `bridge_id`, leaving its current bridge first.
pub async fn join_bridge(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    bridge_id: &str,
    member: Member,
) -> Result<(), AriError> {
    let current = ctl
        .reg
        .channel(&member.channel)
        .and_then(|c| c.bridge.clone());
    if let Some(current) = current {
        if current == bridge_id {
            return Ok(());
        }
        leave_bridge(node, ctl, now, &current, &member.channel).await?;
    }
    let mut members = ctl.reg.existing_bridge(bridge_id)?.members.clone();
    members.push(member.clone());
    let tech = set_membership(node, ctl, bridge_id, &members).await?;
    ctl.reg.join_bridge(now, bridge_id, member, tech);
    super::sip::direct_media(ctl, bridge_id, None);
    super::playbacks::holding_idle(node, ctl, bridge_id).await;
    Ok(())
}

/// Removes `channel` from `bridge_id`.
pub async fn leave_bridge(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    bridge_id: &str,
    channel: &str,
) -> Result<(), AriError> {
    let members: Vec<Member> = ctl
        .reg
        .existing_bridge(bridge_id)?
        .members
        .iter()
        .filter(|m| m.channel != channel)
        .cloned()
        .collect();
    let tech = set_membership(node, ctl, bridge_id, &members).await?;
    ctl.reg.leave_bridge(now, bridge_id, channel, tech);
    super::sip::direct_media(ctl, bridge_id, Some(channel));
    super::playbacks::holding_idle(node, ctl, bridge_id).await;
    Ok(())
}

/// Asks the bridge's shard to carry `members`; returns the technology it
/// chose. The registry is not changed: the caller records the outcome.
async fn set_membership(
    node: &Node,
    ctl: &Control,
    bridge_id: &str,
    members: &[Member],
) -> Result<&'static str, AriError> {
    let bridge = ctl.reg.existing_bridge(bridge_id)?;
    let spec = ctl.reg.bridge_spec(bridge, members);
    let tech = node
        .dataplane
        .set_bridge(bridge.key, spec)
        .await
        .map_err(dataplane_error)?;
    Ok(tech.name())
}

/// Hangs up `id` and, for a Local half, its peer: `ChannelHangupRequest`, then
/// `ChannelLeftBridge` if bridged, `StasisEnd` if in an application, and
/// `ChannelDestroyed` with `cause`.
///
/// `soft` marks a hangup asked for over ARI (Asterisk reports cause 32, its
/// soft-hangup flag, in that request); the peer of a Local half gets a hard
/// hangup with the real cause.
pub async fn hangup(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    id: &str,
    cause: Cause,
    soft: bool,
) -> Result<(), AriError> {
    // The channel, then its Local peer and its snoops (hung up with it, as
    // Asterisk's snoop channel ends when its spyee does); bounded by the
    // channels there are.
    let mut queue = vec![(id.to_string(), soft)];
    while let Some((id, soft)) = queue.pop() {
        let Some(ch) = ctl.reg.channel(&id) else {
            continue;
        };
        let peer = ch.local_peer().map(str::to_string);
        let snoops = ch.snoops.clone();
        let bridge = ch.bridge.clone();
        let leg = ch.leg;
        ctl.reg
            .hangup_request(now, &id, if soft { 32 } else { cause.code }, soft);
        // The call ends first, so that leaving the bridge moves no media of
        // a call that is going (direct media).
        super::sip::hangup_signal(ctl, &id, cause);
        if let Some(bridge) = bridge {
            leave_bridge(node, ctl, now, &bridge, &id).await?;
        }
        ctl.reg.leave_stasis(now, &id);
        match node.dataplane.destroy_leg(leg).await {
            Ok(()) | Err(DataplaneError::Unknown) => {}
            Err(e) => return Err(dataplane_error(e)),
        }
        ctl.reg.remove_channel(now, &id, cause);
        queue.extend(
            snoops
                .into_iter()
                .chain(peer)
                .filter(|c| ctl.reg.channel(c).is_some())
                .map(|c| (c, false)),
        );
    }
    Ok(())
}

/// Ends a Local pair whose `;1` half `one` was called while its `;2` half has
/// nowhere to go (no application runs under the name of its context), as
/// Asterisk ends it when local_call() finds no such extension
/// (main/core_local.c): the call fails, `;1` is hung up without a hangup
/// request — `ChannelLeftBridge` if bridged, `StasisEnd` if in an
/// application — and both halves are destroyed with no cause set (0,
/// "Unknown"), `;2` first, as hanging up the `;1` owner hangs up `;2` inside
/// it (ast_unreal_hangup). No `Dial` event: app_control_dial publishes one
/// only once ast_call() succeeded.
pub async fn fail_local_call(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    one: &str,
) -> Result<(), AriError> {
    let Some(ch) = ctl.reg.channel(one) else {
        return Ok(());
    };
    let peer = ch.local_peer().map(str::to_string);
    if let Some(bridge) = ch.bridge.clone() {
        leave_bridge(node, ctl, now, &bridge, one).await?;
    }
    ctl.reg.leave_stasis(now, one);
    for id in peer.into_iter().chain([one.to_string()]) {
        let Some(leg) = ctl.reg.channel(&id).map(|c| c.leg) else {
            continue;
        };
        match node.dataplane.destroy_leg(leg).await {
            Ok(()) | Err(DataplaneError::Unknown) => {}
            Err(e) => return Err(dataplane_error(e)),
        }
        ctl.reg.remove_channel(now, &id, Cause::UNKNOWN);
    }
    Ok(())
}

/// Ends the channels whose media went with a dead shard (`down`), as a hard
/// hangup with cause 38 ([`Cause::NETWORK_OUT_OF_ORDER`]), each in the order
/// of a normal one: `ChannelHangupRequest`, `ChannelLeftBridge` if bridged,
/// `StasisEnd` if in an application, `ChannelDestroyed`. Both halves of a
/// Local pair live on one shard, so both are ended. The dead shard is asked
/// nothing; the data plane only forgets the legs.
///
/// The shard's bridges stay (ARI bridges outlive their channels) and are set
/// again, empty, on a live shard first: its answer is the technology the
/// bridge shows once its last lost member has left; until then a leaving
/// member's snapshot keeps the last technology the dead shard confirmed.
/// Answers the number of channels ended.
pub async fn hangup_lost(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    down: &ShardDown,
) -> usize {
    let lost_bridges: HashSet<_> = down.bridges.iter().copied().collect();
    let bridges: Vec<(String, crate::shard::BridgeSpec)> = ctl
        .reg
        .bridges_sorted()
        .into_iter()
        .filter(|b| lost_bridges.contains(&b.key))
        .map(|b| (b.id.clone(), ctl.reg.bridge_spec(b, &[])))
        .collect();
    let mut emptied: Vec<(String, &'static str)> = Vec::new();
    for (id, spec) in bridges {
        let Some(key) = ctl.reg.bridge(&id).map(|b| b.key) else {
            continue;
        };
        match node.dataplane.set_bridge(key, spec).await {
            Ok(tech) => emptied.push((id, tech.name())),
            Err(e) => {
                tracing::error!(bridge = %id, "cannot re-create the bridge of a dead shard: {e}")
            }
        }
    }
    let lost: HashSet<LegId> = down.legs.iter().copied().collect();
    let ids: Vec<String> = ctl
        .reg
        .channels_sorted()
        .into_iter()
        .filter(|c| lost.contains(&c.leg))
        .map(|c| c.id.clone())
        .collect();
    let cause = Cause::NETWORK_OUT_OF_ORDER;
    for id in &ids {
        let Some(ch) = ctl.reg.channel(id) else {
            continue;
        };
        let (bridge, leg) = (ch.bridge.clone(), ch.leg);
        ctl.reg.hangup_request(now, id, cause.code, false);
        if let Some(bridge) = bridge {
            let tech = ctl.reg.bridge(&bridge).map(|b| {
                let last = b.members.iter().all(|m| m.channel == *id);
                let fresh = emptied.iter().find(|(e, _)| *e == bridge).map(|e| e.1);
                match fresh {
                    Some(tech) if last => tech,
                    _ => b.technology,
                }
            });
            if let Some(tech) = tech {
                ctl.reg.leave_bridge(now, &bridge, id, tech);
            }
        }
        ctl.reg.leave_stasis(now, id);
        super::sip::hangup_signal(ctl, id, cause);
        match node.dataplane.destroy_leg(leg).await {
            Ok(()) | Err(DataplaneError::Unknown) => {}
            Err(e) => tracing::warn!(channel = %id, "leg of a dead shard not forgotten: {e}"),
        }
        ctl.reg.remove_channel(now, id, cause);
    }
    ids.len()
}

/// Answers `id`. For a Local half, the other half is answered too and, if it
/// was originated into an application, enters it now.
pub fn answer(ctl: &mut Control, now: Timestamp, id: &str) {
    ctl.reg.set_state(now, id, ChannelState::Up);
    let Some(peer) = ctl
        .reg
        .channel(id)
        .and_then(|c| c.local_peer().map(str::to_string))
    else {
        return;
    };
    let Some(p) = ctl.reg.channel(&peer) else {
        return;
    };
    if p.state == ChannelState::Up {
        return;
    }
    let pending = p.pending_stasis.clone();
    let was_dialed = p.app.is_some();
    ctl.reg.set_state(now, &peer, ChannelState::Up);
    if let Some(c) = ctl.reg.channel_mut(&peer) {
        c.pending_stasis = None;
    }
    if let Some((app, args)) = pending {
        ctl.reg.enter_stasis(now, &peer, &app, args);
    } else if was_dialed {
        ctl.reg.dial_event(now, &peer, "", "ANSWER");
    }
}

/// Items a list operation takes under the control lock at a time.
pub const LIST_PAGE: usize = 1000;

/// A list operation over a large table without holding the control
/// thread: `page(ctl, after, upto)` gives up to [`LIST_PAGE`] items created
/// after `after` and no later than `upto` (the newest existing when the
/// list began) as `(seq, snapshot)`; each page is taken under the lock,
/// serialized after it, and the task yields between pages, so other
/// requests run in between. The list is every item that existed when it
/// began and still existed when its page was taken (items created
/// meanwhile are not in it). Bounded: each page moves `after` forward.
pub async fn paged_list(
    node: &Node,
    page: impl Fn(&Control, Option<u64>, u64) -> Vec<(u64, serde_json::Value)>,
) -> String {
    let upto = node.lock().await.reg.last_seq();
    let mut body = String::from("[");
    let mut after = None;
    loop {
        let items = {
            let ctl = node.lock().await;
            page(&ctl, after, upto)
        };
        let full = items.len() >= LIST_PAGE;
        for (seq, item) in items {
            if body.len() > 1 {
                body.push(',');
            }
            body.push_str(&item.to_string());
            after = Some(seq);
        }
        if !full {
            break;
        }
        tokio::task::yield_now().await;
    }
    body.push(']');
    body
}
