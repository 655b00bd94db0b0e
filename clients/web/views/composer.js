// views/composer.js — what a message box does besides sending: the length
// counter that refuses a message over the limit (instead of cutting it), the
// "replying to" line (the main composer's), `typing.start` at most every 3 s
// while typing, and the @mention autocomplete over the community's members.
// The main composer and the thread panel's reply box each make one.

import { $, el } from '../dom.js';
import { excerpt } from './message.js';
import { typingSender } from './typing.js';

export const MAX_TEXT = 4000; // code points (docs/protocol.md §10)
const COUNT_FROM = 3000; // the counter shows from here

export const length = (text) => [...text].length;

/**
 * The extras of message box `input` for the channel `getChannel()` returns:
 * `counter` its length counter, `list` its listbox of suggestions (whose
 * options get ids `${list.id}-0`, …), `preview` its "replying to" line (none:
 * no replies).
 */
export function createComposer(app, {
  input, getChannel, counter = $('#composer-count'), list = $('#mention-list'),
  preview = $('#reply-preview'),
}) {
  let replyTo = null; // {id, name, text}
  let matches = []; // members offered
  let active = 0;
  let range = null; // [start, end) of the "@name" being typed

  // Length

  function count() {
    const n = length(input.value);
    const over = n > MAX_TEXT;
    counter.hidden = n < COUNT_FROM;
    counter.textContent = `${n.toLocaleString('en')} / ${MAX_TEXT.toLocaleString('en')}`;
    counter.classList.toggle('over', over);
    input.setAttribute('aria-invalid', String(over));
    return !over;
  }

  // Replying

  function setReply(entry) {
    replyTo = entry && preview ? { id: entry.message.id, name: entry.message.author.name } : null;
    if (!preview) return;
    preview.hidden = !replyTo;
    if (!replyTo) return;
    $('.reply-to-text', preview).textContent = `Replying to ${replyTo.name}: ${excerpt(entry.message, 80)}`;
    input.focus();
  }
  if (preview) {
    $('button', preview).addEventListener('click', () => {
      setReply(null);
      input.focus();
    });
  }

  const typing = typingSender(app);

  // Mentions

  async function suggest() {
    const ch = getChannel();
    const caret = input.selectionStart;
    const before = input.value.slice(0, caret);
    const match = before.match(/(^|\s)@([\w.-]{0,32})$/);
    if (!match || !ch?.community?.id) return hide();
    range = [caret - match[2].length - 1, caret];
    const query = match[2].toLowerCase();
    const members = await app.loadMembers(ch.community.id).catch(() => null);
    if (!members || input.value.slice(0, input.selectionStart) !== before) return;
    matches = [...members.values()]
      .filter((m) => m.id !== app.me()?.id)
      .filter((m) => m.username.toLowerCase().startsWith(query) || m.name.toLowerCase().startsWith(query))
      .sort((a, b) => a.username.localeCompare(b.username))
      .slice(0, 6);
    if (!matches.length) return hide();
    active = 0;
    draw();
  }

  function draw() {
    list.replaceChildren(...matches.map((m, i) => el('li', {
      role: 'option', id: `${list.id}-${i}`, ariaSelected: String(i === active),
      className: i === active ? 'active' : '',
      onpointerdown: (event) => {
        event.preventDefault();
        pick(i);
      },
    }, el('span', { className: 'member-name' }, m.name), ' ',
    el('span', { className: 'member-username' }, `@${m.username}`))));
    list.hidden = false;
    input.setAttribute('aria-expanded', 'true');
    input.setAttribute('aria-activedescendant', `${list.id}-${active}`);
  }

  function hide() {
    matches = [];
    list.hidden = true;
    list.replaceChildren();
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
  }

  function pick(i) {
    const m = matches[i];
    if (!m || !range) return hide();
    const [start, end] = range;
    const insert = `@${m.username} `;
    input.value = input.value.slice(0, start) + insert + input.value.slice(end);
    input.selectionStart = input.selectionEnd = start + insert.length;
    hide();
    input.focus();
    count();
  }

  input.addEventListener('input', () => {
    count();
    typing(getChannel()?.id, input.value);
    suggest();
  });
  input.addEventListener('blur', () => setTimeout(() => {
    if (document.activeElement !== input) hide(); // not if the box has the focus back by then
  }, 150));

  return {
    /** Keys for the suggestions; true when the key was used here. */
    key(event) {
      if (list.hidden || !matches.length) return false;
      if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
        active = (active + (event.key === 'ArrowDown' ? 1 : -1) + matches.length) % matches.length;
        draw();
      } else if (event.key === 'Enter' || event.key === 'Tab') {
        pick(active);
      } else if (event.key === 'Escape') {
        hide();
        event.stopPropagation();
      } else return false;
      event.preventDefault();
      return true;
    },
    /** Whether the text may be sent; says why not when it may not. */
    allowed() {
      if (count()) return true;
      app.notify(`This message is too long: ${length(input.value).toLocaleString('en')} characters, `
        + `the limit is ${MAX_TEXT.toLocaleString('en')}.`);
      return false;
    },
    count,
    setReply,
    get replyTo() {
      return replyTo?.id ?? null;
    },
    reset() {
      setReply(null);
      hide();
      count();
    },
  };
}
