//! The fuzz targets' bodies (`crossbar::fuzzing`, which `fuzz/fuzz_targets/`
//! call under libFuzzer) run briefly in every `cargo test`, without
//! cargo-fuzz or a nightly compiler: each target over its seed corpus in
//! `fuzz/corpus/<target>/` and a fixed number of deterministic mutations of
//! it (a seeded `SmallRng`: bit flips, truncations, insertions, deletions,
//! splices, duplicated lines, extreme numbers). Any panic fails the test and
//! prints the input, escaped, to reproduce it.
//!
//! A panic inside `rsip` is not a failure here: `sip::message::parse` catches
//! it by design and returns `ParserPanicked`; the test counts and prints them.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Once;

use crossbar::fuzzing::{self, SipOutcome};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Mutated inputs per target, on top of the seeds; `FUZZ_SMOKE_MUTATIONS`
/// overrides it (and `FUZZ_SMOKE_SEED` shifts the generators' seeds) for a
/// longer run by hand.
const MUTATIONS: usize = 20_000;
/// Mutations of the mixer's inputs (each mixes up to four ticks of up to 40
/// members of 1,100 samples with every kernel).
const MIXER_MUTATIONS: usize = 1_500;
/// Mutations of the media core's programs (each runs a core for up to 20 s
/// of virtual time).
const CORE_MUTATIONS: usize = 600;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

thread_local! {
    /// The last panic's message and location on this thread (the hook below
    /// records it instead of printing, so that caught `rsip` panics stay quiet).
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
    /// Whether this thread is running a target's body (panics recorded, not printed).
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
}

fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                let text = format!("{info}");
                LAST_PANIC.with(|p| *p.borrow_mut() = text);
            } else {
                default(info);
            }
        }))
    });
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "fuzz", "corpus", target]
        .iter()
        .collect();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let seeds: Vec<Vec<u8>> = names.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

const INTERESTING: &[&[u8]] = &[
    b"0",
    b"-1",
    b"4294967295",
    b"4294967296",
    b"18446744073709551616",
    b"99999999999999999999999999",
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b":",
    b";",
    b"=",
    b",",
    b"<",
    b">",
    b"\"",
    b" ",
    b"\t",
    b"\xff",
    b"\xc3\xa9",
    b"%",
    b"[",
    b"]",
    b"@",
    b"Content-Length: 999999999\r\n",
    b"Content-Length: 18446744073709551615\r\n",
    b"l: -5\r\n",
    b"Via: SIP/2.0/UDP h;branch=z9hG4bK\r\n",
    b"CSeq: 4294967296 INVITE\r\n",
    b"a=rtpmap:96 x/0\n",
    b"m=audio 65536 RTP/AVP 128\n",
    b"c=IN IP4 999.1.1.1\n",
];

/// One mutation of `input`, sometimes splicing in part of `other`.
fn mutate(rng: &mut SmallRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let rounds = rng.random_range(1..=4);
    for _ in 0..rounds {
        let len = v.len();
        match rng.random_range(0..10) {
            // Flip one bit.
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            // Set a byte to a random or boundary value.
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] = *[0u8, 0x7f, 0x80, 0xff, b'\r', b'\n', rng.random()]
                    .get(rng.random_range(0..7))
                    .unwrap();
            }
            // Truncate.
            2 if len > 0 => v.truncate(rng.random_range(0..len)),
            // Insert random bytes.
            3 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..=8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(i..i, bytes);
            }
            // Delete a range.
            4 if len > 0 => {
                let i = rng.random_range(0..len);
                let j = rng.random_range(i..=len.min(i + 16));
                v.drain(i..j);
            }
            // Insert an interesting token.
            5 => {
                let i = rng.random_range(0..=len);
                let t = INTERESTING[rng.random_range(0..INTERESTING.len())];
                v.splice(i..i, t.iter().copied());
            }
            // Duplicate a line (a header, an SDP attribute).
            6 if !input.is_empty() => {
                let lines: Vec<&[u8]> = input.split_inclusive(|&b| b == b'\n').collect();
                let line = lines[rng.random_range(0..lines.len())].to_vec();
                let at = rng.random_range(0..=len);
                let times = rng.random_range(1..=3);
                for _ in 0..times {
                    v.splice(at..at, line.iter().copied());
                }
            }
            // Splice the head of this input with the tail of another.
            7 if !other.is_empty() => {
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            // Replace a run of digits with an extreme number.
            8 => {
                if let Some(start) = v.iter().position(|b| b.is_ascii_digit()).map(|first| {
                    let skip = rng.random_range(0..len.max(1));
                    v.iter()
                        .skip(skip)
                        .position(|b| b.is_ascii_digit())
                        .map_or(first, |p| p + skip)
                }) {
                    let end = v[start..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(v.len(), |p| start + p);
                    let t = INTERESTING[rng.random_range(0..6)];
                    v.splice(start..end, t.iter().copied());
                }
            }
            // Repeat a chunk (lengths and counts that run past the data).
            _ if len > 0 => {
                let i = rng.random_range(0..len);
                let j = rng.random_range(i..=len.min(i + 32));
                let chunk = v[i..j].to_vec();
                for _ in 0..rng.random_range(1..=4) {
                    v.splice(j..j, chunk.iter().copied());
                }
            }
            _ => v.push(rng.random()),
        }
    }
    v
}

/// Runs `body` over the seeds of `target` and `MUTATIONS` mutations of them;
/// panics, naming the input, on the first input `body` panics on.
fn run<T>(target: &str, seed: u64, body: impl FnMut(&[u8]) -> T) -> Vec<T> {
    run_n(target, seed, MUTATIONS, body)
}

/// [`run`] with `mutations` mutations (the slower, stateful targets take
/// fewer, to keep `cargo test` fast; `FUZZ_SMOKE_MUTATIONS` overrides both).
fn run_n<T>(target: &str, seed: u64, mutations: usize, mut body: impl FnMut(&[u8]) -> T) -> Vec<T> {
    quiet_panics();
    let seeds = seeds(target);
    let seed = seed.wrapping_add(env_number("FUZZ_SMOKE_SEED", 0).wrapping_mul(16));
    let mutations = env_number("FUZZ_SMOKE_MUTATIONS", mutations as u64) as usize;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut inputs = seeds.clone();
    for _ in 0..mutations {
        let a = &seeds[rng.random_range(0..seeds.len())];
        let b = &seeds[rng.random_range(0..seeds.len())];
        // Mutants of mutants too, now and then.
        let base = if rng.random_bool(0.3) && inputs.len() > seeds.len() {
            inputs[rng.random_range(seeds.len()..inputs.len())].clone()
        } else {
            a.clone()
        };
        inputs.push(mutate(&mut rng, &base, b));
    }
    let mut out = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        CAPTURING.with(|c| c.set(true));
        let result = panic::catch_unwind(AssertUnwindSafe(|| body(input)));
        CAPTURING.with(|c| c.set(false));
        match result {
            Ok(t) => out.push(t),
            Err(_) => {
                let why = LAST_PANIC.with(|p| p.borrow().clone());
                panic!(
                    "fuzz target {target} panicked on input #{i} (seed {seed}): {why}\ninput ({} bytes): \"{}\"",
                    input.len(),
                    input.escape_ascii()
                );
            }
        }
    }
    out
}

#[test]
fn rtp_packet() {
    run("rtp_packet", 1, fuzzing::rtp_packet);
}

#[test]
fn rtcp_compound() {
    run("rtcp_compound", 2, fuzzing::rtcp_compound);
}

#[test]
fn sdp() {
    run("sdp", 3, fuzzing::sdp);
}

#[test]
fn sip() {
    let outcomes = run("sip", 4, fuzzing::sip);
    let count = |o| outcomes.iter().filter(|&&x| x == o).count();
    let (requests, responses) = (count(SipOutcome::Request), count(SipOutcome::Response));
    let panicked = count(SipOutcome::ParserPanicked);
    eprintln!(
        "sip: {} inputs, {requests} requests, {responses} responses, {} refused, {panicked} rsip panics caught",
        outcomes.len(),
        count(SipOutcome::Refused)
    );
    // The mutations must leave enough valid messages to exercise the keys
    // and responses, not only the parser's refusals.
    assert!(
        requests * 20 > outcomes.len() && responses * 40 > outcomes.len(),
        "too few valid messages"
    );
}

#[test]
fn jitter_buffer() {
    run("jitter_buffer", 5, fuzzing::jitter_buffer);
}

#[test]
fn mixer() {
    run_n("mixer", 6, MIXER_MUTATIONS, fuzzing::mixer);
}

#[test]
fn ari_args() {
    run("ari_args", 7, fuzzing::ari_args);
}

#[test]
fn route() {
    run("route", 8, fuzzing::route);
}

#[test]
fn media_core() {
    run_n("media_core", 9, CORE_MUTATIONS, fuzzing::media_core);
}
