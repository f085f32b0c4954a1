//! Fuzzes the SDP parser and the answerer: any body either parses into a
//! description that writes back to text parsing to the same value, or gives
//! an error; answering and reading the negotiated result never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crossbar::fuzzing::sdp(data));
