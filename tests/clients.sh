#!/usr/bin/env bash
# The ARI client suites: the real ari-client@2.2.0 (tests/node, node:test) and
# asyncari==0.20.6 (tests/python, pytest) drive a real crossbar binary on
# loopback. Each suite starts its own server on its own ports (node: ARI 18088,
# RTP 21000-21999; python: ARI 18089, RTP 22000-22999).
#
# Installs what is missing (npm ci in tests/node, a venv at tests/python/.venv),
# builds target/debug/crossbar unless CROSSBAR_BIN names a binary, runs both
# suites, and exits non-zero if either fails.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

die() {
    echo "tests/clients.sh: $*" >&2
    exit 2
}

for tool in node npm python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

# ---- dependencies --------------------------------------------------------
if [ ! -f tests/node/node_modules/ari-client/package.json ] ||
    [ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; then
    echo "== npm ci (tests/node)"
    (cd tests/node && timeout 600 npm ci --no-audit --no-fund) ||
        (cd tests/node && timeout 600 npm install --no-audit --no-fund) ||
        die "cannot install tests/node dependencies"
fi

VENV=tests/python/.venv
STAMP=$VENV/.requirements.installed
if [ ! -x "$VENV/bin/python" ]; then
    echo "== python3 -m venv $VENV"
    python3 -m venv "$VENV" || die "cannot create $VENV (Debian: apt-get install python3-venv)"
fi
if [ ! -f "$STAMP" ] || ! cmp -s tests/python/requirements.txt "$STAMP"; then
    echo "== pip install -r tests/python/requirements.txt"
    timeout 600 "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt ||
        die "cannot install tests/python/requirements.txt"
    cp tests/python/requirements.txt "$STAMP"
fi

# ---- the server binary ---------------------------------------------------
if [ -z "${CROSSBAR_BIN:-}" ]; then
    echo "== cargo build --bin crossbar"
    cargo build --bin crossbar || die "cargo build failed"
    CROSSBAR_BIN=$ROOT/target/debug/crossbar
fi
[ -x "$CROSSBAR_BIN" ] || die "CROSSBAR_BIN=$CROSSBAR_BIN is not an executable"
export CROSSBAR_BIN

# ---- the suites (each bounded; both always run) --------------------------
status=0

echo "== node --test (tests/node, ari-client@2.2.0)"
(cd tests/node && timeout 120 node --test) || {
    echo "!! node suite failed" >&2
    status=1
}

echo "== pytest (tests/python, asyncari==0.20.6)"
(cd tests/python && timeout 120 .venv/bin/python -m pytest) || {
    echo "!! python suite failed" >&2
    status=1
}

if [ "$status" = 0 ]; then
    echo "== ARI client suites: all passed"
else
    echo "== ARI client suites: FAILED" >&2
fi
exit "$status"
