//! A minimal blocking ARI client: the server address (and the loopback rule),
//! HTTP Basic auth, and one request at a time with a timeout. Replies are
//! returned as status + body; nothing here panics on what a server sends.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Where the ARI server is: `http://HOST:PORT`, without `/ari`.
#[derive(Clone, Debug)]
pub struct Target {
    /// `http://host:port` exactly as requests should start.
    pub base: String,
    /// The host as written (brackets stripped from IPv6 literals).
    pub host: String,
    pub port: u16,
}

impl Target {
    /// Parses `http://host[:port][/ari][/]`. Only plain HTTP is supported.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("URL '{url}' must start with http:// (TLS is not supported)"))?;
        let authority = rest.split('/').next().unwrap_or("");
        let path = &rest[authority.len()..];
        let path = path.trim_end_matches('/');
        if !(path.is_empty() || path == "/ari") {
            return Err(format!(
                "URL '{url}' must be the server's root (http://host:port) or its /ari"
            ));
        }
        if authority.contains('@') {
            return Err("put credentials in --user/--password, not in the URL".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("URL '{url}': unclosed '[' in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p,
                None if after.is_empty() => "80",
                None => return Err(format!("URL '{url}': junk after the host")),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p),
                None => (authority.to_string(), "80"),
            }
        };
        if host.is_empty() {
            return Err(format!("URL '{url}' has no host"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("URL '{url}': bad port '{port}'"))?;
        let shown = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        Ok(Target {
            base: format!("http://{shown}:{port}"),
            host,
            port,
        })
    }

    /// Whether the host is loopback: `localhost`, 127.0.0.0/8 or `::1`.
    /// Hostnames other than `localhost` are not resolved and count as remote.
    pub fn is_loopback(&self) -> bool {
        if self.host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        match self.host.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => false,
        }
    }

    /// The first socket address the host resolves to.
    pub fn socket_addr(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.host))
    }
}

/// The HTTP methods the scenarios use.
#[derive(Clone, Copy, Debug)]
pub enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// A reply: status code and body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// A keep-alive HTTP client bound to one ARI server and one identity.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: String,
}

impl Client {
    pub fn new(target: &Target, user: &str, password: &str, timeout: Duration) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
            base: target.base.clone(),
            authorization: format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
        }
    }

    /// One request; `path` starts with `/ari/` and carries its query.
    /// Any status is a `Reply`; only transport failures are errors.
    pub fn request(&self, method: Method, path: &str) -> Result<Reply, String> {
        let url = format!("{}{path}", self.base);
        let auth = self.authorization.as_str();
        let result = match method {
            Method::Get => self.agent.get(&url).header("Authorization", auth).call(),
            Method::Delete => self.agent.delete(&url).header("Authorization", auth).call(),
            Method::Post => self
                .agent
                .post(&url)
                .header("Authorization", auth)
                .send_empty(),
        };
        let mut response = result.map_err(|e| format!("{} {path}: {e}", method.as_str()))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| format!("{} {path}: reading the reply: {e}", method.as_str()))?;
        Ok(Reply { status, body })
    }

    /// A request that must succeed (2xx); the error names the request, the
    /// status and the server's message.
    pub fn expect_ok(&self, method: Method, path: &str) -> Result<String, String> {
        let reply = self.request(method, path)?;
        if (200..300).contains(&reply.status) {
            Ok(reply.body)
        } else {
            Err(format!(
                "{} {path}: HTTP {}: {}",
                method.as_str(),
                reply.status,
                excerpt(&reply.body)
            ))
        }
    }
}

/// The `id` field of a JSON object reply (a Channel or a Bridge).
pub fn id_of(body: &str, what: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| format!("{what}: reply is not JSON ({e}): {}", excerpt(body)))?;
    match value.get("id").and_then(|v| v.as_str()) {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ => Err(format!("{what}: reply has no \"id\": {}", excerpt(body))),
    }
}

/// Percent-encodes a query value or path segment (everything but unreserved).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// At most 200 characters of a body, for error messages.
pub fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &trimmed[..i]),
        None if trimmed.is_empty() => "(empty body)".into(),
        None => trimmed.to_string(),
    }
}

/// Standard base64 with padding (for the Basic auth header).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"asterisk:asterisk"), "YXN0ZXJpc2s6YXN0ZXJpc2s=");
    }

    #[test]
    fn urls_and_the_loopback_rule() {
        let t = Target::parse("http://127.0.0.1:8088").unwrap();
        assert_eq!((t.base.as_str(), t.port), ("http://127.0.0.1:8088", 8088));
        assert!(t.is_loopback());
        assert!(Target::parse("http://localhost:8088/ari/")
            .unwrap()
            .is_loopback());
        assert!(Target::parse("http://127.8.9.10:1").unwrap().is_loopback());
        let v6 = Target::parse("http://[::1]:8088").unwrap();
        assert_eq!(v6.base, "http://[::1]:8088");
        assert!(v6.is_loopback());
        assert!(!Target::parse("http://10.0.0.1:8088").unwrap().is_loopback());
        assert!(!Target::parse("http://example.com").unwrap().is_loopback());
        assert!(Target::parse("https://127.0.0.1:8089").is_err());
        assert!(Target::parse("http://127.0.0.1:8088/other").is_err());
        assert!(Target::parse("http://u:p@127.0.0.1:8088").is_err());
        assert!(Target::parse("http://127.0.0.1:x").is_err());
    }

    #[test]
    fn encoding_and_ids() {
        assert_eq!(encode("a b/c:d"), "a%20b%2Fc%3Ad");
        assert_eq!(id_of(r#"{"id":"x1"}"#, "t").unwrap(), "x1");
        assert!(id_of("{}", "t").is_err());
        assert!(id_of("<html>", "t").is_err());
    }
}
