// app.js — the Agora web client's shell: log in (or take an invite), the
// connection and its status banner, the communities and their channels as the
// server's events change them, the sidebar, channel URLs, keyboard shortcuts,
// and which view shows the selected channel; the read state (unread and
// mention counts from identify's `reads`, `read.updated`, `mention`) and which
// side panel is open; the breakout rooms a workshop opens for the user. The
// protocol lives in agora.js, channel state in state.js, threads in
// threads.js, direct messages in dms.js, roles in roles.js, dialogs in
// dialogs.js, logout and the Sessions dialog in sessions.js, a workshop's state in workshop_state.js, and each view in views/.

import { Agora } from './agora.js';
import { $, countText } from './dom.js';
import {
  channelDialog, confirmAction, createCommunityDialog, dialogOpen, inviteDialog,
} from './dialogs.js';
import { can } from './roles.js';
import { endedMessage, revokeToken, sessionsDialog } from './sessions.js';
import { createDms } from './dms.js';
import { createSidebar } from './sidebar.js';
import { ChannelState, UNREAD_CAP } from './state.js';
import { createThreads } from './threads.js';
import { createChatView } from './views/chat.js';
import { createForumView } from './views/forum.js';
import { createMembersPanel } from './views/members.js';
import { actionsFor, createMenu } from './views/menu.js';
import { createPins } from './views/pins.js';
import { createResources } from './views/resources.js';
import { createRoomView } from './views/room.js';
import { createSearch } from './views/search.js';
import { createThreadPanel } from './views/thread.js';
import { typingStarted, typingStopped } from './views/typing.js';
import { createWorkshopView } from './views/workshop.js';

const TOKEN_KEY = 'agora.token';
const CHANNEL_KEY = 'agora.channel'; // the last channel open, for the next visit

let client = null;
let me = null;
let current = null; // the selected channel's id
/** community id -> {id, name, role, channels: [ChannelState], members: Map|null, presence: Map} */
const communities = new Map();
const channels = new Map(); // id -> ChannelState, in sidebar order (DMs last)
const SIDE_PANELS = ['thread', 'search', 'pins', 'resources'];
/** An invite to take once identified: {code, ask} (ask: confirm first; the user was logged in). */
let pendingInvite = null;
const inviteCode = (() => {
  const match = location.pathname.match(/^\/invite\/([^/]+)\/?$/);
  return match ? decodeURIComponent(match[1]) : null;
})();

const app = {
  client: () => client,
  me: () => me,
  status: () => client?.status ?? 'closed',
  channels,
  communities,
  report(err) {
    if (err.code !== 'offline' && err.code !== 'disconnected') console.warn(err);
  },
  /** A short message in the conversation's status line (read out by screen readers). */
  notify(text) {
    const notice = $('#notice');
    notice.textContent = text;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => (notice.textContent = ''), 8000);
  },
  loadMembers,
  loadPresence,
  /** Whether the viewer may take any moderation action on this member (known roles only). */
  canModerate(communityId, userId) {
    const community = communities.get(communityId);
    const member = community?.members?.get(userId);
    return Boolean(member && userId !== me?.id && actionsFor(community.role, member.role).length);
  },
  openMenu: (button, communityId, userId) => menu.open(button, communityId, userId),
  openActions: (button, title, actions) => menu.openActions(button, title, actions),
  joined,
  channelChanged,
  marksChanged: () => refreshMarks(),
  currentChannel: () => channels.get(current) ?? null,
  currentCommunity: () => {
    const community = channels.get(current)?.community;
    return community && !community.dm ? community : null;
  },
  channelLabel(id) {
    const ch = channels.get(id);
    if (ch) return `#${ch.name}`;
    return threads.label(id);
  },
  following: (id) => threads.following(id),
  setFollowing: (id, on) => threads.setFollowing(id, on),
  openThread: (t, parent) => threads.open(t, parent),
  openPanel,
  closePanel: () => openPanel(null),
  panel: () => SIDE_PANELS.find((name) => !$(`#${name}-panel`).hidden) ?? null,
  jumpTo,
  openDm: (userId, name) => dms.open(userId, name),
  userName: (id) => dms.userName(id),
  select: (id, options) => select(id, options),
  setRooms,
  /** Open a breakout room the sidebar lists (app.setRooms). */
  openRoom: (id) => channels.has(id) && select(id, { focus: true }),
};

const sidebar = createSidebar({
  onselect: (id) => select(id, { focus: true }),
  oninvite: (id) => communities.has(id) && inviteDialog(app, communities.get(id)),
  onnewchannel: (id) => communities.has(id) && channelDialog(app, communities.get(id)),
  onthread: (id) => threads.has(id) && threads.open(threads.get(id).thread,
    channels.get(threads.get(id).thread.parent)),
});
const members = createMembersPanel(app);
const menu = createMenu(app);
// Which view draws a channel, by channel kind (threads have the side panel). A
// workshop and a breakout room add their parts to the chat view's conversation.
const views = { text: createChatView(app), forum: createForumView(app) };
views.workshop = createWorkshopView(app, views.text);
views.breakout = createRoomView(app, views.text);
const thread = createThreadPanel(app);
const pins = createPins(app);
createSearch(app);
createResources(app);
const threads = createThreads(app, { panel: thread, openPanel, refreshMarks });
const dms = createDms(app, { rebuild, select });
const DMS = dms.community;
const viewFor = (ch) => views[ch.kind] ?? views.text;

// Authentication

function showScreen(name) {
  $('#auth-view').hidden = name !== 'auth';
  $('#chat-view').hidden = name !== 'chat';
}

let authMode = 'login';

/** The form logs in or registers; Enter does what the form says. */
function setAuthMode(mode) {
  authMode = mode;
  const register = mode === 'register';
  $('#auth-form').dataset.mode = mode;
  $('#register-fields').hidden = !register;
  $('#auth-submit').textContent = register ? 'Register' : 'Log in';
  $('#auth-switch').textContent = register ? 'Have an account? Sign in' : 'New here? Create an account';
  $('#auth-hint').textContent = register ? 'Create an account.' : 'Log in to your account.';
  $('#login-password').autocomplete = register ? 'new-password' : 'current-password';
  $('#auth-error').textContent = '';
}

$('#auth-switch').addEventListener('click', () => {
  setAuthMode(authMode === 'login' ? 'register' : 'login');
  $('#login-username').focus();
});

$('#auth-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const kind = authMode;
  const body = { username: $('#login-username').value.trim(), password: $('#login-password').value };
  const name = $('#register-name').value.trim();
  if (kind === 'register' && name) body.display_name = name;
  if (kind === 'register' && inviteCode) body.invite = inviteCode;
  if (kind === 'register' && !$('#setup-fields').hidden) body.setup_code = $('#setup-code').value.trim();
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
    if (!res.ok) throw new Error(authRefusal(res, data));
    localStorage.setItem(TOKEN_KEY, data.token);
    $('#login-password').value = '';
    // Registered with the invite: already in. Logged in: take it once identified.
    if (inviteCode && kind === 'login') pendingInvite = { code: inviteCode, ask: false };
    if (inviteCode && kind === 'register') history.replaceState(null, '', '/');
    start(data.token);
  } catch (err) {
    $('#auth-error').textContent =
      err instanceof TypeError ? 'Could not reach the server.' : err.message;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
});

/**
 * What to tell someone whose login or registration was refused. A 429 (too many
 * failures) or 503 (busy) says when to try again; the first account of a server
 * served beyond loopback asks for the setup code, so its field appears.
 */
function authRefusal(res, data) {
  const message = data.error?.message ?? `the server answered ${res.status}`;
  if (data.error?.reason === 'setup_code') {
    $('#setup-fields').hidden = false;
    $('#setup-code').focus();
  }
  const wait = Number(res.headers.get('retry-after'));
  if ((res.status === 429 || res.status === 503) && wait > 0 && !message.includes('try again')) {
    return `${message}; try again in ${wait} s`;
  }
  return message;
}

function start(token) {
  showScreen('chat');
  client = new Agora(token, { onstatus, onready, onreset, onsubscribed });
  client.on('*', onEvent);
  client.connect();
  views.text.focus();
}

function logout(message = '') {
  client?.close();
  client = me = current = null;
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(CHANNEL_KEY);
  channels.clear();
  communities.clear();
  threads.clear();
  dms.clear();
  openPanel(null);
  sidebar.clear();
  for (const view of Object.values(views)) view.clear();
  members.close();
  menu.close({ focus: false });
  setStatus('closed', '');
  if (!inviteCode) history.replaceState(null, '', '/');
  setAuthMode('login');
  showScreen('auth');
  $('#auth-error').textContent = message;
  $('#login-username').focus();
}

// Log out: revoke the token on the server (its other tabs close with 4001
// 'logged out'), then forget it here.
$('#logout').addEventListener('click', async () => {
  const token = client?.token ?? localStorage.getItem(TOKEN_KEY);
  client?.close(); // first, so that the server's 4001 for this token is not read as news
  $('#logout').disabled = true;
  const note = token ? await revokeToken(token) : '';
  $('#logout').disabled = false;
  logout(note);
});

$('#sessions').addEventListener('click', () => {
  const token = client?.token ?? localStorage.getItem(TOKEN_KEY);
  if (token) sessionsDialog(token, { onended: () => logout(endedMessage('bad token')) });
});

// Connection

const STATUS_TEXT = {
  connecting: 'Connecting…',
  online: 'Connected',
  offline: 'Offline — reconnecting…',
  closed: '',
};

function setStatus(state, text) {
  $('#status').dataset.state = state;
  $('#status-text').textContent = text;
  $('#retry-now').hidden = state !== 'offline';
  for (const view of Object.values(views)) view.status();
}

function onstatus(status, reason) {
  if (status === 'unauthorized') return logout(endedMessage(reason));
  const text = STATUS_TEXT[status]
    ?? `Disconnected: ${reason || 'the server refused the connection'}. Reload to retry.`;
  setStatus(status, text);
}

$('#retry-now').addEventListener('click', () => client?.reconnectNow());
// The browser knows before the backoff does when the network or the tab comes back.
window.addEventListener('online', () => client?.reconnectNow());
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) client?.reconnectNow();
});

/** The shell's record of a community (identify's shape), keeping what it knew of it. */
function communityInfo(community) {
  const info = communities.get(community.id) ?? { id: community.id, presence: new Map() };
  Object.assign(info, { name: community.name, role: community.role });
  info.channels = sortChannels(community.channels.map((channel) => {
    const ch = channels.get(channel.id) ?? new ChannelState(channel, info);
    ch.update(channel);
    ch.community = info;
    return ch;
  }));
  return info;
}

function onready(reply) {
  me = reply.user;
  $('#me').textContent = me.name;
  const next = reply.communities.map((community) => {
    const info = communityInfo(community);
    // Events were missed while offline: read members and presence again when needed.
    Object.assign(info, { members: null, presence: new Map() });
    return info;
  });
  dms.identified(reply.dms ?? []);
  const seen = new Set([...next, DMS].flatMap((info) => withRooms(info).map((ch) => ch.id)));
  for (const id of [...channels.keys()].filter((id) => !seen.has(id))) {
    client.unsubscribe(id).catch(app.report); // the channel is gone, or we lost access to it
  }
  communities.clear();
  for (const info of next) communities.set(info.id, info);
  threads.identified(reply.threads ?? []);
  rebuild();
  // The read state: unread and mention counts that survive a reload.
  for (const r of reply.reads ?? []) {
    const ch = channels.get(r.channel) ?? threads.get(r.channel);
    if (!ch) continue;
    ch.readO = Math.max(ch.readO, r.o);
    if (ch.id !== current || !ch.loaded) {
      ch.unread = Math.min(r.unread, UNREAD_CAP);
      ch.mentions = r.mentions;
    }
  }
  refreshMarks();
  for (const community of communities.values()) {
    if (DMS.channels.length) loadMembers(community.id).then(() => dms.names(), app.report);
  }
  // Every channel, so that unread marks come live; agora.js resumes each with `since`.
  for (const id of channels.keys()) client.subscribe(id).catch(app.report);
  if (!channels.has(current)) current = null;
  if (current) refreshMarks();
  else if (channels.size) select(firstChannel(), { nav: 'replace' });
  const shown = channels.get(current)?.community;
  members.show(shown ?? null);
  if (shown) loadCommunity(shown.id);
  for (const view of Object.values(views)) view.online();
  if (pendingInvite) takeInvite(pendingInvite);
}

/** The channel to open first: the URL's, else the last one open, else the first. */
function firstChannel() {
  for (const id of [channelInUrl(), localStorage.getItem(CHANNEL_KEY)]) {
    if (id && channels.has(id)) return id;
  }
  return channels.keys().next().value;
}

function onreset(channelId) {
  // Too much was missed to replay: start this channel's timeline afresh.
  const ch = channels.get(channelId) ?? threads.get(channelId);
  if (!ch) return;
  const hadTimeline = ch.loaded;
  ch.reset();
  ch.skipped = hadTimeline;
  if (ch.thread) {
    ch.loaded = false;
    thread.changed(ch);
  } else viewFor(ch).reset(ch);
}

/** A subscribe reply: a workshop channel's carries the workshop's state. */
function onsubscribed(id, reply) {
  const ch = channels.get(id);
  if (ch?.kind === 'workshop') views.workshop.subscribed(ch, reply);
}

function onEvent(d, frame) {
  if (typeof frame.o !== 'number') return onCommunityEvent(frame.t, d, frame.ch);
  if (threads.apply(frame, d)) return;
  const ch = channels.get(frame.ch);
  if (!ch) return;
  if (ch.kind === 'workshop') views.workshop.event(ch, frame);
  const entry = ch.apply(frame, me);
  if (!entry) return;
  if (frame.t === 'message.pinned') pins.changed(ch);
  if (entry.thread) threads.entryChanged(ch, entry);
  if (frame.t === 'message.created') typingStopped(ch.id, d.message.author.id);
  if (ch.id === current) return viewFor(ch).changed(ch);
  ch.trim();
  if (entry.kind === 'message' && entry.message.author.id !== me?.id && frame.o > ch.readO) {
    ch.markUnread();
    refreshMarks();
  }
}

/** The user events and channel events of the discussion features (no offset). */
function onUserEvent(t, d, ch) {
  switch (t) {
    case 'typing.started':
      if (d.user !== me?.id) typingStarted(ch, d);
      return true;
    case 'mention': {
      const target = channels.get(d.message.channel);
      if (target && !(target.id === current && document.hasFocus())) {
        target.mentions += 1;
        refreshMarks();
      }
      return true;
    }
    case 'read.updated': {
      const target = channels.get(d.channel) ?? threads.get(d.channel);
      if (!target || d.o <= target.readO) return true;
      target.readO = d.o;
      if (d.o >= target.head) {
        target.unread = 0;
        target.mentions = 0;
      } else {
        target.unread = Math.min(UNREAD_CAP, target.timeline().filter((e) => e.kind === 'message'
          && e.o > d.o && e.message.author.id !== me?.id && !e.message.deleted).length);
      }
      refreshMarks();
      return true;
    }
    case 'dm.created':
      dms.add(d.channel);
      return true;
    default:
      return threads.userEvent(t, d);
  }
}

// Side panels

/** Show one side panel (thread, search, pins, resources) or none. */
function openPanel(name) {
  for (const panel of SIDE_PANELS) $(`#${panel}-panel`).hidden = panel !== name;
  document.body.classList.toggle('panel-open', Boolean(name));
  if (name !== 'thread' && thread.current) {
    const state = thread.current;
    thread.hide();
    threads.leave(state); // followed threads stay subscribed
  }
  if (name && members.open) members.close();
}

/** Show message `id` (offset `o`) of channel `channelId`: its channel, or its thread. */
async function jumpTo(channelId, id, o) {
  if (channels.has(channelId)) {
    if (current !== channelId) select(channelId);
    return views.text.jumpTo(channels.get(channelId), id, o);
  }
  // A thread: open it in the panel.
  threads.open(threads.get(channelId)?.thread ?? { id: channelId, title: 'Thread' },
    channels.get(current));
}

// Communities: what the server's community and user events change

/** Community events (`ch` the community) and user events (`ch` our own id): no offset. */
function onCommunityEvent(t, d, communityId) {
  if (t === 'community.joined') return joined(d.community);
  if (onUserEvent(t, d, communityId)) return;
  const community = communities.get(communityId);
  if (!community) return;
  switch (t) {
    case 'channel.created':
    case 'channel.updated':
      return channelChanged(communityId, d.channel);
    case 'member.joined':
      community.members?.set(d.member.id, d.member);
      return membersChanged(communityId);
    case 'member.updated':
      community.members?.set(d.member.id, d.member);
      if (d.member.id === me?.id) {
        community.role = d.member.role;
        rebuild();
        app.notify(`Your role in ${community.name} is now ${d.member.role}.`);
      }
      return membersChanged(communityId);
    case 'member.left':
      if (d.user === me?.id) return removed(community);
      community.members?.delete(d.user);
      return membersChanged(communityId);
    case 'presence.updated':
      community.presence.set(d.user, d.status);
      return membersChanged(communityId);
  }
}

/** We joined or created a community (from any session): add it, and open it if asked. */
function joined(community, { open = false } = {}) {
  if (!client) return;
  const known = communities.has(community.id);
  const info = communityInfo(community);
  info.members ??= null;
  communities.set(info.id, info);
  rebuild();
  for (const ch of info.channels) client.subscribe(ch.id).catch(app.report);
  if (open && info.channels.length) select(info.channels[0].id, { focus: true });
  if (!known) app.notify(`You joined ${info.name}.`);
}

/** We were kicked or banned: the community leaves the sidebar. */
function removed(community) {
  communities.delete(community.id);
  for (const ch of withRooms(community)) client.unsubscribe(ch.id).catch(() => {});
  const wasOn = channels.get(current)?.community === community;
  rebuild();
  if (wasOn) {
    current = null;
    members.show(null);
    for (const view of Object.values(views)) view.clear();
    if (channels.size) select(channels.keys().next().value, { nav: 'replace' });
    else showNoChannel();
  }
  app.notify(`You are no longer a member of ${community.name}.`);
}

function showNoChannel() {
  $('#channel-title').textContent = 'No channels';
  $('#community-title').textContent = '';
  $('#channel-topic').textContent = '';
  $('#channel-settings').hidden = true;
}

/** A channel was created or changed (its event, or our own command's reply). */
function channelChanged(communityId, channel, { open = false } = {}) {
  const community = communities.get(communityId);
  if (!community) return;
  let ch = channels.get(channel.id);
  if (ch) ch.update(channel);
  else if (channel.kind === 'breakout' || channel.kind === 'thread') return; // not the sidebar's
  else {
    ch = new ChannelState(channel, community);
    community.channels.push(ch);
    client?.subscribe(ch.id).catch(app.report);
  }
  sortChannels(community.channels);
  rebuild();
  if (open) select(ch.id, { focus: true });
}

/** By position, then in creation order (snowflake ids grow with time), as the server lists them. */
function sortChannels(list) {
  const order = (a, b) => a.position - b.position
    || (a.id.length - b.id.length) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  return list.sort(order);
}

/** A community's channels with the breakout rooms open to the user after their workshop's. */
function withRooms(community) {
  if (!community.rooms?.size) return community.channels;
  return community.channels.flatMap((ch) => [ch, ...(community.rooms.get(ch.id) ?? [])]);
}

/**
 * The breakout rooms of workshop channel `parent` that the user may open now
 * (`rooms`: [{id, name, group}], none when no breakout is open). identify does
 * not list them: they are known from the workshop's state, subscribed while
 * listed, and leave the sidebar when the breakout closes.
 */
function setRooms(parent, rooms) {
  const community = parent.community;
  community.rooms ??= new Map(); // workshop channel id -> [ChannelState of kind breakout]
  const before = community.rooms.get(parent.id) ?? [];
  const wanted = new Set(rooms.map((r) => r.id));
  let changed = false;
  let left = false;
  for (const room of before) {
    if (wanted.has(room.id)) continue;
    changed = true;
    if (room.id === current) left = true;
    client?.unsubscribe(room.id).catch(() => {});
  }
  const next = rooms.map((r) => {
    let room = before.find((x) => x.id === r.id);
    if (!room) {
      room = new ChannelState({ id: r.id, name: r.name, kind: 'breakout', parent: parent.id }, community);
      changed = true;
      client?.subscribe(room.id).catch(app.report);
    }
    room.group = r.group;
    return room;
  });
  if (next.length) community.rooms.set(parent.id, next);
  else community.rooms.delete(parent.id);
  if (!changed) return;
  rebuild();
  if (left) {
    select(parent.id, { focus: true });
    app.notify('The breakouts are closed: back to the workshop.');
  }
}

/** Draw the sidebar and every control that depends on the channels or on a role. */
function rebuild() {
  const ordered = [...communities.values(), DMS].flatMap((c) => withRooms(c));
  channels.clear();
  for (const ch of ordered) channels.set(ch.id, ch); // the sidebar's order, for Alt+Up/Down
  sidebar.build([...communities.values()].map((c) => ({ ...c, channels: withRooms(c) })), DMS);
  refreshMarks();
  $('#new-community').hidden = ![...communities.values()].some((c) => c.role !== 'guest');
  const ch = channels.get(current);
  if (ch) {
    showHeader(ch);
    viewFor(ch).refresh(ch);
    if (ch.community.id) members.changed(ch.community.id);
  }
}

async function loadMembers(communityId) {
  const community = communities.get(communityId);
  if (!community || !client) return null;
  if (community.members) return community.members;
  community.loadingMembers ??= client.command('community.members', { community: communityId })
    .then(({ members: list }) => {
      if (communities.get(communityId) === community) {
        community.members = new Map(list.map((m) => [m.id, m]));
      }
      return community.members;
    })
    .finally(() => (community.loadingMembers = null));
  return community.loadingMembers;
}

async function loadPresence(communityId) {
  const community = communities.get(communityId);
  if (!community || !client) return;
  const { online } = await client.command('community.presence', { community: communityId });
  community.presence = new Map(online.map((p) => [p.user, p.status]));
}

/** Members and presence of a community, for the message menus and the panel. */
function loadCommunity(communityId) {
  Promise.all([loadMembers(communityId), loadPresence(communityId)])
    .then(() => membersChanged(communityId), app.report);
}

function membersChanged(communityId) {
  members.changed(communityId);
  if (DMS.channels.length) dms.names();
  const ch = channels.get(current);
  if (ch?.community.id === communityId) viewFor(ch).refresh(ch);
}

// Invites: /invite/CODE

/** Take the invite; asked first when the user came to the link logged in already. */
function takeInvite({ code, ask }) {
  pendingInvite = null;
  let done = false;
  const accept = async () => {
    const { community } = await client.command('invite.accept', { code });
    joined(community, { open: true });
    done = true;
  };
  if (!ask) {
    accept().catch((err) => app.notify(`Could not join: ${err.message}`));
    return;
  }
  confirmAction({
    title: 'Join a community?',
    text: `You have an invitation to a community on this server. Join it as ${me.name}?`,
    action: 'Join',
    danger: false,
    run: accept,
    returnTo: () => (done ? $('#composer-input') : null),
    onclose: () => {
      if (location.pathname !== '/') history.replaceState(null, '', `/${location.hash}`);
    },
  });
}

// Channels and their URLs: #/c/<channel id>

function channelInUrl() {
  return location.hash.match(/^#\/c\/([0-9A-Za-z_-]+)$/)?.[1] ?? null;
}

/**
 * Open a channel. `nav` says what happens to the browser's history: 'push' a
 * new entry (Back returns to the previous channel), 'replace' the current one,
 * or 'none' (we are following Back or Forward).
 */
/** What the conversation area shows, by channel kind (app.css). */
const CONVERSATION_VIEW = { forum: 'forum', workshop: 'workshop', breakout: 'breakout' };

function select(id, { focus = false, nav = 'push' } = {}) {
  const ch = channels.get(id);
  if (!ch) return;
  const switched = current !== id;
  current = id;
  if (switched) ch.dividerO = ch.unread > 0 ? ch.readO : null;
  ch.unread = 0;
  if (switched) ch.mentions = 0;
  $('.conversation').dataset.view = CONVERSATION_VIEW[ch.kind] ?? 'chat';
  localStorage.setItem(CHANNEL_KEY, id);
  const url = `/#/c/${id}`;
  if (nav !== 'none' && `${location.pathname}${location.hash}` !== url) {
    if (nav === 'replace' || !channelInUrl() || location.pathname !== '/') {
      history.replaceState(null, '', url);
    } else history.pushState(null, '', url);
  }
  refreshMarks();
  showHeader(ch);
  toggleSidebar(false);
  menu.close({ focus: false });
  members.show(ch.community.dm ? null : ch.community);
  // The chat view lets go of a channel it no longer shows (it marks what it shows as read),
  // and so do the workshop and room views.
  for (const view of [views.workshop, views.breakout]) if (view !== viewFor(ch)) view.hide();
  if (![views.text, views.workshop, views.breakout].includes(viewFor(ch))) views.text.clear();
  viewFor(ch).show(ch);
  if (switched && ch.community.id && !ch.community.members) loadCommunity(ch.community.id);
  if (switched && app.panel() !== 'thread') openPanel(null);
  if (focus) viewFor(ch).focus();
}

window.addEventListener('popstate', () => {
  const id = channelInUrl();
  if (id && id !== current && channels.has(id)) select(id, { nav: 'none' });
});

function showHeader(ch) {
  const dm = Boolean(ch.community.dm);
  $('#channel-title').textContent = dm ? `@ ${ch.name}` : `# ${ch.name}`;
  $('#channel-title').title = dm ? ch.name : `#${ch.name}`;
  $('#community-title').textContent = ch.community.name;
  $('#resources-toggle').hidden = dm;
  $('#members-toggle').hidden = dm;
  $('#search-form').hidden = dm;
  const extra = [ch.archived ? 'archived' : '', ch.slowmode ? 'slow mode' : '', ch.topic ?? '']
    .filter(Boolean);
  $('#channel-topic').textContent = extra.map((text) => ` · ${text}`).join('');
  $('#channel-settings').hidden = !can(ch.community.role, 'manage_channels') || ch.kind === 'breakout';
  $('#channel-settings').setAttribute('aria-label', `Settings of #${ch.name}`);
}

// The members panel and the side panel share their place: one at a time.
$('#members-toggle').addEventListener('click', () => {
  if (members.open) openPanel(null);
});

$('#channel-settings').addEventListener('click', () => {
  const ch = channels.get(current);
  if (ch) channelDialog(app, ch.community, ch);
});
$('#new-community').addEventListener('click', () => createCommunityDialog(app));

function refreshMarks() {
  sidebar.mark(channels, current);
  sidebar.threads(threads.followedStates());
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
// On a phone the drawer leaves the conversation in view behind a scrim: a tap there closes it.
$('#scrim').addEventListener('click', () => leaveSidebar());

// Keyboard: Alt+Up/Down switch channel (with Shift: the next unread one),
// Ctrl+K jumps to the channel list, Escape closes what is open.
document.addEventListener('keydown', (event) => {
  if ($('#chat-view').hidden || dialogOpen()) return;
  if (event.altKey && (event.key === 'ArrowUp' || event.key === 'ArrowDown')) {
    event.preventDefault();
    move(event.key === 'ArrowUp' ? -1 : 1, { unreadOnly: event.shiftKey });
  } else if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === 'k') {
    event.preventDefault();
    enterSidebar();
  } else if (event.key === 'Escape') {
    if (menu.isOpen) {
      menu.close();
    } else if (members.open) {
      members.close();
      $('#members-toggle').focus();
    } else if (app.panel() && $('.side-panel:not([hidden])').contains(document.activeElement)) {
      openPanel(null);
      viewFor(channels.get(current) ?? { kind: 'text' }).focus();
    } else if (document.body.classList.contains('sidebar-open')
      || $('#sidebar').contains(document.activeElement)) {
      leaveSidebar();
    }
  }
});

// Start

const saved = localStorage.getItem(TOKEN_KEY);
if (inviteCode) {
  $('#invite-note').hidden = false;
  setAuthMode(saved ? 'login' : 'register');
} else setAuthMode('login');
if (saved) {
  if (inviteCode) pendingInvite = { code: inviteCode, ask: true };
  start(saved);
} else showScreen('auth');
