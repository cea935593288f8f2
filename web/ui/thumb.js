// A stream's live thumbnail: its newest JPEG picture (GET /api/v1/streams/<name>/snapshot,
// read by the controller from the stream's buffer), fetched at most every 2 s while the
// stream is live and has a JPEG track. A live stream with only H.264 (an RTMP publisher,
// an H.264 camera) gets /<name>.jpg instead, a keyframe decoded by a worker, at most
// every 10 s. A labelled placeholder otherwise. Thumbnails never wake on-demand streams
// (they are only fetched while the stream is live).

import { h } from './dom.js';

export class Thumbnail {
  constructor(name) {
    this.name = name;
    this.img = h('img', { alt: `${name} (latest picture)`, hidden: true });
    this.ph = h('div', { class: 'placeholder' });
    this.el = h('div', { class: 'thumb' }, this.img, this.ph);
    this.url = null;
    this.busy = false;
    this.stopped = false;
    this.last = 0;
  }

  update(s) {
    const st = s.status;
    const hasJpeg = st.tracks.some((t) => t.codec === 'jpeg');
    const hasH264 = st.tracks.some((t) => t.codec === 'h264');
    if (st.state === 'live' && hasJpeg) {
      this.fetch(`/api/v1/streams/${encodeURIComponent(this.name)}/snapshot`, 1500);
      return;
    }
    if (st.state === 'live' && hasH264) {
      this.fetch(`/${encodeURIComponent(this.name)}.jpg`, 10000);
      return;
    }
    let why;
    if (st.state === 'live') why = 'No picture (no video track)';
    else if (st.state === 'waiting') why = 'Waiting for a publisher';
    else if (st.state === 'idle') why = 'Starts when someone watches';
    else if (st.state === 'failed') why = 'Input failed';
    else why = 'No picture yet';
    this.placeholder(why);
  }

  placeholder(text) {
    this.img.hidden = true;
    this.ph.hidden = false;
    this.ph.textContent = text;
  }

  async fetch(path, every) {
    if (this.busy || this.stopped || Date.now() - this.last < every) return;
    this.busy = true;
    this.last = Date.now();
    try {
      const res = await fetch(path, { cache: 'no-store' });
      if (!res.ok) throw new Error(res.status);
      const blob = await res.blob();
      if (this.stopped) return;
      const url = URL.createObjectURL(blob);
      await new Promise((ok) => {
        this.img.onload = ok;
        this.img.onerror = ok;
        this.img.src = url;
      });
      if (this.url) URL.revokeObjectURL(this.url);
      this.url = url;
      this.img.hidden = false;
      this.ph.hidden = true;
    } catch (e) {
      if (!this.url) this.placeholder('No picture yet');
    } finally {
      this.busy = false;
    }
  }

  stop() {
    this.stopped = true;
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
  }
}
