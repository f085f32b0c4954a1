'use strict';
// Test harness for the ari-client suite: starts one crossbar per suite on its
// own ports, connects real ari-client@2.2.0 clients, and records their events
// so tests can wait for them with a bounded timeout.

const { spawn } = require('node:child_process');
const dgram = require('node:dgram');
const http = require('node:http');
const path = require('node:path');
const ari = require('ari-client');

const REPO = path.resolve(__dirname, '..', '..');
const HOST = '127.0.0.1';
const PORT = Number(process.env.CROSSBAR_NODE_ARI_PORT || 18088);
const RTP_MIN = Number(process.env.CROSSBAR_NODE_RTP_MIN || 21000);
const RTP_MAX = Number(process.env.CROSSBAR_NODE_RTP_MAX || 21999);
const USER = 'asterisk';
const PASS = 'asterisk';
const URL = `http://${HOST}:${PORT}`;
const WAIT_MS = 5000;

/** Rejects after `ms` with `what` in the message. */
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** One raw HTTP request (Basic auth); resolves {status, headers, body}. */
function rawRequest(method, urlPath, { auth = true, headers = {}, body } = {}) {
  return withTimeout(new Promise((resolve, reject) => {
    const h = { ...headers };
    if (auth) h.Authorization = 'Basic ' + Buffer.from(`${USER}:${PASS}`).toString('base64');
    if (body !== undefined) h['Content-Length'] = Buffer.byteLength(body);
    const req = http.request({ host: HOST, port: PORT, method, path: urlPath, headers: h, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  }), WAIT_MS, `${method} ${urlPath}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts crossbar and waits (bounded) until GET /ari/asterisk/ping answers 200. */
async function startServer() {
  const bin = process.env.CROSSBAR_BIN || path.join(REPO, 'target', 'debug', 'crossbar');
  // crossbar refuses unknown CROSSBAR_* variables: keep the harness's own out.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) =>
    k !== 'CROSSBAR_BIN' && !k.startsWith('CROSSBAR_NODE_') && !k.startsWith('CROSSBAR_PY_')));
  const env = {
    ...inherited,
    CROSSBAR_ARI_BIND: `${HOST}:${PORT}`,
    CROSSBAR_SIP_BIND: 'off',
    CROSSBAR_RTP_BIND_IP: HOST,
    CROSSBAR_RTP_PORT_MIN: String(RTP_MIN),
    CROSSBAR_RTP_PORT_MAX: String(RTP_MAX),
    CROSSBAR_DATAPLANE_SHARDS: '1',
    CROSSBAR_DATAPLANE_PIN: 'false',
    CROSSBAR_RECORDINGS_PATH: require('node:fs').mkdtempSync(path.join(require('node:os').tmpdir(), 'crossbar-node-rec-')),
    CROSSBAR_ARI_USERNAME: USER,
    CROSSBAR_ARI_PASSWORD: PASS,
  };
  const proc = spawn(bin, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (d) => { log = (log + d.toString()).slice(-20000); };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  let exited = null;
  proc.on('exit', (code, signal) => { exited = { code, signal }; });
  proc.on('error', (e) => { exited = { error: e.message }; });
  const deadline = Date.now() + 10000;
  for (;;) {
    if (exited) throw new Error(`crossbar (${bin}) exited early: ${JSON.stringify(exited)}\n${log}`);
    try {
      const r = await rawRequest('GET', '/ari/asterisk/ping');
      if (r.status === 200) break;
    } catch (_) { /* not listening yet */ }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`crossbar not ready on ${URL} within 10 s\n${log}`);
    }
    await sleep(50);
  }
  return {
    proc,
    log: () => log,
    async stop() {
      if (exited) return;
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      try {
        await withTimeout(gone, 3000, 'crossbar exit');
      } catch (_) {
        proc.kill('SIGKILL');
        await withTimeout(gone, 2000, 'crossbar kill').catch(() => {});
      }
    },
  };
}

/**
 * Records every event an ari-client emits; `wait(pred)` resolves with the first
 * recorded event (past or future) matching `pred` that no earlier wait took.
 */
class Recorder {
  constructor(client, label) {
    this.label = label;
    this.events = [];
    this.taken = new Set();
    this.waiters = [];
    client.on('*', (event, instances) => {
      const entry = { event, instances };
      this.events.push(entry);
      for (const w of [...this.waiters]) {
        if (!this.taken.has(entry) && w.pred(event, instances)) {
          this.taken.add(entry);
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(entry);
        }
      }
    });
  }

  wait(pred, what, ms = WAIT_MS) {
    const found = this.events.find((e) => !this.taken.has(e) && pred(e.event, e.instances));
    if (found) {
      this.taken.add(found);
      return Promise.resolve(found);
    }
    let waiter;
    const p = new Promise((resolve) => {
      waiter = { pred, resolve };
      this.waiters.push(waiter);
    });
    return withTimeout(p, ms, `${this.label}: ${what}`).catch((e) => {
      const i = this.waiters.indexOf(waiter);
      if (i >= 0) this.waiters.splice(i, 1);
      const seen = this.events.map((x) => x.event.type + (x.event.channel ? `(${x.event.channel.name})` : '')).join(', ');
      e.message += `\n  events seen by ${this.label}: ${seen || '(none)'}`;
      throw e;
    });
  }

  /** Waits for an event of `type` about channel `channelId` (or any, if omitted). */
  waitType(type, channelId, ms) {
    return this.wait(
      (e) => e.type === type && (channelId === undefined || (e.channel && e.channel.id === channelId)),
      `${type}${channelId ? ' for ' + channelId : ''}`,
      ms,
    );
  }

  types(channelId) {
    return this.events
      .filter((x) => channelId === undefined || (x.event.channel && x.event.channel.id === channelId))
      .map((x) => x.event.type);
  }
}

/** Connects an ari-client and starts `apps` on its events WebSocket (bounded). */
async function connectApp(apps, label) {
  const client = await withTimeout(ari.connect(URL, USER, PASS), WAIT_MS, `ari.connect (${label})`);
  const recorder = new Recorder(client, label);
  await withTimeout(client.start(apps), WAIT_MS, `client.start(${apps})`);
  return { client, rec: recorder };
}

/** A UDP socket standing in for the external media host. */
async function mediaSink() {
  const sock = dgram.createSocket('udp4');
  const packets = [];
  sock.on('message', (m) => packets.push(m));
  await withTimeout(new Promise((r) => sock.bind(0, HOST, r)), WAIT_MS, 'bind udp');
  return { sock, packets, hostPort: `${HOST}:${sock.address().port}`, close: () => sock.close() };
}

/** Parses an ari-client error (its message is the server's response body). */
function errorBody(err) {
  try {
    return JSON.parse(err.message);
  } catch (_) {
    return { unparsed: err.message };
  }
}

module.exports = {
  URL, USER, PASS, PORT, RTP_MIN, RTP_MAX, WAIT_MS,
  withTimeout, rawRequest, sleep, startServer, connectApp, mediaSink, errorBody, Recorder,
};
