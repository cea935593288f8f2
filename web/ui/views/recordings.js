// Recordings: a start/stop button per stream with its live recording state, and the
// recorded files grouped by stream and date (from `<stream>/<YYYY-MM-DD>/<file>.mp4`),
// each played in the page, downloaded or deleted. Refreshed every 2 s.

import * as api from '../api.js';
import { bytes, clear, duration, every, h } from '../dom.js';

/** The download URL of a recording (each path segment encoded). */
export function recordingUrl(path) {
  return '/api/v1/recordings/' + path.split('/').map(encodeURIComponent).join('/');
}

/** Starts or stops recording `name`; returns the new recording state. */
export async function toggleRecording(name, active) {
  const p = `/streams/${encodeURIComponent(name)}/recording`;
  return (await (active ? api.del(p) : api.post(p))).recording;
}

/** One line about a stream's recording state. */
export function recText(rec) {
  if (!rec) return 'Not recording';
  if (rec.active) {
    const since = rec.since_ms ? ` since ${new Date(rec.since_ms).toLocaleTimeString()} (${duration((Date.now() - rec.since_ms) / 1000)})` : '';
    return `Recording${since}`;
  }
  if (rec.error) return `Stopped: ${rec.error}`;
  return 'Not recording';
}

export function recordingsView(root) {
  const problem = h('p', { class: 'error', id: 'rec-problem', hidden: true });
  const controls = h('div', { class: 'rec-controls', id: 'rec-controls' });
  const video = h('video', { id: 'rec-player', controls: true, playsInline: true, muted: true, preload: 'auto' });
  video.muted = true;
  const playing = h('p', { class: 'muted', id: 'rec-playing' });
  const closeBtn = h('button', { type: 'button', class: 'small', id: 'rec-close' }, 'Close');
  const player = h('div', { class: 'rec-player panel', hidden: true }, video, h('div', { class: 'actions' }, playing, closeBtn));
  const list = h('div', { id: 'recordings' });
  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Recordings')),
    problem,
    h('h2', {}, 'Record'),
    controls,
    player,
    h('h2', {}, 'Files'),
    list);

  const rows = new Map();
  let listSig = null;
  let current = null; // path being played

  function fail(e) {
    problem.textContent = e.message;
    problem.hidden = false;
  }

  function stopPlayer() {
    current = null;
    video.pause();
    video.removeAttribute('src');
    video.load();
    player.hidden = true;
    for (const el of list.querySelectorAll('.recording.playing')) el.classList.remove('playing');
  }
  closeBtn.addEventListener('click', stopPlayer);

  function playFile(path) {
    current = path;
    player.hidden = false;
    playing.textContent = path;
    video.src = recordingUrl(path);
    video.play().catch(() => {});
    for (const el of list.querySelectorAll('.recording')) el.classList.toggle('playing', el.dataset.path === path);
    player.scrollIntoView({ block: 'nearest' });
  }

  function row(s) {
    let r = rows.get(s.name);
    if (!r) {
      const state = h('span', { class: 'rec-state' });
      const btn = h('button', { type: 'button', class: 'small' });
      btn.addEventListener('click', async () => {
        btn.disabled = true;
        try {
          r.rec = await toggleRecording(r.name, r.rec && r.rec.active);
          problem.hidden = true;
          render(r);
          await refresh();
        } catch (e) {
          fail(e);
        } finally {
          btn.disabled = false;
        }
      });
      r = { name: s.name, state, btn, rec: null, el: h('div', { class: 'rec-row', dataset: { stream: s.name } }, h('strong', {}, s.name), state, btn) };
      rows.set(s.name, r);
    }
    r.rec = s.status.recording || null;
    render(r);
    return r;
  }

  function render(r) {
    const active = !!(r.rec && r.rec.active);
    r.el.dataset.active = active ? 'true' : 'false';
    r.state.textContent = recText(r.rec);
    r.state.className = `rec-state${active ? ' on' : r.rec && r.rec.error ? ' error' : ''}`;
    r.btn.textContent = active ? 'Stop recording' : 'Start recording';
    r.btn.classList.toggle('primary', !active);
  }

  function renderList(recs) {
    const active = [...rows.values()].map((x) => (x.rec && x.rec.active ? x.rec.file : null));
    const sig = JSON.stringify([active, recs.map((r) => [r.path, r.size])]);
    if (sig === listSig) return;
    listSig = sig;
    if (!recs.length) {
      clear(list, h('p', { class: 'empty' }, 'No recordings yet. Start one above.'));
      return;
    }
    const groups = new Map(); // stream -> date -> [rec]
    for (const r of recs) {
      const [stream, date] = r.path.split('/');
      if (!groups.has(stream)) groups.set(stream, new Map());
      const g = groups.get(stream);
      if (!g.has(date)) g.set(date, []);
      g.get(date).push(r);
    }
    const out = [];
    for (const [stream, dates] of [...groups].sort((a, b) => a[0].localeCompare(b[0]))) {
      const sec = h('section', { class: 'rec-stream', dataset: { stream } }, h('h3', {}, stream));
      for (const [date, items] of [...dates].sort((a, b) => b[0].localeCompare(a[0]))) {
        const ul = h('ul', { class: 'rec-list' });
        for (const r of items.slice().reverse()) ul.append(item(r));
        sec.append(h('h4', { class: 'muted' }, date), ul);
      }
      out.push(sec);
    }
    clear(list, out);
  }

  function item(r) {
    const name = r.path.split('/').pop();
    const at = r.start ? new Date(r.start) : r.modified_ms ? new Date(r.modified_ms) : null;
    const writing = [...rows.values()].some((x) => x.rec && x.rec.active && x.rec.file === r.path);
    const del = h('button', { type: 'button', class: 'small danger', disabled: writing, title: writing ? 'Being written; stop the recording first' : null }, 'Delete');
    del.addEventListener('click', async () => {
      if (!confirm(`Delete the recording ${r.path}?`)) return;
      del.disabled = true;
      try {
        await api.del(`/recordings/${r.path.split('/').map(encodeURIComponent).join('/')}`);
        if (current === r.path) stopPlayer();
        problem.hidden = true;
        await refresh();
      } catch (e) {
        del.disabled = false;
        fail(e);
      }
    });
    return h('li', { class: `recording${current === r.path ? ' playing' : ''}`, dataset: { path: r.path } },
      h('div', { class: 'rec-info' },
        h('span', { class: 'rec-time' }, at ? at.toLocaleTimeString() : name),
        h('span', { class: 'muted' }, `${bytes(r.size)}${writing ? ' · recording' : ''}`),
        h('span', { class: 'muted rec-name' }, name)),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'small play', onclick: () => playFile(r.path) }, 'Play'),
        h('a', { class: 'button small', href: recordingUrl(r.path), download: name }, 'Download'),
        del));
  }

  async function refresh() {
    let streams, recordings;
    try {
      [{ streams }, { recordings }] = await Promise.all([api.get('/streams'), api.get('/recordings')]);
    } catch (e) {
      fail(e);
      return;
    }
    const seen = new Set();
    for (const s of streams) {
      seen.add(s.name);
      controls.append(row(s).el);
    }
    for (const [name, r] of rows) {
      if (!seen.has(name)) {
        r.el.remove();
        rows.delete(name);
      }
    }
    if (!streams.length) clear(controls, h('p', { class: 'muted' }, 'No streams to record.'));
    else controls.querySelector(':scope > p')?.remove();
    renderList(recordings);
  }

  const stop = every(2000, refresh);
  return () => {
    stop();
    stopPlayer();
  };
}
