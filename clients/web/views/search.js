// views/search.js — the search box (`message.search` in the community on
// screen) and its results in the side panel; a result jumps to its message:
// the history around it (`history {channel, before: o + 25}`), scrolled to and
// flashed.

import { $, el, timeElement } from '../dom.js';
import { excerpt } from './message.js';

export function createSearch(app) {
  const form = $('#search-form');
  const input = $('#search-input');
  const results = $('#search-results');
  const note = $('#search-note');

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const query = input.value.trim();
    const community = app.currentCommunity();
    if (!query || !community) return;
    app.openPanel('search');
    note.textContent = 'Searching…';
    results.replaceChildren();
    try {
      const { messages } = await app.client().command('message.search',
        { community: community.id, query: query.slice(0, 200) });
      note.textContent = messages.length
        ? `${messages.length} ${messages.length === 1 ? 'message' : 'messages'} with "${query}" in ${community.name}`
        : `Nothing found for "${query}" in ${community.name}.`;
      results.replaceChildren(...messages.map((m) => el('li', {},
        el('button', {
          type: 'button', className: 'result', dataset: { messageId: m.id },
          onclick: () => app.jumpTo(m.channel, m.id, m.o),
        }, el('span', { className: 'meta' },
          el('span', { className: 'author' }, m.author.name), ' ',
          el('span', { className: 'hint' }, app.channelLabel(m.channel)), ' ', timeElement(m.ts)),
        el('span', { className: 'result-text' }, excerpt(m, 160))))));
    } catch (err) {
      note.textContent = `Could not search: ${err.message}`;
    }
  });
  $('#search-close').addEventListener('click', () => app.closePanel());
}
