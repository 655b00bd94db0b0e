// views/forum.js — a `forum` channel: its threads as cards (title, tags,
// replies, last activity, resolved), latest activity first, paged with
// `thread.list`'s `next`; a tag filter; and the "new post" form (title, text,
// tags) that runs `thread.create`. A card opens its thread in the side panel.
// `thread.created` / `thread.updated` in the forum (state.js) redraw the cards.

import { $, el, timeElement } from '../dom.js';
import { can } from '../roles.js';
import { length, MAX_TEXT } from './composer.js';

const LIMIT = 25;

export function createForumView(app) {
  const root = $('#forum-view');
  const cards = $('#thread-cards');
  const form = $('#forum-post');
  let ch = null;
  let tag = ''; // the filter
  let next = null; // cursor of the next page
  let request = 0;

  async function load(more = false) {
    if (!ch || !app.client()?.ready) return;
    const mine = ++request;
    const channel = ch;
    const d = { channel: channel.id, limit: LIMIT };
    if (tag) d.tag = tag;
    if (more && next) d.before = next;
    root.setAttribute('aria-busy', 'true');
    try {
      const reply = await app.client().command('thread.list', d);
      if (mine !== request || channel !== ch) return;
      if (!more) channel.threads.clear();
      for (const summary of reply.threads) {
        channel.change({ t: 'thread.updated', d: summary });
      }
      next = reply.next ?? null;
      channel.forumLoaded = true;
      draw();
    } catch (err) {
      app.report(err);
    } finally {
      root.removeAttribute('aria-busy');
    }
  }

  function card(info) {
    const { thread } = info;
    const replies = info.replies ?? 0;
    return el('li', { className: `thread-card${info.resolved ? ' resolved' : ''}`, dataset: { thread: thread.id } },
      el('button', {
        type: 'button', className: 'card-open', onclick: () => app.openThread(thread, ch),
      }, el('span', { className: 'card-title' }, thread.title)),
      el('div', { className: 'card-meta' },
        info.resolved ? el('span', { className: 'badge resolved-mark' }, 'resolved') : null,
        ...(info.tags ?? []).map((t) => el('button', {
          type: 'button', className: 'tag', title: `Show only #${t}`, onclick: () => filter(t),
        }, `#${t}`)),
        el('span', { className: 'card-replies' }, `${replies} ${replies === 1 ? 'reply' : 'replies'}`),
        el('span', { className: 'hint' }, 'last activity ', timeElement(info.last_ts ?? thread.last_ts))));
  }

  function draw() {
    if (!ch) return;
    const shown = [...ch.threads.values()]
      .filter((info) => !tag || (info.tags ?? []).includes(tag))
      .sort((a, b) => (b.last_ts ?? 0) - (a.last_ts ?? 0));
    cards.replaceChildren(...shown.map(card));
    $('#forum-empty').hidden = shown.length > 0 || !ch.forumLoaded;
    $('#forum-more').hidden = !next;
    $('#forum-filter-clear').hidden = !tag;
    $('#forum-new').hidden = !can(ch.community.role, 'post') || ch.archived;
  }

  function filter(value) {
    tag = value.trim().replace(/^#/, '').toLowerCase();
    $('#forum-tag').value = tag;
    next = null;
    load();
  }

  $('#forum-filter').addEventListener('submit', (event) => {
    event.preventDefault();
    filter($('#forum-tag').value);
  });
  $('#forum-filter-clear').addEventListener('click', () => filter(''));
  $('#forum-more').addEventListener('click', () => load(true));
  $('#forum-new').addEventListener('click', () => {
    form.hidden = !form.hidden;
    if (!form.hidden) $('#post-title').focus();
  });
  $('#post-cancel').addEventListener('click', () => {
    form.hidden = true;
    $('#forum-new').focus();
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const error = $('.error', form);
    const title = $('#post-title').value.trim();
    const text = $('#post-text').value;
    const tags = $('#post-tags').value.split(',').map((t) => t.trim().replace(/^#/, '')).filter(Boolean);
    error.textContent = '';
    if (!title || !text.trim()) {
      error.textContent = 'A post needs a title and a text.';
      return;
    }
    if (length(text) > MAX_TEXT) {
      error.textContent = `The text is too long: the limit is ${MAX_TEXT.toLocaleString('en')} characters.`;
      return;
    }
    const channel = ch;
    try {
      const { thread } = await app.client().command('thread.create',
        { channel: channel.id, title, text, tags });
      channel.change({ t: 'thread.created', d: { thread } });
      form.reset();
      form.hidden = true;
      draw();
      app.setFollowing(thread.id, true);
      app.notify('Posted.');
    } catch (err) {
      error.textContent = err.message;
    }
  });

  return {
    show(channel) {
      const switched = channel !== ch;
      ch = channel;
      if (switched) {
        tag = '';
        next = null;
        $('#forum-tag').value = '';
        form.hidden = true;
      }
      $('#forum-heading').textContent = `#${channel.name}`;
      draw();
      load();
    },
    changed(channel) {
      if (channel === ch) draw();
    },
    refresh(channel) {
      if (channel === ch) draw();
    },
    reset(channel) {
      if (channel === ch) load();
    },
    status() {},
    online() {
      if (ch) load();
    },
    focus() {
      $('#forum-new').hidden ? $('#forum-tag').focus() : $('#forum-new').focus();
    },
    clear() {
      ch = null;
      cards.replaceChildren();
    },
  };
}
