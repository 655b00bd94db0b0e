// views/members.js — the members panel of the community on screen, from
// `community.members`. A server without that command answers `bad_request`
// (unknown op); the panel then says the list is not available.

import { $, el } from '../dom.js';

const ROLE_ORDER = ['owner', 'admin', 'moderator', 'facilitator'];
const rank = (role) => (ROLE_ORDER.includes(role) ? ROLE_ORDER.indexOf(role) : ROLE_ORDER.length);

export function createMembersPanel(app) {
  const panel = $('#members-panel');
  const toggle = $('#members-toggle');
  const note = $('#members-note');
  const list = $('#member-list');
  let community = null; // the community whose members are listed
  let request = 0; // so that only the latest answer is drawn

  async function load() {
    const mine = ++request;
    const client = app.client();
    if (!community || !client) return;
    panel.setAttribute('aria-busy', 'true');
    try {
      const { members } = await client.command('community.members', { community: community.id });
      if (mine === request) draw(members);
    } catch (err) {
      if (mine !== request) return;
      list.replaceChildren();
      note.textContent = err.code === 'bad_request'
        ? 'This server does not list members yet.'
        : err.code === 'offline' || err.code === 'disconnected'
          ? 'Offline: the list will load when the connection is back.'
          : `Could not load the members: ${err.message}`;
    } finally {
      if (mine === request) panel.removeAttribute('aria-busy');
    }
  }

  function draw(members) {
    const sorted = [...members].sort(
      (a, b) => rank(a.role) - rank(b.role) || a.name.localeCompare(b.name));
    note.textContent = `${members.length} ${members.length === 1 ? 'member' : 'members'}`;
    list.replaceChildren(...sorted.map((m) =>
      el('li', { className: 'member', dataset: { userId: m.id } },
        el('span', { className: 'member-name' }, m.name),
        el('span', { className: 'member-username' }, `@${m.username}`),
        m.bot ? el('span', { className: 'badge' }, 'bot') : null,
        m.role && m.role !== 'member' ? el('span', { className: 'badge' }, m.role) : null)));
  }

  function setOpen(open) {
    panel.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    document.body.classList.toggle('members-open', open);
    if (open) {
      $('#members-title').focus();
      load();
    }
  }

  toggle.addEventListener('click', () => setOpen(panel.hidden));
  $('#members-close').addEventListener('click', () => {
    setOpen(false);
    toggle.focus();
  });

  return {
    get open() {
      return !panel.hidden;
    },
    close() {
      setOpen(false);
    },
    /** The community on screen changed (or its membership did): refresh if shown. */
    show(next) {
      const changed = next?.id !== community?.id;
      community = next;
      $('#members-title').textContent = next ? `Members of ${next.name}` : 'Members';
      if (changed) list.replaceChildren();
      if (!panel.hidden) load();
    },
    refresh(communityId) {
      if (!panel.hidden && communityId === community?.id) load();
    },
  };
}
