//! The `sip` scenario: SIP call setup against a node's `sip.bind`, with the
//! tool as both the caller and the ARI application.
//!
//! The caller is crossbar's own sans-IO SIP agent (`crossbar::sip::agent`)
//! on one UDP socket; each call offers PCMU from its own loopback RTP
//! socket. The application side opens the events WebSocket for `--app`
//! and answers (`POST /ari/channels/{id}/answer`) every `StasisStart` of a
//! `SIP/` channel, from `--answerers` worker threads.
//!
//! Calls start at `--rate` per second up to `--calls`; each is held for
//! `--hold` after its 200 and then hung up with BYE. "With media" means:
//! for the whole hold, the caller sends 20 ms PCMU packets (160 bytes of
//! µ-law silence) to the address in crossbar's SDP answer; the app does not
//! bridge the channel, so crossbar's RTP leg receives and drops them and
//! sends nothing back (packets received back are counted all the same).
//!
//! Reported: calls attempted/answered/failed (by status), the setup rate
//! achieved (answered calls over the time from the first INVITE to the last
//! 200), setup latency (INVITE sent → 200 received, which includes the ARI
//! round trip of the answer) p50/p95/p99/max, the server's CPU time
//! (`/proc/PID/stat`, `--pid` or the process listening on the ARI port)
//! over the whole run per answered call and per call-second of media, and
//! SIP retransmissions seen on the wire (our INVITEs and BYEs sent again;
//! 200s crossbar sent again, which we ACK again).
//!
//! Bounded: counts and times are range-checked, an unanswered call is
//! CANCELled after `--answer-timeout`, the run waits at most 5 s for the
//! last BYEs' replies; on error and Ctrl-C every call is hung up.

use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbar::media::Format;
use crossbar::sdp::{self, LocalMedia, Role, SessionDescription};
use crossbar::sip::agent::{Agent, AgentConfig, CallEvent, CallKey};
use crossbar::sip::transaction::TransportId;
use crossbar::sip::uri::Target as SipTarget;
use hdrhistogram::Histogram;
use serde_json::json;
use tungstenite::Message;

use crate::ari::{encode, Client, Method, Target};
use crate::opts::parse_duration;
use crate::procstat;

/// The most calls one run may make.
const MAX_CALLS: usize = 100_000;
/// The longest time calls may be started over (`--calls / --rate`) and held.
const MAX_SPAN: Duration = Duration::from_secs(600);
/// The RTP packet time.
const PTIME: Duration = Duration::from_millis(20);
/// How long the run waits for the replies to its last BYEs.
const BYE_WAIT: Duration = Duration::from_secs(5);
/// How long hanging up after an error or Ctrl-C may take.
const ABORT_WAIT: Duration = Duration::from_secs(2);

/// Command-line options of `crossbar-load sip`.
#[derive(Clone, Debug)]
pub struct Options {
    pub url: String,
    pub user: String,
    pub password: String,
    pub app: String,
    /// The node's SIP address (`IP:PORT`, UDP).
    pub sip: SocketAddr,
    pub calls: usize,
    pub rate: f64,
    pub hold: Duration,
    pub media: bool,
    pub pid: Option<u32>,
    pub json: bool,
    pub timeout: Duration,
    pub answer_timeout: Duration,
    pub answerers: usize,
    pub allow_remote: bool,
}

impl Options {
    /// Parses `--name value` / `--name=value` options.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            url: "http://127.0.0.1:8088".into(),
            user: "asterisk".into(),
            password: "asterisk".into(),
            app: "crossbar-load".into(),
            sip: SocketAddr::from(([127, 0, 0, 1], 5060)),
            calls: 100,
            rate: 20.0,
            hold: Duration::from_secs(2),
            media: true,
            pid: None,
            json: false,
            timeout: Duration::from_secs(5),
            answer_timeout: Duration::from_secs(10),
            answerers: 2,
            allow_remote: false,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let flag = match name {
                "--json" => Some(&mut o.json),
                "--allow-remote" => Some(&mut o.allow_remote),
                "--help" | "-h" => return Err("help requested".into()),
                "--no-media" => {
                    if inline.is_some() {
                        return Err(format!("{name} takes no value"));
                    }
                    o.media = false;
                    continue;
                }
                _ => None,
            };
            if let Some(flag) = flag {
                if inline.is_some() {
                    return Err(format!("{name} takes no value"));
                }
                *flag = true;
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))?,
            };
            let count = |v: &str, max: usize| -> Result<usize, String> {
                v.parse()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| format!("{name}: expected 1..={max}, got '{v}'"))
            };
            let span = |v: &str, min: Duration, max: Duration| -> Result<Duration, String> {
                parse_duration(v)
                    .filter(|d| (min..=max).contains(d))
                    .ok_or_else(|| {
                        format!("{name}: expected a duration in {min:?}..={max:?}, got '{v}'")
                    })
            };
            match name {
                "--url" => o.url = value,
                "--user" => o.user = value,
                "--password" => o.password = value,
                "--app" if !value.is_empty() => o.app = value,
                "--sip" => {
                    o.sip = value.parse().map_err(|_| {
                        format!("--sip: expected the node's SIP address IP:PORT, got '{value}'")
                    })?
                }
                "--calls" => o.calls = count(&value, MAX_CALLS)?,
                "--rate" => {
                    o.rate = value
                        .parse::<f64>()
                        .ok()
                        .filter(|x| *x > 0.0 && *x <= 5000.0)
                        .ok_or_else(|| {
                            format!("--rate: expected calls per second in (0, 5000], got '{value}'")
                        })?
                }
                "--hold" => o.hold = span(&value, Duration::ZERO, MAX_SPAN)?,
                "--pid" => {
                    o.pid = Some(
                        value
                            .parse()
                            .map_err(|_| format!("--pid: bad process id '{value}'"))?,
                    )
                }
                "--timeout-ms" => {
                    o.timeout = Duration::from_millis(count(&value, 3_600_000)? as u64)
                }
                "--answer-timeout" => {
                    o.answer_timeout =
                        span(&value, Duration::from_millis(100), Duration::from_secs(60))?
                }
                "--answerers" => o.answerers = count(&value, 16)?,
                _ => return Err(format!("unknown option '{arg}'")),
            }
        }
        if o.calls as f64 / o.rate > MAX_SPAN.as_secs_f64() {
            return Err(format!(
                "--calls / --rate: calls are started over at most {} s",
                MAX_SPAN.as_secs()
            ));
        }
        Ok(o)
    }
}

/// The whole run.
pub struct Report {
    pub url: String,
    pub sip: SocketAddr,
    pub app: String,
    pub calls: usize,
    pub rate: f64,
    pub hold: Duration,
    pub media: bool,
    pub pid: Option<u32>,
    pub attempted: u64,
    pub answered: u64,
    /// Failed calls by final status (`timeout` for CANCELled after --answer-timeout).
    pub failed: BTreeMap<String, u64>,
    /// Answered calls crossbar ended before the hold was over.
    pub ended_by_server: u64,
    /// INVITE sent → 200 received, nanoseconds.
    pub setup: Histogram<u64>,
    /// First INVITE → last 200.
    pub setup_window: Duration,
    /// First INVITE → last call gone.
    pub window: Duration,
    pub peak_concurrent: usize,
    /// Seconds answered calls were up (media time, with media).
    pub call_seconds: f64,
    pub rtp_sent: u64,
    pub rtp_received: u64,
    pub rtp_send_errors: u64,
    pub invite_retransmits: u64,
    pub bye_retransmits: u64,
    /// 200s to our INVITEs received again (each ACKed again).
    pub ok_retransmits: u64,
    pub byes: u64,
    pub byes_unanswered: u64,
    pub app_stasis_starts: u64,
    pub app_answers: u64,
    pub app_answer_errors: u64,
    pub app_first_error: Option<String>,
    pub server_cpu: Option<Duration>,
    pub tool_cpu: Duration,
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Report {
    fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Answered calls per second, first INVITE → last 200.
    pub fn setup_rate(&self) -> f64 {
        let s = self.setup_window.as_secs_f64();
        if s > 0.0 {
            self.answered as f64 / s
        } else {
            0.0
        }
    }

    fn setup_ms(&self, q: f64) -> Option<f64> {
        (!self.setup.is_empty()).then(|| r3(self.setup.value_at_quantile(q) as f64 / 1e6))
    }

    fn cpu_per_call_ms(&self) -> Option<f64> {
        let cpu = self.server_cpu?.as_secs_f64();
        (self.answered > 0).then(|| cpu * 1e3 / self.answered as f64)
    }

    fn cpu_per_call_second_us(&self) -> Option<f64> {
        let cpu = self.server_cpu?.as_secs_f64();
        (self.call_seconds > 0.0).then(|| cpu * 1e6 / self.call_seconds)
    }

    fn pct(&self, d: Duration) -> f64 {
        d.as_secs_f64() / self.window.as_secs_f64().max(1e-9) * 100.0
    }

    pub fn to_json(&self) -> String {
        json!({
            "scenario": "sip",
            "url": self.url,
            "sip": self.sip.to_string(),
            "app": self.app,
            "params": {
                "calls": self.calls,
                "rate": self.rate,
                "hold_s": r3(self.hold.as_secs_f64()),
                "media": self.media,
            },
            "pid": self.pid,
            "attempted": self.attempted,
            "answered": self.answered,
            "failed": self.failed_total(),
            "failed_by_status": self.failed,
            "ended_by_server": self.ended_by_server,
            "setup_rate": r3(self.setup_rate()),
            "setup_window_s": r3(self.setup_window.as_secs_f64()),
            "window_s": r3(self.window.as_secs_f64()),
            "setup_p50_ms": self.setup_ms(0.5),
            "setup_p95_ms": self.setup_ms(0.95),
            "setup_p99_ms": self.setup_ms(0.99),
            "setup_max_ms": (!self.setup.is_empty()).then(|| r3(self.setup.max() as f64 / 1e6)),
            "peak_concurrent": self.peak_concurrent,
            "call_seconds": r3(self.call_seconds),
            "rtp_sent": self.rtp_sent,
            "rtp_received": self.rtp_received,
            "rtp_send_errors": self.rtp_send_errors,
            "invite_retransmits": self.invite_retransmits,
            "bye_retransmits": self.bye_retransmits,
            "ok_retransmits": self.ok_retransmits,
            "byes": self.byes,
            "byes_unanswered": self.byes_unanswered,
            "app_stasis_starts": self.app_stasis_starts,
            "app_answers": self.app_answers,
            "app_answer_errors": self.app_answer_errors,
            "app_first_error": self.app_first_error,
            "server_cpu_ms": self.server_cpu.map(|c| r3(c.as_secs_f64() * 1e3)),
            "server_cpu_pct": self.server_cpu.map(|c| r3(self.pct(c))),
            "server_ms_per_call": self.cpu_per_call_ms().map(r3),
            "server_us_per_call_second": self.cpu_per_call_second_us().map(r3),
            "tool_cpu_pct": r3(self.pct(self.tool_cpu)),
        })
        .to_string()
    }

    pub fn to_table(&self) -> String {
        let opt = |x: Option<f64>, unit: &str| match x {
            Some(v) => format!("{v:.2}{unit}"),
            None => "-".into(),
        };
        let failed: Vec<String> = self
            .failed
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let mut s = format!(
            "sip against {} (ARI {}, app {}): {} calls at {}/s, hold {:.1} s, media {}\n",
            self.sip,
            self.url,
            self.app,
            self.calls,
            self.rate,
            self.hold.as_secs_f64(),
            if self.media { "on" } else { "off" }
        );
        s += &format!(
            "  calls: attempted {} answered {} failed {}{} | ended by the server {} | peak concurrent {}\n",
            self.attempted,
            self.answered,
            self.failed_total(),
            if failed.is_empty() { String::new() } else { format!(" ({})", failed.join(", ")) },
            self.ended_by_server,
            self.peak_concurrent
        );
        s += &format!(
            "  setup rate {:.1} answered/s over {:.2} s | setup latency (INVITE → 200) p50 {} p95 {} p99 {} max {}\n",
            self.setup_rate(),
            self.setup_window.as_secs_f64(),
            opt(self.setup_ms(0.5), " ms"),
            opt(self.setup_ms(0.95), " ms"),
            opt(self.setup_ms(0.99), " ms"),
            opt((!self.setup.is_empty()).then(|| self.setup.max() as f64 / 1e6), " ms"),
        );
        s += &format!(
            "  media: {} PCMU packets sent, {} received back, {} send errors; {:.1} call-seconds\n",
            self.rtp_sent, self.rtp_received, self.rtp_send_errors, self.call_seconds
        );
        s += &format!(
            "  SIP retransmissions: INVITE {} | BYE {} | 200 OK from the node {} | BYEs unanswered {}/{}\n",
            self.invite_retransmits,
            self.bye_retransmits,
            self.ok_retransmits,
            self.byes_unanswered,
            self.byes
        );
        s += &format!(
            "  app: StasisStart {} | answered {} | answer errors {}\n",
            self.app_stasis_starts, self.app_answers, self.app_answer_errors
        );
        if let Some(e) = &self.app_first_error {
            s += &format!("  first answer error: {e}\n");
        }
        s += &format!(
            "  server CPU {} ({} of a core over {:.2} s) | {} per call | {} per call-second | tool CPU {:.1} % of a core\n",
            opt(self.server_cpu.map(|c| c.as_secs_f64() * 1e3), " ms"),
            opt(self.server_cpu.map(|c| self.pct(c)), " %"),
            self.window.as_secs_f64(),
            opt(self.cpu_per_call_ms(), " ms"),
            opt(self.cpu_per_call_second_us(), " µs"),
            self.pct(self.tool_cpu),
        );
        if self.media {
            s += "  (media: the caller sends 20 ms PCMU to the address in crossbar's answer for the whole hold; the app only answers, no bridge)\n";
        }
        s
    }
}

/// Runs the scenario; on error, hangs up every call and says what failed.
pub fn run(o: &Options) -> Result<Report, String> {
    let target = Target::parse(&o.url)?;
    if !o.allow_remote && (!target.is_loopback() || !o.sip.ip().is_loopback()) {
        return Err(format!(
            "refusing to load {} / {}: not a loopback address (127.0.0.0/8, localhost); pass --allow-remote if you mean it",
            target.host, o.sip
        ));
    }
    let client = Client::new(&target, &o.user, &o.password, o.timeout);
    client
        .expect_ok(Method::Get, "/ari/asterisk/ping")
        .map_err(|e| format!("the server does not answer ARI: {e}"))?;
    let pid = o.pid.or_else(|| {
        target
            .is_loopback()
            .then(|| procstat::pid_listening_on(target.port))
            .flatten()
    });
    let app = App::start(&target, o)?;
    crate::control::wait_for_app(&client, &o.app, o.timeout)?;
    let result = Caller::new(o, pid).and_then(|mut c| {
        let r = c.run();
        if r.is_err() {
            c.abort();
        }
        r.map(|()| c)
    });
    let app = app.stop();
    let caller = result?;
    if let Some(e) = app.error {
        return Err(e);
    }
    Ok(caller.report(o, &target, pid, &app))
}

// ---- the application side ---------------------------------------------

/// What the application did.
struct AppStats {
    stasis_starts: u64,
    answers: u64,
    errors: u64,
    first_error: Option<String>,
    error: Option<String>,
}

#[derive(Default)]
struct AppShared {
    stasis_starts: AtomicU64,
    answers: AtomicU64,
    errors: AtomicU64,
    error: Mutex<Option<String>>,
    first_answer_error: Mutex<Option<String>>,
}

/// The events reader and the answering workers.
struct App {
    stop: Arc<AtomicBool>,
    shared: Arc<AppShared>,
    threads: Vec<JoinHandle<()>>,
}

impl App {
    fn start(target: &Target, o: &Options) -> Result<App, String> {
        let mut ws = crate::events::open_socket(target, &o.user, &o.password, &o.app, o.timeout)?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(AppShared::default());
        let (tx, rx) = mpsc::channel::<String>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::new();
        for i in 0..o.answerers {
            let (rx, shared) = (rx.clone(), shared.clone());
            let client = Client::new(target, &o.user, &o.password, o.timeout);
            let t = std::thread::Builder::new()
                .name(format!("answer-{i}"))
                .spawn(move || loop {
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(id) = next else { return };
                    let path = format!("/ari/channels/{}/answer", encode(&id));
                    match client.request(Method::Post, &path) {
                        Ok(r) if r.status < 300 => {
                            shared.answers.fetch_add(1, Ordering::Relaxed);
                        }
                        other => {
                            // The caller may have given up already (404): counted, not fatal.
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                            let what = match other {
                                Ok(r) => {
                                    format!("HTTP {}: {}", r.status, crate::ari::excerpt(&r.body))
                                }
                                Err(e) => e,
                            };
                            let mut first = shared
                                .first_answer_error
                                .lock()
                                .unwrap_or_else(|p| p.into_inner());
                            first.get_or_insert(format!("POST {path}: {what}"));
                        }
                    }
                })
                .map_err(|e| format!("cannot start an answering thread: {e}"))?;
            threads.push(t);
        }
        let (stop2, shared2) = (stop.clone(), shared.clone());
        let reader = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match ws.read() {
                        Ok(Message::Text(text)) => {
                            let Ok(v) = serde_json::from_str::<serde_json::Value>(text.as_str())
                            else {
                                continue;
                            };
                            if v["type"] != "StasisStart" {
                                continue;
                            }
                            let channel = &v["channel"];
                            let sip = channel["name"]
                                .as_str()
                                .is_some_and(|n| n.starts_with("SIP/"));
                            if let (true, Some(id)) = (sip, channel["id"].as_str()) {
                                shared2.stasis_starts.fetch_add(1, Ordering::Relaxed);
                                if tx.send(id.to_string()).is_err() {
                                    return;
                                }
                            }
                        }
                        Ok(Message::Close(frame)) => {
                            *shared2.error.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(format!("events socket: the server closed it ({frame:?})"));
                            return;
                        }
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(e))
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            let _ = ws.flush();
                        }
                        Err(e) => {
                            *shared2.error.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(format!("events socket: {e}"));
                            return;
                        }
                    }
                }
                let _ = ws.close(None);
                let _ = ws.flush();
            })
            .map_err(|e| format!("cannot start the events thread: {e}"))?;
        threads.insert(0, reader);
        Ok(App {
            stop,
            shared,
            threads,
        })
    }

    /// Stops the reader (which ends the workers once the queue is empty).
    fn stop(mut self) -> AppStats {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        AppStats {
            stasis_starts: self.shared.stasis_starts.load(Ordering::Relaxed),
            answers: self.shared.answers.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
            first_error: self
                .shared
                .first_answer_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
            error: self
                .shared
                .error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        }
    }
}

// ---- the caller side ----------------------------------------------------

/// An answered call's media.
struct Up {
    answered: Instant,
    hangup_at: Instant,
    remote: Option<SocketAddr>,
    next_send: Instant,
    seq: u16,
    ts: u32,
}

struct Call {
    rtp: UdpSocket,
    local: LocalMedia,
    offer: SessionDescription,
    invited: Instant,
    ssrc: u32,
    up: Option<Up>,
}

/// The caller: the SIP agent, its socket, the calls and the counters.
struct Caller {
    agent: Agent,
    socket: UdpSocket,
    node: SipTarget,
    local_ip: IpAddr,
    calls: HashMap<CallKey, Call>,
    calls_total: usize,
    interval: Duration,
    hold: Duration,
    media: bool,
    answer_timeout: Duration,
    pid: Option<u32>,
    // counters
    attempted: u64,
    answered: u64,
    failed: BTreeMap<String, u64>,
    ended_by_server: u64,
    setup: Histogram<u64>,
    first_invite: Option<Instant>,
    last_answer: Option<Instant>,
    end: Option<Instant>,
    peak: usize,
    call_seconds: f64,
    rtp_sent: u64,
    rtp_received: u64,
    rtp_send_errors: u64,
    tx_invite: u64,
    tx_bye: u64,
    tx_ack: u64,
    byes: u64,
    byes_answered: u64,
    cpu_before: Option<u64>,
    cpu_after: Option<u64>,
    tool_before: Duration,
    tool_after: Duration,
    packet: [u8; 172],
    buf: Vec<u8>,
}

impl Caller {
    fn new(o: &Options, pid: Option<u32>) -> Result<Caller, String> {
        let local_ip = if o.sip.ip().is_loopback() {
            o.sip.ip()
        } else {
            IpAddr::from([0, 0, 0, 0])
        };
        let socket = UdpSocket::bind((local_ip, 0))
            .map_err(|e| format!("cannot bind the SIP socket on {local_ip}: {e}"))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("SIP socket: {e}"))?;
        crate::net::set_buffers(&socket, 4 << 20);
        let address = socket
            .local_addr()
            .map_err(|e| format!("SIP socket address: {e}"))?;
        let node = SipTarget::parse(&format!("sip:{}@{}", o.app, o.sip))?;
        let agent = Agent::new(AgentConfig {
            address,
            session_expires: 1800,
            min_se: 90,
            max_transactions: 4 * MAX_CALLS,
            seed: u64::from(std::process::id()) | 1,
        });
        Ok(Caller {
            agent,
            socket,
            node,
            local_ip: address.ip(),
            calls: HashMap::new(),
            calls_total: o.calls,
            interval: Duration::from_secs_f64(1.0 / o.rate),
            hold: o.hold,
            media: o.media,
            answer_timeout: o.answer_timeout,
            pid,
            attempted: 0,
            answered: 0,
            failed: BTreeMap::new(),
            ended_by_server: 0,
            setup: Histogram::new_with_bounds(1, 600_000_000_000, 3)
                .map_err(|e| format!("histogram: {e}"))?,
            first_invite: None,
            last_answer: None,
            end: None,
            peak: 0,
            call_seconds: 0.0,
            rtp_sent: 0,
            rtp_received: 0,
            rtp_send_errors: 0,
            tx_invite: 0,
            tx_bye: 0,
            tx_ack: 0,
            byes: 0,
            byes_answered: 0,
            cpu_before: None,
            cpu_after: None,
            tool_before: Duration::ZERO,
            tool_after: Duration::ZERO,
            packet: [0xff; 172],
            buf: vec![0u8; 65_536],
        })
    }

    fn cpu(&self) -> Result<Option<u64>, String> {
        self.pid.map(procstat::cpu_ticks).transpose()
    }

    /// Starts the calls at the rate, holds and hangs them up, until every
    /// call is gone and its BYE answered (or [`BYE_WAIT`] passed).
    fn run(&mut self) -> Result<(), String> {
        self.cpu_before = self.cpu()?;
        self.tool_before = procstat::self_cpu();
        let t0 = Instant::now();
        let mut started = 0usize;
        let mut all_gone: Option<Instant> = None;
        loop {
            if crate::signal::interrupted() {
                return Err("interrupted".into());
            }
            let now = Instant::now();
            while started < self.calls_total && t0 + self.interval * started as u32 <= now {
                self.start_call(now)?;
                started += 1;
            }
            let mut next = if started < self.calls_total {
                t0 + self.interval * started as u32
            } else {
                now + Duration::from_millis(50)
            };
            next = next.min(self.tick(now));
            if self.agent.poll_timeout().is_some_and(|t| t <= now) {
                self.agent.handle_timeout(now);
            }
            self.pump(now)?;
            self.receive()?;
            if started == self.calls_total && self.calls.is_empty() {
                let gone = *all_gone.get_or_insert(now);
                if self.byes_answered >= self.byes || now.duration_since(gone) >= BYE_WAIT {
                    self.end = Some(now);
                    break;
                }
            }
            if let Some(t) = self.agent.poll_timeout() {
                next = next.min(t);
            }
            self.wait(next);
        }
        self.cpu_after = self.cpu()?;
        self.tool_after = procstat::self_cpu();
        Ok(())
    }

    fn start_call(&mut self, now: Instant) -> Result<(), String> {
        let rtp = UdpSocket::bind((self.local_ip, 0))
            .map_err(|e| format!("cannot bind an RTP socket: {e}"))?;
        rtp.set_nonblocking(true)
            .map_err(|e| format!("RTP socket: {e}"))?;
        let port = rtp
            .local_addr()
            .map_err(|e| format!("RTP socket address: {e}"))?
            .port();
        let mut local = LocalMedia::new(self.local_ip, port, self.attempted + 1);
        local.formats = vec![Format::Ulaw];
        local.telephone_event = false;
        let offer = sdp::offer(&local).map_err(|e| format!("our offer: {e}"))?;
        let text = offer.write();
        let key = self.agent.invite(
            now,
            &self.node,
            ("crossbar-load", "crossbar-load"),
            Some(&text),
        )?;
        self.attempted += 1;
        self.first_invite.get_or_insert(now);
        let ssrc = 0x5170_0000 ^ (self.attempted as u32).wrapping_mul(2_654_435_761);
        self.calls.insert(
            key,
            Call {
                rtp,
                local,
                offer,
                invited: now,
                ssrc,
                up: None,
            },
        );
        self.peak = self.peak.max(self.calls.len());
        Ok(())
    }

    /// Sends due media, hangs up calls whose hold is over and cancels
    /// calls unanswered for too long. Returns when it is next due.
    fn tick(&mut self, now: Instant) -> Instant {
        let mut next = now + Duration::from_millis(50);
        let mut hangups = Vec::new();
        let mut timeouts = Vec::new();
        for (key, call) in &mut self.calls {
            let Some(up) = &mut call.up else {
                let due = call.invited + self.answer_timeout;
                if due <= now {
                    timeouts.push(*key);
                } else {
                    next = next.min(due);
                }
                continue;
            };
            if up.hangup_at <= now {
                hangups.push(*key);
                continue;
            }
            next = next.min(up.hangup_at);
            if let (true, Some(remote)) = (self.media, up.remote) {
                // At most 3 packets to catch up, then back in step.
                for _ in 0..3 {
                    if up.next_send > now {
                        break;
                    }
                    let p = &mut self.packet;
                    p[0] = 0x80;
                    p[1] = if up.seq == 0 { 0x80 } else { 0 };
                    p[2..4].copy_from_slice(&up.seq.to_be_bytes());
                    p[4..8].copy_from_slice(&up.ts.to_be_bytes());
                    p[8..12].copy_from_slice(&call.ssrc.to_be_bytes());
                    match call.rtp.send_to(p, remote) {
                        Ok(_) => self.rtp_sent += 1,
                        Err(_) => self.rtp_send_errors += 1,
                    }
                    up.seq = up.seq.wrapping_add(1);
                    up.ts = up.ts.wrapping_add(160);
                    up.next_send += PTIME;
                }
                if up.next_send <= now {
                    up.next_send = now + PTIME;
                }
                next = next.min(up.next_send);
            }
        }
        for key in hangups {
            if self.agent.hangup(now, key, 16) {
                self.byes += 1;
            }
            self.forget(now, key);
        }
        for key in timeouts {
            self.agent.hangup(now, key, 487);
            *self.failed.entry("timeout".into()).or_insert(0) += 1;
            self.forget(now, key);
        }
        next
    }

    /// Drops a call: counts its media time and what came back on its socket.
    fn forget(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.remove(&key) else {
            return;
        };
        if let Some(up) = call.up {
            self.call_seconds += now.duration_since(up.answered).as_secs_f64();
            let mut buf = [0u8; 2048];
            for _ in 0..100_000 {
                match call.rtp.recv(&mut buf) {
                    Ok(_) => self.rtp_received += 1,
                    Err(_) => break,
                }
            }
        }
    }

    /// Sends what the agent has to send and handles its call events.
    fn pump(&mut self, now: Instant) -> Result<(), String> {
        while let Some(t) = self.agent.poll_transmit() {
            if t.transport != TransportId(0) {
                continue;
            }
            if t.bytes.starts_with(b"INVITE ") {
                self.tx_invite += 1;
            } else if t.bytes.starts_with(b"BYE ") {
                self.tx_bye += 1;
            } else if t.bytes.starts_with(b"ACK ") {
                self.tx_ack += 1;
            }
            match self.socket.send_to(&t.bytes, t.to) {
                Ok(_) => {}
                // A full buffer is a lost datagram: SIP retransmits.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("SIP send to {}: {e}", t.to)),
            }
        }
        while let Some(event) = self.agent.poll_event() {
            match event {
                CallEvent::Answered { call, sdp } => {
                    let Some(c) = self.calls.get_mut(&call) else {
                        continue;
                    };
                    let ns =
                        u64::try_from(now.duration_since(c.invited).as_nanos()).unwrap_or(u64::MAX);
                    self.setup.saturating_record(ns.max(1));
                    self.answered += 1;
                    self.last_answer = Some(now);
                    let remote = sdp
                        .and_then(|text| sdp::parse(text.as_bytes()).ok())
                        .and_then(|a| sdp::negotiated(&c.offer, &a, Role::Offerer).ok())
                        .and_then(|n| n.remote);
                    c.up = Some(Up {
                        answered: now,
                        hangup_at: now + self.hold,
                        remote,
                        next_send: now,
                        seq: 0,
                        ts: 0,
                    });
                }
                CallEvent::Failed { call, status } => {
                    *self.failed.entry(status.to_string()).or_insert(0) += 1;
                    self.forget(now, call);
                }
                CallEvent::Ended { call, .. } => {
                    self.ended_by_server += 1;
                    self.forget(now, call);
                }
                CallEvent::Offer { call, sdp } => {
                    // A re-INVITE or UPDATE from the node: answer in PCMU.
                    let answer = self.calls.get(&call).and_then(|c| {
                        let offer = sdp::parse(sdp?.as_bytes()).ok()?;
                        Some(sdp::answer(&offer, &c.local).ok()?.sdp.write())
                    });
                    self.agent
                        .answer_offer(now, call, answer.as_deref().ok_or(488));
                }
                _ => {}
            }
        }
        // Events may have queued messages (ACK, BYE).
        while let Some(t) = self.agent.poll_transmit() {
            if t.bytes.starts_with(b"ACK ") {
                self.tx_ack += 1;
            } else if t.bytes.starts_with(b"BYE ") {
                self.tx_bye += 1;
            }
            let _ = self.socket.send_to(&t.bytes, t.to);
        }
        Ok(())
    }

    /// Reads every datagram waiting on the SIP socket into the agent.
    fn receive(&mut self) -> Result<(), String> {
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.receive_into(&mut buf);
        self.buf = buf;
        r
    }

    fn receive_into(&mut self, buf: &mut [u8]) -> Result<(), String> {
        for _ in 0..1024 {
            match self.socket.recv_from(buf) {
                Ok((n, from)) => {
                    let bytes = &buf[..n];
                    if is_bye_ok(bytes) {
                        self.byes_answered += 1;
                    }
                    let now = Instant::now();
                    self.agent.receive(now, TransportId(0), from, bytes);
                    self.pump(now)?;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    break
                }
                // ICMP port unreachable from an earlier send, and the like.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(format!("SIP receive: {e}")),
            }
        }
        Ok(())
    }

    /// Waits for the SIP socket or `until`, whichever comes first.
    fn wait(&self, until: Instant) {
        let ms = until
            .saturating_duration_since(Instant::now())
            .as_micros()
            .div_ceil(1000)
            .min(50) as i32;
        if ms == 0 {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd we own.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }

    /// After an error or Ctrl-C: hangs up every call, sends the BYEs and
    /// CANCELs, and gives their replies a moment.
    fn abort(&mut self) {
        let now = Instant::now();
        let keys: Vec<CallKey> = self.calls.keys().copied().collect();
        for key in keys {
            self.agent.hangup(now, key, 16);
            self.forget(now, key);
        }
        let start = Instant::now();
        while start.elapsed() < ABORT_WAIT {
            let now = Instant::now();
            if self.agent.poll_timeout().is_some_and(|t| t <= now) {
                self.agent.handle_timeout(now);
            }
            if self.pump(now).is_err() || self.receive().is_err() {
                break;
            }
            if self.agent.transaction_count() == 0 {
                break;
            }
            self.wait(now + Duration::from_millis(20));
        }
    }

    fn report(self, o: &Options, target: &Target, pid: Option<u32>, app: &AppStats) -> Report {
        let first = self.first_invite.unwrap_or_else(Instant::now);
        let server_cpu = match (self.cpu_before, self.cpu_after) {
            (Some(a), Some(b)) => Some(Duration::from_secs_f64(
                b.saturating_sub(a) as f64 / procstat::clk_tck() as f64,
            )),
            _ => None,
        };
        Report {
            url: target.base.clone(),
            sip: o.sip,
            app: o.app.clone(),
            calls: o.calls,
            rate: o.rate,
            hold: o.hold,
            media: o.media,
            pid,
            attempted: self.attempted,
            answered: self.answered,
            failed: self.failed,
            ended_by_server: self.ended_by_server,
            setup: self.setup,
            setup_window: self
                .last_answer
                .map(|t| t.duration_since(first))
                .unwrap_or_default(),
            window: self
                .end
                .map(|t| t.duration_since(first))
                .unwrap_or_default(),
            peak_concurrent: self.peak,
            call_seconds: self.call_seconds,
            rtp_sent: self.rtp_sent,
            rtp_received: self.rtp_received,
            rtp_send_errors: self.rtp_send_errors,
            invite_retransmits: self.tx_invite.saturating_sub(self.attempted),
            bye_retransmits: self.tx_bye.saturating_sub(self.byes),
            ok_retransmits: self.tx_ack.saturating_sub(self.answered),
            byes: self.byes,
            byes_unanswered: self.byes.saturating_sub(self.byes_answered),
            app_stasis_starts: app.stasis_starts,
            app_answers: app.answers,
            app_answer_errors: app.errors,
            app_first_error: app.first_error.clone(),
            server_cpu,
            tool_cpu: self.tool_after.saturating_sub(self.tool_before),
        }
    }
}

/// Whether a datagram is a 200 to a BYE (first of its kind per BYE is
/// what counts; a retransmitted one is rare on loopback).
fn is_bye_ok(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    if !text.starts_with("SIP/2.0 200") {
        return false;
    }
    text.lines().take_while(|l| !l.is_empty()).any(|l| {
        let l = l.trim();
        l.len() > 5 && l[..5].eq_ignore_ascii_case("cseq:") && l[5..].trim().ends_with("BYE")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn options() {
        let o = Options::parse(&args(
            "--sip 127.0.0.1:5070 --calls 10 --rate 5 --hold 1s --no-media --json",
        ))
        .unwrap();
        assert_eq!(o.sip, "127.0.0.1:5070".parse().unwrap());
        assert_eq!((o.calls, o.rate, o.media, o.json), (10, 5.0, false, true));
        assert_eq!(o.hold, Duration::from_secs(1));
        assert!(Options::parse(&args("--calls 0")).is_err());
        assert!(Options::parse(&args("--rate 0")).is_err());
        assert!(Options::parse(&args("--sip nowhere")).is_err());
        assert!(Options::parse(&args("--calls 100000 --rate 1")).is_err());
        assert!(Options::parse(&args("--no-media=1")).is_err());
    }

    #[test]
    fn bye_ok() {
        assert!(is_bye_ok(b"SIP/2.0 200 OK\r\nCSeq: 7 BYE\r\n\r\n"));
        assert!(!is_bye_ok(b"SIP/2.0 200 OK\r\nCSeq: 7 INVITE\r\n\r\n"));
        assert!(!is_bye_ok(b"SIP/2.0 481 No\r\nCSeq: 7 BYE\r\n\r\n"));
    }

    #[test]
    fn refuses_remote_nodes() {
        let o = Options::parse(&args("--sip 192.0.2.1:5060")).unwrap();
        let e = run(&o).err().unwrap_or_default();
        assert!(e.contains("--allow-remote"), "{e}");
    }
}
