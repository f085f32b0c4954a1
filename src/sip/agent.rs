//! crossbar's SIP user agent, sans-IO: calls (as UAS and as UAC) over
//! dialogs (RFC 3261 §12) over the transaction layer ([`Transactions`]).
//!
//! The host hands an [`Agent`] received datagrams and the time; it drains
//! what to send ([`Agent::poll_transmit`]), what happened to calls
//! ([`Agent::poll_event`]) and when to wake it ([`Agent::poll_timeout`]).
//! The control plane drives calls with commands: [`Agent::provisional`],
//! [`Agent::accept`], [`Agent::reject`], [`Agent::invite`],
//! [`Agent::hangup`], [`Agent::answer_offer`], [`Agent::reinvite`]. SDP is
//! text to this module: the caller parses and negotiates it (`crate::sdp`).
//!
//! Invariants:
//! - **A call ends once**: every call the agent reports ([`CallEvent::Incoming`]
//!   or created by [`Agent::invite`]) is ended by exactly one of
//!   [`CallEvent::Ended`], [`CallEvent::Failed`], [`CallEvent::Cancelled`], or
//!   the control plane's [`Agent::hangup`]/[`Agent::reject`]; after that its
//!   [`CallKey`] names nothing and commands on it answer `false`.
//! - **Requests outside what we do are answered, never dropped silently**:
//!   methods we know but do not take get 405 with `Allow`, unknown methods
//!   501, in-dialog requests for no dialog 481, a body that is not SDP 415,
//!   an option we do not support in `Require` 420, a too-short session
//!   interval 422 (with `Min-SE`), a re-INVITE during another 491. Every
//!   refusal is counted ([`Agent::counters`]).
//! - **In-dialog requests follow the route set** (Record-Route copied into
//!   our 18x/2xx; requests carry `Route` and go to the first route's
//!   address: `uri::next_hop`), so a record-routing proxy stays in the path.
//! - **Session timers** (RFC 4028): a dialog with a negotiated interval is
//!   refreshed by its refresher; when we are the refresher we re-INVITE with
//!   our last SDP at half the interval; when no refresh arrives before the
//!   interval minus min(32 s, interval/3), the call ends with a BYE.
//! - Deterministic: tags, branches and Call-IDs come from a seeded generator.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsip::headers::{ToTypedHeader, UntypedHeader};
use rsip::message::HeadersExt;
use rsip::{Header, Headers, Method, Request, Response, SipMessage};

use super::message::{self, response_to, status, MessageError, TxKey};
use super::transaction::{
    CancelOutcome, Event as TxEvent, Input, Retransmit2xx, Transactions, Transmit, TransportId,
    TwoXxState,
};
use super::uri::{next_hop, uri_addr, Target, Transport};
use crate::rtp::xorshift::XorShift;

/// Methods the agent takes (the `Allow` header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE";
/// Options the agent supports (the `Supported` header).
pub const SUPPORTED: &str = "timer";

/// A call's handle, given by the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

/// How the agent presents itself and the limits it keeps.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Our SIP address as peers reach it (Via sent-by, Contact).
    pub address: SocketAddr,
    /// The session interval we ask for and accept at most (s).
    pub session_expires: u32,
    /// The shortest interval we accept (s).
    pub min_se: u32,
    /// Most transactions at once.
    pub max_transactions: usize,
    /// Seed of tags, branches and Call-IDs.
    pub seed: u64,
}

/// What happened to a call.
#[derive(Clone, Debug)]
pub enum CallEvent {
    /// A new INVITE: 100 was sent; the call waits for `provisional`,
    /// `accept` or `reject`.
    Incoming {
        call: CallKey,
        transport: TransportId,
        source: SocketAddr,
        request: Box<Request>,
    },
    /// The caller CANCELled before a final response (487 was sent).
    Cancelled { call: CallKey },
    /// The ACK to our 2xx arrived (with the SDP answer of an offerless
    /// INVITE, if any).
    Confirmed { call: CallKey, sdp: Option<String> },
    /// An outgoing call got a provisional response.
    Progress {
        call: CallKey,
        status: u16,
        sdp: Option<String>,
    },
    /// An outgoing call was answered (the ACK was sent).
    Answered { call: CallKey, sdp: Option<String> },
    /// An outgoing call failed with a final response (408 for no answer
    /// from the network).
    Failed { call: CallKey, status: u16 },
    /// The peer sent a new offer (re-INVITE or UPDATE): answer with
    /// [`Agent::answer_offer`]. `sdp` is `None` for an offerless re-INVITE.
    Offer { call: CallKey, sdp: Option<String> },
    /// The answer to our re-INVITE (`None`: it failed; the session is as
    /// before).
    OfferAnswered { call: CallKey, sdp: Option<String> },
    /// An established call ended: by the peer's BYE, a missing ACK, or an
    /// expired session timer.
    Ended { call: CallKey, why: EndReason },
}

/// Why an established call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The peer sent BYE.
    Bye,
    /// Our 2xx was never acknowledged (we sent BYE).
    NoAck,
    /// No session refresh arrived in time (we sent BYE).
    SessionExpired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Uas,
    Uac,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No final response yet.
    Early,
    /// 2xx sent or received, ACK pending (UAS) or sent (UAC).
    Established,
}

/// What a client transaction of a call is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Invite,
    Reinvite,
    Refresh,
    Bye,
    Cancel,
}

#[derive(Debug)]
struct SessionTimer {
    interval: u32,
    we_refresh: bool,
    /// When we refresh (we_refresh) or give up (otherwise).
    due: Instant,
}

#[derive(Debug)]
struct Call {
    side: Side,
    phase: Phase,
    transport: TransportId,
    /// Where the peer's requests come from (responses and the fallback next hop).
    peer: SocketAddr,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// Our From/To header value, with our tag.
    local_party: String,
    /// Their From/To header value, with their tag once known.
    remote_party: String,
    remote_target: rsip::Uri,
    route_set: Vec<rsip::UriWithParams>,
    local_cseq: u32,
    remote_cseq: u32,
    /// The initial INVITE (received or sent).
    invite: Request,
    invite_tx: TxKey,
    /// Our 2xx (initial or re-INVITE) being retransmitted until its ACK.
    two_xx: Option<(u32, Retransmit2xx)>,
    /// A peer's re-INVITE/UPDATE waiting for our answer.
    pending_offer: Option<(TxKey, Request)>,
    /// Our own re-INVITE in flight.
    our_reinvite: bool,
    /// The last SDP we sent (for refreshes).
    local_sdp: Option<String>,
    session: Option<SessionTimer>,
}

/// The SIP user agent.
pub struct Agent {
    cfg: AgentConfig,
    txs: Transactions,
    calls: HashMap<CallKey, Call>,
    /// (Call-ID, our tag) → call.
    dialogs: HashMap<(String, String), CallKey>,
    /// Initial INVITE server transactions → call (for CANCEL).
    server_invites: HashMap<TxKey, CallKey>,
    /// Our client transactions → call and what for.
    clients: HashMap<TxKey, (CallKey, Purpose)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<CallEvent>,
    rng: XorShift,
    next_call: u64,
    counters: BTreeMap<&'static str, u64>,
}

impl Agent {
    pub fn new(cfg: AgentConfig) -> Agent {
        Agent {
            txs: Transactions::new(cfg.max_transactions),
            rng: XorShift::new(cfg.seed),
            cfg,
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            server_invites: HashMap::new(),
            clients: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_call: 1,
            counters: BTreeMap::new(),
        }
    }

    /// Counters by name (`rx_malformed`, `tx_405`, ...), for `/metrics`.
    pub fn counters(&self) -> &BTreeMap<&'static str, u64> {
        &self.counters
    }

    /// Calls alive.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Transactions alive.
    pub fn transaction_count(&self) -> usize {
        self.txs.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        self.txs.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// When [`Agent::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.calls.values().flat_map(|c| {
            let two_xx = c.two_xx.as_ref().and_then(|(_, r)| r.poll_timeout());
            let session = c
                .session
                .as_ref()
                .filter(|_| c.phase == Phase::Established)
                .map(|s| s.due);
            two_xx.into_iter().chain(session)
        });
        self.txs.poll_timeout().into_iter().chain(calls).min()
    }

    fn count(&mut self, what: &'static str) {
        *self.counters.entry(what).or_insert(0) += 1;
    }

    // ---- input ------------------------------------------------------------

    /// A datagram (or a framed TCP message) from `from` on `transport`.
    pub fn receive(
        &mut self,
        now: Instant,
        transport: TransportId,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        let message = match message::parse(bytes) {
            Ok(m) => m,
            Err(MessageError::KeepAlive) => return,
            Err(e) => {
                self.refuse_unparsable(transport, from, bytes, &e);
                return;
            }
        };
        if let SipMessage::Request(r) = &message {
            if r.version != rsip::Version::V2 {
                self.count("rx_bad_version");
                self.stateless(transport, from, r, 505, None);
                return;
            }
        }
        self.count("rx_messages");
        let input = Input::Received {
            transport,
            from,
            message,
        };
        if let Err(e) = self.txs.handle(now, input) {
            tracing::debug!("sip: transaction layer refused a message from {from}: {e:?}");
            self.count("rx_refused");
        }
        self.drain(now);
    }

    /// A message the host will not parse: larger than `sip.max_message`
    /// (`code` 413) or a stream message without Content-Length (400).
    /// Answered `code` when its head is a request that can be answered;
    /// counted either way.
    pub fn refuse_raw(&mut self, transport: TransportId, from: SocketAddr, head: &[u8], code: u16) {
        self.count(if code == 413 {
            "rx_too_large"
        } else {
            "rx_unframed"
        });
        let why = if code == 413 {
            "message too large"
        } else {
            "no Content-Length on a stream"
        };
        if let Some(bytes) = raw_response(head, code, why) {
            self.count(tx_counter(code));
            self.transmits.push_back(Transmit {
                transport,
                to: from,
                bytes,
            });
        }
    }

    /// Counts a message the host dropped before the agent saw it.
    pub fn count_dropped(&mut self, why: &'static str) {
        self.count(why);
    }

    /// A message that does not parse: a request whose Via, CSeq, Call-ID,
    /// From and To can still be read gets 400 (or 413) statelessly; anything
    /// else is dropped. Counted either way.
    fn refuse_unparsable(
        &mut self,
        transport: TransportId,
        from: SocketAddr,
        bytes: &[u8],
        e: &MessageError,
    ) {
        let what = match e {
            MessageError::TooLarge(_) => "rx_too_large",
            MessageError::Truncated { .. } => "rx_truncated",
            MessageError::Malformed(_) | MessageError::ParserPanicked => "rx_malformed",
            _ => "rx_missing_header",
        };
        self.count(what);
        tracing::debug!("sip: unusable message from {from}: {e}");
        let code = match e {
            MessageError::TooLarge(_) => 413,
            MessageError::Malformed(_) if other_version(bytes) => 505,
            MessageError::Malformed(_) if unknown_method(bytes) => 501,
            _ => 400,
        };
        if let Some(bytes) = raw_response(bytes, code, &e.to_string()) {
            self.count(tx_counter(code));
            self.transmits.push_back(Transmit {
                transport,
                to: from,
                bytes,
            });
        }
    }

    /// A response sent without a transaction (to a request that has none).
    fn stateless(
        &mut self,
        transport: TransportId,
        to: SocketAddr,
        request: &Request,
        code: u16,
        warning: Option<&str>,
    ) {
        let mut response = response_to(request, code, None);
        if let Some(w) = warning {
            set_header(
                &mut response.headers,
                "Warning",
                &format!("399 crossbar \"{}\"", clean(w)),
            );
        }
        self.count(tx_counter(code));
        self.transmits.push_back(Transmit {
            transport,
            to,
            bytes: message::to_bytes(&SipMessage::Response(response)),
        });
    }

    /// The time given by [`Agent::poll_timeout`] has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = self.txs.handle(now, Input::Timeout);
        let keys: Vec<CallKey> = self.calls.keys().copied().collect();
        for key in keys {
            let mut no_ack = false;
            let mut session_due = false;
            if let Some(call) = self.calls.get_mut(&key) {
                if let Some((_, r)) = call.two_xx.as_mut() {
                    r.handle_timeout(now);
                    while let Some(t) = r.poll_transmit() {
                        self.transmits.push_back(t);
                    }
                    if r.state() == TwoXxState::NoAck {
                        call.two_xx = None;
                        no_ack = true;
                    }
                }
                // A session timer runs once the call is established.
                session_due = call.phase == Phase::Established
                    && call.session.as_ref().is_some_and(|s| s.due <= now);
            }
            if no_ack {
                self.end_with_bye(now, key, EndReason::NoAck);
                continue;
            }
            if session_due {
                self.session_due(now, key);
            }
        }
        self.drain(now);
    }

    fn session_due(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(timer) = call.session.as_mut() else {
            return;
        };
        if !timer.we_refresh {
            self.end_with_bye(now, key, EndReason::SessionExpired);
            return;
        }
        // Refresh: a re-INVITE with our last SDP, unless one is in flight.
        let interval = timer.interval;
        timer.due = now + Duration::from_secs(u64::from(interval / 2).max(1));
        if call.our_reinvite || call.pending_offer.is_some() {
            return;
        }
        let sdp = call.local_sdp.clone();
        if self.send_in_dialog(now, key, Method::Invite, sdp.as_deref(), Purpose::Refresh) {
            if let Some(c) = self.calls.get_mut(&key) {
                c.our_reinvite = true;
            }
        }
    }

    /// Moves what the transaction layer produced into calls and events.
    fn drain(&mut self, now: Instant) {
        while let Some(event) = self.txs.poll_event() {
            match event {
                TxEvent::Request {
                    key,
                    transport,
                    from,
                    request,
                } => self.on_request(now, key, transport, from, request),
                TxEvent::Response { key, response } => self.on_response(now, &key, response),
                TxEvent::StrayResponse {
                    transport,
                    from,
                    response,
                } => self.on_stray_response(now, transport, from, response),
                TxEvent::Timeout { key } => self.on_tx_timeout(&key),
                TxEvent::Terminated { key } => {
                    self.server_invites.remove(&key);
                    self.clients.remove(&key);
                }
            }
        }
    }

    // ---- requests -----------------------------------------------------------

    fn on_request(
        &mut self,
        now: Instant,
        key: Option<TxKey>,
        transport: TransportId,
        from: SocketAddr,
        request: Request,
    ) {
        let Some(key) = key else {
            // An ACK for a 2xx (no transaction).
            self.on_ack(request);
            return;
        };
        let to_tag = to_tag(&request);
        match (&request.method, to_tag) {
            (Method::Invite, None) => self.on_invite(now, key, transport, from, request),
            (Method::Cancel, _) => self.on_cancel(now, key, &request),
            (Method::Options, _) => {
                let mut r = response_to(&request, 200, None);
                self.describe_capabilities(&mut r.headers);
                self.respond(now, key, r);
            }
            (Method::Invite | Method::Update | Method::Bye, Some(tag)) => {
                self.on_in_dialog(now, key, from, request, tag)
            }
            (Method::Update | Method::Bye, None) => self.respond_code(now, key, &request, 481),
            (
                Method::Register
                | Method::Subscribe
                | Method::Notify
                | Method::Message
                | Method::Refer
                | Method::Publish
                | Method::Info
                | Method::PRack,
                _,
            ) => {
                let mut r = response_to(&request, 405, None);
                set_header(&mut r.headers, "Allow", ALLOW);
                self.respond(now, key, r);
            }
            _ => {
                let mut r = response_to(&request, 501, None);
                set_header(&mut r.headers, "Allow", ALLOW);
                self.respond(now, key, r);
            }
        }
    }

    fn describe_capabilities(&self, headers: &mut Headers) {
        set_header(headers, "Allow", ALLOW);
        set_header(headers, "Accept", "application/sdp");
        set_header(headers, "Supported", SUPPORTED);
        set_header(headers, "Contact", &self.contact(Transport::Udp));
    }

    fn respond(&mut self, now: Instant, key: TxKey, response: Response) {
        self.count(tx_counter(status(&response)));
        if let Err(e) = self.txs.handle(now, Input::SendResponse { key, response }) {
            tracing::debug!("sip: response not sent: {e:?}");
        }
    }

    fn respond_code(&mut self, now: Instant, key: TxKey, request: &Request, code: u16) {
        let r = response_to(request, code, None);
        self.respond(now, key, r);
    }

    /// Checks a request's body and Require for what we can take: the
    /// refusal status and extra header, if any.
    fn check_content(&self, request: &Request) -> Option<(u16, Option<(&'static str, String)>)> {
        if let Some(require) = header(&request.headers, &["require"]) {
            let unsupported: Vec<&str> = require
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty() && !o.eq_ignore_ascii_case("timer"))
                .collect();
            if !unsupported.is_empty() {
                return Some((420, Some(("Unsupported", unsupported.join(", ")))));
            }
        }
        if !request.body.is_empty() {
            let ct = header(&request.headers, &["content-type", "c"]).unwrap_or_default();
            let ct = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if ct != "application/sdp" {
                return Some((415, Some(("Accept", "application/sdp".to_string()))));
            }
            if std::str::from_utf8(&request.body).is_err() {
                return Some((400, None));
            }
        }
        None
    }

    /// The session interval a request asks for, checked against ours: the
    /// timer, or a 422 refusal.
    fn session_of_request(&self, request: &Request) -> Result<Option<(u32, bool)>, u16> {
        let Some(se) = header(&request.headers, &["session-expires", "x"]) else {
            return Ok(None);
        };
        let mut parts = se.split(';');
        let Some(interval) = parts.next().and_then(|v| v.trim().parse::<u32>().ok()) else {
            return Err(400);
        };
        if interval < self.cfg.min_se {
            return Err(422);
        }
        let refresher = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("refresher"))
            .map(|(_, v)| v.trim().to_ascii_lowercase());
        let uac_supports = header(&request.headers, &["supported", "k"])
            .is_some_and(|s| s.split(',').any(|o| o.trim().eq_ignore_ascii_case("timer")));
        // The UAC refreshes when it said so, or when it did not say and
        // supports timers; we do otherwise (RFC 4028 9).
        let uac_refreshes = match refresher.as_deref() {
            Some("uac") => true,
            Some("uas") => false,
            _ => uac_supports,
        };
        Ok(Some((
            interval.min(self.cfg.session_expires.max(self.cfg.min_se)),
            uac_refreshes,
        )))
    }

    fn on_invite(
        &mut self,
        now: Instant,
        key: TxKey,
        transport: TransportId,
        from: SocketAddr,
        request: Request,
    ) {
        if let Some((code, extra)) = self.check_content(&request) {
            let mut r = response_to(&request, code, None);
            if let Some((name, value)) = extra {
                set_header(&mut r.headers, name, &value);
            }
            self.respond(now, key, r);
            return;
        }
        let session = match self.session_of_request(&request) {
            Ok(s) => s,
            Err(code) => {
                let mut r = response_to(&request, code, None);
                if code == 422 {
                    set_header(&mut r.headers, "Min-SE", &self.cfg.min_se.to_string());
                }
                self.respond(now, key, r);
                return;
            }
        };
        let contact = request
            .contact_header()
            .ok()
            .and_then(|c| c.typed().ok())
            .map(|c| c.uri);
        let (Some(contact), Ok(call_id), Ok(from_h), Ok(to_h), Ok(cseq)) = (
            contact,
            request.call_id_header().map(|c| c.value().to_string()),
            request.from_header().map(|h| h.value().to_string()),
            request.to_header().map(|h| h.value().to_string()),
            request.cseq_header().and_then(|c| c.typed()),
        ) else {
            self.count("rx_missing_header");
            let mut r = response_to(&request, 400, None);
            set_header(
                &mut r.headers,
                "Warning",
                "399 crossbar \"Missing Contact\"",
            );
            self.respond(now, key, r);
            return;
        };
        let local_tag = self.token(10);
        let route_set = record_routes(&request.headers);
        let call = CallKey(self.next_call);
        self.next_call += 1;
        self.calls.insert(
            call,
            Call {
                side: Side::Uas,
                phase: Phase::Early,
                transport,
                peer: from,
                call_id: call_id.clone(),
                local_party: format!("{to_h};tag={local_tag}"),
                local_tag: local_tag.clone(),
                remote_tag: from_tag(&request),
                remote_party: from_h,
                remote_target: contact,
                route_set,
                local_cseq: self.rng.below(1 << 16) + 1,
                remote_cseq: cseq.seq,
                invite: request.clone(),
                invite_tx: key.clone(),
                two_xx: None,
                pending_offer: None,
                our_reinvite: false,
                local_sdp: None,
                session: session.map(|(interval, uac_refreshes)| SessionTimer {
                    interval,
                    we_refresh: !uac_refreshes,
                    due: now, // armed by `accept`; idle until then
                }),
            },
        );
        self.dialogs.insert((call_id, local_tag), call);
        self.server_invites.insert(key, call);
        self.events.push_back(CallEvent::Incoming {
            call,
            transport,
            source: from,
            request: Box::new(request),
        });
    }

    fn on_cancel(&mut self, now: Instant, key: TxKey, request: &Request) {
        let target = message::cancel_target(request).ok().flatten();
        let call = target
            .as_ref()
            .and_then(|t| self.server_invites.get(t).copied());
        let tag = call
            .and_then(|c| self.calls.get(&c))
            .map(|c| c.local_tag.clone())
            .unwrap_or_default();
        match self.txs.answer_cancel(now, &key, &tag) {
            Ok(CancelOutcome::Cancelled) => {
                self.count("tx_487");
                if let Some(call) = call {
                    self.forget(call);
                    self.events.push_back(CallEvent::Cancelled { call });
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("sip: CANCEL not answered: {e:?}"),
        }
    }

    fn on_in_dialog(
        &mut self,
        now: Instant,
        key: TxKey,
        from: SocketAddr,
        request: Request,
        tag: String,
    ) {
        let call_id = request
            .call_id_header()
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        let Some(&call) = self.dialogs.get(&(call_id, tag)) else {
            self.respond_code(now, key, &request, 481);
            return;
        };
        let cseq = request.cseq_header().and_then(|c| c.typed()).map(|c| c.seq);
        let Some(c) = self.calls.get_mut(&call) else {
            self.respond_code(now, key, &request, 481);
            return;
        };
        match cseq {
            Ok(seq) if seq > c.remote_cseq || c.remote_cseq == 0 => c.remote_cseq = seq,
            Ok(_) => {
                // Out of order (RFC 3261 12.2.2): 500 with Retry-After.
                let mut r = response_to(&request, 500, None);
                set_header(&mut r.headers, "Retry-After", "1");
                self.respond(now, key, r);
                return;
            }
            Err(_) => {
                self.respond_code(now, key, &request, 400);
                return;
            }
        }
        c.peer = from;
        match request.method {
            Method::Bye => {
                let r = response_to(&request, 200, None);
                self.respond(now, key, r);
                self.forget(call);
                self.events.push_back(CallEvent::Ended {
                    call,
                    why: EndReason::Bye,
                });
            }
            _ => self.on_offer(now, key, call, request),
        }
    }

    /// A re-INVITE or UPDATE in an established (or early, for UPDATE) dialog.
    fn on_offer(&mut self, now: Instant, key: TxKey, call: CallKey, request: Request) {
        if let Some((code, extra)) = self.check_content(&request) {
            let mut r = response_to(&request, code, None);
            if let Some((name, value)) = extra {
                set_header(&mut r.headers, name, &value);
            }
            self.respond(now, key, r);
            return;
        }
        let session = self.session_of_request(&request);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let busy = c.pending_offer.is_some()
            || c.our_reinvite
            || (request.method == Method::Invite && c.two_xx.is_some());
        if busy || c.phase == Phase::Early {
            // Glare or an offer before the dialog is confirmed.
            let mut r = response_to(&request, 491, None);
            set_header(&mut r.headers, "Retry-After", "1");
            self.respond(now, key, r);
            return;
        }
        match session {
            Ok(Some((interval, uac_refreshes))) => {
                c.session = Some(SessionTimer {
                    interval,
                    we_refresh: !uac_refreshes,
                    due: now,
                });
            }
            Ok(None) => {}
            Err(code) => {
                let min_se = self.cfg.min_se;
                let mut r = response_to(&request, code, None);
                if code == 422 {
                    set_header(&mut r.headers, "Min-SE", &min_se.to_string());
                }
                self.respond(now, key, r);
                return;
            }
        }
        if let Some(target) = request.contact_header().ok().and_then(|h| h.typed().ok()) {
            c.remote_target = target.uri;
        }
        let sdp = body_text(&request.body);
        c.pending_offer = Some((key, request));
        self.events.push_back(CallEvent::Offer { call, sdp });
    }

    fn on_ack(&mut self, request: Request) {
        let (Ok(call_id), Some(tag)) = (
            request.call_id_header().map(|c| c.value().to_string()),
            to_tag(&request),
        ) else {
            return;
        };
        let Some(&call) = self.dialogs.get(&(call_id, tag)) else {
            self.count("rx_stray_ack");
            return;
        };
        let seq = request
            .cseq_header()
            .and_then(|c| c.typed())
            .map(|c| c.seq)
            .ok();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some((acked_seq, r)) = c.two_xx.as_mut() else {
            return; // a retransmitted ACK
        };
        if Some(*acked_seq) != seq {
            return;
        }
        r.handle_ack();
        let initial = *acked_seq == c.invite_cseq();
        c.two_xx = None;
        if initial {
            self.events.push_back(CallEvent::Confirmed {
                call,
                sdp: body_text(&request.body),
            });
        }
    }

    // ---- responses ----------------------------------------------------------

    fn on_response(&mut self, now: Instant, key: &TxKey, response: Response) {
        let Some(&(call, purpose)) = self.clients.get(key) else {
            return;
        };
        let code = status(&response);
        match purpose {
            Purpose::Invite => self.on_invite_response(now, call, code, response),
            Purpose::Reinvite | Purpose::Refresh => {
                if code < 200 {
                    return;
                }
                if (200..300).contains(&code) {
                    self.send_ack(now, call, &response);
                }
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                c.our_reinvite = false;
                if (200..300).contains(&code) {
                    if let Some(t) = c.session.as_mut() {
                        rearm(t, now);
                    }
                }
                if purpose == Purpose::Reinvite {
                    let sdp = (200..300)
                        .contains(&code)
                        .then(|| body_text(&response.body))
                        .flatten();
                    self.events
                        .push_back(CallEvent::OfferAnswered { call, sdp });
                } else if code == 481 || code == 408 {
                    self.end_with_bye(now, call, EndReason::SessionExpired);
                }
            }
            Purpose::Bye | Purpose::Cancel => {}
        }
    }

    fn on_invite_response(&mut self, now: Instant, call: CallKey, code: u16, response: Response) {
        let Some(c) = self.calls.get_mut(&call) else {
            // Hung up meanwhile: a 2xx that crossed our CANCEL is ACKed and
            // ended with a BYE.
            if (200..300).contains(&code) {
                self.ack_and_bye_orphan(now, &response);
            }
            return;
        };
        if code == 100 {
            return;
        }
        let tag = response_to_tag(&response);
        if c.remote_tag.is_none() {
            if let Some(tag) = &tag {
                c.remote_tag = Some(tag.clone());
                if let Ok(to) = response.to_header() {
                    c.remote_party = to.value().to_string();
                }
            }
        }
        if code < 200 {
            let sdp = body_text(&response.body);
            self.events.push_back(CallEvent::Progress {
                call,
                status: code,
                sdp,
            });
            return;
        }
        if code >= 300 {
            self.forget(call);
            self.events
                .push_back(CallEvent::Failed { call, status: code });
            return;
        }
        // 2xx: the dialog is established.
        c.phase = Phase::Established;
        let mut routes = record_routes(&response.headers);
        routes.reverse();
        c.route_set = routes;
        if let Some(target) = response.contact_header().ok().and_then(|h| h.typed().ok()) {
            c.remote_target = target.uri;
        }
        if let Some(se) = header(&response.headers, &["session-expires", "x"]) {
            let mut parts = se.split(';');
            if let Some(interval) = parts.next().and_then(|v| v.trim().parse::<u32>().ok()) {
                let we = parts.filter_map(|p| p.split_once('=')).any(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("refresher")
                        && v.trim().eq_ignore_ascii_case("uac")
                });
                let mut t = SessionTimer {
                    interval: interval.max(self.cfg.min_se),
                    we_refresh: we,
                    due: now,
                };
                rearm(&mut t, now);
                c.session = Some(t);
            }
        }
        self.send_ack(now, call, &response);
        self.events.push_back(CallEvent::Answered {
            call,
            sdp: body_text(&response.body),
        });
    }

    fn on_stray_response(
        &mut self,
        now: Instant,
        _transport: TransportId,
        _from: SocketAddr,
        response: Response,
    ) {
        // A retransmitted 2xx to our INVITE: ACK it again (RFC 3261 13.2.2.4).
        let code = status(&response);
        let is_invite = response
            .cseq_header()
            .and_then(|c| c.typed())
            .is_ok_and(|c| c.method == Method::Invite);
        if !(200..300).contains(&code) || !is_invite {
            self.count("rx_stray_response");
            return;
        }
        let call_id = response.call_id_header().map(|c| c.value().to_string());
        let tag = response
            .from_header()
            .ok()
            .and_then(|f| f.tag().ok().flatten())
            .map(|t| t.to_string());
        let call = match (call_id, tag) {
            (Ok(id), Some(tag)) => self.dialogs.get(&(id, tag)).copied(),
            _ => None,
        };
        match call {
            Some(call) => self.send_ack(now, call, &response),
            None => self.ack_and_bye_orphan(now, &response),
        }
    }

    fn on_tx_timeout(&mut self, key: &TxKey) {
        if let Some(&(call, Purpose::Invite)) = self.clients.get(key) {
            if self.calls.contains_key(&call) {
                self.forget(call);
                self.events
                    .push_back(CallEvent::Failed { call, status: 408 });
            }
        }
    }

    // ---- commands -----------------------------------------------------------

    /// Sends a provisional response (180, 183 with early media SDP) to an
    /// incoming call. False if the call is gone or already answered.
    pub fn provisional(
        &mut self,
        now: Instant,
        call: CallKey,
        code: u16,
        sdp: Option<&str>,
    ) -> bool {
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        if c.side != Side::Uas || c.phase != Phase::Early || !(101..200).contains(&code) {
            return false;
        }
        if sdp.is_some() {
            c.local_sdp = sdp.map(str::to_string);
        }
        let mut r = response_to(&c.invite, code, Some(&c.local_tag));
        copy_record_routes(&c.invite.headers, &mut r.headers);
        let contact = self.contact_of(call);
        set_header(&mut r.headers, "Contact", &contact);
        if let Some(sdp) = sdp {
            set_body(&mut r, sdp);
        }
        let key = self.calls[&call].invite_tx.clone();
        self.respond(now, key, r);
        true
    }

    /// Answers an incoming call with 200 and our SDP (retransmitted until
    /// the ACK). False if the call is gone or already answered.
    pub fn accept(&mut self, now: Instant, call: CallKey, sdp: &str) -> bool {
        let contact = self.contact_of(call);
        let min_se = self.cfg.min_se;
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        if c.side != Side::Uas || c.phase != Phase::Early {
            return false;
        }
        c.phase = Phase::Established;
        c.local_sdp = Some(sdp.to_string());
        let mut r = response_to(&c.invite, 200, Some(&c.local_tag));
        copy_record_routes(&c.invite.headers, &mut r.headers);
        set_header(&mut r.headers, "Contact", &contact);
        set_header(&mut r.headers, "Allow", ALLOW);
        set_header(&mut r.headers, "Supported", SUPPORTED);
        if let Some(t) = c.session.as_mut() {
            set_header(
                &mut r.headers,
                "Session-Expires",
                &answered_session(t, min_se),
            );
            if !t.we_refresh {
                set_header(&mut r.headers, "Require", "timer");
            }
            rearm(t, now);
        }
        set_body(&mut r, sdp);
        let key = c.invite_tx.clone();
        let seq = c.invite_cseq();
        self.start_2xx(now, call, key, seq, r);
        true
    }

    /// Sends our 2xx through the server transaction and keeps retransmitting
    /// it (RFC 3261 13.3.1.4) until its ACK.
    fn start_2xx(&mut self, now: Instant, call: CallKey, key: TxKey, seq: u32, r: Response) {
        let bytes = message::to_bytes(&SipMessage::Response(r.clone()));
        self.respond(now, key, r);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let mut retransmit = Retransmit2xx::new(
            now,
            Transmit {
                transport: c.transport,
                to: c.peer,
                bytes,
            },
        );
        // The transaction sent the first copy.
        let _ = retransmit.poll_transmit();
        c.two_xx = Some((seq, retransmit));
    }

    /// Refuses an incoming call with a final response (`code` 300–699).
    /// False if the call is gone or already answered.
    pub fn reject(
        &mut self,
        now: Instant,
        call: CallKey,
        code: u16,
        contact: Option<&str>,
    ) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        if c.side != Side::Uas || c.phase != Phase::Early || !(300..700).contains(&code) {
            return false;
        }
        let mut r = response_to(&c.invite, code, Some(&c.local_tag));
        if let Some(contact) = contact {
            set_header(&mut r.headers, "Contact", contact);
        }
        let key = c.invite_tx.clone();
        self.forget(call);
        self.respond(now, key, r);
        true
    }

    /// Starts an outgoing call to `target` with `from` as the caller
    /// (`display`, `user`) and our offer (`None`: an offerless INVITE).
    pub fn invite(
        &mut self,
        now: Instant,
        target: &Target,
        from: (&str, &str),
        sdp: Option<&str>,
    ) -> Result<CallKey, String> {
        let transport = match target.transport {
            Transport::Udp => TransportId(0),
            Transport::Tcp => return Err("dialing over TCP is not supported".to_string()),
        };
        let call_id = format!("{}@crossbar", self.token(16));
        let local_tag = self.token(10);
        let user = sanitize_user(from.1);
        let display = clean(from.0);
        let host = self.cfg.address;
        let local_party = if display.is_empty() {
            format!("<sip:{user}@{}>;tag={local_tag}", host.ip())
        } else {
            format!("\"{display}\" <sip:{user}@{}>;tag={local_tag}", host.ip())
        };
        let remote_party = format!("<{}>", target.uri);
        let cseq = self.rng.below(1 << 16) + 1;
        let branch = self.branch();
        let mut text = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {host};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {local_party}\r\nTo: {remote_party}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: {contact}\r\n\
             Allow: {ALLOW}\r\nSupported: {SUPPORTED}\r\nSession-Expires: {se}\r\n\
             Min-SE: {min_se}\r\nUser-Agent: crossbar\r\n",
            uri = target.uri,
            contact = self.contact(Transport::Udp),
            se = self.cfg.session_expires,
            min_se = self.cfg.min_se,
        );
        append_body(&mut text, sdp);
        let request = Request::try_from(text.as_str()).map_err(|e| format!("bad INVITE: {e}"))?;
        let key = message::client_key_of_request(&request).map_err(|e| e.to_string())?;
        self.txs
            .handle(
                now,
                Input::SendRequest {
                    transport,
                    to: target.addr,
                    request: request.clone(),
                },
            )
            .map_err(|e| format!("{e:?}"))?;
        let call = CallKey(self.next_call);
        self.next_call += 1;
        self.calls.insert(
            call,
            Call {
                side: Side::Uac,
                phase: Phase::Early,
                transport,
                peer: target.addr,
                call_id: call_id.clone(),
                local_tag: local_tag.clone(),
                remote_tag: None,
                local_party,
                remote_party,
                remote_target: target.uri.clone(),
                route_set: Vec::new(),
                local_cseq: cseq,
                remote_cseq: 0,
                invite: request,
                invite_tx: key.clone(),
                two_xx: None,
                pending_offer: None,
                our_reinvite: false,
                local_sdp: sdp.map(str::to_string),
                session: None,
            },
        );
        self.dialogs.insert((call_id, local_tag), call);
        self.clients.insert(key, (call, Purpose::Invite));
        self.count("tx_invite");
        Ok(call)
    }

    /// Hangs up: BYE on an established call, CANCEL on an outgoing call not
    /// yet answered, a final `code` on an incoming one not yet answered
    /// (see [`Agent::reject`]). False if the call is gone.
    pub fn hangup(&mut self, now: Instant, call: CallKey, code: u16) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        match (c.side, c.phase) {
            (Side::Uas, Phase::Early) => self.reject(now, call, code, None),
            (Side::Uac, Phase::Early) => {
                let cancel = cancel_of(&c.invite);
                let (transport, to) = (c.transport, c.peer);
                self.forget(call);
                if let Some(cancel) = cancel {
                    if let Ok(key) = message::client_key_of_request(&cancel) {
                        let input = Input::SendRequest {
                            transport,
                            to,
                            request: cancel,
                        };
                        if self.txs.handle(now, input).is_ok() {
                            self.clients.insert(key, (call, Purpose::Cancel));
                        }
                    }
                }
                true
            }
            (_, Phase::Established) => {
                self.send_in_dialog(now, call, Method::Bye, None, Purpose::Bye);
                self.forget(call);
                true
            }
        }
    }

    /// Ends an established call with a BYE and tells the control plane.
    fn end_with_bye(&mut self, now: Instant, call: CallKey, why: EndReason) {
        if !self.calls.contains_key(&call) {
            return;
        }
        self.send_in_dialog(now, call, Method::Bye, None, Purpose::Bye);
        self.forget(call);
        self.events.push_back(CallEvent::Ended { call, why });
    }

    /// Answers the peer's pending offer: `Ok(sdp)` with 200 and our answer,
    /// `Err(code)` to refuse it (488, 500). False if none is pending.
    pub fn answer_offer(&mut self, now: Instant, call: CallKey, answer: Result<&str, u16>) -> bool {
        let contact = self.contact_of(call);
        let min_se = self.cfg.min_se;
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        let Some((key, request)) = c.pending_offer.take() else {
            return false;
        };
        match answer {
            Err(code) => {
                let r = response_to(&request, code, None);
                self.respond(now, key, r);
            }
            Ok(sdp) => {
                c.local_sdp = Some(sdp.to_string());
                let mut r = response_to(&request, 200, None);
                set_header(&mut r.headers, "Contact", &contact);
                if let Some(t) = c.session.as_mut() {
                    set_header(
                        &mut r.headers,
                        "Session-Expires",
                        &answered_session(t, min_se),
                    );
                    rearm(t, now);
                }
                set_body(&mut r, sdp);
                if request.method == Method::Invite {
                    let seq = request
                        .cseq_header()
                        .and_then(|h| h.typed())
                        .map(|h| h.seq)
                        .unwrap_or(0);
                    self.start_2xx(now, call, key, seq, r);
                } else {
                    self.respond(now, key, r);
                }
            }
        }
        true
    }

    /// Sends a new offer in a re-INVITE (hold, a new address). False if the
    /// call is not established or an offer is already in flight.
    pub fn reinvite(&mut self, now: Instant, call: CallKey, sdp: &str) -> bool {
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        if c.phase != Phase::Established
            || c.our_reinvite
            || c.pending_offer.is_some()
            || c.two_xx.is_some()
        {
            return false;
        }
        c.local_sdp = Some(sdp.to_string());
        let sent = self.send_in_dialog(now, call, Method::Invite, Some(sdp), Purpose::Reinvite);
        if sent {
            if let Some(c) = self.calls.get_mut(&call) {
                c.our_reinvite = true;
            }
        }
        sent
    }

    // ---- building requests --------------------------------------------------

    /// Sends an in-dialog request of `call` (RFC 3261 12.2.1.1).
    fn send_in_dialog(
        &mut self,
        now: Instant,
        call: CallKey,
        method: Method,
        sdp: Option<&str>,
        purpose: Purpose,
    ) -> bool {
        let branch = self.branch();
        let via_host = self.cfg.address;
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        c.local_cseq += 1;
        let tcp = c.transport != TransportId(0);
        let contact = contact_uri(via_host, tcp);
        let mut text = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/{proto} {via_host};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {seq} {method}\r\n",
            target = c.remote_target,
            proto = if tcp { "TCP" } else { "UDP" },
            from = c.local_party,
            to = c.remote_party,
            call_id = c.call_id,
            seq = c.local_cseq,
        );
        for route in &c.route_set {
            text.push_str(&format!("Route: {route}\r\n"));
        }
        if method == Method::Invite {
            text.push_str(&format!(
                "Contact: {contact}\r\nAllow: {ALLOW}\r\nSupported: {SUPPORTED}\r\n"
            ));
            if let Some(t) = &c.session {
                // We send this request, so we are its UAC.
                let refresher = if t.we_refresh { "uac" } else { "uas" };
                text.push_str(&format!(
                    "Session-Expires: {};refresher={refresher}\r\n",
                    t.interval
                ));
            }
        }
        text.push_str("User-Agent: crossbar\r\n");
        append_body(&mut text, sdp);
        let to = if tcp {
            c.peer
        } else {
            let route_uris: Vec<rsip::Uri> = c.route_set.iter().map(|r| r.uri.clone()).collect();
            next_hop(&route_uris, &c.remote_target, c.peer)
        };
        let transport = c.transport;
        let Ok(request) = Request::try_from(text.as_str()) else {
            tracing::warn!("sip: could not build an in-dialog {method}");
            return false;
        };
        let Ok(key) = message::client_key_of_request(&request) else {
            return false;
        };
        let input = Input::SendRequest {
            transport,
            to,
            request,
        };
        if self.txs.handle(now, input).is_err() {
            return false;
        }
        self.clients.insert(key, (call, purpose));
        true
    }

    /// ACKs a 2xx to one of our INVITEs (RFC 3261 13.2.2.4): a request of
    /// the dialog with the INVITE's CSeq number, sent without a transaction.
    fn send_ack(&mut self, now: Instant, call: CallKey, response: &Response) {
        let branch = self.branch();
        let via_host = self.cfg.address;
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let seq = response
            .cseq_header()
            .and_then(|h| h.typed())
            .map(|h| h.seq)
            .unwrap_or(c.local_cseq);
        let to = response
            .to_header()
            .map(|t| t.value().to_string())
            .unwrap_or_else(|_| c.remote_party.clone());
        let mut text = format!(
            "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {via_host};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {seq} ACK\r\n",
            target = c.remote_target,
            from = c.local_party,
            call_id = c.call_id,
        );
        for route in &c.route_set {
            text.push_str(&format!("Route: {route}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        let route_uris: Vec<rsip::Uri> = c.route_set.iter().map(|r| r.uri.clone()).collect();
        let to_addr = next_hop(&route_uris, &c.remote_target, c.peer);
        let transport = c.transport;
        if let Ok(request) = Request::try_from(text.as_str()) {
            let _ = self.txs.handle(
                now,
                Input::SendRequest {
                    transport,
                    to: to_addr,
                    request,
                },
            );
        }
    }

    /// A 2xx for a call we no longer have (it crossed our CANCEL): ACK it
    /// and send BYE, so the far end does not keep a call nobody has.
    fn ack_and_bye_orphan(&mut self, now: Instant, response: &Response) {
        let (Ok(call_id), Ok(from), Ok(to), Some(contact)) = (
            response.call_id_header().map(|h| h.value().to_string()),
            response.from_header().map(|h| h.value().to_string()),
            response.to_header().map(|h| h.value().to_string()),
            response.contact_header().ok().and_then(|h| h.typed().ok()),
        ) else {
            return;
        };
        let Ok(seq) = response
            .cseq_header()
            .and_then(|h| h.typed())
            .map(|h| h.seq)
        else {
            return;
        };
        let Some(addr) = uri_addr(&contact.uri) else {
            return;
        };
        let via = self.cfg.address;
        for (method, seq) in [("ACK", seq), ("BYE", seq + 1)] {
            let branch = self.branch();
            let text = format!(
                "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch={branch};rport\r\n\
                 Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
                 CSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n",
                target = contact.uri,
            );
            if let Ok(request) = Request::try_from(text.as_str()) {
                let _ = self.txs.handle(
                    now,
                    Input::SendRequest {
                        transport: TransportId(0),
                        to: addr,
                        request,
                    },
                );
            }
        }
        self.count("tx_orphan_bye");
    }

    /// Forgets a call's dialog state (its transactions finish on their own).
    fn forget(&mut self, call: CallKey) {
        if let Some(c) = self.calls.remove(&call) {
            self.dialogs.remove(&(c.call_id, c.local_tag));
        }
    }

    fn contact_of(&self, call: CallKey) -> String {
        let tcp = self
            .calls
            .get(&call)
            .is_some_and(|c| c.transport != TransportId(0));
        contact_uri(self.cfg.address, tcp)
    }

    fn contact(&self, transport: Transport) -> String {
        contact_uri(self.cfg.address, transport == Transport::Tcp)
    }

    fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALPHABET[self.rng.below(ALPHABET.len() as u32) as usize] as char)
            .collect()
    }

    fn branch(&mut self) -> String {
        format!("{}{}", message::MAGIC_COOKIE, self.token(16))
    }
}

impl Call {
    fn invite_cseq(&self) -> u32 {
        self.invite
            .cseq_header()
            .and_then(|h| h.typed())
            .map(|h| h.seq)
            .unwrap_or(0)
    }
}

/// The `Session-Expires` value of our 2xx to a peer's INVITE: the peer
/// sent the request, so it is the UAC and we the UAS.
fn answered_session(t: &SessionTimer, min_se: u32) -> String {
    let refresher = if t.we_refresh { "uas" } else { "uac" };
    format!("{};refresher={refresher}", t.interval.max(min_se))
}

fn rearm(t: &mut SessionTimer, now: Instant) {
    let secs = if t.we_refresh {
        u64::from(t.interval / 2)
    } else {
        u64::from(t.interval) - u64::from((t.interval / 3).min(32))
    };
    t.due = now + Duration::from_secs(secs.max(1));
}

fn contact_uri(address: SocketAddr, tcp: bool) -> String {
    if tcp {
        format!("<sip:crossbar@{address};transport=tcp>")
    } else {
        format!("<sip:crossbar@{address}>")
    }
}

/// The CANCEL of an INVITE we sent (RFC 3261 9.1).
fn cancel_of(invite: &Request) -> Option<Request> {
    let mut headers = Headers::default();
    for h in invite.headers.iter() {
        match h {
            Header::Via(_) if !headers.iter().any(|h| matches!(h, Header::Via(_))) => {
                headers.push(h.clone());
            }
            Header::From(_) | Header::To(_) | Header::CallId(_) | Header::Route(_) => {
                headers.push(h.clone())
            }
            Header::MaxForwards(_) => headers.push(h.clone()),
            Header::CSeq(c) => {
                let seq = c.typed().ok()?.seq;
                headers.push(Header::CSeq(
                    rsip::typed::CSeq::from((seq, Method::Cancel)).into(),
                ));
            }
            _ => {}
        }
    }
    headers.push(Header::ContentLength(Default::default()));
    Some(Request {
        method: Method::Cancel,
        uri: invite.uri.clone(),
        version: invite.version.clone(),
        headers,
        body: Vec::new(),
    })
}

fn record_routes(headers: &Headers) -> Vec<rsip::UriWithParams> {
    headers
        .iter()
        .filter_map(|h| match h {
            Header::RecordRoute(rr) => rr.typed().ok(),
            _ => None,
        })
        .flat_map(|rr| rr.uris().to_vec())
        .collect()
}

fn copy_record_routes(from: &Headers, to: &mut Headers) {
    for h in from.iter() {
        if matches!(h, Header::RecordRoute(_)) {
            to.push(h.clone());
        }
    }
}

fn to_tag(request: &Request) -> Option<String> {
    tag_of(request.to_header().ok()?.tag())
}

fn from_tag(request: &Request) -> Option<String> {
    tag_of(request.from_header().ok()?.tag())
}

fn response_to_tag(response: &Response) -> Option<String> {
    tag_of(response.to_header().ok()?.tag())
}

/// A From/To header's tag, as text.
fn tag_of(tag: Result<Option<rsip::param::Tag>, rsip::Error>) -> Option<String> {
    tag.ok().flatten().map(|t| t.to_string())
}

/// A header's value by any of its names (case-insensitive; long and compact
/// forms), for headers `rsip` keeps untyped.
pub fn header(headers: &Headers, names: &[&str]) -> Option<String> {
    headers.iter().find_map(|h| {
        let text = h.to_string();
        let (name, value) = text.split_once(':')?;
        let name = name.trim();
        names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
            .then(|| value.trim().to_string())
    })
}

/// Replaces (or adds) a header by name.
fn set_header(headers: &mut Headers, name: &str, value: &str) {
    headers.retain(|h| {
        let text = h.to_string();
        !text
            .split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    });
    headers.push(Header::Other(name.to_string(), value.to_string()));
}

fn set_body(response: &mut Response, sdp: &str) {
    response
        .headers
        .retain(|h| !matches!(h, Header::ContentLength(_) | Header::ContentType(_)));
    response
        .headers
        .push(Header::ContentType("application/sdp".into()));
    response
        .headers
        .push(Header::ContentLength(sdp.len().to_string().into()));
    response.body = sdp.as_bytes().to_vec();
}

fn append_body(text: &mut String, sdp: Option<&str>) {
    match sdp {
        Some(sdp) => {
            text.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ));
        }
        None => text.push_str("Content-Length: 0\r\n\r\n"),
    }
}

fn body_text(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        None
    } else {
        std::str::from_utf8(body).ok().map(str::to_string)
    }
}

/// Text safe inside a quoted string or a header: no quotes, backslashes or
/// control characters.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .take(128)
        .collect()
}

/// A URI user part from caller-id text (unreserved characters only).
fn sanitize_user(user: &str) -> String {
    let user: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.!~*'()+".contains(*c))
        .take(64)
        .collect();
    if user.is_empty() {
        "crossbar".to_string()
    } else {
        user
    }
}

/// Whether a request line names a SIP version other than 2.0.
fn other_version(bytes: &[u8]) -> bool {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let version = line.trim_end().rsplit(' ').next().unwrap_or("");
    version.starts_with("SIP/") && version != "SIP/2.0"
}

/// Whether a request line names a method `rsip` does not know (such a
/// request is answered 501, not 400).
fn unknown_method(bytes: &[u8]) -> bool {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let mut parts = line.split_whitespace();
    let (Some(method), Some(_), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    version == "SIP/2.0"
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
        && method.parse::<rsip::Method>().is_err()
}

/// A response built from a request's raw text when `rsip` cannot parse it
/// (RFC 3261 8.2.6: Via, From, To, Call-ID and CSeq copied): `None` when it
/// is no request, an ACK, or lacks one of those headers.
fn raw_response(bytes: &[u8], code: u16, why: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let head = text.split("\r\n\r\n").next()?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?;
    let method = request_line.split(' ').next()?;
    let version = request_line.rsplit(' ').next()?;
    if !version.starts_with("SIP/") || method == "ACK" || method.is_empty() {
        return None;
    }
    let mut copied = Vec::new();
    let mut have = [false; 5];
    for line in lines {
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let slot = match name.as_str() {
            "via" | "v" => 0,
            "from" | "f" => 1,
            "to" | "t" => 2,
            "call-id" | "i" => 3,
            "cseq" => 4,
            _ => continue,
        };
        have[slot] = true;
        copied.push(line);
    }
    if have.contains(&false) {
        return None;
    }
    let reason = message::reason_phrase(code);
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in copied {
        out.push_str(line);
        out.push_str("\r\n");
    }
    if code == 501 {
        out.push_str(&format!("Allow: {ALLOW}\r\n"));
    }
    out.push_str(&format!(
        "Warning: 399 crossbar \"{}\"\r\nContent-Length: 0\r\n\r\n",
        clean(why)
    ));
    Some(out.into_bytes())
}

fn tx_counter(code: u16) -> &'static str {
    match code {
        100 => "tx_100",
        180 => "tx_180",
        183 => "tx_183",
        200..=299 => "tx_2xx",
        300..=399 => "tx_3xx",
        400 => "tx_400",
        401 | 402 => "tx_4xx_other",
        403 => "tx_403",
        404 => "tx_404",
        405 => "tx_405",
        413 => "tx_413",
        415 => "tx_415",
        420 => "tx_420",
        422 => "tx_422",
        480 => "tx_480",
        481 => "tx_481",
        487 => "tx_487",
        488 => "tx_488",
        491 => "tx_491",
        501 => "tx_501",
        503 => "tx_503",
        505 => "tx_505",
        406..=499 => "tx_4xx_other",
        500..=599 => "tx_5xx_other",
        _ => "tx_6xx",
    }
}

#[cfg(test)]
mod tests;
