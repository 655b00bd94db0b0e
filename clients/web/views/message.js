// views/message.js — what a message shows under its header, shared by the
// chat view and the thread panel: the quote of the message it answers, its
// text as Markdown (or "message deleted"), "(edited)", a pin mark, its
// reactions, and the summary of the thread started from it.

import { el, timeElement } from '../dom.js';
import { renderMarkdown } from './markdown.js';
import { reactionChips } from './reactions.js';

/** A short plain-text excerpt of a message, for quotes and previews. */
export function excerpt(message, max = 120) {
  if (!message) return 'a message not loaded here';
  if (message.deleted) return 'message deleted';
  const text = message.text.replace(/\s+/g, ' ').trim();
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A key that changes whenever what the body shows changes. */
export function signature(entry, ch) {
  const m = entry.message;
  const info = m.thread ? ch?.threads?.get(m.thread) : null;
  const quoted = m.reply_to ? ch?.byKey?.get(`m:${m.reply_to}`)?.message : null;
  return JSON.stringify([m.text, m.edited_ts, m.deleted, m.pinned, m.reactions, m.thread,
    info?.replies, info?.last_ts, quoted?.text, quoted?.deleted]);
}

/**
 * The body of `entry` in channel state `ch`. `ctx`: {me (user), react(entry,
 * emoji, add), openThread(threadId), jump(messageId), canReact}.
 */
export function messageBody(entry, ch, ctx) {
  const m = entry.message;
  const body = el('div', { className: 'body' });
  if (m.reply_to) {
    const quoted = ch.byKey.get(`m:${m.reply_to}`)?.message;
    body.append(el('button', {
      type: 'button', className: 'reply-quote', dataset: { replyTo: m.reply_to },
      ariaLabel: `In reply to ${quoted?.author.name ?? 'a message'}: ${excerpt(quoted, 80)}`,
      onclick: () => ctx.jump?.(m.reply_to),
    }, el('span', { className: 'quote-author' }, quoted ? quoted.author.name : ''), ' ',
    el('span', { className: 'quote-text' }, excerpt(quoted, 80))));
  }
  if (m.deleted) {
    body.append(el('div', { className: 'text deleted' }, 'message deleted'));
  } else {
    const text = el('div', { className: 'text' });
    text.append(renderMarkdown(m.text, { me: ctx.me?.username?.toLowerCase() }));
    if (m.edited_ts) {
      const last = text.lastElementChild ?? text;
      last.append(' ', el('span', { className: 'edited', title: new Date(m.edited_ts).toLocaleString() },
        '(edited)'));
    }
    body.append(text);
  }
  if (!m.deleted && m.reactions?.length) {
    body.append(reactionChips(m, {
      me: ctx.me?.id, canReact: ctx.canReact, toggle: (emoji, add) => ctx.react(entry, emoji, add),
    }));
  }
  if (m.thread) {
    const info = ch.threads.get(m.thread);
    const replies = info?.replies ?? 0;
    const label = info ? `${replies} ${replies === 1 ? 'reply' : 'replies'}` : 'Thread';
    const button = el('button', {
      type: 'button', className: 'thread-summary', dataset: { thread: m.thread },
      onclick: () => ctx.openThread(m.thread),
    }, el('span', { className: 'replies' }, label));
    if (info?.last_ts) button.append(' · last activity ', timeElement(info.last_ts));
    body.append(button);
  }
  return body;
}
