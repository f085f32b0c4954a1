//! Fuzzes the RTCP compound walker: any datagram yields packets then at most
//! one error, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crossbar::fuzzing::rtcp_compound(data));
