// sidebar.js — communities and their channels, then the direct messages, with
// unread and mention marks; arrow keys move between channels.

import { UNREAD_CAP } from './state.js';
import { $, countText, el } from './dom.js';
import { can } from './roles.js';

/** How the sidebar marks a channel of each kind (text: '#'), and names it for screen readers. */
const KIND_MARK = { forum: '▤', workshop: '◆', breakout: '↳' };
const KIND_LABEL = { forum: ', forum', workshop: ', workshop', breakout: ', breakout room' };

export function createSidebar({ onselect, oninvite, onnewchannel, onthread }) {
  const root = $('#communities');
  const threadRoot = el('section', { className: 'community threads', ariaLabelledby: 'threads-heading',
    hidden: true });
  const buttons = new Map(); // channel id -> button
  const headings = new Map(); // community id -> heading

  /**
   * Draw `communities` (the shell's infos: {id, name, role, channels: [ChannelState]}),
   * with the controls each one's role allows. The focus stays on the channel it was on.
   */
  function build(communities, dms = null) {
    const focused = root.contains(document.activeElement) ? document.activeElement : null;
    const refocus = focused?.dataset.channelId ?? focused?.dataset.action;
    buttons.clear();
    headings.clear();
    root.replaceChildren(...communities.map((community) => {
      const heading = el('h2', { id: `community-${community.id}` },
        el('span', { className: 'community-name' }, community.name),
        el('span', { className: 'badge unread-count', hidden: true }));
      headings.set(community.id, heading);
      const tools = el('div', { className: 'community-tools' },
        can(community.role, 'create_invites') ? el('button', {
          type: 'button', className: 'side-tool', dataset: { action: `invite:${community.id}` },
          ariaLabel: `Invite people to ${community.name}`, title: 'Invite people',
          onclick: () => oninvite(community.id),
        }, 'Invite') : null,
        can(community.role, 'manage_channels') ? el('button', {
          type: 'button', className: 'side-tool', dataset: { action: `channel:${community.id}` },
          ariaLabel: `Create a channel in ${community.name}`, title: 'Create a channel',
          onclick: () => onnewchannel(community.id),
        }, '+') : null);
      return el('section', { className: 'community', ariaLabelledby: heading.id },
        el('div', { className: 'community-head' }, heading, tools),
        el('ul', {}, ...community.channels.map((ch) => {
          const button = el('button', {
            type: 'button', className: 'channel', dataset: { channelId: ch.id },
            onclick: () => onselect(ch.id),
          }, el('span', { className: 'hash', ariaHidden: 'true' }, '#'),
          el('span', { className: 'channel-name' }, ch.name),
          ch.archived ? el('span', { className: 'archived-mark' }, 'archived') : null,
          el('span', { className: 'badge mention-count', hidden: true }),
          el('span', { className: 'badge unread-count', hidden: true }));
          $('.hash', button).textContent = KIND_MARK[ch.kind] ?? '#';
          button.classList.toggle('room', ch.kind === 'breakout');
          button.classList.toggle('archived', ch.archived);
          buttons.set(ch.id, button);
          return el('li', {}, button);
        })));
    }));
    if (dms?.channels.length) {
      const heading = el('h2', { id: 'community-dms' },
        el('span', { className: 'community-name' }, 'Direct messages'),
        el('span', { className: 'badge unread-count', hidden: true }));
      headings.set('dms', heading);
      root.append(el('section', { className: 'community dms', ariaLabelledby: heading.id },
        el('div', { className: 'community-head' }, heading),
        el('ul', {}, ...dms.channels.map((ch) => {
          const button = el('button', {
            type: 'button', className: 'channel dm', dataset: { channelId: ch.id },
            onclick: () => onselect(ch.id),
          }, el('span', { className: 'hash', ariaHidden: 'true' }, '@'),
          el('span', { className: 'channel-name' }, ch.name),
          el('span', { className: 'badge mention-count', hidden: true }),
          el('span', { className: 'badge unread-count', hidden: true }));
          buttons.set(ch.id, button);
          return el('li', {}, button);
        }))));
    }
    root.append(threadRoot);
    if (refocus) {
      (buttons.get(refocus) ?? root.querySelector(`[data-action="${refocus}"]`))?.focus();
    }
  }

  /** Show the unread counts of `channels` (a Map of ChannelState) and mark `current`. */
  function mark(channels, current) {
    const perCommunity = new Map();
    for (const ch of channels.values()) {
      const button = buttons.get(ch.id);
      if (!button) continue;
      const n = ch.unread;
      const key = ch.community.id ?? 'dms';
      perCommunity.set(key, (perCommunity.get(key) ?? 0) + n);
      button.classList.toggle('unread', n > 0);
      badge(button, n);
      const mention = $('.mention-count', button);
      mention.hidden = !ch.mentions;
      mention.textContent = ch.mentions ? `@${countText(ch.mentions, UNREAD_CAP)}` : '';
      const unread = n ? `, ${countText(n, UNREAD_CAP)} unread` : '';
      const mentioned = ch.mentions ? `, ${ch.mentions} ${ch.mentions === 1 ? 'mention' : 'mentions'}` : '';
      const archived = ch.archived ? ', archived' : '';
      const kind = KIND_LABEL[ch.kind] ?? '';
      button.setAttribute('aria-label', `${ch.name}${kind}${archived}${unread}${mentioned}`);
      if (ch.id === current) button.setAttribute('aria-current', 'page');
      else button.removeAttribute('aria-current');
    }
    for (const [id, heading] of headings) {
      const n = perCommunity.get(id) ?? 0;
      heading.classList.toggle('unread', n > 0);
      badge(heading, Math.min(n, UNREAD_CAP));
    }
  }

  /** The threads the user follows (ChannelStates with `.thread`), with their unread counts. */
  function threads(list) {
    threadRoot.hidden = !list.length;
    if (!list.length) return threadRoot.replaceChildren();
    const focused = threadRoot.contains(document.activeElement)
      ? document.activeElement.dataset.threadId : null;
    threadRoot.replaceChildren(
      el('div', { className: 'community-head' }, el('h2', { id: 'threads-heading' },
        el('span', { className: 'community-name' }, 'Threads you follow'))),
      el('ul', {}, ...list.map((t) => {
        const n = t.unread;
        const button = el('button', {
          type: 'button', className: `channel thread-link${n ? ' unread' : ''}`,
          dataset: { threadId: t.id }, onclick: () => onthread(t.id),
          ariaLabel: `${t.thread.title}${n ? `, ${countText(n, UNREAD_CAP)} unread` : ''}`,
        }, el('span', { className: 'hash', ariaHidden: 'true' }, '↳'),
        el('span', { className: 'channel-name' }, t.thread.title),
        el('span', { className: 'badge unread-count', hidden: !n }, n ? countText(n, UNREAD_CAP) : ''));
        return el('li', {}, button);
      })));
    if (focused) threadRoot.querySelector(`[data-thread-id="${focused}"]`)?.focus();
  }

  function badge(node, n) {
    const b = $('.unread-count', node);
    b.hidden = n === 0;
    b.textContent = n ? countText(n, UNREAD_CAP) : '';
  }

  // Arrow keys move between channels; Tab leaves the list.
  root.addEventListener('keydown', (event) => {
    const all = [...buttons.values()];
    const i = all.indexOf(document.activeElement);
    if (i < 0 || event.altKey || event.ctrlKey || event.metaKey) return;
    const to = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: all.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    all[(to + all.length) % all.length].focus();
  });

  return {
    build,
    mark,
    threads,
    focus(channelId) {
      (buttons.get(channelId) ?? buttons.values().next().value)?.focus();
    },
    clear() {
      root.replaceChildren();
      buttons.clear();
      headings.clear();
    },
  };
}
