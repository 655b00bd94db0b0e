// sidebar.js — communities and their channels, with unread marks; arrow keys
// move between channels.

import { UNREAD_CAP } from './state.js';
import { $, countText, el } from './dom.js';

export function createSidebar({ onselect }) {
  const root = $('#communities');
  const buttons = new Map(); // channel id -> button
  const headings = new Map(); // community id -> heading

  /** Draw `communities` (from identify), each with its ChannelStates. */
  function build(communities) {
    buttons.clear();
    headings.clear();
    root.replaceChildren(...communities.map(({ community, channels }) => {
      const heading = el('h2', { id: `community-${community.id}` },
        el('span', { className: 'community-name' }, community.name),
        el('span', { className: 'badge unread-count', hidden: true }));
      headings.set(community.id, heading);
      return el('section', { className: 'community', ariaLabelledby: heading.id }, heading,
        el('ul', {}, ...channels.map((ch) => {
          const button = el('button', {
            type: 'button', className: 'channel', dataset: { channelId: ch.id },
            onclick: () => onselect(ch.id),
          }, el('span', { className: 'hash', ariaHidden: 'true' }, '#'),
          el('span', { className: 'channel-name' }, ch.name),
          el('span', { className: 'badge unread-count', hidden: true }));
          buttons.set(ch.id, button);
          return el('li', {}, button);
        })));
    }));
  }

  /** Show the unread counts of `channels` (a Map of ChannelState) and mark `current`. */
  function mark(channels, current) {
    const perCommunity = new Map();
    for (const ch of channels.values()) {
      const button = buttons.get(ch.id);
      if (!button) continue;
      const n = ch.unread;
      perCommunity.set(ch.community.id, (perCommunity.get(ch.community.id) ?? 0) + n);
      button.classList.toggle('unread', n > 0);
      badge(button, n);
      const unread = n ? `, ${countText(n, UNREAD_CAP)} unread` : '';
      button.setAttribute('aria-label', `${ch.name}${unread}`);
      if (ch.id === current) button.setAttribute('aria-current', 'page');
      else button.removeAttribute('aria-current');
    }
    for (const [id, heading] of headings) {
      const n = perCommunity.get(id) ?? 0;
      heading.classList.toggle('unread', n > 0);
      badge(heading, Math.min(n, UNREAD_CAP));
    }
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
