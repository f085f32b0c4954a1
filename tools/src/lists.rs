//! The `lists` scenario: how long a list operation over a large table holds
//! up everyone else. Creates `--bridges` N empty mixing bridges (four
//! requests in flight), then measures `GET /ari/asterisk/ping` latency from
//! one thread, first alone (`idle`), then while another thread runs
//! `--lists` K `GET /ari/bridges` back to back (`during lists`), and
//! reports both histograms, each list's duration and size; the bridges are
//! destroyed before it returns (on errors too).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::ari::{encode, id_of, Client, Method, Target};

/// The most bridges one run may create.
const MAX_BRIDGES: usize = 200_000;
/// Requests in flight while creating and destroying.
const WORKERS: usize = 4;

/// Options of `crossbar-load lists`.
#[derive(Clone, Debug)]
pub struct Options {
    pub url: String,
    pub user: String,
    pub password: String,
    pub bridges: usize,
    pub lists: usize,
    pub json: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            url: "http://127.0.0.1:8088".into(),
            user: "asterisk".into(),
            password: "asterisk".into(),
            bridges: 50_000,
            lists: 5,
            json: false,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if arg == "--json" {
                o.json = true;
                continue;
            }
            let value = it
                .next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))?;
            let count = |max: usize| -> Result<usize, String> {
                value
                    .parse()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| format!("{arg}: expected 1..={max}, got '{value}'"))
            };
            match arg.as_str() {
                "--url" => o.url = value.clone(),
                "--user" => o.user = value.clone(),
                "--password" => o.password = value.clone(),
                "--bridges" => o.bridges = count(MAX_BRIDGES)?,
                "--lists" => o.lists = count(100)?,
                _ => return Err(format!("unknown option '{arg}'")),
            }
        }
        Ok(o)
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Pings until `stop`, recording latencies (at most 10 minutes).
fn ping_until(client: &Client, stop: &AtomicBool) -> Result<Histogram<u64>, String> {
    let mut h = histogram();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let t = Instant::now();
        client.expect_ok(Method::Get, "/ari/asterisk/ping")?;
        let _ = h.record((t.elapsed().as_nanos() as u64).max(1_000));
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(h)
}

/// Runs `f` over `items` on [`WORKERS`] threads; the first error wins.
fn in_parallel<T: Send + Sync>(
    items: &[T],
    f: impl Fn(&T) -> Result<(), String> + Sync,
) -> Result<(), String> {
    let chunk = items.len().div_ceil(WORKERS).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(|| part.iter().try_for_each(&f)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect::<Result<Vec<()>, String>>()
            .map(|_| ())
    })
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

pub fn run(o: &Options) -> Result<String, String> {
    let target = Target::parse(&o.url)?;
    if !target.is_loopback() {
        return Err("lists: loopback servers only".into());
    }
    let client = Client::new(&target, &o.user, &o.password, Duration::from_secs(30));
    client.expect_ok(Method::Get, "/ari/asterisk/ping")?;
    let ids = std::sync::Mutex::new(Vec::with_capacity(o.bridges));
    let slots: Vec<usize> = (0..o.bridges).collect();
    let created = in_parallel(&slots, |_| {
        let body = client.expect_ok(Method::Post, "/ari/bridges?type=mixing&name=lists")?;
        let id = id_of(&body, "bridge create")?;
        ids.lock().map_err(|_| "poisoned")?.push(id);
        Ok(())
    });
    let ids = ids.into_inner().unwrap_or_default();
    let measured = created.and_then(|()| measure(&client, o));
    let destroyed = in_parallel(&ids, |id| {
        client
            .request(Method::Delete, &format!("/ari/bridges/{}", encode(id)))
            .map(|_| ())
    });
    let report = measured?;
    destroyed?;
    Ok(report)
}

fn measure(client: &Client, o: &Options) -> Result<String, String> {
    // Idle: a second of pings alone.
    let stop = Arc::new(AtomicBool::new(false));
    let idle = std::thread::scope(|s| {
        let h = s.spawn(|| ping_until(client, &stop));
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap_or_else(|_| Err("pinger panicked".into()))
    })?;
    // During lists.
    stop.store(false, Ordering::Relaxed);
    let mut list_ms = Vec::new();
    let mut bytes = 0;
    let during = std::thread::scope(|s| -> Result<Histogram<u64>, String> {
        let h = s.spawn(|| ping_until(client, &stop));
        let mut result = Ok(());
        for _ in 0..o.lists {
            let t = Instant::now();
            match client.expect_ok(Method::Get, "/ari/bridges") {
                Ok(body) => {
                    bytes = body.len();
                    list_ms.push(ms(t.elapsed().as_nanos() as u64));
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let h = h.join().unwrap_or_else(|_| Err("pinger panicked".into()))?;
        result.map(|()| h)
    })?;
    let hist = |h: &Histogram<u64>| {
        json!({
            "pings": h.len(),
            "p50_ms": ms(h.value_at_quantile(0.5)),
            "p99_ms": ms(h.value_at_quantile(0.99)),
            "max_ms": ms(h.max()),
        })
    };
    let report = json!({
        "scenario": "lists",
        "bridges": o.bridges,
        "list_ms": list_ms,
        "list_bytes": bytes,
        "ping_idle": hist(&idle),
        "ping_during_lists": hist(&during),
    });
    Ok(if o.json {
        report.to_string()
    } else {
        format!(
            "lists: {} bridges, GET /ari/bridges {} bytes in {:?} ms\n  ping idle: {}\n  ping during lists: {}\n",
            o.bridges, bytes, list_ms, report["ping_idle"], report["ping_during_lists"]
        )
    })
}
