//! The virtual-time harness of the media core: one [`Core`], simulated
//! peers on simulated links, and a clock the test advances.
//!
//! # What it owns
//! A [`Sim`] owns the [`Core`] (built with `ntp_anchor = (start,
//! SimConfig::ntp)`), the virtual clock, an event queue ordered by time
//! (ties in the order the events were made), the peers, the addresses of
//! the legs' fake sockets, and the receive buffers it lends to the core.
//! It is itself sans-IO like the core: it reads no clock (the test passes
//! the start [`Instant`] in and time only advances by adding durations to
//! it), opens no socket and spawns nothing; every random choice comes from
//! seeded [`XorShift`]s, so a run is a pure function of its inputs.
//!
//! # Peers and links
//! A [`Peer`] is an endpoint at `127.0.0.x` (RTP on an even port, RTCP on
//! the next), joined to the node by two [`Link`]s, up (peer → node) and down
//! (node → peer), each with its own [`LinkConfig`]: loss, duplication,
//! reordering (a packet held back by `reorder_delay`), a fixed delay plus
//! uniform jitter. A peer may run one [`SenderConfig`] stream (payload type,
//! SSRC, ptime, a clock skew in ppm that scales its send interval, and a
//! [`Voice`]: a tone encoded in the stream's format, silence, a numbered
//! byte pattern, or a closure). It records what it sent ([`Sent`]), which
//! of those reached the node and when ([`Arrival`]), and everything it
//! received ([`Received`]). Raw datagrams (garbage, RTCP, from any peer to
//! any leg) are injected with [`Sim::send`] and [`Sim::send_to`].
//!
//! # A step
//! [`Sim::run_for`] and [`Sim::run_until`] repeat one step: take the
//! earliest of the next event and the core's [`Core::poll_timeout`] (an
//! event first when both are due at the same instant), advance the clock to
//! it, and handle it — a peer's frame goes into its up link; a datagram that
//! reaches a leg's address goes to [`Core::handle_datagram`] in a buffer the
//! sim lends (longer than [`RX_BUF_SIZE`]: [`Core::handle_truncated`]); a
//! due timer goes to [`Core::handle_timeout`]. Then every
//! [`Core::poll_transmit`] is carried to the peer at its `dest` through that
//! peer's down link (to no one: counted in [`Sim::undelivered`]). A run
//! takes at most [`SimConfig::max_steps`] steps.
//!
//! # Buffer invariants ([`BufferAudit`])
//! Every lent [`RxBuf`] comes back exactly once: from `handle_datagram` or
//! in a [`Transmit`] (its bytes are copied out, then the buffer is free).
//! Every [`TxBuf`](super::TxBuf) in a [`Transmit`] is copied out with
//! [`Core::tx_bytes`] and released with [`Core::release_tx`] at once. After
//! each step nothing may be lent, and the core's free transmit buffers must
//! equal the most it ever had free (the pool only grows): any shortfall is a
//! buffer the core took and neither sent nor released. The audit records
//! the worst of each; a token that comes back without being lent, or with a
//! length past its buffer, is a violation; a transmit of a leg the sim
//! gave no sockets (removed, or a Local half) is a stray.
//!
//! Nothing here panics: unknown peers and legs are errors ([`SimError`]).
//!
//! # Use
//! `tests/media_sim.rs` holds the core's behaviour tests on this harness
//! (relay, transcode, softmix, technology switching, mute/hold, Local
//! pairs, RTCP, the jitter buffer under jitter and clock skew) and shows
//! the helpers they use: [`bridge_spec`], [`SenderConfig::pattern`] with
//! [`pattern_frame`], [`Peer::rtp`], [`in_seq_order`], [`decode`].

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::{
    BridgeKey, BridgeSpec, Core, CoreConfig, CoreError, Direction, Format, LegId, LegRef,
    MemberSpec, Payload, Port, RtpStats, RxBuf, Technology, Transmit,
};
use crate::codec::{CodecError, Decoder, Encoder, MAX_FRAME_SAMPLES};
use crate::rtp::packet::{looks_like_rtcp, Header};
use crate::rtp::xorshift::XorShift;
use crate::rtp::{ExtSeq, Pt, RtpPacket, RtpTimestamp, SeqNo, Ssrc};

/// The size of the receive buffers the sim lends (a driver's buffer size):
/// longer datagrams arrive truncated.
pub const RX_BUF_SIZE: usize = 2048;
/// The amplitude of [`Voice::tone`]: five tones sum without clipping.
pub const TONE_AMPLITUDE: f64 = 6000.0;
/// First port of the legs' fake sockets (at [`NODE_IP`]).
const FIRST_LEG_PORT: u16 = 20_000;
/// The peers' RTP port (RTCP on the next one).
const PEER_PORT: u16 = 40_000;
/// The address of the node's fake sockets.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Most transmits taken from the core after one step.
const MAX_DRAIN: usize = 1 << 20;

/// What a simulation is configured with.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The core's mix tick, ms.
    pub tick_ms: u32,
    /// The core's mean RTCP report interval, ms (0: no reports).
    pub rtcp_interval_ms: u32,
    /// Seeds the core and, mixed with their numbers, every link.
    pub seed: u64,
    /// The core's SDES CNAME.
    pub cname: String,
    /// The wall clock at the start instant, as an NTP 32.32 timestamp.
    pub ntp: u64,
    /// Most steps one [`Sim::run_for`] or [`Sim::run_until`] may take.
    pub max_steps: u64,
    /// The core's packet-loss concealment.
    pub plc: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            tick_ms: 20,
            rtcp_interval_ms: 5000,
            plc: true,
            seed: 1,
            cname: "crossbar@sim".into(),
            // 2024-01-01T00:00:00Z.
            ntp: 3_913_056_000 << 32,
            max_steps: 20_000_000,
        }
    }
}

/// Why the sim refused or stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimError {
    /// No such peer in this sim.
    UnknownPeer,
    /// The peer has no leg to send to, or the leg has no address here.
    NoLeg,
    /// No fake port left for another leg.
    NoAddress,
    /// The core refused the command.
    Core(CoreError),
    /// A codec could not be built or failed.
    Codec(CodecError),
    /// A run took [`SimConfig::max_steps`] steps.
    StepLimit,
    /// A time past what an [`Instant`] holds.
    TimeOverflow,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::UnknownPeer => f.write_str("no such peer"),
            SimError::NoLeg => f.write_str("no leg to send to"),
            SimError::NoAddress => f.write_str("no fake port left"),
            SimError::Core(e) => write!(f, "core: {e:?}"),
            SimError::Codec(e) => write!(f, "codec: {e}"),
            SimError::StepLimit => f.write_str("step limit reached"),
            SimError::TimeOverflow => f.write_str("time past what an Instant holds"),
        }
    }
}

impl std::error::Error for SimError {}

impl From<CoreError> for SimError {
    fn from(e: CoreError) -> SimError {
        SimError::Core(e)
    }
}

impl From<CodecError> for SimError {
    fn from(e: CodecError) -> SimError {
        SimError::Codec(e)
    }
}

/// A peer of one sim (only [`Sim::add_peer`] makes them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerId(usize);

// ---- links ----

/// The behaviour of one direction of a link. Probabilities are in `0..=1`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkConfig {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay, uniform in `0..=jitter`, drawn per packet.
    pub jitter: Duration,
    /// Probability a packet is lost.
    pub loss: f64,
    /// Probability a packet is delivered twice (the copy with its own
    /// jitter).
    pub duplicate: f64,
    /// Probability a packet is held back by `reorder_delay` (it arrives
    /// after the ones sent after it).
    pub reorder: f64,
    pub reorder_delay: Duration,
}

impl LinkConfig {
    /// A perfect link of `delay`.
    pub fn delay(delay: Duration) -> LinkConfig {
        LinkConfig {
            delay,
            ..LinkConfig::default()
        }
    }
}

/// What a link did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets offered.
    pub offered: u64,
    /// Lost.
    pub lost: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Held back by `reorder_delay`.
    pub reordered: u64,
}

/// One direction of a link: its config, its own random stream, its counts.
#[derive(Clone, Debug)]
pub struct Link {
    config: LinkConfig,
    rng: XorShift,
    stats: LinkStats,
}

impl Link {
    fn new(config: LinkConfig, seed: u64) -> Link {
        Link {
            config,
            rng: XorShift::new(seed),
            stats: LinkStats::default(),
        }
    }

    /// The config.
    pub fn config(&self) -> LinkConfig {
        self.config
    }

    /// The counts.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits: a uniform number in [0, 1).
        let x = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    fn jitter(&mut self) -> Duration {
        let max = self.config.jitter.as_nanos().min(u128::from(u64::MAX)) as u64;
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.rng.next_u64() % (max.saturating_add(1)).max(1))
    }

    /// When a packet offered at `now` arrives: never, once, or twice (a
    /// delay past what an `Instant` holds: never, counted as lost).
    fn carry(&mut self, now: Instant) -> [Option<Instant>; 2] {
        self.stats.offered += 1;
        if self.chance(self.config.loss) {
            self.stats.lost += 1;
            return [None, None];
        }
        let mut delay = self.config.delay.saturating_add(self.jitter());
        if self.chance(self.config.reorder) {
            self.stats.reordered += 1;
            delay = delay.saturating_add(self.config.reorder_delay);
        }
        let first = now.checked_add(delay);
        let second = if self.chance(self.config.duplicate) {
            self.stats.duplicated += 1;
            now.checked_add(self.config.delay.saturating_add(self.jitter()))
        } else {
            None
        };
        if first.is_none() {
            self.stats.lost += 1;
        }
        [first, second]
    }
}

// ---- senders ----

/// Writes the payload of frame `n` into a cleared vector.
pub type FrameFn = dyn FnMut(u64, &mut Vec<u8>);

/// What a sender's frames carry.
pub enum Voice {
    /// A sine of `freq_hz` at `amplitude`, phase 0 at the stream's first
    /// sample, encoded in the stream's format.
    Tone { freq_hz: f64, amplitude: f64 },
    /// Digital silence, encoded in the stream's format.
    Silence,
    /// `len` bytes that name the frame: its number (big-endian u64) and
    /// bytes derived from it ([`pattern`]); not decodable audio.
    Pattern { len: usize },
    /// The payload of frame `n`, written by a closure into a cleared vector.
    Custom(Box<FrameFn>),
}

impl Voice {
    /// A tone of `freq_hz` at [`TONE_AMPLITUDE`].
    pub fn tone(freq_hz: f64) -> Voice {
        Voice::Tone {
            freq_hz,
            amplitude: TONE_AMPLITUDE,
        }
    }
}

impl fmt::Debug for Voice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Voice::Tone { freq_hz, amplitude } => write!(f, "Tone({freq_hz} Hz, {amplitude})"),
            Voice::Silence => f.write_str("Silence"),
            Voice::Pattern { len } => write!(f, "Pattern({len})"),
            Voice::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// The payload of frame `n` of [`Voice::Pattern`]: `n` big-endian, then
/// bytes that depend on `n` and their position.
pub fn pattern(n: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    write_pattern(n, len, &mut out);
    out
}

fn write_pattern(n: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend(n.to_be_bytes().iter().copied().take(len));
    let mut x = XorShift::new(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    while out.len() < len {
        out.push(x.next_u32() as u8);
    }
}

/// The frame number a [`Voice::Pattern`] payload names, if it is one.
pub fn pattern_frame(payload: &[u8]) -> Option<u64> {
    let head: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    let n = u64::from_be_bytes(head);
    (pattern(n, payload.len()) == payload).then_some(n)
}

/// A peer's RTP stream.
#[derive(Debug)]
pub struct SenderConfig {
    /// Sets the RTP clock, the samples per frame and the codec of a tone.
    pub format: Format,
    /// The payload type sent (normally the format's).
    pub pt: u8,
    pub ssrc: u32,
    pub first_seq: u16,
    pub first_ts: u32,
    /// The frame duration on the sender's own clock.
    pub ptime: Duration,
    /// How fast the sender's clock runs, in parts per million: frames are
    /// sent every `ptime / (1 + skew_ppm·10⁻⁶)` of true time (timestamps
    /// still advance by one `ptime`).
    pub skew_ppm: i32,
    /// Frames to send (`None`: until stopped).
    pub frames: Option<u64>,
    pub voice: Voice,
}

impl SenderConfig {
    /// A 20 ms stream of `voice` in `format` with `ssrc`, starting at seq
    /// 1000 and timestamp 8000.
    pub fn new(format: Format, ssrc: u32, voice: Voice) -> SenderConfig {
        SenderConfig {
            format,
            pt: format.payload_type(),
            ssrc,
            first_seq: 1000,
            first_ts: 8000,
            ptime: Duration::from_millis(20),
            skew_ppm: 0,
            frames: None,
            voice,
        }
    }

    /// A 20 ms tone of `freq_hz` (see [`SenderConfig::new`]).
    pub fn tone(format: Format, ssrc: u32, freq_hz: f64) -> SenderConfig {
        SenderConfig::new(format, ssrc, Voice::tone(freq_hz))
    }

    /// Frames of [`Voice::Pattern`], as long as one 20 ms frame of `format`
    /// (at least 8 bytes).
    pub fn pattern(format: Format, ssrc: u32) -> SenderConfig {
        let len = (frame_bytes(format, Duration::from_millis(20))).max(8);
        SenderConfig::new(format, ssrc, Voice::Pattern { len })
    }

    /// RTP clock ticks per frame.
    pub fn ticks_per_frame(&self) -> u32 {
        (u128::from(self.format.clock_rate()) * self.ptime.as_nanos() / 1_000_000_000) as u32
    }

    /// Samples per frame at the format's sample rate.
    pub fn samples_per_frame(&self) -> usize {
        (u128::from(self.format.sample_rate()) * self.ptime.as_nanos() / 1_000_000_000) as usize
    }

    /// When frame `n` leaves, after the first (true time, skew applied).
    pub fn offset(&self, n: u64) -> Duration {
        let denom = (1_000_000i128 + i128::from(self.skew_ppm)).max(1);
        let nanos = (self.ptime.as_nanos().min(u128::from(u64::MAX)) as i128)
            .saturating_mul(i128::from(n))
            .saturating_mul(1_000_000)
            / denom;
        Duration::from_nanos(nanos.clamp(0, i128::from(u64::MAX)) as u64)
    }
}

/// Bytes of one frame of `ptime` in `format` (G.711/G.722: one per
/// clock tick; L16: two per sample); Opus has no fixed size (0).
fn frame_bytes(format: Format, ptime: Duration) -> usize {
    let per_s = match format {
        Format::Ulaw | Format::Alaw | Format::G722 => 8000,
        Format::Slin | Format::Slin16 | Format::Slin48 => 2 * format.sample_rate(),
        Format::Opus => 0,
    };
    (u128::from(per_s) * ptime.as_nanos() / 1_000_000_000) as usize
}

/// A running stream.
struct Sender {
    config: SenderConfig,
    /// The stream's generation: a pending send of an older one is void.
    generation: u64,
    started: Instant,
    sent: u64,
    encoder: Option<Encoder>,
    /// The encoded frame, when every frame is the same (a tone of whole
    /// cycles per frame in a stateless codec).
    cached: Option<Vec<u8>>,
    pcm: Vec<i16>,
    payload: Vec<u8>,
}

impl Sender {
    fn new(config: SenderConfig, generation: u64, started: Instant) -> Result<Sender, SimError> {
        let needs_codec = matches!(config.voice, Voice::Tone { .. } | Voice::Silence);
        let encoder = if needs_codec {
            Some(Encoder::new(config.format)?)
        } else {
            None
        };
        Ok(Sender {
            config,
            generation,
            started,
            sent: 0,
            encoder,
            cached: None,
            pcm: Vec::new(),
            payload: Vec::new(),
        })
    }

    /// Writes frame `n`'s payload into `self.payload`.
    fn frame(&mut self, n: u64) -> Result<(), SimError> {
        let samples = self.config.samples_per_frame().min(MAX_FRAME_SAMPLES);
        let stateless = matches!(
            self.config.format,
            Format::Ulaw | Format::Alaw | Format::Slin | Format::Slin16 | Format::Slin48
        );
        match &mut self.config.voice {
            Voice::Pattern { len } => write_pattern(n, *len, &mut self.payload),
            Voice::Custom(f) => {
                self.payload.clear();
                f(n, &mut self.payload);
            }
            Voice::Tone { freq_hz, amplitude } => {
                if let Some(c) = &self.cached {
                    self.payload.clone_from(c);
                    return Ok(());
                }
                let rate = f64::from(self.config.format.sample_rate());
                let w = 2.0 * std::f64::consts::PI * *freq_hz / rate;
                let first = n.saturating_mul(samples as u64);
                self.pcm.clear();
                self.pcm.extend((0..samples as u64).map(|i| {
                    let x = (*amplitude * (w * (first + i) as f64).sin()).round();
                    x.clamp(-32768.0, 32767.0) as i16
                }));
                let cycles = *freq_hz * samples as f64 / rate;
                let repeats = stateless && cycles.fract() == 0.0;
                encode(self.encoder.as_mut(), &self.pcm, &mut self.payload)?;
                if repeats {
                    self.cached = Some(self.payload.clone());
                }
            }
            Voice::Silence => {
                if let Some(c) = &self.cached {
                    self.payload.clone_from(c);
                    return Ok(());
                }
                self.pcm.clear();
                self.pcm.resize(samples, 0);
                encode(self.encoder.as_mut(), &self.pcm, &mut self.payload)?;
                if stateless {
                    self.cached = Some(self.payload.clone());
                }
            }
        }
        Ok(())
    }

    /// The datagram of frame `n` (after [`Sender::frame`]).
    fn datagram(&self, n: u64) -> Vec<u8> {
        let c = &self.config;
        let header = Header {
            marker: n == 0,
            pt: Pt(c.pt & 0x7f),
            seq: SeqNo(c.first_seq.wrapping_add(n as u16)),
            timestamp: RtpTimestamp(
                c.first_ts
                    .wrapping_add((n as u32).wrapping_mul(c.ticks_per_frame())),
            ),
            ssrc: Ssrc(c.ssrc),
        };
        rtp_packet(&header, &self.payload)
    }
}

fn encode(encoder: Option<&mut Encoder>, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), SimError> {
    let Some(encoder) = encoder else {
        return Err(SimError::Codec(CodecError::Unavailable));
    };
    out.clear();
    out.resize(pcm.len() * 2 + 1500, 0);
    let n = encoder.encode(pcm, out)?;
    out.truncate(n);
    Ok(())
}

/// An RTP datagram of `header` and `payload`.
pub fn rtp_packet(header: &Header, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.resize(12, 0);
    let n = header.write(&mut p).unwrap_or(0);
    p.truncate(n);
    p.extend_from_slice(payload);
    p
}

// ---- peers ----

/// A datagram a peer sent.
#[derive(Clone, Debug)]
pub struct Sent {
    pub at: Instant,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// One of a peer's datagrams reaching the node: when, and which
/// ([`Peer::sent`] index). A duplicate arrives twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub at: Instant,
    pub sent: usize,
}

/// A datagram a peer received.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    /// The peer's socket it arrived on.
    pub port: Port,
    pub source: SocketAddr,
    pub bytes: Vec<u8>,
}

/// An RTP packet a peer received, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpRecv {
    pub at: Instant,
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

/// A simulated endpoint (see the module docs).
pub struct Peer {
    addr: SocketAddr,
    /// The leg it sends to.
    leg: Option<LegId>,
    up: Link,
    down: Link,
    sender: Option<Sender>,
    generations: u64,
    sent: Vec<Sent>,
    arrivals: Vec<Arrival>,
    received: Vec<Received>,
}

impl Peer {
    /// Its RTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its RTCP address (the next port).
    pub fn rtcp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr.ip(), self.addr.port().wrapping_add(1))
    }

    /// The leg it sends to.
    pub fn leg(&self) -> Option<LegId> {
        self.leg
    }

    /// The link towards the node.
    pub fn up(&self) -> &Link {
        &self.up
    }

    /// The link from the node.
    pub fn down(&self) -> &Link {
        &self.down
    }

    /// Every datagram it sent, in order.
    pub fn sent(&self) -> &[Sent] {
        &self.sent
    }

    /// Its datagrams that reached the node, in arrival order.
    pub fn arrivals(&self) -> &[Arrival] {
        &self.arrivals
    }

    /// Every datagram it received, in arrival order.
    pub fn received(&self) -> &[Received] {
        &self.received
    }

    /// Frames its sender has sent so far.
    pub fn frames_sent(&self) -> u64 {
        self.sender.as_ref().map_or(0, |s| s.sent)
    }

    /// The RTP packets it received on its RTP port (RTCP muxed there is
    /// left out), in arrival order.
    pub fn rtp(&self) -> Vec<RtpRecv> {
        self.rtp_from(0)
    }

    /// [`Peer::rtp`] of the datagrams received from index `first` of
    /// [`Peer::received`] on.
    pub fn rtp_from(&self, first: usize) -> Vec<RtpRecv> {
        self.received
            .get(first..)
            .unwrap_or(&[])
            .iter()
            .filter(|r| r.port == Port::Rtp && !looks_like_rtcp(&r.bytes))
            .filter_map(|r| {
                let p = RtpPacket::parse(&r.bytes).ok()?;
                Some(RtpRecv {
                    at: r.at,
                    marker: p.marker(),
                    pt: p.pt().0,
                    seq: p.seq().0,
                    ts: p.timestamp().0,
                    ssrc: p.ssrc().0,
                    payload: p.payload().to_vec(),
                })
            })
            .collect()
    }

    /// The RTCP datagrams it received, on its RTCP port or muxed on its
    /// RTP port, in arrival order.
    pub fn rtcp(&self) -> Vec<&Received> {
        self.received
            .iter()
            .filter(|r| r.port == Port::Rtcp || looks_like_rtcp(&r.bytes))
            .collect()
    }
}

/// `packets` sorted by sequence number (extended in arrival order; a
/// stable sort: duplicates stay next to each other).
pub fn in_seq_order(packets: &[RtpRecv]) -> Vec<RtpRecv> {
    let mut highest: Option<ExtSeq> = None;
    let mut keyed: Vec<(u64, RtpRecv)> = packets
        .iter()
        .map(|p| {
            let seq = SeqNo(p.seq);
            // Start high enough that an older packet does not go below 0.
            let ext = seq.extend(highest.unwrap_or(ExtSeq((1 << 32) | u64::from(p.seq))));
            highest = Some(highest.map_or(ext, |h| h.max(ext)));
            (ext.0, p.clone())
        })
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, p)| p).collect()
}

/// Decodes the packets of `format`'s payload type, in the order given.
pub fn decode(format: Format, packets: &[RtpRecv]) -> Result<Vec<i16>, CodecError> {
    let mut decoder = Decoder::new(format)?;
    let mut buf = vec![0i16; MAX_FRAME_SAMPLES];
    let mut pcm = Vec::new();
    for p in packets.iter().filter(|p| p.pt == format.payload_type()) {
        let n = decoder.decode(&p.payload, &mut buf)?;
        pcm.extend_from_slice(buf.get(..n).unwrap_or(&[]));
    }
    Ok(pcm)
}

/// A bridge of `legs`, none muted, no announcer, no flags.
pub fn bridge_spec(legs: &[u64]) -> BridgeSpec {
    BridgeSpec {
        members: legs
            .iter()
            .map(|&leg| MemberSpec {
                leg: LegId(leg),
                mute: false,
                announcer: false,
                absorb_dtmf: false,
            })
            .collect(),
        ..BridgeSpec::default()
    }
}

// ---- buffers ----

/// What the buffer audit found (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferAudit {
    /// Receive buffers lent to the core.
    pub rx_lent: u64,
    /// Handed back by `handle_datagram`.
    pub rx_returned: u64,
    /// Came back in a transmit.
    pub rx_sent: u64,
    /// Lent now.
    pub rx_outstanding: u64,
    /// The most buffers still lent after a step.
    pub rx_held_after_step: u64,
    /// Pool buffers that came in transmits (each released at once).
    pub tx_sent: u64,
    /// The largest shortfall of free pool buffers after a step.
    pub tx_missing: u64,
    /// Tokens that came back without being lent, or with a length past the
    /// buffer.
    pub violations: u64,
    /// Transmits of a leg that has no sockets here (removed, or a Local
    /// half).
    pub stray_transmits: u64,
}

impl BufferAudit {
    /// True when every buffer came back exactly once and none went missing.
    pub fn is_clean(&self) -> bool {
        self.rx_outstanding == 0
            && self.rx_held_after_step == 0
            && self.tx_missing == 0
            && self.violations == 0
            && self.stray_transmits == 0
            && self.rx_lent == self.rx_returned + self.rx_sent
    }
}

/// The receive buffers the sim lends.
#[derive(Default)]
struct RxPool {
    bufs: Vec<Box<[u8]>>,
    lent: Vec<bool>,
    free: Vec<u32>,
    outstanding: u64,
}

impl RxPool {
    /// Copies `bytes` (at most [`RX_BUF_SIZE`]) into a free buffer; its id.
    fn lend(&mut self, bytes: &[u8]) -> u32 {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.bufs.push(vec![0; RX_BUF_SIZE].into_boxed_slice());
                self.lent.push(false);
                self.bufs.len() as u32 - 1
            }
        };
        let i = id as usize;
        if let (Some(buf), Some(lent)) = (self.bufs.get_mut(i), self.lent.get_mut(i)) {
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            *lent = true;
            self.outstanding += 1;
        }
        id
    }

    /// The bytes of lent buffer `id`.
    fn data(&mut self, id: u32, len: usize) -> &mut [u8] {
        match self.bufs.get_mut(id as usize) {
            Some(b) => {
                let n = len.min(b.len());
                &mut b[..n]
            }
            None => &mut [],
        }
    }

    /// Buffer `id` comes back: false if it was not lent.
    fn give_back(&mut self, id: u32) -> bool {
        match self.lent.get_mut(id as usize) {
            Some(lent) if *lent => {
                *lent = false;
                self.free.push(id);
                self.outstanding -= 1;
                true
            }
            _ => false,
        }
    }
}

// ---- events ----

enum What {
    /// The sender of `peer` (of that generation) sends its next frame.
    Send { peer: usize, generation: u64 },
    /// Datagram `sent` of `peer` reaches the node.
    ToNode { peer: usize, sent: usize },
    /// A datagram from the node (in `flying[slot]`) reaches `peer`.
    ToPeer { peer: usize, slot: usize },
}

struct Event {
    at: Instant,
    seq: u64,
    what: What,
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Event) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    /// Reversed: the earliest (then the first made) is the greatest, for
    /// the max-heap.
    fn cmp(&self, other: &Event) -> Ordering {
        other.at.cmp(&self.at).then(other.seq.cmp(&self.seq))
    }
}

// ---- the sim ----

/// One core, its peers, and virtual time (see the module docs).
pub struct Sim {
    core: Core,
    start: Instant,
    now: Instant,
    ntp: u64,
    seed: u64,
    max_steps: u64,
    events: BinaryHeap<Event>,
    made: u64,
    peers: Vec<Peer>,
    /// Peer sockets by address.
    peer_addrs: HashMap<SocketAddr, (usize, Port)>,
    /// Leg sockets by address.
    leg_addrs: HashMap<SocketAddr, (LegId, Port)>,
    /// Each RTP leg's RTP address, by id and by reference.
    leg_rtp: HashMap<LegId, SocketAddr>,
    leg_refs: HashMap<LegRef, SocketAddr>,
    next_port: u16,
    rx: RxPool,
    /// Datagrams on their way to a peer (free slots in `flying_free`).
    flying: Vec<Option<Received>>,
    flying_free: Vec<usize>,
    audit: BufferAudit,
    pool_free_max: usize,
    undelivered: u64,
}

impl Sim {
    /// A sim whose clock starts at `start` (the test reads the real clock
    /// once, if at all; the sim never does).
    pub fn new(start: Instant, config: SimConfig) -> Sim {
        let core = Core::new(CoreConfig {
            tick_ms: config.tick_ms,
            rtcp_interval_ms: config.rtcp_interval_ms,
            cname: config.cname,
            seed: config.seed,
            plc: config.plc,
            ntp_anchor: (start, config.ntp),
        });
        let pool_free_max = core.pool_available();
        Sim {
            core,
            start,
            now: start,
            ntp: config.ntp,
            seed: config.seed,
            max_steps: config.max_steps,
            events: BinaryHeap::new(),
            made: 0,
            peers: Vec::new(),
            peer_addrs: HashMap::new(),
            leg_addrs: HashMap::new(),
            leg_rtp: HashMap::new(),
            leg_refs: HashMap::new(),
            next_port: FIRST_LEG_PORT,
            rx: RxPool::default(),
            flying: Vec::new(),
            flying_free: Vec::new(),
            audit: BufferAudit::default(),
            pool_free_max,
            undelivered: 0,
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// `at` as the NTP timestamp the core uses for it.
    pub fn ntp_at(&self, at: Instant) -> u64 {
        let units = |d: Duration| {
            (d.as_secs() << 32) | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
        };
        if at >= self.start {
            self.ntp.wrapping_add(units(at - self.start))
        } else {
            self.ntp.wrapping_sub(units(self.start - at))
        }
    }

    /// The core, to look at.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The buffer audit so far.
    pub fn audit(&self) -> BufferAudit {
        self.audit
    }

    /// Datagrams the core sent to an address no peer has, and datagrams a
    /// peer sent to an address no leg has.
    pub fn undelivered(&self) -> u64 {
        self.undelivered
    }

    // ---- peers ----

    /// A new peer joined by `up` and `down` links.
    pub fn add_peer(&mut self, up: LinkConfig, down: LinkConfig) -> PeerId {
        let i = self.peers.len();
        let ip = Ipv4Addr::from(0x7f00_0002u32.wrapping_add(i as u32));
        let addr = SocketAddr::new(IpAddr::V4(ip), PEER_PORT);
        let seed = |dir: u64| {
            self.seed
                .wrapping_mul(0x2545_f491_4f6c_dd1d)
                .wrapping_add((i as u64) << 8 | dir)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        };
        let peer = Peer {
            addr,
            leg: None,
            up: Link::new(up, seed(1)),
            down: Link::new(down, seed(2)),
            sender: None,
            generations: 0,
            sent: Vec::new(),
            arrivals: Vec::new(),
            received: Vec::new(),
        };
        self.peer_addrs.insert(addr, (i, Port::Rtp));
        self.peer_addrs.insert(peer.rtcp_addr(), (i, Port::Rtcp));
        self.peers.push(peer);
        PeerId(i)
    }

    /// A peer.
    pub fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(id.0)
    }

    fn peer_mut(&mut self, id: PeerId) -> Result<&mut Peer, SimError> {
        self.peers.get_mut(id.0).ok_or(SimError::UnknownPeer)
    }

    /// Changes a peer's links from now on (their random streams and counts
    /// go on).
    pub fn set_links(
        &mut self,
        id: PeerId,
        up: LinkConfig,
        down: LinkConfig,
    ) -> Result<(), SimError> {
        let p = self.peer_mut(id)?;
        p.up.config = up;
        p.down.config = down;
        Ok(())
    }

    /// Starts `peer`'s stream (replacing any): its first frame leaves now.
    pub fn start_sender(&mut self, id: PeerId, config: SenderConfig) -> Result<(), SimError> {
        let now = self.now;
        let p = self.peer_mut(id)?;
        p.generations += 1;
        let generation = p.generations;
        p.sender = Some(Sender::new(config, generation, now)?);
        self.schedule(
            now,
            What::Send {
                peer: id.0,
                generation,
            },
        );
        Ok(())
    }

    /// Stops `peer`'s stream.
    pub fn stop_sender(&mut self, id: PeerId) -> Result<(), SimError> {
        let p = self.peer_mut(id)?;
        p.generations += 1;
        if let Some(s) = p.sender.as_mut() {
            s.generation = 0;
        }
        Ok(())
    }

    /// `peer` sends `bytes` now from its `port` socket to the same port of
    /// its leg.
    pub fn send(&mut self, id: PeerId, port: Port, bytes: Vec<u8>) -> Result<(), SimError> {
        let leg = self.peer(id).and_then(|p| p.leg).ok_or(SimError::NoLeg)?;
        self.send_to(id, leg, port, bytes)
    }

    /// `peer` sends `bytes` now from its `port` socket to `leg`'s `port`
    /// socket (any leg: a stranger's datagram).
    pub fn send_to(
        &mut self,
        id: PeerId,
        leg: impl Into<LegId>,
        port: Port,
        bytes: Vec<u8>,
    ) -> Result<(), SimError> {
        self.send_from(id, port, leg, port, bytes)
    }

    /// `peer` sends `bytes` now from its `from` socket to `leg`'s `to`
    /// socket (RTCP from the RTP port, say).
    pub fn send_from(
        &mut self,
        id: PeerId,
        from: Port,
        leg: impl Into<LegId>,
        to: Port,
        bytes: Vec<u8>,
    ) -> Result<(), SimError> {
        let leg = leg.into();
        let rtp = *self.leg_rtp.get(&leg).ok_or(SimError::NoLeg)?;
        let to = port_addr(rtp, to);
        let now = self.now;
        let p = self.peer_mut(id)?;
        let from = match from {
            Port::Rtp => p.addr(),
            Port::Rtcp => p.rtcp_addr(),
        };
        p.sent.push(Sent {
            at: now,
            from,
            to,
            bytes,
        });
        let sent = p.sent.len() - 1;
        let arrivals = p.up.carry(now);
        for at in arrivals.into_iter().flatten() {
            self.schedule(at, What::ToNode { peer: id.0, sent });
        }
        Ok(())
    }

    // ---- legs and bridges ----

    fn add_leg(
        &mut self,
        id: LegId,
        peer: PeerId,
        format: Format,
        learn: bool,
    ) -> Result<LegRef, SimError> {
        let remote = self.peer(peer).ok_or(SimError::UnknownPeer)?.addr();
        if self.next_port >= u16::MAX - 1 {
            return Err(SimError::NoAddress);
        }
        let local = SocketAddr::new(IpAddr::V4(NODE_IP), self.next_port);
        let r = self
            .core
            .add_rtp_leg(id, local, (!learn).then_some(remote), format, learn)?;
        self.next_port += 2;
        self.leg_addrs.insert(local, (id, Port::Rtp));
        self.leg_addrs
            .insert(port_addr(local, Port::Rtcp), (id, Port::Rtcp));
        self.leg_rtp.insert(id, local);
        self.leg_refs.insert(r, local);
        self.peer_mut(peer)?.leg = Some(id);
        self.settle();
        Ok(r)
    }

    /// An RTP leg whose remote is `peer` (the peer sends to it from now on).
    pub fn add_rtp_leg(
        &mut self,
        id: impl Into<LegId>,
        peer: PeerId,
        format: Format,
    ) -> Result<LegRef, SimError> {
        self.add_leg(id.into(), peer, format, false)
    }

    /// An RTP leg with no remote: it learns its remote after a probation
    /// (see `media::source`). `peer` sends to it from now on.
    pub fn add_rtp_leg_learning(
        &mut self,
        id: impl Into<LegId>,
        peer: PeerId,
        format: Format,
    ) -> Result<LegRef, SimError> {
        self.add_leg(id.into(), peer, format, true)
    }

    /// The two halves of a Local channel pair.
    pub fn add_local_pair(
        &mut self,
        a: impl Into<LegId>,
        b: impl Into<LegId>,
        format: Format,
    ) -> Result<(), SimError> {
        let (a, b) = (a.into(), b.into());
        self.core.add_local_pair(a, b, format)?;
        self.settle();
        Ok(())
    }

    /// Starts or stops talk detection on a leg (see
    /// [`Core::set_talk_detect`]).
    pub fn set_talk_detect(
        &mut self,
        leg: impl Into<LegId>,
        params: Option<(u32, u32)>,
    ) -> Result<(), SimError> {
        self.core.set_talk_detect(leg.into(), params)?;
        Ok(())
    }

    /// A snoop leg on `target` (see [`Core::add_snoop_leg`]).
    pub fn add_snoop_leg(
        &mut self,
        id: impl Into<LegId>,
        target: impl Into<LegId>,
        spec: crate::media::SnoopSpec,
    ) -> Result<(), SimError> {
        self.core.add_snoop_leg(id.into(), target.into(), spec)?;
        self.settle();
        Ok(())
    }

    /// Removes a leg; its farewell (RR + BYE) goes out through the link.
    pub fn remove_leg(&mut self, id: impl Into<LegId>) -> Result<(), SimError> {
        let id = id.into();
        let removed = self.core.remove_leg(id)?;
        if let Some(t) = removed.farewell {
            self.carry(t);
        }
        self.settle();
        self.leg_refs.remove(&removed.leg);
        if let Some(addr) = self.leg_rtp.remove(&id) {
            self.leg_addrs.remove(&addr);
            self.leg_addrs.remove(&port_addr(addr, Port::Rtcp));
        }
        Ok(())
    }

    /// Detaches a leg and attaches it again, as a leg moves between two
    /// shards' cores (it leaves its bridge); its new reference.
    pub fn reattach_leg(&mut self, id: impl Into<LegId>) -> Result<LegRef, SimError> {
        let (old, state) = self.core.detach_leg(id.into())?;
        let r = self.core.attach_leg(state)?;
        if let Some(addr) = self.leg_refs.remove(&old) {
            self.leg_refs.insert(r, addr);
        }
        self.settle();
        Ok(r)
    }

    /// Sets a bridge; the technology the core chose.
    pub fn set_bridge(
        &mut self,
        key: impl Into<BridgeKey>,
        spec: BridgeSpec,
    ) -> Result<Technology, SimError> {
        let key = key.into();
        let t = self.core.set_bridge(key, spec)?;
        self.settle();
        Ok(t)
    }

    /// Applies a media operation (see [`Core::media_op`]).
    pub fn media_op(
        &mut self,
        target: crate::media::Target,
        op: crate::media::MediaOp,
    ) -> Result<crate::media::MediaDone, SimError> {
        let done = self.core.media_op(target, op)?;
        self.settle();
        Ok(done)
    }

    /// Queues digits on a leg (see [`Core::send_dtmf`]).
    pub fn send_dtmf(
        &mut self,
        leg: impl Into<LegId>,
        steps: Vec<crate::media::dtmf::Step>,
    ) -> Result<(), SimError> {
        self.core.send_dtmf(leg.into(), steps)?;
        self.settle();
        Ok(())
    }

    /// The events the core has for the control plane, drained.
    pub fn take_events(&mut self) -> Vec<crate::media::MediaEvent> {
        let mut out = Vec::new();
        // Bounded by the core's queue (MAX_EVENTS).
        while let Some(e) = self.core.poll_event() {
            out.push(e);
        }
        out
    }

    /// Changes a leg's format (see [`Core::set_format`]).
    pub fn set_format(
        &mut self,
        leg: impl Into<LegId>,
        format: Format,
    ) -> Result<Option<Technology>, SimError> {
        let t = self.core.set_format(leg.into(), format)?;
        self.settle();
        Ok(t)
    }

    /// Removes a bridge.
    pub fn destroy_bridge(&mut self, key: impl Into<BridgeKey>) -> Result<(), SimError> {
        let key = key.into();
        self.core.destroy_bridge(key)?;
        self.settle();
        Ok(())
    }

    /// Runs any other command on the core (talk detection, telephone
    /// events, stopping a clip, a new remote, ...), then carries what it
    /// sent.
    pub fn command<T>(
        &mut self,
        f: impl FnOnce(&mut Core) -> Result<T, CoreError>,
    ) -> Result<T, SimError> {
        let out = f(&mut self.core);
        self.settle();
        Ok(out?)
    }

    /// Mutes or unmutes a leg.
    pub fn set_mute(
        &mut self,
        id: impl Into<LegId>,
        direction: Direction,
        on: bool,
    ) -> Result<(), SimError> {
        let id = id.into();
        self.core.set_mute(id, direction, on)?;
        Ok(())
    }

    /// Holds or unholds a leg.
    pub fn set_hold(&mut self, id: impl Into<LegId>, on: bool) -> Result<(), SimError> {
        let id = id.into();
        self.core.set_hold(id, on)?;
        Ok(())
    }

    /// A leg's counters.
    pub fn stats(&mut self, id: impl Into<LegId>) -> Result<RtpStats, SimError> {
        let id = id.into();
        Ok(self.core.stats(id)?)
    }

    // ---- running ----

    /// Runs `d` of virtual time: every event and timer due until then.
    pub fn run_for(&mut self, d: Duration) -> Result<(), SimError> {
        self.run_until(d, |_| false).map(|_| ())
    }

    /// Runs until `done` holds (checked before the first step and after
    /// each) or `limit` of virtual time passed; whether `done` held. The
    /// clock stops at the step that satisfied `done`, else at the limit.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<bool, SimError> {
        let end = self.now.checked_add(limit).ok_or(SimError::TimeOverflow)?;
        if done(self) {
            return Ok(true);
        }
        for _ in 0..self.max_steps {
            if !self.step(end) {
                self.now = end.max(self.now);
                return Ok(false);
            }
            if done(self) {
                return Ok(true);
            }
        }
        Err(SimError::StepLimit)
    }

    /// One step due by `end`; false when nothing is.
    fn step(&mut self, end: Instant) -> bool {
        let event_at = self.events.peek().map(|e| e.at);
        let timer_at = self.core.poll_timeout().map(|t| t.max(self.now));
        let (at, event) = match (event_at, timer_at) {
            (Some(e), Some(t)) if e <= t => (e, true),
            (_, Some(t)) => (t, false),
            (Some(e), None) => (e, true),
            (None, None) => return false,
        };
        if at > end {
            return false;
        }
        self.now = at.max(self.now);
        if event {
            if let Some(e) = self.events.pop() {
                self.handle(e.what);
            }
        } else {
            self.core.handle_timeout(self.now);
        }
        self.settle();
        true
    }

    fn schedule(&mut self, at: Instant, what: What) {
        self.made += 1;
        self.events.push(Event {
            at,
            seq: self.made,
            what,
        });
    }

    fn handle(&mut self, what: What) {
        match what {
            What::Send { peer, generation } => self.on_send(peer, generation),
            What::ToNode { peer, sent } => self.reach_node(peer, sent),
            What::ToPeer { peer, slot } => {
                let datagram = self.flying.get_mut(slot).and_then(Option::take);
                self.flying_free.push(slot);
                if let (Some(p), Some(mut d)) = (self.peers.get_mut(peer), datagram) {
                    d.at = self.now;
                    p.received.push(d);
                }
            }
        }
    }

    /// A sender's frame is due.
    fn on_send(&mut self, peer: usize, generation: u64) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let Some(s) = p.sender.as_mut().filter(|s| s.generation == generation) else {
            return;
        };
        let n = s.sent;
        if s.config.frames.is_some_and(|max| n >= max) {
            return;
        }
        let datagram = match s.frame(n) {
            Ok(()) => Some(s.datagram(n)),
            Err(_) => None, // Nothing to send this frame; the stream goes on.
        };
        s.sent += 1;
        let next = s.started.checked_add(s.config.offset(n + 1));
        let more = s.config.frames.is_none_or(|max| n + 1 < max);
        let leg = p.leg;
        if let (Some(next), true) = (next, more) {
            self.schedule(next, What::Send { peer, generation });
        }
        match (datagram, leg) {
            (Some(d), Some(leg)) => {
                if self.send_to(PeerId(peer), leg, Port::Rtp, d).is_err() {
                    self.undelivered += 1;
                }
            }
            _ => self.undelivered += 1,
        }
    }

    /// Datagram `sent` of `peer` reaches the node.
    fn reach_node(&mut self, peer: usize, sent: usize) {
        let now = self.now;
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let Some(d) = p.sent.get(sent) else {
            return;
        };
        let (from, to) = (d.from, d.to);
        let Some(&(id, port)) = self.leg_addrs.get(&to) else {
            self.undelivered += 1;
            return;
        };
        let Some(r) = self.core.leg(id) else {
            self.undelivered += 1;
            return;
        };
        p.arrivals.push(Arrival { at: now, sent });
        let len = d.bytes.len();
        if len > RX_BUF_SIZE {
            self.core.handle_truncated(r, port);
            return;
        }
        let buf = self.rx.lend(&d.bytes);
        self.audit.rx_lent += 1;
        let data = self.rx.data(buf, len);
        if let Some(back) = self
            .core
            .handle_datagram(now, r, port, from, data, RxBuf::lend(buf))
        {
            if self.rx.give_back(back.id()) {
                self.audit.rx_returned += 1;
            } else {
                self.audit.violations += 1;
            }
        }
    }

    /// Carries everything the core wants sent, then checks the buffers.
    fn settle(&mut self) {
        for _ in 0..MAX_DRAIN {
            let Some(t) = self.core.poll_transmit() else {
                break;
            };
            self.carry(t);
        }
        let a = &mut self.audit;
        a.rx_outstanding = self.rx.outstanding;
        a.rx_held_after_step = a.rx_held_after_step.max(self.rx.outstanding);
        let free = self.core.pool_available();
        self.pool_free_max = self.pool_free_max.max(free);
        a.tx_missing = a.tx_missing.max((self.pool_free_max - free) as u64);
    }

    /// Takes one transmit's bytes, gives its buffer back, and sends the
    /// bytes down the link of the peer at its destination.
    fn carry(&mut self, t: Transmit) {
        let Transmit {
            leg,
            port,
            dest,
            payload,
        } = t;
        let bytes = match payload {
            Payload::Rx { buf, len } => {
                let id = buf.id();
                let data = self.rx.data(id, len).to_vec();
                if data.len() != len || !self.rx.give_back(id) {
                    self.audit.violations += 1;
                    return;
                }
                self.audit.rx_sent += 1;
                data
            }
            Payload::Tx { buf, len } => {
                let data = self.core.tx_bytes(&buf);
                let ok = len <= data.len();
                let data = data[..len.min(data.len())].to_vec();
                self.core.release_tx(buf);
                self.audit.tx_sent += 1;
                if !ok {
                    self.audit.violations += 1;
                    return;
                }
                data
            }
        };
        if !self.leg_refs.contains_key(&leg) {
            self.audit.stray_transmits += 1;
        }
        let source = self
            .leg_refs
            .get(&leg)
            .map_or(SocketAddr::new(IpAddr::V4(NODE_IP), 0), |&a| {
                port_addr(a, port)
            });
        let Some(&(peer, peer_port)) = self.peer_addrs.get(&dest) else {
            self.undelivered += 1;
            return;
        };
        let now = self.now;
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let [first, copy] = p.down.carry(now);
        let mut datagram = Received {
            at: now,
            port: peer_port,
            source,
            bytes,
        };
        if let Some(at) = copy {
            self.fly(at, peer, datagram.clone());
        }
        if let Some(at) = first {
            datagram.at = at;
            self.fly(at, peer, datagram);
        }
    }

    /// Puts `datagram` on the way to `peer`, arriving `at`.
    fn fly(&mut self, at: Instant, peer: usize, datagram: Received) {
        let slot = match self.flying_free.pop() {
            Some(slot) => {
                if let Some(s) = self.flying.get_mut(slot) {
                    *s = Some(datagram);
                }
                slot
            }
            None => {
                self.flying.push(Some(datagram));
                self.flying.len() - 1
            }
        };
        self.schedule(at, What::ToPeer { peer, slot });
    }
}

/// The address of `port` of a socket pair whose RTP address is `rtp`.
fn port_addr(rtp: SocketAddr, port: Port) -> SocketAddr {
    match port {
        Port::Rtp => rtp,
        Port::Rtcp => SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1)),
    }
}
