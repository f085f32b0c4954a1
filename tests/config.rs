//! The binary's configuration handling: bad configurations are refused at
//! start with exit code 2 and the key at fault, environment variables
//! override, and `--print-defaults` shows the embedded TOML.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{crossbar_command, free_port, run_to_exit, temp_path, Server};

/// Starts the binary with `toml` as its config file; expects exit code 2 and
/// returns stderr.
fn refused(toml: &str) -> String {
    let path = temp_path("bad.toml");
    std::fs::write(&path, toml).expect("write config");
    // a free port, in case the file were accepted: the run must not clash
    let port = free_port();
    // The file alone decides: no driver variable from tests/run overrides it.
    let mut cmd = crossbar_command();
    for var in common::driver::VARS {
        cmd.env_remove(var);
    }
    let out = run_to_exit(
        cmd.arg("--config")
            .arg(&path)
            .env("CROSSBAR_ARI_BIND", format!("127.0.0.1:{port}")),
    );
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{toml:?}: stderr {stderr}");
    assert!(out.stdout.is_empty(), "{toml:?}: stdout on refusal");
    stderr
}

#[test]
fn unknown_key_is_refused_with_exit_2_naming_the_key() {
    let err = refused("[ari]\nbindd = \"127.0.0.1:1\"\n");
    assert_eq!(
        err.trim_end(),
        "crossbar: bad configuration: ari.bindd: unknown key"
    );
    let err = refused("[nosuch]\nx = 1\n");
    assert_eq!(
        err.trim_end(),
        "crossbar: bad configuration: nosuch: unknown key"
    );
}

#[test]
fn bad_port_range_is_refused_with_exit_2_naming_the_key() {
    let err = refused("[rtp]\nport_min = 20000\nport_max = 10000\n");
    assert_eq!(
        err.trim_end(),
        "crossbar: bad configuration: rtp.port_min: must be non-zero and below rtp.port_max"
    );
}

#[test]
fn bad_env_value_is_refused_with_exit_2_naming_the_key() {
    let out = run_to_exit(crossbar_command().env("CROSSBAR_RTP_PORT_MIN", "lots"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("rtp.port_min (from CROSSBAR_RTP_PORT_MIN): 'lots' is not an integer"),
        "{stderr}"
    );
    let out = run_to_exit(crossbar_command().env("CROSSBAR_ARI_NOPE", "x"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown key ari.nope"), "{stderr}");
}

#[test]
fn missing_config_file_is_refused() {
    let path = temp_path("absent.toml");
    let out = run_to_exit(crossbar_command().arg("--config").arg(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot read config file"), "{stderr}");
}

#[test]
fn unknown_argument_is_refused() {
    let out = run_to_exit(crossbar_command().arg("--bogus"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "crossbar: unknown argument '--bogus' (try --help)"
    );
}

#[test]
fn env_override_of_the_bind_address_is_where_it_answers() {
    // the harness starts every server with CROSSBAR_ARI_BIND on a free port
    let s = Server::start();
    let ping = s.get("/ari/asterisk/ping");
    assert_eq!(ping.ok()["ping"], "pong");
    // and the file's value loses to the environment
    let path = temp_path("bind.toml");
    std::fs::write(&path, "[ari]\nbind = \"127.0.0.1:1\"\n").expect("write config");
    let port = free_port();
    let (rtp_min, rtp_max) = common::rtp_range(port);
    let mut child = crossbar_command()
        .arg("--config")
        .arg(&path)
        .env("CROSSBAR_ARI_BIND", format!("127.0.0.1:{port}"))
        .env("CROSSBAR_DATAPLANE_SHARDS", "1")
        .env("CROSSBAR_DATAPLANE_PIN", "false")
        .env("CROSSBAR_RTP_PORT_MIN", rtp_min.to_string())
        .env("CROSSBAR_RTP_PORT_MAX", rtp_max.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(500)))
        .build()
        .new_agent();
    let deadline = Instant::now() + Duration::from_secs(10);
    let answered = loop {
        let r = agent
            .get(format!("http://127.0.0.1:{port}/ari/asterisk/ping"))
            .header("Authorization", common::basic("asterisk", "asterisk"))
            .call();
        if let Ok(mut r) = r {
            break Some((r.status().as_u16(), r.body_mut().read_to_string().ok()));
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&path);
    let (status, body) = answered.expect("no answer on the CROSSBAR_ARI_BIND port");
    assert_eq!(status, 200);
    assert!(body.unwrap_or_default().contains("\"ping\":\"pong\""));
}

#[test]
fn env_override_of_credentials() {
    let s = Server::start_with(&[
        ("CROSSBAR_ARI_USERNAME", "ops"),
        ("CROSSBAR_ARI_PASSWORD", "s3cret"),
    ]);
    let r = s.request(
        "GET",
        "/ari/asterisk/ping",
        None,
        common::Auth::Basic("ops", "s3cret"),
    );
    assert_eq!(r.ok()["ping"], "pong");
    s.get("/ari/asterisk/ping")
        .assert_error(401, "Authentication required");
}

#[test]
fn print_defaults_prints_the_embedded_toml() {
    let out = run_to_exit(crossbar_command().arg("--print-defaults"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        crossbar::config::DEFAULT_TOML
    );
    // and it is a valid configuration file as it stands
    let path = temp_path("defaults.toml");
    std::fs::write(&path, &out.stdout).expect("write");
    let text = std::fs::read_to_string(&path).expect("read");
    let _ = std::fs::remove_file(&path);
    let parsed = crossbar::config::Config::from_layers(Some(&text), []).expect("valid");
    assert_eq!(parsed.ari.bind.to_string(), "127.0.0.1:8088");
}

#[test]
fn metrics_and_log_name_the_data_plane_driver() {
    let epoll = Server::start_with(&[("CROSSBAR_DATAPLANE_IO", "epoll")]);
    let text = epoll.get("/metrics").text;
    assert!(
        text.contains(
            r#"crossbar_dataplane_driver{driver="epoll",reason="dataplane.io = \"epoll\""} 1"#
        ),
        "{text}"
    );
    let auto = Server::start_with(&[("CROSSBAR_DATAPLANE_IO", "auto")]);
    let text = auto.get("/metrics").text;
    assert!(
        text.contains(
            "crossbar_dataplane_driver{driver=\"io_uring\",reason=\"auto: io_uring works;"
        ) || text.contains(
            "crossbar_dataplane_driver{driver=\"epoll\",reason=\"auto: io_uring unusable"
        ),
        "{text}"
    );
}

#[test]
fn unknown_io_uring_feature_is_refused_naming_the_key() {
    let err = refused("[dataplane]\nuring_disable = \"multishot_recv,warp_drive\"\n");
    assert!(
        err.contains("dataplane.uring_disable: unknown io_uring feature 'warp_drive'"),
        "{err}"
    );
    let err = refused("[dataplane]\nio = \"kqueue\"\n");
    assert!(err.contains("dataplane.io"), "{err}");
}

/// A healthy node says so per shard, and its watchdog leaves it be; a
/// stall limit out of range is refused naming the key.
#[test]
fn metrics_report_every_shard_up_and_the_node_healthy() {
    let s = Server::start_with(&[("CROSSBAR_DATAPLANE_SHARDS", "2")]);
    // For longer than the stall limit (2 s) and several watchdog rounds
    // (500 ms each), nothing is declared dead: the idle shards' heartbeat
    // (their timer wakes them every 500 ms) keeps them alive.
    for _ in 0..6 {
        let text = s.get("/metrics").text;
        for line in [
            "crossbar_shard_up{shard=\"0\"} 1",
            "crossbar_shard_up{shard=\"1\"} 1",
            "crossbar_healthy 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
        }
        std::thread::sleep(std::time::Duration::from_millis(600));
    }
    let err = refused("[dataplane]\nshard_stall_ms = 50\n");
    assert!(
        err.contains("dataplane.shard_stall_ms: must be 100 to 60000"),
        "{err}"
    );
}
