//! Fuzzes the RTP packet view and the in-place rewriter: any datagram either
//! parses into a view whose slices stay inside it, or gives an error; the
//! outgoing stream rewrite never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crossbar::fuzzing::rtp_packet(data));
