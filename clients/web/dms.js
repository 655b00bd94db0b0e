// dms.js — direct messages as the shell keeps them: a community of their own
// for the views and the sidebar (no community id, nothing to moderate), each
// DM's ChannelState named after the other member (from the communities'
// members, once loaded), and opening a DM from the members panel or on
// `dm.created`.

import { ChannelState } from './state.js';

/** `rebuild()` redraws the sidebar; `select(id, options)` opens a channel. */
export function createDms(app, { rebuild, select }) {
  /** Direct messages: a community of their own for the views (no community id, nothing to moderate). */
  const DMS = { id: null, name: 'Direct messages', role: 'member', dm: true, channels: [], members: null,
    presence: new Map() };

  function userName(id) {
    for (const community of app.communities.values()) {
      const member = community.members?.get(id);
      if (member) return member.name;
    }
    return null;
  }

  function dmState(channel) {
    const ch = app.channels.get(channel.id) ?? new ChannelState(channel, DMS);
    ch.update(channel);
    ch.community = DMS;
    const other = (ch.members ?? []).find((id) => id !== app.me()?.id);
    ch.other = other;
    ch.name = userName(other) ?? ch.dmName ?? 'Direct message';
    return ch;
  }

  /** DM names come from the members of the communities, once loaded. */
  function names() {
    let changed = false;
    for (const ch of DMS.channels) {
      const name = userName(ch.other);
      if (name && name !== ch.name) {
        ch.name = name;
        changed = true;
      }
    }
    if (changed) rebuild();
  }

  function add(channel, { open = false, name = null } = {}) {
    const client = app.client();
    if (!client) return null;
    const known = DMS.channels.find((ch) => ch.id === channel.id);
    const ch = known ?? dmState(channel);
    if (name) ch.dmName = ch.name = name;
    if (!known) {
      DMS.channels.unshift(ch);
      rebuild();
      client.subscribe(ch.id).catch(app.report);
    }
    if (open) select(ch.id, { focus: true });
    return ch;
  }

  /** The members panel's "Message" button: open (or reopen) the DM with `userId`. */
  async function open(userId, name) {
    try {
      const { channel } = await app.client().command('dm.open', { user: userId });
      add(channel, { open: true, name });
    } catch (err) {
      app.notify(`Could not open a direct message: ${err.message}`);
    }
  }

  return {
    community: DMS,
    userName,
    names,
    add,
    open,
    /** identify's `dms`. */
    identified(list) {
      DMS.channels = list.map(dmState);
    },
    clear() {
      DMS.channels = [];
    },
  };
}
