// sessions.js — the account's sessions over HTTP: log out (revoking the token on
// the server), the "Sessions" dialog (every signed-in browser or device, when
// each was last used, a Revoke button per session and "Log out everywhere
// else"), and what to tell the user when the server ends this session.

import { $ } from './dom.js';
import { openDialog } from './dialogs.js';

/** What the user reads when the server refuses this session's token (a 4001 reason). */
export function endedMessage(reason) {
  switch (reason) {
    case 'logged out':
      return 'You were logged out (in another tab or window). Please log in again.';
    case 'token revoked':
      return 'This session was ended from another one (Sessions). Please log in again.';
    case 'password changed':
      return 'Your password was changed, which ended your other sessions. Please log in with the new one.';
    case 'account disabled':
      return "This account has been disabled by the server's operator.";
    case 'token expired':
      return 'You were logged out after a long time without using Agora. Please log in again.';
    default: // 'bad token': revoked, or logged out, before this page connected
      return 'Your session has ended (logged out elsewhere, revoked or expired). Please log in again.';
  }
}

/** One request to the auth API with the token as bearer: its JSON (null for 204). */
async function call(token, method, path) {
  const res = await fetch(`/api/v1/auth/${path}`, {
    method,
    headers: { authorization: `Bearer ${token}` },
  });
  const data = res.status === 204 ? null : await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(data?.error?.message ?? `the server answered ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

/**
 * Revoke `token` on the server. Resolves to '' when it is revoked (or was no
 * longer valid), or to a note for the login screen when the server could not be
 * reached (the token is forgotten here anyway).
 */
export async function revokeToken(token) {
  try {
    await call(token, 'POST', 'logout');
  } catch (err) {
    if (err.status === 401) return '';
    return 'Logged out here, but the server could not be reached to end the session there.';
  }
  return '';
}

const when = (ts) => new Date(ts).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });

/** The Sessions dialog for `token`; `onended()` runs if this session turns out to be over. */
export function sessionsDialog(token, { onended }) {
  const dialog = $('#sessions-dialog');
  const list = $('#sessions-list');
  const summary = $('#sessions-summary');
  const error = $('.error', dialog);

  async function run(job) {
    error.textContent = '';
    try {
      await job();
    } catch (err) {
      if (err.status === 401) {
        dialog.close();
        onended(err.message);
        return;
      }
      error.textContent = err instanceof TypeError ? 'Could not reach the server.' : err.message;
    }
  }

  async function refresh() {
    const { sessions } = await call(token, 'GET', 'sessions');
    list.replaceChildren(...sessions.map(row));
    const others = sessions.length - 1;
    summary.textContent = others
      ? `You are signed in in ${others + 1} places.`
      : 'This is your only session.';
    $('#sessions-revoke-others').hidden = others === 0;
  }

  function row(session) {
    const item = document.createElement('li');
    item.className = 'session';
    item.dataset.id = session.id;
    const what = document.createElement('div');
    const label = document.createElement('strong');
    label.textContent = session.label || 'Unknown browser or app';
    const details = document.createElement('span');
    details.className = 'hint';
    details.textContent = ` Signed in ${when(session.created_ts)}, last used ${when(session.last_used_ts)}`;
    what.append(label, details);
    item.append(what);
    if (session.current) {
      const mark = document.createElement('span');
      mark.className = 'current-session';
      mark.textContent = 'This session';
      item.append(mark);
    } else {
      const revoke = document.createElement('button');
      revoke.type = 'button';
      revoke.className = 'secondary small';
      revoke.textContent = 'Revoke';
      revoke.setAttribute('aria-label', `Revoke ${label.textContent}, signed in ${when(session.created_ts)}`);
      revoke.addEventListener('click', () => run(async () => {
        await call(token, 'DELETE', `sessions/${encodeURIComponent(session.id)}`);
        await refresh();
        summary.textContent = `Revoked. ${summary.textContent}`;
        $('#sessions-close').focus();
      }));
      item.append(revoke);
    }
    return item;
  }

  $('#sessions-revoke-others').onclick = () => run(async () => {
    const { revoked } = await call(token, 'DELETE', 'sessions');
    await refresh();
    summary.textContent = `Logged out of ${revoked} other ${revoked === 1 ? 'session' : 'sessions'}. ${summary.textContent}`;
    $('#sessions-close').focus();
  });

  list.replaceChildren();
  summary.textContent = 'Loading…';
  openDialog(dialog, { focus: $('#sessions-close') });
  return run(refresh);
}
