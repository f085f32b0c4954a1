#!/usr/bin/env bash
# The fuzz targets (fuzz/fuzz_targets/: rtp_packet, rtcp_compound, sdp, sip,
# jitter_buffer, mixer, ari_args, route, media_core; bodies and invariants in
# src/fuzzing.rs) under libFuzzer, briefly: each one for
# FUZZ_TIME seconds (default 15) from its seed corpus in fuzz/corpus/<target>/.
# Exits non-zero on the first crash; libFuzzer leaves the input in
# fuzz/artifacts/<target>/ (reproduce: cargo fuzz run <target> <that file>).
#
# Needs cargo-fuzz (installed here when missing: `cargo install cargo-fuzz
# --locked`, about a minute). A stable toolchain serves: RUSTC_BOOTSTRAP=1 lets
# the -Z flags cargo-fuzz passes (sanitizer, coverage instrumentation) through.
# New inputs libFuzzer finds go to a scratch directory, not into the committed
# corpus. Cost on a 2-core machine, -j1: installing cargo-fuzz ~50 s, the
# first build of the nine targets (ASan, release) ~6 m (one build: they share
# the crossbar library; a change to it rebuilds in ~3 m 30 s), then each run
# FUZZ_TIME plus ~2 s (about 2 minutes in all at 10 s with a warm target
# directory). Without cargo-fuzz, tests/fuzz_smoke.rs still runs the same
# target bodies in every `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

time=${FUZZ_TIME:-15}
targets=(${FUZZ_TARGETS:-rtp_packet rtcp_compound sdp sip jitter_buffer mixer ari_args route media_core})

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

echo "== cargo fuzz build"
cargo fuzz build

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    echo "== cargo fuzz run $target (${time}s)"
    mkdir -p "$scratch/$target"
    cargo fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$time" -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
        sed '/^#[0-9]/d' || { echo "fuzz target $target failed (see above)" >&2; exit 1; }
done
echo "== fuzz targets: no crash"
