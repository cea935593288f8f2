// Form helpers for the triggers, GPIO and pushes pages: labelled inputs that carry the
// API's field name, and API errors ({"error", "field"}) shown next to that field.

import { h } from './dom.js';

let seq = 0;

/** A labelled input; `name` is the API's field name (errors naming it show here). */
export function field(name, label, input, hint) {
  if (!input.id) input.id = `fld-${++seq}`;
  return h('div', { class: 'field', dataset: { field: name } },
    h('label', { for: input.id }, label),
    input,
    hint ? h('p', { class: 'hint' }, hint) : null);
}

/** A <select> of [value, label] pairs with `value` chosen (when it is one of them). */
export function select(options, value, attrs) {
  const s = h('select', attrs || {}, options.map(([v, label]) => h('option', { value: v }, label)));
  if (value !== undefined && value !== null && options.some(([v]) => v === String(value))) s.value = String(value);
  return s;
}

export const num = (value, attrs) => h('input', { type: 'number', inputmode: 'numeric', value: value ?? '', ...attrs });

export const text = (value, attrs) => h('input', { type: 'text', value: value ?? '', autocomplete: 'off', spellcheck: 'false', ...attrs });

/** A checkbox with its label; `.input` is the checkbox. */
export function check(label, checked, attrs) {
  const input = h('input', { type: 'checkbox', checked: !!checked, ...attrs });
  const el = h('label', { class: 'check' }, input, ' ', label);
  el.input = input;
  return el;
}

/** Form text to JSON: whole numbers as numbers, empty as "use the default", anything
 * else as typed (the API then names the field). */
export function numberOf(t) {
  t = t.trim();
  if (t === '') return undefined;
  return /^-?\d+$/.test(t) ? Number(t) : t;
}

/** `triggers[0].handler` (serde's path) and `triggers.0.handler` (validation's) alike. */
export function fieldPath(f) {
  return f ? f.replace(/\[(\d+)\]/g, '.$1').replace(/^\./, '') : f;
}

export function clearErrors(form) {
  for (const e of form.querySelectorAll('.field-error')) e.remove();
  for (const e of form.querySelectorAll('.invalid')) e.classList.remove('invalid');
  const top = form.querySelector('.form-error');
  if (top) top.hidden = true;
}

/** Shows `message` at the visible element whose data-field is `name`, or its nearest
 * parent field (`a.b.c`, then `a.b`, then `a`), or at the top of the form. */
export function showError(form, name, message) {
  for (let f = name; f; f = f.includes('.') ? f.slice(0, f.lastIndexOf('.')) : '') {
    const where = [...form.querySelectorAll(`[data-field="${CSS.escape(f)}"]`)].find((el) => !el.closest('[hidden]'));
    if (where) {
      where.classList.add('invalid');
      where.append(h('p', { class: 'field-error', role: 'alert' }, message));
      where.querySelector('input:not([type=radio]):not([type=checkbox]), select')?.focus();
      return;
    }
  }
  const top = form.querySelector('.form-error');
  top.textContent = name ? `${name}: ${message}` : message;
  top.hidden = false;
}

/** Splits a command line into arguments: spaces separate, quotes group. */
export function splitArgs(line) {
  const out = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  let m;
  while ((m = re.exec(line))) {
    if (m[1] !== undefined) out.push(m[1].replace(/\\(.)/g, '$1'));
    else if (m[2] !== undefined) out.push(m[2]);
    else out.push(m[3]);
  }
  return out;
}

export function joinArgs(args) {
  return (args || []).map((a) => (a === '' || /[\s"'\\]/.test(a) ? `"${a.replace(/["\\]/g, '\\$&')}"` : a)).join(' ');
}

/** "12:03:04" for an RFC 3339 time (or milliseconds since 1970). */
export function clock(t) {
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? String(t ?? '') : d.toLocaleTimeString();
}
