//! Fuzzes the jitter buffer under random pushes, ticks, jitter updates and restarts, checked against a model of what it holds (body and invariants: `crossbar::fuzzing::jitter_buffer`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crossbar::fuzzing::jitter_buffer(data));
