//! The SDP parser: bytes from the network into a [`SessionDescription`].
//!
//! Owns the reading of untrusted text. Invariants: it never panics; it reads
//! at most [`MAX_SDP_BYTES`] bytes, [`MAX_LINES`] lines of at most
//! [`MAX_LINE_LEN`] bytes, [`MAX_MEDIA`] `m=` sections of at most
//! [`MAX_FORMATS`] formats each; every refusal names the 1-based line it
//! found wrong ([`SdpError::Malformed`]) or the limit exceeded
//! ([`SdpError::TooLarge`]). Line ends may be CRLF or LF; empty lines are
//! skipped; control characters other than tab are refused. Lines the model
//! does not keep (`i=`, `u=`, `e=`, `p=`, `r=`, `z=`, `k=`, later `t=`) are
//! checked for shape and dropped; an unknown type letter is refused
//! (RFC 4566 5).

use super::model::{
    AddrType, Attribute, Connection, Direction, Fmtp, MediaDescription, Origin, RtcpAttr, RtpMap,
    SessionDescription,
};
use super::SdpError;

/// The largest body accepted, in bytes.
pub const MAX_SDP_BYTES: usize = 32 * 1024;
/// The most non-empty lines accepted.
pub const MAX_LINES: usize = 512;
/// The longest line accepted, in bytes (without its line end).
pub const MAX_LINE_LEN: usize = 1024;
/// The most `m=` sections accepted.
pub const MAX_MEDIA: usize = 32;
/// The most formats accepted on one `m=` line.
pub const MAX_FORMATS: usize = 64;

type Res<T> = Result<T, &'static str>;

/// Parses a session description.
pub fn parse(input: &[u8]) -> Result<SessionDescription, SdpError> {
    if input.len() > MAX_SDP_BYTES {
        return Err(SdpError::TooLarge {
            limit: "body bytes",
        });
    }
    let mut p = Parser::default();
    let mut count = 0usize;
    for (index, raw) in input.split(|&b| b == b'\n').enumerate() {
        let line = index.saturating_add(1);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        count += 1;
        if count > MAX_LINES {
            return Err(SdpError::TooLarge { limit: "lines" });
        }
        p.line(line, raw)
            .map_err(|reason| SdpError::Malformed { line, reason })?;
    }
    p.finish()
}

#[derive(Default)]
struct Parser {
    seen_version: bool,
    origin: Option<Origin>,
    session_name: Option<String>,
    connection: Option<Connection>,
    bandwidth: Vec<String>,
    timing: Option<(u64, u64)>,
    direction: Option<Direction>,
    attributes: Vec<Attribute>,
    media: Vec<MediaDescription>,
    /// The line of each `m=`, for errors found at the end.
    media_lines: Vec<usize>,
}

impl Parser {
    fn line(&mut self, line: usize, raw: &[u8]) -> Res<()> {
        if raw.len() > MAX_LINE_LEN {
            return Err("line too long");
        }
        if raw.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err("control character");
        }
        let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8")?;
        let (kind, value) = match (raw.first(), raw.get(1), text.get(2..)) {
            (Some(&k), Some(b'='), Some(v)) if k.is_ascii_lowercase() => (k, v),
            _ => return Err("expected <type>=<value>"),
        };
        if !self.seen_version {
            if kind != b'v' {
                return Err("first line must be v=");
            }
            if value != "0" {
                return Err("unsupported version");
            }
            self.seen_version = true;
            return Ok(());
        }
        let in_media = !self.media.is_empty();
        match kind {
            b'v' => Err("repeated v="),
            b'o' if in_media => Err("o= in a media section"),
            b'o' if self.origin.is_some() => Err("repeated o="),
            b'o' => {
                self.origin = Some(origin(value)?);
                Ok(())
            }
            b's' if in_media => Err("s= in a media section"),
            b's' if self.session_name.is_some() => Err("repeated s="),
            b's' => {
                self.session_name = Some(value.to_string());
                Ok(())
            }
            _ if self.origin.is_none() || self.session_name.is_none() => {
                Err("o= and s= must come first")
            }
            b'i' | b'k' => Ok(()),
            b'u' | b'e' | b'p' | b'r' | b'z' if in_media => Err("session line in a media section"),
            b'u' | b'e' | b'p' | b'r' | b'z' => Ok(()),
            b't' if in_media => Err("t= in a media section"),
            b't' => {
                let t = timing(value)?;
                self.timing.get_or_insert(t);
                Ok(())
            }
            b'c' => {
                let c = connection(value)?;
                let slot = match self.media.last_mut() {
                    Some(m) => &mut m.connection,
                    None => &mut self.connection,
                };
                if slot.is_some() {
                    return Err("repeated c=");
                }
                *slot = Some(c);
                Ok(())
            }
            b'b' => {
                if !value.contains(':') {
                    return Err("b= without <type>:<bandwidth>");
                }
                match self.media.last_mut() {
                    Some(m) => m.bandwidth.push(value.to_string()),
                    None => self.bandwidth.push(value.to_string()),
                }
                Ok(())
            }
            b'm' => {
                if self.media.len() >= MAX_MEDIA {
                    return Err("too many m= sections");
                }
                self.media.push(media(value)?);
                self.media_lines.push(line);
                Ok(())
            }
            b'a' => match self.media.last_mut() {
                Some(m) => media_attribute(m, value),
                None => {
                    let (name, v) = split_attribute(value)?;
                    match (Direction::from_token(name), v) {
                        (Some(d), None) => {
                            if self.direction.replace(d).is_some() {
                                return Err("repeated direction attribute");
                            }
                        }
                        _ => self.attributes.push(Attribute {
                            name: name.to_string(),
                            value: v.map(str::to_string),
                        }),
                    }
                    Ok(())
                }
            },
            _ => Err("unknown line type"),
        }
    }

    fn finish(self) -> Result<SessionDescription, SdpError> {
        let (Some(origin), Some(session_name)) = (self.origin, self.session_name) else {
            return Err(SdpError::Malformed {
                line: 0,
                reason: "missing v=, o= or s=",
            });
        };
        for (m, &line) in self.media.iter().zip(&self.media_lines) {
            if m.port != 0 && m.connection.is_none() && self.connection.is_none() {
                return Err(SdpError::Malformed {
                    line,
                    reason: "no c= for this m= section",
                });
            }
        }
        Ok(SessionDescription {
            origin,
            session_name,
            connection: self.connection,
            bandwidth: self.bandwidth,
            timing: self.timing.unwrap_or((0, 0)),
            direction: self.direction,
            attributes: self.attributes,
            media: self.media,
        })
    }
}

/// A decimal number of ASCII digits only (no sign), at most 20 digits.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn small<T: TryFrom<u64>>(s: &str) -> Option<T> {
    number(s).and_then(|n| T::try_from(n).ok())
}

fn addr_type(s: &str) -> Res<AddrType> {
    match s {
        "IP4" => Ok(AddrType::Ip4),
        "IP6" => Ok(AddrType::Ip6),
        _ => Err("unknown address type"),
    }
}

fn origin(value: &str) -> Res<Origin> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [username, id, version, net, addr, address] = f.as_slice() else {
        return Err("o= needs 6 fields");
    };
    if *net != "IN" {
        return Err("unknown network type");
    }
    Ok(Origin {
        username: (*username).to_string(),
        session_id: number(id).ok_or("bad session id")?,
        session_version: number(version).ok_or("bad session version")?,
        addr_type: addr_type(addr)?,
        address: (*address).to_string(),
    })
}

fn connection(value: &str) -> Res<Connection> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [net, addr, address] = f.as_slice() else {
        return Err("c= needs 3 fields");
    };
    if *net != "IN" {
        return Err("unknown network type");
    }
    Ok(Connection {
        addr_type: addr_type(addr)?,
        address: (*address).to_string(),
    })
}

fn timing(value: &str) -> Res<(u64, u64)> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    match f.as_slice() {
        [start, stop] => Ok((
            number(start).ok_or("bad t= start")?,
            number(stop).ok_or("bad t= stop")?,
        )),
        _ => Err("t= needs 2 fields"),
    }
}

fn media(value: &str) -> Res<MediaDescription> {
    let mut f = value.split_ascii_whitespace();
    let (Some(kind), Some(port), Some(proto)) = (f.next(), f.next(), f.next()) else {
        return Err("m= needs media, port, proto and formats");
    };
    let (port, port_count) = match port.split_once('/') {
        Some((p, n)) => (
            p,
            Some(small::<u16>(n).filter(|n| *n > 0).ok_or("bad port count")?),
        ),
        None => (port, None),
    };
    let port = small::<u16>(port).ok_or("bad port")?;
    let mut m = MediaDescription::new(kind, port, proto, Vec::new());
    m.port_count = port_count;
    let rtp = m.is_rtp();
    for fmt in f {
        if m.formats.len() >= MAX_FORMATS {
            return Err("too many formats");
        }
        let fmt = if rtp {
            small::<u8>(fmt)
                .filter(|pt| *pt <= 127)
                .ok_or("bad payload type")?
                .to_string()
        } else {
            fmt.to_string()
        };
        m.formats.push(fmt);
    }
    if m.formats.is_empty() {
        return Err("m= needs media, port, proto and formats");
    }
    Ok(m)
}

/// Splits `name[:value]`; the name must be a non-empty token.
fn split_attribute(value: &str) -> Res<(&str, Option<&str>)> {
    let (name, v) = match value.split_once(':') {
        Some((n, v)) => (n, Some(v)),
        None => (value, None),
    };
    if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err("bad attribute name");
    }
    Ok((name, v))
}

/// Splits at the first space or tab; the rest loses its leading blanks.
fn split_blank(s: &str) -> (&str, &str) {
    match s.split_once([' ', '\t']) {
        Some((a, b)) => (a, b.trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

fn media_attribute(m: &mut MediaDescription, value: &str) -> Res<()> {
    let (name, v) = split_attribute(value)?;
    match (name, v) {
        ("rtpmap", Some(v)) => {
            let map = rtpmap(v)?;
            if m.rtpmap(map.payload_type).is_some() {
                return Err("repeated rtpmap for a payload type");
            }
            m.rtpmaps.push(map);
        }
        ("rtpmap", None) => return Err("rtpmap without value"),
        ("fmtp", Some(v)) => {
            let (format, params) = split_blank(v);
            if format.is_empty() {
                return Err("fmtp without format");
            }
            m.fmtps.push(Fmtp {
                format: format.to_string(),
                params: params.to_string(),
            });
        }
        ("fmtp", None) => return Err("fmtp without value"),
        ("ptime", v) => {
            let p = v.and_then(milliseconds).ok_or("bad ptime")?;
            if m.ptime.replace(p).is_some() {
                return Err("repeated ptime");
            }
        }
        ("maxptime", v) => {
            let p = v.and_then(milliseconds).ok_or("bad maxptime")?;
            if m.maxptime.replace(p).is_some() {
                return Err("repeated maxptime");
            }
        }
        ("rtcp-mux", None) => m.rtcp_mux = true,
        ("rtcp", v) => {
            let r = rtcp(v.ok_or("rtcp without value")?)?;
            if m.rtcp.replace(r).is_some() {
                return Err("repeated rtcp");
            }
        }
        (name, None) if Direction::from_token(name).is_some() => {
            let d = Direction::from_token(name).ok_or("bad direction")?;
            if m.direction.replace(d).is_some() {
                return Err("repeated direction attribute");
            }
        }
        (name, v) => m.attributes.push(Attribute {
            name: name.to_string(),
            value: v.map(str::to_string),
        }),
    }
    Ok(())
}

/// A packet time in ms: digits, optionally a fraction some stacks send
/// (`20.0`), which is dropped. Zero and more than 10 s are refused.
fn milliseconds(v: &str) -> Option<u32> {
    let v = v.trim_matches([' ', '\t']);
    let whole = match v.split_once('.') {
        Some((w, frac)) if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) => w,
        Some(_) => return None,
        None => v,
    };
    small::<u32>(whole).filter(|p| (1..=10_000).contains(p))
}

fn rtpmap(v: &str) -> Res<RtpMap> {
    let (pt, rest) = split_blank(v);
    let payload_type = small::<u8>(pt)
        .filter(|pt| *pt <= 127)
        .ok_or("bad rtpmap payload type")?;
    let rest = rest.trim_end_matches([' ', '\t']);
    let mut parts = rest.split('/');
    let encoding = parts.next().unwrap_or("");
    if encoding.is_empty() || encoding.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err("bad rtpmap encoding name");
    }
    let clock_rate = parts
        .next()
        .and_then(small::<u32>)
        .filter(|r| *r > 0)
        .ok_or("bad rtpmap clock rate")?;
    let channels = match parts.next() {
        Some(c) => Some(
            small::<u16>(c)
                .filter(|c| *c > 0)
                .ok_or("bad rtpmap channels")?,
        ),
        None => None,
    };
    if parts.next().is_some() {
        return Err("bad rtpmap");
    }
    Ok(RtpMap {
        payload_type,
        encoding: encoding.to_string(),
        clock_rate,
        channels,
    })
}

fn rtcp(v: &str) -> Res<RtcpAttr> {
    let f: Vec<&str> = v.split_ascii_whitespace().collect();
    match f.as_slice() {
        [port] => Ok(RtcpAttr {
            port: small::<u16>(port).ok_or("bad rtcp port")?,
            connection: None,
        }),
        [port, net, addr, address] => {
            if *net != "IN" {
                return Err("unknown network type");
            }
            Ok(RtcpAttr {
                port: small::<u16>(port).ok_or("bad rtcp port")?,
                connection: Some(Connection {
                    addr_type: addr_type(addr)?,
                    address: (*address).to_string(),
                }),
            })
        }
        _ => Err("bad rtcp attribute"),
    }
}
