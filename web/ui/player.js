// A live player without a player library: the stream's fragmented MP4 (/<name>.mp4)
// fetched as a byte stream and appended to a MediaSource buffer; where MediaSource is
// missing (Safari on iPhone), the browser's own HLS (/hls/<name>/index.m3u8).
//
// Live, not a file: the player stays near the newest frame (it skips ahead when it
// falls behind), trims what it has played, and reconnects when the stream restarts.

const LIVE_LAG = 2.5; // seconds behind the newest frame before skipping ahead
const KEEP = 10; // seconds of played media kept in the buffer

export function mimeOf(tracks) {
  const codecs = tracks
    .filter((t) => (t.codec === 'h264' || t.codec === 'aac') && t.codec_string)
    .map((t) => t.codec_string);
  return codecs.length ? `video/mp4; codecs="${codecs.join(', ')}"` : null;
}

/**
 * Plays stream `name` in `video`. `tracks()` resolves to the stream's tracks (from the
 * API) once it is live. `status(text)` reports what happens. Returns a stop function.
 */
export function play(video, name, { tracks, status }) {
  const enc = encodeURIComponent(name);
  const hls = `/hls/${enc}/index.m3u8`;
  let stopped = false;
  let session = null;

  const mseOk = typeof MediaSource !== 'undefined' && typeof ReadableStream !== 'undefined';
  if (!mseOk) {
    if (video.canPlayType('application/vnd.apple.mpegurl')) {
      status('Playing HLS (native)');
      video.src = hls;
      video.play().catch(() => {});
    } else {
      status('This browser cannot play the stream in the page; use a URL below in VLC or ffplay.');
    }
    return () => {
      stopped = true;
      video.removeAttribute('src');
      video.load();
    };
  }

  async function start() {
    if (stopped) return;
    const ctl = new AbortController();
    session = { ctl, ms: null, url: null, timer: null };
    const s = session;
    status('Connecting…');
    let res;
    try {
      // Opening the MP4 also wakes an on-demand stream.
      res = await fetch(`/${enc}.mp4`, { signal: ctl.signal, cache: 'no-store' });
      if (!res.ok) throw new Error(`${res.status} ${(await res.text()).trim()}`);
    } catch (e) {
      return retry(s, e);
    }
    const reader = res.body.getReader();
    const queue = [];
    let ended = false;
    // Read ahead while the codec string is looked up.
    const pump = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        queue.push(value);
        s.feed?.();
      }
      ended = true;
      s.feed?.();
    })().catch((e) => {
      ended = true;
      s.error = e;
      s.feed?.();
    });

    let mime = null;
    for (let i = 0; i < 30 && !mime && !stopped && s === session; i++) {
      try {
        mime = mimeOf(await tracks());
      } catch (e) {
        // keep trying
      }
      if (!mime) await sleep(500);
    }
    if (s !== session || stopped) return;
    if (!mime) return retry(s, new Error('the stream has no H.264/AAC tracks'));
    if (!MediaSource.isTypeSupported(mime)) {
      ctl.abort();
      if (video.canPlayType('application/vnd.apple.mpegurl')) {
        status('Playing HLS (native)');
        video.src = hls;
        video.play().catch(() => {});
      } else {
        status(`This browser cannot decode ${mime}; use a URL below in VLC or ffplay.`);
      }
      return;
    }

    const ms = new MediaSource();
    s.ms = ms;
    s.url = URL.createObjectURL(ms);
    video.src = s.url;
    await new Promise((ok) => ms.addEventListener('sourceopen', ok, { once: true }));
    if (s !== session) return;
    URL.revokeObjectURL(s.url);
    const sb = ms.addSourceBuffer(mime);
    let started = false;

    s.feed = () => {
      if (s !== session || sb.updating || ms.readyState !== 'open') return;
      if (queue.length) {
        const chunk = concat(queue.splice(0, queue.length));
        try {
          sb.appendBuffer(chunk);
        } catch (e) {
          if (e.name === 'QuotaExceededError') {
            queue.unshift(chunk);
            trim(true);
          } else {
            retry(s, e);
          }
        }
        return;
      }
      if (ended) retry(s, s.error || new Error('the stream ended'));
    };

    function trim(hard) {
      if (sb.updating || !sb.buffered.length) return;
      const start = sb.buffered.start(0);
      const upTo = video.currentTime - (hard ? 1 : KEEP);
      if (upTo > start + 1) sb.remove(start, upTo);
    }

    sb.addEventListener('updateend', () => {
      if (s !== session) return;
      const b = sb.buffered;
      if (b.length) {
        const end = b.end(b.length - 1);
        if (!started || video.currentTime < b.start(0)) {
          video.currentTime = Math.max(b.start(b.length - 1), end - 0.5);
        }
        if (!started) {
          started = true;
          status('Live');
          video.play().catch(() => status('Live (press play)'));
        }
      }
      s.feed();
    });
    sb.addEventListener('error', () => retry(s, new Error('the browser could not decode the stream')));

    s.timer = setInterval(() => {
      if (s !== session || !sb.buffered.length) return;
      const end = sb.buffered.end(sb.buffered.length - 1);
      if (end - video.currentTime > LIVE_LAG && !video.paused) video.currentTime = end - 0.5;
      trim(false);
      s.feed();
    }, 1000);
    s.feed();
    await pump;
  }

  function teardown(s) {
    if (!s) return;
    s.ctl.abort();
    if (s.timer) clearInterval(s.timer);
    s.feed = null;
    if (s.ms && s.ms.readyState === 'open') {
      try {
        s.ms.endOfStream();
      } catch (e) {
        // already closing
      }
    }
  }

  function retry(s, e) {
    if (s !== session || stopped) return;
    teardown(s);
    session = null;
    status(`Reconnecting (${e.message || e})…`);
    setTimeout(() => {
      if (!stopped && !session) start();
    }, 1500);
  }

  start();
  return () => {
    stopped = true;
    teardown(session);
    session = null;
    video.removeAttribute('src');
    video.load();
  };
}

function concat(chunks) {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
