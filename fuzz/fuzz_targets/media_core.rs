//! Fuzzes the sans-IO media core on the virtual-time harness, driven by random commands, datagrams and time; buffer, leg and event invariants after every step (body and invariants: `crossbar::fuzzing::media_core`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crossbar::fuzzing::media_core(data));
