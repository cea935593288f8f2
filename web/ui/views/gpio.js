// GPIO: the backend and its device, every pin with its live level (polled every
// second), Press for simulated inputs and On/Off for outputs; below, the form that
// replaces the pins and their state bindings (PUT /api/v1/gpio).

import * as api from '../api.js';
import { clear, every, h } from '../dom.js';
import { check, clearErrors, field, fieldPath, num, numberOf, select, showError, text } from '../form.js';

const BACKENDS = [
  ['sim', 'Simulated (no hardware)'],
  ['cdev', 'GPIO character device (any board)'],
  ['rppal', 'Raspberry Pi (rppal)'],
];
const PULLS = [['none', 'None'], ['up', 'Pull-up'], ['down', 'Pull-down']];
const WHEN = [['recording', 'is recording'], ['live', 'is live'], ['failed', 'has failed'], ['pushing', 'is pushing']];
const MODES = [['on', 'On'], ['blink', 'Blinking']];

function levelBadge(active) {
  if (active === null || active === undefined) return h('span', { class: 'level unknown' }, '—');
  return h('span', { class: `level ${active ? 'on' : 'off'}` }, active ? 'active' : 'inactive');
}

export function gpioView(root) {
  const problem = h('p', { class: 'error', hidden: true });
  const facts = h('dl', { class: 'stats wide', id: 'gpio-facts' });
  const pins = h('div', { class: 'pin-list', id: 'gpio-pins' });
  const formBox = h('div', { id: 'gpio-config' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(
    h('h1', {}, 'GPIO'),
    problem,
    facts,
    h('h2', {}, 'Pins'),
    pins,
    h('h2', {}, 'Pins and bindings'),
    h('p', { class: 'muted intro' }, 'Inputs fire gpio.edge events (use them on the Triggers page, e.g. a button that starts recording). Outputs are driven by triggers, or follow a stream’s state through a binding.'),
    formBox);

  let pinSig = null;
  let formFor; // the configuration the form shows
  let gone = false;

  function fail(e) {
    problem.textContent = e.message;
    problem.hidden = false;
  }

  function renderFacts(s) {
    const item = (k, label, v, cls) => h('div', { dataset: { fact: k } }, h('dt', {}, label), h('dd', { class: cls }, v));
    if (!s.configured) {
      clear(facts, item('backend', 'GPIO', 'not configured'));
      return;
    }
    clear(facts,
      item('backend', 'Backend', s.backend),
      s.backend === 'cdev' ? item('chip', 'Chip', s.chip) : null,
      item('device', 'Device', s.device || '—'),
      s.error ? item('error', 'Error', s.error, 'error') : null);
  }

  function renderPins(s) {
    const sig = JSON.stringify([s.backend, s.pins]);
    if (sig === pinSig) return;
    pinSig = sig;
    if (!s.pins.length) {
      clear(pins, h('p', { class: 'empty' }, s.configured ? 'No pins configured.' : 'GPIO is not configured. Add pins below; the simulated backend needs no hardware.'));
      return;
    }
    clear(pins, s.pins.map((p) => {
      const detail = [`line ${p.line}`, p.direction];
      if (p.direction === 'input' && p.pull && p.pull !== 'none') detail.push(`pull ${p.pull}`);
      if (p.active_low) detail.push('active low');
      let btn = null;
      if (p.direction === 'input' && s.backend === 'sim') {
        btn = h('button', { type: 'button', class: 'small press', 'aria-label': `Press ${p.name}` }, 'Press');
        btn.addEventListener('click', () => act(btn, () => api.post(`/gpio/pins/${encodeURIComponent(p.name)}/press?ms=150`)));
      } else if (p.direction === 'output') {
        btn = h('button', { type: 'button', class: 'small toggle', 'aria-label': `Turn ${p.name} ${p.active ? 'off' : 'on'}`, disabled: p.active === null }, p.active ? 'Turn off' : 'Turn on');
        btn.addEventListener('click', () => act(btn, () => api.put(`/gpio/pins/${encodeURIComponent(p.name)}`, { active: !p.active })));
      }
      return h('div', { class: 'pin-row', dataset: { pin: p.name, direction: p.direction, active: p.active === null ? 'unknown' : String(p.active) } },
        h('strong', {}, p.name),
        h('span', { class: 'muted' }, detail.join(' · ')),
        levelBadge(p.active),
        p.bound ? h('span', { class: 'tag', title: 'A binding drives this pin; it sets the level again when the state changes' }, 'bound') : null,
        btn);
    }));
  }

  async function act(btn, f) {
    btn.disabled = true;
    try {
      const s = await f();
      problem.hidden = true;
      if (s && s.pins) show(s);
    } catch (e) {
      fail(e);
    } finally {
      btn.disabled = false;
    }
  }

  function show(s) {
    renderFacts(s);
    renderPins(s);
  }

  async function refresh() {
    let s;
    try {
      s = await api.get('/gpio');
    } catch (e) {
      fail(e);
      return;
    }
    if (gone) return;
    problem.hidden = true;
    show(s);
    if (formFor === undefined) renderForm(s.config || null);
  }

  async function renderForm(cfg) {
    formFor = cfg;
    let streams = [];
    try {
      streams = (await api.get('/streams')).streams.map((x) => x.name);
    } catch (e) {
      fail(e);
    }
    if (gone) return;
    clear(formBox, gpioForm(cfg, streams, async (next) => {
      const s = await api.put('/gpio', next);
      pinSig = null;
      show(s);
      renderForm(s.config || null);
    }));
  }

  const stop = every(1000, refresh);
  return () => {
    gone = true;
    stop();
  };
}

/** The form of the whole GPIO configuration; `save(config or null)` may throw ApiError. */
function gpioForm(cfg, streams, save) {
  const c = cfg || { backend: 'sim', chip: 'gpiochip0', pins: {}, bindings: [] };
  const formError = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const backend = select(BACKENDS, c.backend, { id: 'g-backend' });
  const chip = text(c.chip || 'gpiochip0', { id: 'g-chip' });
  const chipField = field('gpio.chip', 'Chip', chip, 'A path, a name (gpiochip0) or a label.');
  let seq = 0;

  const pinRows = h('div', { class: 'edit-rows', id: 'g-pins' });
  function pinRow(name, p) {
    const k = seq++;
    const id = (x) => `g-pin-${k}-${x}`;
    const nameIn = text(name, { id: id('name'), placeholder: 'e.g. button' });
    const line = num(p.line, { id: id('line'), min: 0, max: 1023 });
    const dir = select([['input', 'Input'], ['output', 'Output']], p.direction || 'input', { id: id('direction') });
    const pull = select(PULLS, p.pull || 'none', { id: id('pull') });
    const low = check('Active low', p.active_low, { id: id('active_low') });
    const debounce = num(p.debounce_ms ?? 20, { id: id('debounce'), min: 0, max: 1000 });
    const initial = check('On at start', p.initial, { id: id('initial') });
    const rm = h('button', { type: 'button', class: 'small danger', 'aria-label': 'Remove this pin' }, 'Remove');
    const fields = {
      name: field('', 'Name', nameIn),
      line: field('', 'Line', line),
      direction: field('', 'Direction', dir),
      pull: field('', 'Bias', pull),
      debounce_ms: field('', 'Debounce (ms)', debounce),
      active_low: h('div', { class: 'field box' }, low),
      initial: h('div', { class: 'field box' }, initial),
    };
    const row = h('div', { class: 'edit-row pin-edit' }, Object.values(fields), h('div', { class: 'row-end' }, rm));
    row.sync = () => {
      const n = nameIn.value.trim();
      row.dataset.pin = n;
      fields.name.dataset.field = `gpio.pins.${n}`;
      for (const key of ['line', 'direction', 'pull', 'debounce_ms', 'active_low', 'initial']) fields[key].dataset.field = `gpio.pins.${n}.${key}`;
      const input = dir.value === 'input';
      fields.pull.hidden = !input;
      fields.debounce_ms.hidden = !input;
      fields.initial.hidden = input;
    };
    row.value = () => {
      const pin = { line: numberOf(line.value), direction: dir.value, active_low: low.input.checked };
      if (dir.value === 'input') Object.assign(pin, { pull: pull.value, debounce_ms: numberOf(debounce.value) });
      else pin.initial = initial.input.checked;
      for (const x of Object.keys(pin)) if (pin[x] === undefined) delete pin[x];
      return [nameIn.value.trim(), pin];
    };
    rm.addEventListener('click', () => {
      row.remove();
      sync();
    });
    nameIn.addEventListener('input', sync);
    return row;
  }
  for (const [n, p] of Object.entries(c.pins || {})) pinRows.append(pinRow(n, p));
  const addPin = h('button', { type: 'button', class: 'small', id: 'g-add-pin' }, '+ Add pin');
  addPin.addEventListener('click', () => {
    const used = new Set([...pinRows.children].map((r) => r.value()[1].line));
    let line = 17;
    while (used.has(line)) line++;
    const row = pinRow('', { line, direction: pinRows.children.length ? 'output' : 'input' });
    pinRows.append(row);
    sync();
    row.querySelector('input').focus();
  });

  const outputs = () => [...pinRows.children].map((r) => r.value()).filter(([n, p]) => n && p.direction === 'output').map(([n]) => n);
  const bindRows = h('div', { class: 'edit-rows', id: 'g-bindings' });
  function bindRow(b) {
    const k = seq++;
    const id = (x) => `g-bind-${k}-${x}`;
    const pin = select([], null, { id: id('pin') });
    pin.want = b.pin;
    const when = select(WHEN, b.when || 'recording', { id: id('when') });
    const streamOpts = streams.map((s) => [s, s]);
    if (b.stream && !streams.includes(b.stream)) streamOpts.push([b.stream, `${b.stream} (no such stream now)`]);
    const stream = select(streamOpts, b.stream, { id: id('stream') });
    const mode = select(MODES, b.mode || 'on', { id: id('mode') });
    const rm = h('button', { type: 'button', class: 'small danger', 'aria-label': 'Remove this binding' }, 'Remove');
    const fields = {
      pin: field('', 'Output', pin),
      when: field('', 'While', when),
      stream: field('', 'Stream', stream),
      mode: field('', 'Light', mode),
    };
    const row = h('div', { class: 'edit-row binding-edit' }, Object.values(fields), h('div', { class: 'row-end' }, rm));
    row.sync = (i) => {
      for (const key of Object.keys(fields)) fields[key].dataset.field = `gpio.bindings.${i}.${key}`;
      const want = pin.value || pin.want;
      const names = outputs();
      if (want && !names.includes(want)) names.push(want);
      if ([...pin.options].map((o) => o.value).join() !== names.join()) {
        clear(pin, names.map((n) => h('option', { value: n }, n)));
        if (want) pin.value = want;
      }
    };
    row.value = () => ({ pin: pin.value, when: when.value, stream: stream.value, mode: mode.value });
    rm.addEventListener('click', () => {
      row.remove();
      sync();
    });
    return row;
  }
  for (const b of c.bindings || []) bindRows.append(bindRow(b));
  const addBind = h('button', { type: 'button', class: 'small', id: 'g-add-binding' }, '+ Add binding');
  addBind.addEventListener('click', () => {
    bindRows.append(bindRow({ pin: outputs()[0], stream: streams[0] }));
    sync();
  });

  const saveBtn = h('button', { type: 'submit', class: 'primary', id: 'g-save' }, 'Save GPIO settings');
  const removeBtn = cfg ? h('button', { type: 'button', class: 'danger', id: 'g-remove' }, 'Remove GPIO') : null;
  const form = h('form', { class: 'panel gpio-form', id: 'gpio-form', novalidate: true },
    formError,
    h('div', { class: 'row' }, field('gpio.backend', 'Backend', backend), chipField),
    h('fieldset', { dataset: { field: 'gpio.pins' } }, h('legend', {}, 'Pins'),
      h('p', { class: 'hint' }, 'Line: the line number on the chip (the BCM GPIO number on a Raspberry Pi). Active low: a button to ground with a pull-up, an LED wired to 3.3 V.'),
      pinRows, addPin),
    h('fieldset', { dataset: { field: 'gpio.bindings' } }, h('legend', {}, 'Bindings'),
      h('p', { class: 'hint' }, 'An output that is on (or blinks) while a stream is in a state, and off otherwise.'),
      bindRows, addBind),
    h('div', { class: 'actions' }, saveBtn, removeBtn));

  function sync() {
    chipField.hidden = backend.value !== 'cdev';
    for (const r of pinRows.children) r.sync();
    [...bindRows.children].forEach((r, i) => r.sync(i));
    addBind.disabled = !outputs().length || !streams.length;
  }
  form.addEventListener('change', sync);
  sync();

  async function run(next) {
    clearErrors(form);
    saveBtn.disabled = true;
    try {
      await save(next);
    } catch (e) {
      let f = fieldPath(e.field);
      if (f && !f.startsWith('gpio') && /^(backend|chip|pins|bindings)\b/.test(f)) f = `gpio.${f}`;
      showError(form, f, e.message);
    } finally {
      saveBtn.disabled = false;
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const pinsOut = {};
    for (const r of pinRows.children) {
      const [n, p] = r.value();
      if (!n || n in pinsOut) {
        clearErrors(form);
        showError(form, `gpio.pins.${n}`, n ? `two pins are named ${n}` : 'a name for the pin');
        return;
      }
      pinsOut[n] = p;
    }
    const next = { backend: backend.value, chip: chip.value.trim() || 'gpiochip0', pins: pinsOut };
    const bindings = [...bindRows.children].map((r) => r.value());
    if (bindings.length) next.bindings = bindings;
    run(next);
  });
  removeBtn?.addEventListener('click', () => {
    if (confirm('Remove the GPIO configuration? Its pins are released, and triggers that drive them must go first.')) run(null);
  });
  return form;
}
