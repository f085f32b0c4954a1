//! Offer/answer (RFC 3264): our answer to an offer, our offer, and what an
//! offer/answer pair settled.
//!
//! Owns the choice of the audio format. Invariants: the answer keeps the
//! offer's payload type numbers (RFC 3264 6.1) and its `m=` lines one for
//! one; a format from [`LocalMedia::preferred`] wins over the offer's order
//! (so that two legs with a common format can be bridged natively), then the
//! offer's order decides; only formats in [`LocalMedia::formats`] are
//! accepted; only `RTP/AVP` audio is accepted (no SRTP, no AVPF).

use std::net::{IpAddr, SocketAddr};

use super::model::{
    Connection, Direction, Fmtp, MediaDescription, Origin, RtpMap, SessionDescription,
};
use super::SdpError;
use crate::media::Format;

/// The payload type crossbar offers telephone-event (RFC 4733) on.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// The only transport protocol crossbar accepts.
const PROTO: &str = "RTP/AVP";

/// What crossbar's side of a session looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalMedia {
    /// Our RTP address (the answer's and offer's `c=` and `o=`).
    pub address: IpAddr,
    /// Our RTP port.
    pub port: u16,
    /// The formats we accept, in the order we offer them.
    pub formats: Vec<Format>,
    /// Formats to choose first when offered, best first: e.g. the format of
    /// the leg this one will be bridged to, so the bridge can relay natively.
    pub preferred: Vec<Format>,
    /// The direction we want (sendrecv; sendonly to hold the peer).
    pub direction: Direction,
    /// The packet time we offer, in ms (answers echo the offer's instead).
    pub ptime: Option<u32>,
    /// Whether we accept and offer RTCP multiplexed on the RTP port.
    pub rtcp_mux: bool,
    /// Whether we offer telephone-event on [`TELEPHONE_EVENT_PT`] and accept
    /// it when offered.
    pub telephone_event: bool,
    /// The `o=` session id.
    pub session_id: u64,
    /// The `o=` session version (raise it for each new offer of a dialog).
    pub session_version: u64,
}

impl LocalMedia {
    /// Our side at `address:port`: every format this build carries, no
    /// preference, sendrecv, 20 ms, rtcp-mux and telephone-event accepted.
    pub fn new(address: IpAddr, port: u16, session_id: u64) -> LocalMedia {
        LocalMedia {
            address,
            port,
            formats: Format::available().collect(),
            preferred: Vec::new(),
            direction: Direction::SendRecv,
            ptime: Some(20),
            rtcp_mux: true,
            telephone_event: true,
            session_id,
            session_version: session_id,
        }
    }

    fn session(&self, media: Vec<MediaDescription>) -> SessionDescription {
        let c = Connection::from_ip(self.address);
        SessionDescription {
            origin: Origin {
                username: "crossbar".to_string(),
                session_id: self.session_id,
                session_version: self.session_version,
                addr_type: c.addr_type,
                address: c.address.clone(),
            },
            session_name: "crossbar".to_string(),
            connection: Some(c),
            bandwidth: Vec::new(),
            timing: (0, 0),
            direction: None,
            attributes: Vec::new(),
            media,
        }
    }
}

/// Which side of the exchange we were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We sent the offer.
    Offerer,
    /// We sent the answer.
    Answerer,
}

/// Our answer to an offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The answer to send.
    pub sdp: SessionDescription,
    /// The index of the accepted audio `m=` section.
    pub media_index: usize,
    /// The chosen format.
    pub format: Format,
    /// Its payload type (the offer's number).
    pub payload_type: u8,
    /// The telephone-event payload type, when offered and kept.
    pub dtmf_payload_type: Option<u8>,
    /// Our direction in the answer.
    pub direction: Direction,
    /// The offer's packet time, echoed.
    pub ptime: Option<u32>,
}

/// What an offer/answer pair settled for the audio stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The index of the audio `m=` section.
    pub media_index: usize,
    /// Where to send RTP; `None` when the peer's address is unspecified
    /// (`0.0.0.0`, old-style hold) or a host name.
    pub remote: Option<SocketAddr>,
    /// Where to send RTCP (the RTP address when muxed; `a=rtcp`; else port+1).
    pub remote_rtcp: Option<SocketAddr>,
    /// The format.
    pub format: Format,
    /// Its payload type.
    pub payload_type: u8,
    /// The packet time the peer asked for, in ms.
    pub ptime: Option<u32>,
    /// Our direction: what we may send and receive.
    pub direction: Direction,
    /// The telephone-event payload type, if any.
    pub dtmf_payload_type: Option<u8>,
    /// Whether RTCP is multiplexed on the RTP port (both sides said so).
    pub rtcp_mux: bool,
}

/// The SDP encoding name, clock rate and channel count of a format.
fn rtpmap_of(format: Format) -> (&'static str, u32, Option<u16>) {
    match format {
        Format::Ulaw => ("PCMU", 8000, None),
        Format::Alaw => ("PCMA", 8000, None),
        Format::G722 => ("G722", 8000, None),
        Format::Slin => ("L16", 8000, None),
        Format::Slin16 => ("L16", 16000, None),
        Format::Slin48 => ("L16", 48000, None),
        Format::Opus => ("opus", 48000, Some(2)),
    }
}

/// The crossbar format a payload type of a media section stands for: its
/// `a=rtpmap` (names case-insensitive, clock rates checked, mono except
/// Opus's `/2`), else the static types 0, 8 and 9.
pub fn format_of(media: &MediaDescription, payload_type: u8) -> Option<Format> {
    let Some(map) = media.rtpmap(payload_type) else {
        return match payload_type {
            0 => Some(Format::Ulaw),
            8 => Some(Format::Alaw),
            9 => Some(Format::G722),
            _ => None,
        };
    };
    let channels = map.channels.unwrap_or(1);
    Format::ALL.into_iter().find(|f| {
        let (name, rate, _) = rtpmap_of(*f);
        let channels_ok = if *f == Format::Opus {
            channels == 1 || channels == 2
        } else {
            channels == 1
        };
        map.encoding.eq_ignore_ascii_case(name) && map.clock_rate == rate && channels_ok
    })
}

/// The telephone-event payload types of a section (rtpmap in `media`, else
/// in `fallback`), restricted to those `also_in` lists, with their clock
/// rates; the one at `clock_rate` first, else the first.
fn telephone_event(
    media: &MediaDescription,
    fallback: &MediaDescription,
    also_in: &MediaDescription,
    clock_rate: u32,
) -> Option<u8> {
    let events: Vec<(u8, u32)> = media
        .payload_types()
        .filter(|pt| also_in.payload_types().any(|p| p == *pt))
        .filter_map(|pt| {
            let map = media.rtpmap(pt).or_else(|| fallback.rtpmap(pt))?;
            map.encoding
                .eq_ignore_ascii_case("telephone-event")
                .then_some((pt, map.clock_rate))
        })
        .collect();
    events
        .iter()
        .find(|(_, rate)| *rate == clock_rate)
        .or(events.first())
        .map(|(pt, _)| *pt)
}

fn is_audio_rtp(m: &MediaDescription) -> bool {
    m.port != 0 && m.media.eq_ignore_ascii_case("audio") && m.proto == PROTO
}

/// Our answer to `offer` (RFC 3264 6): the first audio `RTP/AVP` stream with
/// a format we accept is accepted (format from `local.preferred` first, else
/// the offer's first we accept; telephone-event kept; direction answered per
/// 6.1 and limited by `local.direction`; ptime echoed; rtcp-mux echoed when
/// `local.rtcp_mux`); every other stream is answered with port 0.
/// [`SdpError::NotAcceptable`] when no stream can be accepted (SIP 488).
pub fn answer(offer: &SessionDescription, local: &LocalMedia) -> Result<Answer, SdpError> {
    let mut media = Vec::with_capacity(offer.media.len());
    let mut accepted: Option<Answer> = None;
    for (index, m) in offer.media.iter().enumerate() {
        if accepted.is_none() && is_audio_rtp(m) {
            if let Some((format, pt)) = choose(m, local) {
                let dtmf = if local.telephone_event {
                    telephone_event(m, m, m, format.clock_rate())
                } else {
                    None
                };
                let direction = offer.direction_of(m).reversed().intersect(local.direction);
                let mut a =
                    MediaDescription::new(&m.media, local.port, PROTO, vec![pt.to_string()]);
                let (name, rate, channels) = rtpmap_of(format);
                a.rtpmaps.push(RtpMap {
                    payload_type: pt,
                    encoding: name.to_string(),
                    clock_rate: rate,
                    channels,
                });
                if let (Some(dtmf), Some(map)) = (dtmf, dtmf.and_then(|d| m.rtpmap(d))) {
                    a.formats.push(dtmf.to_string());
                    a.rtpmaps.push(map.clone());
                    let fmt = dtmf.to_string();
                    let params = m.fmtp(&fmt).map_or("0-16", |f| f.params.as_str());
                    a.fmtps.push(Fmtp {
                        format: fmt,
                        params: params.to_string(),
                    });
                }
                a.ptime = m.ptime;
                a.rtcp_mux = m.rtcp_mux && local.rtcp_mux;
                a.direction = Some(direction);
                media.push(a);
                accepted = Some(Answer {
                    sdp: local.session(Vec::new()),
                    media_index: index,
                    format,
                    payload_type: pt,
                    dtmf_payload_type: dtmf,
                    direction,
                    ptime: m.ptime,
                });
                continue;
            }
        }
        media.push(MediaDescription::new(
            &m.media,
            0,
            &m.proto,
            m.formats.clone(),
        ));
    }
    let mut answer = accepted.ok_or(SdpError::NotAcceptable {
        reason: "no RTP/AVP audio stream with a supported format",
    })?;
    answer.sdp.media = media;
    Ok(answer)
}

/// The format and payload type to accept from an offered section.
fn choose(m: &MediaDescription, local: &LocalMedia) -> Option<(Format, u8)> {
    let offered: Vec<(Format, u8)> = m
        .payload_types()
        .filter_map(|pt| {
            format_of(m, pt)
                .filter(|f| local.formats.contains(f))
                .map(|f| (f, pt))
        })
        .collect();
    local
        .preferred
        .iter()
        .find_map(|p| offered.iter().find(|(f, _)| f == p))
        .or(offered.first())
        .copied()
}

/// Our offer (offerless INVITE, re-INVITE): one audio `RTP/AVP` stream with
/// `local.preferred` first, then the rest of `local.formats`, each on its
/// [`Format::payload_type`] with an rtpmap, then telephone-event/8000 on
/// [`TELEPHONE_EVENT_PT`]; ptime, direction and rtcp-mux from `local`.
/// [`SdpError::NotAcceptable`] when `local.formats` is empty.
pub fn offer(local: &LocalMedia) -> Result<SessionDescription, SdpError> {
    let mut order: Vec<Format> = Vec::new();
    for f in local.preferred.iter().chain(&local.formats) {
        if local.formats.contains(f) && !order.contains(f) {
            order.push(*f);
        }
    }
    if order.is_empty() {
        return Err(SdpError::NotAcceptable {
            reason: "no formats to offer",
        });
    }
    let mut m = MediaDescription::new("audio", local.port, PROTO, Vec::new());
    for f in order {
        let (name, rate, channels) = rtpmap_of(f);
        m.formats.push(f.payload_type().to_string());
        m.rtpmaps.push(RtpMap {
            payload_type: f.payload_type(),
            encoding: name.to_string(),
            clock_rate: rate,
            channels,
        });
    }
    if local.telephone_event {
        m.formats.push(TELEPHONE_EVENT_PT.to_string());
        m.rtpmaps.push(RtpMap {
            payload_type: TELEPHONE_EVENT_PT,
            encoding: "telephone-event".to_string(),
            clock_rate: 8000,
            channels: None,
        });
        m.fmtps.push(Fmtp {
            format: TELEPHONE_EVENT_PT.to_string(),
            params: "0-16".to_string(),
        });
    }
    m.ptime = local.ptime;
    m.rtcp_mux = local.rtcp_mux;
    m.direction = Some(local.direction);
    Ok(local.session(vec![m]))
}

/// What `offer` and `answer` settled, seen from our `role`: the first audio
/// `RTP/AVP` section accepted on both sides with a format both list (the
/// answer's order decides), the peer's address, ptime and telephone-event,
/// and our direction (ours limited by the peer's, reversed).
/// [`SdpError::NotAcceptable`] when no audio stream was settled.
pub fn negotiated(
    offer: &SessionDescription,
    answer: &SessionDescription,
    role: Role,
) -> Result<Negotiated, SdpError> {
    for (index, (o, a)) in offer.media.iter().zip(&answer.media).enumerate() {
        if !is_audio_rtp(o) || !is_audio_rtp(a) {
            continue;
        }
        let Some((format, payload_type)) = a
            .payload_types()
            .filter(|pt| o.payload_types().any(|p| p == *pt))
            .find_map(|pt| {
                let f = if a.rtpmap(pt).is_some() {
                    format_of(a, pt)
                } else {
                    format_of(o, pt)
                };
                f.map(|f| (f, pt))
            })
        else {
            continue;
        };
        let dtmf_payload_type = telephone_event(a, o, o, format.clock_rate());
        let (ours, our_m, theirs, their_m) = match role {
            Role::Offerer => (offer, o, answer, a),
            Role::Answerer => (answer, a, offer, o),
        };
        let direction = ours
            .direction_of(our_m)
            .intersect(theirs.direction_of(their_m).reversed());
        let ip = theirs
            .connection_of(their_m)
            .and_then(Connection::ip)
            .filter(|ip| !ip.is_unspecified());
        let remote = ip.map(|ip| SocketAddr::new(ip, their_m.port));
        let rtcp_mux = o.rtcp_mux && a.rtcp_mux;
        let remote_rtcp = if rtcp_mux {
            remote
        } else if let Some(r) = &their_m.rtcp {
            r.connection
                .as_ref()
                .and_then(Connection::ip)
                .or(ip)
                .map(|ip| SocketAddr::new(ip, r.port))
        } else {
            ip.and_then(|ip| Some(SocketAddr::new(ip, their_m.port.checked_add(1)?)))
        };
        return Ok(Negotiated {
            media_index: index,
            remote,
            remote_rtcp,
            format,
            payload_type,
            ptime: their_m.ptime,
            direction,
            dtmf_payload_type,
            rtcp_mux,
        });
    }
    Err(SdpError::NotAcceptable {
        reason: "no audio stream settled",
    })
}
