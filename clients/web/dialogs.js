// dialogs.js — the modal dialogs: a generic runner over <dialog> elements of
// index.html (keyboard-usable by nature: focus stays inside, Esc closes, the
// focus goes back where it was), and the community dialogs built on it:
// create a community, invite people, create a channel (text, forum or
// workshop) or change its settings, and confirm a moderation action.

import { $ } from './dom.js';
import { can } from './roles.js';

const running = new WeakMap(); // dialog -> {submit: async () => keepOpen?, returnTo}

/**
 * Open `dialog`. On submit, `submit()` runs with the buttons disabled; when it
 * throws, its message shows in the dialog's error line; when it returns
 * anything but `true`, the dialog closes. The focus then goes back where it
 * was, or where `returnTo()` says (after a submit that moved on: the composer).
 */
export function openDialog(dialog, { submit, focus, returnTo, onclose } = {}) {
  const opener = document.activeElement;
  $('.error', dialog).textContent = '';
  running.set(dialog, { submit, opener, returnTo, onclose });
  dialog.showModal();
  (focus ?? dialog.querySelector('input:not([type=checkbox]), select, button'))?.focus();
}

function wire(dialog) {
  const form = $('form', dialog);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const job = running.get(dialog);
    if (!job?.submit) return dialog.close();
    const buttons = form.querySelectorAll('button');
    buttons.forEach((b) => (b.disabled = true));
    $('.error', dialog).textContent = '';
    try {
      if ((await job.submit()) !== true) dialog.close();
    } catch (err) {
      $('.error', dialog).textContent = err.message;
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });
  for (const button of dialog.querySelectorAll('[data-close]')) {
    button.addEventListener('click', () => dialog.close());
  }
  dialog.addEventListener('close', () => {
    const job = running.get(dialog);
    running.delete(dialog);
    job?.onclose?.();
    const to = job?.returnTo?.() ?? job?.opener;
    if (to?.isConnected && to.checkVisibility?.()) to.focus();
  });
}

for (const dialog of document.querySelectorAll('dialog')) wire(dialog);

/** Whether a dialog is open (the shell's Esc and shortcuts leave it alone then). */
export const dialogOpen = () => Boolean(document.querySelector('dialog[open]'));

/** Ask before doing something: runs `run()` on OK; resolves when the dialog closes. */
export function confirmAction({ title, text, action, danger = true, run, onclose, returnTo }) {
  const dialog = $('#confirm-dialog');
  $('#confirm-dialog-title').textContent = title;
  $('#confirm-dialog-text').textContent = text;
  const ok = $('button[type=submit]', dialog);
  ok.textContent = action;
  ok.classList.toggle('danger', danger);
  openDialog(dialog, { submit: run, focus: ok, onclose, returnTo });
}

// The community dialogs. `app` is the shell's view of the state (app.js).

/** Create a community; resolves after the shell has added and opened it. */
export function createCommunityDialog(app) {
  const dialog = $('#community-dialog');
  const name = $('#community-name');
  name.value = '';
  let done = false;
  openDialog(dialog, {
    async submit() {
      const { community } = await app.client().command('community.create', { name: name.value });
      app.joined(community, { open: true });
      done = true;
    },
    returnTo: () => (done ? $('#composer-input') : null),
  });
}

/** Make an invite link for `community` (its info from the shell). */
export function inviteDialog(app, community) {
  const dialog = $('#invite-dialog');
  $('.community-name', dialog).textContent = community.name;
  $('#invite-result').hidden = true;
  $('#invite-role').value = 'member';
  $('button[type=submit]', dialog).textContent = 'Create link';
  openDialog(dialog, {
    async submit() {
      const d = { community: community.id, role: $('#invite-role').value };
      const expires = $('#invite-expires').value;
      const uses = $('#invite-uses').value;
      if (expires) d.expires_s = Number(expires);
      if (uses) d.max_uses = Number(uses);
      const { invite } = await app.client().command('invite.create', d);
      const link = new URL(`/invite/${encodeURIComponent(invite.code)}`, location.href).href;
      $('#invite-result').hidden = false;
      $('#invite-link').value = link;
      const parts = [`Joins as ${invite.role}`];
      parts.push(invite.max_uses ? `${invite.max_uses} ${invite.max_uses === 1 ? 'use' : 'uses'}`
        : 'no use limit');
      parts.push(invite.expires_ts
        ? `expires ${new Date(invite.expires_ts).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })}`
        : 'never expires');
      $('#invite-summary').textContent = `${parts.join(', ')}.`;
      $('button[type=submit]', dialog).textContent = 'Create another link';
      $('#invite-link').focus();
      $('#invite-link').select();
      return true; // stay open: the link is the point
    },
  });
}

$('#invite-copy').addEventListener('click', async () => {
  const input = $('#invite-link');
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    $('#invite-summary').textContent = 'Link copied.';
  } catch {
    $('#invite-summary').textContent = 'Select the link and copy it (Ctrl+C).';
  }
});

/** Create a channel in `community` (no `channel`), or change `channel`'s settings. */
export function channelDialog(app, community, channel = null) {
  const dialog = $('#channel-dialog');
  const editing = Boolean(channel);
  $('#channel-dialog-title').textContent = editing ? `Settings of #${channel.name}` : 'Create a channel';
  $('.community-line', dialog).textContent = `In ${community.name}`;
  $('.settings-only', dialog).hidden = !editing;
  $('.create-only', dialog).hidden = editing;
  $('#channel-kind').value = 'text';
  $('button[type=submit]', dialog).textContent = editing ? 'Save' : 'Create';
  $('#channel-name').value = channel?.name ?? '';
  $('#channel-topic-input').value = channel?.topic ?? '';
  const slow = $('#channel-slowmode');
  const seconds = String(channel?.slowmode ?? 0);
  if (![...slow.options].some((o) => o.value === seconds)) slow.add(new Option(`${seconds} seconds`, seconds));
  slow.value = seconds;
  $('#channel-archived').checked = Boolean(channel?.archived);
  let created = false;
  openDialog(dialog, {
    returnTo: () => (created ? $('#composer-input') : null),
    async submit() {
      if (!can(community.role, 'manage_channels')) throw new Error('Your role no longer allows this.');
      const name = $('#channel-name').value;
      const topic = $('#channel-topic-input').value.trim();
      if (!editing) {
        const d = { community: community.id, name, kind: $('#channel-kind').value };
        if (topic) d.topic = topic;
        const reply = await app.client().command('channel.create', d);
        app.channelChanged(community.id, reply.channel, { open: true });
        created = true;
        return;
      }
      const d = { channel: channel.id };
      if (name.trim() !== channel.name) d.name = name;
      if (topic !== (channel.topic ?? '')) d.topic = topic;
      if (Number(slow.value) !== channel.slowmode) d.slowmode_s = Number(slow.value);
      if ($('#channel-archived').checked !== channel.archived) d.archived = $('#channel-archived').checked;
      if (Object.keys(d).length === 1) return;
      const reply = await app.client().command('channel.update', d);
      app.channelChanged(community.id, reply.channel);
    },
  });
}
