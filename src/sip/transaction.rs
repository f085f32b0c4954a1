//! RFC 3261 §17 transactions on an unreliable transport (UDP), sans-IO.
//!
//! [`Transactions`] owns every client and server transaction of a node,
//! keyed by [`TxKey`], with the four state machines of §17: INVITE client
//! (timers A, B, D), non-INVITE client (E, F, K), INVITE server (G, H, I, and
//! RFC 6026's L) and non-INVITE server (J). The caller hands it received
//! messages, the transaction user's (TU's) requests and responses, and
//! timeouts, each with the time (`handle(now, input)`); it drains datagrams to
//! send with [`Transactions::poll_transmit`], what the TU must learn with
//! [`Transactions::poll_event`], and the next instant it must be woken at
//! with [`Transactions::poll_timeout`]. It reads no clock and owns no socket:
//! [`TransportId`] and `SocketAddr` are opaque to it.
//!
//! Invariants:
//!
//! - **Timers run on the caller's time** with T1 = 500 ms, T2 = 4 s,
//!   T4 = 5 s. Retransmission timers are re-armed from their scheduled
//!   instant, not from when they were serviced, so a late wake-up does not
//!   stretch the schedule.
//! - **A 2xx to an INVITE is the TU's to retransmit** (§13.3.1.4, §17.2.1):
//!   the INVITE server transaction sends the first 2xx and then, as RFC 6026
//!   amends §17.2.1, waits in `Accepted` for 64·T1 absorbing retransmitted
//!   INVITEs and passing further 2xx from the TU through; [`Retransmit2xx`]
//!   is the TU's retransmission schedule. Because the transaction is still
//!   there, a CANCEL racing the 200 finds it and is answered 200 without a
//!   487 (§9.2; [`Transactions::answer_cancel`]).
//! - **Every transaction ends with [`Event::Terminated`]**, after an
//!   [`Event::Timeout`] when timer B, F or H fired; none outlives it.
//! - **The table is bounded** ([`Transactions::new`]'s `max`): a new request
//!   beyond it is answered 503 statelessly, a new TU request is refused.
//! - **Responses go back where the request came from** (the source address
//!   and transport it was received on, RFC 3581 symmetric response), which
//!   is what peers behind NAT need.
//! - **Nothing from the network panics**: unmatched responses go to the TU
//!   as [`Event::StrayResponse`], an ACK matching no transaction (the ACK of
//!   a 2xx) goes to the TU as a request without a key.

use super::message::{
    ack_for, cancel_target, client_key_of_request, client_key_of_response, response_to, server_key,
    status, MessageError, Role, TxKey,
};
use rsip::{Method, Request, Response, SipMessage};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// RTT estimate: the first retransmission interval.
pub const T1: Duration = Duration::from_millis(500);
/// The longest retransmission interval of non-INVITE requests and of
/// INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// How long a message may stay in the network.
pub const T4: Duration = Duration::from_secs(5);
/// 64·T1: timers B, F, H, J, L and the TU's 2xx give-up.
pub const T1_X64: Duration = Duration::from_secs(32);
/// Timer D on UDP (at least 32 s).
pub const TIMER_D: Duration = Duration::from_secs(32);

/// Which socket a message came in on or goes out of; chosen by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportId(pub u32);

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub transport: TransportId,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// What the table is told.
#[derive(Debug, Clone)]
pub enum Input {
    /// A parsed message ([`super::message::parse`]) received from `from`.
    Received {
        transport: TransportId,
        from: SocketAddr,
        message: SipMessage,
    },
    /// The TU sends a request: a client transaction is created (an ACK is
    /// sent once without one, §17.1.1.3).
    SendRequest {
        transport: TransportId,
        to: SocketAddr,
        request: Request,
    },
    /// The TU answers the request of server transaction `key`.
    SendResponse { key: TxKey, response: Response },
    /// The time given by [`Transactions::poll_timeout`] has come.
    Timeout,
}

/// What the TU learns.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new request. `key` is its server transaction; `None` for an ACK
    /// that matches none (the ACK of a 2xx, for the dialog).
    Request {
        key: Option<TxKey>,
        transport: TransportId,
        from: SocketAddr,
        request: Request,
    },
    /// A response for client transaction `key`.
    Response { key: TxKey, response: Response },
    /// A response that matches no transaction (a retransmitted 2xx after
    /// its INVITE transaction ended, or a stranger's).
    StrayResponse {
        transport: TransportId,
        from: SocketAddr,
        response: Response,
    },
    /// Timer B, F or H fired: the request got no final response, or the
    /// non-2xx final response no ACK.
    Timeout { key: TxKey },
    /// The transaction is gone.
    Terminated { key: TxKey },
}

/// Why the table refused an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxError {
    /// The message has no usable transaction key.
    Message(MessageError),
    /// A TU request would exceed the table's bound.
    TableFull,
    /// A TU request's branch is already in use.
    Duplicate(TxKey),
    /// No server transaction has that key.
    Unknown(TxKey),
    /// The transaction cannot send that now.
    NotAllowed(&'static str),
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Message(e) => write!(f, "{e}"),
            Self::TableFull => write!(f, "transaction table full"),
            Self::Duplicate(k) => write!(f, "transaction {k} exists"),
            Self::Unknown(k) => write!(f, "no transaction {k}"),
            Self::NotAllowed(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for TxError {}

impl From<MessageError> for TxError {
    fn from(e: MessageError) -> Self {
        Self::Message(e)
    }
}

/// The four state machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InviteClient,
    NonInviteClient,
    InviteServer,
    NonInviteServer,
}

/// A transaction's state (RFC 3261 figures 5–8, plus RFC 6026's Accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
}

/// What [`Transactions::answer_cancel`] did (RFC 3261 9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The INVITE had no final response: 200 to the CANCEL, 487 to the
    /// INVITE. The TU must drop the call.
    Cancelled,
    /// The INVITE already had its final response (the CANCEL lost the race
    /// to a 200, or came after a failure): 200 to the CANCEL, nothing else.
    TooLate,
    /// No INVITE transaction matches: 481 to the CANCEL.
    NoTransaction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    B,
    D,
    F,
    H,
    I,
    J,
    K,
    L,
}

impl Timer {
    fn is_timeout(self) -> bool {
        matches!(self, Timer::B | Timer::F | Timer::H)
    }
}

#[derive(Debug)]
struct Transaction {
    kind: Kind,
    state: State,
    transport: TransportId,
    peer: SocketAddr,
    request: Request,
    /// Client: the request's bytes. Server: the last response's bytes.
    resend: Vec<u8>,
    /// INVITE client in Completed: the ACK to repeat.
    ack: Option<Vec<u8>>,
    /// Timer A, E or G: when it fires and its current interval.
    retransmit: Option<(Instant, Duration)>,
    deadline: Option<(Instant, Timer)>,
}

impl Transaction {
    fn next_wake(&self) -> Option<Instant> {
        let a = self.retransmit.map(|(t, _)| t);
        let b = self.deadline.map(|(t, _)| t);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The transaction table. See the module documentation.
#[derive(Debug)]
pub struct Transactions {
    txs: HashMap<TxKey, Transaction>,
    max: usize,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Transactions {
    /// A table holding at most `max` transactions.
    pub fn new(max: usize) -> Self {
        Self {
            txs: HashMap::new(),
            max,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// How many transactions are live.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The state of transaction `key`, if it is live.
    pub fn state(&self, key: &TxKey) -> Option<State> {
        self.txs.get(key).map(|t| t.state)
    }

    /// The kind of transaction `key`, if it is live.
    pub fn kind(&self, key: &TxKey) -> Option<Kind> {
        self.txs.get(key).map(|t| t.kind)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Input::Timeout`] is next due (a scan of the table, which is
    /// bounded).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.txs.values().filter_map(Transaction::next_wake).min()
    }

    /// Feeds one input at time `now`.
    pub fn handle(&mut self, now: Instant, input: Input) -> Result<(), TxError> {
        match input {
            Input::Received {
                transport,
                from,
                message: SipMessage::Request(request),
            } => self.on_request(now, transport, from, request),
            Input::Received {
                transport,
                from,
                message: SipMessage::Response(response),
            } => self.on_response(now, transport, from, response),
            Input::SendRequest {
                transport,
                to,
                request,
            } => self.send_request(now, transport, to, request),
            Input::SendResponse { key, response } => self.send_response(now, &key, response),
            Input::Timeout => {
                self.on_timeout(now);
                Ok(())
            }
        }
    }

    /// Answers the CANCEL of server transaction `cancel_key` as RFC 3261 9.2
    /// says: 481 when no INVITE transaction matches; otherwise 200, and a
    /// 487 (To tag `to_tag`) to the INVITE if it had no final response yet.
    pub fn answer_cancel(
        &mut self,
        now: Instant,
        cancel_key: &TxKey,
        to_tag: &str,
    ) -> Result<CancelOutcome, TxError> {
        let cancel = match self.txs.get(cancel_key) {
            Some(t) if t.kind == Kind::NonInviteServer && t.request.method == Method::Cancel => {
                t.request.clone()
            }
            _ => return Err(TxError::Unknown(cancel_key.clone())),
        };
        let target = cancel_target(&cancel)?.ok_or(TxError::NotAllowed("not a CANCEL"))?;
        let invite = self
            .txs
            .get(&target)
            .filter(|t| t.kind == Kind::InviteServer)
            .map(|t| (t.state, t.request.clone()));
        let outcome = match invite {
            None => CancelOutcome::NoTransaction,
            Some((State::Proceeding, _)) => CancelOutcome::Cancelled,
            Some(_) => CancelOutcome::TooLate,
        };
        let code = match outcome {
            CancelOutcome::NoTransaction => 481,
            _ => 200,
        };
        self.send_response(now, cancel_key, response_to(&cancel, code, Some(to_tag)))?;
        if let (CancelOutcome::Cancelled, Some((_, invite))) = (outcome, invite) {
            self.send_response(now, &target, response_to(&invite, 487, Some(to_tag)))?;
        }
        Ok(outcome)
    }

    fn emit(&mut self, transport: TransportId, to: SocketAddr, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit {
            transport,
            to,
            bytes,
        });
    }

    fn resend(&mut self, key: &TxKey) {
        if let Some(t) = self.txs.get(key) {
            let (transport, to, bytes) = (t.transport, t.peer, t.resend.clone());
            self.emit(transport, to, bytes);
        }
    }

    fn terminate(&mut self, key: &TxKey) {
        if self.txs.remove(key).is_some() {
            self.events
                .push_back(Event::Terminated { key: key.clone() });
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        transport: TransportId,
        from: SocketAddr,
        request: Request,
    ) -> Result<(), TxError> {
        let key = server_key(&request)?;
        let is_ack = request.method == Method::Ack;
        let Some(tx) = self.txs.get_mut(&key) else {
            if is_ack {
                // The ACK of a 2xx: a transaction of its own that the
                // dialog, not this layer, handles (§17.1.1.3).
                self.events.push_back(Event::Request {
                    key: None,
                    transport,
                    from,
                    request,
                });
                return Ok(());
            }
            return self.new_server(key, transport, from, request);
        };
        match (tx.kind, tx.state, is_ack) {
            (Kind::InviteServer, State::Completed, true) => {
                tx.state = State::Confirmed;
                tx.retransmit = None;
                tx.deadline = Some((now + T4, Timer::I));
            }
            // Confirmed: a repeated ACK is absorbed.
            (Kind::InviteServer, State::Confirmed, true) => {}
            // Proceeding or Accepted: not the ACK of a non-2xx; the dialog's.
            (Kind::InviteServer, _, true) => {
                self.events.push_back(Event::Request {
                    key: None,
                    transport,
                    from,
                    request,
                });
            }
            (Kind::InviteServer, State::Proceeding | State::Completed, false)
            | (Kind::NonInviteServer, State::Proceeding | State::Completed, false) => {
                self.resend(&key);
            }
            // Trying (no response yet), Confirmed, Accepted: absorbed.
            _ => {}
        }
        Ok(())
    }

    fn new_server(
        &mut self,
        key: TxKey,
        transport: TransportId,
        from: SocketAddr,
        request: Request,
    ) -> Result<(), TxError> {
        if self.txs.len() >= self.max {
            let busy = SipMessage::Response(response_to(&request, 503, None));
            self.emit(transport, from, super::message::to_bytes(&busy));
            return Ok(());
        }
        let invite = request.method == Method::Invite;
        let mut tx = Transaction {
            kind: if invite {
                Kind::InviteServer
            } else {
                Kind::NonInviteServer
            },
            state: if invite {
                State::Proceeding
            } else {
                State::Trying
            },
            transport,
            peer: from,
            request: request.clone(),
            resend: Vec::new(),
            ack: None,
            retransmit: None,
            deadline: None,
        };
        if invite {
            // §17.2.1: a 100 Trying at once, so the client stops timer A.
            let trying = SipMessage::Response(response_to(&request, 100, None));
            tx.resend = super::message::to_bytes(&trying);
            self.emit(transport, from, tx.resend.clone());
        }
        self.txs.insert(key.clone(), tx);
        self.events.push_back(Event::Request {
            key: Some(key),
            transport,
            from,
            request,
        });
        Ok(())
    }

    fn on_response(
        &mut self,
        now: Instant,
        transport: TransportId,
        from: SocketAddr,
        response: Response,
    ) -> Result<(), TxError> {
        let key = client_key_of_response(&response)?;
        let code = status(&response);
        let Some(tx) = self.txs.get_mut(&key) else {
            self.events.push_back(Event::StrayResponse {
                transport,
                from,
                response,
            });
            return Ok(());
        };
        match (tx.kind, tx.state) {
            (Kind::InviteClient, State::Calling | State::Proceeding) => {
                if code < 200 {
                    tx.state = State::Proceeding;
                    tx.retransmit = None;
                    tx.deadline = None;
                } else if code < 300 {
                    self.events.push_back(Event::Response {
                        key: key.clone(),
                        response,
                    });
                    self.terminate(&key);
                    return Ok(());
                } else {
                    let ack = SipMessage::Request(ack_for(&tx.request, &response));
                    let bytes = super::message::to_bytes(&ack);
                    tx.state = State::Completed;
                    tx.retransmit = None;
                    tx.deadline = Some((now + TIMER_D, Timer::D));
                    tx.ack = Some(bytes.clone());
                    let (t, to) = (tx.transport, tx.peer);
                    self.emit(t, to, bytes);
                }
                self.events.push_back(Event::Response { key, response });
            }
            (Kind::InviteClient, State::Completed) => {
                if code >= 300 {
                    // A retransmitted final response: ACK it again.
                    if let Some(ack) = tx.ack.clone() {
                        let (t, to) = (tx.transport, tx.peer);
                        self.emit(t, to, ack);
                    }
                } else {
                    self.events.push_back(Event::StrayResponse {
                        transport,
                        from,
                        response,
                    });
                }
            }
            (Kind::NonInviteClient, State::Trying | State::Proceeding) => {
                if code < 200 {
                    tx.state = State::Proceeding;
                } else {
                    tx.state = State::Completed;
                    tx.retransmit = None;
                    tx.deadline = Some((now + T4, Timer::K));
                }
                self.events.push_back(Event::Response { key, response });
            }
            // Completed non-INVITE client: retransmissions absorbed.
            _ => {}
        }
        Ok(())
    }

    fn send_request(
        &mut self,
        now: Instant,
        transport: TransportId,
        to: SocketAddr,
        request: Request,
    ) -> Result<(), TxError> {
        let bytes = super::message::to_bytes(&SipMessage::Request(request.clone()));
        if request.method == Method::Ack {
            self.emit(transport, to, bytes);
            return Ok(());
        }
        let key = client_key_of_request(&request)?;
        if self.txs.contains_key(&key) {
            return Err(TxError::Duplicate(key));
        }
        if self.txs.len() >= self.max {
            return Err(TxError::TableFull);
        }
        let invite = request.method == Method::Invite;
        let tx = Transaction {
            kind: if invite {
                Kind::InviteClient
            } else {
                Kind::NonInviteClient
            },
            state: if invite {
                State::Calling
            } else {
                State::Trying
            },
            transport,
            peer: to,
            request,
            resend: bytes.clone(),
            ack: None,
            retransmit: Some((now + T1, T1)),
            deadline: Some((now + T1_X64, if invite { Timer::B } else { Timer::F })),
        };
        debug_assert_eq!(key.role, Role::Client);
        self.txs.insert(key, tx);
        self.emit(transport, to, bytes);
        Ok(())
    }

    fn send_response(
        &mut self,
        now: Instant,
        key: &TxKey,
        response: Response,
    ) -> Result<(), TxError> {
        let tx = self
            .txs
            .get_mut(key)
            .ok_or_else(|| TxError::Unknown(key.clone()))?;
        let code = status(&response);
        let bytes = super::message::to_bytes(&SipMessage::Response(response));
        match (tx.kind, tx.state) {
            (Kind::InviteServer, State::Proceeding) => {
                if (200..300).contains(&code) {
                    tx.state = State::Accepted;
                    tx.deadline = Some((now + T1_X64, Timer::L));
                } else if code >= 300 {
                    tx.state = State::Completed;
                    tx.retransmit = Some((now + T1, T1));
                    tx.deadline = Some((now + T1_X64, Timer::H));
                }
            }
            (Kind::InviteServer, State::Accepted) if (200..300).contains(&code) => {}
            (Kind::NonInviteServer, State::Trying | State::Proceeding) => {
                if code < 200 {
                    tx.state = State::Proceeding;
                } else {
                    tx.state = State::Completed;
                    tx.deadline = Some((now + T1_X64, Timer::J));
                }
            }
            (Kind::InviteClient | Kind::NonInviteClient, _) => {
                return Err(TxError::NotAllowed(
                    "a client transaction sends no response",
                ))
            }
            _ => return Err(TxError::NotAllowed("the final response was already sent")),
        }
        tx.resend = bytes.clone();
        let (t, to) = (tx.transport, tx.peer);
        self.emit(t, to, bytes);
        Ok(())
    }

    fn on_timeout(&mut self, now: Instant) {
        let due: Vec<TxKey> = self
            .txs
            .iter()
            .filter(|(_, t)| t.next_wake().is_some_and(|w| w <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            // Deadlines first: a transaction whose B and A are both due is
            // over, not retransmitted.
            let deadline = self.txs.get(&key).and_then(|t| t.deadline);
            if let Some((at, timer)) = deadline {
                if at <= now {
                    if timer.is_timeout() {
                        self.events.push_back(Event::Timeout { key: key.clone() });
                    }
                    self.terminate(&key);
                    continue;
                }
            }
            while let Some(tx) = self.txs.get_mut(&key) {
                let Some((at, interval)) = tx.retransmit.filter(|&(at, _)| at <= now) else {
                    break;
                };
                let next = match (tx.kind, tx.state) {
                    (Kind::InviteClient, _) => interval * 2,
                    (Kind::NonInviteClient, State::Proceeding) => T2,
                    _ => (interval * 2).min(T2),
                };
                tx.retransmit = Some((at + next, next));
                self.resend(&key);
            }
        }
    }
}

/// The TU's retransmission of a 2xx to an INVITE (RFC 3261 13.3.1.4): sent
/// at once, again after T1, doubling up to T2, until the ACK arrives or
/// 64·T1 has passed without one (then the TU should end the call with a
/// BYE).
#[derive(Debug)]
pub struct Retransmit2xx {
    transmit: Transmit,
    queued: bool,
    next: Instant,
    interval: Duration,
    give_up: Instant,
    state: TwoXxState,
}

/// Where a [`Retransmit2xx`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoXxState {
    /// Still retransmitting.
    Sending,
    /// The ACK arrived.
    Acked,
    /// 64·T1 passed without an ACK.
    NoAck,
}

impl Retransmit2xx {
    /// Starts at `now` with the 2xx `transmit`, queued for sending.
    pub fn new(now: Instant, transmit: Transmit) -> Self {
        Self {
            transmit,
            queued: true,
            next: now + T1,
            interval: T1,
            give_up: now + T1_X64,
            state: TwoXxState::Sending,
        }
    }

    /// The ACK for this 2xx arrived.
    pub fn handle_ack(&mut self) {
        if self.state == TwoXxState::Sending {
            self.state = TwoXxState::Acked;
            self.queued = false;
        }
    }

    /// The time given by [`Retransmit2xx::poll_timeout`] has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state != TwoXxState::Sending {
            return;
        }
        if now >= self.give_up {
            self.state = TwoXxState::NoAck;
            self.queued = false;
            return;
        }
        while self.next <= now {
            self.queued = true;
            self.interval = (self.interval * 2).min(T2);
            self.next += self.interval;
        }
    }

    /// The 2xx to send, if one is due.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if std::mem::take(&mut self.queued) {
            Some(self.transmit.clone())
        } else {
            None
        }
    }

    /// When to call [`Retransmit2xx::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state == TwoXxState::Sending).then(|| self.next.min(self.give_up))
    }

    /// Where it stands.
    pub fn state(&self) -> TwoXxState {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::tests::request;
    use crate::sip::message::{parse, to_bytes};

    const UDP: TransportId = TransportId(7);

    fn peer() -> SocketAddr {
        "10.0.0.1:5060".parse().unwrap()
    }

    fn received(message: impl Into<SipMessage>) -> Input {
        // Through the wire format, as the host will do it.
        let bytes = to_bytes(&message.into());
        Input::Received {
            transport: UDP,
            from: peer(),
            message: parse(&bytes).unwrap(),
        }
    }

    fn transmits(t: &mut Transactions) -> Vec<SipMessage> {
        std::iter::from_fn(|| t.poll_transmit())
            .map(|x| {
                assert_eq!((x.transport, x.to), (UDP, peer()));
                parse(&x.bytes).unwrap()
            })
            .collect()
    }

    fn events(t: &mut Transactions) -> Vec<Event> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    fn code(m: &SipMessage) -> u16 {
        match m {
            SipMessage::Response(r) => status(r),
            SipMessage::Request(r) => panic!("a request: {}", r.method),
        }
    }

    /// Runs the table's timers until `end`, recording the offset from
    /// `base` of every transmission.
    fn run_until(t: &mut Transactions, base: Instant, end: Instant) -> Vec<(Duration, SipMessage)> {
        let mut sent = Vec::new();
        while let Some(at) = t.poll_timeout().filter(|&at| at <= end) {
            t.handle(at, Input::Timeout).unwrap();
            for m in transmits(t) {
                sent.push((at - base, m));
            }
        }
        sent
    }

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    /// The server side of an INVITE: the new transaction sends 100 Trying
    /// and gives the TU the request.
    fn invite_arrives(t: &mut Transactions, now: Instant, branch: &str) -> (TxKey, Request) {
        let invite = request("INVITE", branch);
        t.handle(now, received(invite.clone())).unwrap();
        let sent = transmits(t);
        assert_eq!(sent.iter().map(code).collect::<Vec<_>>(), [100]);
        let ev = events(t);
        let [Event::Request {
            key: Some(key),
            request: got,
            ..
        }] = &ev[..]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(got.method, Method::Invite);
        assert_eq!(t.state(key), Some(State::Proceeding));
        (key.clone(), invite)
    }

    #[test]
    fn invite_client_retransmits_on_timer_a_and_gives_up_at_b() {
        let base = Instant::now();
        let mut t = Transactions::new(16);
        let invite = request("INVITE", "z9hG4bKc1");
        t.handle(
            base,
            Input::SendRequest {
                transport: UDP,
                to: peer(),
                request: invite.clone(),
            },
        )
        .unwrap();
        assert_eq!(transmits(&mut t).len(), 1);
        let key = client_key_of_request(&invite).unwrap();
        assert_eq!(t.state(&key), Some(State::Calling));
        let sent = run_until(&mut t, base, base + Duration::from_secs(40));
        // A doubles without a cap: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; B at 32 s.
        let times: Vec<_> = sent.iter().map(|(d, _)| *d).collect();
        assert_eq!(times, ms(&[500, 1500, 3500, 7500, 15500, 31500]));
        assert!(sent
            .iter()
            .all(|(_, m)| matches!(m, SipMessage::Request(r) if r.method == Method::Invite)));
        let ev = events(&mut t);
        assert!(
            matches!(&ev[..], [Event::Timeout { key: a }, Event::Terminated { key: b }] if *a == key && *b == key),
            "{ev:?}"
        );
        assert!(t.is_empty());
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn invite_client_stops_a_on_1xx_and_acks_a_failure_until_d() {
        let base = Instant::now();
        let mut t = Transactions::new(16);
        let invite = request("INVITE", "z9hG4bKc2");
        t.handle(
            base,
            Input::SendRequest {
                transport: UDP,
                to: peer(),
                request: invite.clone(),
            },
        )
        .unwrap();
        transmits(&mut t);
        let key = client_key_of_request(&invite).unwrap();
        let at = base + Duration::from_millis(200);
        t.handle(at, received(response_to(&invite, 180, Some("b"))))
            .unwrap();
        assert_eq!(t.state(&key), Some(State::Proceeding));
        assert!(
            matches!(&events(&mut t)[..], [Event::Response { response, .. }] if status(response) == 180)
        );
        // No timer in Proceeding: no retransmission, no timeout.
        assert_eq!(t.poll_timeout(), None);
        let at = base + Duration::from_secs(60);
        let busy = response_to(&invite, 486, Some("b"));
        t.handle(at, received(busy.clone())).unwrap();
        let sent = transmits(&mut t);
        assert!(matches!(&sent[..], [SipMessage::Request(ack)] if ack.method == Method::Ack));
        assert!(
            matches!(&events(&mut t)[..], [Event::Response { response, .. }] if status(response) == 486)
        );
        // The 486 again: ACKed again, not shown to the TU.
        t.handle(at + Duration::from_secs(1), received(busy))
            .unwrap();
        assert!(
            matches!(&transmits(&mut t)[..], [SipMessage::Request(ack)] if ack.method == Method::Ack)
        );
        assert!(events(&mut t).is_empty());
        assert_eq!(t.poll_timeout(), Some(at + TIMER_D));
        run_until(&mut t, base, at + TIMER_D);
        assert!(matches!(&events(&mut t)[..], [Event::Terminated { .. }]));
    }

    #[test]
    fn invite_client_ends_on_2xx_and_later_2xx_are_stray() {
        let base = Instant::now();
        let mut t = Transactions::new(16);
        let invite = request("INVITE", "z9hG4bKc3");
        t.handle(
            base,
            Input::SendRequest {
                transport: UDP,
                to: peer(),
                request: invite.clone(),
            },
        )
        .unwrap();
        transmits(&mut t);
        let ok = response_to(&invite, 200, Some("b"));
        t.handle(base + T1, received(ok.clone())).unwrap();
        let ev = events(&mut t);
        assert!(
            matches!(&ev[..], [Event::Response { response, .. }, Event::Terminated { .. }] if status(response) == 200),
            "{ev:?}"
        );
        assert!(transmits(&mut t).is_empty(), "the ACK of a 2xx is the TU's");
        t.handle(base + T1 * 2, received(ok)).unwrap();
        assert!(
            matches!(&events(&mut t)[..], [Event::StrayResponse { response, .. }] if status(response) == 200)
        );
        // The TU's ACK goes out once, with no transaction.
        let ack = Request {
            method: Method::Ack,
            ..request("ACK", "z9hG4bKc3ack")
        };
        t.handle(
            base + T1 * 2,
            Input::SendRequest {
                transport: UDP,
                to: peer(),
                request: ack,
            },
        )
        .unwrap();
        assert_eq!(transmits(&mut t).len(), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn non_invite_client_e_doubles_to_t2_and_f_times_out() {
        let base = Instant::now();
        let mut t = Transactions::new(16);
        let options = request("OPTIONS", "z9hG4bKn1");
        t.handle(
            base,
            Input::SendRequest {
                transport: UDP,
                to: peer(),
                request: options.clone(),
            },
        )
        .unwrap();
        assert_eq!(transmits(&mut t).len(), 1);
        let sent = run_until(&mut t, base, base + Duration::from_secs(40));
        let times: Vec<_> = sent.iter().map(|(d, _)| *d).collect();
        // E: 0.5, 1.5, 3.5, 7.5, then every T2 = 4 s until F at 32 s.
        assert_eq!(
            times,
            ms(&[500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500])
        );
        let key = client_key_of_request(&options).unwrap();
        assert!(
            matches!(&events(&mut t)[..], [Event::Timeout { key: a }, Event::Terminated { .. }] if *a == key)
        );
    }

    #[test]
    fn non_invite_client_after_1xx_retransmits_every_t2_and_ends_k_after_final() {
        let base = Instant::now();
        let mut t = Transactions::new(16);
        let bye = request("BYE", "z9hG4bKn2");
        t.handle(
            base,
            Input::SendRequest {
                transport: UDP,
                to: peer(),
                request: bye.clone(),
            },
        )
        .unwrap();
        transmits(&mut t);
        t.handle(
            base + Duration::from_millis(100),
            received(response_to(&bye, 100, None)),
        )
        .unwrap();
        let sent = run_until(&mut t, base, base + Duration::from_millis(8600));
        let times: Vec<_> = sent.iter().map(|(d, _)| *d).collect();
        // E fires at 0.5 s (armed at T1) and then every T2 in Proceeding.
        assert_eq!(times, ms(&[500, 4500, 8500]));
        let at = base + Duration::from_secs(9);
        t.handle(at, received(response_to(&bye, 200, None)))
            .unwrap();
        let ev = events(&mut t);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert!(matches!(&ev[1], Event::Response { response, .. } if status(response) == 200));
        // A retransmitted 200 is absorbed; K = T4 later the transaction ends.
        t.handle(at, received(response_to(&bye, 200, None)))
            .unwrap();
        assert!(events(&mut t).is_empty());
        assert_eq!(t.poll_timeout(), Some(at + T4));
        assert!(run_until(&mut t, base, at + T4).is_empty());
        assert!(matches!(&events(&mut t)[..], [Event::Terminated { .. }]));
    }

    #[test]
    fn a_retransmitted_request_is_absorbed_and_the_last_response_resent() {
        let base = Instant::now();
        let mut t = Transactions::new(16);
        let (key, invite) = invite_arrives(&mut t, base, "z9hG4bKs1");
        // Before the TU answers: the 100 again, no second request to the TU.
        t.handle(base + T1, received(invite.clone())).unwrap();
        assert_eq!(
            transmits(&mut t).iter().map(code).collect::<Vec<_>>(),
            [100]
        );
        assert!(events(&mut t).is_empty());
        t.handle(
            base + T1,
            Input::SendResponse {
                key: key.clone(),
                response: response_to(&invite, 180, Some("b")),
            },
        )
        .unwrap();
        assert_eq!(
            transmits(&mut t).iter().map(code).collect::<Vec<_>>(),
            [180]
        );
        t.handle(base + T1 * 3, received(invite.clone())).unwrap();
        assert_eq!(
            transmits(&mut t).iter().map(code).collect::<Vec<_>>(),
            [180]
        );
        assert!(events(&mut t).is_empty());

        // Non-INVITE: nothing to resend while Trying; the final once sent.
        let options = request("OPTIONS", "z9hG4bKs2");
        t.handle(base, received(options.clone())).unwrap();
        let ev = events(&mut t);
        let [Event::Request {
            key: Some(okey), ..
        }] = &ev[..]
        else {
            panic!("{ev:?}")
        };
        assert!(transmits(&mut t).is_empty());
        t.handle(base + T1, received(options.clone())).unwrap();
        assert!(transmits(&mut t).is_empty() && events(&mut t).is_empty());
        t.handle(
            base + T1,
            Input::SendResponse {
                key: okey.clone(),
                response: response_to(&options, 200, Some("o")),
            },
        )
        .unwrap();
        assert_eq!(
            transmits(&mut t).iter().map(code).collect::<Vec<_>>(),
            [200]
        );
        t.handle(base + T1 * 2, received(options.clone())).unwrap();
        assert_eq!(
            transmits(&mut t).iter().map(code).collect::<Vec<_>>(),
            [200]
        );
        assert!(events(&mut t).is_empty());
        // A second final response is refused; J = 64·T1 ends it.
        let again = t.handle(
            base + T1 * 2,
            Input::SendResponse {
                key: okey.clone(),
                response: response_to(&options, 500, None),
            },
        );
        assert!(matches!(again, Err(TxError::NotAllowed(_))));
        run_until(&mut t, base, base + T1 + T1_X64);
        assert_eq!(t.state(okey), None);
        assert_eq!(
            t.state(&key),
            Some(State::Proceeding),
            "the INVITE has no timer in Proceeding"
        );
    }

    #[test]
    fn a_lost_ack_ends_the_call_after_timer_h() {
        let base = Instant::now();
        let mut t = Transactions::new(16);
        let (key, invite) = invite_arrives(&mut t, base, "z9hG4bKh1");
        t.handle(
            base,
            Input::SendResponse {
                key: key.clone(),
                response: response_to(&invite, 486, Some("b")),
            },
        )
        .unwrap();
        assert_eq!(
            transmits(&mut t).iter().map(code).collect::<Vec<_>>(),
            [486]
        );
        assert_eq!(t.state(&key), Some(State::Completed));
        // No ACK ever comes: G doubles to T2 and H ends it at 64·T1.
        let sent = run_until(&mut t, base, base + Duration::from_secs(60));
        let times: Vec<_> = sent.iter().map(|(d, _)| *d).collect();
        assert_eq!(
            times,
            ms(&[500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500])
        );
        assert!(sent.iter().all(|(_, m)| code(m) == 486));
        let ev = events(&mut t);
        assert!(
            matches!(&ev[..], [Event::Timeout { key: a }, Event::Terminated { key: b }] if *a == key && *b == key),
            "{ev:?}"
        );
    }

    #[test]
    fn the_ack_of_a_failure_is_absorbed_and_timer_i_ends_the_transaction() {
        let base = Instant::now();
        let mut t = Transactions::new(16);
        let (key, invite) = invite_arrives(&mut t, base, "z9hG4bKi1");
        let busy = response_to(&invite, 486, Some("b"));
        t.handle(
            base,
            Input::SendResponse {
                key: key.clone(),
                response: busy.clone(),
            },
        )
        .unwrap();
        transmits(&mut t);
        // The first 486 is lost; G resends it at T1; then the ACK arrives.
        run_until(&mut t, base, base + T1);
        let at = base + Duration::from_millis(700);
        let ack = ack_for(&invite, &busy);
        t.handle(at, received(ack.clone())).unwrap();
        assert_eq!(t.state(&key), Some(State::Confirmed));
        t.handle(at, received(ack)).unwrap();
        assert!(
            events(&mut t).is_empty(),
            "the ACK stays in the transaction"
        );
        assert_eq!(t.poll_timeout(), Some(at + T4));
        assert!(
            run_until(&mut t, base, at + T4).is_empty(),
            "no retransmission once ACKed"
        );
        assert!(matches!(&events(&mut t)[..], [Event::Terminated { key: k }] if *k == key));
    }

    #[test]
    fn a_lost_200_is_retransmitted_by_the_tu_until_the_ack() {
        let base = Instant::now();
        let mut t = Transactions::new(16);
        let (key, invite) = invite_arrives(&mut t, base, "z9hG4bKok");
        let ok = response_to(&invite, 200, Some("b"));
        t.handle(
            base,
            Input::SendResponse {
                key: key.clone(),
                response: ok.clone(),
            },
        )
        .unwrap();
        let first = t.poll_transmit().unwrap();
        assert_eq!(code(&parse(&first.bytes).unwrap()), 200);
        assert_eq!(t.state(&key), Some(State::Accepted));
        // The TU owns the 2xx's retransmission; the first copy is lost.
        let mut tu = Retransmit2xx::new(base, first.clone());
        assert_eq!(tu.poll_transmit(), Some(first.clone()));
        assert_eq!(tu.poll_transmit(), None);
        assert_eq!(tu.poll_timeout(), Some(base + T1));
        tu.handle_timeout(base + T1);
        let again = tu.poll_transmit().expect("the 200 is retransmitted at T1");
        // The transaction in Accepted lets the TU's 2xx through.
        t.handle(
            base + T1,
            Input::SendResponse {
                key: key.clone(),
                response: ok.clone(),
            },
        )
        .unwrap();
        assert_eq!(t.poll_transmit().map(|x| x.bytes), Some(again.bytes));
        // A retransmitted INVITE meanwhile is absorbed, not a new call.
        t.handle(base + T1, received(invite.clone())).unwrap();
        assert!(t.poll_transmit().is_none() && events(&mut t).is_empty());
        // The ACK (its own branch) reaches the TU, which stops.
        let ack = Request {
            method: Method::Ack,
            ..request("ACK", "z9hG4bKokack")
        };
        t.handle(base + T1 * 2, received(ack)).unwrap();
        assert!(
            matches!(&events(&mut t)[..], [Event::Request { key: None, request, .. }] if request.method == Method::Ack)
        );
        tu.handle_ack();
        assert_eq!(tu.state(), TwoXxState::Acked);
        assert_eq!(tu.poll_timeout(), None);
        assert_eq!(tu.poll_transmit(), None);
        // Timer L ends the INVITE transaction.
        run_until(&mut t, base, base + T1_X64);
        assert!(matches!(&events(&mut t)[..], [Event::Terminated { key: k }] if *k == key));
    }

    #[test]
    fn a_200_never_acked_is_retransmitted_t1_doubling_to_t2_then_given_up() {
        let base = Instant::now();
        let tx = Transmit {
            transport: UDP,
            to: peer(),
            bytes: b"200".to_vec(),
        };
        let mut tu = Retransmit2xx::new(base, tx);
        let mut times = Vec::new();
        tu.poll_transmit();
        while let Some(at) = tu.poll_timeout() {
            tu.handle_timeout(at);
            if tu.poll_transmit().is_some() {
                times.push(at - base);
            }
        }
        assert_eq!(
            times,
            ms(&[500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500])
        );
        assert_eq!(tu.state(), TwoXxState::NoAck);
    }

    #[test]
    fn a_cancel_after_the_200_gets_200_and_no_487() {
        let base = Instant::now();
        let mut t = Transactions::new(16);
        let (key, invite) = invite_arrives(&mut t, base, "z9hG4bKr1");
        t.handle(
            base,
            Input::SendResponse {
                key: key.clone(),
                response: response_to(&invite, 200, Some("b")),
            },
        )
        .unwrap();
        transmits(&mut t);
        let cancel = request("CANCEL", "z9hG4bKr1");
        t.handle(base + Duration::from_millis(10), received(cancel))
            .unwrap();
        let ev = events(&mut t);
        let [Event::Request {
            key: Some(ckey),
            request,
            ..
        }] = &ev[..]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(request.method, Method::Cancel);
        let outcome = t
            .answer_cancel(base + Duration::from_millis(10), ckey, "b")
            .unwrap();
        assert_eq!(outcome, CancelOutcome::TooLate);
        let sent = transmits(&mut t);
        assert_eq!(sent.iter().map(code).collect::<Vec<_>>(), [200]);
        let SipMessage::Response(r) = &sent[0] else {
            unreachable!()
        };
        assert_eq!(
            crate::sip::message::header_value(&r.headers, "cseq"),
            Some("1 CANCEL")
        );
        assert_eq!(t.state(&key), Some(State::Accepted));
    }

    #[test]
    fn a_cancel_before_the_200_gets_200_and_487_and_the_late_200_is_refused() {
        let base = Instant::now();
        let mut t = Transactions::new(16);
        let (key, invite) = invite_arrives(&mut t, base, "z9hG4bKr2");
        t.handle(base, received(request("CANCEL", "z9hG4bKr2")))
            .unwrap();
        let ev = events(&mut t);
        let [Event::Request {
            key: Some(ckey), ..
        }] = &ev[..]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(
            t.answer_cancel(base, ckey, "b").unwrap(),
            CancelOutcome::Cancelled
        );
        let sent = transmits(&mut t);
        assert_eq!(sent.iter().map(code).collect::<Vec<_>>(), [200, 487]);
        assert_eq!(t.state(&key), Some(State::Completed));
        let late = t.handle(
            base,
            Input::SendResponse {
                key: key.clone(),
                response: response_to(&invite, 200, Some("b")),
            },
        );
        assert!(matches!(late, Err(TxError::NotAllowed(_))));
        // A CANCEL whose INVITE is unknown: 481.
        t.handle(base, received(request("CANCEL", "z9hG4bKnone")))
            .unwrap();
        let ev = events(&mut t);
        let [Event::Request {
            key: Some(ckey), ..
        }] = &ev[..]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(
            t.answer_cancel(base, ckey, "b").unwrap(),
            CancelOutcome::NoTransaction
        );
        assert_eq!(
            transmits(&mut t).iter().map(code).collect::<Vec<_>>(),
            [481]
        );
    }

    #[test]
    fn a_response_with_an_unknown_branch_is_stray() {
        let base = Instant::now();
        let mut t = Transactions::new(16);
        let ours = request("INVITE", "z9hG4bKmine");
        t.handle(
            base,
            Input::SendRequest {
                transport: UDP,
                to: peer(),
                request: ours,
            },
        )
        .unwrap();
        transmits(&mut t);
        let other = request("INVITE", "z9hG4bKtheirs");
        t.handle(base, received(response_to(&other, 180, Some("x"))))
            .unwrap();
        assert!(
            matches!(&events(&mut t)[..], [Event::StrayResponse { response, .. }] if status(response) == 180)
        );
        assert_eq!(t.len(), 1);
        // Same branch, other CSeq method: another transaction, stray too.
        let bye = request("BYE", "z9hG4bKmine");
        t.handle(base, received(response_to(&bye, 200, None)))
            .unwrap();
        assert!(matches!(&events(&mut t)[..], [Event::StrayResponse { .. }]));
    }

    #[test]
    fn the_table_is_bounded() {
        let base = Instant::now();
        let mut t = Transactions::new(2);
        for b in ["z9hG4bKb1", "z9hG4bKb2"] {
            t.handle(base, received(request("OPTIONS", b))).unwrap();
        }
        assert_eq!(t.len(), 2);
        events(&mut t);
        t.handle(base, received(request("INVITE", "z9hG4bKb3")))
            .unwrap();
        assert_eq!(
            transmits(&mut t).iter().map(code).collect::<Vec<_>>(),
            [503]
        );
        assert!(events(&mut t).is_empty());
        assert_eq!(t.len(), 2);
        let refused = t.handle(
            base,
            Input::SendRequest {
                transport: UDP,
                to: peer(),
                request: request("OPTIONS", "z9hG4bKb4"),
            },
        );
        assert_eq!(refused, Err(TxError::TableFull));
        // A duplicate branch is refused before the bound is looked at.
        let mut t = Transactions::new(4);
        let r = request("OPTIONS", "z9hG4bKdup");
        t.handle(
            base,
            Input::SendRequest {
                transport: UDP,
                to: peer(),
                request: r.clone(),
            },
        )
        .unwrap();
        let dup = t.handle(
            base,
            Input::SendRequest {
                transport: UDP,
                to: peer(),
                request: r,
            },
        );
        assert!(matches!(dup, Err(TxError::Duplicate(_))));
    }
}
