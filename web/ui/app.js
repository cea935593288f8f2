// Brume's web UI: a hash router over a few views. No framework and no build step: these
// files are embedded in the firmware and served as they are.

import * as api from './api.js';
import { clear, h } from './dom.js';
import { loginView, setupView } from './views/auth.js';
import { dashboardView } from './views/dashboard.js';
import { editorView } from './views/editor.js';
import { gpioView } from './views/gpio.js';
import { pushesView } from './views/pushes.js';
import { recordingsView } from './views/recordings.js';
import { systemView } from './views/system.js';
import { triggersView } from './views/triggers.js';
import { watchView } from './views/watch.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const footer = document.getElementById('footer');

const routes = [
  [/^\/?$/, 'dashboard', () => dashboardView],
  [/^\/new$/, 'dashboard', () => editorView],
  [/^\/edit\/([^/]+)$/, 'dashboard', () => editorView],
  [/^\/watch\/([^/]+)$/, 'dashboard', () => watchView],
  [/^\/recordings$/, 'recordings', () => recordingsView],
  [/^\/triggers$/, 'triggers', () => triggersView],
  [/^\/gpio$/, 'gpio', () => gpioView],
  [/^\/pushes$/, 'pushes', () => pushesView],
  [/^\/system$/, 'system', () => systemView],
];

let cleanup = null;
let gate = null; // 'setup' | 'login' while the user must do that first

function stopView() {
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      console.warn(e);
    }
  }
  cleanup = null;
}

function show(view, args, navKey) {
  stopView();
  clear(main);
  for (const a of nav.querySelectorAll('a[data-nav]')) {
    a.classList.toggle('active', a.dataset.nav === navKey);
  }
  cleanup = view(main, ...args) || null;
}

function route() {
  if (gate) return;
  const path = decodeURIComponent(location.hash.replace(/^#/, '')) || '/';
  for (const [re, navKey, view] of routes) {
    const m = path.match(re);
    if (m) {
      const key = navKey || m[1];
      show(view(), [{ path, params: m.slice(1), go }], key);
      document.title = `Brume · ${titleOf(path)}`;
      return;
    }
  }
  show((root) => {
    root.append(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the dashboard')));
  }, [], null);
}

function titleOf(path) {
  const p = path.split('/').filter(Boolean);
  if (!p.length) return 'Dashboard';
  if (p[0] === 'new') return 'New stream';
  if (p[0] === 'edit') return `Edit ${p[1]}`;
  if (p[0] === 'watch') return p[1];
  if (p[0] === 'gpio') return 'GPIO';
  return p[0][0].toUpperCase() + p[0].slice(1);
}

/** Navigates to a hash route (re-renders even when it is the current one). */
export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function openGate(kind) {
  if (gate === kind) return;
  gate = kind;
  stopView();
  nav.hidden = true;
  clear(main);
  const done = () => {
    gate = null;
    nav.hidden = false;
    loadFooter();
    route();
  };
  cleanup = (kind === 'setup' ? setupView : loginView)(main, { done }) || null;
  document.title = kind === 'setup' ? 'Brume · Set the admin password' : 'Brume · Log in';
}

async function loadFooter() {
  try {
    const s = await api.get('/system');
    clear(footer, `Brume ${s.version}`);
  } catch (e) {
    clear(footer);
  }
}

api.onUnauthorized(() => openGate('login'));

document.getElementById('logout').addEventListener('click', async () => {
  try {
    await api.post('/logout');
  } catch (e) {
    // logged out either way
  }
  openGate('login');
});

window.addEventListener('hashchange', route);

async function boot() {
  let setup;
  try {
    setup = await api.get('/setup');
  } catch (e) {
    clear(main, h('p', { class: 'error' }, e.message), h('button', { type: 'button', onclick: boot }, 'Try again'));
    return;
  }
  if (setup.needs_password) {
    openGate('setup');
    return;
  }
  // A valid session cookie lets us straight in; otherwise the 401 opens the login gate.
  try {
    await api.get('/streams');
  } catch (e) {
    if (e.status !== 401) clear(main, h('p', { class: 'error' }, e.message));
    return;
  }
  nav.hidden = false;
  loadFooter();
  route();
}

boot();
