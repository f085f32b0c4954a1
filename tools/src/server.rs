//! The server side of the media scenarios: an ARI session that creates
//! externalMedia legs and mixing bridges, remembers everything it created and
//! tears it all down (on success, on error, after Ctrl-C: [`Session`]'s
//! `Drop` does it if [`Session::teardown`] was not called), and the probe of
//! the server's CPU time (the `--pid`, or the process listening on the ARI
//! port).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ari::{encode, excerpt, id_of, Client, Method, Target};
use crate::events::EventCounter;
use crate::opts::MediaOptions;
use crate::procstat;
use crate::traffic::CpuSample;

/// An ARI session with the app's event socket open.
pub struct Session {
    pub client: Client,
    pub target: Target,
    app: String,
    allow_remote: bool,
    events: Option<EventCounter>,
    legs: Vec<String>,
    bridges: Vec<String>,
}

impl Session {
    /// Checks the loopback rule, pings, opens the events socket for the app
    /// and waits until the server knows the app.
    pub fn open(url: &str, o: &MediaOptions) -> Result<Session, String> {
        let target = Target::parse(url)?;
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
        let events = EventCounter::connect(&target, &o.user, &o.password, &o.app, o.timeout)?;
        let path = format!("/ari/applications/{}", encode(&o.app));
        let start = Instant::now();
        loop {
            let reply = client.request(Method::Get, &path)?;
            if reply.status == 200 {
                break;
            }
            if start.elapsed() >= o.timeout {
                return Err(format!(
                    "application '{}' not registered (HTTP {})",
                    o.app, reply.status
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Session {
            client,
            target,
            app: o.app.clone(),
            allow_remote: o.allow_remote,
            events: Some(events),
            legs: Vec::new(),
            bridges: Vec::new(),
        })
    }

    /// Another session on the same server and app sharing this one's events
    /// socket (kept open by `self`): for worker threads. Tears down only what
    /// it created itself.
    pub fn sibling(&self) -> Session {
        Session {
            client: self.client.clone(),
            target: self.target.clone(),
            app: self.app.clone(),
            allow_remote: self.allow_remote,
            events: None,
            legs: Vec::new(),
            bridges: Vec::new(),
        }
    }

    /// An externalMedia leg in `format` sending to `client`; returns its id
    /// and the address where the server receives its RTP.
    pub fn external_media(
        &mut self,
        format: &str,
        client: SocketAddr,
    ) -> Result<(String, SocketAddr), String> {
        let path = format!(
            "/ari/channels/externalMedia?app={}&external_host={}&format={}",
            encode(&self.app),
            encode(&client.to_string()),
            encode(format)
        );
        let body = self.client.expect_ok(Method::Post, &path)?;
        let id = id_of(&body, "externalMedia")?;
        self.legs.push(id.clone());
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("externalMedia: {e}"))?;
        let vars = &v["channelvars"];
        let port: u16 = vars["UNICASTRTP_LOCAL_PORT"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .or_else(|| {
                vars["UNICASTRTP_LOCAL_PORT"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
            })
            .ok_or_else(|| {
                format!(
                    "externalMedia: no channelvars.UNICASTRTP_LOCAL_PORT in the reply: {}",
                    excerpt(&body)
                )
            })?;
        let ip = vars["UNICASTRTP_LOCAL_ADDRESS"]
            .as_str()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .filter(|ip| !ip.is_unspecified());
        let ip = match ip {
            Some(ip) => ip,
            None => self.target.socket_addr()?.ip(),
        };
        let addr = SocketAddr::new(ip, port);
        crate::net::check_rtp_target(addr, self.allow_remote)?;
        Ok((id, addr))
    }

    /// A mixing bridge.
    pub fn bridge(&mut self) -> Result<String, String> {
        let body = self
            .client
            .expect_ok(Method::Post, "/ari/bridges?type=mixing&name=crossbar-load")?;
        let id = id_of(&body, "bridge create")?;
        self.bridges.push(id.clone());
        Ok(id)
    }

    pub fn add(&self, bridge: &str, channel: &str) -> Result<(), String> {
        let path = format!(
            "/ari/bridges/{}/addChannel?channel={}",
            encode(bridge),
            encode(channel)
        );
        self.client.expect_ok(Method::Post, &path).map(|_| ())
    }

    /// Hangs up one leg created by this session.
    pub fn hangup(&mut self, channel: &str) -> Result<(), String> {
        self.legs.retain(|l| l != channel);
        gone(self.client.request(
            Method::Delete,
            &format!("/ari/channels/{}", encode(channel)),
        ))
    }

    /// Destroys one bridge created by this session.
    pub fn destroy(&mut self, bridge: &str) -> Result<(), String> {
        self.bridges.retain(|b| b != bridge);
        gone(
            self.client
                .request(Method::Delete, &format!("/ari/bridges/{}", encode(bridge))),
        )
    }

    /// Hangs up every leg and destroys every bridge still there; closes the
    /// events socket. Returns the first error (404 counts as gone).
    pub fn teardown(&mut self) -> Result<(), String> {
        let mut first = Ok(());
        for leg in std::mem::take(&mut self.legs) {
            let r = gone(
                self.client
                    .request(Method::Delete, &format!("/ari/channels/{}", encode(&leg))),
            );
            if first.is_ok() {
                first = r;
            }
        }
        for b in std::mem::take(&mut self.bridges) {
            let r = gone(
                self.client
                    .request(Method::Delete, &format!("/ari/bridges/{}", encode(&b))),
            );
            if first.is_ok() {
                first = r;
            }
        }
        if let Some(e) = self.events.take() {
            e.close();
        }
        first
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

fn gone(r: Result<crate::ari::Reply, String>) -> Result<(), String> {
    match r {
        Ok(reply) if reply.status < 300 || reply.status == 404 => Ok(()),
        Ok(reply) => Err(format!("HTTP {}: {}", reply.status, excerpt(&reply.body))),
        Err(e) => Err(e),
    }
}

/// The server process to measure: `--pid` for the first URL, otherwise the
/// process listening on the URL's port (loopback servers only).
pub fn server_pid(o: &MediaOptions, url: &str, first: bool) -> Option<u32> {
    if first {
        if let Some(pid) = o.pid {
            return Some(pid);
        }
    }
    let t = Target::parse(url).ok()?;
    if !t.is_loopback() {
        return None;
    }
    procstat::pid_listening_on(t.port)
}

/// A CPU probe of a whole process (and its threads with `per_thread`).
pub fn process_probe(
    pid: Option<u32>,
    per_thread: bool,
) -> impl FnMut() -> Result<Option<CpuSample>, String> {
    let tck = procstat::clk_tck() as f64;
    move || {
        let Some(pid) = pid else { return Ok(None) };
        let ticks = procstat::cpu_ticks(pid)?;
        let threads = if per_thread {
            Some(
                procstat::thread_ticks(pid)?
                    .into_iter()
                    .map(|(k, v)| (k, Duration::from_secs_f64(v as f64 / tck)))
                    .collect(),
            )
        } else {
            None
        };
        Ok(Some(CpuSample {
            total: Duration::from_secs_f64(ticks as f64 / tck),
            threads,
        }))
    }
}
