// views/reactions.js — a message's reactions: one chip per emoji with its
// count, pressed when the viewer reacted (a click toggles reaction.add /
// reaction.remove), and a small picker of common emoji. Counts come from the
// message object and live from `reaction.updated` (state.js).

import { el } from '../dom.js';

export const EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀'];

let picker = null; // the one picker on the page: {node, anchor}

function closePicker({ focus = false } = {}) {
  if (!picker) return;
  const { node, anchor } = picker;
  picker = null;
  node.remove();
  anchor.setAttribute('aria-expanded', 'false');
  if (focus && anchor.isConnected) anchor.focus();
}

/** Open the picker under `anchor`; `pick(emoji)` runs on a choice. */
export function openPicker(anchor, pick) {
  const again = picker?.anchor === anchor;
  closePicker();
  if (again) return;
  const node = el('div', { className: 'reaction-picker', role: 'group', ariaLabel: 'Pick a reaction' },
    ...EMOJI.map((emoji) => el('button', {
      type: 'button', className: 'secondary small', ariaLabel: `React with ${emoji}`, title: emoji,
      onclick: () => {
        closePicker({ focus: true });
        pick(emoji);
      },
    }, emoji)));
  node.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.stopPropagation();
      closePicker({ focus: true });
    }
  });
  anchor.after(node);
  anchor.setAttribute('aria-expanded', 'true');
  picker = { node, anchor };
  node.querySelector('button').focus();
}

document.addEventListener('pointerdown', (event) => {
  if (picker && !picker.node.contains(event.target) && !picker.anchor.contains(event.target)) {
    closePicker();
  }
});

/**
 * The chips of `message` for viewer `me` (a user id). `toggle(emoji, add)`
 * sends the change; `canReact` false draws the chips without buttons' effect.
 */
export function reactionChips(message, { me, toggle, canReact = true }) {
  const reactions = message.reactions ?? [];
  const box = el('div', { className: 'reactions' });
  for (const r of reactions) {
    const mine = r.users?.includes(me);
    box.append(el('button', {
      type: 'button', className: `reaction${mine ? ' mine' : ''}`, disabled: !canReact,
      ariaPressed: String(Boolean(mine)), dataset: { emoji: r.emoji },
      ariaLabel: `${r.emoji} ${r.count} ${r.count === 1 ? 'reaction' : 'reactions'}${mine ? ', yours' : ''}`,
      onclick: () => toggle(r.emoji, !mine),
    }, el('span', { ariaHidden: 'true' }, r.emoji), ' ', el('span', { className: 'count' }, String(r.count))));
  }
  return box;
}

/** The "Add reaction" button: opens the picker; `toggle(emoji, true)` adds the choice. */
export function addReactionButton(toggle) {
  return el('button', {
    type: 'button', className: 'add-reaction', ariaLabel: 'Add reaction',
    title: 'Add reaction', ariaHaspopup: 'true', ariaExpanded: 'false',
    onclick: (event) => openPicker(event.currentTarget, (emoji) => toggle(emoji, true)),
  }, '☺+');
}
