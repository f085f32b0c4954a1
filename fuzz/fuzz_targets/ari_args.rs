//! Fuzzes ARI argument checking (query strings as the HTTP layer decodes them, JSON bodies) for every operation of the route table (body and invariants: `crossbar::fuzzing::ari_args`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crossbar::fuzzing::ari_args(data));
