// First run (choose the admin password) and login.

import * as api from '../api.js';
import { h } from '../dom.js';

function passwordField(id, label, autocomplete) {
  return h('div', { class: 'field', dataset: { field: 'password' } },
    h('label', { for: id }, label),
    h('input', { id, name: id, type: 'password', autocomplete, required: true }));
}

function fieldError(form, message) {
  let p = form.querySelector('.field-error');
  if (!p) {
    p = h('p', { class: 'field-error', role: 'alert' });
    form.querySelector('.actions').before(p);
  }
  p.textContent = message;
}

function fieldErrorAt(form, field, message) {
  for (const e of form.querySelectorAll('.field-error')) e.remove();
  const where = field && form.querySelector(`[data-field="${field}"]`);
  if (!where) {
    fieldError(form, message);
    return;
  }
  where.append(h('p', { class: 'field-error', role: 'alert' }, message));
  where.querySelector('input')?.focus();
}

export function setupView(root, { done }) {
  const form = h('form', { class: 'panel narrow', id: 'setup-form', novalidate: true },
    h('h1', {}, 'Welcome to Brume'),
    h('p', {}, 'Choose the admin password. You will need it to change settings from any phone or computer on this network.'),
    h('div', { class: 'field', dataset: { field: 'code' } },
      h('label', { for: 'setup-code' }, 'Setup code'),
      h('input', { id: 'setup-code', name: 'setup-code', type: 'text', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'XXXX-XXXX-XXXX' }),
      h('p', { class: 'hint', id: 'setup-code-hint' },
        'Brume printed it when it started. On the board: ', h('code', {}, 'journalctl -u brume'),
        ', or its console (the terminal that runs ', h('code', {}, 'brume serve'), '). It is also in the file ',
        h('code', {}, 'setup-code'), ' of the run directory (', h('code', {}, 'run/'), ' next to the configuration). ',
        'It proves you can reach the board itself, so nobody else on the network sets the password first.')),
    passwordField('setup-password', 'Admin password (at least 8 characters)', 'new-password'),
    passwordField('setup-repeat', 'Repeat it', 'new-password'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Set password and continue')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const pw = form.querySelector('#setup-password').value;
    const code = form.querySelector('#setup-code').value.trim();
    if (!code) {
      fieldErrorAt(form, 'code', 'Enter the setup code Brume printed when it started.');
      return;
    }
    if (pw !== form.querySelector('#setup-repeat').value) {
      fieldErrorAt(form, null, 'The two passwords differ.');
      return;
    }
    const btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      await api.post('/setup', { password: pw, code });
      done();
    } catch (e) {
      if (e.status === 409 && e.field !== 'code') {
        // Someone else set it meanwhile: log in instead.
        location.reload();
        return;
      }
      fieldErrorAt(form, e.field === 'code' ? 'code' : null, e.message);
    } finally {
      btn.disabled = false;
    }
  });
  root.append(form);
  form.querySelector('input').focus();
}

export function loginView(root, { done }) {
  const form = h('form', { class: 'panel narrow', id: 'login-form', novalidate: true },
    h('h1', {}, 'Log in'),
    passwordField('login-password', 'Admin password', 'current-password'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Log in')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      await api.post('/login', { password: form.querySelector('#login-password').value });
      done();
    } catch (e) {
      fieldError(form, e.status === 401 ? 'Wrong password.' : e.message);
    } finally {
      btn.disabled = false;
    }
  });
  root.append(form);
  form.querySelector('input').focus();
}
