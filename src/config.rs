//! The node's configuration: embedded defaults, an optional TOML file
//! (`--config FILE`), then environment variables (`CROSSBAR_<SECTION>_<KEY>`),
//! each layer overriding the one before.
//!
//! Invariant: a [`Config`] that [`Config::load`] returns has been validated; a bad
//! value is refused at start with the exact key and the reason.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;

/// The embedded default configuration: what `crossbar` runs with when given no
/// file. It is also the documented example of every key.
pub const DEFAULT_TOML: &str = r#"
[ari]
# Where the ARI HTTP/WebSocket control socket listens.
bind = "127.0.0.1:8088"
# TLS: PEM files of the certificate (chain, leaf first) and of its private
# key (PKCS#8, PKCS#1 or SEC1). When both are set the control socket speaks
# TLS only (https://, wss://); a file that cannot be read or a key that does
# not fit the certificate stops the node at start (exit 2). Empty: plain HTTP.
tls_cert = ""
tls_key = ""
# -- Connections to the control socket (see the README's Security section).
# Connections open at once; at the limit the one idle the longest is closed to
# admit a new one, and only when none is idle is the new one refused (503).
max_connections = 4096
# Connections open at once from one source address; beyond, refused (503).
max_connections_per_source = 1024
# Time a client has to send a request's headers, from connect (first request)
# or from its first byte (later ones), in milliseconds; then it is closed.
header_timeout_ms = 10000
# A keep-alive connection with no request for this long is closed, in
# milliseconds (events WebSockets are exempt).
idle_timeout_ms = 15000
# Development credentials: change them for anything but a laptop.
username = "asterisk"
password = "asterisk"
# Further users (file only), each a table beside the user above:
#   [[ari.user]]
#   name = "monitor"
#   password = "…"
#   read_only = true    # GET and the events WebSocket only; else 403
# A read_only user's other requests get 403 {"message": "Write access
# denied"}, as Asterisk's ari.conf read_only. Every user is held to the
# rules of username/password (no empty password; asterisk/asterisk refused
# off loopback).
user = []
# "off" (default): no ChannelVarset BRIDGEPEER events, so building a bridge of
# N costs O(N) events; reading the BRIDGEPEER variable still answers. "asterisk":
# Asterisk's exact behaviour, BRIDGEPEER set on every member on every join and
# leave (O(N^2) events).
bridgepeer = "off"
# The entity id shown as asterisk_id in events and replies.
entity_id = "02:fc:00:00:00:01"
# Name reported by /asterisk/info (system.entity_id is entity_id above).
system_name = "crossbar"
# Request limits (larger: 413, 414, 431 with an ARI error body). hyper's own
# limits stay behind them: a URI over 65534 bytes, more than 100 headers or a
# request head over ~400 KiB get a bare 414/431.
max_body_bytes = 1048576
max_uri_bytes = 16384
max_header_bytes = 65536
# Failed logins: after auth_fail_limit wrong credentials from one source (an
# IPv4 address or an IPv6 /64) within auth_fail_window_s seconds, that
# source's credentials are checked at most once a second; a request that
# would wait over 3 s gets 429 unchecked. 0: never slowed (still logged).
auth_fail_limit = 10
auth_fail_window_s = 60
# Events an events WebSocket may have queued, unwritten, before the node
# closes it (code 1008): a client that stops reading cannot grow memory.
ws_queue_events = 100000
# The same bound in bytes (event text plus 64 bytes each): 4 MiB per client.
ws_queue_bytes = 4194304
# The bytes queued across all events WebSockets: when an event would cross
# it, the client holding the most is closed (1008) and its queue dropped.
ws_queue_total_bytes = 67108864
# Events WebSockets open at once; beyond, the upgrade gets 503
# {"message": "Too many event WebSockets"} (counted in
# crossbar_ws_refused_total). They count toward max_connections too.
max_event_sockets = 512

[rtp]
# Local address external media legs bind to.
bind_ip = "127.0.0.1"
# Inclusive port range for RTP: one pool shared by all shards; each leg takes
# a pair (RTP on an even port, RTCP on the next).
port_min = 10000
port_max = 20000
# The RFC 4733 telephone-event payload type of externalMedia legs (digits
# received are reported, POST /channels/{id}/dtmf sends them); 0: none.
# SIP legs use what SDP negotiated.
telephone_event_pt = 101

[dataplane]
# Number of data-plane shards; 0 means one per core.
shards = 0
# Pin each shard thread to its core.
pin = true
# The I/O driver of the shards: "auto" (io_uring when the kernel allows it,
# else epoll), "io_uring" or "epoll". The choice and its reason are logged at
# start and exported in /metrics (crossbar_dataplane_driver).
io = "auto"
# io_uring features not to use even where the kernel has them, comma
# separated: multishot_recv, buf_ring, send_to, defer_taskrun (each falls back
# to its single-shot or older form; for tests and for kernels that misbehave).
uring_disable = ""
# Softmix tick in milliseconds.
mix_tick_ms = 20
# Packet-loss concealment where crossbar decodes (transcode, softmix): lost
# frames are replaced by the codec's own concealment (Opus) or by repeating
# the last pitch period, fading to silence after 60 ms (as Asterisk's
# genericplc in codecs.conf).
plc = true
# Mean interval between the RTCP reports (SR/RR + SDES CNAME) crossbar sends
# on each RTP leg whose media it terminates (transcode, softmix, holding, no
# bridge), in milliseconds; each interval is randomised by +-50%. RFC 3550
# suggests 5000. 0 sends no reports (received RTCP is still parsed, and
# relayed between native_rtp legs). Otherwise 100 to 60000.
rtcp_interval_ms = 5000
# A shard whose loop has not turned for this long (milliseconds), or that
# has not answered a command within it, is declared dead: its channels are
# hung up (cause 38), later commands to it fail at once with 503, and
# /metrics shows crossbar_shard_up 0 and crossbar_healthy 0. Every command
# to a shard fails with 503 when it is not answered within this time. An
# idle shard wakes at least every quarter of it. 100 to 60000.
shard_stall_ms = 2000

[sip]
# Where SIP listens, on UDP and on TCP at the same address ("off" to take no
# SIP at all). Calls to sip:APP@... enter the Stasis application APP.
bind = "127.0.0.1:5060"
# Networks (CIDR, comma separated) trusted as a proxy's: their requests are
# taken from any caller. A request from elsewhere that matches no endpoint's
# `match` is refused with 403.
trusted = "127.0.0.0/8"
# Codecs offered and accepted by calls that match no endpoint, best first
# (ARI format names).
codecs = "ulaw,alaw,g722"
# Largest SIP message taken, in bytes (larger: 413 on TCP, dropped on UDP).
max_message = 65535
# Messages one source address may send per second; beyond, they are dropped
# and counted (crossbar_sip_dropped_total{reason="rx_rate"}). Sources in
# sip.trusted (a proxy carrying everybody's calls) are not limited.
source_rate = 200
# Transactions (calls being set up, requests in flight) at once; beyond,
# new requests get 503.
max_transactions = 20000
# Session timers (RFC 4028): the interval asked for and the shortest
# accepted (a shorter Session-Expires gets 422), in seconds.
session_expires = 1800
min_se = 90
# Endpoints: [[sip.endpoint]] tables (see the README's SIP section).
endpoint = []

[sounds]
# Directories of sound prompts (sound:ID media, GET /sounds), comma separated,
# each holding one folder per language (en/beep.wav, fr/digits/1.ulaw), as
# Asterisk's sounds directory. The default is where Debian's
# asterisk-core-sounds-* packages install theirs.
path = "/usr/share/asterisk/sounds"
# Music on hold (POST /channels/{id}/moh, /bridges/{id}/moh): sound files
# directly in this directory are the class `default`; each subdirectory is
# a class of its name. Files of a class play in name order, looping. The
# default is where Debian's asterisk-moh-opsound-* packages install theirs.
moh_path = "/usr/share/asterisk/moh"

[recordings]
# Where recordings are written (POST /channels/{id}/record, /bridges/{id}/record)
# and stored recordings are found (/recordings/stored): a recording named
# "a/b" in format wav is the file PATH/a/b.wav. Created at start if missing.
# The default is relative to the node's working directory, so that a fresh
# install running as any user can write it (Asterisk's
# /var/spool/asterisk/recording needs root or an asterisk user); set an
# absolute path in production.
path = "recordings"

[log]
# error, warn, info, debug or trace.
level = "info"
"#;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub ari: AriConfig,
    pub rtp: RtpConfig,
    pub dataplane: DataplaneConfig,
    pub sip: SipConfig,
    pub sounds: SoundsConfig,
    pub recordings: RecordingsConfig,
    pub log: LogConfig,
}

/// `[recordings]`: where recordings are written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingsConfig {
    pub path: std::path::PathBuf,
}

/// `[sounds]`: where sound prompts are found.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoundsConfig {
    /// Sounds directories, comma separated (a string, so that
    /// `CROSSBAR_SOUNDS_PATH` overrides it like any other key).
    pub path: String,
    /// The music-on-hold directory (classes: see the embedded default).
    pub moh_path: std::path::PathBuf,
}

impl SoundsConfig {
    /// The directories of `path`, in order, empty entries skipped.
    pub fn paths(&self) -> Vec<std::path::PathBuf> {
        self.path
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
            .collect()
    }
}

/// `[sip]`: the SIP listener, who may call, and the endpoints.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// `"off"` or a socket address.
    pub bind: String,
    pub trusted: String,
    pub codecs: String,
    pub max_message: usize,
    pub source_rate: u32,
    pub max_transactions: usize,
    pub session_expires: u32,
    pub min_se: u32,
    pub endpoint: Vec<SipEndpointConfig>,
}

/// One `[[sip.endpoint]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipEndpointConfig {
    /// The endpoint's name (`PJSIP/name`, `SIP/name`, channel names).
    pub name: String,
    /// Networks (CIDR) whose requests are this endpoint's.
    #[serde(default)]
    pub r#match: Vec<String>,
    /// Where it is dialed: `sip:user@ip:port` (no DNS), or empty if it is
    /// never dialed.
    #[serde(default)]
    pub contact: String,
    /// Codecs, best first; empty: `sip.codecs`.
    #[serde(default)]
    pub codecs: String,
    /// The application its calls enter; empty: the request-URI's user.
    #[serde(default)]
    pub app: String,
    /// The `dialplan.context` its channels show.
    #[serde(default = "default_context")]
    pub context: String,
    /// Whether its calls may send media directly to another endpoint's.
    #[serde(default)]
    pub direct_media: bool,
}

fn default_context() -> String {
    "default".to_string()
}

/// A network in CIDR form (`127.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{text}' is not an address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{text}': prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    /// A comma-separated list (empty: none).
    pub fn parse_list(text: &str) -> Result<Vec<Cidr>, String> {
        text.split(',')
            .filter(|t| !t.trim().is_empty())
            .map(Cidr::parse)
            .collect()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A comma-separated list of ARI format names.
pub fn parse_codecs(text: &str) -> Result<Vec<crate::media::Format>, String> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let format = crate::media::Format::from_name(name)
            .ok_or_else(|| format!("unknown codec '{name}'"))?;
        if !format.is_available() {
            return Err(format!("codec '{name}' is not in this build"));
        }
        if !out.contains(&format) {
            out.push(format);
        }
    }
    if out.is_empty() {
        return Err("no codec".to_string());
    }
    Ok(out)
}

impl SipConfig {
    /// The listening address, or `None` when SIP is off.
    pub fn bind_addr(&self) -> Option<SocketAddr> {
        if self.bind == "off" {
            None
        } else {
            self.bind.parse().ok()
        }
    }
}

/// `[ari]`: the control socket.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AriConfig {
    pub bind: SocketAddr,
    /// PEM certificate chain and key; both empty: no TLS.
    pub tls_cert: String,
    pub tls_key: String,
    // Connections (`host::conn`).
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub header_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub username: String,
    pub password: String,
    /// Further users (`[[ari.user]]`).
    pub user: Vec<AriUserConfig>,
    pub bridgepeer: BridgePeerMode,
    pub entity_id: String,
    pub system_name: String,
    pub ws_queue_events: usize,
    pub ws_queue_bytes: usize,
    pub ws_queue_total_bytes: usize,
    pub max_event_sockets: usize,
    pub max_body_bytes: usize,
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub auth_fail_limit: u32,
    pub auth_fail_window_s: u32,
}

/// One `[[ari.user]]`: a further ARI user.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AriUserConfig {
    pub name: String,
    pub password: String,
    /// GET (and the events WebSocket) only, as Asterisk's `read_only`.
    #[serde(default)]
    pub read_only: bool,
}

/// How `ChannelVarset BRIDGEPEER` events are emitted (ARI.md's trap).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BridgePeerMode {
    /// O(N) per bridge build: no `ChannelVarset BRIDGEPEER` events at all;
    /// the variable is still readable with `GET .../variable`.
    Off,
    /// Asterisk-exact: every member re-announced on every change, O(N²).
    Asterisk,
}

/// `[rtp]`: addresses and ports of media legs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtpConfig {
    pub bind_ip: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    pub telephone_event_pt: u8,
}

impl RtpConfig {
    /// `rtp.telephone_event_pt`, `None` for 0.
    pub fn telephone_event(&self) -> Option<u8> {
        (self.telephone_event_pt != 0).then_some(self.telephone_event_pt)
    }
}

/// `[dataplane]`: the shards.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    pub shards: usize,
    pub pin: bool,
    pub io: IoChoice,
    /// io_uring features to leave unused (see [`crate::driver::UringFeature`]).
    pub uring_disable: String,
    pub mix_tick_ms: u32,
    /// Packet-loss concealment on the decoding paths.
    pub plc: bool,
    /// Mean RTCP report interval (ms); 0 disables sending reports.
    pub rtcp_interval_ms: u32,
    /// How long a shard may go without turning its loop, or without
    /// answering a command, before it is declared dead (ms).
    pub shard_stall_ms: u32,
}

/// `dataplane.io`: which I/O driver runs the shards.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum IoChoice {
    /// io_uring where the kernel allows it, epoll otherwise.
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "io_uring")]
    IoUring,
    #[serde(rename = "epoll")]
    Epoll,
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
}

/// A configuration that cannot be used, naming the key at fault.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The embedded defaults alone.
    pub fn defaults() -> Config {
        // Invariant: the embedded defaults parse and validate (compile-time
        // text, no input involved); `defaults_are_the_documented_ones` checks
        // it. The node itself starts from `load`.
        Config::from_layers(None, std::iter::empty()).expect("the embedded defaults are valid")
    }

    /// Loads defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!("cannot read config file {}: {e}", path.display()))
            })?),
            None => None,
        };
        Config::from_layers(text.as_deref(), std::env::vars())
    }

    /// Merges the layers: defaults, the file's text, then `CROSSBAR_*` variables.
    pub fn from_layers(
        file: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut merged: toml::Table = DEFAULT_TOML
            .parse()
            .map_err(|e| ConfigError(format!("embedded defaults: {e}")))?;
        if let Some(text) = file {
            let overlay: toml::Table = text
                .parse()
                .map_err(|e| ConfigError(format!("config file: {e}")))?;
            merge(&mut merged, overlay, "")?;
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("CROSSBAR_") else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let Some((section, key)) = rest.split_once('_') else {
                return Err(ConfigError(format!(
                    "environment variable {name}: expected CROSSBAR_<SECTION>_<KEY>"
                )));
            };
            let Some(toml::Value::Table(table)) = merged.get_mut(section) else {
                return Err(ConfigError(format!(
                    "environment variable {name}: unknown section [{section}]"
                )));
            };
            let Some(old) = table.get(key) else {
                return Err(ConfigError(format!(
                    "environment variable {name}: unknown key {section}.{key}"
                )));
            };
            let new = match old {
                toml::Value::String(_) => toml::Value::String(value),
                toml::Value::Integer(_) => {
                    value.parse().map(toml::Value::Integer).map_err(|_| {
                        ConfigError(format!(
                            "{section}.{key} (from {name}): '{value}' is not an integer"
                        ))
                    })?
                }
                toml::Value::Boolean(_) => {
                    value.parse().map(toml::Value::Boolean).map_err(|_| {
                        ConfigError(format!(
                            "{section}.{key} (from {name}): '{value}' is not true or false"
                        ))
                    })?
                }
                _ => toml::Value::String(value),
            };
            table.insert(key.to_string(), new);
        }
        let config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(keyed_message(&e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if self.ari.username.is_empty() || self.ari.username.contains(':') {
            return bad("ari.username", "must be non-empty and contain no ':'");
        }
        if self.ari.password.is_empty() {
            return bad("ari.password", "must not be empty");
        }
        if self.uses_default_credentials() && !is_loopback(self.ari.bind.ip()) {
            return bad(
                "ari.password",
                &format!(
                    "the development credentials asterisk/asterisk are refused when ari.bind ({}) is not a loopback address: set ari.username and ari.password (CROSSBAR_ARI_USERNAME, CROSSBAR_ARI_PASSWORD)",
                    self.ari.bind
                ),
            );
        }
        self.validate_users()?;
        if self.ari.tls_cert.is_empty() != self.ari.tls_key.is_empty() {
            return bad(
                "ari.tls_key",
                "ari.tls_cert and ari.tls_key are set together (both, or neither)",
            );
        }
        if !(1024..=1 << 30).contains(&self.ari.max_body_bytes) {
            return bad("ari.max_body_bytes", "must be 1024 to 1073741824");
        }
        if !(256..=65534).contains(&self.ari.max_uri_bytes) {
            return bad("ari.max_uri_bytes", "must be 256 to 65534");
        }
        if !(1024..=262_144).contains(&self.ari.max_header_bytes) {
            return bad("ari.max_header_bytes", "must be 1024 to 262144");
        }
        if !(1..=86_400).contains(&self.ari.auth_fail_window_s) {
            return bad("ari.auth_fail_window_s", "must be 1 to 86400");
        }
        let id_ok = self.ari.entity_id.split(':').count() == 6
            && self
                .ari
                .entity_id
                .split(':')
                .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
        if !id_ok {
            return bad(
                "ari.entity_id",
                "must look like a MAC address, e.g. 02:fc:00:00:00:01",
            );
        }
        if !(16..=10_000_000).contains(&self.ari.ws_queue_events) {
            return bad("ari.ws_queue_events", "must be between 16 and 10000000");
        }
        if !(65_536..=1 << 30).contains(&self.ari.ws_queue_bytes) {
            return bad("ari.ws_queue_bytes", "must be 65536 to 1073741824");
        }
        let total = self.ari.ws_queue_total_bytes;
        if total < self.ari.ws_queue_bytes || total > 1 << 34 {
            return bad(
                "ari.ws_queue_total_bytes",
                "must be at least ari.ws_queue_bytes and at most 17179869184",
            );
        }
        if !(1..=1_000_000).contains(&self.ari.max_event_sockets) {
            return bad("ari.max_event_sockets", "must be 1 to 1000000");
        }
        self.validate_connections()?;
        if self.rtp.port_min == 0 || self.rtp.port_min >= self.rtp.port_max {
            return bad("rtp.port_min", "must be non-zero and below rtp.port_max");
        }
        let te = self.rtp.telephone_event_pt;
        if te != 0 && !(96..=127).contains(&te) {
            return bad(
                "rtp.telephone_event_pt",
                "must be 0 (none) or a dynamic payload type, 96 to 127",
            );
        }
        if self.dataplane.shards > 256 {
            return bad("dataplane.shards", "at most 256");
        }
        if let Err(e) = crate::driver::UringFeature::parse_list(&self.dataplane.uring_disable) {
            return bad("dataplane.uring_disable", &e);
        }
        if !matches!(self.dataplane.mix_tick_ms, 10 | 20 | 40) {
            return bad("dataplane.mix_tick_ms", "must be 10, 20 or 40");
        }
        let rtcp = self.dataplane.rtcp_interval_ms;
        if rtcp != 0 && !(100..=60_000).contains(&rtcp) {
            return bad(
                "dataplane.rtcp_interval_ms",
                "must be 0 (off) or 100 to 60000",
            );
        }
        if !(100..=60_000).contains(&self.dataplane.shard_stall_ms) {
            return bad("dataplane.shard_stall_ms", "must be 100 to 60000");
        }
        self.validate_sip()?;
        if !matches!(
            self.log.level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return bad(
                "log.level",
                "must be one of error, warn, info, debug, trace",
            );
        }
        Ok(())
    }

    /// The `[ari]` connection keys (`host::conn`).
    fn validate_connections(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        let a = &self.ari;
        if !(1..=1_000_000).contains(&a.max_connections) {
            return bad("ari.max_connections", "must be 1 to 1000000");
        }
        if a.max_connections_per_source == 0 || a.max_connections_per_source > a.max_connections {
            return bad(
                "ari.max_connections_per_source",
                "must be 1 to ari.max_connections",
            );
        }
        if !(100..=600_000).contains(&a.header_timeout_ms) {
            return bad("ari.header_timeout_ms", "must be 100 to 600000");
        }
        if !(100..=3_600_000).contains(&a.idle_timeout_ms) {
            return bad("ari.idle_timeout_ms", "must be 100 to 3600000");
        }
        Ok(())
    }

    /// Each `[[ari.user]]`: held to the rules of `ari.username` and
    /// `ari.password`, names unique.
    fn validate_users(&self) -> Result<(), ConfigError> {
        let bad = |key: String, why: &str| Err(ConfigError(format!("{key}: {why}")));
        let mut names = vec![self.ari.username.as_str()];
        for (i, u) in self.ari.user.iter().enumerate() {
            if u.name.is_empty() || u.name.contains(':') {
                return bad(
                    format!("ari.user[{i}].name"),
                    "must be non-empty and contain no ':'",
                );
            }
            if names.contains(&u.name.as_str()) {
                return bad(format!("ari.user[{i}].name"), "another user has this name");
            }
            names.push(&u.name);
            if u.password.is_empty() {
                return bad(format!("ari.user[{i}].password"), "must not be empty");
            }
            if u.name == "asterisk" && u.password == "asterisk" && !is_loopback(self.ari.bind.ip())
            {
                return bad(
                    format!("ari.user[{i}].password"),
                    &format!(
                        "the development credentials asterisk/asterisk are refused when ari.bind ({}) is not a loopback address",
                        self.ari.bind
                    ),
                );
            }
        }
        Ok(())
    }

    /// Every ARI user: `(name, password, read_only)`, the `ari.username`
    /// one first (never read-only).
    pub fn ari_users(&self) -> Vec<(&str, &str, bool)> {
        std::iter::once((
            self.ari.username.as_str(),
            self.ari.password.as_str(),
            false,
        ))
        .chain(
            self.ari
                .user
                .iter()
                .map(|u| (u.name.as_str(), u.password.as_str(), u.read_only)),
        )
        .collect()
    }

    /// True while the development credentials are in use.
    pub fn uses_default_credentials(&self) -> bool {
        self.ari.username == "asterisk" && self.ari.password == "asterisk"
    }

    /// The number of shards to start (resolving 0 to the number of cores).
    pub fn shard_count(&self) -> usize {
        match self.dataplane.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// Loopback addresses, IPv4-mapped ones included (`::ffff:127.0.0.1`).
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// `KEY: reason` from a deserialisation error (whose text ends with
/// "in `KEY`" when it knows the key).
fn keyed_message(e: &toml::de::Error) -> String {
    let text = e.to_string();
    let text = text.trim();
    match text.rsplit_once("\nin `") {
        Some((reason, key)) => format!("{}: {}", key.trim_end_matches('`'), reason.trim()),
        None => format!("config: {text}"),
    }
}

/// Overlays `src` onto `dst`, refusing keys the defaults do not have.
impl Config {
    fn validate_sip(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        let sip = &self.sip;
        if sip.bind != "off" && sip.bind.parse::<SocketAddr>().is_err() {
            return bad("sip.bind", "must be \"off\" or an address:port");
        }
        if let Err(e) = Cidr::parse_list(&sip.trusted) {
            return bad("sip.trusted", &e);
        }
        if let Err(e) = parse_codecs(&sip.codecs) {
            return bad("sip.codecs", &e);
        }
        if !(1024..=crate::sip::message::MAX_MESSAGE).contains(&sip.max_message) {
            return bad("sip.max_message", "must be 1024 to 65535");
        }
        if !(1..=1_000_000).contains(&sip.source_rate) {
            return bad("sip.source_rate", "must be 1 to 1000000");
        }
        if !(1..=1_000_000).contains(&sip.max_transactions) {
            return bad("sip.max_transactions", "must be 1 to 1000000");
        }
        if sip.min_se < 90 || sip.session_expires < sip.min_se {
            return bad(
                "sip.min_se",
                "must be at least 90 and at most sip.session_expires",
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, e) in sip.endpoint.iter().enumerate() {
            let key = |k: &str| format!("sip.endpoint[{i}].{k}");
            let name_ok = !e.name.is_empty()
                && e.name.len() <= 64
                && e.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !name_ok {
                return bad(&key("name"), "1 to 64 of A-Z a-z 0-9 - _ .");
            }
            if !names.insert(e.name.as_str()) {
                return bad(&key("name"), "another endpoint has this name");
            }
            for m in &e.r#match {
                if let Err(why) = Cidr::parse(m) {
                    return bad(&key("match"), &why);
                }
            }
            if !e.contact.is_empty() {
                if let Err(why) = crate::sip::uri::Target::parse(&e.contact) {
                    return bad(&key("contact"), &why);
                }
            }
            if !e.codecs.is_empty() {
                if let Err(why) = parse_codecs(&e.codecs) {
                    return bad(&key("codecs"), &why);
                }
            }
        }
        Ok(())
    }
}

fn merge(dst: &mut toml::Table, src: toml::Table, path: &str) -> Result<(), ConfigError> {
    for (key, value) in src {
        let full = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match (dst.get_mut(&key), value) {
            (None, _) => return Err(ConfigError(format!("{full}: unknown key"))),
            (Some(toml::Value::Table(d)), toml::Value::Table(s)) => merge(d, s, &full)?,
            (Some(toml::Value::Table(_)), _) => {
                return Err(ConfigError(format!("{full}: must be a table")))
            }
            (Some(slot), v) => *slot = v,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::defaults();
        assert_eq!(c.ari.bind, "127.0.0.1:8088".parse().unwrap());
        assert!(c.uses_default_credentials());
        assert_eq!((c.rtp.port_min, c.rtp.port_max), (10000, 20000));
        assert_eq!(c.ari.bridgepeer, BridgePeerMode::Off);
        assert_eq!(c.dataplane.shard_stall_ms, 2000);
        assert_eq!(c.ari.ws_queue_bytes, 4 << 20);
        assert_eq!(c.ari.ws_queue_total_bytes, 64 << 20);
        assert_eq!(c.ari.max_event_sockets, 512);
        assert!(c.ari.tls_cert.is_empty() && c.ari.tls_key.is_empty());
        assert!(c.ari.user.is_empty());
    }

    #[test]
    fn file_then_env_override() {
        let c = Config::from_layers(
            Some("[ari]\nbind = \"127.0.0.1:9999\"\n[rtp]\nport_min = 30000\nport_max = 30100\n"),
            env(&[
                ("CROSSBAR_ARI_PASSWORD", "s3cret"),
                ("CROSSBAR_RTP_PORT_MAX", "30200"),
            ]),
        )
        .unwrap();
        assert_eq!(c.ari.bind.port(), 9999);
        assert_eq!(c.ari.password, "s3cret");
        assert_eq!((c.rtp.port_min, c.rtp.port_max), (30000, 30200));
    }

    #[test]
    fn bad_config_names_the_key() {
        let cases = [
            ("[ari]\nbindd = 1\n", "ari.bindd: unknown key"),
            (
                "[rtp]\nport_min = 20000\nport_max = 10000\n",
                "rtp.port_min",
            ),
            ("[log]\nlevel = \"loud\"\n", "log.level"),
            (
                "[ari]\nbind = \"nowhere\"\n",
                "ari.bind: invalid socket address",
            ),
            (
                "[dataplane]\nshards = \"four\"\n",
                "dataplane.shards: invalid type",
            ),
            ("[dataplane]\nmix_tick_ms = 7\n", "dataplane.mix_tick_ms"),
            (
                "[dataplane]\nrtcp_interval_ms = 50\n",
                "dataplane.rtcp_interval_ms",
            ),
            (
                "[dataplane]\nshard_stall_ms = 10\n",
                "dataplane.shard_stall_ms: must be 100 to 60000",
            ),
        ];
        for (text, want) in cases {
            let err = Config::from_layers(Some(text), []).unwrap_err().0;
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let err = Config::from_layers(None, env(&[("CROSSBAR_RTP_PORT_MIN", "x")]))
            .unwrap_err()
            .0;
        assert!(err.contains("rtp.port_min"), "{err}");
        let err = Config::from_layers(None, env(&[("CROSSBAR_ARI_NOPE", "x")]))
            .unwrap_err()
            .0;
        assert!(err.contains("ari.nope"), "{err}");
    }

    #[test]
    fn default_credentials_only_on_loopback() {
        for bind in ["0.0.0.0:8088", "[::]:8088", "192.0.2.1:8088"] {
            let err = Config::from_layers(None, env(&[("CROSSBAR_ARI_BIND", bind)]))
                .unwrap_err()
                .0;
            assert!(
                err.starts_with("ari.password: the development credentials"),
                "{err}"
            );
        }
        for bind in ["127.0.0.2:8088", "[::1]:8088", "[::ffff:127.0.0.1]:8088"] {
            Config::from_layers(None, env(&[("CROSSBAR_ARI_BIND", bind)])).unwrap();
        }
        let c = Config::from_layers(
            None,
            env(&[
                ("CROSSBAR_ARI_BIND", "0.0.0.0:8088"),
                ("CROSSBAR_ARI_PASSWORD", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.ari.max_body_bytes, 1 << 20);
        let err = Config::from_layers(None, env(&[("CROSSBAR_ARI_PASSWORD", "")]))
            .unwrap_err()
            .0;
        assert_eq!(err, "ari.password: must not be empty");
    }

    #[test]
    fn further_users_are_held_to_the_same_rules() {
        let users = "[[ari.user]]\nname = \"ro\"\npassword = \"r\"\nread_only = true\n\
                     [[ari.user]]\nname = \"rw\"\npassword = \"w\"\n";
        let c = Config::from_layers(Some(&format!("[ari]\n{users}")), []).unwrap();
        assert_eq!(
            c.ari_users(),
            vec![
                ("asterisk", "asterisk", false),
                ("ro", "r", true),
                ("rw", "w", false)
            ]
        );
        let cases = [
            (
                "[[ari.user]]\nname = \"x\"\npassword = \"\"\n",
                "ari.user[0].password: must not be empty",
            ),
            (
                "[[ari.user]]\nname = \"a:b\"\npassword = \"p\"\n",
                "ari.user[0].name: must be non-empty and contain no ':'",
            ),
            (
                "[[ari.user]]\nname = \"x\"\npassword = \"p\"\n[[ari.user]]\nname = \"x\"\npassword = \"q\"\n",
                "ari.user[1].name: another user has this name",
            ),
            (
                "[[ari.user]]\nname = \"x\"\npassword = \"p\"\nwrite = true\n",
                "unknown field `write`",
            ),
        ];
        for (text, want) in cases {
            let err = Config::from_layers(Some(&format!("[ari]\n{text}")), [])
                .unwrap_err()
                .0;
            assert!(err.contains(want), "{text:?}: {err}");
        }
        // Off loopback: asterisk/asterisk refused for a further user too.
        let text = "[ari]\nbind = \"0.0.0.0:8088\"\nusername = \"admin\"\npassword = \"s\"\n\
                    [[ari.user]]\nname = \"asterisk\"\npassword = \"asterisk\"\n";
        let err = Config::from_layers(Some(text), []).unwrap_err().0;
        assert!(
            err.starts_with("ari.user[0].password: the development credentials"),
            "{err}"
        );
    }
}
