// app.js — the Agora web client's shell: log in, the connection and its status
// banner, the sidebar, keyboard shortcuts, and which view shows the selected
// channel. The protocol lives in agora.js, channel state in state.js, and each
// view in views/.

import { Agora } from './agora.js';
import { $, countText } from './dom.js';
import { createSidebar } from './sidebar.js';
import { ChannelState, UNREAD_CAP } from './state.js';
import { createChatView } from './views/chat.js';
import { createMembersPanel } from './views/members.js';

const TOKEN_KEY = 'agora.token';

let client = null;
let me = null;
let current = null; // the selected channel's id
const channels = new Map(); // id -> ChannelState, in sidebar order

const app = {
  client: () => client,
  me: () => me,
  channels,
  report(err) {
    if (err.code !== 'offline' && err.code !== 'disconnected') console.warn(err);
  },
};

const sidebar = createSidebar({ onselect: (id) => select(id, { focus: true }) });
const members = createMembersPanel(app);
// Which view draws a channel, by channel kind; threads and workshops add theirs.
const views = { text: createChatView(app) };
const viewFor = (ch) => views[ch.kind] ?? views.text;

// Authentication

function showScreen(name) {
  $('#auth-view').hidden = name !== 'auth';
  $('#chat-view').hidden = name !== 'chat';
}

$('#auth-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const kind = event.submitter?.id === 'register-submit' ? 'register' : 'login';
  const body = { username: $('#login-username').value.trim(), password: $('#login-password').value };
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
  showScreen('chat');
  client = new Agora(token, { onstatus, onready, onreset });
  client.on('*', onEvent);
  client.connect();
  views.text.focus();
}

function logout(message = '') {
  client?.close();
  client = me = current = null;
  localStorage.removeItem(TOKEN_KEY);
  channels.clear();
  sidebar.clear();
  for (const view of Object.values(views)) view.clear();
  members.close();
  setStatus('closed', '');
  showScreen('auth');
  $('#auth-error').textContent = message;
  $('#login-username').focus();
}

$('#logout').addEventListener('click', () => logout());

// Connection

const STATUS_TEXT = {
  connecting: 'Connecting…',
  online: 'Connected',
  offline: 'Offline — reconnecting…',
  closed: '',
};

function setStatus(state, text) {
  $('#status').dataset.state = state;
  $('#status').textContent = text;
  $('#composer-send').disabled = state === 'stopped';
}

function onstatus(status, reason) {
  if (status === 'unauthorized') return logout('Your session has expired. Please log in again.');
  const text = STATUS_TEXT[status]
    ?? `Disconnected: ${reason || 'the server refused the connection'}. Reload to retry.`;
  setStatus(status, text);
}

// The browser knows before the backoff does when the network or the tab comes back.
window.addEventListener('online', () => client?.reconnectNow());
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) client?.reconnectNow();
});

function onready(reply) {
  me = reply.user;
  $('#me').textContent = me.name;
  const seen = new Set();
  const groups = reply.communities.map((community) => {
    const info = { id: community.id, name: community.name, role: community.role };
    return {
      community: info,
      channels: community.channels.map((channel) => {
        seen.add(channel.id);
        const ch = channels.get(channel.id) ?? new ChannelState(channel, info);
        ch.update(channel);
        ch.community = info;
        channels.set(channel.id, ch);
        return ch;
      }),
    };
  });
  for (const id of [...channels.keys()].filter((id) => !seen.has(id))) {
    channels.delete(id); // the channel is gone, or we lost access to it
    client.unsubscribe(id).catch(app.report);
  }
  // Keep the sidebar's order in the map, for Alt+Up/Down.
  const ordered = groups.flatMap((g) => g.channels);
  channels.clear();
  for (const ch of ordered) channels.set(ch.id, ch);
  sidebar.build(groups);
  // Every channel, so that unread marks come live; agora.js resumes each with `since`.
  for (const id of channels.keys()) client.subscribe(id).catch(app.report);
  if (!channels.has(current)) current = null;
  if (current) refreshMarks();
  else if (channels.size) select(channels.keys().next().value);
  for (const view of Object.values(views)) view.online();
}

function onreset(channelId) {
  // Too much was missed to replay: start this channel's timeline afresh.
  const ch = channels.get(channelId);
  if (!ch) return;
  const hadTimeline = ch.loaded;
  ch.reset();
  ch.skipped = hadTimeline;
  viewFor(ch).reset(ch);
}

function onEvent(d, frame) {
  const ch = channels.get(frame.ch);
  if (!ch || typeof frame.o !== 'number') return;
  const entry = ch.apply(frame, me);
  if (frame.t === 'member.joined') members.refresh(ch.community.id);
  if (!entry) return;
  if (ch.id === current) return viewFor(ch).changed(ch);
  ch.trim();
  if (entry.kind === 'message' && entry.message.author.id !== me?.id) {
    ch.markUnread();
    refreshMarks();
  }
}

// Channels

function select(id, { focus = false } = {}) {
  const ch = channels.get(id);
  if (!ch) return;
  current = id;
  ch.unread = 0;
  refreshMarks();
  $('#channel-title').textContent = `# ${ch.name}`;
  $('#community-title').textContent = ch.community.name;
  toggleSidebar(false);
  members.show(ch.community);
  viewFor(ch).show(ch);
  if (focus) viewFor(ch).focus();
}

function refreshMarks() {
  sidebar.mark(channels, current);
  let total = 0;
  for (const ch of channels.values()) total += ch.unread;
  const count = countText(total, UNREAD_CAP);
  document.title = total ? `(${count}) Agora` : 'Agora';
  // On a phone the channel list is folded away: its button carries the mark.
  const toggle = $('#sidebar-toggle');
  $('.unread-count', toggle).hidden = total === 0;
  $('.unread-count', toggle).textContent = total ? count : '';
  toggle.setAttribute('aria-label', total ? `Channels, ${count} unread` : 'Channels');
}

/** Select the channel `step` places away in the sidebar, or the next one with unread. */
function move(step, { unreadOnly = false } = {}) {
  const ids = [...channels.keys()];
  const at = ids.indexOf(current);
  for (let i = 1; i <= ids.length; i++) {
    const id = ids[(at + step * i + ids.length * i) % ids.length];
    if (!unreadOnly || channels.get(id).unread) return select(id, { focus: true });
  }
}

let returnFocus = null; // where Escape goes back to from the channel list

function toggleSidebar(open) {
  document.body.classList.toggle('sidebar-open', open);
  $('#sidebar-toggle').setAttribute('aria-expanded', String(open));
}

/** Open the channel list (a drawer on phones) with the focus on the current channel. */
function enterSidebar() {
  returnFocus = document.activeElement;
  toggleSidebar(true);
  sidebar.focus(current);
}

function leaveSidebar() {
  toggleSidebar(false);
  if (returnFocus?.checkVisibility?.()) returnFocus.focus();
  else if (channels.has(current)) viewFor(channels.get(current)).focus();
  returnFocus = null;
}

$('#sidebar-toggle').addEventListener('click', () => {
  if (document.body.classList.contains('sidebar-open')) toggleSidebar(false);
  else enterSidebar();
});

// Keyboard: Alt+Up/Down switch channel (with Shift: the next unread one),
// Ctrl+K jumps to the channel list, Escape closes what is open.
document.addEventListener('keydown', (event) => {
  if ($('#chat-view').hidden) return;
  if (event.altKey && (event.key === 'ArrowUp' || event.key === 'ArrowDown')) {
    event.preventDefault();
    move(event.key === 'ArrowUp' ? -1 : 1, { unreadOnly: event.shiftKey });
  } else if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === 'k') {
    event.preventDefault();
    enterSidebar();
  } else if (event.key === 'Escape') {
    if (members.open) {
      members.close();
      $('#members-toggle').focus();
    } else if (document.body.classList.contains('sidebar-open')
      || $('#sidebar').contains(document.activeElement)) {
      leaveSidebar();
    }
  }
});

// Start

const saved = localStorage.getItem(TOKEN_KEY);
if (saved) start(saved);
else showScreen('auth');
