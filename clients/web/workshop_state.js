// workshop_state.js — a live workshop's state as the fold of its channel's
// durable workshop events: `apply(state, event)` for each, in offset order,
// starting from the `workshop` of the subscribe reply (or null). A port of
// protocol/workshop.py's `apply`, line for line: pure, deterministic, no DOM,
// no clock. tests/test_browser_workshops.py checks that both folds agree.

/** The durable events of a workshop channel that change its workshop's state. */
export const WORKSHOP_EVENTS = new Set([
  'workshop.started',
  'agenda.moved',
  'hands.updated',
  'poll.created',
  'poll.updated',
  'poll.closed',
  'question.asked',
  'question.updated',
  'timer.started',
  'timer.ended',
  'breakout.opened',
  'breakout.reported',
  'breakout.closed',
  'pulse.updated',
  'workshop.ended',
]);

export const MAX_WORKSHOP_TITLE = 200;
export const MAX_AGENDA_ITEMS = 50;
export const MAX_ITEM_MINUTES = 24 * 60;
export const MAX_POLL_OPTIONS = 10;
export const MAX_OPTION_CHARS = 200;
export const MAX_QUESTION_CHARS = 1000;
export const MAX_ANSWER_CHARS = 4000;
export const MAX_REPORT_CHARS = 4000;
export const MAX_TIMER_S = 6 * 3600;
export const MAX_GROUPS = 50;
export const MAX_BREAKOUT_MINUTES = 24 * 60;
export const PULSE_KINDS = ['agree', 'confused', 'slower', 'faster'];
/** How long a participant's latest pulse counts. */
export const PULSE_WINDOW_MS = 60_000;
export const HAND_ORDERS = ['fifo', 'fair'];

const copy = (value) => structuredClone(value);
const compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The hand queue in its one authoritative order. `fifo`: by `raised_ts`;
 * `fair`: fewest `turns` first, then by `raised_ts`. Ties fall to the user id.
 */
export function queueInOrder(queue, order) {
  const byTime = (a, b) => a.raised_ts - b.raised_ts || compare(a.user, b.user);
  if (order === 'fair') return [...queue].sort((a, b) => a.turns - b.turns || byTime(a, b));
  return [...queue].sort(byTime);
}

/** Most votes first, then the earliest asked (then by id). */
export function questionOrder(a, b) {
  return b.votes - a.votes || a.ts - b.ts || compare(a.id, b.id);
}

/**
 * The workshop after one event of its channel (events of other kinds change
 * nothing). `state` is changed in place where it can be; use the returned value.
 */
export function apply(state, event) {
  const t = event.t;
  const d = event.d || {};
  if (t === 'workshop.started') return copy(d.workshop);
  if (state === null || state === undefined || !WORKSHOP_EVENTS.has(t)) return state;
  if (t === 'workshop.ended') return null;
  if (t === 'agenda.moved') {
    const { agenda } = state;
    const at = d.started_ts;
    if (state.current >= 0 && state.current < agenda.length) agenda[state.current].ended_ts = at;
    state.current = d.current;
    const item = agenda[d.current];
    item.started_ts = at;
    delete item.ended_ts;
  } else if (t === 'hands.updated') {
    state.hands = copy(d.hands);
  } else if (t === 'poll.created' || t === 'poll.updated' || t === 'poll.closed') {
    replace(state.polls, d.poll);
  } else if (t === 'question.asked' || t === 'question.updated') {
    replace(state.questions, d.question);
    state.questions.sort(questionOrder);
  } else if (t === 'timer.started') {
    state.timer = copy(d.timer);
  } else if (t === 'timer.ended') {
    if (state.timer !== null && state.timer !== undefined && state.timer.id === d.timer.id) {
      state.timer = null;
    }
  } else if (t === 'breakout.opened') {
    state.breakout = copy(d.breakout);
  } else if (t === 'breakout.reported') {
    state.reports.push({ group: d.group, text: d.text, by: d.by });
  } else if (t === 'breakout.closed') {
    state.breakout = null;
  } else if (t === 'pulse.updated') {
    state.pulse = { ...d.counts };
  }
  return state;
}

function replace(items, item) {
  const i = items.findIndex((old) => old.id === item.id);
  if (i >= 0) items[i] = copy(item);
  else items.push(copy(item));
}
