'use strict';
// The classic ARI tutorial apps (channel-dump, bridge-dial, a single-slide
// conference, moving between applications), adapted to crossbar's externalMedia
// and Local channels, driven through the unmodified ari-client@2.2.0.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const util = require('node:util');
const h = require('./harness');

const TEST_TIMEOUT = 20000;
let server;
const clients = [];
const sinks = [];

before(async () => {
  server = await h.startServer();
}, { timeout: 15000 });

after(async () => {
  for (const c of clients) {
    try { c.stop(); } catch (_) { /* already closed */ }
  }
  for (const s of sinks) s.close();
  if (server) await server.stop();
}, { timeout: 10000 });

async function app(name, label = name) {
  const a = await h.connectApp(name, label);
  clients.push(a.client);
  return a;
}

async function sink() {
  const s = await h.mediaSink();
  sinks.push(s);
  return s;
}

/** ari-client rejects with the server's body as the message; expect that error. */
async function expectAriError(promise, status, message) {
  let err;
  await promise.then(() => assert.fail(`expected a ${status} error`), (e) => { err = e; });
  assert.deepEqual(h.errorBody(err), { message }, `error body for expected ${status}`);
}

test('asterisk.getInfo and ping through ari-client', { timeout: TEST_TIMEOUT }, async () => {
  const { client } = await app('info-app');
  const info = await h.withTimeout(client.asterisk.getInfo(), h.WAIT_MS, 'getInfo');
  for (const k of ['build', 'system', 'config', 'status']) assert.ok(info[k], `info has ${k}`);
  assert.equal(info.system.entity_id, '02:fc:00:00:00:01');
  const only = await h.withTimeout(client.asterisk.getInfo({ only: ['build', 'status'] }), h.WAIT_MS, 'getInfo only');
  assert.deepEqual(Object.keys(only).sort(), ['build', 'status']);
  const pong = await h.withTimeout(client.asterisk.ping(), h.WAIT_MS, 'ping');
  assert.equal(pong.ping, 'pong');
  assert.equal(pong.asterisk_id, '02:fc:00:00:00:01');
  assert.match(pong.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$/);
});

test('channel-dump: list channels, dump an externalMedia channel entering the app', { timeout: TEST_TIMEOUT }, async () => {
  const { client, rec } = await app('channel-dump');
  const out = [];
  const log = (...a) => out.push(util.format(...a));

  // The tutorial's clientLoaded: print the current channels.
  const before = await h.withTimeout(client.channels.list(), h.WAIT_MS, 'channels.list');
  assert.ok(Array.isArray(before));
  if (!before.length) log('No channels currently :-(');
  else before.forEach((c) => log(c.name));

  const entered = new Promise((resolve) => {
    client.on('StasisStart', (event, channel) => {
      log('Channel %s has entered the application', channel.name);
      Object.keys(event.channel).forEach((key) => log('%s: %s', key, JSON.stringify(channel[key])));
      resolve({ event, channel });
    });
  });
  const left = new Promise((resolve) => {
    client.on('StasisEnd', (event, channel) => {
      log('Channel %s has left the application', channel.name);
      resolve({ event, channel });
    });
  });

  const media = await sink();
  const created = await h.withTimeout(client.channels.externalMedia({
    app: 'channel-dump',
    external_host: media.hostPort,
    format: 'ulaw',
    data: 'dump,me',
    variables: { GREETING: 'hello' },
  }), h.WAIT_MS, 'externalMedia');
  assert.equal(created.constructor.name, 'Channel', 'reply promoted to a Channel instance');
  assert.ok(before.every((c) => c.id !== created.id));

  const { event, channel } = await h.withTimeout(entered, h.WAIT_MS, 'StasisStart in channel-dump');
  assert.equal(event.application, 'channel-dump');
  assert.deepEqual(event.args, ['dump', 'me']);
  assert.equal(event.replace_channel, undefined, 'replace_channel omitted, never null');
  assert.equal(channel.constructor.name, 'Channel', 'callback gets a Channel instance');
  assert.equal(typeof channel.hangup, 'function', 'instance carries channel operations');
  assert.equal(channel.id, created.id);
  assert.match(channel.name, new RegExp(`^UnicastRTP/${media.hostPort.replace(/\./g, '\\.')}-[0-9a-f]{8}$`));
  assert.equal(channel.state, 'Up');
  assert.equal(channel.dialplan.app_name, 'Stasis');
  const port = Number(channel.channelvars.UNICASTRTP_LOCAL_PORT);
  assert.ok(port >= h.RTP_MIN && port <= h.RTP_MAX, `UNICASTRTP_LOCAL_PORT ${port} in the suite's range`);
  assert.equal(channel.channelvars.UNICASTRTP_LOCAL_ADDRESS, '127.0.0.1');
  assert.ok(out.includes(`Channel ${channel.name} has entered the application`));
  assert.ok(out.includes(`name: ${JSON.stringify(channel.name)}`));
  assert.ok(out.includes(`id: ${JSON.stringify(channel.id)}`));

  const now = await h.withTimeout(client.channels.list(), h.WAIT_MS, 'channels.list');
  const listed = now.find((c) => c.id === channel.id);
  assert.ok(listed, 'GET /channels shows the new channel');
  assert.equal(listed.name, channel.name);
  assert.equal(listed.constructor.name, 'Channel');
  const got = await h.withTimeout(channel.get(), h.WAIT_MS, 'channel.get');
  assert.equal(got.name, channel.name);
  const v = await h.withTimeout(channel.getChannelVar({ variable: 'GREETING' }), h.WAIT_MS, 'getChannelVar');
  assert.equal(v.value, 'hello');

  await h.withTimeout(channel.hangup(), h.WAIT_MS, 'hangup');
  const end = await h.withTimeout(left, h.WAIT_MS, 'StasisEnd in channel-dump');
  assert.equal(end.channel.id, channel.id);
  assert.ok(out.includes(`Channel ${channel.name} has left the application`));
  const destroyed = await rec.waitType('ChannelDestroyed', channel.id);
  assert.equal(destroyed.event.cause, 16);
  assert.equal(destroyed.event.cause_txt, 'Normal Clearing');
  assert.deepEqual(rec.types(channel.id), ['StasisStart', 'ChannelHangupRequest', 'StasisEnd', 'ChannelDestroyed']);
  const after = await h.withTimeout(client.channels.list(), h.WAIT_MS, 'channels.list');
  assert.ok(after.every((c) => c.id !== channel.id), 'gone from GET /channels');
});

test('bridge-dial: externalMedia in, Local/callee@callee-app dialed, bridged, hung up', { timeout: TEST_TIMEOUT }, async () => {
  const { client, rec } = await app('bridge-dial');
  const callee = await app('callee-app');
  const trace = [];
  const ignored = [];
  const done = {};
  const reached = (name) => new Promise((resolve) => { done[name] = resolve; });
  const bridged = reached('bridged');
  const bridgeGone = reached('bridgeGone');
  const dialedGone = reached('dialedGone');

  // The callee side: a second application answers the ;2 half of the Local pair.
  const calleeStarted = new Promise((resolve) => {
    callee.client.on('StasisStart', (event, half2) => {
      trace.push(`callee-app StasisStart ${half2.name} ${half2.state}`);
      half2.answer().then(() => resolve({ event, half2 }), (e) => trace.push(`answer failed ${e.message}`));
    });
  });

  // The tutorial's bridge-dial app, with promises.
  function safeHangup(channel, who) {
    return channel.hangup().catch((err) => {
      // The other side may already be gone: ignore, but record what the server said.
      ignored.push({ who, body: h.errorBody(err) });
    });
  }

  function stasisStart(event, channel) {
    const dialed = event.args[0] === 'dialed';
    if (dialed) return; // handled by the dialed channel's own StasisStart listener
    trace.push(`inbound ${channel.name}`);
    const endpoint = event.args[1];
    channel.ring().then(() => originate(channel, endpoint), (e) => trace.push(`ring failed ${e.message}`));
  }

  function originate(channel, endpoint) {
    const dialed = client.Channel();
    channel.on('StasisEnd', () => { trace.push('inbound StasisEnd'); safeHangup(dialed, 'dialed'); });
    dialed.on('ChannelDestroyed', () => { trace.push('dialed ChannelDestroyed'); safeHangup(channel, 'inbound'); done.dialedGone(); });
    dialed.on('StasisStart', (event, d) => joinMixingBridge(channel, d, event));
    dialed.originate({ endpoint, app: 'bridge-dial', appArgs: 'dialed' })
      .then((d) => trace.push(`originated ${d.name}`), (e) => trace.push(`originate failed ${e.message}`));
  }

  function joinMixingBridge(channel, dialed, event) {
    trace.push(`dialed StasisStart ${dialed.name} args=${event.args.join(',')}`);
    const bridge = client.Bridge();
    dialed.on('StasisEnd', () => dialedExit(dialed, bridge));
    dialed.answer()
      .then(() => bridge.create({ type: 'mixing' }))
      .then((b) => { trace.push(`bridge ${b.id}`); return b.addChannel({ channel: [channel.id, dialed.id] }); })
      .then(() => done.bridged({ bridge, dialed }), (e) => trace.push(`bridge failed ${e.message}`));
  }

  function dialedExit(dialed, bridge) {
    trace.push('dialed StasisEnd');
    bridge.destroy().then(() => done.bridgeGone(), (e) => trace.push(`destroy failed ${e.message}`));
  }

  client.on('StasisStart', stasisStart);

  const media = await sink();
  const inbound = await h.withTimeout(client.channels.externalMedia({
    app: 'bridge-dial', external_host: media.hostPort, format: 'ulaw', data: 'inbound,Local/callee@callee-app',
  }), h.WAIT_MS, 'externalMedia');

  const ctx = () => `trace: ${trace.join(' | ')}`;
  const { event: calleeEvent, half2 } = await h.withTimeout(calleeStarted, h.WAIT_MS, `callee StasisStart; ${ctx()}`);
  assert.match(half2.name, /^Local\/callee@callee-app-[0-9a-f]{8};2$/);
  assert.equal(half2.state, 'Ring');
  assert.equal(half2.dialplan.exten, 'callee');
  assert.deepEqual(calleeEvent.args, []);

  const { bridge, dialed } = await h.withTimeout(bridged, h.WAIT_MS, `bridged; ${ctx()}`);
  assert.equal(dialed.name, half2.name.replace(/;2$/, ';1'));
  const dialedStart = await rec.waitType('StasisStart', dialed.id);
  assert.deepEqual(dialedStart.event.args, ['dialed']);
  assert.match(bridge.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'client-generated uuid honoured');

  for (const id of [inbound.id, dialed.id]) {
    const entered = await rec.waitType('ChannelEnteredBridge', id);
    assert.equal(entered.event.bridge.id, bridge.id);
    assert.equal(entered.instances.bridge.constructor.name, 'Bridge', '(event, {bridge, channel}) instances');
    assert.equal(entered.instances.channel.id, id);
  }
  const b = await h.withTimeout(bridge.get(), h.WAIT_MS, 'bridge.get');
  assert.deepEqual([...b.channels].sort(), [inbound.id, dialed.id].sort());
  assert.equal(b.bridge_type, 'mixing');
  const calleeNow = await h.withTimeout(client.channels.get({ channelId: half2.id }), h.WAIT_MS, 'get ;2');
  assert.equal(calleeNow.state, 'Up');

  // The caller hangs up: the app hangs up the dialed side, then tears down the bridge.
  await h.withTimeout(client.channels.hangup({ channelId: inbound.id }), h.WAIT_MS, 'hangup inbound');
  await h.withTimeout(Promise.all([bridgeGone, dialedGone]), h.WAIT_MS, `teardown; ${ctx()}`);
  const inboundDestroyed = await rec.waitType('ChannelDestroyed', inbound.id);
  assert.equal(inboundDestroyed.event.cause, 16);
  assert.equal(inboundDestroyed.event.cause_txt, 'Normal Clearing');
  const hangupReq = await rec.waitType('ChannelHangupRequest', inbound.id);
  assert.equal(hangupReq.event.soft, true);
  assert.deepEqual(rec.types(inbound.id).slice(-4),
    ['ChannelHangupRequest', 'ChannelLeftBridge', 'StasisEnd', 'ChannelDestroyed']);
  const dialedDestroyed = await rec.waitType('ChannelDestroyed', dialed.id);
  assert.equal(dialedDestroyed.event.cause, 16);
  assert.equal(dialedDestroyed.event.cause_txt, 'Normal Clearing');
  await callee.rec.waitType('StasisEnd', half2.id);
  const half2Destroyed = await callee.rec.waitType('ChannelDestroyed', half2.id);
  assert.equal(half2Destroyed.event.cause, 16);

  // The safe hangup of the already-gone inbound channel got a 404 that the app ignored.
  await h.withTimeout((async () => { while (!ignored.some((i) => i.who === 'inbound')) await h.sleep(20); })(),
    h.WAIT_MS, `safe hangup result; ${ctx()}`);
  assert.deepEqual(ignored.find((i) => i.who === 'inbound').body, { message: 'Channel not found' });
  await expectAriError(client.channels.get({ channelId: inbound.id }), 404, 'Channel not found');
  await expectAriError(client.bridges.get({ bridgeId: bridge.id }), 404, 'Bridge not found');
  const left = await h.withTimeout(client.channels.list(), h.WAIT_MS, 'list');
  assert.ok(left.every((c) => ![inbound.id, dialed.id, half2.id].includes(c.id)), 'all three channels gone');
});

test('single-slide conference: dtmf_events mixing bridge with a client-chosen id', { timeout: TEST_TIMEOUT }, async () => {
  const { client, rec } = await app('slide-conf');
  const media = await sink();
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const ch = await h.withTimeout(client.channels.externalMedia({
      app: 'slide-conf', external_host: media.hostPort, format: 'slin16', data: `member,${i}`,
    }), h.WAIT_MS, 'externalMedia');
    ids.push(ch.id);
    await rec.waitType('StasisStart', ch.id);
  }

  const conf = client.Bridge();
  const created = await h.withTimeout(conf.create({ type: 'mixing,dtmf_events', name: 'slide' }), h.WAIT_MS, 'bridge create');
  assert.equal(created.id, conf.id, 'the client-chosen bridgeId is the bridge id');
  assert.equal(created.name, 'slide');
  assert.equal(created.bridge_type, 'mixing');
  assert.equal(created.bridge_class, 'stasis');
  assert.deepEqual(created.channels, []);
  await expectAriError(client.bridges.create({ type: 'mixing', bridgeId: conf.id }), 409,
    `Bridge with id '${conf.id}' already exists`);

  for (const id of ids) {
    await h.withTimeout(conf.addChannel({ channel: id }), h.WAIT_MS, 'addChannel');
    const e = await rec.waitType('ChannelEnteredBridge', id);
    assert.ok(e.event.bridge.channels.includes(id));
  }
  const full = await h.withTimeout(conf.get(), h.WAIT_MS, 'bridge.get');
  assert.deepEqual([...full.channels].sort(), [...ids].sort());

  // The seed's conference beeps the whole bridge: conf_bridge.play(media='sound:beep').
  const beep = client.Playback();
  const queued = await h.withTimeout(conf.play({ media: 'sound:beep' }, beep), h.WAIT_MS, 'bridge play');
  assert.equal(queued.id, beep.id, 'the client-chosen playbackId');
  assert.equal(queued.target_uri, `bridge:${conf.id}`);
  const beepStarted = await rec.wait((e) => e.type === 'PlaybackStarted' && e.playback.id === beep.id, 'PlaybackStarted');
  assert.equal(beepStarted.event.playback.media_uri, 'sound:beep');
  const beepDone = await rec.wait((e) => e.type === 'PlaybackFinished' && e.playback.id === beep.id, 'PlaybackFinished');
  assert.equal(beepDone.event.playback.state, 'done');
  await expectAriError(client.playbacks.get({ playbackId: beep.id }), 404, 'Playback not found');
  const listed = await h.withTimeout(client.bridges.list(), h.WAIT_MS, 'bridges.list');
  assert.ok(listed.some((b) => b.id === conf.id));

  const [leaver, ...stay] = ids;
  await h.withTimeout(conf.removeChannel({ channel: leaver }), h.WAIT_MS, 'removeChannel');
  const leftEv = await rec.waitType('ChannelLeftBridge', leaver);
  assert.equal(leftEv.event.bridge.id, conf.id);
  assert.deepEqual([...leftEv.event.bridge.channels].sort(), [...stay].sort(), 'snapshot after the leave');
  assert.equal(leftEv.instances.bridge.constructor.name, 'Bridge');
  await expectAriError(conf.removeChannel({ channel: leaver }), 422, 'Channel not in this bridge');
  const two = await h.withTimeout(conf.get(), h.WAIT_MS, 'bridge.get');
  assert.deepEqual([...two.channels].sort(), [...stay].sort());

  await h.withTimeout(conf.destroy(), h.WAIT_MS, 'bridge destroy');
  for (const id of stay) {
    const e = await rec.waitType('ChannelLeftBridge', id);
    assert.equal(e.event.bridge.id, conf.id);
  }
  const destroyedEv = await rec.wait((e) => e.type === 'BridgeDestroyed' && e.bridge.id === conf.id, 'BridgeDestroyed');
  assert.deepEqual(destroyedEv.event.bridge.channels, []);
  await expectAriError(conf.get(), 404, 'Bridge not found');
  for (const id of ids) {
    const ch = await h.withTimeout(client.channels.get({ channelId: id }), h.WAIT_MS, 'channel.get');
    assert.equal(ch.state, 'Up');
  }
  const appInfo = await h.withTimeout(client.applications.get({ applicationName: 'slide-conf' }), h.WAIT_MS, 'applications.get');
  for (const id of ids) assert.ok(appInfo.channel_ids.includes(id), 'still in the application');
  assert.ok(!rec.types().includes('StasisEnd'), 'nobody left the application');
  for (const id of ids) await h.withTimeout(client.channels.hangup({ channelId: id }), h.WAIT_MS, 'hangup');
});

/** An RTP packet from the test's "phone": PCMU audio (a 440 Hz tone) or, with `digit`, an RFC 4733 event. */
function rtpPacket(seq, ts, { digit, end = false, duration = 0 } = {}) {
  const head = Buffer.alloc(12);
  head[0] = 0x80;
  head[1] = digit === undefined ? 0 : 101;
  head.writeUInt16BE(seq & 0xffff, 2);
  head.writeUInt32BE(ts >>> 0, 4);
  head.writeUInt32BE(0x1234abcd, 8);
  if (digit !== undefined) {
    const event = '0123456789*#'.indexOf(digit);
    const body = Buffer.from([event, (end ? 0x80 : 0) | 10, duration >> 8, duration & 0xff]);
    return Buffer.concat([head, body]);
  }
  const body = Buffer.alloc(160);
  for (let i = 0; i < 160; i++) {
    // μ-law of a quiet 440 Hz sine (G.711 segment encoding).
    const x = Math.round(4000 * Math.sin(2 * Math.PI * 440 * (ts + i) / 8000));
    const sign = x < 0 ? 0x80 : 0;
    let mag = Math.min(Math.abs(x) + 0x84, 0x7fff);
    let exp = 7;
    for (let mask = 0x4000; exp > 0 && !(mag & mask); mask >>= 1) exp--;
    body[i] = ~(sign | (exp << 4) | ((mag >> (exp + 3)) & 0x0f)) & 0xff;
  }
  return Buffer.concat([head, body]);
}

test('IVR: answer, a prompt, digits collected, a message recorded, then bridged to an agent', { timeout: TEST_TIMEOUT }, async () => {
  const { client, rec } = await app('ivr');
  const phone = await sink();
  const caller = await h.withTimeout(client.channels.externalMedia({
    app: 'ivr', external_host: phone.hostPort, format: 'ulaw',
  }), h.WAIT_MS, 'externalMedia');
  await rec.waitType('StasisStart', caller.id);
  const rtpPort = Number(caller.channelvars.UNICASTRTP_LOCAL_PORT);
  let seq = 1;
  let ts = 8000;
  const send = (opts) => new Promise((resolve) => phone.sock.send(rtpPacket(seq++, opts && opts.digit !== undefined ? opts.ts : ts, opts), rtpPort, '127.0.0.1', resolve));

  // Answer and play the greeting to the end.
  await h.withTimeout(caller.answer(), h.WAIT_MS, 'answer');
  const greeting = client.Playback();
  const queued = await h.withTimeout(caller.play({ media: 'sound:hello-world' }, greeting), h.WAIT_MS, 'play');
  assert.equal(queued.target_uri, `channel:${caller.id}`);
  const played = await rec.wait((e) => e.type === 'PlaybackFinished' && e.playback.id === greeting.id, 'greeting finished');
  assert.equal(played.event.playback.state, 'done');

  // Collect digits until '#'.
  const digits = [];
  const hash = new Promise((resolve) => {
    client.on('ChannelDtmfReceived', (event, channel) => {
      if (channel.id !== caller.id) return;
      if (event.digit === '#') resolve();
      else digits.push(event.digit);
    });
  });
  for (const digit of ['4', '2', '#']) {
    const at = ts;
    for (let k = 1; k <= 3; k++) await send({ digit, ts: at, duration: 160 * k });
    for (let k = 0; k < 3; k++) await send({ digit, ts: at, end: true, duration: 480 });
    ts += 800;
    await h.sleep(30);
  }
  await h.withTimeout(hash, h.WAIT_MS, 'digits up to #');
  assert.deepEqual(digits, ['4', '2']);

  // Record the caller's message (one second at most) while the phone talks.
  const started = await h.withTimeout(caller.record({
    name: 'ivr-message', format: 'wav', maxDurationSeconds: 1, ifExists: 'overwrite', beep: true,
  }), h.WAIT_MS, 'record');
  assert.equal(started.name, 'ivr-message');
  assert.equal(started.target_uri, `channel:${caller.id}`);
  let talking = true;
  const talk = (async () => {
    for (let i = 0; talking && i < 200; i++) {
      await send();
      ts += 160;
      await h.sleep(20);
    }
  })();
  const finished = await rec.wait((e) => e.type === 'RecordingFinished' && e.recording.name === 'ivr-message', 'RecordingFinished');
  talking = false;
  await talk;
  assert.ok(finished.event.recording.duration >= 1, `duration ${finished.event.recording.duration}`);
  const stored = await h.withTimeout(client.recordings.getStored({ recordingName: 'ivr-message' }), h.WAIT_MS, 'getStored');
  assert.equal(stored.format, 'wav');

  // Then to an agent.
  const agentSink = await sink();
  const agent = await h.withTimeout(client.channels.externalMedia({
    app: 'ivr', external_host: agentSink.hostPort, format: 'ulaw',
  }), h.WAIT_MS, 'agent');
  await rec.waitType('StasisStart', agent.id);
  const bridge = client.Bridge();
  await h.withTimeout(bridge.create({ type: 'mixing' }), h.WAIT_MS, 'bridge');
  await h.withTimeout(bridge.addChannel({ channel: [caller.id, agent.id] }), h.WAIT_MS, 'addChannel');
  await rec.waitType('ChannelEnteredBridge', caller.id);
  await rec.waitType('ChannelEnteredBridge', agent.id);

  await h.withTimeout(client.recordings.deleteStored({ recordingName: 'ivr-message' }), h.WAIT_MS, 'deleteStored');
  await expectAriError(client.recordings.getStored({ recordingName: 'ivr-message' }), 404, 'Recording not found');
  for (const c of [caller, agent]) await h.withTimeout(c.hangup(), h.WAIT_MS, 'hangup');
  await h.withTimeout(bridge.destroy(), h.WAIT_MS, 'bridge destroy');
});

test('moving between applications: to a running app, and a failed move', { timeout: TEST_TIMEOUT }, async () => {
  const a = await app('move-a');
  const b = await app('move-b');
  const media = await sink();
  const ch = await h.withTimeout(a.client.channels.externalMedia({
    app: 'move-a', external_host: media.hostPort, format: 'ulaw', data: 'first',
  }), h.WAIT_MS, 'externalMedia');
  const start = await a.rec.waitType('StasisStart', ch.id);
  assert.deepEqual(start.event.args, ['first']);

  await h.withTimeout(start.instances.move({ app: 'move-b', appArgs: 'moved,2' }), h.WAIT_MS, 'move');
  const endA = await a.rec.waitType('StasisEnd', ch.id);
  assert.equal(endA.event.application, 'move-a');
  const startB = await b.rec.waitType('StasisStart', ch.id);
  assert.equal(startB.event.application, 'move-b');
  assert.deepEqual(startB.event.args, ['moved', '2']);
  assert.equal(startB.event.replace_channel, undefined);
  assert.equal(startB.instances.constructor.name, 'Channel');
  const appB = await h.withTimeout(b.client.applications.get({ applicationName: 'move-b' }), h.WAIT_MS, 'applications.get');
  assert.ok(appB.channel_ids.includes(ch.id));

  await h.withTimeout(startB.instances.move({ app: 'nobody-runs-this', appArgs: 'x' }), h.WAIT_MS, 'failed move');
  const failed = await b.rec.waitType('ApplicationMoveFailed', ch.id);
  assert.equal(failed.event.application, 'move-b');
  assert.equal(failed.event.destination, 'nobody-runs-this');
  assert.deepEqual(failed.event.args, ['x']);
  assert.equal(failed.instances.constructor.name, 'Channel');
  // The channel stays in move-b and can still be driven from there.
  await h.withTimeout(startB.instances.setChannelVar({ variable: 'STAYED', value: 'yes' }), h.WAIT_MS, 'setChannelVar');
  const v = await h.withTimeout(startB.instances.getChannelVar({ variable: 'STAYED' }), h.WAIT_MS, 'getChannelVar');
  assert.equal(v.value, 'yes');
  await h.sleep(100);
  assert.ok(!b.rec.types(ch.id).includes('StasisEnd'), 'no StasisEnd after the failed move');
  assert.deepEqual(a.rec.types(ch.id), ['StasisStart', 'StasisEnd']);

  await h.withTimeout(b.client.channels.hangup({ channelId: ch.id }), h.WAIT_MS, 'hangup');
  const destroyed = await b.rec.waitType('ChannelDestroyed', ch.id);
  assert.equal(destroyed.event.cause, 16);
  assert.deepEqual(a.rec.types(ch.id), ['StasisStart', 'StasisEnd'], 'move-a hears nothing after the move');
});
