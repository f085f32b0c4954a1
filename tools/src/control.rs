//! The `control` scenario: externalMedia create, bridge join and hang-up of N
//! legs over ARI, one request at a time, with latency histograms, the events
//! each phase caused on the app's socket, and the server's CPU time.
//!
//! Invariant: whatever this scenario created (legs, the bridge) is torn down
//! before [`run`] returns, on success and on error alike.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::ari::{encode, id_of, Client, Method, Target};
use crate::events::{EventCounter, Tally};
use crate::procstat;

/// The most legs one run may create.
const MAX_LEGS: usize = 100_000;

/// Command-line options of `crossbar-load control`.
#[derive(Clone, Debug)]
pub struct Options {
    pub url: String,
    pub user: String,
    pub password: String,
    pub app: String,
    pub legs: usize,
    pub pid: Option<u32>,
    pub json: bool,
    pub timeout: Duration,
    pub settle: Duration,
    pub settle_max: Duration,
    pub hold: Option<Duration>,
    pub rtp_host: IpAddr,
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
            legs: 400,
            pid: None,
            json: false,
            timeout: Duration::from_millis(5000),
            settle: Duration::from_millis(250),
            settle_max: Duration::from_millis(30_000),
            hold: None,
            rtp_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            allow_remote: false,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            match name {
                "--json" | "--allow-remote" => {
                    if inline.is_some() {
                        return Err(format!("{name} takes no value"));
                    }
                    if name == "--json" {
                        o.json = true;
                    } else {
                        o.allow_remote = true;
                    }
                    continue;
                }
                "--help" | "-h" => return Err("help requested".into()),
                _ => {}
            }
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))?,
            };
            let ms = |v: &str| -> Result<Duration, String> {
                v.parse::<u64>()
                    .ok()
                    .filter(|&n| (1..=3_600_000).contains(&n))
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        format!("{name}: expected milliseconds in 1..=3600000, got '{v}'")
                    })
            };
            match name {
                "--url" => o.url = value,
                "--user" => o.user = value,
                "--password" => o.password = value,
                "--app" if !value.is_empty() => o.app = value,
                "--legs" => {
                    o.legs = value
                        .parse()
                        .ok()
                        .filter(|&n| (1..=MAX_LEGS).contains(&n))
                        .ok_or_else(|| format!("--legs: expected 1..={MAX_LEGS}, got '{value}'"))?
                }
                "--pid" => {
                    o.pid = Some(
                        value
                            .parse()
                            .map_err(|_| format!("--pid: bad process id '{value}'"))?,
                    )
                }
                "--timeout-ms" => o.timeout = ms(&value)?,
                "--settle-ms" => o.settle = ms(&value)?,
                "--settle-max-ms" => o.settle_max = ms(&value)?,
                "--hold-ms" => o.hold = Some(ms(&value)?),
                "--rtp-host" => {
                    o.rtp_host = value
                        .parse()
                        .map_err(|_| format!("--rtp-host: expected an IP address, got '{value}'"))?
                }
                _ => return Err(format!("unknown option '{arg}'")),
            }
        }
        Ok(o)
    }
}

/// One phase's figures.
pub struct Phase {
    pub name: &'static str,
    /// Requests sent (all succeeded: the first failure aborts the run).
    pub requests: u64,
    /// Latency of each request, nanoseconds.
    pub latency: Histogram<u64>,
    /// From the phase's first request to its last reply.
    pub wall: Duration,
    /// Events from the phase's start until the socket went quiet.
    pub events: Tally,
    /// From the phase's start to its last event.
    pub last_event: Option<Duration>,
    /// Whether the socket went quiet within `--settle-max-ms`.
    pub settled: bool,
    /// Server CPU (ticks) from the phase's start until the socket went quiet.
    pub cpu_ticks: Option<u64>,
    /// The bridge creation's latency (join phase only).
    pub extra: Option<(&'static str, Duration)>,
}

/// One line of the events-by-type listing: phase, counts, last event, settled.
type EventRow<'a> = (&'a str, &'a BTreeMap<String, u64>, Option<Duration>, bool);

/// The whole run.
pub struct Report {
    pub url: String,
    pub app: String,
    pub legs: usize,
    pub pid: Option<u32>,
    pub clk_tck: u64,
    pub phases: Vec<Phase>,
    pub cleanup_events: Tally,
}

/// What exists on the server and must be torn down.
#[derive(Default)]
struct Created {
    legs: Vec<String>,
    bridge: Option<String>,
}

/// Runs the scenario; on error, cleans up and says what failed.
pub fn run(o: &Options) -> Result<Report, String> {
    let target = Target::parse(&o.url)?;
    if !target.is_loopback() && !o.allow_remote {
        return Err(format!(
            "refusing to load {}: not a loopback address (127.0.0.0/8, localhost); pass --allow-remote if you mean it",
            target.host
        ));
    }
    let client = Client::new(&target, &o.user, &o.password, o.timeout);
    client
        .expect_ok(Method::Get, "/ari/asterisk/ping")
        .map_err(|e| format!("the server does not answer ARI: {e}"))?;
    let rtp = UdpSocket::bind((o.rtp_host, 0))
        .map_err(|e| format!("cannot bind a UDP socket on {}: {e}", o.rtp_host))?;
    let rtp_addr = rtp
        .local_addr()
        .map_err(|e| format!("UDP socket address: {e}"))?;
    let events = EventCounter::connect(&target, &o.user, &o.password, &o.app, o.timeout)?;
    wait_for_app(&client, &o.app, o.timeout)?;

    let mut created = Created::default();
    let result = phases(o, &client, &events, &rtp_addr.to_string(), &mut created);
    let cleanup_start = events.tally().unwrap_or_default();
    let cleanup_error = cleanup(&client, &mut created);
    let now = Instant::now();
    events.wait_quiet(now, now, o.settle, o.settle_max);
    let cleanup_events = events
        .tally()
        .map(|t| t.since(&cleanup_start))
        .unwrap_or_default();
    events.close();
    drop(rtp);
    let phases = result?;
    if let Some(e) = cleanup_error {
        return Err(format!("cleanup failed: {e}"));
    }
    Ok(Report {
        url: target.base,
        app: o.app.clone(),
        legs: o.legs,
        pid: o.pid,
        clk_tck: procstat::clk_tck(),
        phases,
        cleanup_events,
    })
}

/// The app exists once the server has registered the socket (which may be
/// just after the handshake's reply): poll for it, bounded.
pub(crate) fn wait_for_app(client: &Client, app: &str, timeout: Duration) -> Result<(), String> {
    let path = format!("/ari/applications/{}", encode(app));
    let start = Instant::now();
    loop {
        let reply = client.request(Method::Get, &path)?;
        if reply.status == 200 {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(format!(
                "application '{app}' not registered {} ms after the events socket opened (HTTP {})",
                timeout.as_millis(),
                reply.status
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn phases(
    o: &Options,
    client: &Client,
    events: &EventCounter,
    external_host: &str,
    created: &mut Created,
) -> Result<Vec<Phase>, String> {
    let app = encode(&o.app);
    let host = encode(external_host);
    let mut out = Vec::with_capacity(3);

    let mut w = Window::open(o, events, "create")?;
    for _ in 0..o.legs {
        stop_if_interrupted()?;
        let path =
            format!("/ari/channels/externalMedia?app={app}&external_host={host}&format=ulaw");
        let body = w.timed(|| client.expect_ok(Method::Post, &path))?;
        created.legs.push(id_of(&body, "externalMedia")?);
    }
    out.push(w.close(o, events)?);

    let mut w = Window::open(o, events, "join")?;
    let t = Instant::now();
    let body = client.expect_ok(Method::Post, "/ari/bridges?type=mixing&name=crossbar-load")?;
    w.extra = Some(("bridge_create", t.elapsed()));
    let bridge = id_of(&body, "bridge create")?;
    created.bridge = Some(bridge.clone());
    let bridge = encode(&bridge);
    w.start_requests();
    for leg in &created.legs {
        stop_if_interrupted()?;
        let path = format!("/ari/bridges/{bridge}/addChannel?channel={}", encode(leg));
        w.timed(|| client.expect_ok(Method::Post, &path))?;
    }
    out.push(w.close(o, events)?);

    if let Some(hold) = o.hold {
        // No requests: what the full bridge costs the server while it sits there.
        let mut w = Window::open(o, events, "hold")?;
        std::thread::sleep(hold);
        w.last_reply = Instant::now();
        out.push(w.close(o, events)?);
    }

    let mut w = Window::open(o, events, "hangup")?;
    while let Some(leg) = created.legs.last() {
        let path = format!("/ari/channels/{}", encode(leg));
        w.timed(|| client.expect_ok(Method::Delete, &path))?;
        created.legs.pop();
    }
    out.push(w.close(o, events)?);
    Ok(out)
}

/// Ctrl-C ends the phases early; `run` then tears down what was created.
fn stop_if_interrupted() -> Result<(), String> {
    if crate::signal::interrupted() {
        Err("interrupted".to_string())
    } else {
        Ok(())
    }
}

/// Tears down what is left: every leg, then the bridge. Bounded by the
/// number of things created; 404s count as gone. Returns the first error.
fn cleanup(client: &Client, created: &mut Created) -> Option<String> {
    let mut first_error = None;
    let mut note = |r: Result<crate::ari::Reply, String>| match r {
        Ok(reply) if reply.status < 300 || reply.status == 404 => {}
        Ok(reply) => {
            first_error.get_or_insert(format!("HTTP {}: {}", reply.status, reply.body));
        }
        Err(e) => {
            first_error.get_or_insert(e);
        }
    };
    for leg in created.legs.drain(..) {
        note(client.request(Method::Delete, &format!("/ari/channels/{}", encode(&leg))));
    }
    if let Some(bridge) = created.bridge.take() {
        note(client.request(Method::Delete, &format!("/ari/bridges/{}", encode(&bridge))));
    }
    first_error
}

/// A phase in progress: its clocks, histogram and starting counters.
struct Window {
    name: &'static str,
    start: Instant,
    requests_start: Instant,
    last_reply: Instant,
    tally: Tally,
    cpu: Option<u64>,
    latency: Histogram<u64>,
    requests: u64,
    extra: Option<(&'static str, Duration)>,
}

impl Window {
    fn open(o: &Options, events: &EventCounter, name: &'static str) -> Result<Window, String> {
        if !o.json {
            match (name, o.hold) {
                ("hold", Some(h)) => eprintln!("crossbar-load: hold: {} ms…", h.as_millis()),
                _ => eprintln!("crossbar-load: {name}: {} requests…", o.legs),
            }
        }
        let tally = events.tally()?;
        let cpu = o.pid.map(procstat::cpu_ticks).transpose()?;
        let latency = Histogram::new_with_bounds(1, 600_000_000_000, 3)
            .map_err(|e| format!("histogram: {e}"))?;
        let now = Instant::now();
        Ok(Window {
            name,
            start: now,
            requests_start: now,
            last_reply: now,
            tally,
            cpu,
            latency,
            requests: 0,
            extra: None,
        })
    }

    /// Requests are timed from here (after any setup request).
    fn start_requests(&mut self) {
        self.requests_start = Instant::now();
        self.last_reply = self.requests_start;
    }

    /// Runs one request and records its latency.
    fn timed<T>(&mut self, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        let t = Instant::now();
        let r =
            f().map_err(|e| format!("{} phase, request {}: {e}", self.name, self.requests + 1))?;
        self.last_reply = Instant::now();
        let ns = u64::try_from(self.last_reply.duration_since(t).as_nanos()).unwrap_or(u64::MAX);
        self.latency.saturating_record(ns.max(1));
        self.requests += 1;
        Ok(r)
    }

    /// Waits for the socket to go quiet and closes the window.
    fn close(self, o: &Options, events: &EventCounter) -> Result<Phase, String> {
        let (last, settled) =
            events.wait_quiet(self.start, self.last_reply, o.settle, o.settle_max);
        let tally = events.tally()?;
        let cpu_ticks = match (o.pid, self.cpu) {
            (Some(pid), Some(before)) => Some(procstat::cpu_ticks(pid)?.saturating_sub(before)),
            _ => None,
        };
        Ok(Phase {
            name: self.name,
            requests: self.requests,
            latency: self.latency,
            wall: self.last_reply.duration_since(self.requests_start),
            events: tally.since(&self.tally),
            last_event: last.map(|t| t.duration_since(self.start)),
            settled,
            cpu_ticks,
            extra: self.extra,
        })
    }
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A latency in ns, in a unit a person reads at a glance.
fn human_ns(ns: u64) -> String {
    match ns {
        0..=999_999 => format!("{:.0} µs", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.3} s", ns as f64 / 1e9),
    }
}

impl Phase {
    fn rate(&self) -> f64 {
        let s = self.wall.as_secs_f64();
        if s > 0.0 && self.requests > 0 {
            self.requests as f64 / s
        } else {
            0.0
        }
    }

    fn cpu(&self, clk_tck: u64) -> Option<Duration> {
        self.cpu_ticks
            .map(|t| Duration::from_secs_f64(t as f64 / clk_tck as f64))
    }
}

impl Report {
    /// One JSON line for machines.
    pub fn to_json(&self) -> String {
        let mut phases = serde_json::Map::new();
        for p in &self.phases {
            let h = &p.latency;
            let mut v = json!({
                "requests": p.requests,
                "errors": 0,
                "wall_ms": ms(p.wall),
                "req_per_s": (p.rate() * 10.0).round() / 10.0,
                "p50_us": us(h.value_at_quantile(0.5)),
                "p99_us": us(h.value_at_quantile(0.99)),
                "max_us": us(h.max()),
                "mean_us": us(h.mean() as u64),
                "events": p.events.total,
                "events_per_leg": p.events.total as f64 / self.legs as f64,
                "event_types": p.events.by_type,
                "last_event_ms": p.last_event.map(ms),
                "settled": p.settled,
                "server_cpu_ms": p.cpu(self.clk_tck).map(ms),
            });
            if let (Some((name, d)), Value::Object(map)) = (p.extra, &mut v) {
                map.insert(format!("{name}_us"), json!(us(d.as_nanos() as u64)));
            }
            phases.insert(p.name.to_string(), v);
        }
        json!({
            "scenario": "control",
            "url": self.url,
            "app": self.app,
            "legs": self.legs,
            "pid": self.pid,
            "clk_tck": self.clk_tck,
            "phases": phases,
            "cleanup": {
                "events": self.cleanup_events.total,
                "event_types": self.cleanup_events.by_type,
            },
        })
        .to_string()
    }

    /// The table for people.
    pub fn to_table(&self) -> String {
        let mut s = format!(
            "crossbar-load control: {} legs against {} (app {}), one request at a time\n\n",
            self.legs, self.url, self.app
        );
        s += &format!(
            "{:<7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>7} {:>14}\n",
            "phase",
            "requests",
            "req/s",
            "p50",
            "p99",
            "max",
            "wall",
            "events",
            "ev/leg",
            "server CPU"
        );
        for p in &self.phases {
            let h = &p.latency;
            let cpu = match p.cpu(self.clk_tck) {
                Some(c) => format!("{:.0} ms", c.as_secs_f64() * 1e3),
                None => "-".into(),
            };
            s += &format!(
                "{:<7} {:>8} {:>9.0} {:>9} {:>9} {:>9} {:>10} {:>8} {:>7.2} {:>14}\n",
                p.name,
                p.requests,
                p.rate(),
                human_ns(h.value_at_quantile(0.5)),
                human_ns(h.value_at_quantile(0.99)),
                human_ns(h.max()),
                human_ns(p.wall.as_nanos() as u64),
                p.events.total,
                p.events.total as f64 / self.legs as f64,
                cpu,
            );
        }
        s += "\nevents by type (counted until the socket was quiet):\n";
        let mut rows: Vec<EventRow> = self
            .phases
            .iter()
            .map(|p| (p.name, &p.events.by_type, p.last_event, p.settled))
            .collect();
        rows.push(("cleanup", &self.cleanup_events.by_type, None, true));
        for (name, types, last, settled) in rows {
            let list: Vec<String> = types.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let list = if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            };
            s += &format!("  {name:<7} {list}");
            if let Some(l) = last {
                s += &format!(
                    " (last {:.1} ms after the phase began)",
                    l.as_secs_f64() * 1e3
                );
            }
            if !settled {
                s += " — still arriving at --settle-max-ms";
            }
            s += "\n";
        }
        for p in &self.phases {
            if let Some((name, d)) = p.extra {
                s += &format!("  {}: {name} {}\n", p.name, human_ns(d.as_nanos() as u64));
            }
        }
        if self.pid.is_some() {
            s += &format!(
                "server CPU: utime+stime of pid {} from the phase's start until its events were quiet ({} ticks/s)\n",
                self.pid.unwrap_or(0),
                self.clk_tck
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn options() {
        let o = Options::parse(&args("--legs 20 --json --url=http://localhost:9 --pid 7")).unwrap();
        assert_eq!(
            (o.legs, o.json, o.url.as_str(), o.pid),
            (20, true, "http://localhost:9", Some(7))
        );
        assert!(Options::parse(&args("--legs 0")).is_err());
        assert!(Options::parse(&args("--legs")).is_err());
        assert!(Options::parse(&args("--bogus 1")).is_err());
        assert!(Options::parse(&args("--json=1")).is_err());
        assert!(Options::parse(&args("--settle-ms 0")).is_err());
    }

    #[test]
    fn refuses_remote_servers() {
        let mut o = Options::parse(&[]).unwrap();
        o.url = "http://192.0.2.1:8088".into();
        let e = run(&o).err().unwrap_or_default();
        assert!(e.contains("--allow-remote"), "{e}");
    }

    #[test]
    fn human_units() {
        assert_eq!(human_ns(123_456), "123 µs");
        assert_eq!(human_ns(1_500_000), "1.50 ms");
        assert_eq!(human_ns(2_000_000_000), "2.000 s");
    }
}
