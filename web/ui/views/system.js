// System: version and figures, restart a stream, export and import the configuration,
// update the software (see update.js), and the recent logs of every Brume process.

import * as api from '../api.js';
import { clear, duration, every, h, stateBadge } from '../dom.js';
import { renderSystem } from './dashboard.js';
import { updatePanel } from './update.js';

export function systemView(root) {
  const facts = h('dl', { class: 'stats wide', id: 'system-facts' });
  const tiles = h('div', { class: 'tiles' });
  const streams = h('div', { class: 'restart-list', id: 'restart-list' });
  const cfgMsg = h('p', { class: 'hint', id: 'config-message', role: 'status' });
  const fileInput = h('input', { type: 'file', accept: 'application/json,.json', id: 'import-file', hidden: true });
  const exportBtn = h('button', { type: 'button', id: 'export' }, 'Export configuration');
  const importBtn = h('button', { type: 'button', id: 'import' }, 'Import configuration…');
  const logs = h('pre', { class: 'logs', id: 'logs', tabindex: 0 });
  const follow = h('input', { type: 'checkbox', checked: true });
  const update = updatePanel();

  root.append(
    h('h1', {}, 'System'),
    facts,
    tiles,
    h('h2', {}, 'Streams'),
    streams,
    h('h2', {}, 'Configuration'),
    h('p', {}, 'Export saves every stream and setting as a JSON file (the admin password is not in it). Import replaces them all; an invalid file changes nothing.'),
    h('div', { class: 'actions' }, exportBtn, importBtn, fileInput),
    cfgMsg,
    h('h2', {}, 'Software update'),
    update.el,
    h('div', { class: 'page-head' }, h('h2', {}, 'Recent logs'), h('label', { class: 'check' }, follow, ' Follow')),
    logs);

  exportBtn.addEventListener('click', async () => {
    try {
      const cfg = await api.get('/config');
      const blob = new Blob([JSON.stringify(cfg, null, 2) + '\n'], { type: 'application/json' });
      const a = h('a', { href: URL.createObjectURL(blob), download: `brume-config-${location.hostname || 'board'}.json` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      cfgMsg.textContent = 'Configuration exported.';
    } catch (e) {
      cfgMsg.textContent = e.message;
    }
  });
  importBtn.addEventListener('click', () => fileInput.click());
  fileInput.addEventListener('change', async () => {
    const f = fileInput.files[0];
    fileInput.value = '';
    if (!f) return;
    try {
      const text = await f.text();
      try {
        JSON.parse(text);
      } catch (e) {
        throw new Error(`${f.name} is not JSON: ${e.message}`);
      }
      const cfg = await api.put('/config', text);
      cfgMsg.textContent = `Imported ${f.name}: ${Object.keys(cfg.streams || {}).length} stream(s).`;
      refresh();
    } catch (e) {
      cfgMsg.textContent = `Nothing changed: ${e.field ? `${e.field}: ` : ''}${e.message}`;
    }
  });

  let restartSig = null;
  function renderStreams(list) {
    const sig = JSON.stringify(list.map((s) => [s.name, s.status.state, s.config.source.type]));
    if (sig === restartSig) return;
    restartSig = sig;
    if (!list.length) {
      clear(streams, h('p', { class: 'muted' }, 'No streams.'));
      return;
    }
    clear(streams, list.map((s) => {
      const btn = h('button', { type: 'button', class: 'small', disabled: s.config.source.type === 'rtmp', title: s.config.source.type === 'rtmp' ? 'RTMP streams are started by their publisher' : null }, 'Restart');
      btn.addEventListener('click', async () => {
        btn.disabled = true;
        try {
          await api.post(`/streams/${encodeURIComponent(s.name)}/restart`);
          restartSig = null;
          refresh();
        } catch (e) {
          cfgMsg.textContent = e.message;
        } finally {
          btn.disabled = false;
        }
      });
      return h('div', { class: 'restart-row', dataset: { stream: s.name } }, h('span', {}, h('b', {}, s.name), ' ', stateBadge(s.status.state)), btn);
    }));
  }

  async function refresh() {
    const [sys, { streams: list }, { lines }] = await Promise.all([
      api.get('/system'), api.get('/streams'), api.get('/logs?limit=300')]);
    clear(facts,
      h('div', {}, h('dt', {}, 'Version'), h('dd', { id: 'version' }, `Brume ${sys.version}`)),
      h('div', {}, h('dt', {}, 'Board up'), h('dd', {}, duration(sys.uptime_s))),
      h('div', {}, h('dt', {}, 'Brume up'), h('dd', {}, duration(sys.controller_uptime_s))),
      h('div', {}, h('dt', {}, 'RTMP port'), h('dd', {}, sys.rtmp_port === null ? 'off' : String(sys.rtmp_port ?? '—'))));
    renderSystem(tiles, sys);
    update.render(sys);
    renderStreams(list);
    const text = lines.join('\n');
    if (logs.textContent !== text) {
      logs.textContent = text;
      if (follow.checked) logs.scrollTop = logs.scrollHeight;
    }
  }
  return every(2000, refresh);
}
