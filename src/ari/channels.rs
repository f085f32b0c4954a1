//! `/channels`: external media legs, Local channel pairs, and what an
//! application can do with a channel in Stasis (answer, hang up, move, mute,
//! hold, variables, ...).
//!
//! Local channels without a dialplan: `Local/EXTEN@CONTEXT` makes a pair whose
//! `;2` half enters the Stasis application named `CONTEXT` (as Asterisk's
//! automatic `exten => _.,1,Stasis(CONTEXT)` would), with `dialplan.exten`
//! EXTEN. Originated, the `;1` half enters `app` once `;2` is answered; created
//! (`/channels/create`), `;1` enters `app` at once and `;2` is started by `dial`.
//! As in Asterisk, whether CONTEXT exists is seen only when `;1` is called
//! (originate, dial): with no application CONTEXT running, the call fails and
//! the pair ends with cause 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::args::Args;
use super::error::AriError;
use super::ops;
use super::spec::Reply;
use crate::clock::Timestamp;
use crate::control::channel::{Cause, Channel, ChannelKind, ChannelState, DialplanCep};
use crate::host::{Control, Node};
use crate::media::Format;
use crate::shard::{Direction, LegId, LegSpec, RtpStats};

/// `GET /channels`.
pub async fn list(node: &Node, _args: Args) -> Result<Reply, AriError> {
    let body = ops::paged_list(node, |ctl, after, upto| {
        ctl.reg
            .channels_page(after, upto, ops::LIST_PAGE)
            .into_iter()
            .map(|(seq, c)| (seq, c.snapshot()))
            .collect()
    })
    .await;
    Ok(Reply::JsonText(body))
}

/// `GET /channels/{channelId}`.
pub async fn get(node: &Node, args: Args) -> Result<Reply, AriError> {
    let ctl = node.lock().await;
    Ok(Reply::Json(
        ctl.reg.existing(args.path("channelId"))?.snapshot(),
    ))
}

/// `POST /channels/externalMedia`.
pub async fn external_media(node: &Node, args: Args) -> Result<Reply, AriError> {
    let app = args
        .non_empty("app")
        .ok_or_else(|| AriError::bad_request("app cannot be empty"))?;
    let format_name = args
        .non_empty("format")
        .ok_or_else(|| AriError::bad_request("format cannot be empty"))?;
    let format = parse_format(format_name)?;
    if args.str("encapsulation") != Some("rtp") {
        return Err(AriError::bad_request(
            "The encapsulation and/or transport is not supported (crossbar serves encapsulation=rtp over transport=udp)",
        ));
    }
    if args.str("transport") != Some("udp") {
        return Err(AriError::bad_request(
            "transport must be 'udp' for rtp encapsulation",
        ));
    }
    if args.str("connection_type") != Some("client") {
        return Err(AriError::bad_request(
            "connection_type must be 'client' for rtp encapsulation",
        ));
    }
    let host = args.non_empty("external_host").ok_or_else(|| {
        AriError::bad_request("external_host is required for all but websocket server connections")
    })?;
    let remote = parse_external_host(host)?;
    refuse_own_rtp_address(&node.config, remote)?;
    let data_args = split_args(args.str("data"));
    let variables = string_map(args.body("variables"))?;

    let now = node.now();
    let mut ctl = node.lock().await;
    require_app(&ctl, app)?;
    let id = ctl.reg.claim_channel_id(args.str("channelId"))?;
    let leg = ctl.reg.next_leg();
    let local = node
        .dataplane
        .create_rtp_leg(
            leg,
            LegSpec {
                remote,
                format,
                symmetric: false,
                dtmf_pt: node.config.rtp.telephone_event(),
            },
        )
        .await
        .map_err(ops::dataplane_error)?;
    let name = format!("UnicastRTP/{remote}-{}", ctl.reg.next_name_suffix());
    let seq = ctl.reg.next_seq();
    let kind = ChannelKind::UnicastRtp { local, remote };
    let mut channel = Channel::new(id.clone(), name, leg, kind, format, now, seq);
    channel.state = ChannelState::Up;
    channel.vars = variables;
    ctl.reg.insert_channel(now, channel);
    ctl.reg.enter_stasis(now, &id, app, data_args);
    Ok(Reply::Json(ctl.reg.existing(&id)?.snapshot()))
}

/// `POST /channels` and `POST /channels/{channelId}`.
pub async fn originate(node: &Node, args: Args) -> Result<Reply, AriError> {
    if is_sip(args.str("endpoint")) {
        return super::sip::originate(node, args, false).await;
    }
    start_local(node, args, false).await
}

/// `POST /channels/create`.
pub async fn create(node: &Node, args: Args) -> Result<Reply, AriError> {
    if is_sip(args.str("endpoint")) {
        return super::sip::originate(node, args, true).await;
    }
    start_local(node, args, true).await
}

/// Whether an endpoint names the SIP technology (`SIP/…`, or Asterisk's
/// `PJSIP/…`).
fn is_sip(endpoint: Option<&str>) -> bool {
    endpoint
        .and_then(|e| e.split_once('/'))
        .is_some_and(|(tech, _)| {
            tech.eq_ignore_ascii_case("sip") || tech.eq_ignore_ascii_case("pjsip")
        })
}

/// The parts of `Local/EXTEN@CONTEXT`.
#[derive(Debug)]
struct LocalTarget {
    resource: String,
    exten: String,
    context: String,
}

fn parse_endpoint(endpoint: &str) -> Result<LocalTarget, AriError> {
    let (tech, resource) = endpoint.split_once('/').ok_or_else(|| {
        AriError::bad_request(format!(
            "Endpoint parameter '{endpoint}' does not contain tech/resource"
        ))
    })?;
    if resource.is_empty() {
        return Err(AriError::bad_request(format!(
            "No resource provided in endpoint parameter '{endpoint}'"
        )));
    }
    if !tech.eq_ignore_ascii_case("local") {
        return Err(AriError::bad_request(format!(
            "Endpoint technology '{tech}' is not supported: crossbar originates Local/EXTEN@APP and SIP/… (PJSIP/…) channels"
        )));
    }
    let resource = resource.split('/').next().unwrap_or(resource);
    let (exten, context) = resource.split_once('@').unwrap_or((resource, "default"));
    if exten.is_empty() || context.is_empty() {
        return Err(AriError::bad_request(format!(
            "Endpoint '{endpoint}' must be Local/EXTEN@APP"
        )));
    }
    Ok(LocalTarget {
        resource: resource.to_string(),
        exten: exten.to_string(),
        context: context.to_string(),
    })
}

async fn start_local(node: &Node, args: Args, create_only: bool) -> Result<Reply, AriError> {
    let endpoint = args
        .non_empty("endpoint")
        .ok_or_else(|| AriError::bad_request("Endpoint must be specified"))?;
    let target = parse_endpoint(endpoint)?;
    let app = args.non_empty("app").ok_or_else(|| {
        AriError::bad_request("Application must be specified: crossbar has no dialplan")
    })?;
    let app_args = split_args(args.str("appArgs"));
    if args.non_empty("originator").is_some() && args.non_empty("formats").is_some() {
        return Err(AriError::bad_request(
            "Originator and formats can't both be specified",
        ));
    }
    // Every format named must be one crossbar has; the pair takes the first.
    let formats = match args.non_empty("formats") {
        Some(list) => {
            let mut parsed = list.split(',').map(|f| parse_format(f.trim()));
            let first = parsed.next().transpose()?;
            parsed.try_for_each(|f| f.map(drop))?;
            first
        }
        None => None,
    };
    let caller_id = parse_caller_id(args.str("callerId").unwrap_or(""));
    let variables = string_map(args.body("variables"))?;
    let timeout = originate_timeout(args.int("timeout").unwrap_or(30));

    let now = node.now();
    let mut ctl = node.lock().await;
    require_app(&ctl, app)?;
    // The pair takes the originator's format, as Asterisk requests the
    // originator's native formats (ast_ari_channels_create, originate's
    // ast_dial_prerun with the originator).
    let format = match args.non_empty("originator") {
        Some(originator) => {
            ctl.reg
                .existing(originator)
                .map_err(|_| AriError::bad_request("Provided originator channel was not found"))?
                .format
        }
        None => formats.unwrap_or(Format::Ulaw),
    };
    let (id1, id2) = ctl
        .reg
        .claim_local_ids(args.str("channelId"), args.str("otherChannelId"))?;
    let (leg1, leg2) = (ctl.reg.next_leg(), ctl.reg.next_leg());
    node.dataplane
        .create_local_pair(leg1, leg2, format)
        .await
        .map_err(ops::dataplane_error)?;
    let suffix = ctl.reg.next_name_suffix();
    let base = format!("Local/{}-{suffix}", target.resource);

    let seq = ctl.reg.next_seq();
    let kind = ChannelKind::Local {
        peer: id2.clone(),
        half: 1,
    };
    let mut one = Channel::new(
        id1.clone(),
        format!("{base};1"),
        leg1,
        kind,
        format,
        now,
        seq,
    );
    // Asterisk sets an originate's callerId as the `;1` half's caller id and
    // connected line (resource_channels.c, ari_channels_handle_originate_with_id).
    one.caller = caller_id.clone();
    one.connected = caller_id;
    one.vars = variables;
    let seq = ctl.reg.next_seq();
    let kind = ChannelKind::Local {
        peer: id1.clone(),
        half: 2,
    };
    let mut two = Channel::new(
        id2.clone(),
        format!("{base};2"),
        leg2,
        kind,
        format,
        now,
        seq,
    );
    two.dialplan = DialplanCep {
        context: target.context.clone(),
        exten: target.exten.clone(),
        priority: 1,
    };

    if create_only {
        // `;2` starts when `;1` is dialed; whether its application runs is
        // seen then, as Asterisk looks the extension up only in local_call().
        one.awaiting_dial = true;
        two.pending_stasis = Some((target.context.clone(), Vec::new()));
        ctl.reg.insert_channel(now, one);
        ctl.reg.insert_channel(now, two);
        ctl.reg.enter_stasis(now, &id1, app, app_args);
        return Ok(Reply::Json(ctl.reg.existing(&id1)?.snapshot()));
    }
    one.pending_stasis = Some((app.to_string(), app_args));
    two.pending_stasis = Some((target.context.clone(), Vec::new()));
    two.state = ChannelState::Ring;
    ctl.reg.insert_channel(now, one);
    ctl.reg.insert_channel(now, two);
    let reply = ctl.reg.existing(&id1)?.snapshot();
    if !ctl.reg.has_app(&target.context) {
        // Asterisk subscribes the originating application to both halves
        // before it calls `;1`, so that application sees the pair end.
        ctl.reg.subscribe_channel(app, &id1);
        ctl.reg.subscribe_channel(app, &id2);
    }
    if let Some((context, args)) = call_local(node, &mut ctl, now, &id1).await? {
        ctl.reg.enter_stasis(now, &id2, &context, args);
        if let Some(seconds) = timeout {
            schedule_no_answer(node, &id1, leg1, seconds, NoAnswer::Originate);
        }
    }
    Ok(Reply::Json(reply))
}

/// An originate's `timeout` as Asterisk reads it
/// (ari_channels_handle_originate_with_id): seconds when positive, -1 for no
/// timeout, 30 seconds otherwise.
pub(super) fn originate_timeout(timeout: i64) -> Option<u64> {
    match timeout {
        t if t > 0 => Some(t as u64),
        -1 => None,
        _ => Some(30),
    }
}

/// Calls the `;1` half `one` of a Local pair: `;2` gets what Asterisk's
/// `ast_unreal_call_setup` hands it, then runs its "dialplan" — enters the
/// application named by its context — or, when no such application runs,
/// the pair ends as Asterisk's local_call() fails on a missing extension
/// ([`ops::fail_local_call`]). The application (and args) `;2` is to enter
/// now, unless the call failed.
async fn call_local(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    one: &str,
) -> Result<Option<(String, Vec<String>)>, AriError> {
    let Some(c1) = ctl.reg.channel(one) else {
        return Ok(None);
    };
    let Some(two) = c1.local_peer().map(str::to_string) else {
        return Ok(None);
    };
    let caller = c1.caller.clone();
    let connected = c1.connected.clone();
    let language = c1.language.clone();
    let vars: Vec<(String, String)> = c1
        .vars
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    for (name, value) in &vars {
        ctl.reg.set_var(now, &two, name, value);
    }
    if let Some(c2) = ctl.reg.channel_mut(&two) {
        c2.language = language;
    }
    // Caller id and connected line cross over the Local pair.
    ctl.reg.set_party(now, &two, connected, caller);
    let Some(target) = ctl.reg.channel(&two).and_then(|c| c.pending_stasis.clone()) else {
        return Ok(None);
    };
    if !ctl.reg.has_app(&target.0) {
        ops::fail_local_call(node, ctl, now, one).await?;
        return Ok(None);
    }
    if let Some(c2) = ctl.reg.channel_mut(&two) {
        c2.pending_stasis = None;
    }
    Ok(Some(target))
}

/// Which unanswered wait timed out.
#[derive(Clone, Copy, Debug)]
pub(super) enum NoAnswer {
    /// An originated pair's `;2` half was not answered: both halves end with
    /// cause 19, `;1` never having entered its application.
    Originate,
    /// A dialed (`POST /channels/{id}/dial`) channel was not answered: it is
    /// hung up as Asterisk's dial timeout does (res/stasis/control.c,
    /// hangup_channel: cause 19, then a soft hangup).
    Dial,
}

/// Hangs up `id` with cause 19 if it is still unanswered after `seconds`.
/// `leg` identifies the channel: by then the id may name another channel
/// (hung up, then reused).
pub(super) fn schedule_no_answer(node: &Node, id: &str, leg: LegId, seconds: u64, kind: NoAnswer) {
    let Some(node) = node.handle() else {
        return;
    };
    let id = id.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        no_answer(node, id, leg, kind).await;
    });
}

async fn no_answer(node: Arc<Node>, id: String, leg: LegId, kind: NoAnswer) {
    let now = node.now();
    let mut ctl = node.lock().await;
    let unanswered = ctl
        .reg
        .channel(&id)
        .is_some_and(|c| c.leg == leg && c.state != ChannelState::Up);
    if unanswered {
        let soft = matches!(kind, NoAnswer::Dial);
        if let Err(e) = ops::hangup(&node, &mut ctl, now, &id, Cause::NO_ANSWER, soft).await {
            tracing::warn!(channel = %id, "{kind:?} timeout hangup failed: {e}");
        }
    }
}

/// The dial string of a Local `;1` half named `Local/EXTEN@CONTEXT-0000000N;1`:
/// `EXTEN@CONTEXT`, what Asterisk's `Dial` event carries (the endpoint without
/// its technology).
fn local_dialstring(name: &str) -> &str {
    let resource = name.strip_prefix("Local/").unwrap_or(name);
    resource.rsplit_once('-').map_or(resource, |(r, _)| r)
}

/// `POST /channels/{channelId}/dial`: dials a Local `;1` half made by
/// `/channels/create`, as Asterisk's ast_ari_channels_dial and
/// app_control_dial do.
pub async fn dial(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let timeout = args.int("timeout").unwrap_or(0);
    let now = node.now();
    let mut ctl = node.lock().await;
    let ch = ctl
        .reg
        .channel(id)
        .ok_or_else(|| AriError::not_found("Channel cannot be found."))?;
    if ch.awaiting_dial && args.non_empty("caller").is_none() {
        if let Some(result) = super::sip::dial(node, &mut ctl, now, id, timeout).await {
            return result;
        }
    }
    let ch = ctl
        .reg
        .channel(id)
        .ok_or_else(|| AriError::not_found("Channel cannot be found."))?;
    if !ch.awaiting_dial {
        return Err(AriError::conflict("Channel cannot be dialed."));
    }
    let Some(peer) = ch.local_peer().map(str::to_string) else {
        return Err(AriError::conflict("Channel cannot be dialed."));
    };
    let dialstring = local_dialstring(&ch.name).to_string();
    let leg = ch.leg;
    if ctl
        .reg
        .channel(&peer)
        .is_none_or(|p| p.pending_stasis.is_none())
    {
        return Err(AriError::conflict("Channel cannot be dialed."));
    }
    let caller = match args.non_empty("caller") {
        Some(caller) => {
            let c = ctl.reg.channel(caller).ok_or_else(|| {
                AriError::bad_request(format!("Provided caller channel '{caller}' was not found"))
            })?;
            Some((c.caller.clone(), c.language.clone(), c.vars.clone()))
        }
        None => None,
    };
    if let Some((caller_id, language, vars)) = caller {
        // ast_channel_inherit_variables: `_NAME` is inherited as `NAME`,
        // `__NAME` as `__NAME`; other variables stay with the caller.
        for (name, value) in &vars {
            let Some(value) = value.as_str() else {
                continue;
            };
            let inherited = if name.starts_with("__") {
                name.as_str()
            } else if let Some(rest) = name.strip_prefix('_') {
                rest
            } else {
                continue;
            };
            if !inherited.is_empty() {
                ctl.reg.set_var(now, id, inherited, value);
            }
        }
        // ast_connected_line_copy_from_caller: the dialed channel's connected
        // line is the caller's caller id.
        let own = ctl.reg.existing(id)?.caller.clone();
        ctl.reg.set_party(now, id, own, caller_id);
        if let Some(c) = ctl.reg.channel_mut(id) {
            c.language = language;
        }
    }
    if let Some(c) = ctl.reg.channel_mut(id) {
        c.awaiting_dial = false;
    }
    // The request is answered 204 whatever the call does, as Asterisk's
    // dial runs asynchronously; a call that fails ends the pair.
    let Some((app, app_args)) = call_local(node, &mut ctl, now, id).await? else {
        return Ok(Reply::NoContent);
    };
    ctl.reg.dial_event(now, id, &dialstring, "");
    ctl.reg.set_state(now, &peer, ChannelState::Ring);
    ctl.reg.enter_stasis(now, &peer, &app, app_args);
    if timeout > 0 {
        schedule_no_answer(node, id, leg, timeout as u64, NoAnswer::Dial);
    }
    Ok(Reply::NoContent)
}

/// `DELETE /channels/{channelId}`.
pub async fn hangup(node: &Node, args: Args) -> Result<Reply, AriError> {
    let cause = match (args.non_empty("reason"), args.non_empty("reason_code")) {
        (Some(_), Some(_)) => {
            return Err(AriError::bad_request(
                "The reason and reason_code can't both be specified",
            ))
        }
        (Some(reason), None) => Cause::from_reason(reason)
            .ok_or_else(|| AriError::bad_request("Invalid reason for hangup reason provided"))?,
        (None, Some(code)) => code
            .parse::<u16>()
            .ok()
            .and_then(Cause::from_code)
            .ok_or_else(|| {
                AriError::bad_request("Invalid reason for hangup reason code provided")
            })?,
        (None, None) => Cause::NORMAL,
    };
    let id = args.path("channelId");
    let now = node.now();
    let mut ctl = node.lock().await;
    ctl.reg.existing(id)?;
    ops::hangup(node, &mut ctl, now, id, cause, true).await?;
    Ok(Reply::NoContent)
}

/// `POST /channels/{channelId}/redirect`, as Asterisk's
/// ast_ari_channels_redirect checks it (the endpoint's technology must be the
/// channel's); the redirect itself is SIP's 302 (`ari::sip::redirect`).
pub async fn redirect(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let endpoint = args.str("endpoint").unwrap_or("");
    let now = node.now();
    let mut ctl = node.lock().await;
    let ch = ctl.reg.in_stasis(id)?;
    let (tech, resource) = endpoint
        .split_once('/')
        .filter(|(_, r)| !r.is_empty())
        .ok_or_else(|| {
            AriError::bad_request(format!(
                "Endpoint parameter '{endpoint}' does not contain tech/resource"
            ))
        })?;
    let chan_tech = ch.name.split('/').next().unwrap_or("");
    let same = tech.eq_ignore_ascii_case(chan_tech)
        || (chan_tech == "SIP" && tech.eq_ignore_ascii_case("pjsip"));
    if !same {
        return Err(AriError::unprocessable(format!(
            "Endpoint technology '{tech}' does not match channel technology '{chan_tech}'"
        )));
    }
    super::sip::redirect(node, &mut ctl, now, id, resource).await?;
    Ok(Reply::NoContent)
}

/// `POST /channels/{channelId}/dtmf`, as Asterisk's ast_ari_channels_send_dtmf
/// checks it; the digits go out as RFC 4733 events (`media::dtmf`). A
/// channel without telephone-event (a Local half, a SIP call that did not
/// negotiate it): 412.
pub async fn send_dtmf(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let dtmf = args
        .non_empty("dtmf")
        .ok_or_else(|| AriError::bad_request("DTMF is required"))?;
    let ms = |name: &str| Duration::from_millis(args.int(name).unwrap_or(0).max(0) as u64);
    let steps = crate::media::dtmf::plan(
        dtmf,
        ms("before"),
        Duration::from_millis(args.int("between").unwrap_or(100).max(0) as u64),
        Duration::from_millis(args.int("duration").unwrap_or(100).max(0) as u64),
        ms("after"),
    )
    .map_err(|c| AriError::bad_request(format!("Invalid DTMF character '{c}'")))?;
    let ctl = node.lock().await;
    let leg = ctl.reg.in_stasis(id)?.leg;
    match node.dataplane.send_dtmf(leg, steps).await {
        Ok(()) => Ok(Reply::NoContent),
        Err(crate::shard::DataplaneError::NoTelephoneEvent) => Err(AriError::precondition(
            "Channel in invalid state: it has no telephone-event (RFC 4733) to send digits with",
        )),
        Err(e) => Err(ops::dataplane_error(e)),
    }
}

/// `POST /channels/{channelId}/answer`.
pub async fn answer(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let now = node.now();
    let mut ctl = node.lock().await;
    ctl.reg.in_stasis(id)?;
    super::sip::answer(&mut ctl, id);
    ops::answer(&mut ctl, now, id);
    Ok(Reply::NoContent)
}

/// `POST /channels/{channelId}/ring`: indicates ringing. On a Local half the
/// other half sees it (`Ringing`); an RTP leg has no signalling to carry it.
pub async fn ring(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let now = node.now();
    let mut ctl = node.lock().await;
    let ch = ctl.reg.in_stasis(id)?;
    let peer = ch.local_peer().map(str::to_string);
    super::sip::ring(&mut ctl, id);
    if let Some(peer) = peer {
        if ctl
            .reg
            .channel(&peer)
            .is_some_and(|p| p.state == ChannelState::Down)
        {
            ctl.reg.set_state(now, &peer, ChannelState::Ringing);
        }
    }
    Ok(Reply::NoContent)
}

/// `DELETE /channels/{channelId}/ring`: an indication with no state change
/// on the channel itself (crossbar generates no ringback tone to stop).
pub async fn indicate(node: &Node, args: Args) -> Result<Reply, AriError> {
    let ctl = node.lock().await;
    ctl.reg.in_stasis(args.path("channelId"))?;
    Ok(Reply::NoContent)
}

/// `POST /channels/{channelId}/progress`: 183 with SDP on an incoming SIP
/// call (early media); nothing to signal on other channels.
pub async fn progress(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let mut ctl = node.lock().await;
    ctl.reg.in_stasis(id)?;
    super::sip::progress(&mut ctl, id);
    Ok(Reply::NoContent)
}

fn direction(args: &Args) -> Direction {
    match args.str("direction") {
        Some("in") => Direction::In,
        Some("out") => Direction::Out,
        _ => Direction::Both,
    }
}

async fn set_mute(node: &Node, args: Args, on: bool) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let dir = direction(&args);
    let mut ctl = node.lock().await;
    let leg = ctl.reg.in_stasis(id)?.leg;
    node.dataplane
        .set_mute(leg, dir, on)
        .await
        .map_err(ops::dataplane_error)?;
    if let Some(c) = ctl.reg.channel_mut(id) {
        if matches!(dir, Direction::In | Direction::Both) {
            c.muted_in = on;
        }
        if matches!(dir, Direction::Out | Direction::Both) {
            c.muted_out = on;
        }
    }
    Ok(Reply::NoContent)
}

/// `POST /channels/{channelId}/mute`.
pub async fn mute(node: &Node, args: Args) -> Result<Reply, AriError> {
    set_mute(node, args, true).await
}

/// `DELETE /channels/{channelId}/mute`.
pub async fn unmute(node: &Node, args: Args) -> Result<Reply, AriError> {
    set_mute(node, args, false).await
}

async fn set_hold(node: &Node, args: Args, on: bool) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let now = node.now();
    let mut ctl = node.lock().await;
    let leg = ctl.reg.in_stasis(id)?.leg;
    node.dataplane
        .set_hold(leg, on)
        .await
        .map_err(ops::dataplane_error)?;
    ctl.reg.hold_event(now, id, on);
    Ok(Reply::NoContent)
}

/// `POST /channels/{channelId}/hold`.
pub async fn hold(node: &Node, args: Args) -> Result<Reply, AriError> {
    set_hold(node, args, true).await
}

/// `DELETE /channels/{channelId}/hold`.
pub async fn unhold(node: &Node, args: Args) -> Result<Reply, AriError> {
    set_hold(node, args, false).await
}

/// `GET /channels/{channelId}/variable`.
pub async fn get_var(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let name = args
        .non_empty("variable")
        .ok_or_else(|| AriError::bad_request("Variable name is required"))?;
    let ctl = node.lock().await;
    ctl.reg.in_stasis(id)?;
    let value = ctl
        .reg
        .get_var(id, name)
        .ok_or_else(|| AriError::not_found("Provided variable was not found"))?;
    Ok(Reply::Json(json!({ "value": value })))
}

/// `POST /channels/{channelId}/variable`.
pub async fn set_var(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let name = args
        .non_empty("variable")
        .ok_or_else(|| AriError::bad_request("Variable name is required"))?;
    let now = node.now();
    let mut ctl = node.lock().await;
    let ch = ctl.reg.in_stasis(id)?;
    if ch.builtin_var(name).is_some() {
        return Err(AriError::bad_request(format!(
            "Variable {name} is read-only"
        )));
    }
    let leg = ch.leg;
    let value = args.str("value").unwrap_or("");
    if let Some(call) = talk_detect(name, value) {
        // TALK_DETECT(set|remove): a function, not a variable (nothing is
        // stored); as in Asterisk, a value it cannot take fails it.
        let params = match call {
            TalkDetectCall::Set(silence, threshold) => Some((silence, threshold)),
            TalkDetectCall::Remove => None,
            TalkDetectCall::Refused => {
                return Err(AriError::bad_request("Failed to execute function"))
            }
        };
        node.dataplane
            .set_talk_detect(leg, params)
            .await
            .map_err(ops::dataplane_error)?;
        return Ok(Reply::NoContent);
    }
    ctl.reg.set_var(now, id, name, value);
    Ok(Reply::NoContent)
}

/// What a `TALK_DETECT(...)` write asks.
enum TalkDetectCall {
    /// Silence (ms) and talking threshold.
    Set(u32, u32),
    Remove,
    /// A value Asterisk's func_talkdetect refuses.
    Refused,
}

/// `TALK_DETECT(set)=[silence_ms[,talking_threshold]]` and
/// `TALK_DETECT(remove)`, as Asterisk's func_talkdetect reads them; `None`
/// when `name` is not TALK_DETECT.
fn talk_detect(name: &str, value: &str) -> Option<TalkDetectCall> {
    let arg = name
        .strip_prefix("TALK_DETECT(")?
        .strip_suffix(')')?
        .to_ascii_lowercase();
    Some(match arg.as_str() {
        "remove" => TalkDetectCall::Remove,
        "set" => {
            let mut parts = value.split(',').map(str::trim);
            let mut read = |default: u32| match parts.next().filter(|p| !p.is_empty()) {
                None => Some(default),
                Some(p) => p.parse::<u32>().ok().filter(|v| *v >= 1),
            };
            let silence = read(crate::media::talk::DEFAULT_SILENCE_MS);
            let threshold = read(crate::media::talk::DEFAULT_TALKING_THRESHOLD);
            match silence.zip(threshold) {
                Some((s, t)) => TalkDetectCall::Set(s, t),
                None => TalkDetectCall::Refused,
            }
        }
        _ => TalkDetectCall::Refused,
    })
}

/// `GET /channels/{channelId}/variables`.
pub async fn get_vars(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let names = args.list("variables");
    if names.is_empty() {
        return Err(AriError::bad_request(
            "At least one variable name is required",
        ));
    }
    let ctl = node.lock().await;
    ctl.reg.in_stasis(id)?;
    let mut out = Map::new();
    for name in names {
        let value = ctl
            .reg
            .get_var(id, name)
            .ok_or_else(|| AriError::not_found("Provided variable was not found"))?;
        out.insert(name.clone(), json!(value));
    }
    Ok(Reply::Json(json!({ "variables": out })))
}

/// `POST /channels/{channelId}/variables`: `{"variables": {"NAME": "value"}}`;
/// a value may also be `{"value": "..."}` as Asterisk accepts.
pub async fn set_vars(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let Some(body) = args.body("variables") else {
        return Err(AriError::bad_request("The 'variables' field is required"));
    };
    let Some(fields) = body.as_object() else {
        return Err(AriError::bad_request(
            "The 'variables' field must be a JSON object",
        ));
    };
    let mut pairs = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Object(o) => match o.get("value") {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(AriError::bad_request(
                        "Each object value in 'variables' must include string field 'value'",
                    ))
                }
            },
            _ => {
                return Err(AriError::bad_request(
                    "Each value in 'variables' must be a string or an object with 'value'",
                ))
            }
        };
        pairs.push((name.clone(), value));
    }
    let now = node.now();
    let mut ctl = node.lock().await;
    let ch = ctl.reg.in_stasis(id)?;
    if let Some((name, _)) = pairs.iter().find(|(n, _)| ch.builtin_var(n).is_some()) {
        return Err(AriError::bad_request(format!(
            "Variable {name} is read-only"
        )));
    }
    for (name, value) in &pairs {
        ctl.reg.set_var(now, id, name, value);
    }
    Ok(Reply::NoContent)
}

/// `POST /channels/{channelId}/move`.
pub async fn move_to(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let app = args
        .non_empty("app")
        .ok_or_else(|| AriError::bad_request("Missing parameter app"))?;
    let app_args = split_args(args.str("appArgs"));
    let now = node.now();
    let mut ctl = node.lock().await;
    let bridge = ctl.reg.in_stasis(id)?.bridge.clone();
    if !ctl.reg.has_app(app) {
        ctl.reg.move_failed(now, id, app, app_args);
        return Ok(Reply::NoContent);
    }
    if let Some(bridge) = bridge {
        ops::leave_bridge(node, &mut ctl, now, &bridge, id).await?;
    }
    ctl.reg.leave_stasis(now, id);
    ctl.reg.enter_stasis(now, id, app, app_args);
    Ok(Reply::NoContent)
}

/// `POST /channels/{channelId}/continue`: the channel leaves Stasis. crossbar
/// has no dialplan to continue in, so the channel then ends with Normal
/// Clearing (`StasisEnd`, then `ChannelDestroyed`).
pub async fn continue_in_dialplan(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let now = node.now();
    let mut ctl = node.lock().await;
    let ch = ctl.reg.in_stasis(id)?;
    let bridge = ch.bridge.clone();
    let leg = ch.leg;
    let peer = ch.local_peer().map(str::to_string);
    if let Some(bridge) = bridge {
        ops::leave_bridge(node, &mut ctl, now, &bridge, id).await?;
    }
    ctl.reg.leave_stasis(now, id);
    let _ = node.dataplane.destroy_leg(leg).await;
    ctl.reg.remove_channel(now, id, Cause::NORMAL);
    if let Some(peer) = peer {
        ops::hangup(node, &mut ctl, now, &peer, Cause::NORMAL, false).await?;
    }
    Ok(Reply::NoContent)
}

/// `GET /channels/{channelId}/rtp_statistics`.
pub async fn rtp_statistics(node: &Node, args: Args) -> Result<Reply, AriError> {
    let id = args.path("channelId");
    let ctl = node.lock().await;
    let ch = ctl
        .reg
        .channel(id)
        .ok_or_else(|| AriError::not_found("Channel cannot be found."))?;
    let (leg, channel_id, format) = (ch.leg, ch.id.clone(), ch.format);
    let stats = node
        .dataplane
        .rtp_stats(leg)
        .await
        .map_err(ops::dataplane_error)?;
    Ok(Reply::Json(rtp_stat(
        &stats,
        &channel_id,
        format.clock_rate(),
    )))
}

/// The `RTPstat` model of a leg's counters, each field meaning what
/// Asterisk's does (res/res_rtp_asterisk.c, ast_rtp_get_stat). The data plane
/// measures jitter in RTP timestamp units of the leg's clock (`clock_rate`
/// Hz); Asterisk reports seconds (`ast_samp2sec`). Note Asterisk's naming,
/// kept here: `txjitter` is the jitter *we* measure on the stream we
/// receive (`rtp->rxjitter`) and `rxjitter` the jitter the remote reports
/// on the stream we send (`rtp->rtcp->reported_jitter`). Fields crossbar
/// cannot fill honestly are omitted.
fn rtp_stat(stats: &RtpStats, channel_id: &str, clock_rate: u32) -> Value {
    let seconds = |ticks: u32| f64::from(ticks) / f64::from(clock_rate.max(1));
    let mut v = json!({
        "txcount": stats.tx_packets,
        "rxcount": stats.rx_packets,
        "txoctetcount": stats.tx_octets,
        "rxoctetcount": stats.rx_octets,
        "rxdropped": stats.rx_dropped,
        "rxbad": stats.rx_bad,
        "rxwrongsource": stats.rx_wrong_source,
        "rxlooped": stats.rx_looped,
        "rxflood": stats.rx_flood,
        "rxconcealed": stats.rx_concealed,
        "rxrtcp": stats.rx_rtcp,
        "txdropped": stats.tx_dropped,
        "txerrors": stats.tx_errors,
        // Asterisk's lost counts are unsigned and never below zero
        // (calculate_lost_packet_statistics raises "expected" to "received").
        "rxploss": stats.rx_lost.max(0),
        "rxrtcpreports": stats.rx_rtcp_reports,
        "rxrtcpbad": stats.rx_rtcp_bad,
        "txrtcp": stats.tx_rtcp,
        "channel_uniqueid": channel_id,
    });
    // Our interarrival jitter of the received stream (RFC 3550 A.8), once a
    // stream was received.
    if stats.rx_ssrc.is_some() {
        v["txjitter"] = json!(seconds(stats.rx_jitter));
    }
    // The remote's view of our stream, from its last RTCP report block.
    if stats.remote_reports > 0 {
        v["rxjitter"] = json!(seconds(stats.remote_jitter));
        v["remote_maxjitter"] = json!(seconds(stats.remote_max_jitter));
        v["txploss"] = json!(stats.remote_cumulative_lost.max(0));
        v["remote_fraction_lost"] = json!(stats.remote_fraction_lost);
    }
    if let Some(rtt) = stats.rtt_ms {
        v["rtt"] = json!(rtt / 1000.0);
    }
    if let Some(jb) = stats.jitter_buffer {
        v["jitterbuffer"] = json!({
            "played": jb.played,
            "missing": jb.missing,
            "late": jb.late,
            "duplicate": jb.duplicate,
            "skipped": jb.skipped,
            "stalls": jb.stalls,
            "overrun": jb.overrun,
            "trimmed": jb.trimmed,
            "restarts": jb.restarts,
        });
    }
    if let Some(ssrc) = stats.rx_ssrc {
        v["remote_ssrc"] = json!(ssrc);
    }
    if let Some(ssrc) = stats.tx_ssrc {
        v["local_ssrc"] = json!(ssrc);
    }
    if let Some(local) = stats.local {
        v["local_address"] = json!(local.to_string());
    }
    if let Some(remote) = stats.remote {
        v["remote_address"] = json!(remote.to_string());
    }
    v
}

/// A format this build carries, or 400.
pub(super) fn parse_format(name: &str) -> Result<Format, AriError> {
    let available = || {
        Format::available()
            .map(Format::name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match Format::from_name(name) {
        Some(f) if f.is_available() => Ok(f),
        Some(f) => Err(AriError::bad_request(format!(
            "Format {f} is not available in this build (build crossbar with --features opus); available: {}",
            available()
        ))),
        None => Err(AriError::bad_request(format!(
            "Provided format ({name}) was not found: expected one of {}",
            available()
        ))),
    }
}

pub(super) fn require_app(ctl: &Control, app: &str) -> Result<(), AriError> {
    if ctl.reg.has_app(app) {
        Ok(())
    } else {
        Err(AriError::bad_request(format!(
            "Stasis application '{app}' is not registered (no WebSocket holds /ari/events?app={app})"
        )))
    }
}

/// An `external_host` that is one of this node's own RTP addresses would
/// make the leg send its media into another leg of the node: a packet loop.
fn refuse_own_rtp_address(
    config: &crate::config::Config,
    remote: SocketAddr,
) -> Result<(), AriError> {
    let rtp = &config.rtp;
    let ours = |ip: std::net::IpAddr| {
        ip == rtp.bind_ip
            || (rtp.bind_ip.is_unspecified() && (ip.is_loopback() || ip.is_unspecified()))
    };
    let in_range = (rtp.port_min..=rtp.port_max.saturating_add(1)).contains(&remote.port());
    if ours(remote.ip()) && in_range {
        return Err(AriError::bad_request(format!(
            "external_host '{remote}' is one of this node's RTP addresses ({}:{}-{}): media would loop",
            rtp.bind_ip, rtp.port_min, rtp.port_max
        )));
    }
    Ok(())
}

/// `external_host` must be `IP:PORT` (hostnames are not resolved on the
/// control thread).
fn parse_external_host(host: &str) -> Result<SocketAddr, AriError> {
    if !host
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && !p.is_empty())
    {
        return Err(AriError::bad_request(
            "external_host must be <host>:<port> for all transports other than websocket",
        ));
    }
    let addr: SocketAddr = host.parse().map_err(|_| {
        AriError::bad_request(format!(
            "external_host '{host}' must be an IP address and port (hostnames are not resolved)"
        ))
    })?;
    if addr.port() == 0 {
        return Err(AriError::bad_request("external_host port must not be 0"));
    }
    Ok(addr)
}

/// Application args: a comma-separated list, as Stasis() takes them.
pub(super) fn split_args(s: Option<&str>) -> Vec<String> {
    match s {
        None | Some("") => Vec::new(),
        Some(s) => s.split(',').map(str::to_string).collect(),
    }
}

/// `"Name" <number>` or a bare number.
pub(super) fn parse_caller_id(s: &str) -> (String, String) {
    let s = s.trim();
    if let (Some(open), Some(close)) = (s.find('<'), s.rfind('>')) {
        if open < close {
            let name = s[..open].trim().trim_matches('"').to_string();
            return (name, s[open + 1..close].trim().to_string());
        }
    }
    (String::new(), s.to_string())
}

/// The `variables` body object as channel variables (string values only).
pub fn string_map(body: Option<&Value>) -> Result<Map<String, Value>, AriError> {
    let Some(v) = body else {
        return Ok(Map::new());
    };
    let Some(obj) = v.as_object() else {
        return Err(AriError::bad_request(
            "The 'variables' field must be a JSON object",
        ));
    };
    let mut out = Map::new();
    for (k, v) in obj {
        match v {
            Value::String(_) => {
                out.insert(k.clone(), v.clone());
            }
            Value::Number(_) | Value::Bool(_) => {
                out.insert(k.clone(), json!(v.to_string()));
            }
            _ => {
                return Err(AriError::bad_request(format!(
                    "Invalid value for variable '{k}': expected a string"
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_host_forms() {
        assert!(parse_external_host("127.0.0.1:4000").is_ok());
        assert!(parse_external_host("[::1]:4000").is_ok());
        let e = parse_external_host("127.0.0.1").unwrap_err();
        assert!(e.message.starts_with("external_host must be <host>:<port>"));
        let e = parse_external_host("media.example:4000").unwrap_err();
        assert!(e.message.contains("hostnames are not resolved"));
    }

    /// Every field `rtp_statistics` can serve is declared in the `RTPstat`
    /// model, and every required one is always served.
    #[test]
    fn rtp_statistics_match_their_model() {
        use crate::ari::models::models_of;
        let model = models_of("channels")
            .iter()
            .find(|m| m.id == "RTPstat")
            .expect("RTPstat model");
        let full = RtpStats {
            remote_reports: 1,
            rtt_ms: Some(1.5),
            jitter_buffer: Some(Default::default()),
            rx_ssrc: Some(1),
            tx_ssrc: Some(2),
            local: Some("127.0.0.1:10000".parse().unwrap()),
            remote: Some("127.0.0.1:4000".parse().unwrap()),
            ..RtpStats::default()
        };
        let served = rtp_stat(&full, "c1", 8000);
        for key in served.as_object().unwrap().keys() {
            assert!(
                model.props.iter().any(|p| p.0 == key),
                "{key} is served but not in the RTPstat model"
            );
        }
        let minimal = rtp_stat(&RtpStats::default(), "c1", 8000);
        for p in model.props.iter().filter(|p| p.2) {
            assert!(minimal.get(p.0).is_some(), "required {} is missing", p.0);
        }
    }

    /// Jitter leaves in seconds of the leg's RTP clock, rtt in seconds,
    /// under Asterisk's names: `txjitter` ours, `rxjitter` the remote's.
    #[test]
    fn rtp_statistics_are_in_asterisks_units_and_names() {
        let stats = RtpStats {
            rx_ssrc: Some(7),
            rx_jitter: 80,
            remote_reports: 2,
            remote_jitter: 160,
            remote_max_jitter: 320,
            remote_cumulative_lost: 3,
            rtt_ms: Some(25.0),
            rx_lost: 4,
            ..RtpStats::default()
        };
        let v = rtp_stat(&stats, "c1", 8000);
        assert_eq!(v["txjitter"], 0.01);
        assert_eq!(v["rxjitter"], 0.02);
        assert_eq!(v["remote_maxjitter"], 0.04);
        assert_eq!(v["rtt"], 0.025);
        assert_eq!(v["txploss"], 3);
        assert_eq!(v["rxploss"], 4);
        // The same ticks on a 48 kHz clock (opus) are a sixth of the time.
        let v = rtp_stat(&stats, "c1", 48_000);
        assert_eq!(v["txjitter"], 80.0 / 48_000.0);
        assert_eq!(v["rxjitter"], 160.0 / 48_000.0);
    }

    #[test]
    fn rtp_statistics_omit_what_was_not_measured() {
        let v = rtp_stat(&RtpStats::default(), "c1", 8000);
        for absent in ["txjitter", "rxjitter", "remote_maxjitter", "txploss", "rtt"] {
            assert!(v.get(absent).is_none(), "{absent} in {v}");
        }
        // Losses never go below zero, as Asterisk's unsigned counts.
        let dup = RtpStats {
            rx_lost: -2,
            remote_reports: 1,
            remote_cumulative_lost: -1,
            ..RtpStats::default()
        };
        let v = rtp_stat(&dup, "c1", 8000);
        assert_eq!(v["rxploss"], 0);
        assert_eq!(v["txploss"], 0);
        assert_eq!(v["rxjitter"], 0.0);
    }

    #[test]
    fn originate_timeouts_read_as_asterisk_reads_them() {
        assert_eq!(originate_timeout(5), Some(5));
        assert_eq!(originate_timeout(-1), None);
        assert_eq!(originate_timeout(0), Some(30));
        assert_eq!(originate_timeout(-7), Some(30));
    }

    #[test]
    fn local_dial_strings_drop_the_technology_and_counter() {
        assert_eq!(local_dialstring("Local/bob@B-0000000a;1"), "bob@B");
        assert_eq!(local_dialstring("Local/a-b@B-00000001;1"), "a-b@B");
    }

    #[test]
    fn endpoints_and_caller_ids() {
        let t = parse_endpoint("Local/bob@callee").unwrap();
        assert_eq!((t.exten.as_str(), t.context.as_str()), ("bob", "callee"));
        assert!(parse_endpoint("PJSIP/bob")
            .unwrap_err()
            .message
            .contains("not supported"));
        assert!(parse_endpoint("Local").is_err());
        assert_eq!(
            parse_caller_id("\"Alice\" <100>"),
            ("Alice".to_string(), "100".to_string())
        );
        assert_eq!(parse_caller_id("200"), (String::new(), "200".to_string()));
    }
}
