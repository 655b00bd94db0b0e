// views/menu.js — the moderation menu on a message (and on a member in the
// members panel): only the actions the viewer's role allows on that member,
// as the server's permission table says (roles.js). The same menu carries a
// message's own actions (reply, thread, edit, delete, pin: openActions). A
// menu in the ARIA sense: arrow keys move, Enter runs, Esc or Tab closes and
// the focus goes back.

import { $, el } from '../dom.js';
import { canActOn, grantable } from '../roles.js';
import { confirmAction } from '../dialogs.js';

const TIMEOUTS = [[600, '10 minutes'], [3600, '1 hour'], [86400, '1 day']];

/** The actions `actorRole` may take on a member with `targetRole`: [{label, run, confirm?}]. */
export function actionsFor(actorRole, targetRole) {
  const out = [];
  if (canActOn(actorRole, targetRole, 'time_out_members')) {
    for (const [seconds, text] of TIMEOUTS) {
      out.push({ key: `timeout:${seconds}`, label: `Time out for ${text}`, op: 'member.timeout',
        d: { seconds }, done: (name) => `${name} is timed out for ${text}.` });
    }
  }
  for (const role of grantable(actorRole, targetRole)) {
    out.push({ key: `role:${role}`, label: `Make ${role}`, op: 'member.role', d: { role },
      done: (name) => `${name} is now ${role === 'admin' || role === 'owner' ? 'an' : 'a'} ${role}.` });
  }
  if (canActOn(actorRole, targetRole, 'kick_members')) {
    out.push({ key: 'kick', label: 'Kick…', op: 'member.kick', d: {}, confirm: 'Kick',
      text: (name, community) => `${name} leaves ${community} and can come back with an invite.`,
      done: (name) => `${name} was kicked.` });
  }
  if (canActOn(actorRole, targetRole, 'ban_members')) {
    out.push({ key: 'ban', label: 'Ban…', op: 'member.ban', d: {}, confirm: 'Ban',
      text: (name, community) => `${name} leaves ${community} and cannot come back, not even with an invite.`,
      done: (name) => `${name} was banned.` });
  }
  return out;
}

export function createMenu(app) {
  const menu = $('#message-menu');
  let anchor = null;

  function close({ focus = true } = {}) {
    if (menu.hidden) return;
    menu.hidden = true;
    anchor?.setAttribute('aria-expanded', 'false');
    if (focus && anchor?.isConnected) anchor.focus();
    anchor = null;
  }

  function open(button, communityId, userId) {
    if (anchor === button && !menu.hidden) return close();
    close({ focus: false });
    const community = app.communities.get(communityId);
    const member = community?.members?.get(userId);
    if (!member) return;
    const items = actionsFor(community.role, member.role).map((action) =>
      el('button', {
        type: 'button', role: 'menuitem', tabIndex: -1, dataset: { action: action.key },
        onclick: () => run(action, community, member, button),
      }, action.label));
    if (!items.length) return;
    menu.replaceChildren(
      el('p', { className: 'menu-title', ariaHidden: 'true' }, `${member.name} (${member.role})`),
      ...items);
    menu.setAttribute('aria-label', `Actions for ${member.name}`);
    anchor = button;
    button.setAttribute('aria-expanded', 'true');
    button.setAttribute('aria-controls', menu.id);
    menu.hidden = false;
    place(button);
    items[0].focus();
  }

  /** A menu of `actions` ({key, label, run}) under `button`, titled `title`. */
  function openActions(button, title, actions) {
    if (anchor === button && !menu.hidden) return close();
    close({ focus: false });
    if (!actions.length) return;
    const items = actions.map((action) => el('button', {
      type: 'button', role: 'menuitem', tabIndex: -1, dataset: { action: action.key },
      onclick: () => {
        close({ focus: !action.keepFocus });
        action.run();
      },
    }, action.label));
    menu.replaceChildren(el('p', { className: 'menu-title', ariaHidden: 'true' }, title), ...items);
    menu.setAttribute('aria-label', title);
    anchor = button;
    button.setAttribute('aria-expanded', 'true');
    button.setAttribute('aria-controls', menu.id);
    menu.hidden = false;
    place(button);
    items[0].focus();
  }

  function place(button) {
    const box = button.getBoundingClientRect();
    const width = menu.offsetWidth;
    const height = menu.offsetHeight;
    const left = Math.max(8, Math.min(box.right - width, innerWidth - width - 8));
    const below = box.bottom + 4;
    const top = below + height > innerHeight - 8 ? Math.max(8, box.top - height - 4) : below;
    Object.assign(menu.style, { left: `${left}px`, top: `${top}px` });
  }

  async function run(action, community, member, button) {
    close({ focus: false });
    const go = async () => {
      await app.client().command(action.op, { community: community.id, user: member.id, ...action.d });
      app.notify(action.done(member.name));
    };
    if (action.confirm) {
      confirmAction({
        title: `${action.confirm} ${member.name}?`,
        text: action.text(member.name, community.name),
        action: action.confirm,
        run: go,
        returnTo: () => (button.isConnected ? button : null),
      });
      return;
    }
    if (button.isConnected) button.focus();
    try {
      await go();
    } catch (err) {
      app.notify(`Could not do that: ${err.message}`);
    }
  }

  menu.addEventListener('keydown', (event) => {
    const items = [...menu.querySelectorAll('[role=menuitem]')];
    const i = items.indexOf(document.activeElement);
    const to = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: items.length - 1 }[event.key];
    if (to !== undefined) {
      event.preventDefault();
      items[(to + items.length) % items.length].focus();
    } else if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();
      close();
    } else if (event.key === 'Tab') {
      close({ focus: false });
    }
  });
  document.addEventListener('pointerdown', (event) => {
    if (!menu.hidden && !menu.contains(event.target) && event.target !== anchor) {
      close({ focus: false });
    }
  });
  window.addEventListener('resize', () => close({ focus: false }));

  return {
    open,
    openActions,
    close,
    get isOpen() {
      return !menu.hidden;
    },
  };
}
