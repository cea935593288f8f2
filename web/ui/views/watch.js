// Watch: a live player for one stream, its state and tracks, and a copyable URL for
// every output.

import * as api from '../api.js';
import { clear, copyField, every, h, kbps, sourceText, stateBadge } from '../dom.js';
import { play } from '../player.js';

export function watchView(root, { params, go }) {
  const name = params[0];
  const enc = encodeURIComponent(name);
  const title = h('h1', {}, name);
  const video = h('video', { id: 'player', muted: true, autoplay: true, playsInline: true, controls: true });
  video.muted = true; // the attribute alone does not allow autoplay everywhere
  const playerStatus = h('p', { class: 'player-status muted', id: 'player-status' }, 'Connecting…');
  const details = h('dl', { class: 'stats wide', id: 'stream-details' });
  const lastError = h('p', { class: 'error last-error', hidden: true });
  const urls = h('div', { class: 'urls', id: 'urls' });
  const restart = h('button', { type: 'button', id: 'restart' }, 'Restart input');
  root.append(
    h('div', { class: 'page-head' }, title,
      h('div', { class: 'actions' }, restart, h('a', { class: 'button', href: `#/edit/${enc}` }, 'Edit'))),
    h('div', { class: 'watch' },
      h('div', { class: 'player' }, video, playerStatus),
      h('div', { class: 'side' }, details, lastError)),
    h('h2', {}, 'Play it elsewhere'),
    urls);

  let latest = null;
  let urlsFor = null;
  let system = null;
  api.get('/system').then((s) => {
    system = s;
    if (latest) renderUrls(latest);
  }, () => {});

  const hasJpegOf = (s) => s.status.tracks.some((t) => t.codec === 'jpeg');

  function renderUrls(s) {
    const type = s.config.source.type;
    const key = type === 'rtmp' ? s.config.source.key : null;
    const read = s.config.read || null;
    const sig = `${type}:${key}:${hasJpegOf(s)}:${system ? `${system.rtmp_port}:${system.rtsp_port}` : ''}:${read ? read.user : ''}`;
    if (sig === urlsFor) return;
    urlsFor = sig;
    const base = location.origin;
    const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
    const hasJpeg = s.status.tracks.some((t) => t.codec === 'jpeg') || (type === 'testsrc' && s.config.source.jpeg_fps > 0);
    // With viewer credentials, players put them in the URL (shown without the password).
    const creds = read ? `${encodeURIComponent(read.user)}:PASSWORD@` : '';
    const credsNote = () => (read ? h('p', { class: 'hint' }, `Needs the viewer credentials: replace PASSWORD with ${read.user}'s password.`) : null);
    const rtspPort = system ? system.rtsp_port : undefined;
    const list = [
      copyField('RTSP (NVRs, Home Assistant, Frigate, VLC)', rtspPort === null ? 'The RTSP server is off on this board (brume serve --rtsp off)'
        : `rtsp://${creds}${host}:${rtspPort ?? 8554}/${enc}`, credsNote()),
      copyField('HLS (Safari, VLC, hls.js, CDNs)', `${base}/hls/${enc}/index.m3u8`),
      copyField('MP4, fragmented (browsers, VLC)', `${base}/${enc}.mp4`),
      copyField('MPEG-TS (VLC, ffmpeg, NVRs)', `${base}/${enc}.ts`),
    ];
    const jpegNote = hasJpeg ? null : h('p', { class: 'hint' }, 'Only for streams with snapshots (a JPEG track).');
    list.push(copyField('JPEG snapshot', `${base}/${enc}.jpg`, jpegNote));
    list.push(copyField('MJPEG (img tags, NVRs)', `${base}/${enc}.mjpg`, jpegNote && jpegNote.cloneNode(true)));
    if (type === 'rtmp') {
      const port = system && 'rtmp_port' in system ? system.rtmp_port : 1935;
      // The key is never sent back after the call that made it (the editor makes a new one).
      const shown = key && key !== '…' ? key : '••••';
      list.push(copyField('RTMP publish (OBS, ffmpeg)', port === null ? 'RTMP ingest is off' : `rtmp://${host}:${port}/live/${enc}?key=${shown}`,
        h('p', { class: 'hint' }, 'The key is shown once, when the stream is created or given a new key (Edit, then New key).')));
    }
    clear(urls, list);
  }

  function render(s) {
    const st = s.status;
    clear(title, name, ' ', stateBadge(st.state));
    const tracks = st.tracks.map((t) => (t.width ? `${t.codec} ${t.width}×${t.height}` : `${t.codec} ${t.sample_rate} Hz`) + (t.codec_string ? ` (${t.codec_string})` : ''));
    clear(details,
      h('div', {}, h('dt', {}, 'Source'), h('dd', {}, sourceText(s.config))),
      h('div', {}, h('dt', {}, 'Viewers'), h('dd', {}, String(st.viewers))),
      h('div', {}, h('dt', {}, 'Bitrate'), h('dd', {}, st.state === 'live' ? kbps(st.bitrate_kbps) : '—')),
      h('div', {}, h('dt', {}, 'Input restarts'), h('dd', {}, String(st.restarts))),
      h('div', {}, h('dt', {}, 'Tracks'), h('dd', {}, tracks.length ? tracks.join(', ') : '—')));
    lastError.hidden = !st.last_error;
    lastError.textContent = st.last_error ? `Last error: ${st.last_error}` : '';
    restart.hidden = s.config.source.type === 'rtmp';
    renderUrls(s);
  }

  async function refresh() {
    try {
      latest = await api.get(`/streams/${enc}`);
      render(latest);
      return latest;
    } catch (e) {
      if (e.status === 404) go('#/');
      throw e;
    }
  }

  restart.addEventListener('click', async () => {
    restart.disabled = true;
    try {
      render(await api.post(`/streams/${enc}/restart`));
    } catch (e) {
      playerStatus.textContent = e.message;
    } finally {
      restart.disabled = false;
    }
  });

  const stopPoll = every(2000, refresh);
  const stopPlayer = play(video, name, {
    tracks: async () => (await refresh()).status.tracks,
    status: (text) => (playerStatus.textContent = text),
  });
  return () => {
    stopPoll();
    stopPlayer();
  };
}
