//! SIP channels: what the SIP agent's call events do to channels, and what
//! ARI operations do to a SIP channel's call.
//!
//! [`SipState`] lives in the control state ([`Control::sip`]), under the
//! control lock, with the [`Agent`] it drives: the SIP I/O task
//! (`host::sip`) feeds the agent and then calls [`handle_events`]; ARI
//! handlers call [`ring`], [`progress`], [`answer`], [`hangup_signal`],
//! [`originate`] and [`dial`]. What the agent sends leaves when the control
//! lock is released ([`SipState::flush`], called by the lock guard).
//!
//! How calls reach applications (no dialplan): a request from a configured
//! endpoint's network (`[[sip.endpoint]] match`) is that endpoint's; else a
//! request from a trusted network (`sip.trusted`, default 127.0.0.0/8) is
//! taken as a proxy's; anything else gets 403. The application is the
//! endpoint's `app`, else the request-URI's user; URI parameters `arg=`
//! are the application's args, in order (`sip:myapp@node;arg=a;arg=b`). An
//! application that no WebSocket holds: 404. The channel, named
//! `SIP/<endpoint or source IP>-0000000N`, enters it in state `Ring` with
//! `dialplan.exten` the request-URI's user and caller id from
//! P-Asserted-Identity (from trusted sources) or From.
//!
//! Media: each SIP channel has an RTP leg from the data plane's pool that
//! sends to the address in the peer's SDP and re-learns it from what
//! arrives (symmetric RTP, for peers behind NAT). We answer with one codec,
//! chosen in our order from those offered (so two legs of a common codec
//! meet in `native_rtp`); we offer one codec (the endpoint's first, or the
//! originator's). A dynamic payload type must match crossbar's own number
//! for the codec (`media::Format::payload_type`); otherwise the codec is
//! not taken (README, departures).
//!
//! Causes: an incoming call hung up before it is answered gets the SIP
//! status Asterisk maps from the cause (`sip::cause::status_of_cause`); an
//! outgoing call that fails ends with the cause Asterisk maps from the
//! status (`sip::cause::cause_of_status`); a BYE ends a call with cause 16,
//! a CANCEL with the cause of 487 (127), as `chan_pjsip` does.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rsip::headers::{ToTypedHeader, UntypedHeader};
use rsip::message::HeadersExt;
use rsip::Request;

use super::args::Args;
use super::channels::{
    originate_timeout, parse_caller_id, parse_format, require_app, schedule_no_answer, split_args,
    string_map, NoAnswer,
};
use super::error::AriError;
use super::ops;
use super::spec::Reply;
use crate::clock::Timestamp;
use crate::config::{parse_codecs, Cidr, Config};
use crate::control::channel::{Cause, Channel, ChannelKind, ChannelState, DialplanCep};
use crate::host::{Control, Node, SipOut};
use crate::media::Format;
use crate::sdp::{self, LocalMedia, Role, SessionDescription};
use crate::shard::{DataplaneError, LegId, LegSpec};
use crate::sip::agent::{header, Agent, AgentConfig, CallEvent, CallKey, EndReason};
use crate::sip::cause::{cause_of_status, status_of_cause};
use crate::sip::uri::Target;

/// A configured endpoint, parsed.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub name: String,
    matches: Vec<Cidr>,
    contact: Option<Target>,
    codecs: Vec<Format>,
    app: Option<String>,
    context: String,
    direct_media: bool,
}

/// What the control plane keeps of one SIP call.
#[derive(Debug)]
struct SipCall {
    channel: String,
    leg: LegId,
    local: LocalMedia,
    /// Our answer to the peer's offer (incoming calls with an offer): sent
    /// in 183 and 200.
    answer: Option<String>,
    /// Our offer (outgoing calls, offerless incoming ones).
    offer: Option<SessionDescription>,
    /// The peer holds us (its last offer was sendonly or inactive).
    held: bool,
    /// The codecs this call may use (its endpoint's, or `sip.codecs`).
    codecs: Vec<Format>,
    /// Where the peer receives RTP (its SDP).
    remote_media: Option<SocketAddr>,
    /// The endpoint allows direct media.
    direct_allowed: bool,
    /// The peer was re-INVITEd to send its media here, directly to the
    /// other member of a two-party bridge, instead of to crossbar.
    direct: Option<SocketAddr>,
}

/// An outgoing call made by `/channels/create`, waiting for `/dial`.
#[derive(Debug)]
struct PendingDial {
    target: Target,
    dialstring: String,
    offer: SessionDescription,
    local: LocalMedia,
    direct_allowed: bool,
    codecs: Vec<Format>,
}

/// The SIP side of the control state.
pub struct SipState {
    pub agent: Agent,
    out: SipOut,
    calls: HashMap<CallKey, SipCall>,
    dials: HashMap<String, PendingDial>,
    trusted: Vec<Cidr>,
    codecs: Vec<Format>,
    pub endpoints: Vec<Endpoint>,
    rtp_ip: IpAddr,
    next_session: u64,
    /// The agent timeout the SIP task sleeps until.
    armed: Option<Instant>,
}

impl SipState {
    /// The SIP side for `config`, sending through `out` from `address`.
    pub fn new(config: &Config, address: SocketAddr, out: SipOut) -> Result<SipState, String> {
        let sip = &config.sip;
        let mut endpoints = Vec::new();
        for e in &sip.endpoint {
            let contact = if e.contact.is_empty() {
                None
            } else {
                Some(Target::parse(&e.contact)?)
            };
            endpoints.push(Endpoint {
                name: e.name.clone(),
                matches: e
                    .r#match
                    .iter()
                    .map(|m| Cidr::parse(m))
                    .collect::<Result<_, _>>()?,
                contact,
                codecs: if e.codecs.is_empty() {
                    parse_codecs(&sip.codecs)?
                } else {
                    parse_codecs(&e.codecs)?
                },
                app: (!e.app.is_empty()).then(|| e.app.clone()),
                context: e.context.clone(),
                direct_media: e.direct_media,
            });
        }
        let seed = Timestamp::now().0;
        Ok(SipState {
            agent: Agent::new(AgentConfig {
                address,
                session_expires: sip.session_expires,
                min_se: sip.min_se,
                max_transactions: sip.max_transactions,
                seed,
            }),
            out,
            calls: HashMap::new(),
            dials: HashMap::new(),
            trusted: Cidr::parse_list(&sip.trusted)?,
            codecs: parse_codecs(&sip.codecs)?,
            endpoints,
            rtp_ip: config.rtp.bind_ip,
            next_session: seed,
            armed: None,
        })
    }

    /// Sends what the agent has queued, and wakes the SIP task when the
    /// agent's next timeout is no longer the one it sleeps until.
    pub fn flush(&mut self) {
        while let Some(t) = self.agent.poll_transmit() {
            self.out.send(t);
        }
        if self.agent.poll_timeout() != self.armed {
            self.out.wake();
        }
    }

    /// The agent's next timeout, which the SIP task now sleeps until.
    pub fn armed_timeout(&mut self) -> Option<Instant> {
        self.armed = self.agent.poll_timeout();
        self.armed
    }

    fn endpoint_of(&self, ip: IpAddr) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| e.matches.iter().any(|m| m.contains(ip)))
    }

    fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    fn local_media(&mut self, formats: Vec<Format>) -> LocalMedia {
        self.next_session += 1;
        // Port 9 (discard) until the leg has its own: an answer on port 0
        // would reject the stream.
        let mut local = LocalMedia::new(self.rtp_ip, 9, self.next_session);
        local.preferred = formats.clone();
        local.formats = formats;
        local
    }
}

fn now_instant() -> Instant {
    Instant::now()
}

// ---- events from the agent ----------------------------------------------------

/// Handles every event the agent has queued, in order.
pub async fn handle_events(node: &Node, ctl: &mut Control, now: Timestamp) {
    // Bounded by the agent's queue; each event is handled once.
    while let Some(event) = ctl.sip.as_mut().and_then(|s| s.agent.poll_event()) {
        match event {
            CallEvent::Incoming {
                call,
                source,
                request,
                ..
            } => incoming(node, ctl, now, call, source, &request).await,
            CallEvent::Cancelled { call } => {
                ended(node, ctl, now, call, Cause::of(cause_of_status(487))).await
            }
            CallEvent::Ended { call, why } => {
                let cause = match why {
                    EndReason::Bye => Cause::NORMAL,
                    EndReason::NoAck | EndReason::SessionExpired => Cause::of(cause_of_status(408)),
                };
                ended(node, ctl, now, call, cause).await
            }
            CallEvent::Confirmed { call, sdp } => {
                if let Some(sdp) = sdp {
                    late_answer(node, ctl, call, &sdp).await;
                }
            }
            CallEvent::Progress { call, status, sdp } => {
                outgoing_progress(node, ctl, now, call, status, sdp.as_deref()).await
            }
            CallEvent::Answered { call, sdp } => {
                outgoing_answered(node, ctl, now, call, sdp.as_deref()).await
            }
            CallEvent::Failed { call, status } => {
                outgoing_failed(node, ctl, now, call, status).await
            }
            CallEvent::Offer { call, sdp } => offer(node, ctl, now, call, sdp.as_deref()).await,
            CallEvent::OfferAnswered { .. } => {}
        }
    }
}

/// A new INVITE: refused, or a channel in its application.
async fn incoming(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    call: CallKey,
    source: SocketAddr,
    request: &Request,
) {
    match admit(node, ctl, now, call, source, request).await {
        Ok(()) => {}
        Err(status) => {
            if let Some(sip) = ctl.sip.as_mut() {
                sip.agent.reject(now_instant(), call, status, None);
            }
        }
    }
}

async fn admit(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    call: CallKey,
    source: SocketAddr,
    request: &Request,
) -> Result<(), u16> {
    let sip = ctl.sip.as_mut().ok_or(500u16)?;
    let endpoint = sip.endpoint_of(source.ip()).cloned();
    let trusted = sip.trusted.iter().any(|c| c.contains(source.ip()));
    if endpoint.is_none() && !trusted {
        tracing::info!(%source, "SIP INVITE refused: not a configured endpoint nor a trusted network");
        return Err(403);
    }
    let exten = request.uri.user().unwrap_or("s").to_string();
    let app = endpoint
        .as_ref()
        .and_then(|e| e.app.clone())
        .unwrap_or_else(|| exten.clone());
    let args: Vec<String> = request
        .uri
        .params
        .iter()
        .filter_map(|p| match p {
            rsip::Param::Other(name, Some(value)) if name.to_string() == "arg" => {
                Some(value.to_string())
            }
            _ => None,
        })
        .collect();
    if !ctl.reg.has_app(&app) {
        tracing::info!(%source, app, "SIP INVITE refused: no application of that name runs");
        return Err(404);
    }
    let codecs = endpoint
        .as_ref()
        .map(|e| e.codecs.clone())
        .unwrap_or_else(|| sip.codecs.clone());
    let codecs_kept = codecs.clone();
    let mut local = sip.local_media(codecs);
    // The offer, and our answer's codec (on a placeholder port until the
    // leg has one).
    let offer = match std::str::from_utf8(&request.body) {
        Ok("") => None,
        Ok(text) => Some(sdp::parse(text.as_bytes()).map_err(|e| {
            tracing::info!(%source, "SIP INVITE refused (488): {e}");
            488u16
        })?),
        Err(_) => return Err(400),
    };
    let direct_allowed = endpoint.as_ref().is_some_and(|e| e.direct_media);
    let (format, remote, dtmf_pt) = match &offer {
        Some(offer) => {
            let Some((answer, negotiated)) = answer_offer(offer, &mut local) else {
                tracing::info!(%source, "SIP INVITE refused (488): no codec in common");
                return Err(488);
            };
            (answer.format, negotiated.remote, answer.dtmf_payload_type)
        }
        None => (local.formats[0], None, Some(sdp::TELEPHONE_EVENT_PT)),
    };
    let leg = ctl.reg.next_leg();
    let spec = LegSpec {
        remote: remote.unwrap_or_else(unspecified),
        format,
        symmetric: true,
        dtmf_pt,
    };
    let local_addr = match node.dataplane.create_rtp_leg(leg, spec).await {
        Ok(addr) => addr,
        Err(e) => {
            tracing::warn!("SIP INVITE refused: no RTP leg: {e}");
            return Err(503);
        }
    };
    local.port = local_addr.port();
    let (answer, our_offer) = match &offer {
        Some(offer) => {
            let (answer, _) = answer_offer(offer, &mut local).ok_or(488u16)?;
            (Some(answer.sdp.write()), None)
        }
        None => {
            local.formats = vec![format];
            (None, sdp::offer(&local).ok())
        }
    };
    let id = match ctl.reg.claim_channel_id(None) {
        Ok(id) => id,
        Err(_) => {
            let _ = node.dataplane.destroy_leg(leg).await;
            return Err(500);
        }
    };
    let peer_name = endpoint
        .as_ref()
        .map(|e| e.name.clone())
        .unwrap_or_else(|| source.ip().to_string());
    let name = format!("SIP/{peer_name}-{}", ctl.reg.next_name_suffix());
    let seq = ctl.reg.next_seq();
    let kind = ChannelKind::Sip {
        call: Some(call),
        local: local_addr,
        endpoint: endpoint.as_ref().map(|e| e.name.clone()),
    };
    let mut channel = Channel::new(id.clone(), name, leg, kind, format, now, seq);
    channel.state = ChannelState::Ring;
    channel.caller = caller_id(request, trusted && endpoint.is_none());
    channel.dialplan = DialplanCep {
        context: endpoint
            .as_ref()
            .map(|e| e.context.clone())
            .unwrap_or_else(|| "default".to_string()),
        exten,
        priority: 1,
    };
    if let Some(sip) = ctl.sip.as_mut() {
        sip.calls.insert(
            call,
            SipCall {
                channel: id.clone(),
                leg,
                local,
                answer,
                offer: our_offer,
                held: false,
                codecs: codecs_kept,
                remote_media: remote,
                direct_allowed,
                direct: None,
            },
        );
    }
    ctl.reg.insert_channel(now, channel);
    ctl.reg.enter_stasis(now, &id, &app, args);
    Ok(())
}

/// Our answer to `offer` with the formats of `local`, skipping a format
/// whose dynamic payload type differs from ours; and what it settled.
fn answer_offer(
    offer: &SessionDescription,
    local: &mut LocalMedia,
) -> Option<(sdp::Answer, sdp::Negotiated)> {
    // Bounded: each round removes one format.
    for _ in 0..=Format::ALL.len() {
        let answer = sdp::answer(offer, local).ok()?;
        if answer.payload_type != answer.format.payload_type() {
            local.formats.retain(|f| *f != answer.format);
            local.preferred.retain(|f| *f != answer.format);
            if local.formats.is_empty() {
                return None;
            }
            continue;
        }
        let negotiated = sdp::negotiated(offer, &answer.sdp, Role::Answerer).ok()?;
        return Some((answer, negotiated));
    }
    None
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// Caller id: P-Asserted-Identity when the request comes through a trusted
/// proxy, else From: (display name, user).
fn caller_id(request: &Request, trust_pai: bool) -> (String, String) {
    let pai = trust_pai
        .then(|| header(&request.headers, &["p-asserted-identity"]))
        .flatten()
        .and_then(|v| rsip::headers::From::new(v).typed().ok())
        .map(|f| (f.display_name, f.uri));
    let from = request
        .from_header()
        .ok()
        .and_then(|f| f.typed().ok())
        .map(|f| (f.display_name, f.uri));
    match pai.or(from) {
        Some((display, uri)) => (
            display
                .map(|d| d.trim_matches('"').to_string())
                .unwrap_or_default(),
            uri.user().unwrap_or_default().to_string(),
        ),
        None => (String::new(), String::new()),
    }
}

/// The peer ended the call (BYE, CANCEL, timers): the channel is hung up.
async fn ended(node: &Node, ctl: &mut Control, now: Timestamp, call: CallKey, cause: Cause) {
    let Some(sip_call) = ctl.sip.as_mut().and_then(|s| s.calls.remove(&call)) else {
        return;
    };
    if ctl.reg.channel(&sip_call.channel).is_some() {
        if let Err(e) = ops::hangup(node, ctl, now, &sip_call.channel, cause, false).await {
            tracing::warn!(channel = %sip_call.channel, "SIP hangup: {e}");
        }
    }
}

/// The SDP answer of an offerless INVITE, in the ACK.
async fn late_answer(node: &Node, ctl: &mut Control, call: CallKey, text: &str) {
    let Some(c) = ctl.sip.as_ref().and_then(|s| s.calls.get(&call)) else {
        return;
    };
    if let Some(n) = settled_by(c.offer.as_ref(), Some(text)) {
        let _ = node.dataplane.set_remote(c.leg, n.remote).await;
    }
}

/// What our `offer` and the peer's SDP `answer` settled, if both are there
/// and agree.
fn settled_by(offer: Option<&SessionDescription>, answer: Option<&str>) -> Option<sdp::Negotiated> {
    let answer = sdp::parse(answer?.as_bytes()).ok()?;
    sdp::negotiated(offer?, &answer, Role::Offerer).ok()
}

/// The Dial status Asterisk reports for a final SIP status.
fn dial_status(status: u16) -> &'static str {
    match cause_of_status(status) {
        17 => "BUSY",
        18 | 19 => "NOANSWER",
        34 | 41 | 42 | 44 => "CONGESTION",
        _ => "CHANUNAVAIL",
    }
}

async fn outgoing_progress(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    call: CallKey,
    status: u16,
    sdp: Option<&str>,
) {
    let Some(c) = ctl.sip.as_ref().and_then(|s| s.calls.get(&call)) else {
        return;
    };
    let (id, leg) = (c.channel.clone(), c.leg);
    // Early media: the 183's SDP answer tells where to send.
    if let Some(n) = settled_by(c.offer.as_ref(), sdp) {
        let _ = node.dataplane.set_remote(leg, n.remote).await;
    }
    if status == 180 || status == 183 {
        let state = ctl.reg.channel(&id).map(|c| c.state);
        if status == 180 && state == Some(ChannelState::Down) {
            ctl.reg.set_state(now, &id, ChannelState::Ringing);
        }
        let what = if status == 180 { "RINGING" } else { "PROGRESS" };
        ctl.reg.dial_event(now, &id, "", what);
    }
}

async fn outgoing_answered(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    call: CallKey,
    sdp: Option<&str>,
) {
    let Some(c) = ctl.sip.as_ref().and_then(|s| s.calls.get(&call)) else {
        return;
    };
    let (id, leg) = (c.channel.clone(), c.leg);
    let Some(n) = settled_by(c.offer.as_ref(), sdp) else {
        // An answer we cannot use: end the call (488 territory).
        tracing::warn!(channel = %id, "SIP answer without a usable SDP answer: hanging up");
        ctl.reg.dial_event(now, &id, "", "ANSWER");
        ctl.reg.set_state(now, &id, ChannelState::Up);
        let _ = ops::hangup(node, ctl, now, &id, Cause::of(58), false).await;
        return;
    };
    if let Err(e) = node.dataplane.set_remote(leg, n.remote).await {
        tracing::warn!(channel = %id, "SIP answer: media not redirected: {e}");
    }
    if let Some(c) = ctl.sip.as_mut().and_then(|s| s.calls.get_mut(&call)) {
        c.remote_media = n.remote;
    }
    ctl.reg.set_state(now, &id, ChannelState::Up);
    ctl.reg.dial_event(now, &id, "", "ANSWER");
    let pending = ctl
        .reg
        .channel_mut(&id)
        .and_then(|c| c.pending_stasis.take());
    if let Some((app, args)) = pending {
        ctl.reg.enter_stasis(now, &id, &app, args);
    }
}

async fn outgoing_failed(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    call: CallKey,
    status: u16,
) {
    let Some(c) = ctl.sip.as_mut().and_then(|s| s.calls.remove(&call)) else {
        return;
    };
    let id = c.channel;
    if ctl.reg.channel(&id).is_none() {
        return;
    }
    ctl.reg.dial_event(now, &id, "", dial_status(status));
    let cause = Cause::of(cause_of_status(status));
    if let Err(e) = end_without_request(node, ctl, now, &id, cause).await {
        tracing::warn!(channel = %id, "failed SIP call not ended cleanly: {e}");
    }
}

/// Ends a channel whose call failed, as Asterisk hangs up a dialed channel
/// that never answered: no hangup request; `ChannelLeftBridge` and
/// `StasisEnd` where they apply, then `ChannelDestroyed` with `cause`.
async fn end_without_request(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    id: &str,
    cause: Cause,
) -> Result<(), AriError> {
    let Some(ch) = ctl.reg.channel(id) else {
        return Ok(());
    };
    let (leg, bridge) = (ch.leg, ch.bridge.clone());
    if let Some(bridge) = bridge {
        ops::leave_bridge(node, ctl, now, &bridge, id).await?;
    }
    ctl.reg.leave_stasis(now, id);
    match node.dataplane.destroy_leg(leg).await {
        Ok(()) | Err(DataplaneError::Unknown) => {}
        Err(e) => return Err(ops::dataplane_error(e)),
    }
    ctl.reg.remove_channel(now, id, cause);
    Ok(())
}

/// The peer's re-INVITE or UPDATE: hold and unhold, a new address; the
/// codec stays the channel's (another one is refused with 488).
async fn offer(node: &Node, ctl: &mut Control, now: Timestamp, call: CallKey, text: Option<&str>) {
    let Some(sip) = ctl.sip.as_mut() else {
        return;
    };
    let Some(c) = sip.calls.get_mut(&call) else {
        sip.agent.answer_offer(now_instant(), call, Err(481));
        return;
    };
    let format = ctl
        .reg
        .channel(&c.channel)
        .map(|ch| ch.format)
        .unwrap_or(Format::Ulaw);
    // The current codec first (no change unless the peer drops it), then
    // the others this call may use.
    c.local.formats = std::iter::once(format)
        .chain(c.codecs.iter().copied().filter(|f| *f != format))
        .collect();
    c.local.preferred = vec![format];
    c.local.session_version += 1;
    // While media goes directly to the other member, the answer keeps
    // pointing there.
    let ours = (c.local.address, c.local.port);
    if let Some(direct) = c.direct {
        c.local.address = direct.ip();
        c.local.port = direct.port();
    }
    let Some(text) = text else {
        // An offerless re-INVITE: we offer what we have.
        c.local.formats = vec![format];
        let offer = sdp::offer(&c.local).ok().map(|o| o.write());
        (c.local.address, c.local.port) = ours;
        let result = offer.as_deref().ok_or(500);
        sip.agent.answer_offer(now_instant(), call, result);
        return;
    };
    let parsed = sdp::parse(text.as_bytes()).ok();
    let settled = parsed
        .as_ref()
        .and_then(|o| answer_offer(o, &mut c.local).map(|(a, n)| (a, n, o.clone())));
    (c.local.address, c.local.port) = ours;
    let Some((answer, negotiated, offer)) = settled else {
        sip.agent.answer_offer(now_instant(), call, Err(488));
        return;
    };
    let holds = {
        let m = &offer.media[negotiated.media_index];
        !offer.direction_of(m).receives()
    };
    let was_held = std::mem::replace(&mut c.held, holds);
    let (id, leg) = (c.channel.clone(), c.leg);
    let written = answer.sdp.write();
    c.answer = Some(written.clone());
    if negotiated.remote.is_some() {
        c.remote_media = negotiated.remote;
    }
    c.local.formats = vec![answer.format];
    sip.agent.answer_offer(now_instant(), call, Ok(&written));
    if answer.format != format {
        // A new codec: the leg changes format and its bridge re-chooses
        // its technology.
        match node.dataplane.set_format(leg, answer.format).await {
            Ok(technology) => {
                if let Some(ch) = ctl.reg.channel_mut(&id) {
                    ch.format = answer.format;
                }
                let bridge = ctl.reg.channel(&id).and_then(|c| c.bridge.clone());
                if let (Some(bridge), Some(t)) = (bridge, technology) {
                    ctl.reg.set_technology(&bridge, t.name());
                }
                tracing::info!(channel = %id, "re-INVITE: codec {format} → {}", answer.format);
            }
            Err(e) => tracing::warn!(channel = %id, "re-INVITE: codec not changed: {e}"),
        }
    }
    if negotiated.remote.is_some() {
        if let Err(e) = node.dataplane.set_remote(leg, negotiated.remote).await {
            tracing::warn!(channel = %id, "re-INVITE: media not redirected: {e}");
        }
    }
    if holds != was_held {
        ctl.reg.hold_event(now, &id, holds);
    }
}

// ---- ARI operations on SIP channels -------------------------------------------

/// The call of a SIP channel, if `id` is one.
fn call_of(ctl: &Control, id: &str) -> Option<CallKey> {
    match &ctl.reg.channel(id)?.kind {
        ChannelKind::Sip { call, .. } => *call,
        _ => None,
    }
}

/// `ring` on a SIP channel: 180 to the caller.
pub fn ring(ctl: &mut Control, id: &str) -> bool {
    let Some(call) = call_of(ctl, id) else {
        return false;
    };
    if let Some(sip) = ctl.sip.as_mut() {
        sip.agent.provisional(now_instant(), call, 180, None);
    }
    true
}

/// `progress` on a SIP channel: 183 with our SDP answer (early media).
pub fn progress(ctl: &mut Control, id: &str) -> bool {
    let Some(call) = call_of(ctl, id) else {
        return false;
    };
    if let Some(sip) = ctl.sip.as_mut() {
        let sdp = sip.calls.get(&call).and_then(|c| c.answer.clone());
        sip.agent
            .provisional(now_instant(), call, 183, sdp.as_deref());
    }
    true
}

/// `answer` on an incoming SIP channel: 200 with our SDP (our answer, or
/// our offer for an offerless INVITE). False if it is no such channel.
pub fn answer(ctl: &mut Control, id: &str) -> bool {
    let Some(call) = call_of(ctl, id) else {
        return false;
    };
    if let Some(sip) = ctl.sip.as_mut() {
        let sdp = sip.calls.get(&call).and_then(|c| {
            c.answer
                .clone()
                .or_else(|| c.offer.as_ref().map(|o| o.write()))
        });
        if let Some(sdp) = sdp {
            sip.agent.accept(now_instant(), call, &sdp);
        }
    }
    true
}

/// Direct media: when the two members of `bridge_id` are SIP calls whose
/// endpoints allow it (`direct_media`), answered, of one codec, in a bridge
/// without `dtmf_events` or `proxy_media`, each is re-INVITEd to send its
/// RTP to the other's address; as soon as that no longer holds (a third
/// member, one leaves, the bridge goes), each is re-INVITEd back to its
/// crossbar leg. `left` is a channel that has just left the bridge.
pub fn direct_media(ctl: &mut Control, bridge_id: &str, left: Option<&str>) {
    let Some(sip) = ctl.sip.as_mut() else {
        return;
    };
    let mut wanted: Vec<(CallKey, Option<SocketAddr>)> = Vec::new();
    if let Some(left) = left {
        if let Some(call) = ctl.reg.channel(left).and_then(|c| match &c.kind {
            ChannelKind::Sip { call, .. } => *call,
            _ => None,
        }) {
            wanted.push((call, None));
        }
    }
    let members: Vec<(CallKey, Format, ChannelState)> = ctl
        .reg
        .bridge(bridge_id)
        .map(|b| {
            b.members
                .iter()
                .filter_map(|m| {
                    let ch = ctl.reg.channel(&m.channel)?;
                    match &ch.kind {
                        ChannelKind::Sip {
                            call: Some(call), ..
                        } => Some((*call, ch.format, ch.state)),
                        _ => None,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let flags_allow = ctl
        .reg
        .bridge(bridge_id)
        .is_some_and(|b| !b.flags.dtmf_events && !b.flags.proxy_media && !b.flags.holding);
    let all_members = ctl.reg.bridge(bridge_id).map_or(0, |b| b.members.len());
    let eligible = flags_allow
        && all_members == 2
        && members.len() == 2
        && members[0].1 == members[1].1
        && members.iter().all(|(call, _, state)| {
            *state == ChannelState::Up
                && sip
                    .calls
                    .get(call)
                    .is_some_and(|c| c.direct_allowed && c.remote_media.is_some())
        });
    for (i, (call, _, _)) in members.iter().enumerate() {
        let other = members.get(1 - i.min(1)).map(|m| m.0);
        let target = if eligible {
            other
                .and_then(|o| sip.calls.get(&o))
                .and_then(|c| c.remote_media)
        } else {
            None
        };
        wanted.push((*call, target));
    }
    for (call, target) in wanted {
        let Some(c) = sip.calls.get_mut(&call) else {
            continue;
        };
        if c.direct == target {
            continue;
        }
        let mut local = c.local.clone();
        if let Some(t) = target {
            local.address = t.ip();
            local.port = t.port();
        }
        c.local.session_version += 1;
        local.session_version = c.local.session_version;
        let Ok(offer) = sdp::offer(&local) else {
            continue;
        };
        if sip.agent.reinvite(now_instant(), call, &offer.write()) {
            c.direct = target;
            tracing::info!(
                channel = %c.channel,
                "direct media: {}",
                target.map_or("back through crossbar".to_string(), |t| format!("RTP to {t}"))
            );
        }
    }
}

/// `redirect` on an incoming SIP call not yet answered: 302 with `resource`
/// (a `sip:` URI, or a configured endpoint's name: its contact) as
/// Contact; the channel then ends with the cause of 302. An answered call
/// would need REFER, which crossbar does not send: 412.
pub async fn redirect(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    id: &str,
    resource: &str,
) -> Result<(), AriError> {
    let call = call_of(ctl, id);
    let state = ctl.reg.existing(id)?.state;
    let (Some(call), Some(sip)) = (call, ctl.sip.as_mut()) else {
        return Err(AriError::precondition("Channel in invalid state"));
    };
    let contact = if resource.starts_with("sip:") {
        Target::parse(resource).map_err(AriError::bad_request)?.uri
    } else {
        sip.endpoint(resource)
            .and_then(|e| e.contact.clone())
            .ok_or_else(|| {
                AriError::not_found(format!("Endpoint '{resource}' not found or has no contact"))
            })?
            .uri
    };
    if state == ChannelState::Up
        || !sip
            .agent
            .reject(now_instant(), call, 302, Some(&format!("<{contact}>")))
    {
        return Err(AriError::precondition(
            "Channel in invalid state: only a call not yet answered is redirected (302); crossbar sends no REFER",
        ));
    }
    sip.calls.remove(&call);
    ops::hangup(node, ctl, now, id, Cause::of(cause_of_status(302)), false).await
}

/// Ends a SIP channel's call as its hangup requires: BYE when answered,
/// CANCEL when dialing, the final status mapped from `cause` when ringing.
pub fn hangup_signal(ctl: &mut Control, id: &str, cause: Cause) {
    if let Some(sip) = ctl.sip.as_mut() {
        sip.dials.remove(id);
    }
    let Some(call) = call_of(ctl, id) else {
        return;
    };
    if let Some(sip) = ctl.sip.as_mut() {
        sip.calls.remove(&call);
        sip.agent
            .hangup(now_instant(), call, status_of_cause(cause.code));
    }
}

/// A parsed SIP dial string.
struct DialTarget {
    target: Target,
    endpoint: Option<Endpoint>,
    /// What the channel name and `Dial` events show after `SIP/`.
    peer_name: String,
    dialstring: String,
}

/// `PJSIP/endpoint`, `PJSIP/number@endpoint`, `PJSIP/endpoint/sip:uri`,
/// `SIP/…` alike, and `SIP/sip:user@ip:port`.
fn parse_dial(sip: &SipState, endpoint: &str) -> Result<DialTarget, AriError> {
    let (_, resource) = endpoint
        .split_once('/')
        .ok_or_else(|| AriError::bad_request("Endpoint must be TECH/RESOURCE"))?;
    if resource.is_empty() {
        return Err(AriError::bad_request(format!(
            "No resource provided in endpoint parameter '{endpoint}'"
        )));
    }
    if resource.starts_with("sip:") {
        let target = Target::parse(resource).map_err(AriError::bad_request)?;
        return Ok(DialTarget {
            peer_name: target.addr.ip().to_string(),
            target,
            endpoint: None,
            dialstring: resource.to_string(),
        });
    }
    let (name, uri) = match resource.split_once('/') {
        Some((name, uri)) => (name, Some(uri)),
        None => (resource, None),
    };
    let (number, name) = match name.split_once('@') {
        Some((number, name)) => (Some(number), name),
        None => (None, name),
    };
    let e = sip.endpoint(name).cloned().ok_or_else(|| {
        AriError::bad_request(format!(
            "Endpoint '{name}' is not a configured SIP endpoint"
        ))
    })?;
    let mut target = match uri {
        Some(uri) => Target::parse(uri).map_err(AriError::bad_request)?,
        None => e.contact.clone().ok_or_else(|| {
            AriError::bad_request(format!(
                "SIP endpoint '{name}' has no contact to dial: give a URI (SIP/{name}/sip:user@ip:port)"
            ))
        })?,
    };
    if let Some(number) = number {
        let ok = !number.is_empty()
            && number
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()+#".contains(c));
        if !ok {
            return Err(AriError::bad_request(format!(
                "'{number}' is not a dialable number"
            )));
        }
        target.uri.auth = Some(rsip::Auth {
            user: number.to_string(),
            password: None,
        });
    }
    Ok(DialTarget {
        target,
        peer_name: e.name.clone(),
        endpoint: Some(e),
        dialstring: resource.to_string(),
    })
}

/// `POST /channels` (and `/channels/create`) with a `SIP/` or `PJSIP/`
/// endpoint: a channel whose INVITE goes out now (originate) or on `dial`.
pub async fn originate(node: &Node, args: Args, create_only: bool) -> Result<Reply, AriError> {
    let endpoint = args
        .non_empty("endpoint")
        .ok_or_else(|| AriError::bad_request("Endpoint must be specified"))?;
    let app = args.non_empty("app").ok_or_else(|| {
        AriError::bad_request("Application must be specified: crossbar has no dialplan")
    })?;
    if args.non_empty("otherChannelId").is_some() {
        return Err(AriError::bad_request(
            "otherChannelId names the second half of a Local channel: a SIP channel has none",
        ));
    }
    if args.non_empty("originator").is_some() && args.non_empty("formats").is_some() {
        return Err(AriError::bad_request(
            "Originator and formats can't both be specified",
        ));
    }
    let formats = match args.non_empty("formats") {
        Some(list) => Some(
            list.split(',')
                .map(|f| parse_format(f.trim()))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let app_args = split_args(args.str("appArgs"));
    let caller = parse_caller_id(args.str("callerId").unwrap_or(""));
    let variables = string_map(args.body("variables"))?;
    let timeout = if create_only {
        None
    } else {
        originate_timeout(args.int("timeout").unwrap_or(30))
    };

    let now = node.now();
    let mut ctl = node.lock().await;
    require_app(&ctl, app)?;
    let sip = ctl
        .sip
        .as_mut()
        .ok_or_else(|| AriError::bad_request("SIP is off on this node (sip.bind = \"off\")"))?;
    let dial = parse_dial(sip, endpoint)?;
    let originator_format = match args.non_empty("originator") {
        Some(o) => Some(
            ctl.reg
                .existing(o)
                .map_err(|_| AriError::bad_request("Provided originator channel was not found"))?
                .format,
        ),
        None => None,
    };
    let sip = ctl
        .sip
        .as_mut()
        .ok_or_else(|| AriError::internal("SIP state gone"))?;
    let codecs = dial
        .endpoint
        .as_ref()
        .map(|e| e.codecs.clone())
        .unwrap_or_else(|| sip.codecs.clone());
    let format = originator_format
        .or_else(|| formats.as_ref().and_then(|f| f.first().copied()))
        .unwrap_or(codecs[0]);
    let mut local = sip.local_media(vec![format]);
    let direct_allowed = dial.endpoint.as_ref().is_some_and(|e| e.direct_media);
    let id = ctl.reg.claim_channel_id(args.str("channelId"))?;
    let leg = ctl.reg.next_leg();
    // Our offer carries telephone-event on crossbar's number.
    let spec = LegSpec {
        remote: unspecified(),
        format,
        symmetric: true,
        dtmf_pt: Some(sdp::TELEPHONE_EVENT_PT),
    };
    let local_addr = node
        .dataplane
        .create_rtp_leg(leg, spec)
        .await
        .map_err(ops::dataplane_error)?;
    local.port = local_addr.port();
    let our_offer = sdp::offer(&local).map_err(|e| AriError::internal(e.to_string()))?;
    let name = format!("SIP/{}-{}", dial.peer_name, ctl.reg.next_name_suffix());
    let seq = ctl.reg.next_seq();
    let kind = ChannelKind::Sip {
        call: None,
        local: local_addr,
        endpoint: dial.endpoint.as_ref().map(|e| e.name.clone()),
    };
    let mut channel = Channel::new(id.clone(), name, leg, kind, format, now, seq);
    channel.caller = caller.clone();
    channel.connected = caller;
    channel.vars = variables;
    if create_only {
        channel.awaiting_dial = true;
        if let Some(sip) = ctl.sip.as_mut() {
            sip.dials.insert(
                id.clone(),
                PendingDial {
                    target: dial.target,
                    dialstring: dial.dialstring,
                    offer: our_offer,
                    local,
                    direct_allowed,
                    codecs,
                },
            );
        }
        ctl.reg.insert_channel(now, channel);
        ctl.reg.enter_stasis(now, &id, app, app_args);
        return Ok(Reply::Json(ctl.reg.existing(&id)?.snapshot()));
    }
    channel.pending_stasis = Some((app.to_string(), app_args));
    ctl.reg.insert_channel(now, channel);
    // Asterisk subscribes the originating application to the channel, so
    // it sees the Dial events and the channel's end if the call fails.
    ctl.reg.subscribe_channel(app, &id);
    let reply = ctl.reg.existing(&id)?.snapshot();
    let pending = PendingDial {
        target: dial.target,
        dialstring: dial.dialstring,
        offer: our_offer,
        local,
        direct_allowed,
        codecs,
    };
    send_invite(node, &mut ctl, now, &id, pending).await?;
    if let Some(seconds) = timeout {
        schedule_no_answer(node, &id, leg, seconds, NoAnswer::Originate);
    }
    Ok(Reply::Json(reply))
}

/// Sends the INVITE of channel `id`; the channel ends (cause 38) if it
/// cannot be sent.
async fn send_invite(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    id: &str,
    pending: PendingDial,
) -> Result<(), AriError> {
    let ch = ctl.reg.existing(id)?;
    let (leg, caller) = (ch.leg, ch.caller.clone());
    let Some(sip) = ctl.sip.as_mut() else {
        return Err(AriError::internal("SIP state gone"));
    };
    let sdp_text = pending.offer.write();
    let from_user = if caller.1.is_empty() {
        "crossbar".to_string()
    } else {
        caller.1.clone()
    };
    match sip.agent.invite(
        now_instant(),
        &pending.target,
        (&caller.0, &from_user),
        Some(&sdp_text),
    ) {
        Ok(call) => {
            sip.calls.insert(
                call,
                SipCall {
                    channel: id.to_string(),
                    leg,
                    local: pending.local,
                    answer: None,
                    offer: Some(pending.offer),
                    held: false,
                    codecs: pending.codecs,
                    remote_media: None,
                    direct_allowed: pending.direct_allowed,
                    direct: None,
                },
            );
            if let Some(ch) = ctl.reg.channel_mut(id) {
                if let ChannelKind::Sip { call: c, .. } = &mut ch.kind {
                    *c = Some(call);
                }
            }
            ctl.reg.dial_event(now, id, &pending.dialstring, "");
            Ok(())
        }
        Err(why) => {
            tracing::warn!(channel = %id, "INVITE not sent: {why}");
            end_without_request(node, ctl, now, id, Cause::NETWORK_OUT_OF_ORDER).await?;
            Err(AriError::bad_request(format!(
                "The SIP call cannot be placed: {why}"
            )))
        }
    }
}

/// `POST /channels/{id}/dial` on a SIP channel made by `/channels/create`.
/// `None` when `id` is no such channel (the caller handles Local ones).
pub async fn dial(
    node: &Node,
    ctl: &mut Control,
    now: Timestamp,
    id: &str,
    timeout: i64,
) -> Option<Result<Reply, AriError>> {
    let pending = ctl.sip.as_mut()?.dials.remove(id)?;
    let leg = ctl.reg.channel(id)?.leg;
    if let Some(c) = ctl.reg.channel_mut(id) {
        c.awaiting_dial = false;
    }
    if let Err(e) = send_invite(node, ctl, now, id, pending).await {
        return Some(Err(e));
    }
    if timeout > 0 {
        schedule_no_answer(node, id, leg, timeout as u64, NoAnswer::Dial);
    }
    Some(Ok(Reply::NoContent))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP_OFFER: &str = "v=0\r\no=sipp 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 26111 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";

    #[test]
    fn an_offer_is_answered_in_our_codec_order() {
        let offer = sdp::parse(SIPP_OFFER.as_bytes()).unwrap();
        let mut local = LocalMedia::new("127.0.0.1".parse().unwrap(), 10000, 1);
        local.formats = vec![Format::Alaw, Format::Ulaw];
        local.preferred = local.formats.clone();
        let (answer, negotiated) = answer_offer(&offer, &mut local).expect("an answer");
        assert_eq!(answer.format, Format::Alaw);
        assert_eq!(negotiated.remote, Some("127.0.0.1:26111".parse().unwrap()));
    }
}
