// The browser build in a real headless Chromium: a page served from
// 127.0.0.1 imports dist/src/browser.js as an ES module (nothing else: no
// Node built-in, no bundler), connects to samgw's WebSocket, authenticates
// with a token, sends, receives a push and shows it. The status page is
// then checked in the same browser: it renders, and it lists that
// WebSocket connection. Chromium: SAMGW_CHROMIUM, else /usr/bin/chromium
// (.ci/run installs Debian's).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser } from 'puppeteer-core';
import { Harness } from './harness.js';

const lib = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src');

const page = `<!doctype html>
<meta charset="utf-8"><title>samgw in a browser</title>
<pre id="out"></pre>
<script type="module">
import { Client } from '/lib/browser.js';
const out = document.getElementById('out');
const show = (line) => { out.textContent += line + '\\n'; };
const params = new URLSearchParams(location.hash.slice(1)); // the token never reaches a server in a URL
const c = new Client({ url: params.get('ws'), token: params.get('token'), reconnect: false });
window.samgw = c;
c.on('data', (m) => { if (m.route === 'push') show('push ' + JSON.stringify(m.payload)); });
try {
  await c.connect();
  show('connected');
  const r = await c.request({ from: 'browser' });
  show('reply ' + JSON.stringify(r.payload));
  const p = await c.request({ count: 1 }, { route: 'push' });
  show('pushed ' + JSON.stringify(p.payload));
} catch (e) {
  show('error ' + e.code + ' ' + e.message);
}
</script>`;

let harness: Harness;
let site: http.Server;
let browser: Browser;
let profile: string;
const served: string[] = [];

before(async () => {
  const chromium = process.env.SAMGW_CHROMIUM ?? '/usr/bin/chromium';
  assert.ok(existsSync(chromium), `no Chromium at ${chromium}: install Debian's chromium or set SAMGW_CHROMIUM`);
  harness = await Harness.start();
  site = http.createServer(async (req, res) => {
    served.push(req.url ?? '');
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
      return;
    }
    const m = /^\/lib\/([a-z]+\.js)$/.exec(req.url ?? '');
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    try {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(await readFile(path.join(lib, m[1]!)));
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  profile = mkdtempSync(path.join(tmpdir(), 'samgw-chromium-'));
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    userDataDir: profile,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
});

after(async () => {
  await browser?.close();
  site?.close();
  await harness?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('the browser build connects over WebSocket, authenticates, sends and shows a push; the status page lists it', async () => {
  const tab = await browser.newPage();
  const problems: string[] = [];
  tab.on('pageerror', (err) => problems.push(`page error: ${(err as Error).message}`));
  tab.on('requestfailed', (req) => problems.push(`request failed: ${req.url()}`));
  const { port } = site.address() as AddressInfo;
  const ws = `ws://${harness.fixture.http}/v1/ws`;
  await tab.goto(`http://127.0.0.1:${port}/#ws=${encodeURIComponent(ws)}&token=${encodeURIComponent(harness.fixture.tokens['agent-a']!)}`);
  await tab.waitForFunction(() => /pushed|error/.test(document.getElementById('out')!.textContent ?? ''), { timeout: 30_000 });
  const shown = await tab.$eval('#out', (el) => el.textContent);
  assert.equal(shown, 'connected\nreply {"from":"browser"}\npush {"n":1}\npushed {"pushed":1}\n');
  assert.deepEqual(problems, []);
  // Only the page and the browser build's own modules were loaded (and the
  // browser's own favicon request).
  for (const url of served) assert.match(url, /^\/(lib\/[a-z]+\.js|favicon\.ico)?$/);
  assert.ok(served.includes('/lib/browser.js') && served.includes('/lib/core.js'), `served ${served.join(' ')}`);

  // The status page, in the same browser, while that connection is open.
  const status = await browser.newPage();
  const resp = await status.goto(`http://${harness.fixture.metrics}/status`);
  assert.equal(resp?.status(), 200);
  const text = await status.$eval('body', (el) => el.innerText);
  assert.match(text, /agent-a/);
  assert.match(text, /\bws\b/);
  assert.equal(await status.$$eval('script', (s) => s.length), 0, 'the status page runs no script');

  await tab.evaluate(() => (window as unknown as { samgw: { disconnect(r: string): Promise<void> } }).samgw.disconnect('done'));
  await status.close();
  await tab.close();
});
