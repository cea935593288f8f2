// Pages whose features come with later firmware: clearly labelled, no made-up data.

import { h } from '../dom.js';

const LATER = {
  triggers: {
    title: 'Triggers',
    text: 'Coming with trigger support: webhooks, scripts and GPIO actions on stream, connection, recording and system events, with a "fire a test event" button and their recent runs.',
  },
  gpio: {
    title: 'GPIO',
    text: 'Coming with GPIO support: the pins with their live state, output toggles, and bindings such as "this button starts recording".',
  },
};

export function laterView(root, { params }) {
  const page = LATER[params[0]];
  root.append(h('section', { class: 'panel later', dataset: { later: params[0] } },
    h('h1', {}, page.title, ' ', h('span', { class: 'tag' }, 'not yet available')),
    h('p', {}, page.text),
    h('p', { class: 'muted' }, 'This firmware version does not have it yet; nothing on this page is live.')));
}
