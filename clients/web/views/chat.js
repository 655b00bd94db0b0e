// views/chat.js — the chat view (text channels and DMs): a channel's timeline,
// history on scroll-up, the "new messages" line at the read marker, read.mark
// when the newest message is seen, "jump to present", a jump to a message (for
// search and pins), and the composer with local echo (its extras: composer.js).
//
// A view is a unit the shell (app.js) shows for a channel; every view has
//   show(ch)          draw channel `ch` (a ChannelState), loading what it needs
//   changed(ch)       ch's timeline changed (events arrived); redraw if on screen
//   reset(ch)         ch lost its timeline (missed events could not be replayed)
//   online()          the connection is back: resend what is waiting
//   refresh(ch)       ch's settings or the viewer's role changed: redraw controls
//   focus()           put the keyboard focus where the user works
// The forum view (forum.js) and the workshop view (later) follow the same shape.

import { PAGE } from '../state.js';
import { $, el, nonce, timeElement } from '../dom.js';
import { can } from '../roles.js';
import { messageActions } from './actions.js';
import { createComposer } from './composer.js';
import { mentions } from './markdown.js';
import { addReactionButton } from './reactions.js';
import { typingLine } from './typing.js';
import { messageBody, signature } from './message.js';

const NEAR = 80; // px from an edge that counts as "at" it
const GROUP_MS = 7 * 60 * 1000; // consecutive messages by one author this close share a header
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** "30 seconds", "1 minute", "5 minutes", "1 hour". */
export function duration(seconds) {
  const [n, unit] = seconds % 3600 === 0 ? [seconds / 3600, 'hour']
    : seconds % 60 === 0 ? [seconds / 60, 'minute'] : [seconds, 'second'];
  return `${n} ${unit}${n === 1 ? '' : 's'}`;
}

/** "#general", or "@Bob" for a direct message. */
const label = (ch) => (ch.community.dm ? `@${ch.name}` : `#${ch.name}`);

export function createChatView(app) {
  const box = $('#messages');
  const list = $('#message-list');
  const input = $('#composer-input');
  const send = $('#composer-send');
  let ch = null; // the channel on screen
  const composer = createComposer(app, { input, getChannel: () => ch });
  const typing = typingLine($('#typing'), () => ch?.id);
  const divider = el('li', { className: 'new-divider', role: 'separator' },
    el('span', {}, 'New messages'));

  // History

  async function loadPage(channel, before) {
    if (channel.loading || !app.client()) return;
    channel.loading = true;
    const fromBottom = box.scrollHeight - box.scrollTop;
    if (channel === ch) box.setAttribute('aria-busy', 'true');
    try {
      const reply = await app.client().history(channel.id, { before, limit: PAGE });
      channel.mergeHistory(reply.events, app.me());
    } catch (err) {
      return app.report(err);
    } finally {
      channel.loading = false;
      box.removeAttribute('aria-busy');
    }
    if (channel !== ch) return;
    render(before === null);
    if (before !== null) box.scrollTop = box.scrollHeight - fromBottom; // keep the view still
    if (box.scrollTop < NEAR) loadOlder(); // the page does not fill the view yet
  }

  function loadOlder() {
    if (ch?.loaded && ch.more && ch.oldest !== null) loadPage(ch, ch.oldest);
  }

  const atBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight < NEAR;

  box.addEventListener('scroll', () => {
    if (box.scrollTop < NEAR) loadOlder();
    if (atBottom() && !ch?.detached) $('#jump-present').hidden = true;
    markRead();
  });
  window.addEventListener('focus', () => markRead());
  document.addEventListener('visibilitychange', () => markRead());

  /** The newest message is in view and the window has the focus: tell the server. */
  function markRead() {
    if (!ch || !ch.loaded || ch.detached || document.hidden || !document.hasFocus()) return;
    if (!atBottom() || ch.head <= ch.readO || !app.client()?.ready) return;
    ch.readO = ch.head;
    ch.unread = 0;
    ch.mentions = 0;
    app.marksChanged();
    app.client().command('read.mark', { channel: ch.id, o: ch.head }).catch(app.report);
  }

  $('#jump-present').addEventListener('click', () => {
    $('#jump-present').hidden = true;
    if (ch?.detached) {
      ch.detached = false;
      ch.reset();
      render(true);
      loadPage(ch, null);
    } else box.scrollTop = box.scrollHeight;
    input.focus();
  });

  /** Show message `id` (offset `o`) of the channel on screen: the history around it, flashed. */
  async function jumpTo(channel, id, o) {
    while (channel.loading) await sleep(50);
    let entry = channel.byKey.get(`m:${id}`);
    if (!entry) {
      channel.loading = true;
      try {
        const reply = await app.client().history(channel.id, { before: o + 25, limit: PAGE });
        channel.reset();
        channel.detached = true;
        channel.mergeHistory(reply.events, app.me());
        channel.more = reply.events.length > 0 && reply.events[0].o > 1;
      } catch (err) {
        return app.report(err);
      } finally {
        channel.loading = false;
      }
      entry = channel.byKey.get(`m:${id}`);
    }
    if (channel !== ch) return;
    render(false);
    if (channel.detached) $('#jump-present').hidden = false;
    flash(entry?.el);
  }

  function flash(node) {
    if (!node) return;
    node.scrollIntoView({ block: 'center' });
    node.classList.remove('flash');
    void node.offsetWidth; // restart the animation
    node.classList.add('flash');
    setTimeout(() => node.classList.remove('flash'), 2500);
  }
  $('#load-older').addEventListener('click', loadOlder);
  $('#skipped-load').addEventListener('click', () => {
    ch.skipped = false;
    render();
    loadOlder();
  });

  // Drawing

  function entryElement(entry) {
    if (!entry.el) entry.el = entry.kind === 'system' ? systemElement(entry) : messageElement(entry);
    else if (entry.kind === 'message') updateMessage(entry);
    return entry.el;
  }

  function systemElement(entry) {
    const member = entry.d.member ?? {};
    const who = member.name ?? member.username ?? 'Someone';
    const text = entry.t === 'member.joined' ? `${who} joined the community.` : entry.t;
    const li = el('li', { className: 'system', dataset: { offset: entry.o, t: entry.t } },
      el('span', {}, text));
    if (entry.d.ts) li.append(' ', timeElement(entry.d.ts));
    return li;
  }

  function messageElement(entry) {
    const { message } = entry;
    const li = el('li', { className: 'message' },
      el('div', { className: 'meta' },
        el('span', { className: 'author' }, message.author.name), ' ',
        message.author.bot ? el('span', { className: 'badge bot-tag', title: 'A bot account' }, 'BOT') : null,
        timeElement(message.ts), el('span', { className: 'pin-mark', hidden: true }, '📌 pinned'),
        el('span', { className: 'state' })));
    // The tools show on hover and focus: react, the message's menu, the moderation menu.
    const tools = el('div', { className: 'msg-tools' },
      addReactionButton((emoji, add) => react(ch, entry, emoji, add)),
      el('button', {
        type: 'button', className: 'msg-more', hidden: true, ariaHaspopup: 'menu',
        ariaLabel: 'Message actions', title: 'Message actions',
        onclick: (event) => openActions(event.currentTarget, entry),
      }, '…'));
    li.prepend(tools);
    if (message.author.id !== app.me()?.id) {
      const community = ch.community.id;
      tools.append(el('button', {
        type: 'button', className: 'msg-actions', hidden: true, ariaHaspopup: 'menu',
        ariaLabel: `Actions for ${message.author.name}`, title: `Actions for ${message.author.name}`,
        onclick: (event) => app.openMenu(event.currentTarget, community, message.author.id),
      }, '⋯'));
    }
    li.classList.toggle('mine', message.author.id === app.me()?.id);
    entry.el = li;
    updateMessage(entry);
    return li;
  }

  const bodyContext = () => ({
    me: app.me(),
    canReact: can(ch.community.role, 'participate') && !ch.archived,
    react: (entry, emoji, add) => react(ch, entry, emoji, add),
    openThread: (id) => app.openThread(ch.threads.get(id)?.thread ?? id, ch),
    jump: (id) => {
      const target = ch.byKey.get(`m:${id}`);
      if (target?.el) flash(target.el);
    },
  });

  async function react(channel, entry, emoji, add) {
    try {
      await app.client().command(add ? 'reaction.add' : 'reaction.remove',
        { channel: channel.id, message: entry.message.id, emoji });
    } catch (err) {
      app.notify(`Could not react: ${err.message}`);
    }
  }

  /** Redraw what a message shows when it changed (an edit, a reaction, a thread…). */
  function updateBody(entry) {
    const li = entry.el;
    const m = entry.message;
    $('.msg-more', li).hidden = !m.id || Boolean(m.deleted);
    $('.add-reaction', li).hidden = !m.id || Boolean(m.deleted) || !bodyContext().canReact;
    if (entry.editing) return;
    const key = signature(entry, ch);
    if (li.signature === key) return;
    li.signature = key;
    $('.body', li)?.remove();
    li.append(messageBody(entry, ch, bodyContext()));
    $('.pin-mark', li).hidden = !m.pinned;
    li.classList.toggle('deleted', Boolean(m.deleted));
    li.classList.toggle('mentions-me', !m.deleted && m.author.id !== app.me()?.id
      && mentions(m.text, app.me()?.username?.toLowerCase()));
  }

  // A message's own actions, in the message menu (actions.js)

  function openActions(button, entry) {
    const channel = ch;
    app.openActions(button, `Message by ${entry.message.author.name}`, messageActions(app, channel, entry, {
      reply: () => composer.setReply(entry),
      openThread: (id) => bodyContext().openThread(id),
      threadCreated: () => channel === ch && render(),
      redraw: () => {
        entry.el.signature = null;
        if (channel === ch) updateBody(entry);
      },
      returnTo: () => input,
    }));
  }

  /** Bring a message's element up to date in place, so screen readers hear it once. */
  function updateMessage(entry) {
    const li = entry.el;
    const state = entry.error ? 'failed' : entry.pending ? 'pending' : 'sent';
    const wait = entry.waitUntil ? Math.max(1, Math.ceil((entry.waitUntil - Date.now()) / 1000)) : 0;
    const label = {
      pending: wait ? `Slow mode: sending in ${wait} s…` : 'Sending…',
      failed: `Not sent: ${entry.error}`,
      sent: '',
    }[state];
    updateBody(entry);
    if (li.dataset.state === state && li.dataset.messageId === entry.message.id
      && $('.state', li).textContent === label) return;
    li.dataset.state = state;
    li.classList.toggle('pending', entry.pending);
    li.classList.toggle('failed', Boolean(entry.error));
    if (entry.message.id) li.dataset.messageId = entry.message.id;
    if (entry.o !== undefined) li.dataset.offset = entry.o;
    if (entry.nonce) li.dataset.nonce = entry.nonce;
    li.classList.toggle('waiting', Boolean(wait));
    $('.state', li).textContent = label;
    $(':scope > .actions', li)?.remove();
    if (state === 'failed') {
      li.append(el('div', { className: 'actions' },
        el('button', { type: 'button', className: 'secondary small', onclick: () => retry(entry) },
          'Retry'),
        el('button', { type: 'button', className: 'secondary small',
          onclick: () => discard(entry) }, 'Discard')));
    }
  }

  /** Same author, close in time, nothing between: drawn without its own header. */
  function continues(prev, entry) {
    return prev?.kind === 'message' && entry.kind === 'message' && !prev.error
      && prev.message.author.id === entry.message.author.id
      && entry.message.ts - prev.message.ts < GROUP_MS;
  }

  /** Draw the timeline, moving only nodes that changed place. */
  function render(stick) {
    if (!ch) return;
    const bottom = stick ?? atBottom();
    const timeline = ch.timeline();
    const me = app.me()?.id;
    const firstNew = ch.dividerO == null ? null : timeline.find((e) => e.kind === 'message'
      && e.o > ch.dividerO && e.message.author.id !== me);
    const last = list.lastElementChild;
    let cursor = list.firstChild;
    timeline.forEach((entry, i) => {
      if (entry === firstNew) {
        if (divider === cursor) cursor = cursor.nextSibling;
        else list.insertBefore(divider, cursor);
      }
      const node = entryElement(entry);
      node.classList.toggle('grouped', continues(timeline[i - 1], entry));
      const actions = entry.kind === 'message' && $('.msg-actions', node);
      if (actions) {
        actions.hidden = !(entry.message.id && app.canModerate(ch.community.id, entry.message.author.id));
      }
      if (node === cursor) cursor = cursor.nextSibling;
      else list.insertBefore(node, cursor);
    });
    while (cursor) {
      const next = cursor.nextSibling;
      cursor.remove();
      cursor = next;
    }
    $('#load-older').hidden = !(ch.loaded && ch.more);
    $('#history-start').hidden = !(ch.loaded && !ch.more);
    $('#history-start').textContent = `This is the start of ${label(ch)}.`;
    $('#skipped').hidden = !ch.skipped;
    $('#empty').hidden = !ch.loaded || timeline.length > 0;
    if (bottom) box.scrollTop = box.scrollHeight;
    else if (list.lastElementChild !== last && last && ch.loaded) $('#jump-present').hidden = false;
    if (ch.detached) $('#jump-present').hidden = false;
    markRead();
  }

  // Sending

  $('#composer').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = input.value;
    const me = app.me();
    if (!text.trim() || !ch || !me || input.disabled || !composer.allowed()) return;
    input.value = '';
    autosize();
    const entry = ch.addLocal(me, text, nonce(), composer.replyTo);
    composer.setReply(null);
    composer.count();
    render(true);
    deliver(ch, entry);
  });

  // One send at a time, so that messages are stored in the order they were written.
  let sending = Promise.resolve();
  function deliver(channel, entry) {
    sending = sending.then(() => sendNow(channel, entry)).catch((err) => console.error(err));
  }

  async function sendNow(channel, entry) {
    while (app.client() && entry.pending && app.channels.get(channel.id) === channel) {
      try {
        const d = { channel: channel.id, text: entry.message.text, nonce: entry.nonce };
        if (entry.message.reply_to) d.reply_to = entry.message.reply_to;
        const reply = await app.client().command('message.send', d);
        channel.upsert(reply.message, undefined, app.me());
      } catch (err) {
        if (err.code === 'offline' || err.code === 'disconnected') return; // resent on reconnect
        if (err.code === 'rate_limited') await wait(channel, entry, err.retry_after_ms ?? 1000);
        else Object.assign(entry, { pending: false, error: err.message });
      }
    }
    if (channel === ch) render();
  }

  /** Wait out a `rate_limited` answer (slow mode, mostly), showing the time left. */
  async function wait(channel, entry, ms) {
    entry.waitUntil = Date.now() + ms;
    while (Date.now() < entry.waitUntil) {
      if (channel === ch) render();
      await sleep(Math.min(1000, entry.waitUntil - Date.now()));
    }
    entry.waitUntil = null;
  }

  /** The composer as the channel and the viewer's role allow: a note says why not. */
  function composerState() {
    const note = $('#composer-note');
    if (!ch) return;
    const role = ch.community.role;
    let text = '';
    let closed = false;
    if (ch.archived) {
      text = 'This channel is archived: you can read it, but not post here.';
      closed = true;
    } else if (!can(role, 'post')) {
      text = 'Guests can read this channel, but not post in it.';
      closed = true;
    } else if (ch.slowmode) {
      const exempt = can(role, 'manage_channels') ? ' (you are exempt)' : '';
      text = `Slow mode is on: one message every ${duration(ch.slowmode)}${exempt}.`;
    }
    note.textContent = text;
    note.hidden = !text;
    note.classList.toggle('closed', closed);
    input.disabled = closed;
    send.disabled = closed || app.status() === 'stopped';
    input.placeholder = closed ? '' : `Message ${label(ch)}`;
  }

  function retry(entry) {
    Object.assign(entry, { pending: true, error: null });
    render();
    deliver(ch, entry);
    input.focus();
  }

  function discard(entry) {
    ch.discard(entry);
    render();
    input.focus();
  }

  function autosize() {
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  }

  input.addEventListener('input', autosize);
  input.addEventListener('keydown', (event) => {
    if (composer.key(event)) return;
    if (event.key === 'Escape' && composer.replyTo) {
      event.stopPropagation();
      composer.setReply(null);
      return;
    }
    if (event.key === 'Enter' && !event.shiftKey && !event.altKey && !event.isComposing) {
      event.preventDefault();
      $('#composer').requestSubmit();
    }
  });

  return {
    show(channel) {
      const switched = channel !== ch;
      ch = channel;
      if (switched) {
        composer.reset();
        $('#jump-present').hidden = !channel.detached;
        typing.draw();
      }
      box.setAttribute('aria-label', `Messages in ${label(channel)}`);
      $('#composer-label').textContent = `Message ${label(channel)}`;
      composerState();
      if (switched) box.setAttribute('aria-busy', 'true'); // don't read out a whole channel
      render(true);
      if (switched) box.removeAttribute('aria-busy');
      if (!channel.loaded) loadPage(channel, null);
    },
    changed(channel) {
      if (channel === ch) render();
    },
    refresh(channel) {
      if (channel !== ch) return;
      box.setAttribute('aria-label', `Messages in ${label(channel)}`);
      $('#composer-label').textContent = `Message ${label(channel)}`;
      $('#history-start').textContent = `This is the start of ${label(ch)}.`;
      composerState();
      render();
    },
    reset(channel) {
      if (channel !== ch) return;
      render(true);
      loadPage(channel, null);
    },
    status() {
      composerState();
    },
    online() {
      for (const channel of app.channels.values()) {
        for (const entry of channel.entries) if (entry.pending) deliver(channel, entry);
      }
      if (ch && !ch.loaded) loadPage(ch, null);
    },
    focus() {
      input.focus();
    },
    clear() {
      ch = null;
      list.replaceChildren();
    },
    jumpTo,
    markRead,
  };
}

/**
 * A view that draws a channel with the chat view plus a part of its own (the
 * workshop panel, a breakout room's bar): the chat view does the rest.
 * `own.show(channel)` draws that part before the chat view shows the channel;
 * `own.refresh(channel)` redraws it and says whether the channel is the one on
 * screen (only then does the chat view refresh); `own.hide()` takes it away (on
 * `clear` too, before the chat view clears). Any other member of `own` is kept.
 */
export function aroundChat(chat, own) {
  return {
    ...own,
    show(channel) {
      own.show(channel);
      chat.show(channel);
    },
    changed(channel) {
      chat.changed(channel);
    },
    refresh(channel) {
      if (own.refresh(channel)) chat.refresh(channel);
    },
    reset(channel) {
      chat.reset(channel);
    },
    status() {},
    online() {},
    focus() {
      chat.focus();
    },
    hide() {
      own.hide();
    },
    clear() {
      own.hide();
      chat.clear();
    },
  };
}
