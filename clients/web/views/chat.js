// views/chat.js — the chat view: a channel's timeline, history on scroll-up,
// and the composer with local echo.
//
// A view is a unit the shell (app.js) shows for a channel; every view has
//   show(ch)          draw channel `ch` (a ChannelState), loading what it needs
//   changed(ch)       ch's timeline changed (events arrived); redraw if on screen
//   reset(ch)         ch lost its timeline (missed events could not be replayed)
//   online()          the connection is back: resend what is waiting
//   refresh(ch)       ch's settings or the viewer's role changed: redraw controls
//   focus()           put the keyboard focus where the user works
// Threads and the workshop view (later) follow the same shape.

import { PAGE } from '../state.js';
import { $, el, nonce, timeElement } from '../dom.js';
import { can } from '../roles.js';

const NEAR = 80; // px from an edge that counts as "at" it
const GROUP_MS = 7 * 60 * 1000; // consecutive messages by one author this close share a header
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** "30 seconds", "1 minute", "5 minutes", "1 hour". */
export function duration(seconds) {
  const [n, unit] = seconds % 3600 === 0 ? [seconds / 3600, 'hour']
    : seconds % 60 === 0 ? [seconds / 60, 'minute'] : [seconds, 'second'];
  return `${n} ${unit}${n === 1 ? '' : 's'}`;
}

export function createChatView(app) {
  const box = $('#messages');
  const list = $('#message-list');
  const input = $('#composer-input');
  const send = $('#composer-send');
  let ch = null; // the channel on screen

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

  box.addEventListener('scroll', () => {
    if (box.scrollTop < NEAR) loadOlder();
  });
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
        timeElement(message.ts), el('span', { className: 'state' })),
      el('p', { className: 'text' }, message.text));
    if (message.author.id !== app.me()?.id) {
      const community = ch.community.id;
      li.prepend(el('button', {
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
    $('.actions', li)?.remove();
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
    const atBottom = stick ?? box.scrollHeight - box.scrollTop - box.clientHeight < NEAR;
    const timeline = ch.timeline();
    let cursor = list.firstChild;
    timeline.forEach((entry, i) => {
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
    $('#history-start').textContent = `This is the start of #${ch.name}.`;
    $('#skipped').hidden = !ch.skipped;
    $('#empty').hidden = !ch.loaded || timeline.length > 0;
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  // Sending

  $('#composer').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = input.value;
    const me = app.me();
    if (!text.trim() || !ch || !me || input.disabled) return;
    input.value = '';
    autosize();
    const entry = ch.addLocal(me, text, nonce());
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
        const reply = await app.client().send(channel.id, entry.message.text, entry.nonce);
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
    input.placeholder = closed ? '' : `Message #${ch.name}`;
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
    if (event.key === 'Enter' && !event.shiftKey && !event.altKey && !event.isComposing) {
      event.preventDefault();
      $('#composer').requestSubmit();
    }
  });

  return {
    show(channel) {
      const switched = channel !== ch;
      ch = channel;
      box.setAttribute('aria-label', `Messages in #${channel.name}`);
      $('#composer-label').textContent = `Message #${channel.name}`;
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
      box.setAttribute('aria-label', `Messages in #${channel.name}`);
      $('#composer-label').textContent = `Message #${channel.name}`;
      $('#history-start').textContent = `This is the start of #${ch.name}.`;
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
  };
}
