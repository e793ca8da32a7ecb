// Runs internal/conformance/steps.json with the TypeScript client against
// real samgw serve processes, as the Go and Python suites do.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Client, SamgwError, type ClientOptions, type Message } from '../src/index.js';
import { Harness, repoRoot, withDeadline } from './harness.js';

interface Step {
  step: string;
  server?: string;
  token?: string;
  cert?: string;
  sign?: string;
  route?: string;
  payload?: unknown;
  payloads?: unknown[];
  expect_reply?: unknown;
  expect_error?: string;
  reason?: string;
  to?: string;
  id?: string;
  manual_ack?: boolean;
  compress?: boolean;
  expect_pending?: number;
  ids?: string[];
  worker?: boolean;
  attempts?: Record<string, number>;
  topic?: string;
  recovered?: boolean;
}

const steps = (JSON.parse(readFileSync(path.join(repoRoot, 'internal/conformance/steps.json'), 'utf8')) as { steps: Step[] }).steps;

let harness: Harness;
before(async () => {
  harness = await Harness.start();
});
after(async () => {
  await harness?.stop();
});

/** Runner keeps the state the steps share: the client, its inbox, its connection. */
class Runner {
  client?: Client;
  private inbox: Message[] = [];
  private up = false;
  private lastSeq = 0;
  private attempts = new Map<string, number>(); // jobs handled, by id
  private jobsDone = new Set<string>();
  private offsets = new Map<string, number>(); // the last offset seen, by topic
  private renewals = new Map<string, boolean[]>(); // recovered, of each renewal answered, by topic
  private changed?: () => void;

  private async until(cond: () => boolean, what: string): Promise<void> {
    await withDeadline((async () => {
      while (!cond()) await new Promise<void>((resolve) => (this.changed = resolve));
    })(), 15_000, `waiting for ${what}`);
  }

  private notify(): void {
    this.changed?.();
  }

  async run(s: Step): Promise<void> {
    switch (s.step) {
      case 'connect':
        return this.connect(s);
      case 'request':
        return this.request(s);
      case 'send':
        this.client!.send(s.payload, { route: s.route });
        return;
      case 'ping': {
        const rtt = await this.client!.ping();
        assert.ok(rtt >= 0 && rtt < 15_000, `rtt ${rtt}`);
        return;
      }
      case 'expect_data': {
        const want = s.payloads!;
        await this.until(() => this.inbox.length >= want.length, `${want.length} data frames`);
        const got = this.inbox.splice(0, want.length);
        got.forEach((m, i) => {
          if (s.route) assert.equal(m.route, s.route);
          assert.deepEqual(m.payload, want[i], `data frame ${i + 1}`);
          if (s.topic) {
            const last = this.offsets.get(s.topic) ?? 0;
            assert.ok(m.topic === s.topic && typeof m.offset === 'number' && m.offset > last, `data frame ${i + 1}: topic ${m.topic} offset ${m.offset}, want ${s.topic} after ${last}`);
            this.offsets.set(s.topic, m.offset!);
          }
          if (s.ids) {
            assert.equal(m.id, s.ids[i], `data frame ${i + 1}: id`);
            assert.ok(typeof m.seq === 'number' && m.seq > 0, `data frame ${i + 1}: seq ${m.seq}`);
          }
        });
        return;
      }
      case 'deliver': {
        const p = this.client!.request({ to: s.to, id: s.id, body: s.payload }, { route: 'leave' });
        if (s.expect_error) {
          await assert.rejects(p, (err: SamgwError) => err.code === s.expect_error);
          return;
        }
        const seq = (await p).payload;
        assert.ok(Number.isSafeInteger(seq) && (seq as number) > 0, `deliver answered ${JSON.stringify(seq)}, want a seq`);
        return;
      }
      case 'subscribe':
        await this.client!.subscribe(s.topic!);
        return;
      case 'expect_resubscribed': {
        await this.until(() => (this.renewals.get(s.topic!) ?? []).length > 0, `the renewal of ${s.topic}`);
        const got = this.renewals.get(s.topic!)!.shift();
        if (s.recovered !== undefined) assert.equal(got, s.recovered, `renewal of ${s.topic}: recovered`);
        return;
      }
      case 'ack_last':
        this.client!.ack(this.lastSeq);
        return;
      case 'expect_jobs': {
        await this.until(() => s.ids!.every((id) => this.jobsDone.has(id)), `jobs ${s.ids!.join(', ')}`);
        for (const [id, n] of Object.entries(s.attempts ?? {})) assert.equal(this.attempts.get(id), n, `job ${id}: times handled`);
        return;
      }
      case 'stop_server':
        return harness.command({ stop: s.server! });
      case 'start_server':
        return harness.command({ start: s.server! });
      case 'wait_disconnected':
        return this.until(() => !this.up, 'the client to notice the loss');
      case 'wait_connected':
        return this.until(() => this.up, 'the client to reconnect');
      case 'disconnect':
        await this.client!.disconnect(s.reason);
        assert.equal(this.client!.isConnected(), false);
        this.client = undefined;
        return;
    }
    throw new Error(`unknown step ${s.step}`);
  }

  private async connect(s: Step): Promise<void> {
    const fx = harness.fixture;
    this.inbox = [];
    this.up = false;
    const opts: ClientOptions = { ...harness.addr(s.server!), backoffMin: 50, backoffMax: 500 };
    if (s.token) opts.token = fx.tokens[s.token];
    if (s.cert) {
      const c = fx.certs[s.cert]!;
      opts.tls = { ca: readFileSync(fx.ca), cert: readFileSync(c.cert), key: readFileSync(c.key) };
    }
    if (s.sign) opts.signKey = readFileSync(fx.sign_keys[s.sign]!);
    if (s.manual_ack) opts.manualAck = true;
    if (s.compress) opts.compress = true;
    const c = new Client(opts);
    this.attempts.clear();
    this.jobsDone.clear();
    if (s.worker) {
      c.onJob((job) => {
        const n = (this.attempts.get(job.id) ?? 0) + 1;
        this.attempts.set(job.id, n);
        if ((job.payload as { fail_once?: boolean }).fail_once && n === 1) throw new Error('fail_once');
        this.jobsDone.add(job.id);
        this.notify();
      });
      c.on('error', () => {}); // the failed job is reported here
    }
    this.offsets.clear();
    this.renewals.clear();
    c.on('resubscribed', (topic, reply, err) => {
      const list = this.renewals.get(topic) ?? [];
      list.push(!err && (reply?.payload as { recovered?: boolean }).recovered === true);
      this.renewals.set(topic, list);
      this.notify();
    });
    c.on('data', (m) => {
      this.inbox.push(m);
      if (m.seq) this.lastSeq = m.seq;
      this.notify();
    });
    c.on('connect', () => {
      this.up = true;
      this.notify();
    });
    c.on('disconnect', () => {
      this.up = false;
      this.notify();
    });
    if (s.expect_error) {
      await assert.rejects(c.connect(), (err: SamgwError) => err.code === s.expect_error);
      return;
    }
    await c.connect();
    this.client = c;
    if (s.expect_pending !== undefined) assert.deepEqual(c.mailbox, { resumed: true, pending: s.expect_pending });
  }

  private async request(s: Step): Promise<void> {
    const p = this.client!.request(s.payload, { route: s.route });
    if (s.expect_error) {
      await assert.rejects(p, (err: SamgwError) => {
        assert.equal(err.code, s.expect_error);
        return true;
      });
      return;
    }
    assert.deepEqual((await p).payload, s.expect_reply);
  }
}

test('conformance: steps.json', async () => {
  const r = new Runner();
  try {
    for (const [i, s] of steps.entries()) {
      try {
        await r.run(s);
      } catch (err) {
        throw new Error(`step ${i + 1} ${s.step}: ${(err as Error).message}`, { cause: err });
      }
    }
  } finally {
    await r.client?.disconnect('test over');
  }
});

test('examples/demo.ts against samgw: the prototype demo, at a hundredth of the time', async () => {
  const { execFile } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const demo = fileURLToPath(new URL('../examples/demo.js', import.meta.url));
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [demo], {
      env: { ...process.env, SAMGW_ADDR: harness.fixture.servers.plain, SAMGW_TOKEN: harness.fixture.tokens['agent-a'], SAMGW_TIME_SCALE: '0.01' },
      timeout: 20_000,
    }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
  // Node and Bun print objects differently (one line or several, ' or "): compare the content.
  const q = `['"]`;
  const want = new RegExp([
    '^Connected to server',
    `Data received: \\{\\s*name: ${q}John${q},\\s*age: 30,\\s*email: ${q}john@example\\.com${q},?\\s*\\}`,
    'Pong received',
    `Data received: \\{\\s*message: ${q}Hello again!${q},\\s*timestamp: \\d+,?\\s*\\}`,
    'Disconnecting after 30 seconds\\.\\.\\.',
    'Disconnected from server$',
  ].join('\n'));
  assert.match(out.trim(), want);
});
