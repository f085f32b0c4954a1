//! Where a SIP request goes: [`Target`], a `sip:` URI whose host is an IP
//! literal, and [`next_hop`], the address a request is sent to.
//!
//! crossbar resolves no names (there is no DNS on a media node's signalling
//! path: the proxy in front does routing). A URI naming a host is refused
//! where crossbar must send to it, with a reason that says so.

use std::net::{IpAddr, SocketAddr};

use rsip::{Host, Uri};

/// The default SIP port (RFC 3261 19.1.2).
pub const DEFAULT_PORT: u16 = 5060;

/// The transport a target asks for (`;transport=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The Via token.
    pub fn token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// A dialable `sip:` URI: the URI itself, the address it names and its
/// transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub uri: Uri,
    pub addr: SocketAddr,
    pub transport: Transport,
}

impl Target {
    /// Parses `sip:[user@]ip[:port][;params]`.
    pub fn parse(text: &str) -> Result<Target, String> {
        let text = text.trim();
        if !text.starts_with("sip:") {
            return Err(format!("'{text}' is not a sip: URI"));
        }
        let uri = Uri::try_from(text).map_err(|e| format!("'{text}' is not a SIP URI: {e}"))?;
        let addr = uri_addr(&uri).ok_or_else(|| {
            format!("'{text}': the host must be an IP address (crossbar resolves no names)")
        })?;
        let transport = match uri.transport() {
            None | Some(rsip::Transport::Udp) => Transport::Udp,
            Some(rsip::Transport::Tcp) => Transport::Tcp,
            Some(other) => return Err(format!("'{text}': transport {other} is not supported")),
        };
        Ok(Target {
            uri,
            addr,
            transport,
        })
    }
}

/// The address a URI names, if its host is an IP literal (port 5060 when
/// none is given).
pub fn uri_addr(uri: &Uri) -> Option<SocketAddr> {
    let ip: IpAddr = match uri.host() {
        Host::IpAddr(ip) => *ip,
        Host::Domain(d) => d.to_string().trim_matches(['[', ']']).parse().ok()?,
    };
    let port = uri.port().map(|p| *p.value()).unwrap_or(DEFAULT_PORT);
    Some(SocketAddr::new(ip, port))
}

/// Where an in-dialog request goes (RFC 3261 12.2.1.1 with loose routing):
/// the first route's address, else the remote target's, else `fallback`
/// (the address the dialog's peer last sent from) when neither names an IP.
pub fn next_hop(route_set: &[Uri], remote_target: &Uri, fallback: SocketAddr) -> SocketAddr {
    match route_set.first() {
        Some(route) => uri_addr(route).unwrap_or(fallback),
        None => uri_addr(remote_target).unwrap_or(fallback),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_an_ip_and_a_transport() {
        let t = Target::parse("sip:bob@127.0.0.2:5070;transport=tcp").unwrap();
        assert_eq!(t.addr, "127.0.0.2:5070".parse().unwrap());
        assert_eq!(t.transport, Transport::Tcp);
        assert_eq!(t.uri.user(), Some("bob"));
        let t = Target::parse("sip:127.0.0.3").unwrap();
        assert_eq!(t.addr, "127.0.0.3:5060".parse().unwrap());
        assert_eq!(t.transport, Transport::Udp);
    }

    #[test]
    fn names_and_other_schemes_are_refused_with_a_reason() {
        assert!(Target::parse("sip:bob@example.com")
            .unwrap_err()
            .contains("resolves no names"));
        assert!(Target::parse("tel:+15551234").is_err());
        assert!(Target::parse("sip:bob@127.0.0.1;transport=tls").is_err());
        assert!(Target::parse("sip:").is_err());
    }

    #[test]
    fn in_dialog_requests_follow_the_route_set() {
        let route = Uri::try_from("sip:127.0.0.9:5080;lr").unwrap();
        let target = Uri::try_from("sip:alice@127.0.0.7:5090").unwrap();
        let named = Uri::try_from("sip:alice@pc33.example.com").unwrap();
        let fallback: SocketAddr = "127.0.0.1:5999".parse().unwrap();
        assert_eq!(
            next_hop(std::slice::from_ref(&route), &target, fallback),
            "127.0.0.9:5080".parse().unwrap()
        );
        assert_eq!(
            next_hop(&[], &target, fallback),
            "127.0.0.7:5090".parse().unwrap()
        );
        assert_eq!(next_hop(&[], &named, fallback), fallback);
    }
}
