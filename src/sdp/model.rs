//! The typed session description (RFC 4566) and its writer.
//!
//! Owns the data model only: what a parsed description holds and how it is
//! written back. Invariant: every value the parser produces is written back
//! by [`SessionDescription::write`] into text that parses to an equal value
//! (attributes the model types are written in one canonical order, so the
//! text may differ from the original, the model does not).

use std::fmt::{self, Write as _};
use std::net::IpAddr;

/// The network address type of an `o=` or `c=` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrType {
    /// `IP4`.
    Ip4,
    /// `IP6`.
    Ip6,
}

impl AddrType {
    /// The SDP token (`IP4`, `IP6`).
    pub fn token(self) -> &'static str {
        match self {
            AddrType::Ip4 => "IP4",
            AddrType::Ip6 => "IP6",
        }
    }

    /// The address type of an IP address.
    pub fn of(address: IpAddr) -> AddrType {
        match address {
            IpAddr::V4(_) => AddrType::Ip4,
            IpAddr::V6(_) => AddrType::Ip6,
        }
    }
}

/// The `o=` line. The network type is always `IN` (the parser refuses others).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The user name (`-` when there is none).
    pub username: String,
    /// The session id.
    pub session_id: u64,
    /// The session version, raised by each new offer in a dialog.
    pub session_version: u64,
    /// The address type.
    pub addr_type: AddrType,
    /// The address, as written (an IP address or a host name).
    pub address: String,
}

/// A `c=` line. The network type is always `IN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The address type.
    pub addr_type: AddrType,
    /// The address as written, with a multicast `/ttl[/count]` suffix if any.
    pub address: String,
}

impl Connection {
    /// The IP address, when the address is a literal one of the stated type
    /// (not a host name); the multicast suffix is dropped.
    pub fn ip(&self) -> Option<IpAddr> {
        let literal = self.address.split('/').next().unwrap_or("");
        let ip: IpAddr = literal.parse().ok()?;
        (AddrType::of(ip) == self.addr_type).then_some(ip)
    }

    /// A connection to an IP address.
    pub fn from_ip(ip: IpAddr) -> Connection {
        Connection {
            addr_type: AddrType::of(ip),
            address: ip.to_string(),
        }
    }
}

/// A media direction attribute (RFC 3264 5.1, 6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (the default when none is given).
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn token(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute name.
    pub fn from_token(token: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.token() == token)
    }

    /// Whether the side this direction describes sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side this direction describes receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction from sending and receiving flags.
    pub fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The direction seen from the other side (sendonly ↔ recvonly).
    pub fn reversed(self) -> Direction {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// What both allow.
    pub fn intersect(self, other: Direction) -> Direction {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }
}

/// An `a=rtpmap:` attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpMap {
    /// The payload type (0..=127).
    pub payload_type: u8,
    /// The encoding name, as written (compare case-insensitively).
    pub encoding: String,
    /// The RTP clock rate in Hz (non-zero).
    pub clock_rate: u32,
    /// The channel count when given (non-zero).
    pub channels: Option<u16>,
}

/// An `a=fmtp:` attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fmtp {
    /// The format (payload type) it applies to.
    pub format: String,
    /// The parameters, as written.
    pub params: String,
}

/// An `a=rtcp:` attribute (RFC 3605).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtcpAttr {
    /// The RTCP port.
    pub port: u16,
    /// The RTCP address when given.
    pub connection: Option<Connection>,
}

/// Any other attribute, kept in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The name (before the first `:`).
    pub name: String,
    /// The value (after the first `:`), `None` for a property attribute.
    pub value: Option<String>,
}

/// One `m=` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaDescription {
    /// The media type (`audio`, `video`, ...).
    pub media: String,
    /// The transport port; 0 rejects or disables the stream.
    pub port: u16,
    /// The `/<number of ports>` suffix when given.
    pub port_count: Option<u16>,
    /// The transport protocol (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`, ...).
    pub proto: String,
    /// The formats, in preference order; for RTP protocols, payload type
    /// numbers 0..=127 (the parser checks this).
    pub formats: Vec<String>,
    /// The media-level `c=` line.
    pub connection: Option<Connection>,
    /// `b=` lines, as written after `b=`.
    pub bandwidth: Vec<String>,
    /// `a=rtpmap:` attributes, in order.
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp:` attributes, in order.
    pub fmtps: Vec<Fmtp>,
    /// `a=ptime:` in milliseconds.
    pub ptime: Option<u32>,
    /// `a=maxptime:` in milliseconds.
    pub maxptime: Option<u32>,
    /// The media-level direction attribute.
    pub direction: Option<Direction>,
    /// `a=rtcp-mux` (RFC 5761).
    pub rtcp_mux: bool,
    /// `a=rtcp:` (RFC 3605).
    pub rtcp: Option<RtcpAttr>,
    /// Other attributes, in order.
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// A section with no attributes.
    pub fn new(media: &str, port: u16, proto: &str, formats: Vec<String>) -> MediaDescription {
        MediaDescription {
            media: media.to_string(),
            port,
            port_count: None,
            proto: proto.to_string(),
            formats,
            connection: None,
            bandwidth: Vec::new(),
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            ptime: None,
            maxptime: None,
            direction: None,
            rtcp_mux: false,
            rtcp: None,
            attributes: Vec::new(),
        }
    }

    /// Whether the protocol is RTP-based (its formats are payload types).
    pub fn is_rtp(&self) -> bool {
        is_rtp_proto(&self.proto)
    }

    /// The `a=rtpmap:` for a payload type.
    pub fn rtpmap(&self, payload_type: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.payload_type == payload_type)
    }

    /// The `a=fmtp:` for a format.
    pub fn fmtp(&self, format: &str) -> Option<&Fmtp> {
        self.fmtps.iter().find(|f| f.format == format)
    }

    /// The formats that are payload type numbers, in order.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok().filter(|pt| *pt <= 127))
    }
}

/// Whether an `m=` protocol is RTP-based (`RTP/AVP`, `RTP/SAVPF`,
/// `UDP/TLS/RTP/SAVPF`, ...).
pub fn is_rtp_proto(proto: &str) -> bool {
    proto.starts_with("RTP/") || proto.contains("/RTP/")
}

/// A whole session description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDescription {
    /// The `o=` line.
    pub origin: Origin,
    /// The `s=` line (may be empty or `-`).
    pub session_name: String,
    /// The session-level `c=` line.
    pub connection: Option<Connection>,
    /// Session-level `b=` lines, as written after `b=`.
    pub bandwidth: Vec<String>,
    /// The first `t=` line's start and stop times (`0 0` when absent).
    pub timing: (u64, u64),
    /// The session-level direction attribute.
    pub direction: Option<Direction>,
    /// Other session-level attributes, in order.
    pub attributes: Vec<Attribute>,
    /// The `m=` sections, in order.
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// The connection that applies to a media section (its own, else the
    /// session's).
    pub fn connection_of<'a>(&'a self, media: &'a MediaDescription) -> Option<&'a Connection> {
        media.connection.as_ref().or(self.connection.as_ref())
    }

    /// The direction that applies to a media section (its own, else the
    /// session's, else sendrecv).
    pub fn direction_of(&self, media: &MediaDescription) -> Direction {
        media
            .direction
            .or(self.direction)
            .unwrap_or(Direction::SendRecv)
    }

    /// The description as SDP text, CRLF line ends.
    pub fn write(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    fn write_to(&self, out: &mut String) -> fmt::Result {
        let o = &self.origin;
        write!(
            out,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            o.addr_type.token(),
            o.address,
            self.session_name
        )?;
        if let Some(c) = &self.connection {
            write_connection(out, c)?;
        }
        for b in &self.bandwidth {
            write!(out, "b={b}\r\n")?;
        }
        write!(out, "t={} {}\r\n", self.timing.0, self.timing.1)?;
        if let Some(d) = self.direction {
            write!(out, "a={}\r\n", d.token())?;
        }
        for a in &self.attributes {
            write_attribute(out, a)?;
        }
        for m in &self.media {
            write!(out, "m={} {}", m.media, m.port)?;
            if let Some(n) = m.port_count {
                write!(out, "/{n}")?;
            }
            write!(out, " {}", m.proto)?;
            for f in &m.formats {
                write!(out, " {f}")?;
            }
            out.push_str("\r\n");
            if let Some(c) = &m.connection {
                write_connection(out, c)?;
            }
            for b in &m.bandwidth {
                write!(out, "b={b}\r\n")?;
            }
            for r in &m.rtpmaps {
                write!(
                    out,
                    "a=rtpmap:{} {}/{}",
                    r.payload_type, r.encoding, r.clock_rate
                )?;
                if let Some(ch) = r.channels {
                    write!(out, "/{ch}")?;
                }
                out.push_str("\r\n");
            }
            for f in &m.fmtps {
                write!(out, "a=fmtp:{} {}\r\n", f.format, f.params)?;
            }
            if let Some(p) = m.ptime {
                write!(out, "a=ptime:{p}\r\n")?;
            }
            if let Some(p) = m.maxptime {
                write!(out, "a=maxptime:{p}\r\n")?;
            }
            if let Some(r) = &m.rtcp {
                write!(out, "a=rtcp:{}", r.port)?;
                if let Some(c) = &r.connection {
                    write!(out, " IN {} {}", c.addr_type.token(), c.address)?;
                }
                out.push_str("\r\n");
            }
            if m.rtcp_mux {
                out.push_str("a=rtcp-mux\r\n");
            }
            if let Some(d) = m.direction {
                write!(out, "a={}\r\n", d.token())?;
            }
            for a in &m.attributes {
                write_attribute(out, a)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.write())
    }
}

fn write_connection(out: &mut String, c: &Connection) -> fmt::Result {
    write!(out, "c=IN {} {}\r\n", c.addr_type.token(), c.address)
}

fn write_attribute(out: &mut String, a: &Attribute) -> fmt::Result {
    match &a.value {
        Some(v) => write!(out, "a={}:{}\r\n", a.name, v),
        None => write!(out, "a={}\r\n", a.name),
    }
}
