//! Fuzzes every mix kernel this CPU runs against an exact model (bit for bit), frame and output lengths, the bare kernels on unequal slices (body and invariants: `crossbar::fuzzing::mixer`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crossbar::fuzzing::mixer(data));
