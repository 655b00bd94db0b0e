// views/resources.js — the community's shelf of links and notes in the side
// panel: `resource.list` filtered by tag and words, and `resource.add`.

import { $, el, timeElement } from '../dom.js';

export function createResources(app) {
  const list = $('#resource-list');
  const note = $('#resources-note');
  const add = $('#resource-form');
  let community = null;

  async function load() {
    community = app.currentCommunity();
    if (!community) return;
    $('#resources-title').textContent = `Resources of ${community.name}`;
    const d = { community: community.id };
    const tag = $('#resource-tag').value.trim().replace(/^#/, '').toLowerCase();
    const query = $('#resource-query').value.trim();
    if (tag) d.tag = tag;
    if (query) d.query = query;
    note.textContent = 'Loading…';
    try {
      const { resources } = await app.client().command('resource.list', d);
      note.textContent = resources.length ? '' : 'No resources found.';
      list.replaceChildren(...resources.map((r) => el('li', { className: 'resource' },
        /^https?:\/\//i.test(r.url ?? '') ? el('a', { href: r.url, target: '_blank', rel: 'noopener noreferrer', className: 'resource-title' }, r.title)
          : el('span', { className: 'resource-title' }, r.title),
        r.note ? el('p', { className: 'resource-note' }, r.note) : null,
        el('p', { className: 'hint' },
          ...(r.tags ?? []).map((t) => el('span', { className: 'tag' }, `#${t} `)),
          r.shares ? `shared ${r.shares} × · ` : '', timeElement(r.ts)))));
    } catch (err) {
      note.textContent = `Could not load the resources: ${err.message}`;
    }
  }

  $('#resources-toggle').addEventListener('click', () => {
    if (app.panel() === 'resources') return app.closePanel();
    app.openPanel('resources');
    load();
  });
  $('#resources-close').addEventListener('click', () => app.closePanel());
  $('#resource-filter').addEventListener('submit', (event) => {
    event.preventDefault();
    load();
  });
  add.addEventListener('submit', async (event) => {
    event.preventDefault();
    const error = $('.error', add);
    error.textContent = '';
    const d = { community: community?.id, title: $('#resource-title').value.trim() };
    const url = $('#resource-url').value.trim();
    const text = $('#resource-note').value.trim();
    const tags = $('#resource-tags').value.split(',').map((t) => t.trim().replace(/^#/, '')).filter(Boolean);
    if (url) d.url = url;
    if (text) d.note = text;
    if (tags.length) d.tags = tags;
    try {
      await app.client().command('resource.add', d);
      add.reset();
      app.notify('Resource added.');
      load();
    } catch (err) {
      error.textContent = err.message;
    }
  });
}
