//! The load generator's media scenarios against a real `crossbar` node:
//! builds `crossbar-load` (package `crossbar-tools`), starts a node per test
//! (harness of `tests/common`), runs each scenario briefly with `--json` and
//! checks the figures are sane: packets flowed, latency and CPU were
//! measured, nothing was lost at this tiny load. No wall-clock assertions.

mod common;

use std::process::Command;

use serde_json::Value;

/// Runs the tool with `args` + `--json`; returns its JSON lines.
fn run_json(args: &[&str]) -> Vec<Value> {
    let out = Command::new(common::load_tool())
        .args(args)
        .arg("--json")
        .output()
        .expect("run crossbar-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "crossbar-load {args:?} failed: {stderr}\n{stdout}"
    );
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

/// Packets flowed both ways, latency and CPU measured, no loss.
#[track_caller]
fn assert_clean_two_party(run: &Value, calls: u64) {
    assert_eq!(run["legs"].as_u64(), Some(2 * calls), "{run}");
    assert!(num(run, "packets_in") > 0.0, "{run}");
    assert!(num(run, "packets_out") > 0.0, "{run}");
    assert_eq!(run["lost"].as_u64(), Some(0), "{run}");
    assert_eq!(run["send_errors"].as_u64(), Some(0), "{run}");
    assert!(num(run, "latency_samples") > 0.0, "{run}");
    let (p50, p99, max) = (
        num(run, "latency_p50_us"),
        num(run, "latency_p99_us"),
        num(run, "latency_max_us"),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{run}");
    assert!(num(run, "server_cpu_ms") >= 0.0, "{run}");
    assert!(num(run, "server_us_per_packet") >= 0.0, "{run}");
    assert!(num(run, "tool_cpu_pct") >= 0.0, "{run}");
    // 50 packets per second per leg, give or take the window's edges.
    assert!(num(run, "min_leg_ratio") >= 0.9, "{run}");
    assert_eq!(run["interrupted"], false, "{run}");
}

#[test]
fn relay_with_reflector_baseline() {
    let mut node = common::Server::start();
    let url = node.url("");
    let pid = node.pid().to_string();
    let runs = run_json(&[
        "relay",
        "--url",
        &url,
        // Enough packets (2,000 a second) that the node's CPU time shows in
        // procfs's 10 ms ticks on either driver.
        "--calls",
        "20",
        "--duration",
        "2s",
        "--warmup",
        "500ms",
        "--pid",
        &pid,
        "--per-thread",
    ]);
    assert_eq!(runs.len(), 2, "crossbar run and reflector run: {runs:?}");
    let (relay, base) = (&runs[0], &runs[1]);
    assert_eq!(relay["scenario"], "relay");
    assert_eq!(base["scenario"], "reflector");
    assert_clean_two_party(relay, 20);
    assert_clean_two_party(base, 20);
    assert!(num(relay, "vs_reflector") > 0.0, "{relay}");
    assert!(
        relay["server_threads_cpu_ms"]
            .as_object()
            .is_some_and(|t| !t.is_empty()),
        "{relay}"
    );
    assert!(node.alive(), "crossbar died");
    // Everything the tool created is gone.
    let channels = node.get("/ari/channels");
    assert_eq!(
        channels.ok().as_array().map(Vec::len),
        Some(0),
        "{channels:?}"
    );
    let bridges = node.get("/ari/bridges");
    assert_eq!(
        bridges.ok().as_array().map(Vec::len),
        Some(0),
        "{bridges:?}"
    );
}

#[test]
fn reflector_alone() {
    let runs = run_json(&[
        "reflector",
        "--calls",
        "3",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
    ]);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["scenario"], "reflector");
    assert_clean_two_party(&runs[0], 3);
    assert!(num(&runs[0], "server_cpu_ms") > 0.0, "{}", runs[0]);
}

#[test]
fn transcode_pcmu_pcma() {
    let mut node = common::Server::start();
    let url = node.url("");
    // No --pid: the tool finds the process listening on the ARI port.
    let runs = run_json(&[
        "transcode",
        "--url",
        &url,
        "--calls",
        "1",
        "--pair",
        "pcmu-pcma",
        "--duration",
        "2s",
        "--warmup",
        "500ms",
        "--no-baseline",
    ]);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["scenario"], "transcode");
    assert_eq!(
        runs[0]["params"]["pid"].as_u64(),
        Some(u64::from(node.pid()))
    );
    assert_clean_two_party(&runs[0], 1);
    assert!(node.alive(), "crossbar died");
    assert_eq!(
        node.get("/ari/channels").ok().as_array().map(Vec::len),
        Some(0)
    );
}

#[test]
fn media_scenarios_refuse_remote_targets_and_bad_usage() {
    let out = Command::new(common::load_tool())
        .args(["relay", "--url", "http://192.0.2.1:8088", "--calls", "1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
    // rtpengine's ng address obeys the same rule (no rtpengine needed).
    let out = Command::new(common::load_tool())
        .args(["relay", "--rtpengine", "192.0.2.1:2223", "--calls", "1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
    for bad in [
        &["relay", "--calls", "0"][..],
        &["mix", "--rtpengine", "127.0.0.1:2223"],
        &[
            "relay",
            "--compare",
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "--rtpengine",
            "127.0.0.1:2223",
        ],
        &["relay", "--duration", "601s"],
        &["mix", "--talkers", "2"],
        &["transcode", "--pair", "pcmu-g729"],
    ] {
        let out = Command::new(common::load_tool())
            .args(bad)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn mix_of_four() {
    let mut node = common::Server::start();
    let url = node.url("");
    let pid = node.pid().to_string();
    let runs = run_json(&[
        "mix",
        "--url",
        &url,
        "--participants",
        "4",
        "--bridges",
        "1",
        "--talkers",
        "0.5",
        "--duration",
        "2s",
        "--warmup",
        "1s",
        "--pid",
        &pid,
    ]);
    assert_eq!(runs.len(), 2, "mix run and reflector run: {runs:?}");
    let mix = &runs[0];
    assert_eq!(mix["scenario"], "mix");
    assert_eq!(mix["legs"].as_u64(), Some(4), "{mix}");
    assert!(
        num(mix, "packets_in") > 0.0 && num(mix, "packets_out") > 0.0,
        "{mix}"
    );
    // Each participant received at least 90% of the frames a 20 ms tick sends.
    assert!(num(mix, "min_leg_ratio") >= 0.9, "{mix}");
    // The marker bursts were heard: latency measured through the mix.
    assert!(num(mix, "latency_samples") > 0.0, "{mix}");
    assert!(num(mix, "latency_p50_us") > 0.0, "{mix}");
    assert!(num(mix, "server_us_per_participant_s") > 0.0, "{mix}");
    assert!(num(mix, "vs_reflector") > 0.0, "{mix}");
    assert_eq!(runs[1]["scenario"], "reflector");
    assert!(node.alive(), "crossbar died");
    assert_eq!(
        node.get("/ari/channels").ok().as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(
        node.get("/ari/bridges").ok().as_array().map(Vec::len),
        Some(0)
    );
}

#[test]
fn churn_short() {
    let mut node = common::Server::start();
    let url = node.url("");
    let runs = run_json(&[
        "churn",
        "--url",
        &url,
        "--rate",
        "10",
        "--duration",
        "1s",
        "--call-time",
        "100ms",
    ]);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let c = &runs[0];
    assert_eq!(c["scenario"], "churn");
    assert_eq!(c["calls_attempted"].as_u64(), Some(10), "{c}");
    assert_eq!(c["calls_completed"].as_u64(), Some(10), "{c}");
    assert_eq!(c["failures"].as_u64(), Some(0), "{c}");
    assert_eq!(c["media_failures"].as_u64(), Some(0), "{c}");
    assert!(num(c, "media_received") > 0.0, "{c}");
    let (p50, p99) = (num(c, "setup_p50_ms"), num(c, "setup_p99_ms"));
    assert!(p50 > 0.0 && p50 <= p99, "{c}");
    assert!(num(c, "server_cpu_ms") >= 0.0, "{c}");
    assert!(node.alive(), "crossbar died");
    assert_eq!(
        node.get("/ari/channels").ok().as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(
        node.get("/ari/bridges").ok().as_array().map(Vec::len),
        Some(0)
    );
}
