// views/members.js — the members panel of the community on screen: its members
// grouped by role (owners first), each with a presence dot, and for a viewer
// whose role allows it, a button with the moderation actions on that member.
// The list comes from the shell's cache (app.loadMembers: `community.members`,
// kept current by member events) and presence from `community.presence` and
// `presence.updated`. A server without `community.members` answers
// `bad_request` (unknown op); the panel then says the list is not available.

import { $, el } from '../dom.js';
import { ROLES, plural } from '../roles.js';

const STATUS_TEXT = { online: 'online', idle: 'idle', offline: 'offline' };

export function createMembersPanel(app) {
  const panel = $('#members-panel');
  const toggle = $('#members-toggle');
  const note = $('#members-note');
  const list = $('#member-list');
  let community = null; // the community whose members are listed (the shell's info)
  let request = 0; // so that only the latest answer is drawn

  async function load() {
    const mine = ++request;
    if (!community || !app.client()) return;
    const info = community;
    if (!info.members) panel.setAttribute('aria-busy', 'true');
    try {
      await Promise.all([app.loadMembers(info.id), app.loadPresence(info.id)]);
      if (mine === request) draw();
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

  function draw() {
    if (!community?.members) return;
    const members = [...community.members.values()];
    const status = (m) => community.presence.get(m.id) ?? 'offline';
    const online = members.filter((m) => status(m) !== 'offline').length;
    note.textContent = `${members.length} ${members.length === 1 ? 'member' : 'members'}, `
      + `${online} online`;
    const focusedId = list.contains(document.activeElement)
      ? document.activeElement.closest('.member')?.dataset.userId : null;
    const groups = [...ROLES].reverse().map((role) => {
      const inRole = members.filter((m) => m.role === role).sort((a, b) =>
        (status(a) === 'offline') - (status(b) === 'offline') || a.name.localeCompare(b.name));
      if (!inRole.length) return null;
      const id = `members-${role}`;
      return el('section', { className: 'member-group', ariaLabelledby: id },
        el('h3', { id }, `${plural(role)} — ${inRole.length}`),
        el('ul', {}, ...inRole.map((m) => memberRow(m, status(m)))));
    });
    list.replaceChildren(...groups.filter(Boolean));
    if (focusedId) $(`.member[data-user-id="${focusedId}"] button`, list)?.focus();
  }

  function memberRow(m, status) {
    const actions = m.id !== app.me()?.id && app.canModerate(community.id, m.id);
    return el('li', { className: 'member', dataset: { userId: m.id, status } },
      el('span', { className: `presence ${status}`, title: STATUS_TEXT[status], ariaHidden: 'true' }),
      el('span', { className: 'member-name' }, m.name),
      el('span', { className: 'visually-hidden' }, `, ${STATUS_TEXT[status]}`),
      el('span', { className: 'member-username' }, `@${m.username}`),
      m.bot ? el('span', { className: 'badge' }, 'bot') : null,
      m.id !== app.me()?.id ? el('button', {
        type: 'button', className: 'secondary small member-dm', ariaLabel: `Message ${m.name}`,
        title: `Send ${m.name} a direct message`, onclick: () => app.openDm(m.id, m.name),
      }, 'Message') : null,
      actions ? el('button', {
        type: 'button', className: 'secondary small member-actions', ariaHaspopup: 'menu',
        ariaLabel: `Actions for ${m.name}`, title: `Actions for ${m.name}`,
        onclick: (event) => app.openMenu(event.currentTarget, community.id, m.id),
      }, '⋯') : null);
  }

  function setOpen(open) {
    panel.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    document.body.classList.toggle('members-open', open);
    if (open) {
      $('#members-title').focus();
      draw();
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
    /** The community on screen changed (or was read again): draw it if shown. */
    show(next) {
      const changed = next !== community;
      community = next;
      $('#members-title').textContent = next ? `Members of ${next.name}` : 'Members';
      if (changed) {
        list.replaceChildren();
        note.textContent = '';
      }
      if (!panel.hidden) {
        draw();
        load();
      }
    },
    /** Members, roles or presence of `communityId` changed in the cache: redraw. */
    changed(communityId) {
      if (!panel.hidden && communityId === community?.id) draw();
    },
  };
}
