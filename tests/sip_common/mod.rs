//! SIPp for the SIP tests: a scenario of tests/sipp/ run in the background
//! on ports of `common::sip_port`, bounded, its exit code asserted, its
//! `-trace_msg` log readable. Each test binary uses what it needs.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{sip_port, temp_path};

/// A SIPp run in the background.
pub struct Sipp {
    child: Child,
    what: String,
    dir: std::path::PathBuf,
}

impl Sipp {
    /// `sipp -sf tests/sipp/SCENARIO ARGS…` on a free port, bounded at 20 s
    /// of call time.
    pub fn start(scenario: &str, args: &[&str]) -> (Sipp, u16) {
        let port = sip_port();
        let media = sip_port();
        let dir = temp_path("sipp");
        std::fs::create_dir_all(&dir).expect("sipp dir");
        let mut cmd = Command::new("sipp");
        cmd.arg("-sf")
            .arg(format!(
                "{}/tests/sipp/{scenario}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1", "-nostdin"])
            .args(["-p", &port.to_string(), "-mp", &media.to_string()])
            .args(["-timeout", "20s", "-timeout_error"])
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .expect("sipp (Debian package sip-tester; tests/run installs it)");
        (
            Sipp {
                child,
                what: format!("{scenario} {args:?}"),
                dir,
            },
            port,
        )
    }

    /// Waits (at most 30 s) and asserts SIPp's exit code 0.
    pub fn success(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait sipp") {
                let mut out = String::new();
                if let Some(mut o) = self.child.stdout.take() {
                    let _ = o.read_to_string(&mut out);
                }
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                let tail: String = out.lines().rev().take(40).collect::<Vec<_>>().join("\n");
                assert!(
                    status.success(),
                    "sipp {} exited {status}:\n{err}\n{tail}",
                    self.what
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sipp {} did not finish",
                self.what
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Sipp {
    /// What `-trace_msg` logged (the messages SIPp sent and received).
    pub fn messages(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .ends_with("_messages.log")
            {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        text
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
