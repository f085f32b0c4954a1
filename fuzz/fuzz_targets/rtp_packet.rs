//! Fuzzes the RTP packet view and the in-place rewriter: any datagram either
//! parses into a view whose slices stay inside it, or gives an error; the
//! outgoing stream rewrite never panics.
#![no_main]

use std::time::Instant;

use crossbar::rtp::{OutStream, RtpPacket, RtpPacketMut, RtpTimestamp, SeqNo, Ssrc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RtpPacket::parse(data) {
        assert!(p.header_len() + p.payload().len() <= data.len());
        let _ = (p.csrcs().count(), p.extension(), p.pt(), p.seq(), p.timestamp(), p.ssrc());
    }
    let mut copy = data.to_vec();
    if let Ok(mut p) = RtpPacketMut::parse(&mut copy) {
        let mut out = OutStream::new(Ssrc(1), SeqNo(2), RtpTimestamp(3), 8000);
        out.rewrite(Instant::now(), &mut p);
        assert_eq!(RtpPacket::parse(&copy).map(|p| p.ssrc()), Ok(Ssrc(1)));
    }
});
