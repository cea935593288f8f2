// Triggers: what Brume does when an event fires (a webhook, a program, a GPIO output or
// one of its own actions), with an editor that builds the trigger list (PUT replaces it
// whole; the API's field errors show next to their field), then the recent handler runs
// and events, refreshed every 3 s while the page is open.

import * as api from '../api.js';
import { clear, every, h } from '../dom.js';
import { check, clearErrors, clock, field, fieldPath, joinArgs, num, numberOf, select, showError, splitArgs, text } from '../form.js';

const BLOCKING = 'viewer.requested';

const ABOUT = {
  'system.start': 'Brume started',
  'system.stop': 'Brume stops',
  'stream.added': 'a stream was created',
  'stream.changed': 'a stream’s settings changed',
  'stream.removed': 'a stream was deleted',
  'stream.started': 'an input started',
  'stream.ready': 'a stream went live',
  'stream.ended': 'a stream ended',
  'input.crashed': 'an input crashed',
  'connection.opened': 'a viewer connected',
  'connection.closed': 'a viewer left',
  'viewer.requested': 'a viewer asks to watch: allow or deny',
  'recording.started': 'a recording started',
  'recording.ended': 'a recording ended',
  'push.started': 'a push connected',
  'push.ended': 'a push stopped',
  'process.exited': 'a stream process exited',
  'gpio.edge': 'a GPIO input changed',
  'disk.low': 'the disk is nearly full',
};

const HANDLERS = [
  ['webhook', 'Webhook', 'POST the event as JSON to a URL'],
  ['exec', 'Run a program', 'the event as JSON on its standard input'],
  ['gpio', 'GPIO output', 'set, clear, toggle, pulse or blink a pin'],
  ['action', 'Brume action', 'record, push or restart a stream'],
];

const ACTIONS = {
  start_recording: 'Start recording',
  stop_recording: 'Stop recording',
  toggle_recording: 'Start or stop recording',
  start_push: 'Start a push',
  stop_push: 'Stop a push',
  restart_stream: 'Restart the stream',
};

const GPIO_ACTIONS = { set: 'Set (on)', clear: 'Clear (off)', toggle: 'Toggle', pulse: 'Pulse (on, then off)', blink: 'Blink' };

const names = (t) => (Array.isArray(t.event) ? t.event : [t.event]);

/** `pin=button active=true`: strings bare unless they would read as something else. */
export function matchText(m) {
  return Object.entries(m || {}).map(([k, v]) =>
    `${k}=${typeof v === 'string' && /^[^\s,"=]+$/.test(v) && !/^(true|false|null|-?\d)/.test(v) ? v : JSON.stringify(v)}`).join(' ');
}

function parseMatch(s) {
  const out = {};
  const re = /([^\s=,]+)=("(?:[^"\\]|\\.)*"|[^\s,]*)/g;
  const rest = s.replace(re, (all, k, v) => {
    let val = v;
    if (/^(true|false|null|-?\d+(\.\d+)?)$/.test(v) || v.startsWith('"')) {
      try {
        val = JSON.parse(v);
      } catch (e) {
        val = v;
      }
    }
    out[k] = val;
    return '';
  });
  if (rest.replace(/[\s,]/g, '')) throw new Error(`write field=value pairs (not understood: ${rest.trim()})`);
  return out;
}

function handlerText(hd) {
  switch (hd.type) {
    case 'webhook':
      return `Webhook: POST ${hd.url}`;
    case 'exec':
      return `Run ${joinArgs(hd.command)}`;
    case 'gpio': {
      const a = GPIO_ACTIONS[hd.action] || hd.action;
      const extra = hd.action === 'pulse' ? ` ${hd.ms ?? 500} ms` : hd.action === 'blink' ? ` ${hd.count === 0 ? 'until changed' : `${hd.count ?? 3}×`}, ${hd.ms ?? 500} ms` : '';
      return `GPIO ${hd.pin}: ${a}${extra}`;
    }
    case 'action': {
      const a = ACTIONS[hd.action] || hd.action;
      if (hd.action === 'start_push' || hd.action === 'stop_push') return `${a}: ${hd.push}`;
      return `${a} of ${hd.stream || 'the event’s stream'}`;
    }
    default:
      return hd.type;
  }
}

function resultBadge(r) {
  return h('span', { class: `result result-${r.result}` }, r.result);
}

export function triggersView(root) {
  const problem = h('p', { class: 'error', hidden: true });
  const addBtn = h('button', { type: 'button', class: 'primary', id: 'new-trigger' }, '+ New trigger');
  const editor = h('div', { id: 'trigger-editor', hidden: true });
  const list = h('div', { class: 'trigger-list', id: 'trigger-list' }, h('p', { class: 'muted' }, 'Loading…'));
  const runs = h('ul', { class: 'log-list', id: 'trigger-runs' });
  const events = h('ul', { class: 'log-list', id: 'recent-events' });
  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Triggers'), addBtn),
    h('p', { class: 'muted intro' }, 'When an event fires, Brume calls a webhook, runs a program, drives a GPIO output or starts one of its own actions. Each trigger has its own queue, so its handler gets the events in the order they fired.'),
    problem,
    editor,
    list,
    h('h2', {}, 'Recent runs'),
    runs,
    h('h2', {}, 'Recent events'),
    events);

  let triggers = null;
  let eventNames = [];
  let lastRuns = [];
  let editing = undefined; // undefined: closed; null: new; n: index
  let gone = false;
  let runSig = null;
  let eventSig = null;

  function fail(e) {
    problem.textContent = e.message;
    problem.hidden = false;
  }

  function renderList() {
    if (!triggers.length) {
      clear(list, h('p', { class: 'empty' }, 'No triggers yet. ', h('button', { type: 'button', class: 'link', onclick: () => openEditor(null) }, 'Add one'), ': e.g. a button that starts recording, or a webhook on every new viewer.'));
      return;
    }
    clear(list, triggers.map((t, i) => {
      const last = [...lastRuns].reverse().find((r) => r.trigger === i);
      const filters = [];
      if (t.streams && t.streams.length) filters.push(`streams: ${t.streams.join(', ')}`);
      if (t.match && Object.keys(t.match).length) filters.push(`when ${matchText(t.match)}`);
      return h('article', { class: 'trigger', dataset: { index: String(i) } },
        h('div', { class: 'trigger-main' },
          h('div', { class: 'trigger-events' }, names(t).map((n) => h('code', { class: `ev${n === BLOCKING ? ' blocking' : ''}` }, n))),
          filters.length ? h('p', { class: 'muted trigger-filter' }, filters.join(' · ')) : null,
          h('p', { class: 'trigger-handler' }, '→ ', handlerText(t.handler)),
          last ? h('p', { class: 'muted trigger-last' }, 'Last run ', clock(last.time), ': ', resultBadge(last), last.duration_ms !== undefined ? ` ${last.duration_ms} ms` : '') : null),
        h('div', { class: 'actions' },
          h('button', { type: 'button', class: 'small edit', onclick: () => openEditor(i) }, 'Edit'),
          h('button', { type: 'button', class: 'small danger', onclick: () => remove(i) }, 'Delete')));
    }));
  }

  async function save(list2) {
    const r = await api.put('/triggers', { triggers: list2 });
    triggers = r.triggers;
    eventNames = r.events || eventNames;
    problem.hidden = true;
    renderList();
  }

  async function remove(i) {
    if (!confirm(`Delete trigger ${i + 1} (${names(triggers[i]).join(', ')})?`)) return;
    try {
      if (editing !== undefined) closeEditor();
      await save(triggers.filter((_, j) => j !== i));
    } catch (e) {
      fail(e);
    }
  }

  function closeEditor() {
    editing = undefined;
    clear(editor);
    editor.hidden = true;
    addBtn.disabled = false;
  }

  async function openEditor(index) {
    let ctx;
    try {
      const [{ streams }, gpio, { pushes }] = await Promise.all([
        api.get('/streams'), api.get('/gpio'), api.get('/pushes')]);
      ctx = {
        events: eventNames,
        streams: streams.map((s) => s.name),
        outputs: (gpio.pins || []).filter((p) => p.direction === 'output').map((p) => p.name),
        pushes: pushes.map((p) => p.name),
      };
    } catch (e) {
      fail(e);
      return;
    }
    if (gone) return;
    editing = index;
    addBtn.disabled = true;
    clear(editor, triggerForm(index === null ? null : triggers[index], index, ctx, {
      cancel: closeEditor,
      submit: async (t) => {
        const next = triggers.slice();
        if (index === null) next.push(t);
        else next[index] = t;
        const at = `triggers.${index === null ? next.length - 1 : index}`;
        try {
          await save(next);
        } catch (e) {
          // Errors about this trigger go next to its field; others name the trigger.
          const f = fieldPath(e.field);
          if (f === at) e.field = null;
          else if (f && f.startsWith(`${at}.`)) e.field = f.slice(at.length + 1);
          else if (f) e.field = f.replace(/^triggers\.(\d+)/, (_, n) => `trigger ${Number(n) + 1}`);
          throw e;
        }
        closeEditor();
      },
    }));
    editor.hidden = false;
    editor.scrollIntoView({ block: 'nearest' });
    editor.querySelector('select')?.focus();
  }

  addBtn.addEventListener('click', () => openEditor(null));

  function renderRuns(items) {
    const sig = JSON.stringify(items.length ? [items.length, items[items.length - 1]] : []);
    if (sig === runSig) return;
    runSig = sig;
    if (!items.length) {
      clear(runs, h('li', { class: 'muted' }, 'No handler has run yet.'));
      return;
    }
    clear(runs, items.slice().reverse().map((r) => {
      const decision = r.decision ? `${r.decision}${r.default_applied ? ' (default)' : ''}` : null;
      return h('li', { class: 'run', dataset: { result: r.result, trigger: String(r.trigger), event: r.event } },
        h('span', { class: 'log-time' }, clock(r.time)),
        resultBadge(r),
        h('span', {}, h('code', {}, r.event), r.stream ? ` · ${r.stream}` : ''),
        h('span', { class: 'muted' }, `trigger ${r.trigger + 1} · ${r.handler}`),
        r.duration_ms !== undefined && r.duration_ms !== null ? h('span', { class: 'muted' }, `${r.duration_ms} ms`) : null,
        r.attempts > 1 ? h('span', { class: 'muted' }, `${r.attempts} attempts`) : null,
        decision ? h('span', { class: 'tag' }, decision) : null,
        r.detail ? h('span', { class: 'log-detail' }, r.detail) : null);
    }));
  }

  function renderEvents(items) {
    const sig = items.length ? `${items.length}:${items[items.length - 1].id}` : '';
    if (sig === eventSig) return;
    eventSig = sig;
    if (!items.length) {
      clear(events, h('li', { class: 'muted' }, 'No events yet.'));
      return;
    }
    clear(events, items.slice().reverse().map((e) => {
      const rest = Object.entries(e).filter(([k]) => !['id', 'event', 'time', 'stream'].includes(k));
      return h('li', { class: 'event', dataset: { event: e.event } },
        h('span', { class: 'log-time' }, clock(e.time)),
        h('code', {}, e.event),
        e.stream ? h('span', {}, e.stream) : null,
        rest.length ? h('span', { class: 'log-detail' }, rest.map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')) : null);
    }));
  }

  async function refresh() {
    try {
      const [t, r, ev] = await Promise.all([
        triggers === null || editing === undefined ? api.get('/triggers') : null,
        api.get('/triggers/runs?limit=50'),
        api.get('/events?limit=50'),
      ]);
      if (gone) return;
      const prevRuns = JSON.stringify(lastRuns.slice(-1));
      lastRuns = r.runs;
      if (t) {
        eventNames = t.events;
        if (JSON.stringify(t.triggers) !== JSON.stringify(triggers) || prevRuns !== JSON.stringify(lastRuns.slice(-1))) {
          triggers = t.triggers;
          renderList();
        }
      }
      renderRuns(r.runs);
      renderEvents(ev.events);
      problem.hidden = true;
    } catch (e) {
      fail(e);
    }
  }

  const stop = every(3000, refresh);
  return () => {
    gone = true;
    stop();
  };
}

/** The add/edit form of one trigger. `t` null: a new one. */
function triggerForm(t, index, ctx, { cancel, submit }) {
  const cur = t || { event: 'gpio.edge', handler: { type: 'webhook', url: '' } };
  const hd = cur.handler;
  const formError = h('p', { class: 'form-error', role: 'alert', hidden: true });

  // Events: one select per event; process.<name> events are typed.
  const known = ctx.events;
  let rowSeq = 0;
  const rows = h('div', { class: 'event-rows' });
  function eventRow(name) {
    const k = rowSeq++;
    const isProcess = name.startsWith('process.') && !known.includes(name);
    const other = !isProcess && !known.includes(name) ? [[name, name]] : [];
    const sel = select(
      known.map((n) => [n, ABOUT[n] ? `${n} · ${ABOUT[n]}` : n])
        .concat(other, [['process.', 'process.<name> · an event from a stream process']]),
      isProcess ? 'process.' : name,
      { id: `t-event-${k}`, 'aria-label': `Event ${k + 1}` });
    const proc = text(isProcess ? name.slice(8) : '', { id: `t-process-${k}`, 'aria-label': 'Process event name', placeholder: 'name, e.g. motion' });
    const procBox = h('div', { class: 'process-name' }, h('span', { 'aria-hidden': 'true' }, 'process.'), proc);
    const rm = h('button', { type: 'button', class: 'small', 'aria-label': 'Remove this event', title: 'Remove this event' }, '×');
    const row = h('div', { class: 'event-row' }, sel, procBox, rm);
    row.value = () => (sel.value === 'process.' ? `process.${proc.value.trim()}` : sel.value);
    rm.addEventListener('click', () => {
      row.remove();
      sync();
    });
    return row;
  }
  for (const n of names(cur)) rows.append(eventRow(n));
  const moreBtn = h('button', { type: 'button', class: 'small', id: 't-add-event' }, '+ Another event');
  moreBtn.addEventListener('click', () => {
    rows.append(eventRow(known[0] || 'system.start'));
    sync();
  });
  const eventBox = h('fieldset', { dataset: { field: 'event' } },
    h('legend', {}, 'When'),
    rows,
    moreBtn,
    h('p', { class: 'hint', id: 't-event-hint' }));
  const eventValues = () => [...rows.children].map((r) => r.value());

  // Filters.
  const streamNames = [...new Set(ctx.streams.concat(cur.streams || []))];
  const streamChecks = streamNames.map((s) => check(s, (cur.streams || []).includes(s), { value: s, name: 't-stream' }));
  const streamBox = h('fieldset', { dataset: { field: 'streams' } },
    h('legend', {}, 'Only for these streams'),
    streamChecks.length ? h('div', { class: 'check-grid' }, streamChecks) : h('p', { class: 'muted' }, 'No streams yet.'),
    h('p', { class: 'hint' }, 'None ticked: every stream, and the events that have no stream (system, GPIO, disk).'));
  const match = text(matchText(cur.match), { id: 't-match', placeholder: 'e.g. pin=button active=true' });
  const matchField = field('match', 'Only when the event has', match, 'field=value pairs, all of which must be equal in the event.');

  // Handler.
  const choice = (value, label, note) =>
    h('label', { class: 'choice' },
      h('input', { type: 'radio', name: 'handler-type', value, checked: hd.type === value }),
      h('span', {}, h('b', {}, label), h('small', {}, note)));
  const handlerChoices = h('fieldset', { dataset: { field: 'handler' } },
    h('legend', {}, 'Then'),
    h('div', { class: 'choices two', role: 'radiogroup', 'aria-label': 'Handler' }, HANDLERS.map(([v, l, n]) => choice(v, l, n))));
  const of = (type) => (hd.type === type ? hd : {});
  const decision = (value, id) => select([['allow', 'Allow the viewer'], ['deny', 'Deny the viewer']], value || 'allow', { id });

  const w = of('webhook');
  const url = text(w.url, { id: 't-url', inputmode: 'url', placeholder: 'http://host:port/path' });
  const wTimeout = num(w.timeout_ms ?? 5000, { id: 't-webhook-timeout', min: 100, max: 120000, step: 100 });
  const retries = num(w.retries ?? 3, { id: 't-retries', min: 0, max: 10 });
  const wDefault = decision(w.default, 't-webhook-default');
  const webhookBox = h('div', { class: 'handler-box', dataset: { handler: 'webhook' } },
    field('handler.url', 'URL', url, 'http:// only; the event is POSTed as JSON. For viewer.requested the reply decides: allow or deny, true or false, {"allow": …}, or 403.'),
    h('div', { class: 'row' },
      field('handler.timeout_ms', 'Timeout (ms)', wTimeout),
      field('handler.retries', 'Retries', retries, 'after 1 s, 2 s, 4 s…; not for viewer.requested')),
    h('div', { class: 'blocking-only' }, field('handler.default', 'When it fails or times out', wDefault)));

  const x = of('exec');
  const command = text(joinArgs(x.command), { id: 't-command', placeholder: '/usr/local/bin/on-event --verbose' });
  const xTimeout = num(x.timeout_ms ?? 5000, { id: 't-exec-timeout', min: 100, max: 120000, step: 100 });
  const xDefault = decision(x.default, 't-exec-default');
  const execBox = h('div', { class: 'handler-box', dataset: { handler: 'exec' } },
    field('handler.command', 'Program and arguments', command, 'Separated by spaces; quote an argument that has spaces. The event is on standard input, and BRUME_EVENT, BRUME_STREAM, BRUME_EVENT_ID in the environment.'),
    field('handler.timeout_ms', 'Timeout (ms)', xTimeout),
    h('div', { class: 'blocking-only' }, field('handler.default', 'When it fails or times out', xDefault, 'Otherwise it answers allow or deny on standard output; exit status 0 without an answer allows.')));

  const g = of('gpio');
  const pinOptions = ctx.outputs.map((p) => [p, p]);
  if (g.pin && !ctx.outputs.includes(g.pin)) pinOptions.push([g.pin, `${g.pin} (not an output now)`]);
  const pin = select(pinOptions, g.pin, { id: 't-pin' });
  const gAction = select(Object.entries(GPIO_ACTIONS), g.action || 'toggle', { id: 't-gpio-action' });
  const ms = num(g.ms ?? 500, { id: 't-ms', min: 10, max: 600000 });
  const count = num(g.count ?? 3, { id: 't-count', min: 0 });
  const msField = field('handler.ms', 'Length (ms)', ms, 'Pulse length, or half a blink');
  const countField = field('handler.count', 'Blinks', count, '0: until something else changes the pin');
  const gpioBox = h('div', { class: 'handler-box', dataset: { handler: 'gpio' } },
    h('div', { class: 'row' },
      field('handler.pin', 'Output pin', pin, pinOptions.length ? null : h('span', {}, 'No output pins: add one on the ', h('a', { href: '#/gpio' }, 'GPIO page'), ' first.')),
      field('handler.action', 'Action', gAction)),
    h('div', { class: 'row' }, msField, countField));

  const a = of('action');
  const action = select(Object.entries(ACTIONS), a.action || 'toggle_recording', { id: 't-action' });
  const streamOptions = [['', 'The event’s stream']].concat(ctx.streams.map((s) => [s, s]));
  if (a.stream && !ctx.streams.includes(a.stream)) streamOptions.push([a.stream, `${a.stream} (no such stream now)`]);
  const aStream = select(streamOptions, a.stream || '', { id: 't-action-stream' });
  const pushOptions = ctx.pushes.map((p) => [p, p]);
  if (a.push && !ctx.pushes.includes(a.push)) pushOptions.push([a.push, `${a.push} (no such push now)`]);
  const aPush = select(pushOptions, a.push, { id: 't-push' });
  const streamField = field('handler.stream', 'Stream', aStream);
  const pushField = field('handler.push', 'Push', aPush, pushOptions.length ? null : h('span', {}, 'No pushes: add one on the ', h('a', { href: '#/pushes' }, 'Pushes page'), ' first.'));
  const actionBox = h('div', { class: 'handler-box', dataset: { handler: 'action' } },
    h('div', { class: 'row' }, field('handler.action', 'Action', action), streamField),
    pushField);

  const boxes = { webhook: webhookBox, exec: execBox, gpio: gpioBox, action: actionBox };
  const type = () => handlerChoices.querySelector('input[name=handler-type]:checked')?.value || 'webhook';

  const saveBtn = h('button', { type: 'submit', class: 'primary', id: 't-save' }, index === null ? 'Add trigger' : 'Save trigger');
  const form = h('form', { class: 'panel trigger-form', id: 'trigger-form', novalidate: true },
    h('h2', {}, index === null ? 'New trigger' : `Trigger ${index + 1}`),
    formError,
    eventBox,
    streamBox,
    matchField,
    handlerChoices,
    webhookBox, execBox, gpioBox, actionBox,
    h('div', { class: 'actions' }, saveBtn, h('button', { type: 'button', onclick: cancel }, 'Cancel')));

  function sync() {
    const evs = eventValues();
    const blocking = evs.includes(BLOCKING);
    for (const r of rows.children) {
      r.querySelector('.process-name').hidden = r.querySelector('select').value !== 'process.';
      r.querySelector('button').hidden = rows.children.length < 2;
    }
    const hint = form.querySelector('#t-event-hint');
    hint.textContent = blocking
      ? 'viewer.requested runs while the viewer waits: its handler (a webhook or a program) answers allow or deny. It cannot share a trigger with other events.'
      : evs.includes('gpio.edge') ? 'gpio.edge carries pin, active (true when pressed or on) and edge. Match e.g. pin=button active=true.' : 'Several events: one handler gets all of them, in the order they fired.';
    for (const r of handlerChoices.querySelectorAll('input[name=handler-type]')) {
      r.disabled = blocking && (r.value === 'gpio' || r.value === 'action');
      r.closest('.choice').classList.toggle('disabled', r.disabled);
    }
    const ty = type();
    for (const [k, box] of Object.entries(boxes)) box.hidden = k !== ty;
    for (const b of form.querySelectorAll('.blocking-only')) b.hidden = !blocking;
    msField.hidden = !['pulse', 'blink'].includes(gAction.value);
    countField.hidden = gAction.value !== 'blink';
    const isPush = action.value === 'start_push' || action.value === 'stop_push';
    pushField.hidden = !isPush;
    streamField.hidden = isPush;
  }
  form.addEventListener('change', sync);
  sync();

  function build() {
    const evs = eventValues();
    const out = { event: evs.length === 1 ? evs[0] : evs };
    const streams = streamChecks.filter((c) => c.input.checked).map((c) => c.input.value);
    if (streams.length) out.streams = streams;
    let m;
    try {
      m = parseMatch(match.value);
    } catch (e) {
      throw Object.assign(e, { field: 'match' });
    }
    if (Object.keys(m).length) out.match = m;
    const ty = type();
    const blocking = evs.includes(BLOCKING);
    if (ty === 'webhook') {
      out.handler = { type: 'webhook', url: url.value.trim(), timeout_ms: numberOf(wTimeout.value), retries: numberOf(retries.value) };
      if (blocking) out.handler.default = wDefault.value;
    } else if (ty === 'exec') {
      const argv = splitArgs(command.value);
      out.handler = { type: 'exec', command: argv, timeout_ms: numberOf(xTimeout.value) };
      if (blocking) out.handler.default = xDefault.value;
    } else if (ty === 'gpio') {
      out.handler = { type: 'gpio', pin: pin.value, action: gAction.value };
      if (!msField.hidden) out.handler.ms = numberOf(ms.value);
      if (!countField.hidden) out.handler.count = numberOf(count.value);
    } else {
      out.handler = { type: 'action', action: action.value };
      if (!pushField.hidden) out.handler.push = aPush.value;
      else if (aStream.value) out.handler.stream = aStream.value;
    }
    for (const k of Object.keys(out.handler)) if (out.handler[k] === undefined) delete out.handler[k];
    return out;
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    let t2;
    try {
      t2 = build();
    } catch (e) {
      showError(form, e.field, e.message);
      return;
    }
    saveBtn.disabled = true;
    try {
      await submit(t2);
    } catch (e) {
      showError(form, e.field, e.message);
    } finally {
      saveBtn.disabled = false;
    }
  });
  return form;
}
