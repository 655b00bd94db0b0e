// agora.js — a client for the Agora wire protocol v1 (JSON encoding), with no
// DOM and no dependencies, so that any browser program can import it:
//
//   import { Agora } from './agora.js';
//   const client = new Agora(token, { onstatus: (status) => console.log(status) });
//   client.on('message.created', (d, frame) => console.log(frame.ch, d.message.text));
//   client.onready = (reply) => client.subscribe(reply.communities[0].channels[0].id);
//   client.connect();
//
// Commands resolve to the reply's `d` or reject with an AgoraError {code, message}:
// at once with 'offline' while disconnected, with 'disconnected' if the
// connection drops first. Per subscribed channel the client keeps the highest
// offset `o` seen and the log's epoch; after a drop it reconnects with backoff,
// identifies again and re-subscribes with `since` and `epoch`, so that no
// durable event is missed or delivered twice. While it is offline it also asks
// the server's /healthz every second, and reconnects the moment that answers,
// instead of waiting out a backoff that may have grown to many seconds.

/** Close codes after which reconnecting cannot help (see PROTOCOL.md). */
const FINAL_CLOSE_CODES = new Set([1008, 1009, 4002]);
const BAD_TOKEN = 4001;

export class AgoraError extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.name = 'AgoraError';
    this.code = code;
    Object.assign(this, extra); // e.g. retry_after_ms
  }
}

/** The gateway URL for the page's own origin (ws: or wss: to match). */
export function gatewayUrl(base = globalThis.location?.href) {
  const url = new URL('/gateway?v=1&encoding=json', base);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

/** The server's health route for a gateway URL. */
export function healthUrl(gateway) {
  const url = new URL('/healthz', gateway);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  return url.href;
}

export class Agora {
  /**
   * `token` comes from /api/v1/auth/login or /register. Options (also settable later):
   *   url       the gateway URL (default: this page's origin)
   *   onstatus  (status, reason): 'connecting', 'online', 'offline' (reconnecting),
   *             'unauthorized' (4001: the token was refused or revoked, and
   *             `reason` says why), 'stopped' (refused for good), 'closed'
   *   onready   (identifyReply) after each identify, known channels re-subscribed
   *   onreset   (channel, subscribeReply, since) when missed events could not be
   *             replayed after a reconnect: reload that channel's history
   *   onsubscribed (channel, subscribeReply) after each successful subscribe, before
   *             any live event that follows the reply (a workshop channel's reply
   *             carries its state: docs/protocol.md §5.10)
   *   minDelay, maxDelay  reconnect backoff bounds in ms
   *   probeMs   while offline, ask `healthUrl` this often and reconnect as soon as
   *             it answers (0: don't; default 1000)
   */
  constructor(token, options = {}) {
    const noop = () => {};
    Object.assign(this, { onstatus: noop, onready: noop, onreset: noop, onsubscribed: noop });
    Object.assign(this, { minDelay: 500, maxDelay: 15000, probeMs: 1000 });
    Object.assign(this, options, { token, url: options.url ?? gatewayUrl() });
    this.healthUrl ??= healthUrl(this.url);
    this.channels = new Map(); // channel id -> {o, epoch, gen, sub}
    this.listeners = new Map(); // event type (or '*') -> Set of functions
    this.pending = new Map(); // command id -> {resolve, reject}
    this.nextId = 1;
    this.identity = null; // the last identify reply: {user, session, communities}
    this.hello = null; // the last hello's `d`: {heartbeat_ms, protocol, server, max_frame, …}
    this.clockOffset = null; // server clock minus this one, in ms, when known (serverNow)
    this.gen = 0; // counts successful identifies, so one per connection
    Object.assign(this, { ws: null, ready: false, stopped: true, attempt: 0, status: null });
  }

  /** Open the connection; it stays open (reconnecting as needed) until close(). */
  connect() {
    if (!this.stopped) return this;
    this.stopped = false;
    this.attempt = 0;
    this._setStatus('connecting');
    this._open();
    return this;
  }

  /**
   * Reconnect now instead of waiting out the backoff, e.g. when the browser
   * says the network is back. Does nothing while connected or connecting.
   */
  reconnectNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    this._open();
  }

  /** Close for good: no reconnect. */
  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.probeTimer);
    const ws = this.ws;
    this._drop(ws, 1000, 'closed by the client');
    ws?.close(1000);
    this._setStatus('closed');
  }

  /** Listen to events of type `t` ('*' for all): fn(d, frame). Returns an unlisten function. */
  on(t, fn) {
    if (!this.listeners.has(t)) this.listeners.set(t, new Set());
    this.listeners.get(t).add(fn);
    return () => this.listeners.get(t).delete(fn);
  }

  /** Send command `op`; resolves to the reply's `d`, rejects with an AgoraError. */
  command(op, d = {}) {
    if (!this.ready) return Promise.reject(new AgoraError('offline', 'not connected'));
    return this._send(op, d);
  }

  /**
   * Subscribe to a channel, resuming from the last offset seen if it was
   * subscribed before. Idempotent per connection. While offline, the channel
   * is remembered and subscribed on the next connect (resolves to null now).
   */
  subscribe(channel) {
    let c = this.channels.get(channel);
    if (!c) this.channels.set(channel, (c = { o: null, epoch: null, gen: -1, sub: null }));
    if (!this.ready) return Promise.resolve(null);
    if (c.gen === this.gen) return c.sub;
    const d = { channel };
    if (c.o !== null) Object.assign(d, { since: c.o }, c.epoch ? { epoch: c.epoch } : {});
    const gen = (c.gen = this.gen);
    c.sub = this.command('subscribe', d).then(
      (reply) => {
        // Replayed events arrived before this reply; live ones follow it.
        c.o = reply.offset;
        c.epoch = reply.epoch;
        if ('since' in d && !reply.recovered) this.onreset(channel, reply, d.since);
        try {
          this.onsubscribed(channel, reply);
        } catch (err) {
          console.error(err);
        }
        return reply;
      },
      (err) => {
        if (c.gen === gen) c.gen = -1; // try again on the next call or connect
        throw err;
      },
    );
    return c.sub;
  }

  unsubscribe(channel) {
    this.channels.delete(channel);
    return this.ready ? this.command('unsubscribe', { channel }) : Promise.resolve({});
  }

  /** Older durable events of a channel, oldest first: resolves to {events}. */
  history(channel, { before, limit } = {}) {
    const d = { channel };
    if (before != null) d.before = before;
    if (limit != null) d.limit = limit;
    return this.command('history', d);
  }

  /** Send a message; the same nonce again never creates a second one. */
  send(channel, text, nonce) {
    return this.command('message.send', nonce ? { channel, text, nonce } : { channel, text });
  }

  // The connection

  _open() {
    const ws = (this.ws = new WebSocket(this.url));
    ws.onmessage = (e) => {
      try {
        this._frame(JSON.parse(e.data));
      } catch (err) {
        console.warn('agora: bad frame', e.data, err);
      }
    };
    ws.onclose = (e) => this._drop(ws, e.code, e.reason);
  }

  _send(op, d) {
    const id = this.nextId++;
    const ws = this.ws;
    if (!ws) return Promise.reject(new AgoraError('offline', 'not connected'));
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ op, id, d }));
    });
  }

  _frame(f) {
    const waiter = f.id !== undefined ? this.pending.get(f.id) : undefined;
    if (waiter) this.pending.delete(f.id);
    switch (f.op) {
      case 'hello':
        this.hello = f.d ?? {};
        this._clock(this.hello);
        this._heartbeat(f.d?.heartbeat_ms ?? 30000);
        return this._identify();
      case 'reply':
        return waiter?.resolve(f.d ?? {});
      case 'error': {
        const { code = 'internal', message = 'error', ...extra } = f.d ?? {};
        const err = new AgoraError(code, message, extra);
        return waiter ? waiter.reject(err) : console.warn('agora:', code, message);
      }
      case 'event':
        return this._event(f);
    }
  }

  /**
   * The server's clock now, in ms since the epoch: this clock corrected by
   * what the server told of its own (see _clock), or this clock when it told
   * nothing yet.
   */
  serverNow() {
    return Date.now() + (this.clockOffset ?? 0);
  }

  /**
   * Learn the server's clock. `hello` may carry it (`ts`, ms since the epoch);
   * otherwise every live event that says when the server made something new
   * (`message.ts`, a timer's or agenda item's `started_ts`) is a sample: the
   * server's time then minus ours on arrival is the clock offset less the
   * transit time, so the largest sample is the best estimate, and old
   * timestamps (replays, older objects) never raise it.
   */
  _clock(d) {
    const now = Date.now();
    const samples = [d?.ts, d?.message?.ts, d?.timer?.started_ts, d?.started_ts]
      .filter((ts) => typeof ts === 'number' && ts > 0);
    for (const ts of samples) {
      const offset = ts - now;
      if (this.clockOffset === null || offset > this.clockOffset) this.clockOffset = offset;
    }
  }

  _event(f) {
    if (f.t === 'message.created' || f.t === 'timer.started' || f.t === 'agenda.moved') {
      this._clock(f.d);
    }
    if (typeof f.o === 'number') {
      const c = this.channels.get(f.ch);
      if (!c) return; // a late event of a channel we left
      if (c.o !== null && f.o <= c.o) return; // seen already
      c.o = f.o;
    }
    for (const key of [f.t, '*']) {
      for (const fn of this.listeners.get(key) ?? []) {
        try {
          fn(f.d ?? {}, f);
        } catch (err) {
          console.error(err);
        }
      }
    }
  }

  async _identify() {
    let reply;
    try {
      reply = await this._send('identify', { token: this.token });
    } catch {
      return; // a bad token closes the connection with 4001: handled in _drop
    }
    this.ready = true;
    this.identity = reply;
    this.gen += 1;
    this.attempt = 0;
    clearTimeout(this.probeTimer);
    this.probeTimer = null;
    this._setStatus('online');
    for (const channel of this.channels.keys()) {
      this.subscribe(channel).catch((err) => console.warn('agora: subscribe', channel, err));
    }
    this.onready(reply);
  }

  _heartbeat(ms) {
    clearInterval(this.beat);
    const ws = this.ws;
    // Twice per interval: a throttled background tab still beats before the
    // server's 1.5x deadline.
    this.beat = setInterval(() => {
      if (!this.ready) return;
      // No answer within a beat: the connection is dead even if TCP hasn't noticed.
      const timer = setTimeout(() => {
        this._drop(ws, 4000, 'ping timeout');
        ws.close();
      }, ms);
      this._send('ping', {}).finally(() => clearTimeout(timer)).catch(() => {});
    }, ms / 2);
  }

  _drop(ws, code, reason) {
    if (!ws || ws !== this.ws) return;
    ws.onmessage = ws.onclose = null;
    this.ws = null;
    this.ready = false;
    clearInterval(this.beat);
    const lost = new AgoraError('disconnected', 'the connection was lost');
    for (const waiter of this.pending.values()) waiter.reject(lost);
    this.pending.clear();
    if (this.stopped) return;
    if (code === BAD_TOKEN || FINAL_CLOSE_CODES.has(code)) {
      this.stopped = true;
      return this._setStatus(code === BAD_TOKEN ? 'unauthorized' : 'stopped', reason);
    }
    const backoff = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt++);
    this._setStatus('offline', reason);
    this.retryTimer = setTimeout(() => this._open(), backoff * (0.5 + Math.random() / 2));
    if (!this.probeTimer) this._probe(false);
  }

  /**
   * While offline: ask the server whether it is up. When it answers after not
   * answering (or at the first answer of an outage), reconnect at once; a server
   * that answers but keeps refusing the socket is left to the backoff.
   */
  _probe(wasUp) {
    clearTimeout(this.probeTimer);
    this.probeTimer = null;
    if (!this.probeMs || typeof fetch !== 'function') return;
    this.probeTimer = setTimeout(async () => {
      let up = false;
      try {
        up = (await fetch(this.healthUrl, { cache: 'no-store' })).ok;
      } catch {
        // still down
      }
      if (this.stopped || this.ready) {
        this.probeTimer = null;
        return;
      }
      if (up && !wasUp) this.reconnectNow();
      this._probe(up);
    }, this.probeMs * (0.75 + Math.random() / 2));
  }

  _setStatus(status, reason = '') {
    if (status === this.status) return;
    this.status = status;
    this.onstatus(status, reason);
  }
}
