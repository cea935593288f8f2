// Pushes: streams sent to other RTMP servers (a platform's ingest, another Brume). Each
// with its state, Start/Stop, edit and delete; refreshed every 2 s. The API never
// returns a push's stream key, so editing asks for the whole URL again.

import * as api from '../api.js';
import { clear, duration, every, h } from '../dom.js';
import { check, clearErrors, field, fieldPath, select, showError, text } from '../form.js';

const STATE_TEXT = { connecting: 'connecting', pushing: 'pushing', retrying: 'retrying', stopped: 'stopped' };

export function pushesView(root) {
  const problem = h('p', { class: 'error', hidden: true });
  const addBtn = h('button', { type: 'button', class: 'primary', id: 'new-push' }, '+ New push');
  const editor = h('div', { id: 'push-editor', hidden: true });
  const list = h('div', { class: 'push-list', id: 'pushes' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Pushes'), addBtn),
    h('p', { class: 'muted intro' }, 'A push sends a stream to another server over RTMP, e.g. a streaming platform. It runs always, or when started here or by a trigger, and reconnects when the connection drops.'),
    problem,
    editor,
    list);

  let pushes = [];
  let sig = null;
  let gone = false;

  function fail(e) {
    problem.textContent = e.message;
    problem.hidden = false;
  }

  async function act(btn, f) {
    btn.disabled = true;
    try {
      await f();
      problem.hidden = true;
      sig = null;
      await refresh();
    } catch (e) {
      fail(e);
    } finally {
      btn.disabled = false;
    }
  }

  function render() {
    const s = JSON.stringify(pushes);
    if (s === sig) return;
    sig = s;
    if (!pushes.length) {
      clear(list, h('p', { class: 'empty' }, 'No pushes yet.'));
      return;
    }
    clear(list, pushes.map((p) => {
      const enc = encodeURIComponent(p.name);
      const toggle = h('button', { type: 'button', class: `small start-stop${p.active ? '' : ' primary'}` }, p.active ? 'Stop' : 'Start');
      toggle.addEventListener('click', () => act(toggle, () => api.post(`/pushes/${enc}/${p.active ? 'stop' : 'start'}`)));
      const del = h('button', { type: 'button', class: 'small danger' }, 'Delete');
      del.addEventListener('click', () => {
        if (confirm(`Delete the push "${p.name}"?`)) act(del, () => api.del(`/pushes/${enc}`));
      });
      const since = p.since_ms && p.state === 'pushing' ? ` for ${duration((Date.now() - p.since_ms) / 1000)}` : '';
      return h('article', { class: 'push-row', dataset: { push: p.name, state: p.state, active: String(!!p.active) } },
        h('div', { class: 'push-main' },
          h('h3', {}, p.name, ' ', h('span', { class: `state state-${p.state}` }, STATE_TEXT[p.state] || p.state), p.always_on ? h('span', { class: 'tag' }, 'always on') : null),
          h('p', { class: 'muted push-url' }, `${p.stream} → ${p.url}`),
          p.state === 'pushing' || p.attempts ? h('p', { class: 'muted' }, `${p.attempts} connection${p.attempts === 1 ? '' : 's'}${since}`) : null,
          p.error ? h('p', { class: 'error last-error' }, p.error) : null),
        h('div', { class: 'actions' },
          toggle,
          h('button', { type: 'button', class: 'small edit', onclick: () => openEditor(p) }, 'Edit'),
          del));
    }));
  }

  async function refresh() {
    try {
      pushes = (await api.get('/pushes')).pushes;
      if (gone) return;
      problem.hidden = true;
      render();
    } catch (e) {
      fail(e);
    }
  }

  function closeEditor() {
    clear(editor);
    editor.hidden = true;
    addBtn.disabled = false;
  }

  async function openEditor(p) {
    let streams;
    try {
      streams = (await api.get('/streams')).streams.map((s) => s.name);
    } catch (e) {
      fail(e);
      return;
    }
    if (gone) return;
    addBtn.disabled = true;
    clear(editor, pushForm(p, streams, {
      cancel: closeEditor,
      save: async (name, body) => {
        await api.put(`/pushes/${encodeURIComponent(name)}`, body);
        closeEditor();
        sig = null;
        await refresh();
      },
    }));
    editor.hidden = false;
    editor.querySelector('input:not([readonly]), select')?.focus();
  }
  addBtn.addEventListener('click', () => openEditor(null));

  const stop = every(2000, refresh);
  return () => {
    gone = true;
    stop();
  };
}

function pushForm(p, streams, { cancel, save }) {
  const formError = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const name = text(p ? p.name : '', { id: 'p-name', readOnly: !!p, placeholder: 'e.g. youtube' });
  const opts = streams.map((s) => [s, s]);
  if (p && !streams.includes(p.stream)) opts.push([p.stream, `${p.stream} (no such stream now)`]);
  const stream = select(opts, p ? p.stream : streams[0], { id: 'p-stream' });
  const url = text('', { id: 'p-url', inputmode: 'url', placeholder: 'rtmp://host/app/stream-key' });
  const always = check('Always on: pushed whenever Brume runs', p && p.always_on, { id: 'p-always' });
  const saveBtn = h('button', { type: 'submit', class: 'primary', id: 'p-save' }, p ? 'Save push' : 'Add push');
  const form = h('form', { class: 'panel push-form', id: 'push-form', novalidate: true },
    h('h2', {}, p ? `Edit ${p.name}` : 'New push'),
    formError,
    h('div', { class: 'row' },
      field('name', 'Name', name, p ? null : 'Letters, digits, - _ and .'),
      field('stream', 'Stream', stream, opts.length ? null : 'No streams yet.')),
    field('url', 'Server URL with the stream key', url,
      p ? `Now ${p.url}; the key is not shown, so enter the whole URL again.` : 'As the platform gives it: rtmp://host[:port]/app/key'),
    h('div', { class: 'field', dataset: { field: 'always_on' } }, always),
    h('div', { class: 'actions' }, saveBtn, h('button', { type: 'button', onclick: cancel }, 'Cancel')));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const n = name.value.trim();
    if (!n) {
      showError(form, 'name', 'a name for the push');
      return;
    }
    saveBtn.disabled = true;
    try {
      await save(n, { stream: stream.value, url: url.value.trim(), always_on: always.input.checked });
    } catch (e) {
      const f = fieldPath(e.field);
      showError(form, f === `pushes.${n}` ? 'name' : f && f.startsWith(`pushes.${n}.`) ? f.slice(n.length + 8) : f, e.message);
    } finally {
      saveBtn.disabled = false;
    }
  });
  return form;
}
