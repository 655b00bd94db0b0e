// app.js — the Agora web client's UI. The protocol lives in agora.js.

import { Agora } from './agora.js';

const TOKEN_KEY = 'agora.token';
const PAGE = 50; // history page size
const NEAR = 80; // px from an edge that counts as "at" it

const $ = (selector) => document.querySelector(selector);
const box = $('#messages');

let client = null;
let me = null;
let current = null; // the selected channel's id
const channels = new Map(); // id -> channel state, see ensureChannel

/** Build an element; children are nodes or strings (always text, never HTML). */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

function nonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// Authentication

function showView(name) {
  $('#auth-view').hidden = name !== 'auth';
  $('#chat-view').hidden = name !== 'chat';
}

$('#auth-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const kind = event.submitter?.id === 'register-submit' ? 'register' : 'login';
  const username = $('#login-username').value.trim();
  const body = { username, password: $('#login-password').value };
  const name = $('#register-name').value.trim();
  if (kind === 'register' && name) body.display_name = name;
  const buttons = document.querySelectorAll('#auth-form button');
  buttons.forEach((b) => (b.disabled = true));
  $('#auth-error').textContent = '';
  try {
    const res = await fetch(`/api/v1/auth/${kind}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.error?.message ?? `the server answered ${res.status}`);
    localStorage.setItem(TOKEN_KEY, data.token);
    $('#login-password').value = '';
    start(data.token);
  } catch (err) {
    $('#auth-error').textContent =
      err instanceof TypeError ? 'Could not reach the server.' : err.message;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
});

function start(token) {
  showView('chat');
  client = new Agora(token, { onstatus, onready, onreset });
  client.on('message.created', onMessageCreated);
  client.connect();
  $('#composer-input').focus();
}

function logout(message = '') {
  client?.close();
  client = me = current = null;
  $('#status').dataset.state = 'closed';
  localStorage.removeItem(TOKEN_KEY);
  channels.clear();
  $('#communities').replaceChildren();
  $('#message-list').replaceChildren();
  showView('auth');
  $('#auth-error').textContent = message;
  $('#login-username').focus();
}

$('#logout').addEventListener('click', () => logout());

// Connection

function onstatus(status, reason) {
  if (status === 'unauthorized') return logout('Your session has expired. Please log in again.');
  const text = {
    connecting: 'Connecting…',
    online: 'Connected',
    offline: 'Offline — reconnecting…',
    stopped: `Disconnected: ${reason || 'the server refused the connection'}. Reload to retry.`,
  }[status];
  if (text === undefined) return;
  $('#status').dataset.state = status;
  $('#status').textContent = text;
  $('#composer-send').disabled = status === 'stopped';
}

function onready(reply) {
  me = reply.user;
  $('#me').textContent = me.name;
  buildSidebar(reply.communities);
  for (const id of channels.keys()) client.subscribe(id).catch(report);
  const selected = channels.get(current);
  if (!selected && channels.size) select(channels.keys().next().value);
  else if (selected && !selected.loaded) loadLatest(selected);
  // Messages written before the drop go again: same nonce, so never stored twice.
  for (const ch of channels.values()) {
    for (const entry of ch.entries) if (entry.pending) deliver(ch, entry);
  }
}

function onreset(channelId) {
  // Too much was missed to replay: start this channel's history afresh.
  const ch = channels.get(channelId);
  if (!ch) return;
  const pending = ch.entries.filter((e) => e.pending || e.error);
  Object.assign(ch, { entries: pending, byId: new Map(), loaded: false, oldest: null, more: true });
  if (channelId !== current) return;
  render(true);
  loadLatest(ch);
}

function report(err) {
  if (err.code !== 'offline' && err.code !== 'disconnected') console.warn(err);
}

// Sidebar

/** A channel's state: its messages (entries) and how much history is loaded. */
function ensureChannel({ id, name }) {
  if (!channels.has(id)) {
    channels.set(id, { id, entries: [], byId: new Map(), byNonce: new Map(), unread: false,
      loaded: false, loading: false, oldest: null, more: true });
  }
  return Object.assign(channels.get(id), { name });
}

function buildSidebar(communities) {
  const known = new Set(communities.flatMap((c) => c.channels.map((channel) => channel.id)));
  for (const id of [...channels.keys()].filter((id) => !known.has(id))) {
    channels.delete(id); // the channel is gone, or we lost access to it
    client.unsubscribe(id).catch(report);
  }
  const sections = communities.map((community) =>
    el('section', { className: 'community' },
      el('h2', {}, community.name),
      el('ul', {}, ...community.channels.map((channel) => {
        const ch = ensureChannel(channel);
        ch.button = el('button', {
          type: 'button',
          className: 'channel',
          dataset: { channelId: ch.id },
          onclick: () => {
            select(ch.id);
            $('#composer-input').focus();
          },
        }, el('span', { className: 'hash', ariaHidden: 'true' }, '#'), ch.name,
        el('span', { className: 'visually-hidden unread-label' }, ', unread messages'));
        markUnread(ch, ch.unread);
        if (ch.id === current) ch.button.setAttribute('aria-current', 'page');
        return el('li', {}, ch.button);
      }))));
  $('#communities').replaceChildren(...sections);
}

function markUnread(ch, unread) {
  ch.unread = unread;
  ch.button?.classList.toggle('unread', unread);
  if (ch.button) ch.button.querySelector('.unread-label').hidden = !unread;
}

function select(id) {
  const ch = channels.get(id);
  current = id;
  for (const other of channels.values()) other.button?.removeAttribute('aria-current');
  ch.button.setAttribute('aria-current', 'page');
  markUnread(ch, false);
  $('#channel-title').textContent = `# ${ch.name}`;
  $('#composer-label').textContent = `Message #${ch.name}`;
  $('#composer-input').placeholder = `Message #${ch.name}`;
  toggleSidebar(false);
  render(true);
  if (!ch.loaded) loadLatest(ch);
}

function toggleSidebar(open) {
  document.body.classList.toggle('sidebar-open', open);
  $('#sidebar-toggle').setAttribute('aria-expanded', String(open));
  if (open) channels.get(current)?.button.focus();
}

$('#sidebar-toggle').addEventListener('click', () =>
  toggleSidebar(!document.body.classList.contains('sidebar-open')));
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && document.body.classList.contains('sidebar-open')) {
    toggleSidebar(false);
    $('#sidebar-toggle').focus();
  }
});

// Messages

/** Add or update a message; true if it is new to this channel. */
function upsert(ch, message, o) {
  const mine = message.author.id === me?.id && message.nonce;
  let entry = ch.byId.get(message.id) ?? (mine ? ch.byNonce.get(message.nonce) : undefined);
  const isNew = !entry;
  if (isNew) ch.entries.push((entry = {}));
  Object.assign(entry, { message, pending: false, error: null });
  if (o !== undefined) entry.o = o;
  ch.byId.set(message.id, entry);
  ch.byNonce.delete(entry.nonce); // reconciled: from now on it is known by id
  entry.el = messageElement(entry);
  return isNew;
}

function onMessageCreated(d, frame) {
  const ch = channels.get(frame.ch);
  if (!ch) return;
  const isNew = upsert(ch, d.message, frame.o);
  if (frame.ch === current) render();
  else if (isNew && d.message.author.id !== me?.id) markUnread(ch, true);
}

function mergeHistory(ch, events) {
  for (const event of events) {
    ch.oldest = ch.oldest === null ? event.o : Math.min(ch.oldest, event.o);
    if (event.t === 'message.created') upsert(ch, event.d.message, event.o);
  }
  ch.more = events.length === PAGE && events[0].o > 1;
}

const loadLatest = (ch) => loadPage(ch, null);

function loadOlder() {
  const ch = channels.get(current);
  if (ch?.loaded && ch.more) loadPage(ch, ch.oldest);
}

/** Load the page of history before offset `before` (null: the latest page). */
async function loadPage(ch, before) {
  if (ch.loading || !client) return;
  ch.loading = true;
  const fromBottom = box.scrollHeight - box.scrollTop;
  try {
    mergeHistory(ch, (await client.history(ch.id, { before, limit: PAGE })).events);
    ch.loaded = true;
  } catch (err) {
    return report(err);
  } finally {
    ch.loading = false;
  }
  if (ch.id !== current) return;
  render(before === null);
  if (before !== null) box.scrollTop = box.scrollHeight - fromBottom; // keep the view still
  if (box.scrollTop < NEAR) loadOlder(); // the page does not fill the view yet
}

box.addEventListener('scroll', () => {
  if (box.scrollTop < NEAR) loadOlder();
});
$('#load-older').addEventListener('click', loadOlder);

function formatTime(ts) {
  const date = new Date(ts);
  const today = date.toDateString() === new Date().toDateString();
  const style = today ? { timeStyle: 'short' } : { dateStyle: 'medium', timeStyle: 'short' };
  const text = date.toLocaleString([], style);
  return el('time', { dateTime: date.toISOString(), title: date.toLocaleString() }, text);
}

function messageElement(entry) {
  const { message } = entry;
  const state = entry.error ? `not sent: ${entry.error}` : entry.pending ? 'sending…' : '';
  const li = el('li', { className: 'message' },
    el('div', { className: 'meta' },
      el('span', { className: 'author' }, message.author.name), ' ', formatTime(message.ts),
      state && el('span', { className: 'state' }, state)),
    el('p', { className: 'text' }, message.text));
  li.classList.toggle('mine', message.author.id === me?.id);
  li.classList.toggle('pending', entry.pending);
  li.classList.toggle('failed', Boolean(entry.error));
  if (message.id) li.dataset.messageId = message.id;
  if (entry.o !== undefined) li.dataset.offset = entry.o;
  if (entry.nonce) li.dataset.nonce = entry.nonce;
  if (entry.error) {
    li.querySelector('.meta').append(el('button', {
      type: 'button', className: 'retry', onclick: () => retry(entry) }, 'Retry'));
  }
  return li;
}

/** Show the selected channel: confirmed messages in offset order, then pending ones. */
function render(stick) {
  const ch = channels.get(current);
  if (!ch) return;
  const atBottom = stick ?? box.scrollHeight - box.scrollTop - box.clientHeight < NEAR;
  const rank = (entry) => entry.o ?? Number.MAX_SAFE_INTEGER; // unconfirmed ones last
  ch.entries.sort((a, b) => rank(a) - rank(b)); // stable: pending keep their order
  $('#message-list').replaceChildren(...ch.entries.map((entry) => entry.el));
  $('#load-older').hidden = !(ch.loaded && ch.more);
  $('#empty').hidden = !ch.loaded || ch.entries.length > 0;
  if (atBottom) box.scrollTop = box.scrollHeight;
}

// Composer

$('#composer').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('#composer-input');
  const text = input.value.trim();
  const ch = channels.get(current);
  if (!text || !ch || !me) return;
  input.value = '';
  autosize();
  const id = nonce();
  const entry = { nonce: id, pending: true, error: null };
  entry.message = { author: { id: me.id, name: me.name }, text, ts: Date.now(), nonce: id };
  entry.el = messageElement(entry);
  ch.entries.push(entry);
  ch.byNonce.set(id, entry);
  render(true);
  deliver(ch, entry);
});

// One send at a time, so that messages are stored in the order they were written.
let sending = Promise.resolve();
function deliver(ch, entry) {
  sending = sending.then(() => sendNow(ch, entry)).catch((err) => console.error(err));
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function sendNow(ch, entry) {
  while (client && entry.pending && channels.get(ch.id) === ch) {
    try {
      upsert(ch, (await client.send(ch.id, entry.message.text, entry.nonce)).message);
    } catch (err) {
      if (err.code === 'offline' || err.code === 'disconnected') return; // resent on reconnect
      if (err.code === 'rate_limited') await sleep(err.retry_after_ms ?? 1000);
      else {
        Object.assign(entry, { pending: false, error: err.message });
        entry.el = messageElement(entry);
      }
    }
  }
  if (ch.id === current) render();
}

function retry(entry) {
  const ch = channels.get(current);
  Object.assign(entry, { pending: true, error: null });
  entry.el = messageElement(entry);
  render();
  deliver(ch, entry);
  $('#composer-input').focus();
}

function autosize() {
  const input = $('#composer-input');
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}

$('#composer-input').addEventListener('input', autosize);
$('#composer-input').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $('#composer').requestSubmit();
  }
});

// Start

const saved = localStorage.getItem(TOKEN_KEY);
if (saved) start(saved);
else showView('auth');
