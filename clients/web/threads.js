// threads.js — the shell's threads: each thread's ChannelState (created once,
// kept up to date with its object), the threads the user follows (for the
// sidebar), opening a thread in the side panel and letting it go, and the
// events that concern them (a thread's own channel events, `thread.followed`,
// `thread.activity`). A thread is a channel of kind `thread` (docs/protocol.md
// §5.9); the panel that draws it is views/thread.js.

import { $ } from './dom.js';
import { ChannelState } from './state.js';
import { typingStopped } from './views/typing.js';

/**
 * `panel` the thread panel (views/thread.js); `openPanel(name)` shows a side
 * panel; `refreshMarks()` redraws the unread marks and the followed threads.
 */
export function createThreads(app, { panel, openPanel, refreshMarks }) {
  const states = new Map(); // thread id -> ChannelState of a thread opened here (`.thread`: its object)
  const followed = new Set(); // ids of the threads the user follows

  /** The state of a thread (created once per thread), kept up to date with its object. */
  function state(t) {
    let found = states.get(t.id);
    const parent = app.channels.get(t.parent);
    const community = app.communities.get(t.community) ?? parent?.community;
    if (!found) {
      if (!community) return null;
      found = new ChannelState(t, community);
      found.thread = { ...t };
      states.set(t.id, found);
    } else Object.assign(found.thread, t);
    return found;
  }

  /** Open a thread (its object, or its id in `parent`) in the side panel. */
  function open(t, parent) {
    const object = typeof t === 'string' ? { id: t, parent: parent?.id, title: 'Thread' } : t;
    const found = state({ community: parent?.community?.id, ...object });
    if (!found) return;
    if (panel.current && panel.current !== found) leave(panel.current);
    app.client().subscribe(found.id).catch(app.report);
    openPanel('thread');
    panel.show(found);
  }

  /**
   * A thread's panel closes: a thread not followed is unsubscribed, and its
   * timeline forgotten (it would miss events until it is opened again).
   */
  function leave(found) {
    if (followed.has(found.id)) return;
    app.client()?.unsubscribe(found.id).catch(() => {});
    found.reset();
  }

  function setFollowing(id, on) {
    if (on) followed.add(id);
    else followed.delete(id);
    panel.changed(states.get(id));
    refreshMarks();
  }

  return {
    get: (id) => states.get(id),
    has: (id) => states.has(id),
    state,
    open,
    leave,
    following: (id) => followed.has(id),
    setFollowing,
    /** The followed threads with a title, for the sidebar. */
    followedStates: () => [...followed].map((id) => states.get(id)).filter((t) => t?.thread?.title),
    /** How a message's channel is named when it is a thread. */
    label(id) {
      return states.get(id)?.thread?.title ? `thread "${states.get(id).thread.title}"` : 'a thread';
    },
    /** identify's `threads`: the ones the user follows. */
    identified(list) {
      followed.clear();
      for (const t of list) {
        followed.add(t.id);
        state(t);
      }
    },
    clear() {
      states.clear();
      followed.clear();
    },
    /** A thread's own channel event; false when `frame` is not a thread's. */
    apply(frame, d) {
      const found = states.get(frame.ch);
      if (!found) return false;
      found.apply(frame, app.me());
      if (frame.t === 'message.created') typingStopped(frame.ch, d.message.author.id);
      panel.changed(found);
      return true;
    },
    /** A message of channel `ch` changed its thread (`entry.thread`): the thread's object follows. */
    entryChanged(ch, entry) {
      const found = states.get(entry.thread.id);
      if (found) Object.assign(found.thread, entry.thread);
      if (found && ch.threads.get(entry.thread.id)) panel.changed(found);
    },
    /** The user events about threads; true when `t` was one. */
    userEvent(t, d) {
      switch (t) {
        case 'thread.followed': { // this user's follow, unfollow, new thread or post, anywhere
          const found = state(d.thread);
          if (found) setFollowing(found.id, d.following);
          return true;
        }
        case 'thread.activity': {
          const found = state(d.thread);
          if (!found) return true;
          followed.add(found.id);
          const seen = panel.current === found && !$('#thread-panel').hidden && document.hasFocus();
          if (!seen) found.markUnread();
          refreshMarks();
          return true;
        }
        default:
          return false;
      }
    },
  };
}
