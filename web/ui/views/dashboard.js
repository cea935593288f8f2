// Dashboard: every stream (state, live thumbnail, viewers, bitrate, restarts, last
// error) and the board (CPU, memory, temperature, disk, uptime), refreshed every 2 s.

import * as api from '../api.js';
import { bytes, clear, duration, every, h, kbps, sourceText, stateBadge } from '../dom.js';
import { Thumbnail } from '../thumb.js';
import { recText, toggleRecording } from './recordings.js';

export function dashboardView(root) {
  const grid = h('div', { class: 'grid', id: 'streams' });
  const sys = h('div', { class: 'tiles', id: 'system-tiles' });
  const problem = h('p', { class: 'error', hidden: true });
  root.append(
    h('div', { class: 'page-head' },
      h('h1', {}, 'Streams'),
      h('a', { class: 'button primary', href: '#/new', id: 'new-stream' }, '+ New stream')),
    problem,
    grid,
    h('h2', {}, 'This board'),
    sys);

  const cards = new Map();

  async function refresh() {
    let streams, system;
    try {
      [{ streams }, system] = await Promise.all([api.get('/streams'), api.get('/system')]);
      problem.hidden = true;
    } catch (e) {
      problem.textContent = e.message;
      problem.hidden = false;
      return;
    }
    const seen = new Set();
    for (const s of streams) {
      seen.add(s.name);
      let c = cards.get(s.name);
      if (!c) {
        c = new Card(s.name);
        cards.set(s.name, c);
      }
      grid.append(c.el); // keeps the API's (sorted) order
      c.update(s);
    }
    for (const [name, c] of cards) {
      if (!seen.has(name)) {
        c.remove();
        cards.delete(name);
      }
    }
    if (!streams.length) {
      clear(grid, h('p', { class: 'empty' }, 'No streams yet. ', h('a', { href: '#/new' }, 'Create one'), ': a synthetic test picture needs no hardware.'));
    } else {
      grid.querySelector('.empty')?.remove();
    }
    renderSystem(sys, system);
  }

  const stop = every(2000, refresh);
  return () => {
    stop();
    for (const c of cards.values()) c.remove();
  };
}

class Card {
  constructor(name) {
    this.name = name;
    this.thumb = new Thumbnail(name);
    this.stats = h('dl', { class: 'stats' });
    this.err = h('p', { class: 'error last-error', hidden: true });
    this.title = h('h3', {}, name);
    this.src = h('p', { class: 'muted source' });
    const enc = encodeURIComponent(name);
    this.rec = null;
    this.recBtn = h('button', { type: 'button', class: 'rec-toggle' }, 'Record');
    this.recBtn.addEventListener('click', async () => {
      this.recBtn.disabled = true;
      try {
        this.rec = await toggleRecording(this.name, this.rec && this.rec.active);
        this.renderRec();
      } catch (e) {
        this.err.hidden = false;
        this.err.textContent = e.message;
      } finally {
        this.recBtn.disabled = false;
      }
    });
    this.el = h('article', { class: 'card stream', dataset: { stream: name } },
      h('a', { class: 'thumb-link', href: `#/watch/${enc}`, 'aria-label': `Watch ${name}` }, this.thumb.el),
      h('div', { class: 'card-body' },
        this.title, this.src, this.stats, this.err,
        h('div', { class: 'actions' },
          h('a', { class: 'button', href: `#/watch/${enc}` }, 'Watch'),
          h('a', { class: 'button', href: `#/edit/${enc}` }, 'Edit'),
          this.recBtn)));
  }

  renderRec() {
    const on = !!(this.rec && this.rec.active);
    this.recBtn.textContent = on ? 'Stop recording' : 'Record';
    this.recBtn.title = recText(this.rec);
    this.el.dataset.recording = on ? 'true' : 'false';
    const badge = this.title.querySelector('.rec-badge');
    if (on && !badge) this.title.append(' ', h('span', { class: 'rec-badge', title: recText(this.rec) }, 'REC'));
    else if (!on && badge) badge.remove();
  }

  update(s) {
    const st = s.status;
    clear(this.title, s.name, ' ', stateBadge(st.state));
    this.src.textContent = sourceText(s.config) + (s.config.always_on || s.config.source.type === 'rtmp' ? '' : ' · on demand');
    clear(this.stats,
      stat('Viewers', st.viewers, 'viewers'),
      stat('Bitrate', st.state === 'live' ? kbps(st.bitrate_kbps) : '—', 'bitrate'),
      stat('Input restarts', st.restarts, 'restarts'));
    this.err.hidden = !st.last_error;
    this.err.textContent = st.last_error ? `Last error: ${st.last_error}` : '';
    this.rec = st.recording || null;
    this.renderRec();
    this.thumb.update(s);
  }

  remove() {
    this.thumb.stop();
    this.el.remove();
  }
}

function stat(label, value, key) {
  return h('div', { dataset: { stat: key } }, h('dt', {}, label), h('dd', {}, String(value)));
}

function meter(fraction) {
  const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
  const m = h('meter', { min: 0, max: 100, value: pct, low: 70, high: 90, optimum: 0 });
  return m;
}

function tile(key, label, value, detail, fraction) {
  return h('div', { class: 'tile', dataset: { tile: key } },
    h('div', { class: 'tile-label' }, label),
    h('div', { class: 'tile-value' }, value),
    fraction === undefined ? null : meter(fraction),
    h('div', { class: 'tile-detail muted' }, detail));
}

export function renderSystem(el, s) {
  const cpus = s.cpus || 1;
  const load = (s.load && s.load[0]) || 0;
  const mem = s.memory || {};
  const used = mem.total_kib && mem.available_kib !== null ? mem.total_kib - mem.available_kib : null;
  const disk = s.disk;
  clear(el,
    tile('cpu', 'CPU load', load.toFixed(2), `1-minute average on ${cpus} core${cpus > 1 ? 's' : ''}`, load / cpus),
    tile('memory', 'Memory', used === null ? '—' : bytes(used * 1024),
      mem.total_kib ? `of ${bytes(mem.total_kib * 1024)}; Brume's controller ${bytes((mem.controller_rss_kib || 0) * 1024)}` : 'not reported',
      used === null ? undefined : used / mem.total_kib),
    tile('temperature', 'Temperature', s.temperature_c === null || s.temperature_c === undefined ? '—' : `${s.temperature_c.toFixed(1)} °C`,
      s.temperature_c === null || s.temperature_c === undefined ? 'no sensor reported' : 'SoC'),
    tile('disk', 'Disk', disk ? `${bytes(disk.free_bytes)} free` : '—', disk ? `of ${bytes(disk.total_bytes)} (${disk.path})` : 'not reported',
      disk && disk.total_bytes ? 1 - disk.free_bytes / disk.total_bytes : undefined),
    tile('uptime', 'Uptime', duration(s.uptime_s), `Brume: ${duration(s.controller_uptime_s)}`));
}
