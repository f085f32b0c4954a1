//! A client of rtpengine's `ng` control protocol, so `relay --rtpengine
//! ADDR` can run the same two-party traffic through rtpengine that it runs
//! through crossbar.
//!
//! The protocol: one UDP datagram per request, `COOKIE SP BENCODED-DICT`;
//! the reply repeats the cookie and carries a dictionary with `result`
//! (`ok`, `pong`, or `error` with `error-reason`) and, for `offer` and
//! `answer`, the rewritten `sdp`. rtpengine caches replies by cookie, so a
//! request whose reply was lost is simply sent again with the same cookie.
//!
//! - [`Bencode`]: the codec (integers, byte strings, lists, dictionaries
//!   with sorted keys); decoding is bounded in depth and never panics.
//! - [`NgClient`]: requests with a timeout and retransmission; `ping`,
//!   `offer`, `answer`, `delete`.
//! - [`offer_sdp`] / [`media_addr`]: the SDP the tool sends (one PCMU
//!   `m=audio` line on the leg's socket) and the address rtpengine returns.
//! - [`NgSession`]: remembers every call it started and deletes them all on
//!   teardown (also from `Drop`: on error and after Ctrl-C).
//!
//! Safety: the ng address must be loopback (127.0.0.0/8, `localhost`, `::1`)
//! unless `--allow-remote`; hostnames other than `localhost` are not
//! resolved without it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

/// Deepest nesting [`Bencode::decode`] accepts.
const MAX_DEPTH: usize = 32;
/// Largest reply datagram.
const MAX_REPLY: usize = 65_535;
/// A request is sent again after this long without its reply.
const RETRANSMIT: Duration = Duration::from_millis(500);

/// A bencoded value.
#[derive(Clone, Debug, PartialEq)]
pub enum Bencode {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Bencode>),
    /// Keys are kept sorted (bencode requires it; `BTreeMap` sorts bytes).
    Dict(BTreeMap<Vec<u8>, Bencode>),
}

impl From<&str> for Bencode {
    fn from(s: &str) -> Bencode {
        Bencode::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for Bencode {
    fn from(s: String) -> Bencode {
        Bencode::Bytes(s.into_bytes())
    }
}

impl Bencode {
    /// A dictionary from `(key, value)` pairs.
    pub fn dict<const N: usize>(pairs: [(&str, Bencode); N]) -> Bencode {
        Bencode::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// A dictionary's value for `key`.
    pub fn get(&self, key: &str) -> Option<&Bencode> {
        match self {
            Bencode::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// A byte string as UTF-8 text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Bencode::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Bencode::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Bencode::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode_into(out);
                }
                out.push(b'e');
            }
            Bencode::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Bencode::Bytes(k.clone()).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes exactly one value that spans all of `input`.
    pub fn decode(input: &[u8]) -> Result<Bencode, String> {
        let mut pos = 0;
        let v = decode_at(input, &mut pos, 0)?;
        if pos != input.len() {
            return Err(format!(
                "bencode: {} bytes of junk after the value",
                input.len() - pos
            ));
        }
        Ok(v)
    }
}

fn decode_at(input: &[u8], pos: &mut usize, depth: usize) -> Result<Bencode, String> {
    if depth > MAX_DEPTH {
        return Err("bencode: nested too deeply".into());
    }
    let at = *pos;
    match input.get(at) {
        None => Err("bencode: truncated".into()),
        Some(b'i') => {
            let end = find(input, at + 1, b'e')?;
            let text = std::str::from_utf8(&input[at + 1..end])
                .map_err(|_| format!("bencode: bad integer at {at}"))?;
            // No leading zeros, no "-0" (bencode's canonical form).
            let valid = !(text.is_empty()
                || text.starts_with("-0")
                || (text.starts_with('0') && text.len() > 1));
            let i = text
                .parse::<i64>()
                .ok()
                .filter(|_| valid)
                .ok_or_else(|| format!("bencode: bad integer '{text}' at {at}"))?;
            *pos = end + 1;
            Ok(Bencode::Int(i))
        }
        Some(b'l') => {
            *pos += 1;
            let mut items = Vec::new();
            loop {
                match input.get(*pos) {
                    Some(b'e') => {
                        *pos += 1;
                        return Ok(Bencode::List(items));
                    }
                    Some(_) => items.push(decode_at(input, pos, depth + 1)?),
                    None => return Err("bencode: unterminated list".into()),
                }
            }
        }
        Some(b'd') => {
            *pos += 1;
            let mut d = BTreeMap::new();
            loop {
                match input.get(*pos) {
                    Some(b'e') => {
                        *pos += 1;
                        return Ok(Bencode::Dict(d));
                    }
                    Some(_) => {
                        let Bencode::Bytes(k) = decode_at(input, pos, depth + 1)? else {
                            return Err(format!("bencode: dictionary key at {at} not a string"));
                        };
                        let v = decode_at(input, pos, depth + 1)?;
                        d.insert(k, v);
                    }
                    None => return Err("bencode: unterminated dictionary".into()),
                }
            }
        }
        Some(c) if c.is_ascii_digit() => {
            let colon = find(input, at, b':')?;
            let len: usize = std::str::from_utf8(&input[at..colon])
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| format!("bencode: bad string length at {at}"))?;
            let start = colon + 1;
            let end = start
                .checked_add(len)
                .filter(|&e| e <= input.len())
                .ok_or_else(|| format!("bencode: string at {at} runs past the end"))?;
            *pos = end;
            Ok(Bencode::Bytes(input[start..end].to_vec()))
        }
        Some(c) => Err(format!("bencode: unexpected byte 0x{c:02x} at {at}")),
    }
}

fn find(input: &[u8], from: usize, byte: u8) -> Result<usize, String> {
    input
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == byte))
        .map(|p| from + p)
        .ok_or_else(|| format!("bencode: missing '{}' after {from}", byte as char))
}

/// The SDP of one leg: PCMU on `addr` (the tool's socket).
pub fn offer_sdp(addr: SocketAddr, session: u64) -> String {
    let (family, ip) = match addr.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    format!(
        "v=0\r\n\
         o=- {session} 1 IN {family} {ip}\r\n\
         s=crossbar-load\r\n\
         c=IN {family} {ip}\r\n\
         t=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n",
        port = addr.port()
    )
}

/// Where the first `m=audio` stream of `sdp` receives: its port and the
/// media-level `c=` address (else the session-level one).
pub fn media_addr(sdp: &str) -> Result<SocketAddr, String> {
    let mut session_c: Option<IpAddr> = None;
    let mut media: Option<(u16, Option<IpAddr>)> = None;
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(rest) = line.strip_prefix("m=") {
            if media.is_some() {
                break; // only the first audio stream
            }
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.first() == Some(&"audio") {
                let port = f
                    .get(1)
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| format!("SDP: bad m= line '{line}'"))?;
                media = Some((port, None));
            }
        } else if let Some(rest) = line.strip_prefix("c=") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ip = match f.as_slice() {
                ["IN", "IP4" | "IP6", addr, ..] => addr
                    .split('/')
                    .next()
                    .and_then(|a| a.parse::<IpAddr>().ok()),
                _ => None,
            }
            .ok_or_else(|| format!("SDP: bad c= line '{line}'"))?;
            match &mut media {
                Some((_, c)) => *c = Some(ip),
                None => session_c = Some(ip),
            }
        }
    }
    let (port, c) = media.ok_or("SDP: no m=audio line")?;
    if port == 0 {
        return Err("SDP: the audio stream was rejected (port 0)".into());
    }
    let ip = c
        .or(session_c)
        .ok_or("SDP: no c= line for the audio stream")?;
    Ok(SocketAddr::new(ip, port))
}

/// Parses `HOST:PORT` (optionally `ng://` or `udp://` before it) and applies
/// the loopback rule.
pub fn parse_addr(text: &str, allow_remote: bool) -> Result<SocketAddr, String> {
    let rest = text
        .strip_prefix("ng://")
        .or_else(|| text.strip_prefix("udp://"))
        .unwrap_or(text)
        .trim_end_matches('/');
    let refuse = |host: &str| {
        format!(
            "refusing to drive rtpengine at {host}: not a loopback address (127.0.0.0/8, localhost); pass --allow-remote if you mean it"
        )
    };
    if let Ok(addr) = rest.parse::<SocketAddr>() {
        if !addr.ip().is_loopback() && !allow_remote {
            return Err(refuse(&addr.ip().to_string()));
        }
        return Ok(addr);
    }
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("ng address '{text}': expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("ng address '{text}': bad port '{port}'"))?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if !allow_remote {
        return Err(refuse(host));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))
}

/// A blocking ng client: one request at a time.
pub struct NgClient {
    socket: UdpSocket,
    pub addr: SocketAddr,
    timeout: Duration,
    prefix: String,
    next: u64,
}

impl NgClient {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<NgClient, String> {
        let ip: IpAddr = match (addr.ip().is_loopback(), addr.is_ipv4()) {
            (true, true) => Ipv4Addr::LOCALHOST.into(),
            (true, false) => std::net::Ipv6Addr::LOCALHOST.into(),
            (false, true) => Ipv4Addr::UNSPECIFIED.into(),
            (false, false) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        };
        let local = SocketAddr::new(ip, 0);
        let socket = UdpSocket::bind(local).map_err(|e| format!("ng: bind {local}: {e}"))?;
        socket
            .connect(addr)
            .map_err(|e| format!("ng: connect {addr}: {e}"))?;
        Ok(NgClient {
            socket,
            addr,
            timeout,
            prefix: format!(
                "cbl{}x{}",
                std::process::id(),
                crate::net::now_ns() % 1_000_000
            ),
            next: 0,
        })
    }

    /// Sends `msg` and returns the reply dictionary; `result: error` becomes
    /// an error carrying `error-reason`.
    pub fn request(&mut self, msg: &Bencode) -> Result<Bencode, String> {
        let command = msg
            .get("command")
            .and_then(Bencode::as_str)
            .unwrap_or("?")
            .to_string();
        self.next += 1;
        let cookie = format!("{}_{}", self.prefix, self.next);
        let mut datagram = format!("{cookie} ").into_bytes();
        datagram.extend_from_slice(&msg.encode());
        let deadline = Instant::now() + self.timeout;
        let mut buf = vec![0u8; MAX_REPLY];
        let mut refused = 0;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "rtpengine at {} did not answer '{command}' within {:?}",
                    self.addr, self.timeout
                ));
            }
            // A refused send (ICMP from an earlier datagram) is retried.
            if let Err(e) = self.socket.send(&datagram) {
                refused += 1;
                if refused > 3 {
                    return Err(format!("ng: send to {}: {e}", self.addr));
                }
            }
            let resend_at = (now + RETRANSMIT).min(deadline);
            while let Some(left) = resend_at
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            {
                self.socket
                    .set_read_timeout(Some(left))
                    .map_err(|e| format!("ng: {e}"))?;
                let n = match self.socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        return Err(format!(
                            "nothing listens for ng at {} (connection refused)",
                            self.addr
                        ))
                    }
                    Err(e) => return Err(format!("ng: receive from {}: {e}", self.addr)),
                };
                let reply = &buf[..n];
                let Some(body) = reply
                    .strip_prefix(cookie.as_bytes())
                    .and_then(|r| r.strip_prefix(b" "))
                else {
                    continue; // a late reply to an earlier request
                };
                let v = Bencode::decode(body)
                    .map_err(|e| format!("rtpengine's reply to '{command}': {e}"))?;
                return check_result(&command, v);
            }
        }
    }

    pub fn ping(&mut self) -> Result<(), String> {
        self.request(&Bencode::dict([("command", "ping".into())]))
            .map(|_| ())
    }

    /// `offer`: returns the SDP rtpengine gives the callee.
    pub fn offer(&mut self, call_id: &str, from_tag: &str, sdp: &str) -> Result<String, String> {
        let v = self.request(&Bencode::dict([
            ("command", "offer".into()),
            ("call-id", call_id.into()),
            ("from-tag", from_tag.into()),
            ("sdp", sdp.into()),
        ]))?;
        sdp_of("offer", &v)
    }

    /// `answer`: returns the SDP rtpengine gives the caller.
    pub fn answer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp: &str,
    ) -> Result<String, String> {
        let v = self.request(&Bencode::dict([
            ("command", "answer".into()),
            ("call-id", call_id.into()),
            ("from-tag", from_tag.into()),
            ("to-tag", to_tag.into()),
            ("sdp", sdp.into()),
        ]))?;
        sdp_of("answer", &v)
    }

    pub fn delete(&mut self, call_id: &str, from_tag: &str) -> Result<(), String> {
        self.request(&Bencode::dict([
            ("command", "delete".into()),
            ("call-id", call_id.into()),
            ("from-tag", from_tag.into()),
        ]))
        .map(|_| ())
    }
}

/// `result: ok|pong` passes the reply through; `error` (or anything else)
/// becomes an error with rtpengine's reason.
fn check_result(command: &str, v: Bencode) -> Result<Bencode, String> {
    match v.get("result").and_then(Bencode::as_str) {
        Some("ok" | "pong") => Ok(v),
        Some("error") => Err(format!(
            "rtpengine refused '{command}': {}",
            v.get("error-reason")
                .and_then(Bencode::as_str)
                .unwrap_or("(no error-reason)")
        )),
        Some(other) => Err(format!(
            "rtpengine's reply to '{command}': unexpected result '{other}'"
        )),
        None => Err(format!("rtpengine's reply to '{command}' has no result")),
    }
}

fn sdp_of(command: &str, v: &Bencode) -> Result<String, String> {
    v.get("sdp")
        .and_then(Bencode::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("rtpengine's reply to '{command}' has no SDP"))
}

/// An ng client plus every call it started, all deleted on teardown.
pub struct NgSession {
    pub client: NgClient,
    /// `(call-id, from-tag)` of the calls not deleted yet.
    calls: Vec<(String, String)>,
    run: String,
}

impl NgSession {
    /// Checks the loopback rule and that rtpengine answers `ping`.
    pub fn open(addr: &str, allow_remote: bool, timeout: Duration) -> Result<NgSession, String> {
        let addr = parse_addr(addr, allow_remote)?;
        let mut client = NgClient::connect(addr, timeout)?;
        client
            .ping()
            .map_err(|e| format!("rtpengine does not answer ng ping: {e}"))?;
        let run = format!(
            "crossbar-load-{}-{}",
            std::process::id(),
            crate::net::now_ns()
        );
        Ok(NgSession {
            client,
            calls: Vec::new(),
            run,
        })
    }

    /// One two-party call: leg A at `a` offers, leg B at `b` answers.
    /// Returns where A must send and where B must send (rtpengine's ports).
    pub fn call(
        &mut self,
        a: SocketAddr,
        b: SocketAddr,
    ) -> Result<(SocketAddr, SocketAddr), String> {
        let n = self.calls.len();
        let call_id = format!("{}-{n}", self.run);
        let (from_tag, to_tag) = (format!("a{n}"), format!("b{n}"));
        // Remembered first: a call created by an offer whose reply was lost
        // is deleted too.
        self.calls.push((call_id.clone(), from_tag.clone()));
        let to_b = self
            .client
            .offer(&call_id, &from_tag, &offer_sdp(a, 2 * n as u64 + 1))?;
        let b_sends_to = media_addr(&to_b).map_err(|e| format!("offer reply: {e}"))?;
        let to_a = self.client.answer(
            &call_id,
            &from_tag,
            &to_tag,
            &offer_sdp(b, 2 * n as u64 + 2),
        )?;
        let a_sends_to = media_addr(&to_a).map_err(|e| format!("answer reply: {e}"))?;
        Ok((a_sends_to, b_sends_to))
    }

    /// Deletes every call still there; returns the first error (a call
    /// rtpengine no longer knows counts as gone).
    pub fn teardown(&mut self) -> Result<(), String> {
        let mut first = Ok(());
        for (call_id, from_tag) in std::mem::take(&mut self.calls) {
            let r = match self.client.delete(&call_id, &from_tag) {
                Err(e) if e.contains("not found") || e.contains("Unknown call") => Ok(()),
                r => r,
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Drop for NgSession {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencode_round_trip() {
        let v = Bencode::dict([
            ("sdp", "v=0\r\n".into()),
            ("command", "offer".into()),
            ("n", Bencode::Int(-42)),
            ("flags", Bencode::List(vec!["trust-address".into()])),
        ]);
        let bytes = v.encode();
        // Keys sorted, lengths in bytes.
        assert_eq!(
            bytes,
            b"d7:command5:offer5:flagsl13:trust-addresse1:ni-42e3:sdp5:v=0\r\ne".to_vec()
        );
        assert_eq!(Bencode::decode(&bytes).unwrap(), v);
        assert_eq!(Bencode::decode(b"i0e").unwrap(), Bencode::Int(0));
        assert_eq!(Bencode::decode(b"0:").unwrap(), Bencode::Bytes(vec![]));
        assert_eq!(Bencode::decode(b"le").unwrap(), Bencode::List(vec![]));
    }

    #[test]
    fn bencode_rejects_bad_input() {
        for bad in [
            &b""[..],
            b"i",
            b"i12",
            b"ie",
            b"i-0e",
            b"i03e",
            b"ixe",
            b"5:abc",
            b"99999999999999999999999:a",
            b"l",
            b"d3:key",
            b"di1ei2ee",
            b"x",
            b"i1ei2e",
            b"4294967296:",
        ] {
            assert!(
                Bencode::decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!("{}{}", "l".repeat(100), "e".repeat(100));
        assert!(Bencode::decode(deep.as_bytes()).is_err());
    }

    #[test]
    fn result_and_error_reason() {
        let ok = Bencode::decode(b"d6:result2:ok3:sdp3:v=0e").unwrap();
        assert!(check_result("offer", ok).is_ok());
        let err =
            Bencode::decode(b"d6:result5:error12:error-reason22:No SDP body in messagee").unwrap();
        let e = check_result("offer", err).unwrap_err();
        assert!(e.contains("No SDP body in message"), "{e}");
        assert!(check_result("offer", Bencode::Int(1)).is_err());
        assert!(sdp_of("offer", &Bencode::dict([("result", "ok".into())])).is_err());
    }

    #[test]
    fn sdp_ports() {
        let ours = offer_sdp("127.0.0.1:40000".parse().unwrap(), 7);
        assert!(ours.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(ours.contains("m=audio 40000 RTP/AVP 0\r\n"));
        assert_eq!(
            media_addr(&ours).unwrap(),
            "127.0.0.1:40000".parse().unwrap()
        );
        // What rtpengine returns: session c=, then media with its own c= and rtcp.
        let reply = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
                     m=audio 30002 RTP/AVP 0\r\nc=IN IP4 127.0.0.1\r\na=rtcp:30003\r\n\
                     m=audio 30010 RTP/AVP 0\r\n";
        assert_eq!(
            media_addr(reply).unwrap(),
            "127.0.0.1:30002".parse().unwrap()
        );
        let session_only = "v=0\nc=IN IP4 127.0.0.3/127\nm=audio 31000/2 RTP/AVP 0\n";
        assert_eq!(
            media_addr(session_only).unwrap(),
            "127.0.0.3:31000".parse().unwrap()
        );
        let v6 = "v=0\r\nc=IN IP6 ::1\r\nm=audio 5004 RTP/AVP 0\r\n";
        assert_eq!(media_addr(v6).unwrap(), "[::1]:5004".parse().unwrap());
        assert!(media_addr("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n").is_err());
        assert!(media_addr("v=0\r\nm=audio 5004 RTP/AVP 0\r\n").is_err());
        assert!(media_addr("v=0\r\nc=IN IP4 127.0.0.1\r\nm=video 5004 RTP/AVP 96\r\n").is_err());
        assert!(media_addr("v=0\r\nc=IN IP4 nonsense\r\nm=audio 5004 RTP/AVP 0\r\n").is_err());
    }

    #[test]
    fn ng_address_rule() {
        let a = parse_addr("127.0.0.1:2223", false).unwrap();
        assert_eq!(a.port(), 2223);
        assert_eq!(parse_addr("ng://localhost:2223", false).unwrap(), a);
        assert!(parse_addr("10.0.0.1:2223", false).is_err());
        assert!(parse_addr("example.org:2223", false).is_err());
        assert!(parse_addr("10.0.0.1:2223", true).is_ok());
        assert!(parse_addr("127.0.0.1", false).is_err());
    }

    /// A fake rtpengine on loopback that refuses everything: the reason
    /// reaches the caller; a silent server times out.
    #[test]
    fn client_reports_errors_and_timeouts() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let cookie = buf[..n].split(|&b| b == b' ').next().unwrap().to_vec();
            let mut reply = cookie;
            reply.extend_from_slice(b" d6:result5:error12:error-reason15:Unknown call-ide");
            server.send_to(&reply, from).unwrap();
        });
        let mut c = NgClient::connect(addr, Duration::from_secs(2)).unwrap();
        let e = c.delete("x", "y").unwrap_err();
        assert!(e.contains("Unknown call-id"), "{e}");
        t.join().unwrap();
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut c =
            NgClient::connect(silent.local_addr().unwrap(), Duration::from_millis(200)).unwrap();
        assert!(c.ping().unwrap_err().contains("did not answer"));
    }
}
