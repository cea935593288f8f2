// Brume's web UI in a real browser: Debian's Chromium, driven by playwright-core,
// against a real `brume serve` (BRUME_BIN, default target/debug/brume) on loopback with
// a fresh configuration. One run walks what a new owner does: first-run password with
// the setup code brume printed (a wrong code is refused), log out and in, create a synthetic stream, an RTMP one and an RTSP camera with viewer credentials, see the live thumbnail,
// watch the stream in the page (the video advances and paints a real picture), make a
// mistake in the editor and read the error next to the field, export the
// configuration, try a bad import, record the stream and play the file in the page, set
// up a simulated GPIO button and LED and triggers (a webhook to a loopback receiver, the
// button toggling the recording), press the button from the page, push a stream to the
// RTMP ingest, and check the phone layout.
//
// Screenshots go to tests/out/. The last line is "N passed, M failed"; the exit code
// is non-zero when anything failed.

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const BIN = process.env.BRUME_BIN || path.join(repo, 'target/debug/brume');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT = path.join(repo, 'tests/out');
const PASSWORD = 'browser-admin-pw';
const LIMIT_MS = 360_000;

const results = [];
const consoleErrors = [];
let server = null;
let context = null;
let tmp = null;
let userDir = null;
let page = null;
let hooks = null;
let setupCode = null;
let studioKey = 'studio-key-1';
const prefix = `brumebrowser${process.pid}`;

function log(msg) {
  process.stdout.write(`${msg}\n`);
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return true;
  } catch (e) {
    results.push({ name, ok: false, error: e });
    log(`FAIL ${name}: ${e && e.stack ? e.stack.split('\n').slice(0, 4).join('\n     ') : e}`);
    if (page) {
      const text = await page.evaluate(() => document.querySelector('main')?.innerText || '').catch((x) => `(no page: ${x.message})`);
      log(`     page ${page.url()} shows: ${text.replace(/\s+/g, ' ').slice(0, 300)}`);
    }
    return false;
  }
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

/** JSON text with every object's keys sorted: equal values give equal text. */
function canon(v) {
  return JSON.stringify(v, (k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, timeoutMs, f) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(200);
  }
}

async function startServer() {
  check(fs.existsSync(BIN), `${BIN} is missing: build it (cargo build -p brume) or set BRUME_BIN`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'brume-browser-'));
  const config = path.join(tmp, 'brume.json');
  fs.writeFileSync(config, '{"streams":{}}\n');
  const httpPort = await freePort();
  const rtmpPort = await freePort();
  // The RTSP port on a free port too: 8554 may be taken on a test machine.
  const rtspPort = await freePort();
  const env = { ...process.env, BRUME_SHM_PREFIX: prefix };
  for (const k of ['BRUME_ADMIN_PASSWORD', 'BRUME_CONFIG', 'BRUME_RUN_DIR', 'BRUME_SHM_DIR']) delete env[k];
  const logFile = path.join(tmp, 'serve.log');
  const out = fs.openSync(logFile, 'a');
  const child = spawn(BIN, ['serve', '--config', config, '--listen', `127.0.0.1:${httpPort}`, '--rtmp', `127.0.0.1:${rtmpPort}`, '--rtsp', `127.0.0.1:${rtspPort}`], {
    env,
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  server = { child, httpPort, rtmpPort, rtspPort, logFile, base: `http://127.0.0.1:${httpPort}`, exited: null };
  child.on('exit', (code, sig) => {
    server.exited = sig || code;
  });
  await waitFor('the HTTP port to answer', 30_000, async () => {
    check(server.exited === null, `brume serve exited (${server.exited}):\n${serverLog()}`);
    const r = await fetch(`${server.base}/api/v1/setup`);
    return r.status === 200;
  });
}

function serverLog() {
  try {
    return fs.readFileSync(server.logFile, 'utf8');
  } catch (e) {
    return '';
  }
}

async function stopServer() {
  if (server && server.exited === null) {
    server.child.kill('SIGTERM');
    const end = Date.now() + 10_000;
    while (server.exited === null && Date.now() < end) await sleep(100);
    if (server.exited === null) {
      log('brume serve did not stop within 10 s of SIGTERM: killing it');
      server.child.kill('SIGKILL');
      await sleep(500);
    }
  }
  try {
    for (const f of fs.readdirSync('/dev/shm')) {
      if (f.startsWith(`${prefix}-`) || f.startsWith(`${prefix}.`)) fs.rmSync(path.join('/dev/shm', f), { force: true });
    }
  } catch (e) {
    // no /dev/shm: nothing to clean
  }
}

/** An API call from inside the page (with the page's session cookie). */
function apiInPage(page, method, p, body) {
  return page.evaluate(async ([method, p, body]) => {
    const r = await fetch(`/api/v1${p}`, { method, headers: body ? { 'Content-Type': 'application/json' } : {}, body });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  }, [method, p, body === undefined ? null : JSON.stringify(body)]);
}

/** A loopback webhook receiver: keeps every POSTed JSON body, answers 200. */
function startHooks() {
  const bodies = [];
  const srv = http.createServer((req, res) => {
    let data = '';
    req.on('data', (c) => (data += c));
    req.on('end', () => {
      try {
        bodies.push(JSON.parse(data));
      } catch (e) {
        bodies.push({ unparsed: data });
      }
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('ok');
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => {
    srv.unref();
    resolve({ bodies, url: `http://127.0.0.1:${srv.address().port}/hook`, close: () => srv.close() });
  }));
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  hooks = await startHooks();
  if (!(await step('brume serve starts without an admin password', async () => {
    await startServer();
    const log = serverLog();
    check(log.includes('to set the admin password with the setup code'), `serve did not say how to set the password:\n${log}`);
    setupCode = fs.readFileSync(path.join(tmp, 'run', 'setup-code'), 'utf8').trim();
    check(/^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$/.test(setupCode), `setup code: ${setupCode}`);
    check(log.includes(setupCode), 'the setup code is not in the output');
    check(!/Generated admin password/.test(log), 'serve generated a password');
  }))) return;

  userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'brume-chromium-'));
  context = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 },
    deviceScaleFactor: 1,
    acceptDownloads: true,
  });
  page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(20_000);
  page.on('console', (m) => {
    // Failed API calls (401 before login, 404 from the devices API that does not exist
    // yet) are expected; anything else (script errors, CSP refusals) is a defect.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.on('dialog', (d) => d.accept());
  const base = server.base;

  await step('first visit asks for the admin password and nothing else is reachable', async () => {
    await page.goto(`${base}/`);
    await page.waitForSelector('#setup-form');
    check(await page.locator('#nav').isHidden(), 'the navigation shows before the password is set');
    const r = await apiInPage(page, 'GET', '/streams');
    check(r.status === 401, `GET /api/v1/streams answered ${r.status} before setup`);
    const login = await apiInPage(page, 'POST', '/login', { password: 'anything-at-all' });
    check(login.status === 409, `login before setup answered ${login.status}`);
    const hint = await page.locator('#setup-code-hint').textContent();
    check(hint.includes('journalctl -u brume') && hint.includes('console'), `the page does not say where the code is: ${hint}`);
  });

  await step('a wrong setup code is refused at its field and sets nothing', async () => {
    await page.fill('#setup-code', 'AAAA-BBBB-CCCC');
    await page.fill('#setup-password', PASSWORD);
    await page.fill('#setup-repeat', PASSWORD);
    await page.click('#setup-form button[type=submit]');
    const err = page.locator('#setup-form [data-field=code] .field-error');
    await err.waitFor();
    check(/wrong setup code/i.test(await err.textContent()), `message: ${await err.textContent()}`);
    const r = await apiInPage(page, 'GET', '/setup');
    check(r.body.needs_password === true, 'a wrong code set the password');
    // Without a code, the page asks for it before calling the API.
    await page.fill('#setup-code', '');
    await page.click('#setup-form button[type=submit]');
    check(/setup code/.test(await page.locator('#setup-form [data-field=code] .field-error').textContent()), 'no message for a missing code');
  });

  await step('a short password is refused with a message', async () => {
    await page.fill('#setup-code', setupCode);
    await page.fill('#setup-password', 'short');
    await page.fill('#setup-repeat', 'short');
    await page.click('#setup-form button[type=submit]');
    const msg = await waitFor('the password message', 10_000, async () => {
      const t = await page.locator('#setup-form .field-error').first().textContent();
      return /8 characters/.test(t) && t;
    });
    check(/8 characters/.test(msg), `message: ${msg}`);
  });

  await step('setting the password with the setup code opens the dashboard', async () => {
    await page.fill('#setup-code', setupCode.toLowerCase());
    await page.fill('#setup-password', PASSWORD);
    await page.fill('#setup-repeat', PASSWORD);
    await page.click('#setup-form button[type=submit]');
    await page.waitForSelector('#streams .empty');
    check(await page.locator('#nav').isVisible(), 'no navigation after setup');
    const r = await apiInPage(page, 'GET', '/setup');
    check(r.body.needs_password === false, 'setup still needed');
    const again = await apiInPage(page, 'POST', '/setup', { password: 'another-password', code: setupCode });
    check(again.status === 409, `a second setup answered ${again.status}`);
    const onDisk = JSON.parse(fs.readFileSync(path.join(tmp, 'brume.json'), 'utf8'));
    check(/^\$argon2id\$/.test(onDisk.admin?.password_hash || ''), 'no argon2id hash in the config file');
    check(!fs.existsSync(path.join(tmp, 'run', 'setup-code')), 'the setup code outlived the first run');
  });

  await step('log out, then log in (a wrong password is refused)', async () => {
    await page.click('#logout');
    await page.waitForSelector('#login-form');
    await page.fill('#login-password', 'not-the-password');
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#login-form .field-error');
    check((await page.locator('#login-form .field-error').textContent()).includes('Wrong password'), 'no wrong-password message');
    await page.fill('#login-password', PASSWORD);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#streams');
  });

  await step('create a synthetic 320x180 stream; it goes live with a thumbnail', async () => {
    await page.click('#new-stream');
    await page.waitForSelector('#stream-form');
    check(await page.locator('input[name=source-type][value=testsrc]').isChecked(), 'synthetic is not the default source');
    await page.fill('#f-name', 'cam');
    await page.fill('#f-source-width', '320');
    await page.fill('#f-source-height', '180');
    await page.fill('#f-source-fps', '15');
    await page.fill('#f-source-bitrate_kbps', '300');
    await page.check('input[name=start][value=always]');
    await page.click('#save');
    await page.waitForSelector('.card[data-stream=cam]');
    await page.waitForSelector('.card[data-stream=cam] .state[data-state=live]', { timeout: 30_000 });
    await waitFor('the thumbnail', 20_000, () =>
      page.evaluate(() => {
        const img = document.querySelector('.card[data-stream=cam] .thumb img');
        return img && !img.hidden && img.complete && img.naturalWidth === 320;
      }));
  });

  await step('source picker: the detected devices and test camera, then a camera stream', async () => {
    await page.click('#new-stream');
    await page.waitForSelector('#stream-form');
    await page.fill('#f-name', 'desk');
    await page.check('input[name=source-type][value=camera]');
    const cams = await page.locator('#f-source-video-device option').evaluateAll((els) => els.map((e) => e.value));
    check(cams.includes('fake:camera'), `camera choices: ${JSON.stringify(cams)}`);
    const mics = await page.locator('#f-source-audio-device option').evaluateAll((els) => els.map((e) => e.value));
    check(mics.includes('fake:microphone'), `microphone choices: ${JSON.stringify(mics)}`);
    await page.selectOption('#f-source-video-device', 'fake:camera');
    await page.fill('#f-source-video-width', '320');
    await page.fill('#f-source-video-height', '180');
    await page.fill('#f-source-video-fps', '15');
    await page.check('input[name=start][value=demand]');
    await page.screenshot({ path: path.join(OUT, 'editor-camera.png'), fullPage: true });
    await page.click('#save');
    await page.waitForSelector('.card[data-stream=desk]');
    const r = await apiInPage(page, 'GET', '/streams/desk');
    const src = r.body.config.source;
    check(src.type === 'camera' && src.video.device === 'fake:camera' && src.video.width === 320 && !src.audio, `saved: ${JSON.stringify(src)}`);
    check(r.body.config.always_on === false, 'not on demand');
  });

  await step('RTMP source shows the publish URL and key, and the key once after saving', async () => {
    await page.click('#new-stream');
    await page.waitForSelector('#stream-form');
    await page.fill('#f-name', 'studio');
    await page.check('input[name=source-type][value=rtmp]');
    await page.fill('#f-source-key', 'studio-key-1');
    const urls = await page.locator('.publish input').evaluateAll((els) => els.map((e) => e.value));
    const want = `rtmp://127.0.0.1:${server.rtmpPort}/live/studio?key=studio-key-1`;
    check(urls.includes(want), `publish URLs ${JSON.stringify(urls)} lack ${want}`);
    check(urls.includes('studio?key=studio-key-1'), `no OBS stream key in ${JSON.stringify(urls)}`);
    await page.click('#save');
    await page.waitForSelector('#key-once');
    const once = await page.locator('#key-once input').evaluateAll((els) => els.map((e) => e.value));
    check(once.includes('studio-key-1') && once.includes(want), `the saved key is not shown once: ${JSON.stringify(once)}`);
    check((await page.locator('#key-once button', { hasText: 'Copy' }).count()) >= 2, 'no copy buttons');
    await page.click('#key-done');
    await page.waitForSelector('.card[data-stream=studio] .state[data-state=waiting]');
    const r = await apiInPage(page, 'GET', '/streams/studio');
    check(r.body.config.source.key === '…', `GET /streams/studio shows the key: ${JSON.stringify(r.body.config.source)}`);
    const all = await apiInPage(page, 'GET', '/streams');
    check(!JSON.stringify(all.body).includes('studio-key-1'), 'GET /streams shows the key');
    check((await page.locator('.card[data-stream=studio] .placeholder').textContent()).includes('Waiting for a publisher'), 'no placeholder');
  });

  await step('RTSP camera source with viewer credentials: passwords hidden after saving, kept by a save, the RTSP URL on the watch page', async () => {
    await page.click('#new-stream');
    await page.waitForSelector('#stream-form');
    await page.fill('#f-name', 'door');
    await page.check('input[name=source-type][value=rtsp]');
    await page.fill('#f-source-url', 'rtsp://admin:cam-pw-1@127.0.0.1:9/stream1');
    await page.selectOption('#f-source-transport', 'tcp');
    await page.fill('#f-read-user', 'nvr');
    await page.fill('#f-read-password', 'viewer-pw-1');
    await page.check('input[name=start][value=demand]');
    await page.click('#save');
    await page.waitForSelector('.card[data-stream=door]');
    const r = await apiInPage(page, 'GET', '/streams/door');
    const cfg = r.body.config;
    check(cfg.source.type === 'rtsp' && cfg.source.transport === 'tcp' && cfg.source.url === 'rtsp://admin:…@127.0.0.1:9/stream1', `source: ${JSON.stringify(cfg.source)}`);
    check(cfg.read && cfg.read.user === 'nvr' && cfg.read.password === '…', `read: ${JSON.stringify(cfg.read)}`);
    const disk = () => JSON.parse(fs.readFileSync(path.join(tmp, 'brume.json'), 'utf8')).streams.door;
    const before = disk();
    check(before.source.url.includes('cam-pw-1') && before.read.ha1 && !JSON.stringify(before).includes('viewer-pw-1'), `on disk: ${JSON.stringify(before)}`);
    // A save from the editor sends the hidden passwords back: both are kept.
    await page.goto(`${base}/#/edit/door`);
    await page.waitForSelector('#stream-form');
    check((await page.inputValue('#f-source-url')) === 'rtsp://admin:…@127.0.0.1:9/stream1', 'the editor shows the camera password');
    await page.click('#save');
    await page.waitForSelector('#streams');
    check(JSON.stringify(disk()) === JSON.stringify(before), `a save changed the secrets: ${JSON.stringify(disk())}`);
    await page.goto(`${base}/#/watch/door`);
    await page.waitForSelector('#urls input');
    const urls = await page.locator('#urls input').evaluateAll((els) => els.map((e) => e.value));
    check(urls.includes(`rtsp://nvr:PASSWORD@127.0.0.1:${server.rtspPort}/door`), `watch page URLs: ${JSON.stringify(urls)}`);
    await page.goto(`${base}/#/`);
    await page.waitForSelector('#streams');
  });

  await step('dashboard shows the board figures (screenshot)', async () => {
    for (const t of ['cpu', 'memory', 'temperature', 'disk', 'uptime']) {
      await page.waitForSelector(`.tile[data-tile=${t}] .tile-value`);
    }
    await waitFor('a bitrate for cam', 10_000, async () =>
      /^[1-9][\d.]* (kbit|Mbit)\/s$/.test(await page.locator('.card[data-stream=cam] [data-stat=bitrate] dd').textContent()));
    await page.screenshot({ path: path.join(OUT, 'dashboard.png') });
  });

  await step('an invalid width shows the API error next to the field and changes nothing', async () => {
    await page.goto(`${base}/#/edit/cam`);
    await page.waitForSelector('#stream-form');
    await page.fill('#f-source-width', '13');
    await page.click('#save');
    const err = page.locator('[data-field="source.width"] .field-error');
    await err.waitFor();
    check(/even/.test(await err.textContent()), `error text: ${await err.textContent()}`);
    check(new URL(page.url()).hash === '#/edit/cam', 'the editor closed on a refused save');
    await page.screenshot({ path: path.join(OUT, 'editor.png'), fullPage: true });
    const r = await apiInPage(page, 'GET', '/streams/cam');
    check(r.body.config.source.width === 320, `width changed to ${r.body.config.source.width}`);
    const onDisk = JSON.parse(fs.readFileSync(path.join(tmp, 'brume.json'), 'utf8'));
    check(onDisk.streams.cam.source.width === 320, 'the config file changed');
  });

  await step('the player plays the stream in the page: time advances, a picture is painted', async () => {
    await page.goto(`${base}/#/watch/cam`);
    await page.waitForSelector('#player');
    await waitFor('the video to start', 30_000, () =>
      page.evaluate(() => {
        const v = document.getElementById('player');
        return v.readyState >= 2 && v.currentTime > 0 && !v.paused;
      }));
    const t0 = await page.evaluate(() => document.getElementById('player').currentTime);
    await sleep(3000);
    const t1 = await page.evaluate(() => document.getElementById('player').currentTime);
    check(t1 - t0 > 1.5, `currentTime went from ${t0} to ${t1} in 3 s`);
    const pic = await page.evaluate(() => {
      const v = document.getElementById('player');
      const c = document.createElement('canvas');
      c.width = 160;
      c.height = 90;
      const g = c.getContext('2d');
      g.drawImage(v, 0, 0, c.width, c.height);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      let sum = 0;
      let sq = 0;
      const colours = new Set();
      for (let i = 0; i < d.length; i += 4) {
        const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
        sum += y;
        sq += y * y;
        colours.add((d[i] >> 4) * 256 + (d[i + 1] >> 4) * 16 + (d[i + 2] >> 4));
      }
      const n = d.length / 4;
      return { sd: Math.sqrt(sq / n - (sum / n) ** 2), colours: colours.size, w: v.videoWidth, h: v.videoHeight };
    });
    check(pic.w === 320 && pic.h === 180, `video is ${pic.w}x${pic.h}`);
    check(pic.sd > 10 && pic.colours > 8, `the painted frame looks blank: ${JSON.stringify(pic)}`);
    const status = await page.locator('#player-status').textContent();
    check(status.startsWith('Live'), `player status: ${status}`);
    const urls = await page.locator('#urls input').evaluateAll((els) => els.map((e) => e.value));
    for (const suffix of ['/hls/cam/index.m3u8', '/cam.mp4', '/cam.ts', '/cam.jpg', '/cam.mjpg']) {
      check(urls.some((u) => u === `${base}${suffix}`), `no ${suffix} in ${JSON.stringify(urls)}`);
    }
    await page.screenshot({ path: path.join(OUT, 'player.png') });
  });

  await step('system page: logs, restart, export of the configuration', async () => {
    await page.goto(`${base}/#/system`);
    await waitFor('log lines', 10_000, async () => ((await page.locator('#logs').textContent()) || '').includes('controller'));
    check((await page.locator('#version').textContent()).startsWith('Brume '), 'no version');
    const before = (await apiInPage(page, 'GET', '/streams/cam')).body.status.input_pid;
    await page.click('.restart-row[data-stream=cam] button');
    await waitFor('a new input process for cam', 15_000, async () => {
      const s = (await apiInPage(page, 'GET', '/streams/cam')).body.status;
      return s.state === 'live' && s.input_pid && s.input_pid !== before;
    });
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    const file = path.join(OUT, 'exported-config.json');
    await download.saveAs(file);
    const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
    check(cfg.streams.cam.source.width === 320 && cfg.streams.studio.source.type === 'rtmp', `exported: ${JSON.stringify(cfg)}`);
    check(!('admin' in cfg) && !JSON.stringify(cfg).includes('argon2'), 'the export carries the password hash');
    check(cfg.streams.studio.source.key === '…' && !JSON.stringify(cfg).includes(studioKey), 'the export carries a publish key');
  });

  await step('a bad import is refused with the field, and changes nothing', async () => {
    const bad = JSON.parse(fs.readFileSync(path.join(OUT, 'exported-config.json'), 'utf8'));
    bad.streams.cam.source.width = 13;
    await page.setInputFiles('#import-file', { name: 'bad.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(bad)) });
    await waitFor('the import message', 10_000, async () => (await page.locator('#config-message').textContent()).includes('Nothing changed'));
    const msg = await page.locator('#config-message').textContent();
    check(msg.includes('streams.cam.source.width'), `message: ${msg}`);
    const r = await apiInPage(page, 'GET', '/config');
    check(r.body.streams.cam.source.width === 320, 'the configuration changed');
  });

  await step('importing the export keeps the hidden publish keys', async () => {
    const file = path.join(OUT, 'exported-config.json');
    await page.setInputFiles('#import-file', file);
    await waitFor('the import message', 10_000, async () => (await page.locator('#config-message').textContent()).startsWith('Imported'));
    const onDisk = JSON.parse(fs.readFileSync(path.join(tmp, 'brume.json'), 'utf8'));
    check(onDisk.streams.studio.source.key === studioKey, `the import changed the key to ${onDisk.streams.studio.source.key}`);
  });

  await step('an upload that is not a brume binary is refused on the system page, and changes nothing', async () => {
    await page.goto(`${base}/#/system`);
    await page.waitForSelector('#update-file');
    const before = (await apiInPage(page, 'GET', '/system')).body;
    check('update' in before, 'GET /system has no update field');
    check(await page.locator('#update-rollback').isHidden(), 'a rollback is offered with no previous version');
    await page.setInputFiles('#update-file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a binary\n') });
    await page.click('#update-start');
    await waitFor('the refusal', 15_000, async () => (await page.locator('#update-message').textContent()).includes('Nothing changed'));
    const msg = await page.locator('#update-message').textContent();
    check(msg.includes('not an executable (no ELF header)'), `message: ${msg}`);
    const after = (await apiInPage(page, 'GET', '/system')).body;
    check(after.version === before.version && canon(after.update) === canon(before.update), `the update state changed: ${canon(after.update)}`);
    check(!fs.existsSync(path.join(tmp, 'run', 'update.request')), 'an update was requested');
    const left = fs.existsSync(path.join(tmp, 'updates')) ? fs.readdirSync(path.join(tmp, 'updates')) : [];
    check(left.length === 0, `files left in updates/: ${left}`);
    await page.locator('.update').screenshot({ path: path.join(OUT, 'update-refused.png') });
  });

  await step('the editor hides the key of a saved stream and shows a new one once (copy button)', async () => {
    await page.goto(`${base}/#/edit/studio`);
    await page.waitForSelector('#stream-form');
    check((await page.locator('#key-hidden').textContent()) === '••••', 'the key is not hidden');
    const before = await page.locator('.publish input').evaluateAll((els) => els.map((e) => e.value));
    check(before.every((u) => !u.includes(studioKey)) && before.some((u) => u.includes('key=••••')), `publish URLs: ${JSON.stringify(before)}`);
    await page.click('#new-key');
    await waitFor('the new key', 10_000, async () => (await page.locator('#key-message').textContent()).includes('New key made'));
    const onDisk = JSON.parse(fs.readFileSync(path.join(tmp, 'brume.json'), 'utf8'));
    const fresh = onDisk.streams.studio.source.key;
    check(fresh && fresh !== studioKey, 'no new key on disk');
    const after = await page.locator('.publish input').evaluateAll((els) => els.map((e) => e.value));
    check(after.includes(fresh) && after.includes(`rtmp://127.0.0.1:${server.rtmpPort}/live/studio?key=${fresh}`), `the new key is not shown: ${JSON.stringify(after)}`);
    studioKey = fresh;
    await page.locator('.publish .copy', { hasText: 'Stream key (shown once)' }).locator('button').click();
    // Saving the form keeps the key it never saw.
    await page.click('#save');
    await page.waitForSelector('#streams');
    const saved = JSON.parse(fs.readFileSync(path.join(tmp, 'brume.json'), 'utf8'));
    check(saved.streams.studio.source.key === fresh, 'saving the editor changed the key');
    await page.goto(`${base}/#/watch/studio`);
    await page.waitForSelector('#urls input');
    const urls = await page.locator('#urls input').evaluateAll((els) => els.map((e) => e.value));
    check(urls.some((u) => u.endsWith('/live/studio?key=••••')) && !urls.some((u) => u.includes(fresh)), `watch page URLs: ${JSON.stringify(urls)}`);
  });

  await step('record cam from the Recordings page, play the file in the page, delete it (screenshot)', async () => {
    await page.goto(`${base}/#/recordings`);
    const row = page.locator('.rec-row[data-stream=cam]');
    await row.waitFor();
    check((await row.locator('button').textContent()) === 'Start recording', 'no Start button for cam');
    await row.locator('button').click();
    await page.waitForSelector('.rec-row[data-stream=cam][data-active=true]', { timeout: 10_000 });
    await waitFor('the live state with its start time', 10_000, async () => /^Recording since /.test(await row.locator('.rec-state').textContent()));
    const file = await waitFor('the recording file', 20_000, async () => (await apiInPage(page, 'GET', '/streams/cam')).body.status.recording.file);
    check(file.startsWith('cam/') && file.endsWith('.mp4'), `file ${file}`);
    await sleep(4000);
    await row.locator('button').click();
    await page.waitForSelector('.rec-row[data-stream=cam][data-active=false]', { timeout: 20_000 });
    check((await apiInPage(page, 'GET', '/streams/cam')).body.status.recording.active === false, 'still recording after Stop');
    const item = page.locator(`.recording[data-path="${file}"]`);
    await item.waitFor({ timeout: 10_000 });
    const date = file.split('/')[1];
    check((await page.locator('.rec-stream[data-stream=cam] h4').allTextContents()).includes(date), `no ${date} group`);
    check(/\d+(\.\d)? (B|KiB|MiB)/.test(await item.textContent()), `no size in ${await item.textContent()}`);
    const href = await item.locator('a[download]').getAttribute('href');
    check(href === `/api/v1/recordings/${file}`, `download link ${href}`);
    await item.locator('button.play').click();
    await waitFor('the recording to play', 20_000, () =>
      page.evaluate(() => {
        const v = document.getElementById('rec-player');
        return v.readyState >= 2 && v.currentTime > 0.5;
      }));
    const t0 = await page.evaluate(() => document.getElementById('rec-player').currentTime);
    await sleep(1000);
    const v = await page.evaluate(() => {
      const e = document.getElementById('rec-player');
      return { t: e.currentTime, w: e.videoWidth, h: e.videoHeight, d: e.duration };
    });
    check(v.t > t0 || v.t >= v.d - 0.1, `currentTime stuck at ${t0} -> ${v.t} (duration ${v.d})`);
    check(v.w === 320 && v.h === 180, `recording is ${v.w}x${v.h}`);
    await page.screenshot({ path: path.join(OUT, 'recordings.png'), fullPage: true });
    await item.locator('button.danger').click(); // the confirm dialog is accepted
    await waitFor('the file to leave the list', 10_000, async () => (await page.locator(`.recording[data-path="${file}"]`).count()) === 0);
    const list = (await apiInPage(page, 'GET', '/recordings')).body.recordings;
    check(!list.some((r) => r.path === file), `still listed by the API: ${JSON.stringify(list)}`);
    check(await page.locator('#rec-player').isHidden(), 'the player still shows the deleted file');
  });

  await step('dashboard card: record button and REC badge', async () => {
    await page.goto(`${base}/#/`);
    const card = page.locator('.card[data-stream=cam]');
    await card.locator('.rec-toggle').waitFor();
    await card.locator('.rec-toggle').click();
    await page.waitForSelector('.card[data-stream=cam][data-recording=true] .rec-badge', { timeout: 10_000 });
    await waitFor('the recording file', 20_000, async () => (await apiInPage(page, 'GET', '/streams/cam')).body.status.recording.file);
    await card.locator('.rec-toggle').click();
    await page.waitForSelector('.card[data-stream=cam][data-recording=false]', { timeout: 20_000 });
    await waitFor('the badge to go', 5000, async () => (await card.locator('.rec-badge').count()) === 0);
    const st = (await apiInPage(page, 'GET', '/streams/cam')).body.status.recording;
    check(st.active === false && !st.error, `recording state ${JSON.stringify(st)}`);
  });

  await step('GPIO page: a simulated button and LED, the LED bound to cam recording (a line clash is refused at its field)', async () => {
    await page.goto(`${base}/#/gpio`);
    await page.waitForSelector('#gpio-form');
    check((await page.locator('#gpio-pins').textContent()).includes('not configured'), 'no "not configured" message');
    await page.selectOption('#g-backend', 'sim');
    const rows = page.locator('#g-pins .pin-edit');
    await page.click('#g-add-pin');
    await rows.nth(0).locator('input[id$=-name]').fill('button');
    await rows.nth(0).locator('input[id$=-line]').fill('17');
    await rows.nth(0).locator('select[id$=-direction]').selectOption('input');
    await rows.nth(0).locator('select[id$=-pull]').selectOption('up');
    await rows.nth(0).locator('input[id$=-active_low]').check();
    await page.click('#g-add-pin');
    await rows.nth(1).locator('input[id$=-name]').fill('led');
    await rows.nth(1).locator('select[id$=-direction]').selectOption('output');
    await rows.nth(1).locator('input[id$=-line]').fill('17');
    await page.click('#g-add-binding');
    const b = page.locator('#g-bindings .binding-edit').nth(0);
    await b.locator('select[id$=-pin]').selectOption('led');
    await b.locator('select[id$=-when]').selectOption('recording');
    await b.locator('select[id$=-stream]').selectOption('cam');
    await page.click('#g-save');
    const err = page.locator('[data-field="gpio.pins.led.line"] .field-error');
    await err.waitFor();
    check(/used by another pin/.test(await err.textContent()), `error text: ${await err.textContent()}`);
    check((await apiInPage(page, 'GET', '/gpio')).body.configured === false, 'a refused save configured GPIO');
    await rows.nth(1).locator('input[id$=-line]').fill('27');
    await page.click('#g-save');
    await page.waitForSelector('.pin-row[data-pin=button][data-active=false] button.press');
    await page.waitForSelector('.pin-row[data-pin=led][data-active=false] button.toggle');
    check((await page.locator('[data-fact=backend] dd').textContent()) === 'sim', 'backend not shown');
    const g = (await apiInPage(page, 'GET', '/gpio')).body.config;
    check(canon(g.pins.button) === canon({ line: 17, direction: 'input', pull: 'up', active_low: true, debounce_ms: 20, initial: false }), `button: ${JSON.stringify(g.pins.button)}`);
    check(g.pins.led.line === 27 && g.pins.led.direction === 'output', `led: ${JSON.stringify(g.pins.led)}`);
    check(canon(g.bindings) === canon([{ pin: 'led', when: 'recording', stream: 'cam', mode: 'on' }]), `bindings: ${JSON.stringify(g.bindings)}`);
  });

  await step('Triggers page: a bad webhook URL is refused at its field; a webhook and a button trigger are added', async () => {
    await page.goto(`${base}/#/triggers`);
    await page.waitForSelector('#trigger-list .empty');
    await page.click('#new-trigger');
    await page.waitForSelector('#trigger-form');
    await page.selectOption('#t-event-0', 'recording.started');
    await page.check('input[name=handler-type][value=webhook]');
    await page.fill('#t-url', 'ftp://x');
    await page.click('#t-save');
    const err = page.locator('[data-field="handler.url"] .field-error');
    await err.waitFor();
    check((await err.textContent()).length > 3, 'empty error');
    check((await apiInPage(page, 'GET', '/triggers')).body.triggers.length === 0, 'a refused trigger was saved');
    await page.fill('#t-url', hooks.url);
    await page.click('#t-save');
    await page.waitForSelector('.trigger[data-index="0"]');
    await page.waitForSelector('#trigger-form', { state: 'detached' });
    const first = await page.locator('.trigger[data-index="0"]').textContent();
    check(first.includes('recording.started') && first.includes(hooks.url), `listed as: ${first}`);

    await page.click('#new-trigger');
    await page.waitForSelector('#trigger-form');
    await page.selectOption('#t-event-0', 'gpio.edge');
    await page.fill('#t-match', 'pin=button active=true');
    await page.check('input[name=handler-type][value=action]');
    await page.selectOption('#t-action', 'toggle_recording');
    await page.selectOption('#t-action-stream', 'cam');
    await page.click('#t-save');
    await page.waitForSelector('.trigger[data-index="1"]');
    const second = await page.locator('.trigger[data-index="1"]').textContent();
    check(second.includes('gpio.edge') && second.includes('pin=button') && second.includes('active=true') && second.includes('of cam'), `listed as: ${second}`);
    const saved = (await apiInPage(page, 'GET', '/triggers')).body.triggers;
    check(canon(saved[1]) === canon({ event: 'gpio.edge', match: { active: true, pin: 'button' }, handler: { type: 'action', action: 'toggle_recording', stream: 'cam' } }), `saved: ${JSON.stringify(saved)}`);
    check(saved[0].handler.type === 'webhook' && saved[0].handler.url === hooks.url, `saved: ${JSON.stringify(saved[0])}`);
  });

  await step('Press the button on the GPIO page: cam records, the LED lights, the webhook runs (screenshots)', async () => {
    await page.goto(`${base}/#/gpio`);
    await page.click('.pin-row[data-pin=button] button.press');
    await page.waitForSelector('.pin-row[data-pin=led][data-active=true]', { timeout: 10_000 });
    check((await apiInPage(page, 'GET', '/streams/cam')).body.status.recording.active === true, 'cam is not recording');
    await page.screenshot({ path: path.join(OUT, 'gpio.png'), fullPage: true });
    await page.goto(`${base}/#/`);
    await page.waitForSelector('.card[data-stream=cam][data-recording=true] .rec-badge', { timeout: 10_000 });
    await waitFor('the webhook to receive recording.started', 15_000, () => hooks.bodies.some((e) => e.event === 'recording.started' && e.stream === 'cam'));
    await page.goto(`${base}/#/triggers`);
    await page.waitForSelector('#trigger-runs .run[data-event="gpio.edge"][data-result=ok]', { timeout: 10_000 });
    await page.waitForSelector('#trigger-runs .run[data-event="recording.started"][data-result=ok]', { timeout: 10_000 });
    await page.waitForSelector('#recent-events .event[data-event="gpio.edge"]');
    check((await page.locator('.trigger[data-index="1"] .trigger-last').textContent()).includes('ok'), 'no last run on the button trigger');
    await page.screenshot({ path: path.join(OUT, 'triggers.png'), fullPage: true });
    await page.goto(`${base}/#/gpio`);
    await page.click('.pin-row[data-pin=button] button.press');
    await page.waitForSelector('.pin-row[data-pin=led][data-active=false]', { timeout: 15_000 });
    await waitFor('the recording to stop', 15_000, async () => (await apiInPage(page, 'GET', '/streams/cam')).body.status.recording.active === false);
  });

  await step('GPIO page: an output turned on and off by hand', async () => {
    await page.click('.pin-row[data-pin=led] button.toggle');
    await page.waitForSelector('.pin-row[data-pin=led][data-active=true]');
    await page.click('.pin-row[data-pin=led] button.toggle');
    await page.waitForSelector('.pin-row[data-pin=led][data-active=false]');
  });

  await step('Pushes page: a bad URL is refused; a push of cam to studio goes live, stops, is deleted', async () => {
    await page.goto(`${base}/#/pushes`);
    await page.waitForSelector('#pushes .empty');
    await page.click('#new-push');
    await page.waitForSelector('#push-form');
    await page.fill('#p-name', 'relay');
    await page.selectOption('#p-stream', 'cam');
    await page.fill('#p-url', 'http://example.invalid/live/key');
    await page.click('#p-save');
    await page.locator('[data-field=url] .field-error').waitFor();
    await page.fill('#p-url', `rtmp://127.0.0.1:${server.rtmpPort}/live/studio?key=${studioKey}`);
    await page.click('#p-save');
    const row = page.locator('.push-row[data-push=relay]');
    await page.waitForSelector('.push-row[data-push=relay][data-state=stopped]');
    check(!(await row.textContent()).includes(studioKey), 'the stream key is shown');
    await row.locator('button.start-stop').click();
    await page.waitForSelector('.push-row[data-push=relay][data-state=pushing]', { timeout: 20_000 });
    await waitFor('studio to go live from the push', 20_000, async () => (await apiInPage(page, 'GET', '/streams/studio')).body.status.state === 'live');
    await page.screenshot({ path: path.join(OUT, 'pushes.png'), fullPage: true });
    await row.locator('button.start-stop').click();
    await page.waitForSelector('.push-row[data-push=relay][data-state=stopped][data-active=false]', { timeout: 15_000 });
    await row.locator('button.danger').click();
    await page.waitForSelector('#pushes .empty');
    check((await apiInPage(page, 'GET', '/pushes')).body.pushes.length === 0, 'the push is still configured');
  });

  await step('delete a stream from the editor', async () => {
    await page.goto(`${base}/#/edit/desk`);
    await page.click('#delete');
    await page.waitForSelector('#streams .card[data-stream=cam]');
    await waitFor('desk to disappear', 5000, async () => (await page.locator('.card[data-stream=desk]').count()) === 0);
    const r = await apiInPage(page, 'GET', '/streams/desk');
    check(r.status === 404, `desk still exists (${r.status})`);
  });

  await step('phone screen: nothing wider than the screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const p of ['#/', '#/edit/cam', '#/watch/cam', '#/recordings', '#/triggers', '#/gpio', '#/pushes', '#/system']) {
      await page.goto(`${base}/${p}`);
      await page.waitForSelector('main h1');
      await sleep(300);
      const w = await page.evaluate(() => document.documentElement.scrollWidth);
      check(w <= 390, `${p} is ${w} px wide on a 390 px screen`);
    }
    await page.goto(`${base}/#/`);
    await page.waitForSelector('.card[data-stream=cam] .thumb img:not([hidden])');
    await page.screenshot({ path: path.join(OUT, 'dashboard-phone.png') });
  });

  await step('no script errors or refused resources in the console', async () => {
    check(consoleErrors.length === 0, consoleErrors.join('\n'));
  });
}

let exitCode = 1;
const watchdog = setTimeout(() => {
  log(`FAIL the browser test did not finish within ${LIMIT_MS / 1000} s`);
  results.push({ name: 'finishes in time', ok: false });
  finish();
}, LIMIT_MS);

let finished = false;
async function finish() {
  if (finished) return;
  finished = true;
  clearTimeout(watchdog);
  try {
    if (context) await context.close();
  } catch (e) {
    // the browser is gone already
  }
  const failed = results.filter((r) => !r.ok).length;
  if (failed && server) {
    const lines = serverLog().split('\n');
    log(`----- brume serve log (last 60 lines) -----\n${lines.slice(-60).join('\n')}\n----- end of log -----`);
  }
  await stopServer();
  for (const d of [tmp, userDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
  const passed = results.length - failed;
  log(`${passed} passed, ${failed} failed`);
  exitCode = failed || !results.length ? 1 : 0;
  process.exit(exitCode);
}

// Whatever ends this script, the server it started does not outlive it (serve stops its
// whole tree on SIGTERM).
process.on('exit', () => {
  if (server && server.exited === null) server.child.kill('SIGTERM');
});
process.stdout.on('error', () => {});

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    results.push({ name: `interrupted by ${sig}`, ok: false });
    finish();
  });
}

main().then(finish, (e) => {
  results.push({ name: 'test script', ok: false, error: e });
  log(`FAIL test script: ${e && e.stack}`);
  finish();
});
