//! Fuzzes the SDP parser and the answerer: any body either parses into a
//! description that writes back to text parsing to the same value, or gives
//! an error; answering and reading the negotiated result never panic.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use crossbar::sdp::{answer, negotiated, parse, LocalMedia, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(offer) = parse(data) {
        let text = offer.write();
        assert_eq!(parse(text.as_bytes()).as_ref(), Ok(&offer));
        let local = LocalMedia::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 20000, 1);
        if let Ok(a) = answer(&offer, &local) {
            assert_eq!(a.sdp.media.len(), offer.media.len());
            let _ = negotiated(&offer, &a.sdp, Role::Answerer);
        }
    }
});
