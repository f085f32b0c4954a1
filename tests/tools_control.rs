//! The load generator's control scenario against a real `crossbar` node:
//! builds `crossbar-load` (package `crossbar-tools`), starts the node on a
//! free port, runs `control --legs 20 --json` and checks the figures and the
//! exact events crossbar sends in its default mode (`ari.bridgepeer = "off"`).

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const LEGS: u64 = 20;

/// A running node, killed when dropped.
struct Node {
    child: Child,
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ping(url: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent
        .get(format!("{url}/ari/asterisk/ping"))
        .header("Authorization", "Basic YXN0ZXJpc2s6YXN0ZXJpc2s=")
        .call()
        .map(|r| r.status() == 200)
        .unwrap_or(false)
}

fn start_node() -> Node {
    let port = common::free_port();
    // The harness's per-port range (60 ports): clear of parallel tests' nodes.
    let rtp = common::rtp_range(port);
    let child = common::crossbar_command()
        .env("CROSSBAR_ARI_BIND", format!("127.0.0.1:{port}"))
        .env("CROSSBAR_RTP_PORT_MIN", rtp.0.to_string())
        .env("CROSSBAR_RTP_PORT_MAX", rtp.1.to_string())
        .env("CROSSBAR_DATAPLANE_SHARDS", "1")
        .env("CROSSBAR_DATAPLANE_PIN", "false")
        .env("CROSSBAR_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start crossbar");
    let mut node = Node {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let start = Instant::now();
    while !ping(&node.url) {
        if let Ok(Some(status)) = node.child.try_wait() {
            panic!("crossbar exited during start: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "crossbar did not answer ping"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    node
}

fn run_tool(args: &[&str]) -> Output {
    Command::new(common::load_tool())
        .args(args)
        .output()
        .expect("run crossbar-load")
}

fn types(phase: &Value) -> Vec<(String, u64)> {
    phase["event_types"]
        .as_object()
        .expect("event_types")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("count")))
        .collect()
}

#[test]
fn control_scenario_against_crossbar() {
    let tool = common::load_tool();
    let mut node = start_node();
    let pid = node.child.id().to_string();
    let legs = LEGS.to_string();
    let out = Command::new(tool)
        .args(["control", "--url", &node.url, "--user", "asterisk"])
        .args(["--password", "asterisk", "--legs", &legs, "--json"])
        .args(["--pid", &pid, "--settle-ms", "200", "--hold-ms", "100"])
        .output()
        .expect("run crossbar-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "crossbar-load failed: {stderr}\n{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON line expected: {stdout}");
    let report: Value = serde_json::from_str(lines[0]).expect("JSON report");

    assert_eq!(report["scenario"], "control");
    assert_eq!(report["legs"].as_u64(), Some(LEGS));
    let per_leg: [(&str, &[&str]); 3] = [
        ("create", &["StasisStart"]),
        ("join", &["ChannelEnteredBridge"]),
        (
            "hangup",
            &[
                "ChannelDestroyed",
                "ChannelHangupRequest",
                "ChannelLeftBridge",
                "StasisEnd",
            ],
        ),
    ];
    for (name, expected) in per_leg {
        let p = &report["phases"][name];
        assert_eq!(p["requests"].as_u64(), Some(LEGS), "{name}: {p}");
        assert_eq!(p["errors"].as_u64(), Some(0), "{name}: {p}");
        assert_eq!(p["settled"], true, "{name}: {p}");
        let p50 = p["p50_us"].as_f64().expect("p50");
        let p99 = p["p99_us"].as_f64().expect("p99");
        let max = p["max_us"].as_f64().expect("max");
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{name}: {p}");
        assert!(p["wall_ms"].as_f64().expect("wall") > 0.0, "{name}: {p}");
        assert!(p["req_per_s"].as_f64().expect("rate") > 0.0, "{name}: {p}");
        assert!(
            p["server_cpu_ms"].as_f64().expect("cpu") >= 0.0,
            "{name}: {p}"
        );
        let want: Vec<(String, u64)> = expected.iter().map(|t| (t.to_string(), LEGS)).collect();
        assert_eq!(types(p), want, "{name}: exact events");
        assert_eq!(p["events"].as_u64(), Some(LEGS * expected.len() as u64));
        assert_eq!(p["events_per_leg"].as_f64(), Some(expected.len() as f64));
    }
    let hold = &report["phases"]["hold"];
    assert_eq!(hold["requests"].as_u64(), Some(0), "{hold}");
    assert_eq!(hold["events"].as_u64(), Some(0), "{hold}");
    assert!(
        hold["wall_ms"].as_f64().expect("hold wall") >= 100.0,
        "{hold}"
    );
    assert!(
        report["phases"]["join"]["bridge_create_us"]
            .as_f64()
            .expect("bridge")
            > 0.0
    );
    // The bridge is destroyed after its last member left: nobody is subscribed to it any more.
    assert_eq!(report["cleanup"]["events"].as_u64(), Some(0), "{report}");

    assert!(
        node.child.try_wait().expect("wait").is_none(),
        "crossbar died"
    );
    assert!(ping(&node.url), "crossbar stopped answering");
}

#[test]
fn refuses_remote_servers_and_bad_usage() {
    let out = run_tool(&["control", "--url", "http://192.0.2.1:8088", "--legs", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
    let out = run_tool(&["control", "--legs", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_tool(&["nonsense"]);
    assert_eq!(out.status.code(), Some(2));
}
