//! `crossbar-load sip` against a real `crossbar` node with SIP on a free
//! loopback port: a short, small run (10 calls, 1 s hold, with media) in
//! which every call must be answered by the tool's ARI app and hung up
//! cleanly. Counts only; no wall-clock assertions.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

#[test]
fn ten_sip_calls_are_answered_with_media() {
    let sip = common::free_port();
    let bind = format!("127.0.0.1:{sip}");
    let mut node = common::Server::start_with(&[("CROSSBAR_SIP_BIND", bind.as_str())]);
    let url = node.url("");
    let pid = node.pid().to_string();
    let out = Command::new(common::load_tool())
        .args(["sip", "--url", &url, "--sip", &bind, "--pid", &pid])
        .args(["--calls", "10", "--rate", "20", "--hold", "1s", "--json"])
        .output()
        .expect("run crossbar-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "crossbar-load sip failed: {stderr}\n{stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no output: {stderr}"));
    let run: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(run["scenario"], "sip", "{run}");
    assert_eq!(run["attempted"].as_u64(), Some(10), "{run}");
    assert_eq!(run["answered"].as_u64(), Some(10), "{run}");
    assert_eq!(run["failed"].as_u64(), Some(0), "{run}");
    assert_eq!(run["ended_by_server"].as_u64(), Some(0), "{run}");
    assert_eq!(run["app_answers"].as_u64(), Some(10), "{run}");
    assert_eq!(run["byes"].as_u64(), Some(10), "{run}");
    assert_eq!(run["byes_unanswered"].as_u64(), Some(0), "{run}");
    let (p50, p99, max) = (
        num(&run, "setup_p50_ms"),
        num(&run, "setup_p99_ms"),
        num(&run, "setup_max_ms"),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{run}");
    assert!(num(&run, "setup_rate") > 0.0, "{run}");
    // Media flowed for the hold: some packets per call (50 a second).
    assert!(num(&run, "rtp_sent") >= 10.0, "{run}");
    assert_eq!(run["rtp_send_errors"].as_u64(), Some(0), "{run}");
    assert!(num(&run, "call_seconds") > 0.0, "{run}");
    assert!(num(&run, "server_cpu_ms") >= 0.0, "{run}");
    assert!(num(&run, "server_ms_per_call") >= 0.0, "{run}");
    assert!(node.alive(), "crossbar died");
    // Every SIP channel is gone once its BYE was answered (bounded poll).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let channels = node.get("/ari/channels");
        let n = channels.ok().as_array().map(Vec::len);
        if n == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "channels left: {channels:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
