// views/thread.js — a thread in the side panel: its title, its messages (the
// opening post or the message it started from first; older pages load when it
// is scrolled to the top), a reply box, and follow / unfollow. A thread is a
// channel of kind `thread` (docs/protocol.md §5.9): the shell keeps its
// ChannelState and subscribes to it while it is open.

import { PAGE } from '../state.js';
import { $, el, nonce, timeElement } from '../dom.js';
import { can } from '../roles.js';
import { createComposer } from './composer.js';
import { excerpt, messageBody, signature } from './message.js';
import { addReactionButton } from './reactions.js';
import { messageActions } from './actions.js';
import { typingLine } from './typing.js';

const NEAR = 80; // px from an edge that counts as "at" it

export function createThreadPanel(app) {
  const panel = $('#thread-panel');
  const list = $('#thread-messages');
  const input = $('#thread-input');
  const follow = $('#thread-follow');
  let ch = null; // the thread's ChannelState
  const typing = typingLine($('#thread-typing'), () => ch?.id);
  // The main composer's length counter, @mention autocomplete and typing.start.
  const composer = createComposer(app, {
    input, getChannel: () => ch, counter: $('#thread-count'), list: $('#thread-mention-list'), preview: null,
  });

  const box = $('#thread-scroll');

  /**
   * Load a page of the thread's history: the newest (`before` null), or the
   * one before offset `before`, keeping the view still (as the chat view does).
   */
  async function load(thread, before = null) {
    if ((before === null && thread.loaded) || thread.loading || !app.client()) return;
    thread.loading = true;
    const fromBottom = box.scrollHeight - box.scrollTop;
    if (thread === ch) box.setAttribute('aria-busy', 'true');
    try {
      const reply = await app.client().history(thread.id, { before, limit: PAGE });
      thread.mergeHistory(reply.events, app.me());
    } catch (err) {
      app.report(err);
    } finally {
      thread.loading = false;
      box.removeAttribute('aria-busy');
    }
    if (thread !== ch) return;
    draw(before === null);
    if (before !== null) box.scrollTop = box.scrollHeight - fromBottom; // keep the view still
    if (box.scrollTop < NEAR) loadOlder(); // the page does not fill the panel yet
  }

  function loadOlder() {
    if (ch?.loaded && ch.more && ch.oldest !== null) load(ch, ch.oldest);
  }

  box.addEventListener('scroll', () => {
    if (box.scrollTop < NEAR) loadOlder();
  });

  const context = () => ({
    me: app.me(),
    canReact: can(ch.community.role, 'participate'),
    react: async (entry, emoji, add) => {
      try {
        await app.client().command(add ? 'reaction.add' : 'reaction.remove',
          { channel: ch.id, message: entry.message.id, emoji });
      } catch (err) {
        app.notify(`Could not react: ${err.message}`);
      }
    },
    openThread: () => {},
  });

  function item(entry) {
    const m = entry.message;
    if (!entry.el) {
      entry.el = el('li', { className: 'message' },
        el('div', { className: 'meta' },
          el('span', { className: 'author' }, m.author.name), ' ',
          m.author.bot ? el('span', { className: 'badge bot-tag' }, 'BOT') : null,
          timeElement(m.ts)));
      entry.el.prepend(el('div', { className: 'msg-tools' },
        addReactionButton((emoji, add) => context().react(entry, emoji, add)),
        el('button', {
          type: 'button', className: 'msg-more', ariaHaspopup: 'menu', ariaLabel: 'Message actions',
          title: 'Message actions', onclick: (event) => openActions(event.currentTarget, entry),
        }, '…')));
    }
    const gone = !m.id || Boolean(m.deleted);
    $('.add-reaction', entry.el).hidden = gone || !context().canReact;
    $('.msg-more', entry.el).hidden = gone;
    entry.el.classList.toggle('deleted', Boolean(m.deleted));
    const key = signature(entry, ch);
    if (entry.el.signature !== key && !entry.editing) {
      entry.el.signature = key;
      $('.body', entry.el)?.remove();
      entry.el.append(messageBody(entry, ch, context()));
    }
    entry.el.classList.toggle('pending', Boolean(entry.pending));
    if (m.id) entry.el.dataset.messageId = m.id;
    return entry.el;
  }

  function openActions(button, entry) {
    const thread = ch;
    app.openActions(button, `Message by ${entry.message.author.name}`, messageActions(app, thread, entry, {
      openThread: () => {},
      redraw: () => {
        entry.el.signature = null;
        if (thread === ch) draw();
      },
      returnTo: () => input,
    }));
  }

  function draw(stick = false) {
    if (!ch) return;
    const bottom = stick || box.scrollHeight - box.scrollTop - box.clientHeight < NEAR;
    const info = ch.thread;
    $('#thread-title').textContent = info.title ?? 'Thread';
    const tags = info.tags ?? [];
    const origin = info.message
      ? app.channels.get(info.parent)?.byKey.get(`m:${info.message}`)?.message : null;
    $('#thread-meta').textContent = [origin ? `Started from ${origin.author.name}: ${excerpt(origin, 100)}` : '',
      info.resolved ? 'resolved' : '', ...tags.map((t) => `#${t}`)].filter(Boolean).join(' · ');
    list.replaceChildren(...ch.timeline().filter((e) => e.kind === 'message').map(item));
    const me = app.me();
    const resolve = $('#thread-resolve');
    resolve.hidden = !(info.created_by === me?.id || can(ch.community.role, 'manage_threads'));
    resolve.textContent = info.resolved ? 'Reopen' : 'Mark resolved';
    const followed = app.following(ch.id);
    follow.textContent = followed ? 'Unfollow' : 'Follow';
    follow.setAttribute('aria-pressed', String(followed));
    const closed = !can(ch.community.role, 'post');
    input.disabled = closed;
    $('#thread-send').disabled = closed;
    if (bottom) box.scrollTop = box.scrollHeight;
    // Seen: the thread's read marker moves to its newest message.
    if (ch.loaded && ch.head > ch.readO && document.hasFocus() && app.client()?.ready) {
      ch.readO = ch.head;
      ch.unread = 0;
      app.marksChanged();
      app.client().command('read.mark', { channel: ch.id, o: ch.head }).catch(app.report);
    }
  }

  follow.addEventListener('click', async () => {
    if (!ch) return;
    const thread = ch;
    const on = !app.following(thread.id);
    try {
      await app.client().command(on ? 'thread.follow' : 'thread.unfollow', { thread: thread.id });
      app.setFollowing(thread.id, on);
      app.notify(on ? 'You follow this thread.' : 'You no longer follow this thread.');
    } catch (err) {
      app.notify(`Could not do that: ${err.message}`);
    }
    if (thread === ch) draw();
  });

  $('#thread-resolve').addEventListener('click', async () => {
    if (!ch) return;
    const thread = ch;
    try {
      const reply = await app.client().command('thread.update',
        { thread: thread.id, resolved: !thread.thread.resolved });
      Object.assign(thread.thread, reply.thread);
    } catch (err) {
      app.notify(`Could not do that: ${err.message}`);
    }
    if (thread === ch) draw();
  });

  $('#thread-composer').addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = input.value;
    if (!ch || !text.trim() || input.disabled || !composer.allowed()) return;
    const thread = ch;
    input.value = '';
    composer.reset();
    const entry = thread.addLocal(app.me(), text, nonce());
    draw(true);
    try {
      const reply = await app.client().send(thread.id, text, entry.nonce);
      thread.upsert(reply.message, undefined, app.me());
      app.setFollowing(thread.id, true); // posting follows it
    } catch (err) {
      thread.discard(entry);
      input.value = text;
      composer.count();
      app.notify(`Could not reply: ${err.message}`);
    }
    if (thread === ch) draw(true);
  });
  input.addEventListener('keydown', (event) => {
    if (composer.key(event)) return;
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $('#thread-composer').requestSubmit();
    }
  });

  $('#thread-close').addEventListener('click', () => app.closePanel());

  return {
    /** Show thread state `thread` (a ChannelState with `.thread`, the thread object). */
    show(thread) {
      if (thread !== ch) composer.reset();
      ch = thread;
      list.replaceChildren();
      typing.draw();
      draw(true);
      load(thread);
      input.focus();
    },
    get current() {
      return ch;
    },
    changed(thread) {
      if (thread === ch && !panel.hidden) draw();
    },
    hide() {
      ch = null;
    },
  };
}
