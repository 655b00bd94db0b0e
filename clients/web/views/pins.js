// views/pins.js — the pinned messages of the channel on screen (`channel.pins`)
// in the side panel, read again when `message.pinned` says they changed; each
// jumps to its message.

import { $, el, timeElement } from '../dom.js';
import { excerpt } from './message.js';

export function createPins(app) {
  const list = $('#pins-list');
  const note = $('#pins-note');
  let channel = null;

  async function load(ch) {
    channel = ch;
    note.textContent = 'Loading…';
    try {
      const { messages } = await app.client().command('channel.pins', { channel: ch.id });
      if (channel !== ch) return;
      note.textContent = messages.length ? '' : `Nothing is pinned in #${ch.name}.`;
      list.replaceChildren(...messages.map((m) => el('li', {},
        el('button', {
          type: 'button', className: 'result', dataset: { messageId: m.id },
          onclick: () => app.jumpTo(m.channel, m.id, m.o),
        }, el('span', { className: 'meta' },
          el('span', { className: 'author' }, m.author.name), ' ', timeElement(m.ts)),
        el('span', { className: 'result-text' }, excerpt(m, 160))))));
    } catch (err) {
      note.textContent = `Could not load the pins: ${err.message}`;
    }
  }

  $('#pins-toggle').addEventListener('click', () => {
    const ch = app.currentChannel();
    if (!ch) return;
    if (app.panel() === 'pins') return app.closePanel();
    app.openPanel('pins');
    $('#pins-title').textContent = `Pinned in #${ch.name}`;
    load(ch);
  });
  $('#pins-close').addEventListener('click', () => app.closePanel());

  return {
    /** Pins of `ch` changed: read them again if they are shown. */
    changed(ch) {
      if (app.panel() === 'pins' && channel === ch) load(ch);
    },
  };
}
