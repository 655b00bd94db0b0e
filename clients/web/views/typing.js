// views/typing.js — "alice is typing…": who sent `typing.started` in a channel
// in the last 5 s, drawn in a line for the channel on screen. The chat view
// and the thread panel each have one line; the shell feeds both.

const SHOW_MS = 5000; // how long a `typing.started` shows (the server forwards one every 3 s)
const typists = new Map(); // channel id -> Map(user id -> {name, until})
const lines = new Set();

/** A line in `node` for the channel `channelId()` names. */
export function typingLine(node, channelId) {
  const line = {
    draw() {
      const now = Date.now();
      const here = [...(typists.get(channelId())?.values() ?? [])].filter((t) => t.until > now);
      const names = here.map((t) => t.name);
      node.textContent = !names.length ? ''
        : names.length === 1 ? `${names[0]} is typing…`
          : names.length === 2 ? `${names[0]} and ${names[1]} are typing…`
            : 'Several people are typing…';
      clearTimeout(line.timer);
      if (here.length) line.timer = setTimeout(line.draw, Math.min(...here.map((t) => t.until)) - now + 50);
    },
  };
  lines.add(line);
  return line;
}

/** `typing.started {user, name}` in `channel`. */
export function typingStarted(channel, { user, name }) {
  if (!typists.has(channel)) typists.set(channel, new Map());
  typists.get(channel).set(user, { name: name ?? 'Someone', until: Date.now() + SHOW_MS });
  for (const line of lines) line.draw();
}

/** A message from `user` arrived in `channel`: they are done typing it. */
export function typingStopped(channel, user) {
  if (!typists.get(channel)?.delete(user)) return;
  for (const line of lines) line.draw();
}

/** Send `typing.start` for `channel` at most every 3 s: returns the function to call on input. */
export function typingSender(app) {
  let last = 0;
  let lastChannel = null;
  return (channel, text) => {
    if (!channel || !text.trim() || !app.client()?.ready) return;
    const now = Date.now();
    if (channel === lastChannel && now - last < 3000) return;
    last = now;
    lastChannel = channel;
    app.client().command('typing.start', { channel }).catch(() => {});
  };
}
