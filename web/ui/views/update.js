// The System page's software update: upload a new brume binary (and its signature when
// the board takes only signed updates), follow the switch, roll back to the previous
// version. The board checks the binary before anything changes; during the switch the
// API may answer 503 or not at all for a moment, which the page waits out.

import * as api from '../api.js';
import { bytes, clear, h } from '../dom.js';

/** The largest binary the board takes (POST /api/v1/system/update). */
const MAX_UPDATE = 256 * 1024 * 1024;

/** How long the page waits for the outcome after the board took the binary. */
const OUTCOME_WAIT_MS = 90000;

const OUTCOMES = ['updated', 'rolled-back', 'failed', 'image-installed'];

/** A fingerprint of an update report: a new outcome has another one. */
function mark(u) {
  return u ? `${u.state}|${u.started_ms}|${u.finished_ms}|${u.target_version}` : '';
}

/** The text for an update report (GET /api/v1/system → update). */
export function outcomeText(u) {
  if (!u) return '';
  const reason = u.reason ? `: ${u.reason}` : '';
  switch (u.state) {
    case 'updating':
      return `Switching to Brume ${u.target_version || '?'}…`;
    case 'updated':
      return `Updated: Brume ${u.version} runs${u.handover_ms != null ? ` (hand-over ${u.handover_ms} ms)` : ''}.`;
    case 'rolled-back':
      return `Rolled back${reason || ': the new version failed its health check'}. Brume ${u.version} runs.`;
    case 'failed':
      return `Update to ${u.target_version || 'the new version'} failed${reason}.`;
    case 'installing-image':
      return 'Installing the system image in the other slot (this takes minutes)…';
    case 'image-installed':
      return `System image installed${reason}.`;
    default:
      return `${u.state}${reason}`;
  }
}

/** Base64 of a detached signature file: 64 raw bytes, or already base64 text. */
async function signatureHeader(file) {
  const buf = new Uint8Array(await file.arrayBuffer());
  if (buf.length === 64) {
    let s = '';
    for (const b of buf) s += String.fromCharCode(b);
    return btoa(s);
  }
  const text = new TextDecoder().decode(buf).trim();
  if (!/^[A-Za-z0-9+/]+=*$/.test(text)) {
    throw new Error(`${file.name} is not a signature: neither 64 bytes nor base64`);
  }
  return text;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function updatePanel() {
  const binary = h('input', { type: 'file', id: 'update-file', 'aria-describedby': 'update-hint' });
  const sig = h('input', { type: 'file', id: 'update-sig', accept: '.sig,.b64,application/octet-stream' });
  const start = h('button', { type: 'button', class: 'primary', id: 'update-start' }, 'Upload and update');
  const progress = h('progress', { id: 'update-progress', max: 100, value: 0, hidden: true });
  const msg = h('p', { class: 'hint', id: 'update-message', role: 'status', 'aria-live': 'polite' });
  const last = h('p', { class: 'muted', id: 'update-status' });
  const rollback = h('button', { type: 'button', id: 'update-rollback', hidden: true });
  let busy = false;
  let previous = null;

  const el = h('div', { class: 'update panel' },
    last,
    h('div', { class: 'update-fields' },
      h('div', {}, h('label', { for: 'update-file' }, 'New brume binary'), binary),
      h('div', {}, h('label', { for: 'update-sig' }, 'Signature (optional)'), sig)),
    h('p', { class: 'hint', id: 'update-hint' },
      'The board checks the binary first (built for this board, runs, says it is Brume, and signed when the board takes only signed updates), then switches without dropping viewers and goes back by itself if the new version fails.'),
    h('div', { class: 'actions' }, start, rollback),
    progress,
    msg);

  function setBusy(b) {
    busy = b;
    start.disabled = b;
    rollback.disabled = b;
  }

  /** Polls the system status until a new outcome; tolerates the switch's gap. */
  async function follow(before) {
    const deadline = Date.now() + OUTCOME_WAIT_MS;
    while (Date.now() < deadline) {
      await sleep(1000);
      let sys;
      try {
        sys = await api.get('/system');
      } catch (e) {
        // 503 while the controller is swapped, or no answer at all for a moment.
        if (e.status === 0 || e.status === 503 || e.status === 502) {
          msg.textContent = 'Switching… (the board answers again in a moment)';
          continue;
        }
        throw e;
      }
      const u = sys.update;
      if (u && mark(u) !== before && OUTCOMES.includes(u.state)) return u;
      if (u && (u.state === 'updating' || u.state === 'installing-image')) msg.textContent = outcomeText(u);
    }
    return null;
  }

  async function run(what, send) {
    setBusy(true);
    msg.classList.remove('error');
    let answer;
    let before;
    try {
      before = mark((await api.get('/system')).update);
      answer = await send();
    } catch (e) {
      progress.hidden = true;
      msg.textContent = `Nothing changed: ${e.message}`;
      msg.classList.add('error');
      setBusy(false);
      return;
    }
    progress.hidden = true;
    msg.textContent = answer.state === 'installing-image' ? outcomeText(answer) : `Brume ${answer.version} ${what}; switching…`;
    try {
      const u = await follow(before);
      if (!u) {
        msg.textContent = 'No outcome yet: the last update line above shows it once the board reports it.';
      } else {
        msg.textContent = outcomeText(u);
        msg.classList.toggle('error', u.state !== 'updated' && u.state !== 'image-installed');
      }
    } catch (e) {
      msg.textContent = `The switch was asked for, but its outcome could not be read: ${e.message}`;
      msg.classList.add('error');
    } finally {
      setBusy(false);
    }
  }

  start.addEventListener('click', () => {
    const f = binary.files[0];
    if (!f) {
      msg.textContent = 'Choose the new brume binary first.';
      return;
    }
    if (f.size > MAX_UPDATE) {
      msg.textContent = `${f.name} is ${bytes(f.size)}; an update is at most ${bytes(MAX_UPDATE)}.`;
      msg.classList.add('error');
      return;
    }
    run('is checked and accepted', async () => {
      const headers = {};
      if (sig.files[0]) headers['X-Brume-Signature'] = await signatureHeader(sig.files[0]);
      progress.value = 0;
      progress.hidden = false;
      msg.textContent = `Uploading ${f.name} (${bytes(f.size)})…`;
      const answer = await api.upload('/system/update', f, headers, (sent, total) => {
        progress.value = total ? Math.round((sent / total) * 100) : 0;
        msg.textContent = sent < total
          ? `Uploading ${f.name}: ${bytes(sent)} of ${bytes(total)}`
          : 'Checking the binary…';
      });
      binary.value = '';
      sig.value = '';
      return answer;
    });
  });

  rollback.addEventListener('click', () => {
    if (!previous) return;
    if (!confirm(`Roll back to Brume ${previous}? Viewers stay connected.`)) return;
    run('is the version to go back to', () => api.post('/system/rollback'));
  });

  /** Shows the last report and the rollback button from GET /api/v1/system. */
  function render(sys) {
    const u = sys.update;
    clear(last, u ? `Last update: ${outcomeText(u)}` : `No update since Brume was installed.`);
    previous = u && u.previous_version && u.state !== 'updating' ? u.previous_version : null;
    rollback.hidden = !previous;
    if (previous) rollback.textContent = `Roll back to ${previous}`;
    if (!busy && u && u.state === 'updating') rollback.disabled = true;
    else if (!busy) rollback.disabled = false;
  }

  return { el, render };
}
