// The client against fake servers over real loopback sockets: what a real
// samgw never does (coalesced and split writes on purpose, garbage, silence,
// oversized frames, dropped connections at chosen moments).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as zlib from 'node:zlib';
import { generateKeyPairSync, verify } from 'node:crypto';
import { Client, FrameReader, SamgwError, TCPClient, signedBytes, type Message } from '../src/index.js';
import { FakeServer, Lines, withDeadline } from './harness.js';

function frame(m: Record<string, unknown>): string {
  return JSON.stringify(m) + '\n';
}

/** collect gathers a client's events of one kind. */
function collect<T>(c: Client, event: 'data' | 'error' | 'disconnect' | 'keepalive' | 'ping'): { items: T[]; next(n: number): Promise<T[]> } {
  const items: T[] = [];
  let wake: (() => void) | undefined;
  c.on(event, (x: unknown) => {
    items.push(x as T);
    wake?.();
  });
  return {
    items,
    next: (n) =>
      withDeadline((async () => {
        while (items.length < n) await new Promise<void>((resolve) => (wake = resolve));
        return items.slice(0, n);
      })(), 10_000, `${n} ${event} events (got ${items.length})`),
  };
}

test('FrameReader: split at every byte, coalesced, CRLF, empty lines, the limit', () => {
  const stream = Buffer.from('{"a":1}\n\r\n{"b":"ü"}\r\n\n{"c":[1,2]}\n');
  const want = ['{"a":1}', '{"b":"ü"}', '{"c":[1,2]}'];
  for (let cut = 0; cut <= stream.length; cut++) {
    const r = new FrameReader(64);
    const got = [...r.push(stream.subarray(0, cut)), ...r.push(stream.subarray(cut))].map((b) => b.toString());
    assert.deepEqual(got, want, `cut at ${cut}`);
  }
  const r = new FrameReader(64);
  assert.deepEqual(Buffer.concat(r.push(Buffer.from('x'.repeat(64) + '\r\n'))).length, 64);
  assert.throws(() => new FrameReader(64).push(Buffer.from('y'.repeat(65) + '\n')), (e: SamgwError) => e.code === 'frame_too_large');
  // The bound holds before any newline arrives: a frame that never ends is refused at the limit.
  const slow = new FrameReader(64);
  for (let i = 0; i < 6; i++) slow.push(Buffer.from('z'.repeat(10)));
  assert.throws(() => slow.push(Buffer.from('z'.repeat(10))), (e: SamgwError) => e.code === 'frame_too_large');
});

test('signedBytes: the example of docs/security.md, byte for byte', () => {
  assert.equal(signedBytes('m1', 1764100000000, 'chat', '{"a":1}').toString(), 'samgw-sig-v1\nm1\n1764100000000\nchat\n{"a":1}');
});

test('coalesced and split frames from the server all arrive, in order', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port });
  const data = collect<Message>(c, 'data');
  await c.connect();
  const s = await srv.accept(0);
  s.write(frame({ type: 'data', payload: 1 }) + frame({ type: 'data', payload: 2 }) + frame({ type: 'data', payload: 3 }));
  const split = frame({ type: 'data', payload: { text: 'split ✓' } });
  const bytes = Buffer.from(split);
  s.write(bytes.subarray(0, 5));
  s.write(bytes.subarray(5, 16)); // inside the multi-byte ✓
  s.write(bytes.subarray(16));
  const got = await data.next(4);
  assert.deepEqual(got.map((m) => m.payload), [1, 2, 3, { text: 'split ✓' }]);
  await c.disconnect();
  await srv.close();
});

test('invalid input from the server is an error event, and the connection stays', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port });
  const errors = collect<SamgwError>(c, 'error');
  const data = collect<Message>(c, 'data');
  await c.connect();
  const s = await srv.accept(0);
  s.write('not json\n[1,2]\n{"type":"teleport"}\n{"type":"data","id":7}\n');
  s.write(Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a])); // invalid UTF-8
  s.write(frame({ type: 'error', payload: { code: 'rate_limited', message: 'slow down' } }));
  s.write(frame({ type: 'data', payload: 'still here' }));
  const got = await errors.next(6);
  assert.deepEqual(got.map((e) => e.code), ['invalid_json', 'invalid_message', 'invalid_message', 'invalid_message', 'invalid_json', 'rate_limited']);
  assert.match(got[5]!.message, /slow down/);
  assert.equal((await data.next(1))[0]!.payload, 'still here');
  assert.equal(c.isConnected(), true);
  assert.equal(srv.sockets.length, 1);
  await c.disconnect();
  await srv.close();
});

test('a frame over maxFrameSize drops the connection and the client reconnects', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port, maxFrameSize: 1024, backoffMin: 20, backoffMax: 100 });
  const errors = collect<SamgwError>(c, 'error');
  const lost = collect<string>(c, 'disconnect');
  await c.connect();
  const s = await srv.accept(0);
  s.write('x'.repeat(600));
  s.write('x'.repeat(600)); // no newline yet: refused at the limit, not at the newline
  assert.equal((await errors.next(1))[0]!.code, 'frame_too_large');
  assert.match((await lost.next(1))[0]!, /longer than 1024 bytes/);
  await srv.accept(1);
  await c.disconnect();
  await srv.close();
});

test('keep-alive: a keepalive every interval with fresh ids; server pings get pongs', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port, keepAliveInterval: 30 });
  await c.connect();
  const lines = new Lines(await srv.accept(0));
  const k1 = await lines.next('keepalive');
  const k2 = await lines.next('keepalive');
  assert.deepEqual(k1.payload, { message: 'keepalive' });
  assert.notEqual(k1.id, k2.id);
  srv.sockets[0]!.write(frame({ type: 'ping', id: 'srv-ping-1' }));
  const pong = await lines.next('pong');
  assert.equal(pong.id, 'srv-ping-1');
  await c.disconnect();
  await srv.close();
});

test('a silent server is declared dead after keepAliveTimeout, not before', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port, keepAliveTimeout: 200, keepAliveInterval: 10_000, backoffMin: 5_000 });
  const lost = collect<string>(c, 'disconnect');
  await c.connect();
  const start = performance.now();
  const s = await srv.accept(0);
  s.write(frame({ type: 'keepalive', payload: { message: 'keepalive' } }));
  const [reason] = await lost.next(1);
  const elapsed = performance.now() - start;
  assert.equal(reason, 'keepalive timeout');
  assert.ok(elapsed >= 190, `declared dead after ${elapsed} ms`);
  assert.equal(c.isConnected(), false);
  await c.disconnect();
  await srv.close();
});

test('at most once: a written request fails with connection_lost; sends queued while down go out in order, once', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port, backoffMin: 20, backoffMax: 50, token: 'tok' });
  let queuedIds: string[] = [];
  c.once('disconnect', () => {
    // Disconnected now: these three wait in the queue for the next connection.
    queuedIds = [c.send({ q: 1 }), c.send({ q: 2 }), c.send({ q: 3 })];
  });
  const connecting = c.connect();
  const first = new Lines(await srv.accept(0));
  const auth1 = await first.next('auth');
  assert.deepEqual(auth1.payload, { token: 'tok', resume: true }); // resume by default: the mailbox is delivered after each connect
  srv.sockets[0]!.write(frame({ type: 'auth', payload: { ok: true, identity: 'a' }, id: auth1.id }));
  await connecting;
  const req = c.request({ r: 1 });
  const written = await first.next('data');
  assert.deepEqual(written.payload, { r: 1 });
  srv.sockets[0]!.destroy();
  await assert.rejects(req, (e: SamgwError) => e.code === 'connection_lost');
  const second = new Lines(await srv.accept(1));
  assert.deepEqual((await second.next()).type, 'auth', 'auth comes first on every connection');
  const got = [await second.next('data'), await second.next('data'), await second.next('data')];
  assert.deepEqual(got.map((m) => m.payload), [{ q: 1 }, { q: 2 }, { q: 3 }]);
  assert.deepEqual(got.map((m) => m.id), queuedIds);
  // The written request was not sent again.
  c.send({ marker: true });
  assert.deepEqual((await second.next('data')).payload, { marker: true });
  await c.disconnect();
  await srv.close();
});

test('the queue is bounded while disconnected', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port, queueSize: 2, backoffMin: 10_000 });
  await c.connect();
  const lost = collect<string>(c, 'disconnect');
  (await srv.accept(0)).destroy();
  await lost.next(1);
  c.send(1);
  c.send(2);
  assert.throws(() => c.send(3), (e: SamgwError) => e.code === 'queue_full');
  await c.disconnect();
  assert.throws(() => c.send(4), (e: SamgwError) => e.code === 'client_closed');
  await srv.close();
});

test('request: an error reply rejects with its code; ids are unique', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port });
  await c.connect();
  const lines = new Lines(await srv.accept(0));
  const ok = c.request({ n: 1 }, { route: 'calc' });
  const bad = c.request({ n: 2 });
  const m1 = await lines.next('data');
  const m2 = await lines.next('data');
  assert.equal(m1.route, 'calc');
  srv.sockets[0]!.write(frame({ type: 'error', id: m2.id, payload: { code: 'forbidden', message: 'no' } }) + frame({ type: 'data', id: m1.id, payload: 42 }));
  assert.equal((await ok).payload, 42);
  await assert.rejects(bad, (e: SamgwError) => e.code === 'forbidden' && /no/.test(e.message));
  const ids = new Set<string>();
  for (let i = 0; i < 10_000; i++) ids.add(c.send(i));
  assert.equal(ids.size, 10_000);
  const other = new Client({ port: srv.port }); // never connected: its send is queued
  assert.notEqual(other.send(0).split('-')[0], c.send(0).split('-')[0], 'each client has its own id prefix');
  await other.disconnect();
  await c.disconnect();
  await srv.close();
});

test('request timeout, and disconnect rejects what still waits', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port });
  await c.connect();
  const lines = new Lines(await srv.accept(0));
  await assert.rejects(c.request(1, { timeout: 50 }), (e: SamgwError) => e.code === 'timeout');
  const pending = c.request(2);
  const closing = c.disconnect('bye');
  const close = await lines.next('close');
  assert.deepEqual(close.payload, { reason: 'bye' });
  await closing; // the fake server hangs up after the close frame, as samgw does
  await assert.rejects(pending, (e: SamgwError) => e.code === 'client_closed');
  await srv.close();
});

test('signing: every data frame carries an Ed25519 sig over the exact bytes sent', async () => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port, signKey: privateKey.export({ format: 'pem', type: 'pkcs8' }) });
  await c.connect();
  const s = await srv.accept(0);
  let raw = '';
  s.setEncoding('utf8');
  s.on('data', (d: string) => (raw += d));
  c.send({ text: 'héllo', n: [1, 2.5] }, { route: 'chat' });
  c.send('no route');
  await withDeadline((async () => {
    while ((raw.match(/"type":"data"/g) ?? []).length < 2) await once(s, 'data');
  })(), 10_000, 'two data frames');
  for (const line of raw.split('\n').filter((l) => l.includes('"type":"data"'))) {
    const m = JSON.parse(line) as { id: string; timestamp: number; route?: string; sig: string };
    const payloadText = line.slice(line.indexOf('"payload":') + 10, line.indexOf(',"timestamp":'));
    assert.ok(verify(null, signedBytes(m.id, m.timestamp, m.route ?? '', payloadText), publicKey, Buffer.from(m.sig, 'base64')), line);
  }
  assert.throws(() => new Client({ signKey: generateKeyPairSync('x25519').privateKey }), /Ed25519/);
  await c.disconnect();
  await srv.close();
});

test('a first connection that is refused rejects connect with connect_failed', async () => {
  const srv = await FakeServer.start();
  const port = srv.port;
  await srv.close();
  const c = new Client({ port });
  await assert.rejects(c.connect(), (e: SamgwError) => e.code === 'connect_failed');
});

test("TCPClient: the prototype's constructor, methods and console lines", async () => {
  const srv = await FakeServer.start();
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  const log = (line: string, ...args: unknown[]) => {
    lines.push([line, ...args.map((a) => JSON.stringify(a))].join(' '));
    wake?.();
  };
  const until = (text: string) =>
    withDeadline((async () => {
      while (!lines.some((l) => l.startsWith(text))) await new Promise<void>((resolve) => (wake = resolve));
    })(), 10_000, `"${text}" logged (got ${JSON.stringify(lines)})`);
  const client = new TCPClient('127.0.0.1', srv.port, 30_000, 10_000, { log });
  client.connect();
  await until('Connected to server');
  assert.equal(client.isConnectedToServer(), true);
  const peer = new Lines(await srv.accept(0));
  client.send({ name: 'John', age: 30 });
  const sent = await peer.next('data');
  srv.sockets[0]!.write(frame({ type: 'data', payload: sent.payload, id: sent.id }));
  await until('Data received:');
  client.ping();
  const ping = await peer.next('ping');
  srv.sockets[0]!.write(frame({ type: 'pong', payload: { message: 'pong' }, id: ping.id }));
  await until('Pong received');
  srv.sockets[0]!.write(frame({ type: 'keepalive', payload: { message: 'keepalive' } }));
  await until('Keep-alive received');
  assert.ok(Date.now() - client.getLastActivity() < 10_000);
  client.disconnect();
  await peer.next('close');
  await until('Disconnected from server');
  assert.deepEqual(lines, [
    'Connected to server',
    'Data received: {"name":"John","age":30}',
    'Pong received',
    'Keep-alive received',
    'Disconnected from server',
  ]);
  await srv.close();
});

test('a frame nested 100,000 deep is an error event, and the connection goes on', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port });
  const errors = collect<SamgwError>(c, 'error');
  const data = collect<Message>(c, 'data');
  await c.connect();
  const s = await srv.accept(0);
  const deep = '{"type":"data","payload":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}\n';
  s.write(deep + frame({ type: 'data', payload: '["not nesting"]' }) + frame({ type: 'data', payload: 'after' }));
  const [err] = await errors.next(1);
  assert.equal(err!.code, 'invalid_message');
  assert.match(err!.message, /nested deeper than 64/);
  const got = await data.next(2);
  assert.deepEqual(got.map((m) => m.payload), ['["not nesting"]', 'after']);
  assert.equal(c.isConnected(), true);
  await c.disconnect();
  await srv.close();
});

test('a ping flood from a server that never reads: the pong backlog stays bounded', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port, keepAliveInterval: 10_000, keepAliveTimeout: 60_000 });
  const pings = collect<Message>(c, 'ping');
  await c.connect();
  const s = await srv.accept(0);
  s.pause(); // never reads what the client writes
  const burst = frame({ type: 'ping', id: 'p' }).repeat(10_000);
  const rounds = 30; // 300,000 pings: 18 MB of pongs if each were queued
  for (let i = 0; i < rounds; i++) {
    if (!s.write(burst)) await withDeadline(once(s, 'drain'), 10_000, 'the client to read the pings');
  }
  await pings.next(rounds * 10_000);
  const session = (c as unknown as { session?: { link: { backlog(): number } } }).session;
  const backlog = session!.link.backlog();
  assert.ok(backlog <= (64 << 10) + 256, `the client holds ${backlog} bytes of pongs`);
  assert.equal(c.isConnected(), true);
  await c.disconnect();
  await srv.close();
});

test('a server that drips bytes of a frame that never ends is dead at keepAliveTimeout', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port, keepAliveTimeout: 400, keepAliveInterval: 10_000, backoffMin: 5_000 });
  const lost = collect<string>(c, 'disconnect');
  await c.connect();
  const s = await srv.accept(0);
  const start = performance.now();
  const drip = setInterval(() => s.write('x'), 50); // the server's behaviour under test, not a wait
  const [reason] = await lost.next(1);
  clearInterval(drip);
  const elapsed = performance.now() - start;
  assert.equal(reason, 'keepalive timeout');
  assert.ok(elapsed >= 390 && elapsed < 5_000, `declared dead after ${elapsed} ms`);
  await c.disconnect();
  await srv.close();
});

/** answerAuth takes connection n of srv, reads its auth frame and answers it as samgw does, with the mailbox fields given. */
async function answerAuth(srv: FakeServer, n: number, mailbox: { resume?: boolean; pending?: number }): Promise<Lines & { auth: Record<string, unknown> }> {
  const lines = new Lines(await srv.accept(n)) as Lines & { auth: Record<string, unknown> };
  lines.auth = await lines.next('auth');
  srv.sockets[n]!.write(frame({ type: 'auth', id: lines.auth.id, payload: { ok: true, identity: 'a', ...mailbox } }));
  return lines;
}

test('mailbox: one cumulative ack per chunk, duplicates by id dropped across reconnects, manualAck, a bad seq is an error event', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port, backoffMin: 20, backoffMax: 50, token: 'tok' });
  const data = collect<Message>(c, 'data');
  const errors = collect<SamgwError>(c, 'error');
  const connecting = c.connect();
  const first = await answerAuth(srv, 0, { resume: true, pending: 3 });
  await connecting;
  assert.deepEqual(c.mailbox, { resumed: true, pending: 3 });
  // Three in one write: one ack, for the last.
  srv.sockets[0]!.write(frame({ type: 'data', id: 'm1', seq: 4, payload: 1 }) + frame({ type: 'data', id: 'm2', seq: 7, payload: 2 }) +
    frame({ type: 'data', id: 'm3', seq: 9, payload: 3, route: 'inbox' }));
  assert.deepEqual((await data.next(3)).map((m) => [m.seq, m.payload]), [[4, 1], [7, 2], [9, 3]]);
  const ack = await first.next('ack');
  assert.deepEqual(ack.payload, { seq: 9 });
  // A seq that is not a non-negative integer is refused as invalid input.
  srv.sockets[0]!.write(frame({ type: 'data', id: 'bad', seq: -1, payload: 0 }) + frame({ type: 'data', id: 'bad2', seq: 1.5, payload: 0 }));
  assert.equal((await errors.next(2)).every((e) => e.code === 'invalid_message'), true);
  // After a reconnect the same ids come again (their ack was lost): dropped, but acked.
  srv.sockets[0]!.destroy();
  const second = await answerAuth(srv, 1, { resume: true, pending: 2 });
  srv.sockets[1]!.write(frame({ type: 'data', id: 'm2', seq: 7, payload: 2 }) + frame({ type: 'data', id: 'm3', seq: 9, payload: 3 }));
  assert.deepEqual((await second.next('ack')).payload, { seq: 9 });
  srv.sockets[1]!.write(frame({ type: 'data', id: 'm4', seq: 12, payload: 4 }));
  assert.deepEqual((await data.next(4))[3]!.payload, 4, 'm2 and m3 were not handed on twice');
  assert.equal(data.items.length, 4);
  await c.disconnect();

  // manualAck: nothing is acked until ack(seq).
  const m = new Client({ port: srv.port, token: 'tok', manualAck: true, resume: true });
  const mdata = collect<Message>(m, 'data');
  const mconnecting = m.connect();
  const third = await answerAuth(srv, 2, { resume: true, pending: 1 });
  await mconnecting;
  srv.sockets[2]!.write(frame({ type: 'data', id: 'x', seq: 20, payload: 'x' }));
  await mdata.next(1);
  m.ack(20);
  const next = await third.next();
  assert.deepEqual([next.type, next.payload], ['ack', { seq: 20 }], 'the first frame after the message is the manual ack');
  assert.throws(() => m.ack(0), RangeError);
  await m.disconnect();

  // resume: false asks for no mailbox.
  const plain = new Client({ port: srv.port, token: 'tok', resume: false });
  const pconnecting = plain.connect();
  const fourth = await answerAuth(srv, 3, {});
  assert.deepEqual(fourth.auth.payload, { token: 'tok' });
  await pconnecting;
  assert.deepEqual(plain.mailbox, { resumed: false, pending: 0 });
  await plain.disconnect();
  await srv.close();
});

test('servers: a dial that fails moves on to the next server; a lost connection fails over to the other', async () => {
  const down = await FakeServer.start();
  const downPort = down.port;
  await down.close(); // nothing listens there now
  const a = await FakeServer.start();
  const b = await FakeServer.start();
  const c = new Client({ servers: [`127.0.0.1:${downPort}`, `127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`], backoffMin: 10, backoffMax: 20 });
  await c.connect();
  await a.accept(0); // the first server refused
  a.sockets[0]!.destroy();
  await b.accept(0); // after a, the next one
  assert.equal(a.sockets.length, 1);
  await c.disconnect();
  await a.close();
  await b.close();
  assert.throws(() => new Client({ servers: ['nohost'] }), RangeError);
  const none = new Client({ servers: [`127.0.0.1:${downPort}`, `127.0.0.1:${downPort}`], reconnect: false });
  await assert.rejects(none.connect(), (e: SamgwError) => e.code === 'connect_failed' && e.message.split('ECONNREFUSED').length === 3);
});

/** bytesUntil resolves with what socket has received once has(bytes) is true of it. */
function bytesUntil(socket: import('node:net').Socket, has: (b: Buffer) => boolean): Promise<Buffer> {
  let got = Buffer.alloc(0);
  return withDeadline(new Promise<Buffer>((resolve) => {
    const on = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (has(got)) {
        socket.off('data', on);
        resolve(got);
      }
    };
    socket.on('data', on);
  }), 10_000, 'bytes from the client');
}

test('compress: raw DEFLATE after the auth frame, and after the auth reply that agrees', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port, token: 't', resume: false, compress: true, reconnect: false });
  const data = collect<Message>(c, 'data');
  const connecting = c.connect();
  const s = await srv.accept(0);
  const first = await bytesUntil(s, (b) => b.includes(0x0a));
  const auth = JSON.parse(first.subarray(0, first.indexOf(0x0a)).toString()) as { id: string; payload: unknown };
  assert.deepEqual(auth.payload, { token: 't', compress: 'deflate' });
  // The agreeing reply and, in the same write, a compressed push.
  const push = zlib.deflateRawSync(frame({ type: 'data', payload: 'squeezed '.repeat(50) }), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  s.write(Buffer.concat([Buffer.from(frame({ type: 'auth', id: auth.id, payload: { ok: true, identity: 'a', compress: 'deflate' } })), push]));
  await connecting;
  assert.deepEqual((await data.next(1)).map((m) => m.payload), ['squeezed '.repeat(50)]);
  // What the client sends now is one raw DEFLATE stream.
  const inflate = zlib.createInflateRaw();
  let plain = '';
  inflate.on('data', (d: Buffer) => (plain += d.toString()));
  let wire = 0;
  s.on('data', (d: Buffer) => {
    wire += d.length;
    inflate.write(d);
  });
  c.send({ n: 1, text: 'repeated '.repeat(100) });
  await withDeadline((async () => {
    while (!plain.includes('\n')) await once(inflate, 'data');
  })(), 10_000, 'the compressed frame');
  const sent = JSON.parse(plain.slice(0, plain.indexOf('\n'))) as { payload: unknown };
  assert.deepEqual(sent.payload, { n: 1, text: 'repeated '.repeat(100) });
  assert.ok(wire * 5 < plain.length, `${plain.length} bytes took ${wire} on the wire`);
  s.destroy();
  await c.disconnect();
  await srv.close();
});

test('compress: a reply that does not agree fails connect', async () => {
  const srv = await FakeServer.start();
  const c = new Client({ port: srv.port, compress: true, reconnect: false });
  const connecting = c.connect();
  const s = await srv.accept(0);
  const first = await bytesUntil(s, (b) => b.includes(0x0a));
  const auth = JSON.parse(first.subarray(0, first.indexOf(0x0a)).toString()) as { id: string; payload: unknown };
  assert.deepEqual(auth.payload, { compress: 'deflate' });
  s.write(frame({ type: 'auth', id: auth.id, payload: { ok: true, identity: '' } }));
  await assert.rejects(connecting, /did not agree to compression/);
  await srv.close();
});
