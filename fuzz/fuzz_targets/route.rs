//! Fuzzes the route table: any method and path resolves to an operation, a 404 or a 405 (body and invariants: `crossbar::fuzzing::route`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crossbar::fuzzing::route(data));
