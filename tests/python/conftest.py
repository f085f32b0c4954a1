"""Fixtures for the asyncari suite: one crossbar per suite on its own ports, and
asyncari clients whose events are recorded so tests can wait for them with a
bounded timeout."""

import base64
import contextlib
import json
import os
import pathlib
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import anyio
import asyncari
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PORT = int(os.environ.get("CROSSBAR_PY_ARI_PORT", "18089"))
RTP_MIN = int(os.environ.get("CROSSBAR_PY_RTP_MIN", "22000"))
RTP_MAX = int(os.environ.get("CROSSBAR_PY_RTP_MAX", "22999"))
USER = "asterisk"
PASS = "asterisk"
BASE_URL = f"http://{HOST}:{PORT}/"
WAIT = 5.0


def raw(method, path, *, auth=True, headers=None, body=None, timeout=WAIT):
    """One raw HTTP request; returns (status, headers, body text)."""
    h = dict(headers or {})
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(f"{USER}:{PASS}".encode()).decode()
    req = urllib.request.Request(f"http://{HOST}:{PORT}{path}", method=method, headers=h, data=body)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


@pytest.fixture(scope="session")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def crossbar():
    """Starts crossbar and waits (bounded) for GET /ari/asterisk/ping."""
    binary = os.environ.get("CROSSBAR_BIN") or str(REPO / "target" / "debug" / "crossbar")
    # crossbar refuses unknown CROSSBAR_* variables: keep the harness's own out.
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "CROSSBAR_BIN" and not k.startswith(("CROSSBAR_PY_", "CROSSBAR_NODE_"))
    }
    env.update(
        CROSSBAR_ARI_BIND=f"{HOST}:{PORT}",
        CROSSBAR_SIP_BIND="off",
        CROSSBAR_RTP_BIND_IP=HOST,
        CROSSBAR_RTP_PORT_MIN=str(RTP_MIN),
        CROSSBAR_RTP_PORT_MAX=str(RTP_MAX),
        CROSSBAR_DATAPLANE_SHARDS="1",
        CROSSBAR_DATAPLANE_PIN="false",
        CROSSBAR_RECORDINGS_PATH=tempfile.mkdtemp(prefix="crossbar-py-rec-"),
        CROSSBAR_ARI_USERNAME=USER,
        CROSSBAR_ARI_PASSWORD=PASS,
    )
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)

    def output():
        log.seek(0)
        return log.read().decode(errors="replace")[-20000:]

    deadline = time.monotonic() + 10
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"crossbar ({binary}) exited early ({proc.returncode}):\n{output()}")
            try:
                if raw("GET", "/ari/asterisk/ping", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"crossbar not ready on {BASE_URL} within 10 s:\n{output()}")
            time.sleep(0.05)
        yield BASE_URL
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=2)
        log.close()


class Recorder:
    """Consumes every event of one asyncari client (asyncari blocks its reader
    until listeners take each event) and lets tests wait for them."""

    def __init__(self, client, label):
        self.client = client
        self.label = label
        self.events = []
        self.taken = set()
        self._changed = anyio.Event()

    async def run(self):
        async for msg in self.client:
            self.events.append(msg)
            self._changed.set()
            self._changed = anyio.Event()

    async def wait(self, pred, what, timeout=WAIT):
        try:
            with anyio.fail_after(timeout):
                while True:
                    for i, msg in enumerate(self.events):
                        if i not in self.taken and pred(msg):
                            self.taken.add(i)
                            return msg
                    await self._changed.wait()
        except TimeoutError:
            seen = ", ".join(self.describe(m) for m in self.events) or "(none)"
            raise AssertionError(f"{self.label}: timed out after {timeout} s waiting for {what}; events seen: {seen}")

    async def wait_type(self, typ, channel_id=None, timeout=WAIT):
        def pred(m):
            if m.type != typ:
                return False
            return channel_id is None or ("channel" in m._orig_msg and m._orig_msg["channel"]["id"] == channel_id)

        return await self.wait(pred, f"{typ} for {channel_id}", timeout)

    def types(self, channel_id=None):
        return [
            m.type
            for m in self.events
            if channel_id is None or ("channel" in m._orig_msg and m._orig_msg["channel"]["id"] == channel_id)
        ]

    @staticmethod
    def describe(m):
        ch = m._orig_msg.get("channel")
        return m.type + (f"({ch['name']})" if ch else "")


@contextlib.asynccontextmanager
async def ari_app(base_url, apps, label=None):
    """An asyncari client holding `apps`, with a Recorder running. Bound the
    whole test with `anyio.fail_after`; the connect itself is fast."""
    async with asyncari.connect(base_url, apps, USER, PASS) as client:
        rec = Recorder(client, label or apps)
        client.taskgroup.start_soon(rec.run)
        yield client, rec


@contextlib.contextmanager
def media_sink():
    """A UDP socket standing in for the external media host."""
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    try:
        yield f"{HOST}:{s.getsockname()[1]}"
    finally:
        s.close()


@contextlib.contextmanager
def media_phone():
    """A UDP socket standing in for a caller's phone: yields (socket, "host:port");
    the node accepts media only from the address it sends to, so the test
    speaks from the same socket."""
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    try:
        yield s, f"{HOST}:{s.getsockname()[1]}"
    finally:
        s.close()


def rtp_packet(seq, ts, digit=None, end=False, duration=0):
    """An RTP packet of the phone: 20 ms of PCMU (a quiet 440 Hz sine) or,
    with `digit`, an RFC 4733 event (payload type 101)."""
    import math
    import struct

    pt = 0 if digit is None else 101
    head = struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, 0x1234ABCD)
    if digit is not None:
        event = "0123456789*#".index(digit)
        return head + struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
    out = bytearray()
    for i in range(160):
        x = round(4000 * math.sin(2 * math.pi * 440 * (ts + i) / 8000))
        sign = 0x80 if x < 0 else 0
        mag = min(abs(x) + 0x84, 0x7FFF)
        exp, mask = 7, 0x4000
        while exp > 0 and not mag & mask:
            exp -= 1
            mask >>= 1
        out.append(~(sign | (exp << 4) | ((mag >> (exp + 3)) & 0x0F)) & 0xFF)
    return head + bytes(out)


def body(exc):
    """The JSON body of an httpx.HTTPStatusError."""
    return json.loads(exc.response.text)
