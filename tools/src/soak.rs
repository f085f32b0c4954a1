//! The `soak` scenario: a bounded soak of a running node (`tests/run --long`
//! runs it against a release build). For `--duration` it keeps about
//! `--relays`·2 + `--mixes`·`--mix-size` + the churn's legs alive — 1,000 by
//! default — with media, and changes them all the time:
//!
//! - relays: two-party mixing bridges (`native_rtp`), 20 ms PCMU one way;
//!   one relay call is torn down and rebuilt every `--rotate-ms`;
//! - mixes: bridges of `--mix-size` members, one in four talking, every
//!   member receiving; one mix is rebuilt every 30 rotations;
//! - churn: two-party calls started at `--churn-rate` a second, media one
//!   way for `--churn-hold`, then hung up;
//! - playbacks at `--play-rate` a second, alternating: an endless `tone:ring`
//!   on a relay leg, stopped with `DELETE /playbacks/{id}` 1–3 s later, and
//!   three finite tones played into a mix or relay bridge (they finish).
//!
//! Before and after, with every call torn down and the node given up to
//! `--settle` to quiesce, it samples the node (`--pid`, or the process
//! listening on the URL's port): open descriptors (`/proc/PID/fd`),
//! threads (`/proc/PID/task`; the kernel's `iou-wrk` io_uring workers
//! counted apart), `VmRSS`/`VmHWM`; and over ARI: `GET
//! /channels` and `/bridges`, the `/metrics` gauges `crossbar_channels`,
//! `crossbar_bridges`, `crossbar_rtp_port_pairs_free`/`_pairs`. A
//! `subscribeAll` events socket counts `ChannelCreated`/`ChannelDestroyed`
//! and playback events. The run fails (exit 1) when a leg, bridge, port
//! pair, descriptor (beyond `--fd-slack`) or thread is left over, one of
//! the last 100 ended playbacks is still found, RSS after the teardown is
//! more than `--rss-growth-mib` above the start (the working set of the
//! load: the allocator keeps it), RSS grew more than
//! `--rss-late-growth-mib` from half time to the end of a run of 6 minutes
//! or more (a leak grows with the calls made; the working set levels off
//! within minutes), a created channel has no
//! `ChannelDestroyed`, a request failed, or media stopped flowing (a class
//! of listeners received under 90 % of what its talkers sent).
//!
//! Bounded: `--duration` at most 24 h, every request has a timeout, the
//! loops are paced; loopback only unless `--allow-remote`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::Message;

use crate::ari::{encode, excerpt, id_of, Client, Method, Target};
use crate::opts::parse_duration;
use crate::procstat;

const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug)]
pub struct Options {
    pub url: String,
    pub user: String,
    pub password: String,
    pub app: String,
    pub pid: Option<u32>,
    pub json: bool,
    pub allow_remote: bool,
    pub timeout: Duration,
    pub duration: Duration,
    pub relays: usize,
    pub mixes: usize,
    pub mix_size: usize,
    pub churn_rate: f64,
    pub churn_hold: Duration,
    pub play_rate: f64,
    pub rotate: Duration,
    pub settle: Duration,
    pub rss_growth_mib: u64,
    pub rss_late_growth_mib: u64,
    pub fd_slack: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            url: "http://127.0.0.1:8088".into(),
            user: "asterisk".into(),
            password: "asterisk".into(),
            app: "crossbar-soak".into(),
            pid: None,
            json: false,
            allow_remote: false,
            timeout: Duration::from_secs(5),
            duration: Duration::from_secs(600),
            relays: 300,
            mixes: 10,
            mix_size: 20,
            churn_rate: 20.0,
            churn_hold: Duration::from_secs(5),
            play_rate: 5.0,
            rotate: Duration::from_secs(1),
            settle: Duration::from_secs(30),
            rss_growth_mib: 64,
            rss_late_growth_mib: 8,
            fd_slack: 8,
        }
    }
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            match name {
                "--json" => {
                    o.json = true;
                    continue;
                }
                "--allow-remote" => {
                    o.allow_remote = true;
                    continue;
                }
                "--help" | "-h" => return Err("help requested".into()),
                _ => {}
            }
            let v = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))?,
            };
            let num = |lo: f64, hi: f64| -> Result<f64, String> {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| (lo..=hi).contains(x))
                    .ok_or_else(|| format!("{name}: '{v}' is not a number in {lo}..={hi}"))
            };
            let dur = |hi: Duration| -> Result<Duration, String> {
                parse_duration(&v)
                    .filter(|d| *d <= hi && !d.is_zero())
                    .ok_or_else(|| format!("{name}: '{v}' is not a duration up to {hi:?}"))
            };
            match name {
                "--url" => o.url = v,
                "--user" => o.user = v,
                "--password" => o.password = v,
                "--app" => o.app = v,
                "--pid" => o.pid = Some(num(1.0, 4e9)? as u32),
                "--timeout-ms" => o.timeout = Duration::from_millis(num(1.0, 60_000.0)? as u64),
                "--duration" => o.duration = dur(MAX_DURATION)?,
                "--relays" => o.relays = num(1.0, 5000.0)? as usize,
                "--mixes" => o.mixes = num(0.0, 500.0)? as usize,
                "--mix-size" => o.mix_size = num(3.0, 500.0)? as usize,
                "--churn-rate" => o.churn_rate = num(0.0, 500.0)?,
                "--churn-hold" => o.churn_hold = dur(Duration::from_secs(600))?,
                "--play-rate" => o.play_rate = num(0.0, 100.0)?,
                "--rotate-ms" => o.rotate = Duration::from_millis(num(10.0, 600_000.0)? as u64),
                "--settle" => o.settle = dur(Duration::from_secs(600))?,
                "--rss-growth-mib" => o.rss_growth_mib = num(1.0, 65536.0)? as u64,
                "--rss-late-growth-mib" => o.rss_late_growth_mib = num(1.0, 65536.0)? as u64,
                "--fd-slack" => o.fd_slack = num(0.0, 100_000.0)? as u64,
                other => return Err(format!("soak: unknown option {other}")),
            }
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------------------
// media: one thread sends for every talker and drains every listener

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
enum Class {
    Relay,
    Mix,
    Churn,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Relay => "relay",
            Class::Mix => "mix",
            Class::Churn => "churn",
        }
    }
}

struct MediaLeg {
    socket: UdpSocket,
    dest: SocketAddr,
    class: Class,
    talks: bool,
    listens: bool,
    ssrc: u32,
    seq: u16,
}

#[derive(Default)]
struct MediaState {
    legs: HashMap<String, MediaLeg>,
    /// Packets sent by talkers and received by listeners, by class.
    sent: BTreeMap<Class, u64>,
    received: BTreeMap<Class, u64>,
}

struct Media {
    state: Arc<Mutex<MediaState>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Media {
    fn start() -> Media {
        let state = Arc::new(Mutex::new(MediaState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("soak-media".into())
            .spawn(move || {
                let mut next = Instant::now();
                let mut payload = vec![0xd5u8; 172];
                payload[0] = 0x80;
                payload[1] = 0; // PCMU
                let mut buf = [0u8; 2048];
                while !st.load(Ordering::Relaxed) {
                    {
                        let mut guard = s.lock().unwrap_or_else(|p| p.into_inner());
                        let MediaState {
                            legs,
                            sent,
                            received,
                        } = &mut *guard;
                        for leg in legs.values_mut() {
                            if leg.talks {
                                payload[2..4].copy_from_slice(&leg.seq.to_be_bytes());
                                let ts = u32::from(leg.seq).wrapping_mul(160);
                                payload[4..8].copy_from_slice(&ts.to_be_bytes());
                                payload[8..12].copy_from_slice(&leg.ssrc.to_be_bytes());
                                if leg.socket.send_to(&payload, leg.dest).is_ok() {
                                    *sent.entry(leg.class).or_insert(0) += 1;
                                }
                                leg.seq = leg.seq.wrapping_add(1);
                            }
                            // Drain whatever arrived (bounded per tick).
                            for _ in 0..64 {
                                match leg.socket.recv_from(&mut buf) {
                                    Ok((n, _)) => {
                                        // RTP only (RTCP payload types 200–204).
                                        if leg.listens && n >= 12 && !(200..=204).contains(&buf[1])
                                        {
                                            *received.entry(leg.class).or_insert(0) += 1;
                                        }
                                    }
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                    next += Duration::from_millis(20);
                    let now = Instant::now();
                    if next < now {
                        next = now;
                    }
                    std::thread::sleep(next - now);
                }
            })
            .expect("spawn the media thread");
        Media {
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn add(&self, id: &str, leg: MediaLeg) {
        self.lock().legs.insert(id.to_string(), leg);
    }

    fn remove(&self, id: &str) {
        self.lock().legs.remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MediaState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (sent, received) by class.
    fn totals(&self) -> (BTreeMap<Class, u64>, BTreeMap<Class, u64>) {
        let s = self.lock();
        (s.sent.clone(), s.received.clone())
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// events: a subscribeAll socket, counted by type

struct Events {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    last: Arc<Mutex<Instant>>,
    error: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Events {
    fn open(target: &Target, o: &Options) -> Result<Events, String> {
        let addr = target.socket_addr()?;
        let stream = std::net::TcpStream::connect_timeout(&addr, o.timeout)
            .map_err(|e| format!("events socket: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        let url = format!(
            "ws://{}/ari/events?app={}&subscribeAll=true&api_key={}",
            target.base.trim_start_matches("http://"),
            encode(&o.app),
            encode(&format!("{}:{}", o.user, o.password)),
        );
        let (mut ws, _) = tungstenite::client::client(url.as_str(), stream)
            .map_err(|e| format!("events socket: handshake failed: {e}"))?;
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let last = Arc::new(Mutex::new(Instant::now()));
        let error = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, l, e, st) = (counts.clone(), last.clone(), error.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("soak-events".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    match ws.read() {
                        Ok(Message::Text(text)) => {
                            let kind = serde_json::from_str::<Value>(text.as_str())
                                .ok()
                                .and_then(|v| v["type"].as_str().map(str::to_string))
                                .unwrap_or_else(|| "(unparsed)".into());
                            *c.lock().unwrap().entry(kind).or_insert(0) += 1;
                            *l.lock().unwrap() = Instant::now();
                        }
                        Ok(Message::Close(frame)) => {
                            *e.lock().unwrap() = Some(format!("events socket closed: {frame:?}"));
                            return;
                        }
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(err))
                            if matches!(
                                err.kind(),
                                ErrorKind::WouldBlock | ErrorKind::TimedOut
                            ) =>
                        {
                            let _ = ws.flush();
                        }
                        Err(err) => {
                            *e.lock().unwrap() = Some(format!("events socket: {err}"));
                            return;
                        }
                    }
                }
                let _ = ws.close(None);
                let _ = ws.flush();
            })
            .map_err(|e| e.to_string())?;
        Ok(Events {
            counts,
            last,
            error,
            stop,
            thread: Some(thread),
        })
    }

    fn count(&self, kind: &str) -> u64 {
        self.counts.lock().unwrap().get(kind).copied().unwrap_or(0)
    }

    /// Waits until no event came for `quiet` (at most `max`).
    fn wait_quiet(&self, quiet: Duration, max: Duration) {
        let start = Instant::now();
        while start.elapsed() < max && self.last.lock().unwrap().elapsed() < quiet {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// the node as /proc and ARI show it

#[derive(Clone, Debug, Default)]
struct Sample {
    fds: u64,
    /// The node's own threads.
    threads: u64,
    /// The kernel's io_uring workers (`iou-wrk-N`) attached to the process:
    /// created on demand for a ring's blocking work, the last of each kept
    /// by the kernel; not the node's, counted apart.
    iou_workers: u64,
    rss_kib: u64,
    hwm_kib: u64,
    channels: u64,
    bridges: u64,
    listed_channels: u64,
    listed_bridges: u64,
    ports_free: u64,
    ports_total: u64,
}

fn dir_len(path: &str) -> Result<u64, String> {
    Ok(std::fs::read_dir(path)
        .map_err(|e| format!("{path}: {e}"))?
        .count() as u64)
}

/// (the node's threads, io_uring kernel workers) of `pid`.
fn threads(pid: u32) -> Result<(u64, u64), String> {
    let dir = format!("/proc/{pid}/task");
    let mut own = 0;
    let mut iou = 0;
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let path = entry.map_err(|e| e.to_string())?.path().join("comm");
        // A thread that ended meanwhile has no comm: not counted.
        let Ok(comm) = std::fs::read_to_string(&path) else {
            continue;
        };
        if comm.starts_with("iou-") {
            iou += 1;
        } else {
            own += 1;
        }
    }
    Ok((own, iou))
}

fn status_kib(pid: u32, key: &str) -> Result<u64, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn sample(client: &Client, pid: u32) -> Result<Sample, String> {
    let metrics = client.expect_ok(Method::Get, "/metrics")?;
    let need = |name: &str| metric(&metrics, name).ok_or_else(|| format!("/metrics has no {name}"));
    let list = |path: &str| -> Result<u64, String> {
        let body = client.expect_ok(Method::Get, path)?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{path}: {e}"))?;
        Ok(v.as_array().map_or(0, |a| a.len() as u64))
    };
    let (threads, iou_workers) = threads(pid)?;
    Ok(Sample {
        fds: dir_len(&format!("/proc/{pid}/fd"))?,
        threads,
        iou_workers,
        rss_kib: status_kib(pid, "VmRSS:")?,
        hwm_kib: status_kib(pid, "VmHWM:")?,
        channels: need("crossbar_channels")?,
        bridges: need("crossbar_bridges")?,
        listed_channels: list("/ari/channels")?,
        listed_bridges: list("/ari/bridges")?,
        ports_free: need("crossbar_rtp_port_pairs_free")?,
        ports_total: need("crossbar_rtp_port_pairs")?,
    })
}

// ---------------------------------------------------------------------------
// calls

struct Call {
    legs: Vec<String>,
    bridge: String,
    ends: Option<Instant>,
}

struct Driver<'a> {
    client: &'a Client,
    app: String,
    media: &'a Media,
    allow_remote: bool,
    next_ssrc: u32,
    created: u64,
    hung_up: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Driver<'_> {
    fn note<T>(&mut self, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e);
                }
                None
            }
        }
    }

    /// An externalMedia leg whose far end is a fresh loopback socket,
    /// registered with the media thread.
    fn leg(&mut self, class: Class, talks: bool, listens: bool) -> Option<String> {
        let r = (|| {
            let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
            socket.set_nonblocking(true).map_err(|e| e.to_string())?;
            let far = socket.local_addr().map_err(|e| e.to_string())?;
            let body = self.client.expect_ok(
                Method::Post,
                &format!(
                    "/ari/channels/externalMedia?app={}&external_host={}&format=ulaw",
                    encode(&self.app),
                    encode(&far.to_string())
                ),
            )?;
            let id = id_of(&body, "externalMedia")?;
            let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            let port: u16 = v["channelvars"]["UNICASTRTP_LOCAL_PORT"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("no local port in {}", excerpt(&body)))?;
            let dest = SocketAddr::new(far.ip(), port);
            crate::net::check_rtp_target(dest, self.allow_remote)?;
            Ok::<_, String>((id, socket, dest))
        })();
        let (id, socket, dest) = self.note(r)?;
        self.created += 1;
        self.next_ssrc = self.next_ssrc.wrapping_add(1);
        self.media.add(
            &id,
            MediaLeg {
                socket,
                dest,
                class,
                talks,
                listens,
                ssrc: self.next_ssrc,
                seq: 0,
            },
        );
        Some(id)
    }

    /// A mixing bridge with `n` members; the first `talkers` talk.
    fn call(&mut self, class: Class, n: usize, talkers: usize) -> Option<Call> {
        let bridge = self.note(
            self.client
                .expect_ok(Method::Post, "/ari/bridges?type=mixing&name=soak")
                .and_then(|b| id_of(&b, "bridge")),
        )?;
        let mut call = Call {
            legs: Vec::new(),
            bridge,
            ends: None,
        };
        for i in 0..n {
            let Some(id) = self.leg(class, i < talkers, i >= talkers || class == Class::Mix) else {
                break;
            };
            call.legs.push(id.clone());
            let path = format!(
                "/ari/bridges/{}/addChannel?channel={}",
                encode(&call.bridge),
                encode(&id)
            );
            let r = self.client.expect_ok(Method::Post, &path);
            if self.note(r).is_none() {
                break;
            }
        }
        Some(call)
    }

    fn hangup(&mut self, call: Call) {
        for id in &call.legs {
            self.media.remove(id);
            let r = self
                .client
                .expect_ok(Method::Delete, &format!("/ari/channels/{}", encode(id)));
            if self.note(r).is_some() {
                self.hung_up += 1;
            }
        }
        let r = self.client.expect_ok(
            Method::Delete,
            &format!("/ari/bridges/{}", encode(&call.bridge)),
        );
        self.note(r);
    }
}

// ---------------------------------------------------------------------------
// the run

pub struct Report {
    json: Value,
    failures: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn to_json(&self) -> String {
        self.json.to_string()
    }

    pub fn to_table(&self) -> String {
        let mut out = String::from("soak\n");
        if let Some(map) = self.json.as_object() {
            for (k, v) in map {
                out.push_str(&format!("  {k:<22} {v}\n"));
            }
        }
        if self.failures.is_empty() {
            out.push_str("  PASS: nothing leaked\n");
        } else {
            for f in &self.failures {
                out.push_str(&format!("  FAIL: {f}\n"));
            }
        }
        out
    }
}

pub fn run(o: &Options) -> Result<Report, String> {
    let target = Target::parse(&o.url)?;
    if !target.is_loopback() && !o.allow_remote {
        return Err(format!("refusing to soak {}: not loopback", target.host));
    }
    let pid = match o.pid {
        Some(p) => p,
        None => procstat::pid_listening_on(target.port)
            .ok_or("no --pid and no local process listens on the URL's port")?,
    };
    let client = Client::new(&target, &o.user, &o.password, o.timeout);
    client.expect_ok(Method::Get, "/ari/asterisk/ping")?;
    let events = Events::open(&target, o)?;
    let deadline = Instant::now() + o.timeout;
    while client
        .request(
            Method::Get,
            &format!("/ari/applications/{}", encode(&o.app)),
        )?
        .status
        != 200
    {
        if Instant::now() > deadline {
            return Err(format!("application {} never registered", o.app));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Give the node a moment at rest, then take the baseline.
    std::thread::sleep(Duration::from_millis(500));
    let before = sample(&client, pid)?;
    if before.channels != 0 || before.bridges != 0 {
        return Err(format!(
            "the node is not empty at start: {} channels, {} bridges",
            before.channels, before.bridges
        ));
    }

    let mut media = Media::start();
    let mut d = Driver {
        client: &client,
        app: o.app.clone(),
        media: &media,
        allow_remote: o.allow_remote,
        next_ssrc: 0x50a4_0000,
        created: 0,
        hung_up: 0,
        errors: 0,
        first_error: None,
    };
    let started = Instant::now();
    let mut relays: VecDeque<Call> = VecDeque::new();
    let mut mixes: VecDeque<Call> = VecDeque::new();
    let mut churn: VecDeque<Call> = VecDeque::new();
    for _ in 0..o.relays {
        if let Some(c) = d.call(Class::Relay, 2, 1) {
            relays.push_back(c);
        }
    }
    for _ in 0..o.mixes {
        if let Some(c) = d.call(Class::Mix, o.mix_size, o.mix_size.div_ceil(4)) {
            mixes.push_back(c);
        }
    }
    let setup = started.elapsed();

    let end = started + o.duration;
    let mut churned = 0u64;
    let mut rotations = 0u64;
    let mut peak_legs = 0usize;
    let mut channel_plays = 0u64;
    let mut bridge_plays = 0u64;
    let mut stopped = 0u64;
    let mut playing: VecDeque<(String, Instant)> = VecDeque::new();
    // Playbacks that ended (stopped, or finite bridge tones): looked up at
    // the end, each must be gone (404). At most 100 kept.
    let mut ended: VecDeque<String> = VecDeque::new();
    let mut rss_mid: Option<u64> = None;
    let mut next_rotate = Instant::now() + o.rotate;
    let (mut churn_due, mut play_due) = (0.0f64, 0.0f64);
    let mut last = Instant::now();
    let mut turn = 0u64;
    while Instant::now() < end && !crate::signal::interrupted() {
        let now = Instant::now();
        let dt = now.duration_since(last).as_secs_f64();
        last = now;
        turn += 1;
        // Churn: start what is due (at most 50 a turn), end what expired.
        churn_due = (churn_due + o.churn_rate * dt).min(50.0);
        while churn_due >= 1.0 {
            churn_due -= 1.0;
            if let Some(mut c) = d.call(Class::Churn, 2, 1) {
                c.ends = Some(Instant::now() + o.churn_hold);
                churn.push_back(c);
                churned += 1;
            }
        }
        while churn
            .front()
            .is_some_and(|c| c.ends.is_some_and(|e| e <= now))
        {
            let c = churn.pop_front().expect("front");
            d.hangup(c);
        }
        // Rotation: one relay call rebuilt; every 30th, one mix.
        if now >= next_rotate {
            next_rotate += o.rotate;
            rotations += 1;
            if let Some(c) = relays.pop_front() {
                d.hangup(c);
            }
            if let Some(c) = d.call(Class::Relay, 2, 1) {
                relays.push_back(c);
            }
            if rotations % 30 == 0 {
                if let Some(c) = mixes.pop_front() {
                    d.hangup(c);
                }
                if let Some(c) = d.call(Class::Mix, o.mix_size, o.mix_size.div_ceil(4)) {
                    mixes.push_back(c);
                }
            }
        }
        // Playbacks: alternately a channel tone (stopped later) and a
        // finite bridge tone.
        play_due = (play_due + o.play_rate * dt).min(20.0);
        while play_due >= 1.0 {
            play_due -= 1.0;
            let n = channel_plays + bridge_plays;
            if n % 2 == 0 {
                let Some(call) = relays.get((n as usize / 2) % relays.len().max(1)) else {
                    continue;
                };
                let leg = call.legs.last().cloned().unwrap_or_default();
                let r = client
                    .expect_ok(
                        Method::Post,
                        &format!("/ari/channels/{}/play?media=tone:ring", encode(&leg)),
                    )
                    .and_then(|b| id_of(&b, "playback"));
                if let Some(id) = d.note(r) {
                    channel_plays += 1;
                    let hold = Duration::from_millis(1000 + (n % 3) * 1000);
                    playing.push_back((id, now + hold));
                }
            } else {
                let bridge = if n % 4 == 1 && !mixes.is_empty() {
                    mixes[(n as usize / 4) % mixes.len()].bridge.clone()
                } else if !relays.is_empty() {
                    relays[(n as usize / 4) % relays.len()].bridge.clone()
                } else {
                    continue;
                };
                let r = client
                    .expect_ok(
                        Method::Post,
                        &format!(
                            "/ari/bridges/{}/play?media={}",
                            encode(&bridge),
                            encode("tone:!950/330,tone:!1400/330,tone:!1800/330")
                        ),
                    )
                    .and_then(|b| id_of(&b, "playback"));
                if let Some(id) = d.note(r) {
                    bridge_plays += 1;
                    ended.push_back(id);
                }
            }
        }
        while playing.front().is_some_and(|(_, at)| *at <= now) {
            let (id, _) = playing.pop_front().expect("front");
            // 404: its channel went meanwhile (rotation), which ends it too.
            match client.request(Method::Delete, &format!("/ari/playbacks/{}", encode(&id))) {
                Ok(r) if r.status == 204 => {
                    stopped += 1;
                    ended.push_back(id);
                }
                Ok(r) if r.status == 404 => {}
                other => {
                    d.note::<()>(
                        other.and_then(|r| Err(format!("stop playback: HTTP {}", r.status))),
                    );
                }
            }
        }
        while ended.len() > 100 {
            ended.pop_front();
        }
        if rss_mid.is_none() && now >= started + o.duration / 2 {
            rss_mid = Some(status_kib(pid, "VmRSS:")?);
        }
        let legs = relays.iter().chain(&mixes).chain(&churn);
        peak_legs = peak_legs.max(legs.map(|c| c.legs.len()).sum());
        if turn % 200 == 0 && !o.json {
            eprintln!(
                "soak: {:>5.0} s, {} legs, {} created, {} churned, {} playbacks, {} errors",
                started.elapsed().as_secs_f64(),
                relays
                    .iter()
                    .chain(&mixes)
                    .chain(&churn)
                    .map(|c| c.legs.len())
                    .sum::<usize>(),
                d.created,
                churned,
                channel_plays + bridge_plays,
                d.errors
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ran = started.elapsed();
    let peak_sample = sample(&client, pid)?;

    // Tear everything down.
    for (id, _) in playing.drain(..) {
        let _ = client.request(Method::Delete, &format!("/ari/playbacks/{}", encode(&id)));
    }
    for c in relays
        .drain(..)
        .chain(mixes.drain(..))
        .chain(churn.drain(..))
    {
        d.hangup(c);
    }
    let (created, hung_up, errors, first_error) = (d.created, d.hung_up, d.errors, d.first_error);
    media.stop();
    let (sent, received) = media.totals();
    drop(media);
    events.wait_quiet(Duration::from_secs(1), o.settle);
    // Let the node quiesce: gauges at 0 and every port pair back.
    let settle_end = Instant::now() + o.settle;
    let mut after = sample(&client, pid)?;
    while Instant::now() < settle_end
        && (after.channels > 0
            || after.bridges > 0
            || after.ports_free < after.ports_total
            || after.fds > before.fds + o.fd_slack
            || after.threads != before.threads)
    {
        std::thread::sleep(Duration::from_millis(500));
        after = sample(&client, pid)?;
    }
    let mut playbacks_left = 0u64;
    for id in &ended {
        let r = client.request(Method::Get, &format!("/ari/playbacks/{}", encode(id)))?;
        if r.status != 404 {
            playbacks_left += 1;
        }
    }
    let created_events = events.count("ChannelCreated");
    let destroyed_events = events.count("ChannelDestroyed");
    let events_error = events.error.lock().unwrap().clone();

    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };
    check(
        errors == 0,
        format!("{errors} requests failed; first: {first_error:?}"),
    );
    check(events_error.is_none(), format!("events: {events_error:?}"));
    check(
        after.listed_channels == 0 && after.channels == 0,
        format!(
            "channels left: GET {} / gauge {}",
            after.listed_channels, after.channels
        ),
    );
    check(
        after.listed_bridges == 0 && after.bridges == 0,
        format!(
            "bridges left: GET {} / gauge {}",
            after.listed_bridges, after.bridges
        ),
    );
    check(
        after.ports_free == after.ports_total && after.ports_free == before.ports_free,
        format!(
            "port pairs free {} of {} (at start {})",
            after.ports_free, after.ports_total, before.ports_free
        ),
    );
    check(
        after.fds <= before.fds + o.fd_slack,
        format!(
            "descriptors {} → {} (slack {})",
            before.fds, after.fds, o.fd_slack
        ),
    );
    check(
        after.threads == before.threads,
        format!("threads {} → {}", before.threads, after.threads),
    );
    check(
        after.rss_kib <= before.rss_kib + o.rss_growth_mib * 1024,
        format!(
            "RSS {} KiB → {} KiB (bound +{} MiB)",
            before.rss_kib, after.rss_kib, o.rss_growth_mib
        ),
    );
    // A leak grows with the calls made; the working set of ~1,000 legs
    // reaches its plateau within minutes: from half time to the end of a
    // run of 6 minutes or more RSS may grow by little.
    let rss_mid = rss_mid.unwrap_or(peak_sample.rss_kib);
    if o.duration >= Duration::from_secs(360) {
        check(
            peak_sample.rss_kib <= rss_mid + o.rss_late_growth_mib * 1024,
            format!(
                "RSS still growing: {} KiB at half time, {} KiB at the end of the run (bound +{} MiB)",
                rss_mid, peak_sample.rss_kib, o.rss_late_growth_mib
            ),
        );
    }
    check(
        playbacks_left == 0,
        format!(
            "{playbacks_left} of {} ended playbacks still found",
            ended.len()
        ),
    );
    check(
        created_events == created && destroyed_events == created,
        format!(
            "{created} channels created: {created_events} ChannelCreated, {destroyed_events} ChannelDestroyed"
        ),
    );
    for class in [Class::Relay, Class::Mix, Class::Churn] {
        let s = sent.get(&class).copied().unwrap_or(0);
        let r = received.get(&class).copied().unwrap_or(0);
        // A mix listener hears every talker's mix: compare per talker only
        // for the one-way classes.
        let ok = match class {
            Class::Mix => s == 0 || r > 0,
            _ => s == 0 || r * 10 >= s * 9,
        };
        check(
            ok,
            format!("{} media: {s} sent, {r} received", class.name()),
        );
    }
    let json = json!({
        "duration_s": ran.as_secs_f64().round(),
        "setup_s": (setup.as_secs_f64() * 10.0).round() / 10.0,
        "peak_legs": peak_legs,
        "channels_created": created,
        "channels_hung_up": hung_up,
        "calls_churned": churned,
        "rotations": rotations,
        "channel_playbacks": channel_plays,
        "channel_playbacks_stopped": stopped,
        "bridge_playbacks": bridge_plays,
        "playback_events": {
            "started": events.count("PlaybackStarted"),
            "finished": events.count("PlaybackFinished"),
        },
        "channel_events": {"created": created_events, "destroyed": destroyed_events},
        "media_sent": sent.iter().map(|(k, v)| (k.name().to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "media_received": received.iter().map(|(k, v)| (k.name().to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "requests_failed": errors,
        "rss_kib": {"start": before.rss_kib, "half_time": rss_mid, "run_end": peak_sample.rss_kib, "hwm": after.hwm_kib, "end": after.rss_kib},
        "fds": {"start": before.fds, "run_end": peak_sample.fds, "end": after.fds},
        "threads": {"start": before.threads, "end": after.threads, "io_uring_workers_end": after.iou_workers},
        "port_pairs": {"total": after.ports_total, "free_start": before.ports_free, "free_run_end": peak_sample.ports_free, "free_end": after.ports_free},
        "left": {"channels": after.listed_channels, "bridges": after.listed_bridges, "playbacks_of_last_100_ended": playbacks_left},
    });
    drop(events);
    Ok(Report { json, failures })
}
