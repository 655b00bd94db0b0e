// views/actions.js — a message's own actions for the message menu (menu.js),
// in a channel's timeline or a thread's: reply, start or open its thread,
// edit in place (own messages), pin and unpin (`pin_messages`), delete (own,
// or anyone's with `delete_messages`, after a confirmation).

import { $, el } from '../dom.js';
import { confirmAction } from '../dialogs.js';
import { can } from '../roles.js';
import { length, MAX_TEXT } from './composer.js';
import { excerpt } from './message.js';

/**
 * The actions on `entry` in channel state `ch` the viewer may take:
 * [{key, label, run, keepFocus?}]. `hooks`: reply() (absent: no Reply),
 * openThread(id), threadCreated(thread), redraw(), returnTo().
 */
export function messageActions(app, ch, entry, hooks) {
  const m = entry.message;
  const role = ch.community.role;
  const mine = m.author.id === app.me()?.id;
  const open = !ch.archived;
  const out = [];
  if (open && can(role, 'post') && hooks.reply) {
    out.push({ key: 'reply', label: 'Reply', keepFocus: true, run: hooks.reply });
  }
  if (m.thread) out.push({ key: 'thread', label: 'Open thread', run: () => hooks.openThread(m.thread) });
  else if (open && can(role, 'post') && ch.kind === 'text' && ch.community.id) {
    out.push({ key: 'thread', label: 'Start a thread', run: () => startThread(app, ch, entry, hooks) });
  }
  if (mine && open) {
    out.push({ key: 'edit', label: 'Edit', keepFocus: true, run: () => startEdit(app, ch, entry, hooks) });
  }
  if (ch.community.id && can(role, 'pin_messages')) {
    out.push(m.pinned
      ? { key: 'unpin', label: 'Unpin', run: () => pin(app, ch, entry, false) }
      : { key: 'pin', label: 'Pin', run: () => pin(app, ch, entry, true) });
  }
  if (mine || (ch.community.id && can(role, 'delete_messages'))) {
    out.push({ key: 'delete', label: 'Delete…', run: () => remove(app, ch, entry, hooks) });
  }
  return out;
}

async function startThread(app, ch, entry, hooks) {
  const title = excerpt(entry.message, 60) || 'Thread';
  try {
    const { thread } = await app.client().command('thread.create',
      { channel: ch.id, title, message: entry.message.id });
    ch.change({ t: 'thread.created', d: { thread } });
    hooks.threadCreated?.(thread);
    app.setFollowing(thread.id, true); // its creator follows it
    app.openThread(thread, ch);
  } catch (err) {
    app.notify(`Could not start a thread: ${err.message}`);
  }
}

async function pin(app, ch, entry, pinned) {
  try {
    await app.client().command(pinned ? 'message.pin' : 'message.unpin',
      { channel: ch.id, message: entry.message.id });
    app.notify(pinned ? 'Message pinned.' : 'Message unpinned.');
  } catch (err) {
    app.notify(`Could not do that: ${err.message}`);
  }
}

function remove(app, ch, entry, hooks) {
  confirmAction({
    title: 'Delete this message?',
    text: `"${excerpt(entry.message, 100)}" will show as "message deleted" for everyone.`,
    action: 'Delete',
    run: async () => {
      await app.client().command('message.delete', { channel: ch.id, message: entry.message.id });
      app.notify('Message deleted.');
    },
    returnTo: hooks.returnTo,
  });
}

/** Edit in place: the text becomes a box; Enter saves, Esc cancels. */
function startEdit(app, ch, entry, hooks) {
  const li = entry.el;
  const body = $('.body .text', li);
  if (!body || entry.editing) return;
  entry.editing = true;
  const box = el('textarea', { className: 'edit-input', value: entry.message.text, rows: 3,
    ariaLabel: 'Edit the message' });
  const done = () => {
    entry.editing = false;
    form.remove();
    hooks.redraw();
  };
  const save = async () => {
    const text = box.value;
    if (!text.trim() || text === entry.message.text) return done();
    if (length(text) > MAX_TEXT) {
      app.notify(`This message is too long: the limit is ${MAX_TEXT.toLocaleString('en')} characters.`);
      return;
    }
    try {
      const reply = await app.client().command('message.edit',
        { channel: ch.id, message: entry.message.id, text });
      entry.message = { ...entry.message, ...reply.message };
      done();
      $('.msg-more', li)?.focus();
    } catch (err) {
      app.notify(`Could not edit: ${err.message}`);
    }
  };
  const form = el('form', { className: 'edit-form', onsubmit: (event) => {
    event.preventDefault();
    save();
  } }, box, el('div', { className: 'actions' },
    el('button', { type: 'submit', className: 'small' }, 'Save'),
    el('button', { type: 'button', className: 'secondary small', onclick: done }, 'Cancel')));
  box.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      save();
    } else if (event.key === 'Escape') {
      event.stopPropagation();
      done();
    }
  });
  body.replaceWith(form);
  box.focus();
}
