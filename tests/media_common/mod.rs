//! Harness for the media end-to-end tests: the real `crossbar` binary driven
//! over ARI and fed real RTP over 127.0.0.1. Process, HTTP and events
//! WebSocket come from the shared harness (`crate::common`: [`Server`],
//! [`Ws`]); this module adds the media parts.
//!
//! - [`Node`]: a [`Server`] with two data-plane shards and its own RTP port
//!   range, plus the bridge and RTP statistics calls of these tests;
//!   [`Node::events`] opens the `/ari/events?app=e2e` WebSocket.
//! - [`Leg`]: an externalMedia channel and the UDP socket at its far end.
//! - [`Voice`], [`Talker`], [`talk`]: paced RTP of a tone, silence or a
//!   byte pattern, encoded with the crate's own codecs.
//! - [`Capture`]: everything a leg's socket receives, with arrival times.
//! - [`tone_snr_db`], [`mean_power`]: what the received audio contains (with
//!   `common_audio::goertzel_energy` in the test file).
//!
//! Every loop is bounded in count and time; every receive has a timeout.

#![allow(dead_code)]

use std::f64::consts::PI;
use std::net::{SocketAddr, UdpSocket};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbar::codec::{Decoder, Encoder};
use crossbar::media::Format;
use serde_json::Value;

use crate::common::{Server, Ws};

/// The application every test's legs enter.
pub const APP: &str = "e2e";
/// Packetisation time of every stream here.
pub const PTIME: Duration = Duration::from_millis(20);
/// First RTP port of slot 0: above Linux's ephemeral range (32768–60999),
/// so no client socket of any test on the machine can hold one, and above
/// the ranges the other suites of this repository use.
const RTP_BASE: u16 = 61_000;
/// Ports each test's node gets: `RTP_BASE + RTP_SPAN * slot ..`.
const RTP_SPAN: u16 = 200;

/// A running `crossbar` ([`Server`]: HTTP, events, killed on drop) with the
/// media tests' settings and ARI calls.
pub struct Node(Server);

impl Deref for Node {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.0
    }
}

impl Node {
    /// Starts the binary with two data-plane shards, ARI on a free port and
    /// the RTP ports `61000 + 200 * slot ..= +199` (one slot per test).
    pub fn start(slot: u16) -> Node {
        let rtp_min = RTP_BASE + RTP_SPAN * slot;
        Node(Server::start_with_rtp(
            (rtp_min, rtp_min + RTP_SPAN - 1),
            &[("CROSSBAR_DATAPLANE_SHARDS", "2")],
        ))
    }

    /// Starts the binary like [`Node::start`] but with the 2,000 RTP ports
    /// 63200–65199 (room for 1,000 legs; one test only uses it).
    pub fn start_wide() -> Node {
        Node(Server::start_with_rtp(
            (63_200, 65_199),
            &[("CROSSBAR_DATAPLANE_SHARDS", "2")],
        ))
    }

    /// Opens the events WebSocket of [`APP`] and waits until the application
    /// is registered.
    pub fn events(&self) -> Ws {
        self.ws(APP)
    }

    /// Creates a mixing bridge; returns its id.
    pub fn mixing_bridge(&self) -> String {
        self.bridge("?type=mixing")
    }

    /// `POST /bridges/{id}/addChannel`.
    pub fn add_to_bridge(&self, bridge: &str, leg: &Leg) {
        self.add(bridge, &leg.id);
    }

    /// `POST /bridges/{id}/removeChannel`.
    pub fn remove_from_bridge(&self, bridge: &str, leg: &Leg) {
        self.post(&format!(
            "/ari/bridges/{bridge}/removeChannel?channel={}",
            leg.id
        ))
        .no_content();
    }

    /// The `technology` `GET /bridges/{id}` reports.
    pub fn technology(&self, bridge: &str) -> String {
        let r = self.get(&format!("/ari/bridges/{bridge}"));
        r.ok()["technology"]
            .as_str()
            .expect("technology")
            .to_string()
    }

    /// `GET /channels/{id}/rtp_statistics`.
    pub fn rtp_statistics(&self, leg: &Leg) -> Value {
        self.get(&format!("/ari/channels/{}/rtp_statistics", leg.id))
            .ok()
            .clone()
    }

    /// One counter of [`Node::rtp_statistics`].
    pub fn rtp_counter(&self, leg: &Leg, name: &str) -> u64 {
        self.rtp_statistics(leg)[name]
            .as_u64()
            .unwrap_or_else(|| panic!("rtp_statistics has no {name}"))
    }
}

/// An externalMedia channel and the socket at its far end (where crossbar
/// sends the leg's RTP, and from where the test sends to it).
pub struct Leg {
    pub id: String,
    pub format: Format,
    pub socket: UdpSocket,
    /// Where crossbar receives this leg's RTP (`UNICASTRTP_LOCAL_PORT`).
    pub crossbar: SocketAddr,
}

impl Leg {
    /// Binds 127.0.0.1:0 and creates an externalMedia leg pointing at it.
    pub fn open(node: &Node, format: Format) -> Leg {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let far = socket.local_addr().expect("local_addr");
        let r = node.post(&format!(
            "/ari/channels/externalMedia?app={APP}&external_host={far}&format={}",
            format.name()
        ));
        let channel = r.ok();
        let id = channel["id"].as_str().expect("channel id").to_string();
        let port: u16 = channel["channelvars"]["UNICASTRTP_LOCAL_PORT"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no UNICASTRTP_LOCAL_PORT in {channel}"));
        Leg {
            id,
            format,
            socket,
            crossbar: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// Sends one raw datagram to crossbar from this leg's socket.
    pub fn send_raw(&self, datagram: &[u8]) {
        self.socket
            .send_to(datagram, self.crossbar)
            .expect("send to crossbar");
    }

    /// A [`Talker`] sending `voice` on this leg.
    pub fn talker(&self, ssrc: u32, voice: Voice) -> Talker {
        Talker::new(self, ssrc, voice)
    }

    /// Starts capturing what crossbar sends to this leg.
    pub fn capture(&self) -> Capture {
        Capture::start(&self.socket)
    }
}

/// What a talker sends.
#[derive(Clone, Copy, Debug)]
pub enum Voice {
    /// A sine tone: frequency (Hz) and peak amplitude.
    Tone(f64, f64),
    /// Digital silence.
    Silence,
    /// Opaque payload bytes, [`pattern_payload`]`(tag, frame)` (not audio: for
    /// relays, which never decode).
    Pattern(u8),
}

/// One RTP stream of paced frames, encoded with crossbar's codecs.
pub struct Talker {
    socket: UdpSocket,
    dest: SocketAddr,
    format: Format,
    encoder: Encoder,
    voice: Voice,
    ssrc: u32,
    seq: u16,
    ts: u32,
    /// Frames sent so far (also the phase of the tone).
    pub frames: u32,
}

impl Talker {
    fn new(leg: &Leg, ssrc: u32, voice: Voice) -> Talker {
        Talker {
            socket: leg.socket.try_clone().expect("clone socket"),
            dest: leg.crossbar,
            format: leg.format,
            encoder: Encoder::new(leg.format).expect("encoder"),
            voice,
            ssrc,
            seq: (ssrc >> 3) as u16,
            ts: ssrc.rotate_left(7),
            frames: 0,
        }
    }

    /// The next RTP packet of the stream.
    pub fn next_packet(&mut self) -> Vec<u8> {
        let rate = self.format.sample_rate() as usize;
        let samples = rate * PTIME.as_millis() as usize / 1000;
        let payload = match self.voice {
            Voice::Pattern(tag) => pattern_payload(tag, self.frames),
            Voice::Silence => self.encode(&vec![0; samples]),
            Voice::Tone(freq, amp) => {
                let first = self.frames as usize * samples;
                let pcm: Vec<i16> = (first..first + samples)
                    .map(|n| (amp * (2.0 * PI * freq * n as f64 / rate as f64).sin()) as i16)
                    .collect();
                self.encode(&pcm)
            }
        };
        let packet = rtp_packet(
            self.ssrc,
            self.seq,
            self.ts,
            self.format.payload_type(),
            &payload,
        );
        self.seq = self.seq.wrapping_add(1);
        let ticks = self.format.clock_rate() * PTIME.as_millis() as u32 / 1000;
        self.ts = self.ts.wrapping_add(ticks);
        self.frames += 1;
        packet
    }

    fn encode(&mut self, pcm: &[i16]) -> Vec<u8> {
        let mut out = vec![0u8; 1500];
        let n = self.encoder.encode(pcm, &mut out).expect("encode frame");
        out.truncate(n);
        out
    }

    fn send_next(&mut self) {
        let packet = self.next_packet();
        self.socket
            .send_to(&packet, self.dest)
            .expect("send RTP to crossbar");
    }
}

/// Sends `frames` frames from every talker, one each per [`PTIME`] on an
/// absolute schedule (a late turn is caught up, not skipped), in a thread.
pub fn talk(mut talkers: Vec<Talker>, frames: u32) -> JoinHandle<Vec<Talker>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        for i in 0..frames {
            let due = start + PTIME * i;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            for t in &mut talkers {
                t.send_next();
            }
        }
        talkers
    })
}

/// The payload bytes of frame `frame` of [`Voice::Pattern`]`(tag)`: 160
/// bytes, different for every frame and tag.
pub fn pattern_payload(tag: u8, frame: u32) -> Vec<u8> {
    (0..160u32)
        .map(|k| (k.wrapping_mul(31) ^ frame.wrapping_mul(7) ^ u32::from(tag) << 5) as u8)
        .collect()
}

/// A plain RTP packet (version 2, no CSRC, no extension, no marker).
pub fn rtp_packet(ssrc: u32, seq: u16, ts: u32, pt: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.extend_from_slice(&[0x80, pt & 0x7f]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// One datagram received from crossbar.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub bytes: Vec<u8>,
}

impl Received {
    /// Whether it is a well-formed RTP packet (version 2, at least a header).
    pub fn is_rtp(&self) -> bool {
        crossbar::rtp::RtpPacket::parse(&self.bytes).is_ok()
    }

    fn rtp(&self) -> crossbar::rtp::RtpPacket<'_> {
        crossbar::rtp::RtpPacket::parse(&self.bytes)
            .unwrap_or_else(|e| panic!("crossbar sent a datagram that is not RTP: {e:?}"))
    }

    pub fn marker(&self) -> bool {
        self.rtp().marker()
    }
    pub fn pt(&self) -> u8 {
        self.rtp().pt().0
    }
    pub fn seq(&self) -> u16 {
        self.rtp().seq().0
    }
    pub fn ts(&self) -> u32 {
        self.rtp().timestamp().0
    }
    pub fn ssrc(&self) -> u32 {
        self.rtp().ssrc().0
    }
    pub fn payload(&self) -> &[u8] {
        self.rtp().payload()
    }
}

/// Everything a socket receives until [`Capture::finish`] (at most
/// [`Capture::LIMIT`] datagrams or [`Capture::LONGEST`]).
pub struct Capture {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Received>>,
}

impl Capture {
    pub const LIMIT: usize = 20_000;
    pub const LONGEST: Duration = Duration::from_secs(30);

    fn start(socket: &UdpSocket) -> Capture {
        let socket = socket.try_clone().expect("clone socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while got.len() < Capture::LIMIT
                && started.elapsed() < Capture::LONGEST
                && !flag.load(Ordering::Relaxed)
            {
                if let Ok(n) = socket.recv(&mut buf) {
                    got.push(Received {
                        at: Instant::now(),
                        bytes: buf[..n].to_vec(),
                    });
                }
            }
            got
        });
        Capture { stop, handle }
    }

    /// Waits `linger` for stragglers, then stops and returns what arrived.
    pub fn finish(self, linger: Duration) -> Vec<Received> {
        std::thread::sleep(linger);
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("capture thread")
    }
}

/// Decodes the payloads of `packets` (those of `format`'s payload type, in
/// arrival order) into one PCM signal at `format`'s sample rate.
pub fn decode_stream(packets: &[Received], format: Format) -> Vec<i16> {
    decode_between(packets, format, None)
}

/// Like [`decode_stream`], but keeps only the audio of packets that arrived
/// in `from..=to`. Every packet is decoded, so a stateful decoder (Opus,
/// G.722) is in step when the kept part begins.
pub fn decode_arrived(
    packets: &[Received],
    format: Format,
    from: Instant,
    to: Instant,
) -> Vec<i16> {
    decode_between(packets, format, Some((from, to)))
}

fn decode_between(
    packets: &[Received],
    format: Format,
    window: Option<(Instant, Instant)>,
) -> Vec<i16> {
    let mut decoder = Decoder::new(format).expect("decoder");
    let mut pcm = Vec::new();
    let mut frame = vec![0i16; crossbar::codec::MAX_FRAME_SAMPLES];
    for p in packets
        .iter()
        .filter(|p| p.is_rtp() && p.pt() == format.payload_type())
    {
        let n = decoder
            .decode(p.payload(), &mut frame)
            .unwrap_or_else(|e| panic!("crossbar sent an undecodable {format:?} payload: {e}"));
        let kept = match window {
            Some((from, to)) => p.at >= from && p.at <= to,
            None => true,
        };
        if kept {
            pcm.extend_from_slice(&frame[..n]);
        }
    }
    pcm
}

/// Mean power of `samples`.
pub fn mean_power(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64
}

/// Decibels of a power ratio.
pub fn db(ratio: f64) -> f64 {
    10.0 * ratio.max(1e-30).log10()
}

/// Signal-to-noise ratio (dB) of a `freq` tone in `samples`: in each block
/// of `block` samples a sine of that frequency (any amplitude and phase,
/// plus DC) is fitted by least squares; signal is the energy of the fits,
/// noise the energy of what they leave. Blocks let a codec's or jitter
/// buffer's phase shift cost one block, not the whole measure.
pub fn tone_snr_db(samples: &[i16], rate: u32, freq: f64, block: usize) -> f64 {
    let w = 2.0 * PI * freq / f64::from(rate);
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (b, chunk) in samples.chunks_exact(block).enumerate() {
        let base = b * block;
        // Normal equations for x ≈ a·cos + c·sin + d.
        let mut m = [[0.0f64; 3]; 3];
        let mut v = [0.0f64; 3];
        for (i, &x) in chunk.iter().enumerate() {
            let t = w * (base + i) as f64;
            let basis = [t.cos(), t.sin(), 1.0];
            for r in 0..3 {
                for c in 0..3 {
                    m[r][c] += basis[r] * basis[c];
                }
                v[r] += basis[r] * f64::from(x);
            }
        }
        let Some(coef) = solve3(m, v) else {
            continue;
        };
        for (i, &x) in chunk.iter().enumerate() {
            let t = w * (base + i) as f64;
            let fit = coef[0] * t.cos() + coef[1] * t.sin();
            let residual = f64::from(x) - fit - coef[2];
            signal += fit * fit;
            noise += residual * residual;
        }
    }
    db(signal / noise.max(1e-9))
}

/// Solves a 3×3 linear system (Gaussian elimination, partial pivoting).
fn solve3(mut m: [[f64; 3]; 3], mut v: [f64; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let pivot = (col..3).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-9 {
            return None;
        }
        m.swap(col, pivot);
        v.swap(col, pivot);
        for row in col + 1..3 {
            let f = m[row][col] / m[col][col];
            let pivot_row = m[col];
            for (dst, p) in m[row].iter_mut().zip(pivot_row).skip(col) {
                *dst -= f * p;
            }
            v[row] -= f * v[col];
        }
    }
    let mut x = [0.0f64; 3];
    for row in (0..3).rev() {
        let tail: f64 = (row + 1..3).map(|k| m[row][k] * x[k]).sum();
        x[row] = (v[row] - tail) / m[row][row];
    }
    Some(x)
}
