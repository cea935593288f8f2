// A few DOM and formatting helpers. Elements are built with `h`, never from HTML
// strings, so names, errors and log lines from the server are always plain text.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function kbps(v) {
  if (v === undefined || v === null) return '—';
  return v >= 1000 ? `${(v / 1000).toFixed(1)} Mbit/s` : `${Math.round(v)} kbit/s`;
}

export function bytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

export function duration(s) {
  if (s === undefined || s === null) return '—';
  s = Math.floor(s);
  const d = Math.floor(s / 86400);
  const hr = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${hr} h`;
  if (hr) return `${hr} h ${m} min`;
  if (m) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

/** Copies text; works on plain http:// too (where navigator.clipboard is missing). */
export async function copy(text, input) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch (e) {
    // fall back below
  }
  if (input) {
    input.focus();
    input.select();
    try {
      return document.execCommand('copy');
    } catch (e) {
      return false;
    }
  }
  return false;
}

/** A read-only URL with a Copy button. */
export function copyField(label, value, extra) {
  const input = h('input', { type: 'text', readOnly: true, value, 'aria-label': label, spellcheck: 'false' });
  input.addEventListener('focus', () => input.select());
  const btn = h('button', { type: 'button', class: 'small' }, 'Copy');
  btn.addEventListener('click', async () => {
    const ok = await copy(input.value, input);
    btn.textContent = ok ? 'Copied' : 'Select and copy';
    setTimeout(() => (btn.textContent = 'Copy'), 1500);
  });
  return h('div', { class: 'copy' }, h('span', { class: 'copy-label' }, label), h('div', { class: 'copy-row' }, input, btn), extra);
}

/** Runs `f` now and every `ms` while the page is visible; returns a stop function. */
export function every(ms, f) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    timer = null;
    if (stopped) return;
    if (!document.hidden) {
      try {
        await f();
      } catch (e) {
        // the view shows its own errors
      }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}

export const STATE_TEXT = {
  live: 'live',
  starting: 'starting',
  running: 'starting',
  restarting: 'restarting',
  failed: 'failed',
  stopped: 'stopped',
  idle: 'on demand',
  waiting: 'waiting for publisher',
};

export function stateBadge(state) {
  return h('span', { class: `state state-${state}`, dataset: { state } }, STATE_TEXT[state] || state);
}

export function sourceText(cfg) {
  const s = cfg.source;
  if (s.type === 'testsrc') return `Synthetic ${s.width}×${s.height} ${s.fps} fps`;
  if (s.type === 'rtmp') return 'RTMP publish';
  if (s.type === 'rtsp') return `RTSP camera (${s.transport || 'auto'})`;
  if (s.type === 'camera') {
    const v = s.video;
    return v ? `Camera ${v.width}×${v.height} ${v.fps} fps${s.audio ? ' + microphone' : ''}` : 'Microphone';
  }
  return s.type;
}
