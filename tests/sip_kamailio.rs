//! crossbar behind Kamailio: the real binary with SIP on a loopback port,
//! Kamailio 5.6 (Debian package `kamailio`) in front of it running the
//! config the README documents (docs/kamailio/kamailio.cfg, its ports set
//! with `-A`), SIPp (Debian `sip-tester`) calling Kamailio, and an ARI
//! application on the events WebSocket.

mod common;
mod sip_common;

use std::fs::File;
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use sip_common::Sipp;

const PCAP: &str = "/usr/share/sip-tester/g711a.pcap";

/// A node with SIP on a free port (codecs: A-law first, the pcap's codec).
fn node() -> (Server, u16) {
    let sip = sip_port();
    let bind = format!("127.0.0.1:{sip}");
    let env = [
        ("CROSSBAR_SIP_BIND", bind.as_str()),
        ("CROSSBAR_SIP_CODECS", "alaw,ulaw"),
    ];
    (Server::start_with(&env), sip)
}

/// Kamailio in the foreground on a free UDP port, dispatching to `nodes`
/// (SIP ports on 127.0.0.1), probing them every second.
struct Kamailio {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Kamailio {
    fn start(nodes: &[u16]) -> Kamailio {
        let dir = temp_path("kamailio");
        std::fs::create_dir_all(&dir).expect("kamailio run dir");
        let list = dir.join("dispatcher.list");
        let text: String = nodes
            .iter()
            .map(|p| format!("1 sip:127.0.0.1:{p}\n"))
            .collect();
        std::fs::write(&list, text).expect("dispatcher.list");
        let port = sip_port();
        let log = File::create(dir.join("kamailio.log")).expect("kamailio log");
        let child = Command::new("kamailio")
            // Its own process group: the workers it forks go with it.
            .process_group(0)
            .args(["-DD", "-E", "-f"])
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/docs/kamailio/kamailio.cfg"
            ))
            .arg("-Y")
            .arg(&dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .arg("-w")
            .arg(&dir)
            .args(["-A", &format!("LISTEN=udp:127.0.0.1:{port}")])
            .args(["-A", &format!("DS_LIST=\"{}\"", list.display())])
            .args(["-A", "DS_PING_INTERVAL=1"])
            .args(["-m", "32", "-M", "4"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("kamailio (Debian package kamailio)");
        let mut k = Kamailio { child, port, dir };
        // Listening once its UDP port can no longer be bound.
        let deadline = Instant::now() + Duration::from_secs(10);
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(
                matches!(k.child.try_wait(), Ok(None)),
                "kamailio exited:\n{}",
                k.log()
            );
            assert!(
                Instant::now() < deadline,
                "kamailio not listening:\n{}",
                k.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        k
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The dispatcher's flags for a node (`AP`: active and probed; `IP`:
    /// inactive, probed), from `kamcmd dispatcher.list`.
    fn node_flags(&self, port: u16) -> Option<String> {
        let out = Command::new("kamcmd")
            .arg("-s")
            .arg(format!("unix:{}/kamailio_ctl", self.dir.display()))
            .arg("dispatcher.list")
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let uri = format!("URI: sip:127.0.0.1:{port}\n");
        let after = &text[text.find(&uri)? + uri.len()..];
        let flags = after
            .lines()
            .find_map(|l| l.trim().strip_prefix("FLAGS: "))?;
        Some(flags.to_string())
    }

    /// Waits (at most 10 s) until `node_flags(port)` is `flags`.
    fn wait_flags(&self, port: u16, flags: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.node_flags(port);
            if now.as_deref() == Some(flags) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {port}: flags {now:?}, not {flags}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }

    /// Waits (at most 10 s) for a log line containing `needle`.
    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in kamailio's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM to the whole group (the main process and the workers it
        // forked); SIGKILL to the group if any lingers.
        let group = -(self.child.id() as libc::pid_t);
        // SAFETY: kill(2) takes plain integers; a negative pid names the
        // process group the child leads (made with process_group(0)).
        unsafe {
            libc::kill(group, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; the group may be gone already (ESRCH is fine).
        unsafe {
            libc::kill(group, libc::SIGKILL);
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- kamailio log ----\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A counter from `/metrics`, 0 while it is absent.
fn counter(s: &Server, name: &str) -> u64 {
    s.get("/metrics")
        .text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Waits (at most 10 s) until the dispatcher's OPTIONS probe has had
/// crossbar's 200: the only 2xx crossbar sends before a call.
fn wait_probed(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(s, "crossbar_sip_responses_total{status=\"2xx\"}") == 0 {
        assert!(
            Instant::now() < deadline,
            "no OPTIONS probe answered:\n{}",
            s.get("/metrics").text
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sip_stasis_start(ws: &mut Ws) -> Value {
    let e = ws.next_event("StasisStart");
    assert!(
        e["channel"]["name"]
            .as_str()
            .unwrap()
            .starts_with("SIP/127.0.0.1-"),
        "{e}"
    );
    e["channel"].clone()
}

#[test]
fn a_call_through_kamailio_is_answered_and_crossbars_bye_follows_the_route_set() {
    let (s, sip) = node();
    let mut ws = s.ws("myapp");
    let kam = Kamailio::start(&[sip]);
    wait_probed(&s);
    kam.wait_flags(sip, "AP");

    // SIPp calls sip:myapp@kamailio; the dispatcher picks the node.
    let (mut sipp, _) = Sipp::start(
        "uac_wait_bye.xml",
        &["-s", "myapp", "-m", "1", &kam.target()],
    );
    let ch = sip_stasis_start(&mut ws);
    assert_eq!(ch["dialplan"]["exten"], "myapp");
    assert_eq!(ch["caller"]["number"], "sipp");
    let id = ch["id"].as_str().unwrap().to_string();
    s.post(&format!("/ari/channels/{id}/answer")).no_content();
    std::thread::sleep(Duration::from_millis(300));
    // The app hangs up: crossbar's BYE must go to Kamailio (the route set),
    // which relays it to SIPp.
    s.delete(&format!("/ari/channels/{id}")).no_content();
    sipp.success();
    assert_eq!(ws.next_event("ChannelDestroyed")["cause"], 16);

    // crossbar's 200 carried Kamailio's Record-Route…
    let rr = format!(
        "reply 200 INVITE from 127.0.0.1:{sip} record-route=<sip:127.0.0.1:{};lr",
        kam.port
    );
    kam.wait_log(&rr);
    // …SIPp's ACK and crossbar's BYE were loose-routed by Kamailio.
    kam.wait_log("in-dialog ACK from 127.0.0.1:");
    kam.wait_log(&format!("in-dialog BYE from 127.0.0.1:{sip} "));
}

#[test]
fn the_callers_bye_goes_through_kamailio() {
    let (s, sip) = node();
    let mut ws = s.ws("myapp");
    let kam = Kamailio::start(&[sip]);
    wait_probed(&s);

    let (mut sipp, _) = Sipp::start(
        "uac_answered.xml",
        &[
            "-s",
            "myapp",
            "-m",
            "1",
            "-key",
            "pcap",
            PCAP,
            &kam.target(),
        ],
    );
    let id = sip_stasis_start(&mut ws)["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.post(&format!("/ari/channels/{id}/answer")).no_content();
    ws.next_event("ChannelHangupRequest");
    assert_eq!(ws.next_event("ChannelDestroyed")["cause"], 16);
    sipp.success();
    kam.wait_log("in-dialog BYE from 127.0.0.1:");
    assert!(!kam
        .log()
        .contains(&format!("in-dialog BYE from 127.0.0.1:{sip} ")));
}

#[test]
fn calls_fail_over_from_a_silent_node_to_a_live_one() {
    let (s, sip) = node();
    let mut ws = s.ws("myapp");
    // A "node" that takes datagrams and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let dead = silent.local_addr().unwrap().port();
    let kam = Kamailio::start(&[dead, sip]);
    // The dispatcher has probed the live node before the calls come.
    kam.wait_flags(sip, "AP");

    // Two calls at once: round-robin offers one of them to the silent node
    // unless probing has already marked it down; either way both calls
    // reach crossbar (failover after fr_timer, 2 s).
    let (mut sipp, _) = Sipp::start(
        "uac_wait_bye.xml",
        &["-s", "myapp", "-m", "2", "-l", "2", &kam.target()],
    );
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "calls did not reach crossbar; kamailio log:\n{}",
            kam.log()
        );
        if let Some(e) = ws.next_within(Duration::from_millis(500)) {
            if e["type"] == "StasisStart" {
                let id = e["channel"]["id"].as_str().unwrap().to_string();
                s.post(&format!("/ari/channels/{id}/answer")).no_content();
                ids.push(id);
            }
        }
    }
    for id in &ids {
        s.delete(&format!("/ari/channels/{id}")).no_content();
    }
    sipp.success();

    // The silent node was in the set: it got the probe (and maybe a call).
    let mut buf = [0u8; 65_536];
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match silent.recv_from(&mut buf) {
            Ok((n, _)) => got.push(String::from_utf8_lossy(&buf[..n]).to_string()),
            // Everything queued is read once the socket is quiet.
            Err(_) if got.iter().any(|m| m.starts_with("OPTIONS ")) => break,
            Err(_) => {}
        }
    }
    assert!(
        got.iter().any(|m| m.starts_with("OPTIONS ")),
        "the silent node was never probed: {got:?}"
    );
    if got.iter().any(|m| m.starts_with("INVITE ")) {
        kam.wait_log(&format!("node sip:127.0.0.1:{dead} failed"));
    }
    // The dispatcher holds the silent node down, the live one up.
    kam.wait_flags(dead, "IP");
    kam.wait_flags(sip, "AP");
}
