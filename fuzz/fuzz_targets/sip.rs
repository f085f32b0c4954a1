//! Fuzzes the SIP message parser and the transaction layer's use of a parsed
//! message (keys, responses, ACK, writing back to bytes). See
//! `crossbar::fuzzing::sip`.
//!
//! `parse` turns a panic inside `rsip` into `MessageError::ParserPanicked`,
//! but libFuzzer's panic hook aborts before unwinding: under the fuzzer an
//! `rsip` panic is reported as a crash, which is the point (a bug to report).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = crossbar::fuzzing::sip(data);
});
