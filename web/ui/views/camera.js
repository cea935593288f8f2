// The camera source: a V4L2 camera and/or an ALSA microphone picked from what the
// board detected (GET /api/v1/devices), with the formats, sizes and frame rates the
// camera really offers. The fakes ("fake:camera", "fake:microphone") need no hardware.

import { clear, h } from '../dom.js';

const RATES = [8000, 16000, 22050, 24000, 32000, 44100, 48000];
const FORMAT_NAMES = { auto: 'Best available (H.264, then MJPEG, then raw)', h264: 'H.264 (passed through)', mjpeg: 'MJPEG (encoded to H.264)', yuyv: 'YUYV raw (encoded)', nv12: 'NV12 raw (encoded)', yu12: 'YU12 raw (encoded)' };

function select(options, value) {
  const s = h('select', {}, options.map(([v, label]) => h('option', { value: v }, label)));
  if (options.some(([v]) => v === value)) s.value = value;
  return s;
}

/**
 * `field(name, label, input, hint)` builds a labelled field (see editor.js). Returns the
 * box and `source()`, the configuration for the form's current values.
 */
export function cameraBox(src, devices, field, num) {
  const cur = src.type === 'camera' ? src : { video: { device: 'fake:camera', format: 'auto', width: 1280, height: 720, fps: 30 }, audio: null, bitrate_kbps: 2000, jpeg_fps: 2 };
  const video = (devices.video || []).filter((d) => d.capture);
  const audio = devices.audio || [];
  const fake = devices.fake || {};
  const devName = (d) => (d.stable_paths && d.stable_paths[0]) || d.path;

  const camOptions = [['', 'No camera']]
    .concat(video.map((d) => [devName(d), `${d.name} (${devName(d)})`]))
    .concat(fake.video ? [[fake.video, 'Test camera (synthetic, flashes every second)']] : []);
  const cv = cur.video || {};
  if (cv.device && !camOptions.some(([v]) => v === cv.device)) camOptions.push([cv.device, `${cv.device} (not detected now)`]);
  const camera = select(camOptions, cv.device || '');
  const format = h('select');
  const modes = h('select');
  const w = num(cv.width ?? 1280, { min: 16, max: 3840, step: 2 });
  const hgt = num(cv.height ?? 720, { min: 16, max: 2160, step: 2 });
  const fps = num(cv.fps ?? 30, { min: 1, max: 120 });

  const micOptions = [['', 'No microphone']]
    .concat(audio.map((a) => [a.id, `${a.card}: ${a.name} (${a.id})`]))
    .concat(fake.audio ? [[fake.audio, 'Test microphone (beeps with the test camera)']] : []);
  const ca = cur.audio || {};
  if (ca.device && !micOptions.some(([v]) => v === ca.device)) micOptions.push([ca.device, `${ca.device} (not detected now)`]);
  const mic = select(micOptions, ca.device || '');
  const rate = select(RATES.map((r) => [String(r), `${r} Hz`]), String(ca.rate ?? 48000));
  const channels = select([['1', 'Mono'], ['2', 'Stereo']], String(ca.channels ?? 1));
  const bitrate = num(cur.bitrate_kbps, { min: 50, max: 50000, step: 50 });
  const jpeg = num(cur.jpeg_fps, { min: 0, max: 120 });

  function device() {
    return video.find((d) => devName(d) === camera.value);
  }

  function fillFormats() {
    const d = device();
    const offered = d ? d.formats.filter((f) => f.format) : [];
    const opts = [['auto', FORMAT_NAMES.auto]].concat(offered.map((f) => [f.format, `${FORMAT_NAMES[f.format] || f.format} · ${f.description}`]));
    const keep = format.value || cv.format || 'auto';
    clear(format, opts.map(([v, l]) => h('option', { value: v }, l)));
    format.value = opts.some(([v]) => v === keep) ? keep : 'auto';
    fillModes();
  }

  function fillModes() {
    const d = device();
    const fmts = d ? d.formats.filter((f) => f.format && (format.value === 'auto' || f.format === format.value)) : [];
    const seen = new Set();
    const opts = [];
    for (const f of fmts) {
      for (const s of f.sizes) {
        for (const r of s.fps) {
          const k = `${s.width}x${s.height}@${Math.round(r)}`;
          if (seen.has(k) || Math.round(r) < 1) continue;
          seen.add(k);
          opts.push([k, `${s.width}×${s.height} at ${Math.round(r)} fps`]);
        }
      }
    }
    clear(modes, h('option', { value: '' }, opts.length ? 'Pick a size the camera offers…' : 'Any size (type it below)'), opts.map(([v, l]) => h('option', { value: v }, l)));
    modes.disabled = !opts.length;
  }

  modes.addEventListener('change', () => {
    const m = modes.value.match(/^(\d+)x(\d+)@(\d+)$/);
    if (m) [w.value, hgt.value, fps.value] = [m[1], m[2], m[3]];
  });
  camera.addEventListener('change', fillFormats);
  format.addEventListener('change', fillModes);

  const camFields = h('div', { class: 'camera-fields' },
    field('source.video.format', 'Format', format),
    field('camera-mode', 'Detected sizes and frame rates', modes),
    h('div', { class: 'row three' },
      field('source.video.width', 'Width', w),
      field('source.video.height', 'Height', hgt),
      field('source.video.fps', 'Frames per second', fps)));
  const micFields = h('div', { class: 'row' },
    field('source.audio.rate', 'Sample rate', rate),
    field('source.audio.channels', 'Channels', channels));
  const sync = () => {
    camFields.hidden = !camera.value;
    micFields.hidden = !mic.value;
  };
  camera.addEventListener('change', sync);
  mic.addEventListener('change', sync);

  const detected = `${video.length} camera${video.length === 1 ? '' : 's'} and ${audio.length} microphone${audio.length === 1 ? '' : 's'} detected`;
  const el = h('div', { class: 'source-box', dataset: { source: 'camera' } },
    h('p', { class: 'hint' }, detected),
    field('source.video.device', 'Camera', camera),
    camFields,
    field('source.audio.device', 'Microphone', mic),
    micFields,
    h('div', { class: 'row' },
      field('source.bitrate_kbps', 'Video bitrate when encoding (kbit/s)', bitrate, 'H.264 cameras are passed through as they are'),
      field('source.jpeg_fps', 'Snapshots per second', jpeg, 'For raw cameras; MJPEG cameras give theirs')));
  fillFormats();
  sync();

  const n = (v) => (/^\d+$/.test(v.trim()) ? Number(v) : v.trim() || undefined);
  return {
    el,
    source() {
      const s = { type: 'camera', bitrate_kbps: n(bitrate.value), jpeg_fps: n(jpeg.value) };
      if (camera.value) s.video = { device: camera.value, format: format.value, width: n(w.value), height: n(hgt.value), fps: n(fps.value), encoder: cv.encoder || 'auto' };
      if (mic.value) s.audio = { device: mic.value, rate: Number(rate.value), channels: Number(channels.value) };
      return s;
    },
  };
}
