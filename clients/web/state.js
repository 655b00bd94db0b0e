// state.js — what the web client knows of each channel: its timeline (messages
// and system lines, in log order), how much history is loaded, and its unread
// count. No DOM here; views read this state and draw it.

/** History page size. */
export const PAGE = 50;
/** Timeline entries kept for a channel that is not on screen; older ones are dropped. */
const KEEP = 300;
/** Unread counts stop here, shown as "99+". */
export const UNREAD_CAP = 100;
/** Event types drawn as a line of their own in a channel's timeline. */
const SYSTEM_EVENTS = new Set(['member.joined']);
/**
 * Events that change a message. A page of history skips them: its messages are
 * stored as they are now (docs/protocol.md §5.9), and a page read after a newer
 * one must not take a message back to an older state.
 */
const MESSAGE_CHANGES = new Set(['message.updated', 'message.deleted', 'reaction.updated',
  'message.pinned']);

/**
 * An entry is either
 *   {kind: 'message', message, o?, nonce?, pending, error}  (o absent until confirmed)
 *   {kind: 'system', t, d, o}
 * Views may hang their own data on entries (e.g. the element that draws them).
 */
export class ChannelState {
  constructor(channel, community) {
    this.community = community; // the community's info in app.js: {id, name, role, …}
    this.unread = 0;
    this.mentions = 0; // mentions of the viewer after the read marker
    this.readO = 0; // the read marker (read.mark / identify.reads)
    this.head = 0; // the highest offset seen
    this.threads = new Map(); // thread id -> {thread, replies, last_ts, tags, resolved}
    this.update(channel);
    this.entries = [];
    this.reset();
  }

  /** Take a fresh copy of the channel object (from identify or a channel event). */
  update({ id, name, kind = 'text', parent, topic = '', position = 0, archived = false,
    slowmode_s: slowmode = 0, members }) {
    Object.assign(this, { id, name, kind, parent, topic, position, archived, slowmode });
    if (members) this.members = members;
  }

  /** Forget the timeline but for unsent messages (they will still be sent). */
  reset() {
    this.entries = this.entries.filter((e) => e.pending || e.error);
    this.byKey = new Map(this.entries.map((e) => [`n:${e.nonce}`, e]));
    this.loaded = false; // the latest page of history has been read
    this.more = true; // older history may exist
    this.oldest = null; // lowest offset in the timeline
    this.skipped = false; // events were missed that are not in the timeline
  }

  /** Entries in log order, unconfirmed messages last in the order they were written. */
  timeline() {
    const rank = (e) => e.o ?? Number.MAX_SAFE_INTEGER;
    return this.entries.sort((a, b) => rank(a) - rank(b)); // stable sort
  }

  /**
   * Take in a durable event (live, replayed or from history). Returns the
   * entry if the event added one to the timeline, else null.
   */
  apply(event, me) {
    if (event.o > this.head) this.head = event.o;
    if (event.t === 'message.created') return this.upsert(event.d.message, event.o, me);
    const changed = this.change(event);
    if (changed) return changed;
    if (!SYSTEM_EVENTS.has(event.t)) return null;
    const key = `o:${event.o}`;
    if (this.byKey.has(key)) return null;
    const entry = { kind: 'system', t: event.t, d: event.d, o: event.o };
    this.byKey.set(key, entry);
    this.entries.push(entry);
    this._lowest(event.o);
    return entry;
  }

  /**
   * Take in an event that changes what is there: an edit, a delete, a reaction,
   * a pin, a thread. Returns {kind: 'change', entry?} when something changed, else null.
   */
  change({ t, d, o }) {
    const entryOf = (id) => this.byKey.get(`m:${id}`);
    let entry = null;
    if (t === 'message.updated') {
      entry = entryOf(d.message.id);
      if (entry) entry.message = { ...entry.message, ...d.message };
    } else if (t === 'message.deleted') {
      entry = entryOf(d.id);
      if (entry) entry.message = { ...entry.message, deleted: true, text: '', reactions: [] };
    } else if (t === 'reaction.updated') {
      entry = entryOf(d.message);
      if (entry) {
        const reactions = (entry.message.reactions ?? []).map((r) => ({ ...r, users: [...r.users] }));
        let r = reactions.find((x) => x.emoji === d.emoji);
        if (!r) reactions.push((r = { emoji: d.emoji, count: 0, users: [] }));
        r.count = d.count;
        r.users = d.added ? [...new Set([...r.users, d.user])] : r.users.filter((u) => u !== d.user);
        entry.message = { ...entry.message, reactions: reactions.filter((x) => x.count > 0) };
      }
    } else if (t === 'message.pinned') {
      entry = entryOf(d.message);
      if (entry) entry.message = { ...entry.message, pinned: d.pinned || undefined };
    } else if (t === 'thread.created' || t === 'thread.updated') {
      const { thread } = d;
      const info = this.threads.get(thread.id) ?? {};
      if (o !== undefined && info.o !== undefined && o < info.o) return { kind: 'change', entry: null };
      this.threads.set(thread.id, { ...info, thread, o: o ?? info.o, replies: d.replies ?? thread.replies ?? 0,
        last_ts: d.last_ts ?? thread.last_ts, tags: d.tags ?? thread.tags ?? [],
        resolved: d.resolved ?? thread.resolved ?? false });
      if (thread.message) {
        entry = entryOf(thread.message);
        if (entry) entry.message = { ...entry.message, thread: thread.id };
      }
      return { kind: 'change', entry, thread };
    } else return null;
    return { kind: 'change', entry };
  }

  /** Add or confirm a message; returns the entry when it is new to the timeline. */
  upsert(message, o, me) {
    const mine = message.author.id === me?.id && message.nonce;
    let entry = this.byKey.get(`m:${message.id}`);
    if (!entry && mine) entry = this.byKey.get(`n:${message.nonce}`);
    const isNew = !entry;
    if (isNew) this.entries.push((entry = { kind: 'message' }));
    Object.assign(entry, { message, pending: false, error: null });
    if (o !== undefined) entry.o = o;
    this.byKey.set(`m:${message.id}`, entry);
    if (entry.nonce) this.byKey.delete(`n:${entry.nonce}`); // reconciled: known by id now
    if (o !== undefined) this._lowest(o);
    return isNew ? entry : null;
  }

  /** A message written here and not yet confirmed by the server. */
  addLocal(me, text, nonce, replyTo) {
    const message = { author: { id: me.id, name: me.name }, text, ts: Date.now(), nonce,
      reactions: [] };
    if (replyTo) message.reply_to = replyTo;
    const entry = { kind: 'message', message, nonce, pending: true, error: null };
    this.entries.push(entry);
    this.byKey.set(`n:${nonce}`, entry);
    return entry;
  }

  /** Drop an unsent message. */
  discard(entry) {
    this.entries = this.entries.filter((e) => e !== entry);
    this.byKey.delete(`n:${entry.nonce}`);
  }

  /** Merge a page of history (oldest first) read with `history {before, limit: PAGE}`. */
  mergeHistory(events, me) {
    for (const event of events) {
      this._lowest(event.o);
      if (!MESSAGE_CHANGES.has(event.t)) this.apply(event, me);
      else if (event.o > this.head) this.head = event.o;
    }
    if (events.length < PAGE || events[0].o <= 1) this.more = false;
    this.loaded = true;
  }

  /** Count a new message from someone else, up to UNREAD_CAP. */
  markUnread() {
    this.unread = Math.min(this.unread + 1, UNREAD_CAP);
  }

  /** Keep memory bounded for channels off screen: drop the oldest entries. */
  trim() {
    const confirmed = this.timeline().filter((e) => e.o !== undefined);
    if (confirmed.length <= KEEP) return;
    const drop = new Set(confirmed.slice(0, confirmed.length - KEEP));
    this.entries = this.entries.filter((e) => !drop.has(e));
    for (const e of drop) this.byKey.delete(e.kind === 'system' ? `o:${e.o}` : `m:${e.message.id}`);
    this.oldest = confirmed[confirmed.length - KEEP].o;
    this.more = true;
  }

  _lowest(o) {
    if (o !== undefined && (this.oldest === null || o < this.oldest)) this.oldest = o;
  }
}
