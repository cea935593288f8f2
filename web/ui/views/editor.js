// Stream editor: create, edit and delete streams. The API validates; its errors
// ({"error", "field"}, 422) appear next to the field they name, and a refused save
// changes nothing on the board.

import * as api from '../api.js';
import { clear, copyField, h } from '../dom.js';
import { joinArgs } from '../form.js';
import { cameraBox } from './camera.js';

const SIZES = [[320, 180], [640, 360], [1280, 720], [1920, 1080]];
const NEW_TESTSRC = { type: 'testsrc', width: 640, height: 360, fps: 25, bitrate_kbps: 800, audio: true, tone_hz: 440, jpeg_fps: 2 };

/** A labelled input whose errors from the API (by field name) show under it. */
function field(name, label, input, hint) {
  input.id = input.id || `f-${name.replace(/\W/g, '-')}`;
  input.name = name;
  return h('div', { class: 'field', dataset: { field: name } },
    h('label', { for: input.id }, label),
    input,
    hint ? h('p', { class: 'hint' }, hint) : null);
}

const num = (value, attrs) => h('input', { type: 'number', inputmode: 'numeric', value: value ?? '', ...attrs });

function randomKey() {
  const abc = 'abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => abc[x % abc.length]).join('');
}

/** Form text to JSON: whole numbers as numbers, empty as "use the default", anything
 * else as typed (the API then names the field). */
function numberOf(text) {
  const t = text.trim();
  if (t === '') return undefined;
  return /^-?\d+$/.test(t) ? Number(t) : t;
}

export function editorView(root, { params, go }) {
  const editing = params[0] || null;
  const view = h('section', { class: 'panel editor' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(view);
  let gone = false;

  Promise.all([
    editing ? api.get(`/streams/${encodeURIComponent(editing)}`) : Promise.resolve(null),
    api.get('/system').catch(() => ({})),
    fetch('/api/v1/devices', { cache: 'no-store' }).then((r) => (r.ok ? r.json() : { missing: r.status })).catch(() => ({ missing: 0 })),
  ]).then(([stream, system, devices]) => {
    if (!gone) build(view, { editing, stream, system, devices, go });
  }, (e) => {
    if (!gone) clear(view, h('p', { class: 'error' }, e.message), h('a', { href: '#/' }, 'Back to the dashboard'));
  });
  return () => {
    gone = true;
  };
}

function build(view, { editing, stream, system, devices, go }) {
  const cfg = stream ? stream.config : { source: { ...NEW_TESTSRC }, always_on: false, idle_timeout_s: 30 };
  const src = cfg.source;
  const t = src.type === 'testsrc' ? src : NEW_TESTSRC;
  // An existing RTMP stream's key is never sent to the page (the API answers "…"):
  // it stays as it is unless a new one is made, which is shown once.
  const keyHidden = Boolean(editing) && src.type === 'rtmp';
  let shownKey = null; // a key made while this page is open
  const rtmpKey = keyHidden ? '' : randomKey();

  const formError = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const nameInput = h('input', { type: 'text', value: editing || '', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. garden' });

  // Source choice.
  const choice = (value, label, note, disabled) =>
    h('label', { class: `choice${disabled ? ' disabled' : ''}` },
      h('input', { type: 'radio', name: 'source-type', value, checked: src.type === value, disabled }),
      h('span', {}, h('b', {}, label), note ? h('small', {}, note) : null));
  const hasDevices = !('missing' in devices);
  const deviceNote = hasDevices ? 'a V4L2 camera and/or an ALSA microphone on this board' : 'no devices API yet';
  // A source this form has no fields for yet (a camera stream made through the API)
  // is kept and edited as JSON rather than lost.
  const known = ['testsrc', 'rtmp', 'camera', 'rtsp'].includes(src.type);
  const sourceChoices = h('div', { class: 'choices', role: 'radiogroup', 'aria-label': 'Source' },
    choice('testsrc', 'Synthetic test picture', 'moving picture with the time, and a tone; no hardware needed'),
    choice('rtmp', 'RTMP publish', 'OBS, ffmpeg or a camera pushes to the board'),
    choice('camera', 'Camera and microphone', deviceNote, !hasDevices && src.type !== 'camera'),
    choice('rtsp', 'RTSP camera', 'an IP camera or another RTSP server, pulled by the board'),
    known ? null : choice(src.type, `Current source (${src.type})`, 'edited as JSON below'));
  const camera = cameraBox(src, hasDevices ? devices : {}, field, num);
  const rawSource = h('textarea', { rows: 10, spellcheck: 'false', class: 'code' });
  rawSource.value = JSON.stringify(src, null, 2);
  const rawBox = h('div', { class: 'source-box', dataset: { source: 'raw' } }, field('source', 'Source settings (JSON)', rawSource));

  // Synthetic source fields.
  const w = num(t.width, { min: 16, max: 3840, step: 2 });
  const hgt = num(t.height, { min: 16, max: 2160, step: 2 });
  const presets = h('div', { class: 'presets' }, SIZES.map(([pw, ph]) =>
    h('button', { type: 'button', class: 'small', onclick: () => { w.value = pw; hgt.value = ph; } }, `${pw}×${ph}`)));
  const fps = num(t.fps, { min: 1, max: 60 });
  const bitrate = num(t.bitrate_kbps, { min: 50, max: 50000, step: 50 });
  const jpeg = num(t.jpeg_fps, { min: 0, max: 60 });
  const audio = h('input', { type: 'checkbox', checked: t.audio });
  const tone = num(t.tone_hz, { min: 20, max: 20000 });
  const testsrcBox = h('div', { class: 'source-box', dataset: { source: 'testsrc' } },
    h('div', { class: 'row' },
      field('source.width', 'Width (pixels)', w),
      field('source.height', 'Height (pixels)', hgt)),
    presets,
    h('div', { class: 'row' },
      field('source.fps', 'Frames per second', fps),
      field('source.bitrate_kbps', 'Video bitrate (kbit/s)', bitrate)),
    h('div', { class: 'row' },
      field('source.jpeg_fps', 'Snapshots per second', jpeg, 'JPEG pictures for thumbnails, /NAME.jpg and MJPEG; 0 for none'),
      h('div', { class: 'field', dataset: { field: 'source.audio' } },
        h('label', { class: 'check' }, audio, ' Audio tone'),
        field('source.tone_hz', 'Tone (Hz)', tone))));

  // RTMP fields.
  const key = h('input', { type: 'text', value: rtmpKey, autocomplete: 'off', spellcheck: 'false' });
  const publish = h('div', { class: 'publish' });
  const keyMessage = h('p', { class: 'hint', id: 'key-message', role: 'status' });
  const newKeyBtn = h('button', { type: 'button', class: 'small', id: 'new-key' }, 'New key');
  const keyBox = keyHidden
    ? h('div', { class: 'field', dataset: { field: 'source.key' } },
      h('span', { class: 'copy-label' }, 'Stream key'),
      h('div', { class: 'row key-row' }, h('code', { id: 'key-hidden' }, '••••'), newKeyBtn),
      h('p', { class: 'hint' }, 'The key was shown once, when it was made. A new key replaces it: publishers with the old key are refused when they next connect.'),
      keyMessage)
    : h('div', { class: 'row key-row' },
      field('source.key', 'Stream key', key, 'Anyone with the key can publish to this stream. 4 to 128 of A-Z a-z 0-9 - _ . ~. It is shown here until the stream is saved, then never again.'),
      h('button', { type: 'button', class: 'small', onclick: () => { key.value = randomKey(); showPublish(); } }, 'New key'));
  const rtmpBox = h('div', { class: 'source-box', dataset: { source: 'rtmp' } }, keyBox, publish);
  newKeyBtn.addEventListener('click', async () => {
    if (!confirm(`Make a new key for "${editing}"? Publishers with the old key are refused when they next connect.`)) return;
    newKeyBtn.disabled = true;
    try {
      const r = await api.post(`/streams/${encodeURIComponent(editing)}/key`);
      shownKey = r.key;
      keyMessage.textContent = 'New key made. Copy it now: it is not shown again.';
      showPublish();
    } catch (e) {
      keyMessage.textContent = e.message;
    } finally {
      newKeyBtn.disabled = false;
    }
  });
  const port = system && 'rtmp_port' in system ? system.rtmp_port : 1935;
  const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
  function showPublish() {
    const name = editing || nameInput.value.trim() || 'NAME';
    if (port === null) {
      clear(publish, h('p', { class: 'error' }, 'RTMP ingest is switched off on this board (brume serve --rtmp off).'));
      return;
    }
    const server = `rtmp://${host}:${port}/live`;
    const k = keyHidden ? (shownKey || '••••') : key.value;
    clear(publish,
      h('h3', {}, 'Publish to'),
      keyHidden && shownKey ? copyField('Stream key (shown once)', shownKey) : null,
      copyField('URL (ffmpeg, cameras)', `${server}/${name}?key=${k}`),
      h('p', { class: 'hint' }, 'In OBS: Settings → Stream → Custom, with:'),
      copyField('OBS server', server),
      copyField('OBS stream key', `${name}?key=${k}`));
  }
  key.addEventListener('input', showPublish);
  nameInput.addEventListener('input', showPublish);
  showPublish();

  // RTSP camera fields. A saved URL's password comes back as "…": sent back unchanged
  // (same user, host and path), the board keeps the password it has.
  const rtspSrc = src.type === 'rtsp' ? src : { url: '', transport: 'auto' };
  const rtspUrl = h('input', { type: 'text', value: rtspSrc.url, autocomplete: 'off', spellcheck: 'false', placeholder: 'rtsp://user:password@192.168.1.20:554/stream1' });
  const rtspTransport = h('select', {},
    [['auto', 'Automatic (TCP, then UDP)'], ['tcp', 'TCP (through firewalls, no loss)'], ['udp', 'UDP (lowest delay on a LAN)']]
      .map(([v, label]) => h('option', { value: v, selected: (rtspSrc.transport || 'auto') === v }, label)));
  const rtspBox = h('div', { class: 'source-box', dataset: { source: 'rtsp' } },
    field('source.url', 'Camera URL', rtspUrl, 'The camera\'s RTSP URL, with its user and password if it asks for them (percent-encode @ : / in them). Once saved, the password is shown as … and kept.'),
    field('source.transport', 'Transport', rtspTransport),
    h('p', { class: 'hint' }, 'H.264 (and H.265, carried as is) with AAC or G.711 audio; G.711 is encoded to AAC. When the camera cannot be reached the stream shows device-missing and the board keeps trying.'));

  // Who may watch: read credentials on every output (RTSP Digest or Basic, HTTP Basic).
  const read = cfg.read || null;
  const readUser = h('input', { type: 'text', value: read ? read.user : '', autocomplete: 'off', spellcheck: 'false', placeholder: 'none: anyone may watch' });
  const readPassword = h('input', { type: 'password', value: read ? read.password : '', autocomplete: 'new-password' });
  const readBox = h('fieldset', { class: 'read', dataset: { field: 'read' } },
    h('legend', {}, 'Viewer credentials'),
    h('div', { class: 'row' },
      field('read.user', 'User', readUser),
      field('read.password', 'Password', readPassword)),
    h('p', { class: 'hint' }, 'When set, players must give them: rtsp://user:password@… (NVRs, VLC, ffmpeg) and http://user:password@… for HLS, MP4 and TS. Leave the user empty for a stream anyone on the network may watch. The board keeps only a hash of the password.'));

  // When it runs.
  const always = h('input', { type: 'radio', name: 'start', value: 'always', checked: cfg.always_on });
  const onDemand = h('input', { type: 'radio', name: 'start', value: 'demand', checked: !cfg.always_on });
  const idle = num(cfg.idle_timeout_s, { min: 1, max: 86400 });
  const idleField = field('idle_timeout_s', 'Stop after this many seconds without viewers', idle);
  const startBox = h('fieldset', { class: 'start', dataset: { field: 'always_on' } },
    h('legend', {}, 'When it runs'),
    h('label', { class: 'check' }, always, ' Always on'),
    h('label', { class: 'check' }, onDemand, ' On demand: starts when someone watches'),
    idleField);
  const rtmpStart = h('p', { class: 'hint' }, 'An RTMP stream is live while its publisher sends.');

  function sync() {
    const type = view.querySelector('input[name=source-type]:checked')?.value || 'testsrc';
    testsrcBox.hidden = type !== 'testsrc';
    rtmpBox.hidden = type !== 'rtmp';
    camera.el.hidden = type !== 'camera';
    rtspBox.hidden = type !== 'rtsp';
    rawBox.hidden = known || type !== src.type;
    startBox.hidden = type === 'rtmp';
    rtmpStart.hidden = type !== 'rtmp';
    idleField.hidden = always.checked;
  }

  // Stream processes are shown, not edited here; a save keeps them (and `record`).
  const procs = cfg.processes || [];
  const procBox = procs.length ? h('fieldset', { class: 'processes', id: 'stream-processes' },
    h('legend', {}, 'Stream processes'),
    h('ul', { class: 'proc-list' }, procs.map((p) => h('li', { dataset: { process: p.name } },
      h('b', {}, p.name), ' ', h('code', {}, joinArgs(p.command)),
      h('span', { class: 'muted' }, ` · ${p.tracks || 'all'} tracks → ${p.no_output ? 'no output' : p.output ? `stream ${p.output}` : 'this stream'} · restart: ${p.restart || 'always'}`)))),
    h('p', { class: 'hint' }, 'Programs fed this stream; their process.<name> events can start triggers. Change them in the configuration (System: export, edit, import) or through the API; saving here keeps them.')) : null;

  const save = h('button', { type: 'submit', class: 'primary', id: 'save' }, editing ? 'Save' : 'Create stream');
  const del = editing ? h('button', { type: 'button', class: 'danger', id: 'delete' }, 'Delete stream') : null;
  const form = h('form', { id: 'stream-form', novalidate: true },
    h('h1', {}, editing ? `Edit ${editing}` : 'New stream'),
    formError,
    editing ? null : field('name', 'Name', nameInput, 'Letters, digits, - and _. It appears in every URL: /NAME.mp4, /hls/NAME/…'),
    h('fieldset', { dataset: { field: 'source' } }, h('legend', {}, 'Source'), sourceChoices),
    testsrcBox,
    rtmpBox,
    camera.el,
    rtspBox,
    rawBox,
    startBox,
    rtmpStart,
    readBox,
    procBox,
    h('div', { class: 'actions' }, save, h('a', { class: 'button', href: editing ? `#/watch/${encodeURIComponent(editing)}` : '#/' }, 'Cancel'), del));
  form.addEventListener('change', sync);
  clear(view, form);
  sync();

  function clearErrors() {
    formError.hidden = true;
    for (const e of form.querySelectorAll('.field-error')) e.remove();
    for (const e of form.querySelectorAll('.invalid')) e.classList.remove('invalid');
  }

  function showError(e) {
    const where = e.field ? form.querySelector(`[data-field="${CSS.escape(e.field)}"]`) : null;
    if (where && !where.closest('[hidden]')) {
      where.classList.add('invalid');
      where.append(h('p', { class: 'field-error', role: 'alert' }, e.message));
      where.querySelector('input:not([type=radio])')?.focus();
    } else {
      formError.textContent = e.field ? `${e.field}: ${e.message}` : e.message;
      formError.hidden = false;
    }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors();
    const type = form.querySelector('input[name=source-type]:checked').value;
    let raw = null;
    if (type === 'camera') {
      raw = camera.source();
    } else if (type === 'rtsp') {
      raw = { type: 'rtsp', url: rtspUrl.value.trim(), transport: rtspTransport.value };
    } else if (type !== 'testsrc' && type !== 'rtmp') {
      try {
        raw = JSON.parse(rawSource.value);
      } catch (e) {
        showError({ field: 'source', message: `not valid JSON: ${e.message}` });
        return;
      }
    }
    const body = {
      source: raw || (type === 'rtmp'
        ? { type: 'rtmp', key: keyHidden ? '…' : key.value.trim() }
        : {
          type: 'testsrc',
          width: numberOf(w.value), height: numberOf(hgt.value), fps: numberOf(fps.value),
          bitrate_kbps: numberOf(bitrate.value), audio: audio.checked, tone_hz: numberOf(tone.value),
          jpeg_fps: numberOf(jpeg.value),
        }),
      always_on: type !== 'rtmp' && always.checked,
      idle_timeout_s: numberOf(idle.value),
    };
    if (cfg.record) body.record = true;
    const user = readUser.value.trim();
    if (user) body.read = { user, password: readPassword.value };
    if (procs.length) body.processes = procs;
    save.disabled = true;
    try {
      const r = editing
        ? await api.put(`/streams/${encodeURIComponent(editing)}`, body)
        : await api.post('/streams', { name: nameInput.value.trim(), ...body });
      if (r && r.key) {
        showKeyOnce(view, r, go);
        return;
      }
      go('#/');
    } catch (e) {
      showError(e);
    } finally {
      save.disabled = false;
    }
  });

  del?.addEventListener('click', async () => {
    if (!confirm(`Delete the stream "${editing}"? Its viewers are disconnected and its settings removed.`)) return;
    try {
      await api.del(`/streams/${encodeURIComponent(editing)}`);
      go('#/');
    } catch (e) {
      showError(e);
    }
  });
}

/** After a save that made a publish key: the key and the publish URLs, this once. */
function showKeyOnce(view, stream, go) {
  const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
  const box = h('div', { class: 'publish' });
  api.get('/system').catch(() => ({})).then((system) => {
    const port = system && 'rtmp_port' in system ? system.rtmp_port : 1935;
    const server = `rtmp://${host}:${port}/live`;
    const name = encodeURIComponent(stream.name);
    clear(box,
      copyField('Stream key', stream.key),
      port === null ? h('p', { class: 'error' }, 'RTMP ingest is switched off on this board (brume serve --rtmp off).') : [
        copyField('URL (ffmpeg, cameras)', `${server}/${name}?key=${stream.key}`),
        h('p', { class: 'hint' }, 'In OBS: Settings → Stream → Custom, with:'),
        copyField('OBS server', server),
        copyField('OBS stream key', `${name}?key=${stream.key}`)]);
  });
  clear(view, h('section', { id: 'key-once' },
    h('h1', {}, `${stream.name} is saved`),
    h('p', {}, 'Its publish key is shown this once. Copy it now: Brume never shows it again (the editor can make a new one).'),
    box,
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', id: 'key-done', onclick: () => go('#/') }, 'Done'))));
}
