//! Fuzzes the RTCP compound walker: any datagram yields packets then at most
//! one error, and never panics.
#![no_main]

use crossbar::rtp::rtcp::{summarize, RtcpIter, RtcpPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = summarize(data);
    for packet in RtcpIter::new(data).flatten() {
        if let RtcpPacket::SenderReport { blocks, .. } | RtcpPacket::ReceiverReport { blocks, .. } =
            packet
        {
            let _ = blocks.count();
        }
    }
});
