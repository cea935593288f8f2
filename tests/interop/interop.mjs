// Brume's outputs in real players and its RTMP ingest fed by real publishers.
//
// Starts a real `brume serve` (BRUME_BIN, default target/debug/brume) on free loopback
// ports in a fresh directory, with a synthetic `demo` stream (H.264 + AAC + JPEG), then:
//
// 1. Players × outputs: hls.js and the native <video>/<img> in Debian's Chromium
//    (playwright-core), VLC, mpv, GStreamer playbin and playbin3, and ffmpeg, each on
//    HLS, MP4, TS, MJPEG and JPEG where the player can play that output at all (other
//    cells are n/a). A cell passes only when the player's own position or frame counter
//    shows at least PLAY_S seconds of advancing playback, never going backwards;
//    exiting 0 is not enough.
// 2. Publishers × outputs: ffmpeg (libx264 defaults, -bf 0, -g 30, audio only, video
//    only, a reconnect), GStreamer (x264enc ! flvmux ! rtmpsink), and a wrong key that
//    must be refused. Every output of each decodes with `ffmpeg -v error` without a
//    message for PLAY_S seconds and the HLS output plays in hls.js; the HLS playlist
//    is watched throughout (media sequence never going back, sane segment lengths).
// 3. Figures: time from request to first frame per player on HLS, MP4 and TS (one
//    sample under load here; the median of 5, one player at a time, with --measure),
//    and the bytes a new MP4 viewer gets in its first 3 s of a 1 Mbit/s, -g 250 stream.
//
// Player logs go to tests/out/interop/. The last line is "N passed, M failed"; the
// exit code is non-zero when anything failed.
//
//     node interop.mjs [--measure] [--only players|publishers]

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
const OUT = path.join(repo, 'tests/out/interop');
const VLC_USER = process.env.INTEROP_VLC_USER || 'brume-interop';
const PASSWORD = 'interop-admin-pw';
const MEASURE = process.argv.includes('--measure');
const ONLY = (() => {
  const i = process.argv.indexOf('--only');
  return i >= 0 ? process.argv[i + 1] : null;
})();
const PLAY_S = 10; // every cell plays at least this long
const FPS = 25; // the demo stream's and every publisher's frame rate
const JPEG_FPS = 2; // the demo stream's JPEG track
const W = 640;
const H = 360;
const PAR = Number(process.env.INTEROP_JOBS || 4); // cells at once (2 cores)
const DEMO_AGE_S = Number(process.env.INTEROP_DEMO_AGE_S || 240); // the demo stream's age before the players run
let demoStarted = 0;

const OUTPUTS = ['HLS', 'HLS-TS', 'MP4', 'TS', 'MJPEG', 'JPEG'];
const PLAYERS = ['hls.js', 'Chromium', 'VLC', 'mpv', 'playbin', 'playbin3', 'ffmpeg'];

const T0 = Date.now();
const now = () => Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => process.stdout.write(`${msg}\n`);
const elapsed = () => `${((now() - T0) / 1000).toFixed(0).padStart(4)} s`;

// ------------------------------------------------------------------ processes
const started = new Set();

/** Spawns a command in its own process group; collects its output as timed lines. */
function start(cmd, args, { env = {}, unset = [], stdin = 'ignore', asUser = null, name = cmd } = {}) {
  let argv = [cmd, ...args];
  if (asUser) argv = ['setpriv', `--reuid=${asUser.uid}`, `--regid=${asUser.gid}`, '--clear-groups', 'env', `HOME=${asUser.home}`, cmd, ...args];
  const fullEnv = { ...process.env, ...env };
  for (const k of unset) delete fullEnv[k];
  const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: [stdin, 'pipe', 'pipe'], env: fullEnv });
  const p = { name, argv, child, t0: now(), lines: [], listeners: [], code: null, signal: null, exited: false };
  started.add(p);
  const reader = (src) => {
    let buf = '';
    return (d) => {
      buf += d;
      let i;
      while ((i = buf.search(/[\r\n]/)) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!l.trim()) continue;
        const e = { t: now() - p.t0, src, l };
        if (p.lines.length < 20000) p.lines.push(e);
        for (const f of p.listeners) f(e);
      }
    };
  };
  // A player that quits closes its stdin: a late command must not crash the test.
  child.stdin?.on('error', () => {});
  child.stdout.setEncoding('utf8').on('data', reader('out'));
  child.stderr.setEncoding('utf8').on('data', reader('err'));
  p.done = new Promise((res) => {
    child.on('error', (e) => {
      p.lines.push({ t: now() - p.t0, src: 'err', l: `spawn failed: ${e.message}` });
    });
    child.on('close', (code, sig) => {
      p.code = code;
      p.signal = sig;
      p.exited = true;
      p.wall = now() - p.t0;
      started.delete(p);
      res(p);
    });
  });
  p.kill = (sig = 'SIGKILL') => {
    if (p.exited) return;
    try {
      process.kill(-child.pid, sig);
    } catch {
      /* gone */
    }
  };
  p.on = (f) => p.listeners.push(f);
  p.write = (s) => {
    if (!p.exited && child.stdin && child.stdin.writable) child.stdin.write(s);
  };
  return p;
}

/** Waits for `p` to exit; kills its group after `ms`. */
async function within(p, ms) {
  const t = setTimeout(() => p.kill('SIGKILL'), ms);
  await p.done;
  clearTimeout(t);
  return p;
}

function saveLog(file, p, extra = '') {
  fs.mkdirSync(OUT, { recursive: true });
  const body = p ? p.lines.map((e) => `${(e.t / 1000).toFixed(3)} ${e.src} ${e.l}`).join('\n') : '';
  const head = p ? `$ ${p.argv.join(' ')}\nexit ${p.code ?? ''} ${p.signal ?? ''}\n` : '';
  fs.writeFileSync(path.join(OUT, file), `${head}${extra}${body}\n`);
}

/** The lines of a player log that explain a failure: errors and warnings, else the tail. */
function excerpt(p, re = /error|fail|warn|discontinu|invalid|cannot|unable|not |no /i, n = 4) {
  if (!p) return '';
  const pick = p.lines.filter((e) => re.test(e.l) && !/PROBE tick|last-message|buffering\.\.\./.test(e.l));
  const seen = new Set();
  const uniq = [];
  for (const e of pick) {
    const k = e.l.replace(/0x[0-9a-f]+/g, '').replace(/\d+/g, '#');
    if (seen.has(k)) continue;
    seen.add(k);
    uniq.push(e.l.trim().slice(0, 220));
  }
  return uniq.slice(0, n).join(' | ');
}

// ------------------------------------------------------------------ the server
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

let server = null;
let HP = 0;
let RP = 0;
let TOKEN = '';
let TMP = '';
const PREFIX = `brumeinterop${process.pid}`;

async function api(method, p, body) {
  const r = await fetch(`http://127.0.0.1:${HP}/api/v1${p}`, {
    method,
    headers: { 'Content-Type': 'application/json', ...(TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: r.status, json, text };
}

async function startServer() {
  TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'brume-interop-'));
  fs.chmodSync(TMP, 0o755);
  HP = await freePort();
  RP = await freePort();
  const cfg = { streams: { demo: { source: { type: 'testsrc', width: W, height: H, fps: FPS, bitrate_kbps: 800, jpeg_fps: JPEG_FPS }, always_on: true } } };
  fs.writeFileSync(path.join(TMP, 'brume.json'), JSON.stringify(cfg));
  server = start(BIN, ['serve', '--config', path.join(TMP, 'brume.json'), '--listen', `127.0.0.1:${HP}`, '--rtmp', `127.0.0.1:${RP}`], {
    env: { BRUME_SHM_PREFIX: PREFIX, BRUME_ADMIN_PASSWORD: PASSWORD },
    unset: ['BRUME_SHM_DIR', 'BRUME_RUN_DIR', 'BRUME_CONFIG'],
    name: 'brume',
  });
  const deadline = now() + 30000;
  for (;;) {
    if (server.exited) throw new Error(`brume serve exited: ${excerpt(server)}`);
    try {
      const r = await api('POST', '/login', { password: PASSWORD });
      if (r.status === 200 && r.json?.token) {
        TOKEN = r.json.token;
        break;
      }
    } catch {
      /* not up yet */
    }
    if (now() > deadline) throw new Error('brume serve did not answer within 30 s');
    await sleep(200);
  }
  // The demo stream is live once it has written its first keyframe.
  await waitFor(20000, 'demo live', async () => (await api('GET', '/streams/demo')).json?.status?.state === 'live');
  demoStarted = now();
}

async function stopServer() {
  if (!server) return;
  server.kill('SIGTERM');
  await within(server, 15000);
  saveLog('brume-serve.log', server);
}

async function waitFor(ms, what, f) {
  const deadline = now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await sleep(250);
  }
}

function url(stream, output) {
  const b = `http://127.0.0.1:${HP}`;
  return { HLS: `${b}/hls/${stream}/index.m3u8`, 'HLS-TS': `${b}/hls/${stream}/ts.m3u8`, MP4: `${b}/${stream}.mp4`, TS: `${b}/${stream}.ts`, MJPEG: `${b}/${stream}.mjpg`, JPEG: `${b}/${stream}.jpg` }[output];
}

// ------------------------------------------------------------------ judging
// Every player reports: firstMs (request to first frame), advance (seconds of media
// position it moved through after its first frame), frames (frames it decoded or
// presented after the first), backwards (times its position went back), repeats
// (decoded pictures identical to an earlier one, ffmpeg only), errors (messages that
// fail the cell by themselves), and log (the process, for excerpts).

/** Frames expected in `s` seconds of an output. */
function rate(output, media) {
  if (output === 'MJPEG') return JPEG_FPS;
  return media === 'audio' ? 48000 / 1024 : FPS;
}

/** Frames the demo stream's source dropped so far (a busy machine: it follows the clock). */
async function demoDropped() {
  const r = await api('GET', '/streams/demo').catch(() => null);
  return r?.json?.status?.dropped_frames ?? 0;
}

function judge(r, output, media = 'video') {
  if (r.na) return { status: 'n/a', note: r.na };
  const why = [];
  if (output === 'JPEG') {
    if (!(r.frames >= 1)) why.push('no picture decoded');
  } else {
    // At least 40 % of the frames: a frozen picture fails, while a player decoding four
    // cells at once on this 2-core machine, or the synthetic camera dropping frames when
    // it is busy, does not.
    // Frames the source itself dropped while the cell played are not expected.
    const lost = output === 'MJPEG' ? 0 : r.sourceDropped || 0;
    const minFrames = Math.floor(0.4 * (rate(output, media) * (PLAY_S - 0.5) - lost));
    if (r.firstMs == null) why.push('no frame at all');
    else {
      if (!(r.advance >= PLAY_S - 0.5)) why.push(`position advanced ${fmt(r.advance)} s, not ${PLAY_S} s`);
      if (r.frames !== null && !(r.frames >= minFrames)) why.push(`${r.frames ?? 0} frames, expected ≥ ${minFrames}`);
    }
    if (r.backwards > 0) why.push(`position went backwards ${r.backwards}× (${r.backNote || 'loop?'})`);
    if (r.repeats > 0.05 * (r.frames || 1)) why.push(`${r.repeats} of ${r.frames} pictures repeat earlier ones (loop)`);
  }
  for (const e of r.errors || []) why.push(e);
  if (why.length === 0) return { status: 'pass', note: r.note || '' };
  const ex = r.excerpt ?? excerpt(r.log);
  return { status: 'FAIL', note: why.join('; ') + (ex ? ` — log: ${ex}` : '') };
}

const fmt = (x) => (x == null || Number.isNaN(x) ? '–' : Number(x).toFixed(1));

// ------------------------------------------------------------------ ffmpeg
function parseClock(s) {
  // 0:12:40.160000000 → seconds
  const m = /^(\d+):(\d+):(\d+(?:\.\d+)?)$/.exec(s);
  return m ? Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) : null;
}

/**
 * A position track: first/last/max position, backwards jumps (more than `tol` seconds
 * back), first-frame time.
 */
function track(tol = 0.05) {
  return {
    n: 0, first: null, last: null, max: null, backwards: 0, backNote: '', t1: null, tl: null,
    add(pos, t) {
      this.n++;
      if (this.t1 == null) this.t1 = t;
      this.tl = t;
      if (pos == null) return;
      if (this.first == null) this.first = pos;
      if (this.last != null && pos < this.last - tol) {
        this.backwards++;
        if (!this.backNote) this.backNote = `${this.last.toFixed(2)} → ${pos.toFixed(2)} s`;
      }
      this.last = pos;
      this.max = this.max == null ? pos : Math.max(this.max, pos);
    },
    span() {
      return this.first == null ? null : this.max - this.first;
    },
  };
}

/**
 * ffmpeg decoding an output: `-v error` (any message fails the cell), every decoded
 * frame's checksum (framemd5) with its timestamp, -t PLAY_S (timed outputs) or
 * stopped after PLAY_S s of frames (MJPEG, whose frames carry no timestamps).
 */
async function ffmpegPlay(u, output, { playS = PLAY_S, deadlineS = PLAY_S + 25, stopAt = null, file } = {}) {
  const args = ['-nostdin', '-hide_banner', '-v', 'error', '-i', u];
  if (output === 'JPEG') args.push('-frames:v', '1');
  else if (output !== 'MJPEG' && !stopAt) args.push('-t', String(playS));
  args.push('-map', '0', '-flush_packets', '1', '-f', 'framemd5', '-');
  const p = start('ffmpeg', args);
  const tb = {};
  const type = {};
  const tr = {};
  const hashes = {};
  const repeats = {};
  let stoppedAt = null;
  function stop() {
    if (stoppedAt == null) stoppedAt = now() - p.t0;
    p.kill('SIGINT');
  }
  const times = {};
  p.on((e) => {
    if (e.src !== 'out') return;
    let m;
    if ((m = /^#tb (\d+): (\d+)\/(\d+)/.exec(e.l))) tb[m[1]] = Number(m[2]) / Number(m[3]);
    else if ((m = /^#media_type (\d+): (\w+)/.exec(e.l))) type[m[1]] = m[2];
    else if ((m = /^(\d+),\s*(-?\d+),\s*(-?\d+),\s*(\d+),\s*(\d+),\s*([0-9a-f]+)/.exec(e.l))) {
      const s = m[1];
      tr[s] ||= track();
      hashes[s] ||= new Set();
      times[s] ||= [];
      const pos = output === 'MJPEG' ? e.t / 1000 : Number(m[3]) * (tb[s] ?? 0);
      tr[s].add(pos, e.t);
      times[s].push(e.t);
      if (hashes[s].has(m[6])) repeats[s] = (repeats[s] || 0) + 1;
      hashes[s].add(m[6]);
      if (output === 'MJPEG' && tr[s].span() >= playS + 0.2) stop();
    }
  });
  const timer = stopAt ? setTimeout(stop, stopAt) : null;
  await within(p, deadlineS * 1000);
  if (timer) clearTimeout(timer);
  const streams = Object.keys(type);
  const main = streams.find((s) => type[s] === 'video') ?? streams.find((s) => type[s] === 'audio');
  const t = tr[main] || track();
  const media = type[main] || 'video';
  const errors = [];
  // What ffmpeg says after the SIGINT that stops it ("Immediate exit requested", the
  // trailer it could not write) is about that stop, not about the stream.
  const msgs = p.lines.filter((e) => e.src === 'err' && (stoppedAt == null || e.t < stoppedAt)).map((e) => e.l.trim());
  if (msgs.length) errors.push(`ffmpeg -v error said: ${[...new Set(msgs)].slice(0, 3).join(' | ').slice(0, 300)}${msgs.length > 3 ? ` (+${msgs.length - 3} more)` : ''}`);
  const stoppedByUs = p.signal === 'SIGINT' || p.code === 255;
  if (p.code !== 0 && !stoppedByUs) errors.push(`ffmpeg exit ${p.code ?? p.signal}${p.signal === 'SIGKILL' ? ' (killed at the deadline)' : ''}`);
  if (file) saveLog(file, p);
  return {
    log: p,
    excerpt: '',
    media,
    firstMs: t.t1,
    advance: t.span() == null ? null : t.span() + (output === 'MJPEG' ? 0 : 1 / rate(output, media)),
    frames: t.n,
    backwards: t.backwards,
    backNote: t.backNote,
    repeats: media === 'video' ? repeats[main] || 0 : 0,
    errors,
    times: times[main] || [],
    wall: p.wall,
    note: `${t.n} ${media} frames, ${fmt(t.span())} s`,
  };
}

// ------------------------------------------------------------------ mpv
async function mpvPlay(u, output, { file, firstOnly = false } = {}) {
  const args = ['--no-config', '--quiet', '--vo=null', '--ao=null', `--script=${path.join(here, 'probe.lua')}`, '--msg-level=all=warn,probe=info'];
  // --length is how one plays "10 s of a stream"; a timed output must honour it.
  if (output === 'JPEG') args.push('--frames=1', '--image-display-duration=0');
  else if (output !== 'MJPEG') args.push(`--length=${PLAY_S + 0.5}`);
  args.push(u);
  const p = start('mpv', args);
  const t = track();
  let frame0 = null;
  let frames = 0;
  let end = '';
  let restarted = false;
  p.on((e) => {
    let m;
    if ((m = /PROBE (restart|tick|end) pos=(\S+) frames=(\S+)/.exec(e.l))) {
      if (m[1] === 'restart') restarted = true;
      const pos = Number(m[2]);
      if (!restarted || Number.isNaN(pos)) return;
      t.add(pos, e.t);
      const f = Number(m[3]);
      if (!Number.isNaN(f)) {
        if (frame0 == null) frame0 = f;
        frames = Math.max(frames, f - frame0);
      }
      if (firstOnly || t.span() >= PLAY_S + 0.3) p.kill('SIGTERM');
    } else if ((m = /PROBE end-file reason=(\S+) error=(.*)$/.exec(e.l))) {
      end = `${m[1]}${m[2].trim() !== 'nil' ? ` (${m[2].trim()})` : ''}`;
    }
  });
  await within(p, (firstOnly ? 15 : PLAY_S + 25) * 1000);
  if (file) saveLog(file, p);
  const errors = [];
  // eof (--length reached, or the stream ended) and quit (stopped here) are normal ends;
  // whether it played long enough is judged from the position.
  if (end && !/^(quit|eof)$/.test(end)) errors.push(`mpv ended: ${end}`);
  if (output === 'JPEG') frames = restarted ? 1 : 0;
  return {
    log: p,
    firstMs: restarted ? t.t1 : null,
    advance: t.span(),
    frames: output === 'MJPEG' ? null : frames,
    backwards: t.backwards,
    backNote: t.backNote,
    errors,
    note: `time-pos +${fmt(t.span())} s${end ? `, ended: ${end}` : ''}`,
    mjpegNoFrames: true,
  };
}

// ------------------------------------------------------------------ VLC
let vlcUser = null;
function vlcIdentity() {
  if (vlcUser !== null) return vlcUser;
  vlcUser = false;
  if (process.getuid() !== 0) return vlcUser; // already unprivileged
  const pw = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${VLC_USER}:`));
  if (!pw) throw new Error(`VLC refuses to run as root and there is no user ${VLC_USER} (run.sh creates it)`);
  const [, , uid, gid] = pw.split(':');
  const home = path.join(TMP, 'vlc-home');
  fs.mkdirSync(home, { recursive: true });
  fs.chownSync(home, Number(uid), Number(gid));
  vlcUser = { uid: Number(uid), gid: Number(gid), home };
  return vlcUser;
}

/**
 * VLC 3 with its rc interface on stdin: `get_time` (the input's position, whole
 * seconds) and `stats` (frames decoded and displayed) every 200 ms; dummy video and
 * audio outputs, which display (and count) every frame at its time.
 */
async function vlcPlay(u, output, { file, firstOnly = false } = {}) {
  const args = ['-I', 'rc', '--rc-fake-tty', '--no-dbus', '--vout=dummy', '--aout=dummy', '--no-video-title-show', '--no-sub-autodetect-file', u];
  const p = start('vlc', args, { stdin: 'pipe', asUser: vlcIdentity() || null });
  // get_time is whole seconds: a step of one second back is its rounding (VLC's HLS
  // position steps back ~1 s at some segment starts); loops are caught by the ffmpeg
  // cells, which compare pictures.
  const t = track(1.0);
  let displayed = 0;
  let decoded = 0;
  const mj = track();
  let firstDisplayed = null;
  let lastTime = null;
  let done = false;
  p.on((e) => {
    if (e.src !== 'out') return;
    let m;
    if ((m = /^(?:> )*(-?\d+)\s*$/.exec(e.l))) lastTime = Number(m[1]);
    else if ((m = /video decoded\s*:\s*(\d+)/.exec(e.l))) {
      // MJPEG has no timeline in VLC (get_time stays 0): a newly decoded picture's
      // arrival time is the position.
      if (output === 'MJPEG' && Number(m[1]) > decoded) {
        mj.add(e.t / 1000, e.t);
        if (mj.span() >= PLAY_S + 0.2) done = true;
      }
      decoded = Number(m[1]);
    }
    else if ((m = /frames displayed\s*:\s*(\d+)/.exec(e.l))) {
      displayed = Number(m[1]);
      if (displayed > 0) {
        if (firstDisplayed == null) firstDisplayed = displayed;
        if (output !== 'MJPEG') t.add(lastTime, e.t);
        if (firstOnly || t.span() >= PLAY_S) done = true;
      }
    }
  });
  const poll = setInterval(() => {
    if (done) {
      p.write('quit\n');
      return;
    }
    p.write('get_time\nstats\n');
  }, firstOnly ? 100 : 200);
  // JPEG: one picture, then VLC shows it for --image-duration; a displayed frame is all.
  await within(p, (firstOnly ? 15 : PLAY_S + 25) * 1000);
  clearInterval(poll);
  if (file) saveLog(file, p);
  if (output === 'MJPEG') {
    return {
      log: p,
      firstMs: mj.t1,
      advance: mj.span(),
      frames: mj.n - 1,
      backwards: 0,
      errors: [],
      note: `${mj.n} pictures decoded over ${fmt(mj.span())} s (get_time ${lastTime})`,
    };
  }
  return {
    log: p,
    firstMs: t.t1,
    advance: t.span(),
    frames: output === 'JPEG' ? displayed : displayed - (firstDisplayed ?? 0),
    backwards: t.backwards,
    backNote: t.backNote,
    errors: [],
    note: `get_time +${fmt(t.span())} s, ${displayed} frames displayed, ${decoded} decoded`,
  };
}

// ------------------------------------------------------------------ GStreamer
/**
 * gst-launch-1.0 -v playbin/playbin3 with fakesinks that sync to the clock (real-time
 * playback) and report every buffer; the video sink's buffer timestamps are the
 * position (or arrival times when a buffer has no timestamp, as MJPEG's).
 */
async function gstPlay(u, output, bin, { file, firstOnly = false } = {}) {
  const args = ['-v', bin, `uri=${u}`, 'video-sink=fakesink name=vsink sync=true silent=false', 'audio-sink=fakesink sync=true'];
  const p = start('gst-launch-1.0', args);
  const t = track();
  let eos = false;
  const errs = [];
  p.on((e) => {
    let m;
    if (/vsink: last-message = chain/.test(e.l)) {
      m = /pts: ([0-9:.]+)/.exec(e.l);
      const pos = m ? parseClock(m[1]) : e.t / 1000;
      t.add(pos, e.t);
      if (firstOnly || (output !== 'JPEG' && t.span() >= PLAY_S + 0.2)) p.kill('SIGKILL');
    } else if (/^ERROR: /.test(e.l)) errs.push(e.l.trim());
    else if (/Got EOS from element/.test(e.l)) eos = true;
  });
  await within(p, (firstOnly ? 15 : PLAY_S + 25) * 1000);
  if (file) saveLog(file, p);
  const errors = [];
  if (errs.length) errors.push(`${bin}: ${errs.slice(0, 2).join(' | ')}`);
  const stuck = p.lines.filter((e) => /buffering\.\.\./.test(e.l)).length;
  return {
    log: p,
    firstMs: t.t1,
    advance: t.span(),
    frames: t.n - (output === 'JPEG' ? 0 : 1),
    backwards: t.backwards,
    backNote: t.backNote,
    errors: output === 'JPEG' ? errors : errors,
    excerpt: excerpt(p, /ERROR|WARN|error|Additional debug/) || (stuck && t.n === 0 ? `stuck "buffering…" (${stuck} buffering messages, never playing)` : ''),
    note: `${t.n} video buffers rendered, pts +${fmt(t.span())} s${eos ? ', EOS' : ''}`,
  };
}

// ------------------------------------------------------------------ Chromium
let browser = null;
let context = null;

async function startBrowser() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required', '--disable-gpu', '--mute-audio'],
  });
  context = await browser.newContext();
  const hlsjs = fs.readFileSync(path.join(here, 'node_modules/hls.js/dist/hls.min.js'));
  // The test page and hls.js are served at Brume's own origin (the rest of the origin
  // is the real server): the player fetches the media exactly as a page there would.
  await context.route(/\/__interop\//, (route) => {
    const p = new URL(route.request().url()).pathname;
    if (p === '/__interop/hls.js') return route.fulfill({ status: 200, contentType: 'text/javascript', body: hlsjs });
    return route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><meta charset=utf-8><title>interop</title><body style="margin:0;background:#000"></body>' });
  });
}

async function stopBrowser() {
  await context?.close().catch(() => {});
  await browser?.close().catch(() => {});
}

function pageSetup() {
  window.__st = null;
  window.__play = (mode, u) => {
    const st = (window.__st = { t0: performance.now(), first: null, firstTime: null, presented: 0, err: null, log: [], times: [], back: 0, backNote: '' });
    const note = (s) => st.log.length < 40 && st.log.push(`${((performance.now() - st.t0) / 1000).toFixed(2)} ${s}`);
    if (mode === 'img') {
      const img = new Image();
      document.body.appendChild(img);
      const c = document.createElement('canvas');
      c.width = 64;
      c.height = 36;
      const g = c.getContext('2d', { willReadFrequently: true });
      let lastSig = null;
      st.distinct = 0;
      const sample = () => {
        if (!img.naturalWidth) return;
        if (st.first === null) st.first = performance.now() - st.t0;
        try {
          g.drawImage(img, 0, 0, 64, 36);
          const d = g.getImageData(0, 0, 64, 36).data;
          let h = 0;
          for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] + d[i + 1] * 7 + d[i + 2] * 13) >>> 0;
          if (h !== lastSig) {
            st.distinct++;
            st.times.push((performance.now() - st.t0) / 1000);
            lastSig = h;
          }
        } catch (e) {
          st.err = `canvas: ${e}`;
        }
        st.width = img.naturalWidth;
      };
      img.onload = sample;
      img.onerror = () => (st.err = 'img error (not decodable)');
      st.timer = setInterval(sample, 100);
      img.src = u;
      return;
    }
    const v = document.createElement('video');
    v.muted = true;
    v.autoplay = true;
    v.playsInline = true;
    v.width = 320;
    document.body.appendChild(v);
    st.canNative = v.canPlayType('application/vnd.apple.mpegurl');
    let lastT = null;
    const frame = (t, md) => {
      if (st.first === null) {
        st.first = t - st.t0;
        st.firstTime = md.mediaTime;
      }
      st.presented = md.presentedFrames;
      v.requestVideoFrameCallback(frame);
    };
    v.requestVideoFrameCallback(frame);
    v.addEventListener('timeupdate', () => {
      if (lastT !== null && v.currentTime < lastT - 0.05) {
        st.back++;
        if (!st.backNote) st.backNote = `${lastT.toFixed(2)} → ${v.currentTime.toFixed(2)} s`;
      }
      lastT = v.currentTime;
      // Audio only: no video frames; the first advancing position is the first "frame".
      if (st.first === null && st.audioOnly && v.currentTime > 0) {
        st.first = performance.now() - st.t0;
        st.firstTime = v.currentTime;
      }
    });
    for (const ev of ['loadedmetadata', 'playing', 'waiting', 'stalled', 'ended']) v.addEventListener(ev, () => note(ev));
    v.addEventListener('error', () => (st.err = `<video> error ${v.error?.code}: ${v.error?.message || ''}`));
    st.v = v;
    if (mode === 'hlsjs') {
      // eslint-disable-next-line no-undef
      // hls.js's debug log goes to the console, where the test keeps its last lines.
      const h = new Hls({ debug: { log: console.debug, debug: console.debug, info: console.debug, warn: console.warn, error: console.error } });
      st.hls = h;
      // eslint-disable-next-line no-undef
      h.on(Hls.Events.ERROR, (_e, d) => {
        note(`hls.js ${d.fatal ? 'FATAL ' : ''}${d.type} ${d.details}${d.reason ? ` ${d.reason}` : ''}${d.error ? ` ${d.error.message}` : ''}`);
        if (d.fatal) st.err = `hls.js fatal ${d.type} ${d.details}${d.error ? `: ${d.error.message}` : ''}`;
      });
      // eslint-disable-next-line no-undef
      h.on(Hls.Events.MANIFEST_PARSED, (_e, d) => {
        const lv = d.levels?.[0];
        st.audioOnly = !!lv && !lv.videoCodec && !lv.width && !!lv.audioCodec;
        note(`manifest: ${lv?.codecSet || ''} ${lv?.width || ''}`);
      });
      // A media playlist names no codecs: what hls.js buffers tells audio-only apart.
      // eslint-disable-next-line no-undef
      h.on(Hls.Events.BUFFER_CODECS, (_e, d) => {
        if (d.audio && !d.video) st.audioOnly = true;
      });
      h.loadSource(u);
      h.attachMedia(v);
    } else {
      v.src = u;
    }
    v.play().catch((e) => note(`play(): ${e.message}`));
  };
  window.__state = () => {
    const st = window.__st;
    if (!st) return null;
    const v = st.v;
    const q = v?.getVideoPlaybackQuality?.();
    return {
      first: st.first,
      firstTime: st.firstTime,
      currentTime: v ? v.currentTime : null,
      presented: st.presented,
      decoded: q ? q.totalVideoFrames : null,
      dropped: q ? q.droppedVideoFrames : null,
      err: st.err,
      log: st.log,
      back: st.back,
      backNote: st.backNote,
      canNative: st.canNative,
      audioOnly: !!st.audioOnly,
      distinct: st.distinct,
      times: st.times,
      width: st.width,
    };
  };
}

/** One Chromium cell: hls.js, a native <video src>, or an <img> (MJPEG, JPEG). */
async function chromePlay(u, mode, output, { file, firstOnly = false, playS = PLAY_S, deadlineS = PLAY_S + 25 } = {}) {
  const page = await context.newPage();
  // The last console lines (hls.js debug log included): what the page did last.
  const consoleLines = [];
  page.on('console', (m) => {
    consoleLines.push(`${((now() - t0) / 1000).toFixed(2)} ${m.type()}: ${m.text().replace(/\s+/g, ' ').slice(0, 400)}`);
    if (consoleLines.length > 60) consoleLines.shift();
  });
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  let crashed = false;
  page.on('crash', () => (crashed = true));
  // A renderer stuck in a loop never answers: give up on it instead of waiting forever.
  const ev = (f, arg, ms = 5000) =>
    Promise.race([
      page.evaluate(f, arg),
      sleep(ms).then(() => {
        throw new Error(`the page stopped answering for ${ms / 1000} s (renderer ${crashed ? 'crashed' : 'busy, a script in a loop?'})`);
      }),
    ]);
  const t0 = now();
  let st = null;
  try {
    await page.goto(`http://127.0.0.1:${HP}/__interop/page.html`);
    await page.addScriptTag({ url: '/__interop/hls.js' });
    await ev(pageSetup);
    await ev(([m, x]) => window.__play(m, x), [mode, u]);
    const deadline = now() + (firstOnly ? 15 : deadlineS) * 1000;
    for (;;) {
      await sleep(firstOnly ? 50 : 250);
      st = await ev(() => window.__state());
      if (st.err) break;
      if (firstOnly && st.first != null) break;
      if (mode === 'img') {
        if (output === 'JPEG' && st.width) break;
        const span = st.times.length ? st.times[st.times.length - 1] - st.times[0] : 0;
        if (span >= playS) break;
      } else if (st.first != null && st.currentTime - st.firstTime >= playS + 0.2) break;
      if (now() > deadline) break;
    }
  } catch (e) {
    st = { ...(st || {}), err: `page: ${e.message}` };
  } finally {
    await Promise.race([page.close({ runBeforeUnload: false }).catch(() => {}), sleep(5000)]);
  }
  if (file) {
    fs.mkdirSync(OUT, { recursive: true });
    fs.writeFileSync(path.join(OUT, file), `${mode} ${u}\n${JSON.stringify({ ...st, times: undefined }, null, 1)}\nlast console lines:\n${consoleLines.join('\n')}\n`);
  }
  const errors = st?.err ? [st.err] : [];
  if (mode === 'img') {
    const span = st?.times?.length ? st.times[st.times.length - 1] - st.times[0] : null;
    return {
      firstMs: st?.first ?? null,
      advance: output === 'JPEG' ? null : span,
      frames: output === 'JPEG' ? (st?.width ? 1 : 0) : Math.max(0, (st?.distinct || 0) - 1),
      backwards: 0,
      errors,
      excerpt: '',
      note: output === 'JPEG' ? `${st?.width || 0} px wide` : `${st?.distinct || 0} distinct pictures over ${fmt(span)} s`,
    };
  }
  let events = (st?.log || []).filter((l) => /hls\.js|play\(\)|stalled|waiting|ended/.test(l)).slice(0, 4).join(' | ');
  if (/stopped answering/.test(st?.err || '')) {
    // What the playlist said when the player stopped: its sequence numbers are the
    // player's loop counters.
    const pl = await fetch(u).then((r) => r.text()).catch(() => '');
    const tags = pl.split('\n').filter((l) => /^#EXT-X-(MEDIA-SEQUENCE|DISCONTINUITY-SEQUENCE|MAP)/.test(l)).join(' ');
    events = `last page console lines: ${consoleLines.slice(-2).map((l) => l.slice(0, 140)).join(' | ')}; the playlist had ${tags}`;
  }
  const adv = st?.first != null ? st.currentTime - st.firstTime : null;
  return {
    firstMs: st?.first ?? null,
    advance: adv,
    frames: st?.audioOnly ? null : (st?.decoded ?? 0),
    backwards: st?.back || 0,
    backNote: st?.backNote,
    errors,
    excerpt: events,
    audioOnly: st?.audioOnly,
    canNative: st?.canNative,
    note: `currentTime +${fmt(adv)} s, ${st?.decoded ?? 0} frames decoded${st?.dropped ? ` (${st.dropped} dropped)` : ''}`,
  };
}

// ------------------------------------------------------------------ the matrix
/** What each player does with each output; a string is why the cell is n/a. */
function cellPlan(player, output) {
  switch (player) {
    case 'hls.js':
      return output.startsWith('HLS') ? (o) => chromePlay(url('demo', output), 'hlsjs', output, o) : 'hls.js plays HLS only';
    case 'Chromium':
      if (output === 'TS') return 'Chromium has no MPEG-TS demuxer for <video>';
      if (output === 'MJPEG' || output === 'JPEG') return (o) => chromePlay(url('demo', output), 'img', output, o);
      return (o) => chromePlay(url('demo', output), 'native', output, o);
    case 'VLC':
      return (o) => vlcPlay(url('demo', output), output, o);
    case 'mpv':
      return (o) => mpvPlay(url('demo', output), output, o);
    case 'playbin':
    case 'playbin3':
      return (o) => gstPlay(url('demo', output), output, player, o);
    case 'ffmpeg':
      return (o) => ffmpegPlay(url('demo', output), output, o);
    default:
      return 'unknown player';
  }
}

async function pool(tasks, n) {
  const out = new Array(tasks.length);
  let i = 0;
  const lane = async () => {
    while (i < tasks.length) {
      const k = i++;
      out[k] = await tasks[k]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, tasks.length) }, lane));
  return out;
}

/**
 * Cells that fail for a reason outside Brume's outputs, each named with the player's
 * version in the README's compatibility table. Such a cell is reported as "known", not
 * counted as a failure; it passes as usual if the player plays. Every other failure
 * fails the tier.
 */
const KNOWN = {
  'players:mpv:MJPEG':
    'MJPEG over HTTP (multipart) carries no timestamps; mpv 0.35.1 times the pictures itself, so its position does not follow the clock',
  'players:playbin:MJPEG':
    'GStreamer 1.22.0 playbin buffers a live 2 fps multipart stream without end (playbin3 plays it)',
  'players:playbin:HLS':
    "GStreamer 1.22.0 playbin's legacy hlsdemux starts a live fMP4 stream's clock at the playlist position, not at the fragments' decode times: the first frame of a stream that has run 240 s waits ~240 s (sink segment start 2 s, first buffer at 242 s). It plays HLS-TS (/hls/<stream>/ts.m3u8) at once; playbin3 plays both",
  'players:ffprobe:TS':
    'ffmpeg 5.1 sets scan_all_pmts, so it analyses 5 s (analyzeduration) of any live MPEG-TS before it opens; -analyzeduration 1M opens it in ~1 s',
};

const results = []; // {section, row, col, status, note}
function record(section, row, col, verdict, extra = {}) {
  const known = KNOWN[`${section}:${row}:${col}`];
  if (verdict.status === 'FAIL' && known) verdict = { status: 'known', note: `${known} — ${verdict.note}` };
  results.push({ section, row, col, ...verdict, ...extra });
  const mark = verdict.status === 'pass' ? 'ok  ' : verdict.status === 'n/a' ? 'n/a ' : verdict.status === 'known' ? 'KNWN' : 'FAIL';
  log(`${elapsed()} ${mark} ${section}: ${row} × ${col}${verdict.note ? ` — ${verdict.note}` : ''}`);
}

const slug = (s) => s.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();

let playersStarted = 0;
async function playersMatrix() {
  playersStarted = now();
  const tasks = [];
  // The browser cells share one Chromium; spread the expensive ones through the run.
  for (const output of OUTPUTS) {
    for (const player of PLAYERS) {
      const plan = cellPlan(player, output);
      if (typeof plan === 'string') {
        record('players', player, output, { status: 'n/a', note: plan });
        continue;
      }
      tasks.push(async () => {
        let r;
        const dropped0 = await demoDropped();
        try {
          r = await plan({ file: `player-${slug(player)}-${slug(output)}.log` });
        } catch (e) {
          r = { errors: [`test error: ${e.message}`], firstMs: null };
        }
        r.sourceDropped = (await demoDropped()) - dropped0;
        let v = judge(r, output);
        if (player === 'Chromium' && output.startsWith('HLS') && v.status === 'FAIL' && r.canNative === '') {
          v = { status: 'n/a', note: `this Chromium has no native HLS (canPlayType("application/vnd.apple.mpegurl") is ""): ${r.errors.join('; ')}` };
        }
        record('players', player, output, v, { firstMs: r.firstMs, detail: r.note });
      });
    }
  }
  await pool(tasks, PAR);
}

/**
 * How long ffprobe takes to open each output and name its streams: what NVRs, stream
 * checkers and most ffmpeg-based tools do first. Two seconds at most.
 */
const PROBE_LIMIT_S = 2;
async function probeOpen() {
  for (const o of ['MJPEG', 'JPEG']) record('players', 'ffprobe', o, { status: 'n/a', note: 'the opening time matters for the streaming outputs' });
  for (const output of ['HLS', 'MP4', 'TS']) {
    const p = start('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_type,codec_name', '-of', 'csv=p=0', url('demo', output)]);
    await within(p, 20000);
    saveLog(`ffprobe-${slug(output)}.log`, p);
    const s = p.wall / 1000;
    const streams = p.lines.filter((e) => e.src === 'out').map((e) => e.l.trim());
    const errs = p.lines.filter((e) => e.src === 'err').map((e) => e.l.trim());
    const why = [];
    if (p.code !== 0) why.push(`ffprobe exit ${p.code ?? p.signal}`);
    if (!streams.some((x) => /video/.test(x)) || !streams.some((x) => /audio/.test(x))) why.push(`streams found: ${streams.join(' ') || 'none'}`);
    if (s > PROBE_LIMIT_S) why.push(`took ${s.toFixed(1)} s to open (limit ${PROBE_LIMIT_S} s)`);
    if (errs.length) why.push(`ffprobe -v error said: ${errs.slice(0, 2).join(' | ')}`);
    record('players', 'ffprobe', output, why.length ? { status: 'FAIL', note: why.join('; ') } : { status: 'pass', note: `${s.toFixed(1)} s: ${streams.join(' ')}` }, { firstMs: p.wall });
  }
}

// ------------------------------------------------------------------ publishers
function lavfi({ video = true, audio = true, round = 1 }) {
  // A reconnecting publisher's second round sends other pictures (testsrc): the
  // same pictures again would look like a loop to the repeat check.
  const a = [];
  if (video) a.push('-re', '-f', 'lavfi', '-i', `${round === 1 ? 'testsrc2' : 'testsrc'}=size=${W}x${H}:rate=${FPS}`);
  if (audio) a.push('-re', '-f', 'lavfi', '-i', `sine=frequency=${round === 1 ? 440 : 880}:sample_rate=48000`);
  if (video && audio) a.push('-map', '0:v', '-map', '1:a');
  return a;
}

function rtmpUrl(name, key) {
  return `rtmp://127.0.0.1:${RP}/live/${name}?key=${key}`;
}

const X264 = ['-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-b:v', '1M', '-maxrate', '1M', '-bufsize', '2M'];
const AAC = ['-c:a', 'aac', '-b:a', '64k'];

const PUBLISHERS = [
  { id: 'x264', label: 'ffmpeg libx264 defaults (High, B-frames, -g 250), 1 Mbit/s', gop: 10, cmd: (u) => ['ffmpeg', [...lavfi({}), ...X264, ...AAC, '-f', 'flv', u]] },
  { id: 'bf0', label: 'ffmpeg libx264 -bf 0', gop: 10, cmd: (u) => ['ffmpeg', [...lavfi({}), ...X264, '-bf', '0', ...AAC, '-f', 'flv', u]] },
  { id: 'g30', label: 'ffmpeg libx264 -g 30', gop: 1.2, cmd: (u) => ['ffmpeg', [...lavfi({}), ...X264, '-g', '30', ...AAC, '-f', 'flv', u]] },
  {
    id: 'gst',
    label: 'GStreamer x264enc ! flvmux ! rtmpsink',
    gop: 2,
    cmd: (u) => [
      'gst-launch-1.0',
      ['-q', 'videotestsrc', 'is-live=true', 'pattern=smpte', 'horizontal-speed=1', '!', `video/x-raw,width=${W},height=${H},framerate=${FPS}/1`, '!', 'videoconvert', '!',
        'x264enc', 'bitrate=1000', 'key-int-max=50', 'speed-preset=veryfast', '!', 'video/x-h264,profile=main', '!', 'h264parse', '!', 'flvmux', 'name=m', 'streamable=true', '!',
        'rtmpsink', `location=${u} live=1`,
        'audiotestsrc', 'is-live=true', 'freq=440', '!', 'audio/x-raw,rate=48000,channels=1', '!', 'audioconvert', '!', 'avenc_aac', '!', 'aacparse', '!', 'm.'],
    ],
  },
  { id: 'audio', label: 'ffmpeg audio only (AAC)', gop: 1, media: 'audio', cmd: (u) => ['ffmpeg', [...lavfi({ video: false }), ...AAC, '-f', 'flv', u]] },
  { id: 'video', label: 'ffmpeg video only (libx264 -g 50)', gop: 2, cmd: (u) => ['ffmpeg', [...lavfi({ audio: false }), ...X264, '-g', '50', '-f', 'flv', u]] },
  { id: 'reconnect', label: 'ffmpeg -g 50 that stops and reconnects', gop: 2, reconnect: true, cmd: (u, round) => ['ffmpeg', [...lavfi({ round }), ...X264, '-g', '50', ...AAC, '-f', 'flv', u]] },
  { id: 'badkey', label: 'wrong key (must be refused)', gop: 2, badKey: true, cmd: (u) => ['ffmpeg', [...lavfi({}), ...X264, '-g', '50', ...AAC, '-t', '12', '-f', 'flv', u]] },
];

function publish(pub, key, round = 1) {
  const [cmd, args] = pub.cmd(rtmpUrl(pub.id, key), round);
  const full = cmd === 'ffmpeg' ? ['-nostdin', '-hide_banner', '-v', 'error', ...args] : args;
  return start(cmd, full, { name: `publish-${pub.id}` });
}

async function streamState(name) {
  return (await api('GET', `/streams/${name}`)).json?.status?.state;
}

/** Polls a stream's playlist every second: media sequence, segment lengths, discontinuities. */
function watchPlaylist(name) {
  const w = { polls: 0, seq: [], problems: [], durations: [], disc: 0, stop: false, ok200: 0 };
  let lastSeq = null;
  let lastFirstUri = null;
  const loop = async () => {
    while (!w.stop) {
      try {
        const r = await fetch(url(name, 'HLS'));
        const text = await r.text();
        w.polls++;
        if (r.status === 200) {
          w.ok200++;
          const m = /#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(text);
          const seq = m ? Number(m[1]) : null;
          const durs = [...text.matchAll(/#EXTINF:([\d.]+)/g)].map((x) => Number(x[1]));
          const uris = text.split('\n').filter((l) => l && !l.startsWith('#'));
          const td = Number(/#EXT-X-TARGETDURATION:(\d+)/.exec(text)?.[1]);
          w.disc = Math.max(w.disc, (text.match(/#EXT-X-DISCONTINUITY\b/g) || []).length);
          for (const d of durs) w.durations.push(d);
          if (durs.some((d) => Math.round(d) > td)) w.problems.push(`EXTINF ${Math.max(...durs)} > TARGETDURATION ${td}`);
          if (seq != null && lastSeq != null && seq < lastSeq) {
            w.problems.push(`media sequence went back ${lastSeq} → ${seq}${/DISCONTINUITY/.test(text) ? '' : ' with no EXT-X-DISCONTINUITY'}`);
          }
          if (seq != null && lastSeq === seq && lastFirstUri && uris[0] !== lastFirstUri) w.problems.push(`media sequence ${seq} names two different first segments`);
          if (seq != null) {
            lastSeq = seq;
            lastFirstUri = uris[0];
            w.seq.push(seq);
          }
        }
      } catch (e) {
        /* server busy: next poll */
      }
      await sleep(1000);
    }
  };
  w.done = loop();
  return w;
}

function playlistVerdict(w, pub) {
  const why = [...new Set(w.problems)];
  if (w.ok200 === 0) why.push('no playlist ever');
  const d = [...w.durations].sort((a, b) => a - b);
  const med = d.length ? d[Math.floor(d.length / 2)] : null;
  // Brume's contract: keyframe-aligned segments of about 1 s (a GOP when it is longer).
  if (med != null && med < 0.5) why.push(`segments too short: median EXTINF ${med.toFixed(3)} s`);
  if (pub.reconnect && w.disc === 0) why.push('no EXT-X-DISCONTINUITY after the reconnect');
  const note = `media sequence ${w.seq[0] ?? '–'}…${w.seq[w.seq.length - 1] ?? '–'}, median segment ${med == null ? '–' : med.toFixed(2)} s${w.disc ? `, ${w.disc} discontinuities` : ''}`;
  return why.length ? { status: 'FAIL', note: `${why.join('; ')} (${note})` } : { status: 'pass', note };
}

/** Bytes a new MP4 viewer receives in its first 3 s (raw socket, nothing decoded). */
function bytesIn(u, ms) {
  return new Promise((resolve) => {
    let n = 0;
    let headerDone = false;
    const req = http.get(u, (res) => {
      res.on('data', (d) => {
        headerDone = true;
        n += d.length;
      });
      res.on('error', () => {});
    });
    req.on('error', () => {});
    setTimeout(() => {
      req.destroy();
      resolve({ bytes: n, headerDone });
    }, ms);
  });
}

const figures = { mp4Bytes: null };

async function runPublisher(pub) {
  const key = `k-${pub.id}-${process.pid}`;
  const created = await api('POST', '/streams', { name: pub.id, source: { type: 'rtmp', key } });
  if (created.status >= 300) {
    record('publishers', pub.label, 'setup', { status: 'FAIL', note: `creating the stream: ${created.status} ${created.text.slice(0, 200)}` });
    return;
  }
  if (pub.badKey) {
    const p = publish(pub, 'not-the-key');
    const t0 = now();
    let live = false;
    let hls = 0;
    while (!p.exited && now() - t0 < 10000) {
      if ((await streamState(pub.id)) === 'live') live = true;
      const r = await fetch(url(pub.id, 'TS'), { signal: AbortSignal.timeout(800) }).catch(() => null);
      if (r && r.status === 200) hls = 200;
      r?.body?.cancel().catch(() => {});
      await sleep(300);
    }
    const refusedAfter = p.exited ? (now() - t0) / 1000 : null;
    p.kill('SIGKILL');
    await p.done;
    saveLog(`publisher-${pub.id}.log`, p);
    const why = [];
    if (refusedAfter == null) why.push('the publisher was still sending after 10 s');
    else if (p.code === 0) why.push('ffmpeg exited 0 (published?)');
    if (live) why.push('the stream went live');
    if (hls === 200) why.push('/badkey.ts answered 200');
    const v = why.length ? { status: 'FAIL', note: why.join('; ') } : { status: 'pass', note: `refused: ffmpeg exit ${p.code} after ${refusedAfter.toFixed(1)} s: ${excerpt(p, /./, 1)}` };
    record('publishers', pub.label, 'refused', v);
    return;
  }
  let p = publish(pub, key);
  const t0 = now();
  const pl = watchPlaylist(pub.id);
  try {
    await waitFor(20000, `${pub.id} live`, async () => p.exited || (await streamState(pub.id)) === 'live');
    if (p.exited) throw new Error(`the publisher exited ${p.code}: ${excerpt(p, /./)}`);
  } catch (e) {
    pl.stop = true;
    p.kill('SIGKILL');
    await p.done;
    saveLog(`publisher-${pub.id}.log`, p);
    for (const o of ['HLS', 'MP4', 'TS', 'hls.js']) record('publishers', pub.label, o, { status: 'FAIL', note: e.message });
    return;
  }
  const tracks = (await api('GET', `/streams/${pub.id}`)).json?.status?.tracks || [];
  const hasJpeg = tracks.some((t) => t.codec === 'jpeg');
  const cells = [];
  const playS = pub.reconnect ? 18 : PLAY_S;
  const deadlineS = pub.reconnect ? 45 : pub.gop >= 10 ? 50 : PLAY_S + 25;
  const judgeReconnect = (r) => {
    // Across the reconnect: frames must keep coming for 5 s after the new publisher.
    if (!pub.reconnect || !r.times) return r;
    const after = r.times.filter((t) => t + r.startAt > pub.back + 1000).length;
    if (after < 5 * rate('MP4', pub.media) * 0.8) r.errors.push(`${after} frames after the reconnect (expected ≥ ${Math.floor(4 * rate('MP4', pub.media))})`);
    return r;
  };
  // MP4 and TS viewers join as soon as the stream is live; HLS ones when a segment is out.
  for (const o of ['MP4', 'TS']) {
    cells.push((async () => {
      const s0 = now();
      const r = await ffmpegPlay(url(pub.id, o), o, { file: `publisher-${pub.id}-${slug(o)}.log`, playS, deadlineS, ...(pub.reconnect ? { stopAt: playS * 1000 + 4000 } : {}) });
      r.startAt = s0;
      judgeReconnect(r);
      record('publishers', pub.label, o, judge(r, o, pub.media), { detail: r.note });
    })());
  }
  if (pub.id === 'x264') {
    // A new MP4 viewer of a 1 Mbit/s, -g 250 stream, 7 s into the GOP.
    cells.push((async () => {
      await sleep(Math.max(0, 7000 - (now() - t0)));
      const b = await bytesIn(url(pub.id, 'MP4'), 3000);
      const gopBytes = (1e6 / 8) * pub.gop;
      const limit = (1e6 / 8) * (pub.gop + 3) * 1.1;
      figures.mp4Bytes = { bytes: b.bytes, gopBytes, limit };
      const v = b.bytes <= limit && b.bytes > 0
        ? { status: 'pass', note: `${(b.bytes / 1e6).toFixed(2)} MB in 3 s (one 10 s GOP at 1 Mbit/s is ${(gopBytes / 1e6).toFixed(2)} MB)` }
        : { status: 'FAIL', note: `${(b.bytes / 1e6).toFixed(2)} MB in 3 s; one GOP plus 3 s is ${(limit / 1.1 / 1e6).toFixed(2)} MB` };
      record('publishers', pub.label, 'MP4 first 3 s', v);
    })());
  }
  cells.push((async () => {
    await waitFor(deadlineS * 1000, `${pub.id} first HLS segment`, async () => {
      const r = await fetch(url(pub.id, 'HLS')).catch(() => null);
      return r && r.status === 200 && /#EXTINF/.test(await r.text());
    }).catch(() => null);
    const [f, c] = await Promise.all([
      (async () => {
        const s0 = now();
        const r = await ffmpegPlay(url(pub.id, 'HLS'), 'HLS', { file: `publisher-${pub.id}-hls.log`, playS, deadlineS, ...(pub.reconnect ? { stopAt: playS * 1000 + 4000 } : {}) });
        r.startAt = s0;
        return judgeReconnect(r);
      })(),
      chromePlay(url(pub.id, 'HLS'), 'hlsjs', 'HLS', { file: `publisher-${pub.id}-hlsjs.log`, playS, deadlineS }),
    ]);
    record('publishers', pub.label, 'HLS', judge(f, 'HLS', pub.media), { detail: f.note });
    record('publishers', pub.label, 'hls.js', judge(c, 'HLS', c.audioOnly ? 'audio' : pub.media), { detail: c.note });
  })());
  if (pub.reconnect) {
    cells.push((async () => {
      await sleep(7000);
      p.kill('SIGINT');
      await within(p, 5000);
      saveLog(`publisher-${pub.id}-1.log`, p);
      await sleep(2000);
      pub.back = now();
      p = publish(pub, key, 2);
    })());
  }
  await Promise.all(cells);
  pl.stop = true;
  await pl.done;
  record('publishers', pub.label, 'playlist', playlistVerdict(pl, pub));
  for (const o of ['MJPEG', 'JPEG']) record('publishers', pub.label, o, { status: 'n/a', note: hasJpeg ? 'not checked' : 'an RTMP stream has no JPEG track' });
  p.kill('SIGINT');
  await within(p, 5000);
  saveLog(`publisher-${pub.id}.log`, p);
  await api('DELETE', `/streams/${pub.id}`);
}

async function publishersMatrix() {
  // Two publishers at a time: each encodes in real time on a 2-core machine.
  await pool(PUBLISHERS.map((pub) => () => runPublisher(pub).catch((e) => record('publishers', pub.label, 'run', { status: 'FAIL', note: `test error: ${e.stack}` }))), 2);
}

// ------------------------------------------------------------------ first frame, --measure
const MEASURED = ['hls.js', 'Chromium', 'VLC', 'mpv', 'playbin', 'playbin3', 'ffmpeg'];
async function firstFrame(player, output) {
  const plan = cellPlan(player, output);
  if (typeof plan === 'string') return null;
  const o = { firstOnly: true };
  let r;
  switch (player) {
    case 'ffmpeg': {
      // ffmpeg has no "first frame then stop" switch: decode 1 s, note the first frame.
      r = await ffmpegPlay(url('demo', output), output, { playS: 1, deadlineS: 20 });
      break;
    }
    default:
      r = await plan(o);
  }
  return r.firstMs;
}

const median = (xs) => {
  const s = xs.filter((x) => x != null).sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : null;
};

async function measure() {
  const rows = [];
  for (const player of MEASURED) {
    const row = { player };
    for (const output of ['HLS', 'MP4', 'TS']) {
      if (typeof cellPlan(player, output) === 'string') {
        row[output] = 'n/a';
        continue;
      }
      const xs = [];
      for (let i = 0; i < 5; i++) xs.push(await firstFrame(player, output).catch(() => null));
      const ok = xs.filter((x) => x != null);
      row[output] = ok.length ? `${(median(xs) / 1000).toFixed(2)} s${ok.length < 5 ? ` (${5 - ok.length}/5 no frame)` : ''}` : 'no frame';
      log(`${elapsed()} measure ${player} ${output}: ${xs.map((x) => (x == null ? '–' : (x / 1000).toFixed(2))).join(' ')} → ${row[output]}`);
    }
    rows.push(row);
  }
  return rows;
}

// ------------------------------------------------------------------ report
function table(rows, cols, cell) {
  const head = ['', ...cols];
  const body = rows.map((r) => [r, ...cols.map((c) => cell(r, c))]);
  const widths = head.map((_, i) => Math.max(...[head, ...body].map((x) => String(x[i]).length)));
  const line = (xs) => `| ${xs.map((x, i) => String(x).padEnd(widths[i])).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

function mark(section, row, col) {
  const r = results.find((x) => x.section === section && x.row === row && x.col === col);
  if (!r) return '';
  return r.status === 'pass' ? 'pass' : r.status === 'n/a' ? 'n/a' : r.status === 'known' ? 'known' : 'FAIL';
}

function report(measured) {
  const lines = [];
  const players = [...PLAYERS, 'ffprobe'].filter((p) => results.some((r) => r.section === 'players' && r.row === p));
  if (players.length) {
    lines.push('', `Players × outputs (demo stream, ${Math.round((playersStarted - demoStarted) / 1000)} s old: H.264 ${W}x${H} ${FPS} fps + AAC + JPEG ${JPEG_FPS} fps; each cell plays ≥ ${PLAY_S} s):`, '');
    lines.push(table(players, OUTPUTS, (p, o) => mark('players', p, o)));
    lines.push('', `First frame after the request (ffprobe: time to open), one sample each, ${PAR} cells at once (ms):`, '');
    lines.push(table(players, ['HLS', 'MP4', 'TS'], (p, o) => {
      const r = results.find((x) => x.section === 'players' && x.row === p && x.col === o);
      return r?.firstMs != null ? String(Math.round(r.firstMs)) : r?.status === 'n/a' ? 'n/a' : '–';
    }));
  }
  const pubs = PUBLISHERS.map((p) => p.label).filter((l) => results.some((r) => r.section === 'publishers' && r.row === l));
  if (pubs.length) {
    const cols = ['HLS', 'MP4', 'TS', 'MJPEG', 'JPEG', 'hls.js', 'playlist'];
    lines.push('', `Publishers × outputs (ffmpeg -v error decodes ≥ ${PLAY_S} s of each; hls.js plays the HLS; the playlist is watched):`, '');
    lines.push(table(pubs, cols, (l, c) => {
      if (l.startsWith('wrong key')) return c === 'HLS' ? mark('publishers', l, 'refused') : '';
      return mark('publishers', l, c);
    }));
  }
  if (figures.mp4Bytes) {
    const f = figures.mp4Bytes;
    lines.push('', `A new MP4 viewer of the 1 Mbit/s -g 250 stream got ${f.bytes} bytes in its first 3 s (one GOP: ${f.gopBytes}; limit, one GOP + 3 s + 10 %: ${Math.round(f.limit)}).`);
  }
  if (measured) {
    lines.push('', 'Request to first frame, median of 5, one player at a time:', '');
    lines.push(table(measured.map((r) => r.player), ['HLS', 'MP4', 'TS'], (p, o) => measured.find((r) => r.player === p)[o]));
  }
  const knowns = results.filter((r) => r.status === 'known');
  if (knowns.length) {
    lines.push('', 'Known player problems (not counted as failures):');
    for (const r of knowns) lines.push(`  ${r.section}: ${r.row} × ${r.col}: ${r.note}`);
  }
  const fails = results.filter((r) => r.status === 'FAIL');
  if (fails.length) {
    lines.push('', 'Failures:');
    for (const r of fails) lines.push(`  ${r.section}: ${r.row} × ${r.col}: ${r.note}`);
  }
  const text = lines.join('\n');
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(path.join(OUT, 'report.md'), `${text}\n`);
  log(text);
}

// ------------------------------------------------------------------ main
async function main() {
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT, { recursive: true });
  const limit = setTimeout(() => {
    log('interop: over the 14 min limit, stopping');
    cleanup().finally(() => process.exit(2));
  }, 14 * 60_000);
  let measured = null;
  try {
    await startServer();
    log(`${elapsed()} brume on http 127.0.0.1:${HP}, rtmp ${RP}; logs in ${path.relative(repo, OUT)}`);
    await startBrowser();
    if (MEASURE) {
      measured = await measure();
    } else {
      if (ONLY !== 'players') await publishersMatrix();
      if (ONLY !== 'publishers') {
        // Players meet streams that have been running for a while: the demo stream's
        // media timeline starts at its uptime, and a player that handles only a
        // timeline near 0 must show it here.
        const age = DEMO_AGE_S * 1000 - (now() - demoStarted);
        if (age > 0) {
          log(`${elapsed()} waiting ${Math.ceil(age / 1000)} s for the demo stream to be ${DEMO_AGE_S} s old`);
          await sleep(age);
        }
        await playersMatrix();
        await probeOpen();
      }
    }
  } catch (e) {
    record('setup', 'interop', 'run', { status: 'FAIL', note: e.stack });
  } finally {
    clearTimeout(limit);
    await cleanup();
  }
  report(measured);
  const passed = results.filter((r) => r.status === 'pass').length;
  const failed = results.filter((r) => r.status === 'FAIL').length;
  const na = results.filter((r) => r.status === 'n/a').length;
  const known = results.filter((r) => r.status === 'known').length;
  log(`\ninterop: ${((now() - T0) / 1000).toFixed(0)} s, ${na} n/a, ${known} known player problems`);
  log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

async function cleanup() {
  for (const p of [...started]) if (p !== server) p.kill('SIGKILL');
  await stopBrowser();
  await stopServer();
  if (TMP) fs.rmSync(TMP, { recursive: true, force: true });
}

// Whatever goes wrong in the test itself, the server and the players it started go.
process.on('uncaughtException', (e) => {
  log(`interop: test error: ${e.stack}`);
  cleanup().finally(() => {
    log('0 passed, 1 failed');
    process.exit(1);
  });
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    cleanup().finally(() => process.exit(130));
  });
}

main();
