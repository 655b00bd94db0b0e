// views/workshop.js — a `workshop` channel: the workshop pane beside (on a
// phone: above) the channel's conversation, which the chat view draws as for
// a text channel. The pane follows docs/protocol.md §5.10: the state is the
// subscribe reply's `workshop` folded with the channel's workshop events
// (workshop_state.js, a port of protocol/workshop.py), and `mine` (the
// viewer's ballots and upvotes) is kept from the replies of their own votes.
//
// Everyone: the agenda with its current item, the countdown, raise or lower a
// hand (with the place in the queue), polls with live bars, Q&A (ask, upvote,
// withdraw one's own), pulse buttons, the breakout room of one's group, the
// reports, and the recap's thread once the workshop ended. Facilitators (the
// `run_workshops` permission) also: start and end it, move the agenda, call and
// lower hands, the queue's order, create and close polls, answer and hide
// questions, the timer, open, message and close breakouts, the pulse counts,
// and the participation of the community's members (a dialog).
//
// The countdown runs on the server's clock as the client estimates it
// (agora.js serverNow: `hello.ts` when the server sends it, else the newest
// server timestamps of live events against this clock).
//
// The pane is built once per kind of screen (no workshop / live, facilitator
// or not): its forms stay put while events redraw the lists, and a redrawn
// control that had the focus gets it back (by its `data-key`).

import { $, el } from '../dom.js';
import { openDialog, confirmAction } from '../dialogs.js';
import { can } from '../roles.js';
import { aroundChat } from './chat.js';
import {
  apply, MAX_AGENDA_ITEMS, MAX_ANSWER_CHARS, MAX_BREAKOUT_MINUTES, MAX_GROUPS, MAX_ITEM_MINUTES,
  MAX_OPTION_CHARS, MAX_POLL_OPTIONS, MAX_QUESTION_CHARS, MAX_TIMER_S, MAX_WORKSHOP_TITLE,
  PULSE_KINDS, WORKSHOP_EVENTS,
} from '../workshop_state.js';

const PULSE_TEXT = { agree: 'Agree', confused: 'Confused', slower: 'Slower', faster: 'Faster' };
const PULSE_ICON = { agree: '👍', confused: '❓', slower: '🐢', faster: '⚡' };

/** "4:05", "1:02:03". */
export function clock(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const [h, m, sec] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const two = (n) => String(n).padStart(2, '0');
  return h ? `${h}:${two(m)}:${two(sec)}` : `${m}:${two(sec)}`;
}

const hhmm = (ts) => new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const emptyMine = () => ({ ballots: {}, upvoted: [] });

/** "Ann", "Ann and Bob", "Ann, Bob and Cy". */
function listText(names) {
  if (names.length < 2) return names.join('');
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

/** A labelled field: [label, control]. */
function field(label, control, hint = null) {
  const id = control.id;
  return [el('label', { htmlFor: id }, label, hint ? el('span', { className: 'hint' }, ` ${hint}`) : null),
    control];
}

export function createWorkshopView(app, chat) {
  const root = $('#workshop-view');
  const body = $('#ws-body');
  const heading = $('#workshop-heading');
  const live = $('#ws-live');
  let ch = null; // the workshop channel on screen
  let built = null; // the kind of pane built: 'none-f', 'none-p', 'live-f', 'live-p', 'off'
  let parts = {}; // the pane's parts that redraw
  let ticker = null;
  const groupNames = new Map(); // breakout group id -> its name, for the reports

  const facilitator = () => Boolean(ch && can(ch.community.role, 'run_workshops'));
  const me = () => app.me()?.id;
  const name = (id) => {
    if (id === me()) return 'You';
    const member = ch?.community.members?.get(id);
    return member?.name ?? app.userName(id) ?? 'Someone';
  };
  const plainName = (id) => ch?.community.members?.get(id)?.name ?? app.userName(id) ?? 'Someone';

  function say(text) {
    live.textContent = '';
    live.textContent = text;
  }

  /** Send a workshop command for the channel on screen; errors show as a notice. */
  async function act(op, d = {}, what = 'do that') {
    const channel = ch;
    if (!channel || !app.client()) return null;
    try {
      return await app.client().command(op, { channel: channel.id, ...d });
    } catch (err) {
      app.notify(`Could not ${what}: ${err.message}`);
      return null;
    }
  }

  // The state of each workshop channel: ch.ws = {state, offset, mine, known, recap, buffer}

  function record(channel) {
    channel.ws ??= { state: null, offset: 0, mine: emptyMine(), known: false, recap: null,
      buffer: null, unsupported: false };
    return channel.ws;
  }

  /** A subscribe reply for a workshop channel: the state as of its offset. */
  function subscribed(channel, reply) {
    const ws = record(channel);
    if (!('workshop' in reply)) return loadState(channel); // a server older than §5.10
    Object.assign(ws, { state: reply.workshop ?? null, offset: reply.offset ?? 0,
      mine: normalMine(reply.mine), known: true });
    settled(channel);
  }

  const normalMine = (mine) => ({ ballots: { ...(mine?.ballots ?? {}) },
    upvoted: [...(mine?.upvoted ?? [])] });

  /** `workshop.state`: events that arrive meanwhile wait in `buffer`. */
  async function loadState(channel) {
    const ws = record(channel);
    ws.buffer = [];
    try {
      const reply = await app.client().command('workshop.state', { channel: channel.id });
      Object.assign(ws, { state: reply.workshop ?? null, offset: reply.offset ?? 0,
        mine: normalMine(reply.mine), known: true, unsupported: false });
      const waiting = ws.buffer;
      ws.buffer = null;
      for (const frame of waiting) event(channel, frame);
    } catch (err) {
      ws.buffer = null;
      if (err.code === 'bad_request') Object.assign(ws, { known: true, unsupported: true });
      else app.report(err);
    }
    settled(channel);
  }

  function settled(channel) {
    syncRooms(channel);
    if (channel === ch) draw();
  }

  /** A durable event of a workshop channel (any: the others do not change the workshop). */
  function event(channel, frame) {
    if (!WORKSHOP_EVENTS.has(frame.t)) return;
    const ws = record(channel);
    if (ws.buffer) {
      ws.buffer.push(frame);
      return;
    }
    if (!ws.known || frame.o <= ws.offset) return; // before the state we have
    ws.offset = frame.o;
    const before = ws.state;
    const speaking = before?.hands?.speaking ?? null;
    const d = frame.d ?? {};
    ws.state = apply(ws.state, frame);
    const mine = me();
    const here = channel === ch;
    switch (frame.t) {
      case 'workshop.started':
        ws.mine = emptyMine();
        ws.recap = null;
        if (here) say(`The workshop ${ws.state.title} started.`);
        break;
      case 'workshop.ended':
        ws.recap = d.recap ?? null;
        if (here) say('The workshop has ended.');
        break;
      case 'hands.updated':
        if (ws.state.hands.speaking === mine && speaking !== mine) {
          app.notify('It is your turn to speak.');
        } else if (here && ws.state.hands.speaking && ws.state.hands.speaking !== speaking) {
          say(`${plainName(ws.state.hands.speaking)} is speaking.`);
        }
        break;
      case 'agenda.moved':
        if (here) say(`Now: ${ws.state.agenda[ws.state.current]?.title ?? ''}`);
        break;
      case 'poll.created':
        if (here) say(`New poll: ${d.poll.question}`);
        break;
      case 'timer.ended':
        if (here && !d.cancelled) say('Time is up.');
        break;
      case 'breakout.opened': {
        const group = d.breakout.groups.find((g) => g.members.includes(mine));
        if (group) app.notify(`Breakouts are open: you are in ${group.name}.`);
        break;
      }
      case 'breakout.closed':
        if (here) say('The breakouts are closed.');
        break;
      default:
    }
    for (const g of d.breakout?.groups ?? []) groupNames.set(g.id, g.name);
    if (frame.t.startsWith('breakout.') || frame.t.startsWith('workshop.')) syncRooms(channel);
    if (here) draw();
  }

  /** The breakout rooms the viewer may open go into the sidebar while the breakout is open. */
  function syncRooms(channel) {
    const breakout = channel.ws?.state?.breakout ?? null;
    for (const g of breakout?.groups ?? []) groupNames.set(g.id, g.name);
    const all = can(channel.community.role, 'run_workshops');
    const groups = breakout ? breakout.groups.filter((g) => all || g.members.includes(me())) : [];
    app.setRooms(channel, groups.map((g) => ({ id: g.channel, name: g.name, group: g,
      breakout: breakout.id })));
  }

  // Building the pane

  function kind() {
    const ws = ch ? record(ch) : null;
    if (!ws || !ws.known || ws.unsupported) return 'off';
    return `${ws.state ? 'live' : 'none'}-${facilitator() ? 'f' : 'p'}`;
  }

  function draw() {
    if (!ch) return;
    const k = kind();
    if (k !== built) build(k);
    const ws = record(ch);
    const state = ws.state;
    heading.textContent = state ? state.title : 'Workshop';
    $('#ws-end').hidden = !(state && facilitator());
    $('#ws-participation').hidden = !can(ch.community.role, 'read_participation');
    for (const part of Object.values(parts)) part.draw?.(state, ws);
    tick();
  }

  /**
   * Redraw `container` with `children`, keeping the focus where it was; a focused
   * button stays the same element, which takes its new twin's attributes, content,
   * handler and place. A new element would
   * take the focus but not a key already half pressed (Space clicks on its keyup), so
   * an event arriving mid-press would swallow the press.
   */
  function redraw(container, ...children) {
    const active = document.activeElement;
    const key = container.contains(active) ? active.dataset.key : null;
    container.replaceChildren(...children.flat().filter(Boolean));
    const twin = key ? container.querySelector(`[data-key="${CSS.escape(key)}"]`) : null;
    if (!twin) return;
    if (active.tagName !== 'BUTTON' || twin.tagName !== 'BUTTON') {
      twin.focus();
      return;
    }
    for (const { name } of [...active.attributes]) {
      if (!twin.hasAttribute(name)) active.removeAttribute(name);
    }
    for (const { name, value } of [...twin.attributes]) active.setAttribute(name, value);
    active.replaceChildren(...twin.childNodes);
    active.onclick = twin.onclick;
    twin.replaceWith(active);
    active.focus();
  }

  function card(key, title, ...children) {
    const id = `ws-${key}-title`;
    return el('section', { className: `ws-card ws-card-${key}`, ariaLabelledby: id },
      el('h3', { id }, title), ...children);
  }

  function build(k) {
    built = k;
    parts = {};
    if (k === 'off') {
      const ws = ch ? record(ch) : null;
      body.replaceChildren(el('p', { className: 'hint' },
        ws?.unsupported ? 'This server does not run workshops.' : 'Loading the workshop…'));
      return;
    }
    const [mode, who] = k.split('-');
    const f = who === 'f';
    if (mode === 'none') {
      parts.ended = endedPart();
      body.replaceChildren(parts.ended.node, f ? startForm() : null);
      return;
    }
    parts.agenda = agendaPart(f);
    parts.hands = handsPart(f);
    parts.pulse = pulsePart(f);
    if (f) parts.timer = timerPart();
    parts.polls = pollsPart(f);
    parts.questions = questionsPart(f);
    parts.breakouts = breakoutsPart(f);
    body.replaceChildren(...Object.values(parts).map((p) => p.node));
  }

  // No workshop: the last one's recap, and the start form

  function endedPart() {
    const node = el('div', { className: 'ws-none' });
    return {
      node,
      draw(state, ws) {
        const recap = ws.recap;
        redraw(node,
          el('p', { className: 'ws-none-text' }, recap ? 'The workshop has ended.' : 'No workshop running.'),
          recap ? el('button', {
            type: 'button', className: 'secondary', dataset: { key: 'recap' },
            onclick: () => openRecap(recap),
          }, `Open the recap: ${recap.title ?? 'workshop'}`) : null);
      },
    };
  }

  function openRecap(recap) {
    const parent = app.channels.get(recap.channel) ?? ch;
    app.openThread({ id: recap.thread, parent: parent.id, community: parent.community.id,
      title: recap.title ?? 'Recap' }, parent);
  }

  function startForm() {
    const rows = el('ol', { className: 'ws-agenda-rows' });
    const title = el('input', { id: 'ws-start-title', maxLength: MAX_WORKSHOP_TITLE, required: true,
      autocomplete: 'off' });
    const error = el('p', { className: 'error', role: 'alert' });
    let made = 0;
    function addRow(focus) {
      if (rows.children.length >= MAX_AGENDA_ITEMS) return;
      const n = ++made;
      const item = el('input', { id: `ws-item-${n}`, className: 'ws-item-title', maxLength: MAX_WORKSHOP_TITLE,
        autocomplete: 'off' });
      const minutes = el('input', { id: `ws-item-min-${n}`, className: 'ws-item-minutes', type: 'number',
        min: 1, max: MAX_ITEM_MINUTES, inputMode: 'numeric' });
      const li = el('li', { className: 'ws-agenda-row' },
        el('div', { className: 'grow' }, ...field('Item', item)),
        el('div', {}, ...field('Minutes', minutes, '(optional)')),
        el('button', {
          type: 'button', className: 'secondary small', ariaLabel: 'Remove this item',
          onclick: () => {
            const next = li.nextElementSibling ?? li.previousElementSibling;
            li.remove();
            renumber();
            ($('.ws-item-title', next ?? form) ?? add).focus();
          },
        }, 'Remove'));
      rows.append(li);
      renumber();
      if (focus) item.focus();
    }
    function renumber() {
      [...rows.children].forEach((li, i) => {
        $('label', li).firstChild.textContent = `Item ${i + 1}`;
        $('button', li).setAttribute('aria-label', `Remove item ${i + 1}`);
      });
    }
    const add = el('button', { type: 'button', className: 'secondary small', onclick: () => addRow(true) },
      'Add an item');
    const form = el('form', { className: 'ws-card ws-start', ariaLabelledby: 'ws-start-heading' },
      el('h3', { id: 'ws-start-heading' }, 'Start a workshop'),
      ...field('Title', title),
      el('fieldset', {}, el('legend', {}, 'Agenda'), rows, add),
      error,
      el('button', { type: 'submit' }, 'Start workshop'));
    addRow(false);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.textContent = '';
      const agenda = [];
      for (const li of rows.children) {
        const item = $('.ws-item-title', li).value.trim();
        const minutes = $('.ws-item-minutes', li).value;
        if (!item) continue;
        agenda.push(minutes ? { title: item, minutes: Number(minutes) } : { title: item });
      }
      if (!title.value.trim()) {
        error.textContent = 'A workshop needs a title.';
        title.focus();
        return;
      }
      const channel = ch;
      try {
        const reply = await app.client().command('workshop.start',
          { channel: channel.id, title: title.value.trim(), agenda });
        // The reply comes before the event: show it now (the event is then skipped as known).
        if (reply?.workshop && channel.ws && !channel.ws.state) {
          channel.ws.state = apply(null, { t: 'workshop.started', d: reply });
          channel.ws.mine = emptyMine();
          channel.ws.recap = null;
        }
        if (channel === ch) {
          draw();
          heading.focus();
        }
      } catch (err) {
        error.textContent = err.message;
      }
    });
    return form;
  }

  // Agenda

  function agendaPart(f) {
    const list = el('ol', { className: 'ws-agenda-list' });
    const tools = el('div', { className: 'actions' });
    const empty = el('p', { className: 'hint' }, 'No agenda.');
    const node = card('agenda', 'Agenda', empty, list, f ? tools : null);
    return {
      node,
      draw(state) {
        empty.hidden = state.agenda.length > 0;
        redraw(list, state.agenda.map((item, i) => {
          const current = i === state.current;
          const done = item.ended_ts && !current;
          const li = el('li', { className: `ws-item${current ? ' current' : ''}${done ? ' done' : ''}` },
            el('span', { className: 'ws-item-name' }, item.title),
            item.minutes ? el('span', { className: 'hint' }, ` · ${plural(item.minutes, 'minute')}`) : null,
            current ? el('span', { className: 'badge now' }, 'now') : null);
          if (current) li.setAttribute('aria-current', 'step');
          if (f && !current) {
            li.prepend(el('button', {
              type: 'button', className: 'secondary small', dataset: { key: `goto-${i}` },
              ariaLabel: `Go to item ${i + 1}: ${item.title}`,
              onclick: () => act('agenda.goto', { index: i }, 'move the agenda'),
            }, 'Go to'));
          }
          return li;
        }));
        if (!f) return;
        const last = state.current >= state.agenda.length - 1;
        redraw(tools, state.agenda.length ? el('button', {
          type: 'button', dataset: { key: 'next' }, disabled: last,
          onclick: () => act('agenda.next', {}, 'move the agenda'),
        }, state.current < 0 ? 'Start the agenda' : 'Next item') : null);
      },
    };
  }

  // Hands

  function handsPart(f) {
    const dynamic = el('div', { className: 'ws-hands-body' });
    const order = f ? el('fieldset', { className: 'ws-order' }, el('legend', {}, 'Queue order'),
      ...[['fifo', 'First raised, first called'], ['fair', 'Fair: fewest turns first']].map(([value, text]) =>
        el('label', { className: 'check' }, el('input', {
          type: 'radio', name: 'ws-order', value,
          onchange: () => act('hand.order', { order: value }, 'change the order'),
        }), ` ${text}`))) : null;
    const node = card('hands', 'Hands', dynamic, order);
    return {
      node,
      draw(state) {
        const { hands } = state;
        const mine = me();
        const place = hands.queue.findIndex((h) => h.user === mine);
        const raised = place >= 0;
        const status = [hands.speaking === mine ? 'You are speaking.' : '',
          raised ? `Your place in the queue: ${place + 1} of ${hands.queue.length}.` : '']
          .filter(Boolean).join(' ');
        if (order) {
          for (const radio of order.querySelectorAll('input')) radio.checked = radio.value === hands.order;
        }
        redraw(dynamic,
          el('p', { className: 'ws-speaking' }, ...(hands.speaking
            ? [el('span', { className: 'hint' }, 'Speaking: '), el('strong', {}, name(hands.speaking))]
            : [el('span', { className: 'hint' }, 'Nobody is speaking.')])),
          el('div', { className: 'actions' },
            el('button', {
              type: 'button', className: raised ? 'secondary' : '', dataset: { key: 'raise' },
              ariaPressed: String(raised),
              onclick: () => act(raised ? 'hand.lower' : 'hand.raise', {},
                raised ? 'lower your hand' : 'raise your hand'),
            }, raised ? '✋ Lower hand' : '✋ Raise hand'),
            hands.speaking === mine && !raised ? el('button', {
              type: 'button', className: 'secondary', dataset: { key: 'done' },
              onclick: () => act('hand.lower', { user: mine }, 'end your turn'),
            }, 'Done speaking') : null),
          el('p', { className: 'ws-place', role: 'status' }, status),
          hands.queue.length ? el('ol', { className: 'ws-queue', ariaLabel: 'Raised hands, in order' },
            ...hands.queue.map((h) => el('li', { className: 'ws-queue-entry', dataset: { user: h.user } },
              f ? el('span', { className: 'ws-queue-tools' },
                el('button', {
                  type: 'button', className: 'small', dataset: { key: `call-${h.user}` },
                  ariaLabel: `Call ${plainName(h.user)}`,
                  onclick: () => act('hand.call', { user: h.user }, 'call them'),
                }, 'Call'),
                el('button', {
                  type: 'button', className: 'secondary small', dataset: { key: `lower-${h.user}` },
                  ariaLabel: `Lower ${plainName(h.user)}'s hand`,
                  onclick: () => act('hand.lower', { user: h.user }, 'lower the hand'),
                }, 'Lower')) : null,
              el('span', { className: 'ws-queue-name' }, name(h.user)), ' ',
              el('span', { className: 'hint ws-reason' },
                `${plural(h.turns, 'turn')} · raised ${hhmm(h.raised_ts)}`))))
            : el('p', { className: 'hint' }, 'No hands raised.'),
          f ? el('div', { className: 'actions' },
            el('button', {
              type: 'button', dataset: { key: 'call-next' }, disabled: !hands.queue.length,
              onclick: () => act('hand.call', {}, 'call the next'),
            }, 'Call next'),
            hands.speaking ? el('button', {
              type: 'button', className: 'secondary', dataset: { key: 'end-turn' },
              onclick: () => act('hand.lower', { user: hands.speaking }, 'end the turn'),
            }, 'End turn') : null,
            el('button', {
              type: 'button', className: 'secondary', dataset: { key: 'lower-all' },
              disabled: !hands.queue.length,
              onclick: () => act('hand.lower', { all: true }, 'lower the hands'),
            }, 'Lower all')) : null);
      },
    };
  }

  // Pulse

  function pulsePart(f) {
    const note = el('p', { className: 'hint ws-pulse-note', role: 'status' });
    const counts = el('p', { className: 'ws-pulse-counts' });
    const buttons = el('div', { className: 'ws-pulse-buttons' }, ...PULSE_KINDS.map((k) => el('button', {
      type: 'button', className: 'secondary', dataset: { key: `pulse-${k}`, pulse: k },
      onclick: async () => {
        if (await act('pulse.send', { kind: k }, 'send that')) {
          note.textContent = `Sent: ${PULSE_TEXT[k].toLowerCase()}. It counts for a minute.`;
        }
      },
    }, el('span', { ariaHidden: 'true' }, `${PULSE_ICON[k]} `), PULSE_TEXT[k])));
    const node = card('pulse', 'Pulse', el('p', { className: 'hint' }, 'How is it going?'), buttons,
      note, f ? counts : null);
    return {
      node,
      draw(state) {
        if (!f) return;
        counts.replaceChildren(el('span', { className: 'hint' }, 'Last minute: '),
          ...PULSE_KINDS.flatMap((k, i) => [i ? ' · ' : '', el('span', { dataset: { count: k } },
            `${PULSE_TEXT[k]} ${state.pulse?.[k] ?? 0}`)]));
      },
    };
  }

  // Timer (facilitators; the countdown itself is in the pane's head)

  function timerPart() {
    const dynamic = el('div', { className: 'actions' });
    const minutes = el('input', { id: 'ws-timer-minutes', type: 'number', min: 0, max: MAX_TIMER_S / 60,
      value: 5, inputMode: 'numeric' });
    const seconds = el('input', { id: 'ws-timer-seconds', type: 'number', min: 0, max: 59, value: 0,
      inputMode: 'numeric' });
    const label = el('input', { id: 'ws-timer-text', maxLength: MAX_WORKSHOP_TITLE, autocomplete: 'off' });
    const form = el('form', { className: 'ws-timer-form' },
      el('div', { className: 'ws-fields' },
        el('div', {}, ...field('Minutes', minutes)),
        el('div', {}, ...field('Seconds', seconds)),
        el('div', { className: 'grow' }, ...field('Label', label, '(optional)'))),
      el('button', { type: 'submit' }, 'Start timer'));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const total = Number(minutes.value || 0) * 60 + Number(seconds.value || 0);
      if (total < 1) return app.notify('A timer runs for at least a second.');
      const d = { seconds: Math.min(total, MAX_TIMER_S) };
      if (label.value.trim()) d.label = label.value.trim();
      if (await act('timer.start', d, 'start the timer')) label.value = '';
    });
    const node = card('timer', 'Timer', form, dynamic);
    return {
      node,
      draw(state) {
        form.hidden = Boolean(state.timer);
        redraw(dynamic, state.timer ? [
          el('button', {
            type: 'button', className: 'secondary', dataset: { key: 'extend-1' },
            onclick: () => act('timer.extend', { seconds: 60 }, 'extend the timer'),
          }, '+1 minute'),
          el('button', {
            type: 'button', className: 'secondary', dataset: { key: 'extend-5' },
            onclick: () => act('timer.extend', { seconds: 300 }, 'extend the timer'),
          }, '+5 minutes'),
          el('button', {
            type: 'button', className: 'secondary', dataset: { key: 'cancel-timer' },
            onclick: () => act('timer.cancel', {}, 'cancel the timer'),
          }, 'Cancel timer'),
        ] : []);
      },
    };
  }

  /** The countdown: once a second while a timer runs. */
  function tick() {
    const timer = ch?.ws?.state?.timer ?? null;
    const box = $('#ws-timer');
    box.hidden = !timer;
    if (!timer) {
      clearInterval(ticker);
      ticker = null;
      return;
    }
    const left = timer.ends_at - (app.client()?.serverNow() ?? Date.now());
    $('#ws-timer-label').textContent = timer.label ?? 'Timer';
    $('#ws-timer-left').textContent = left > 0 ? clock(left) : "Time's up";
    box.classList.toggle('over', left <= 0);
    box.classList.toggle('soon', left > 0 && left <= 60_000);
    box.dataset.endsAt = timer.ends_at;
    ticker ??= setInterval(tick, 250);
  }

  // Polls

  function pollsPart(f) {
    const list = el('div', { className: 'ws-polls' });
    const empty = el('p', { className: 'hint' }, 'No polls yet.');
    const drafts = new Map(); // poll id -> [choices] picked and not yet sent
    const node = card('polls', 'Polls', empty, list, f ? pollForm() : null);

    function pollCard(poll, ws) {
      const voted = ws.mine.ballots[poll.id];
      const picked = drafts.get(poll.id) ?? voted ?? [];
      const total = poll.voters || 0;
      const type = poll.multi ? 'checkbox' : 'radio';
      const options = poll.options.map((text, i) => {
        const count = poll.tallies?.[i] ?? 0;
        const share = total ? Math.round((count / total) * 100) : 0;
        const countId = `ws-poll-${poll.id}-count-${i}`;
        const input = el('input', {
          type, name: `ws-poll-${poll.id}`, value: String(i), checked: picked.includes(i),
          disabled: poll.closed, dataset: { key: `poll-${poll.id}-${i}` },
          onchange: () => {
            const chosen = [...form.querySelectorAll('input:checked')].map((x) => Number(x.value));
            drafts.set(poll.id, chosen);
          },
        });
        input.setAttribute('aria-describedby', countId);
        return el('div', { className: `ws-option${voted?.includes(i) ? ' mine' : ''}` },
          el('label', { className: 'check' }, input, ` ${text}`),
          el('div', { className: 'ws-bar', ariaHidden: 'true' },
            el('span', { className: 'ws-fill', style: `width: ${share}%` })),
          el('span', { id: countId, className: 'ws-count' }, `${plural(count, 'vote')} · ${share}%`));
      });
      const legend = el('legend', { className: 'ws-question-text' }, poll.question);
      const flags = [poll.multi ? 'choose any' : null, poll.anonymous ? 'anonymous' : null,
        poll.closed ? 'closed' : null].filter(Boolean);
      const form = el('form', { className: `ws-poll${poll.closed ? ' closed' : ''}`, dataset: { poll: poll.id } },
        el('fieldset', {}, legend, ...options),
        el('p', { className: 'hint ws-poll-meta' },
          `${plural(total, 'voter')}${flags.length ? ` · ${flags.join(' · ')}` : ''}`),
        voted ? el('p', { className: 'ws-your-vote' },
          `Your vote: ${voted.map((i) => poll.options[i]).join(', ')}`) : null,
        el('div', { className: 'actions' },
          poll.closed ? null : el('button', { type: 'submit', className: 'small', dataset: { key: `vote-${poll.id}` } },
            voted ? 'Change vote' : 'Vote'),
          f && !poll.closed ? el('button', {
            type: 'button', className: 'secondary small', dataset: { key: `close-${poll.id}` },
            onclick: () => act('poll.close', { poll: poll.id }, 'close the poll'),
          }, 'Close poll') : null));
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        const choices = [...form.querySelectorAll('input:checked')].map((x) => Number(x.value));
        if (!choices.length) return app.notify('Pick an option first.');
        const channel = ch;
        const reply = await act('poll.vote', { poll: poll.id, choices }, 'vote');
        if (!reply) return;
        drafts.delete(poll.id);
        channel.ws.mine.ballots[poll.id] = reply.choices ?? choices;
        if (channel === ch) {
          draw();
          say('Your vote is in.');
        }
      });
      return form;
    }

    return {
      node,
      draw(state, ws) {
        empty.hidden = state.polls.length > 0;
        // The newest first; the open ones before the closed.
        const polls = [...state.polls].reverse().sort((a, b) => a.closed - b.closed);
        redraw(list, polls.map((poll) => pollCard(poll, ws)));
      },
    };
  }

  function pollForm() {
    const question = el('textarea', { id: 'ws-poll-question', rows: 2, maxLength: MAX_QUESTION_CHARS });
    const options = el('textarea', { id: 'ws-poll-options', rows: 3 });
    const multi = el('input', { type: 'checkbox', id: 'ws-poll-multi' });
    const anonymous = el('input', { type: 'checkbox', id: 'ws-poll-anonymous' });
    const error = el('p', { className: 'error', role: 'alert' });
    const form = el('form', { className: 'ws-poll-form' },
      el('h4', {}, 'New poll'),
      ...field('Question', question),
      ...field('Options', options, '(one a line, 2 to 10)'),
      el('label', { className: 'check' }, multi, ' Several choices'),
      el('label', { className: 'check' }, anonymous, ' Anonymous'),
      error,
      el('button', { type: 'submit' }, 'Create poll'));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.textContent = '';
      const lines = options.value.split('\n').map((x) => x.trim()).filter(Boolean);
      if (!question.value.trim()) error.textContent = 'A poll needs a question.';
      else if (lines.length < 2 || lines.length > MAX_POLL_OPTIONS) {
        error.textContent = `A poll has 2 to ${MAX_POLL_OPTIONS} options, one a line.`;
      } else if (lines.some((x) => x.length > MAX_OPTION_CHARS)) {
        error.textContent = `An option is at most ${MAX_OPTION_CHARS} characters.`;
      }
      if (error.textContent) return;
      try {
        await app.client().command('poll.create', { channel: ch.id, question: question.value.trim(),
          options: lines, multi: multi.checked, anonymous: anonymous.checked });
        form.reset();
      } catch (err) {
        error.textContent = err.message;
      }
    });
    return form;
  }

  // Questions

  function questionsPart(f) {
    const list = el('ol', { className: 'ws-questions', ariaLabel: 'Questions, most votes first' });
    const empty = el('p', { className: 'hint' }, 'No questions yet.');
    const text = el('textarea', { id: 'ws-ask-text', rows: 2, maxLength: MAX_QUESTION_CHARS });
    const ask = el('form', { className: 'ws-ask' }, ...field('Ask a question', text),
      el('button', { type: 'submit' }, 'Ask'));
    ask.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (!text.value.trim()) return;
      if (await act('question.ask', { text: text.value.trim() }, 'ask')) {
        text.value = '';
        say('Your question is in.');
      }
    });
    text.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        ask.requestSubmit();
      }
    });
    // Answering one question (facilitators): a form of its own under the list.
    let answering = null;
    const answerText = el('textarea', { id: 'ws-answer-text', rows: 2, maxLength: MAX_ANSWER_CHARS });
    const answerOf = el('p', { className: 'hint' });
    const answer = el('form', { className: 'ws-answer', hidden: true }, answerOf,
      ...field('Answer', answerText, '(optional)'),
      el('div', { className: 'actions' }, el('button', { type: 'submit' }, 'Mark answered'),
        el('button', {
          type: 'button', className: 'secondary', onclick: () => {
            const id = answering;
            answering = null;
            answer.hidden = true;
            list.querySelector(`[data-key="answer-${CSS.escape(id ?? '')}"]`)?.focus();
          },
        }, 'Cancel')));
    answer.addEventListener('submit', async (event) => {
      event.preventDefault();
      const d = { question: answering };
      if (answerText.value.trim()) d.text = answerText.value.trim();
      if (await act('question.answer', d, 'answer')) {
        answer.hidden = true;
        answerText.value = '';
        answering = null;
      }
    });
    const node = card('questions', 'Questions', ask, empty, list, f ? answer : null);
    return {
      node,
      draw(state, ws) {
        const shown = state.questions.filter((q) => f || !q.hidden);
        empty.hidden = shown.length > 0;
        const upvoted = new Set(ws.mine.upvoted);
        redraw(list, shown.map((q) => {
          const mineQ = q.by === me();
          const voted = upvoted.has(q.id);
          return el('li', { className: `ws-q${q.hidden ? ' hidden-q' : ''}${q.answered ? ' answered' : ''}`,
            dataset: { question: q.id } },
          el('div', { className: 'ws-q-votes' },
            el('button', {
              type: 'button', className: `ws-upvote${voted ? ' on' : ''}`, dataset: { key: `up-${q.id}` },
              ariaPressed: String(voted), disabled: mineQ || q.hidden,
              ariaLabel: `Upvote: ${q.text.slice(0, 80)}`,
              onclick: () => vote(q, !voted),
            }, '▲'),
            el('span', { className: 'ws-q-count' }, String(q.votes))),
          el('div', { className: 'ws-q-main' },
            el('p', { className: 'ws-q-text' }, q.text),
            el('p', { className: 'hint' },
              q.hidden ? 'hidden' : (q.by ? name(q.by) : ''),
              ` · ${plural(q.votes, 'vote')}`,
              q.answered ? el('span', { className: 'badge answered-mark' }, 'answered') : null),
            q.answer ? el('p', { className: 'ws-q-answer' }, el('strong', {}, 'Answer: '), q.answer) : null,
            el('div', { className: 'actions' },
              f && !q.answered && !q.hidden ? el('button', {
                type: 'button', className: 'secondary small', dataset: { key: `answer-${q.id}` },
                ariaLabel: `Answer: ${q.text.slice(0, 80)}`,
                onclick: () => {
                  answering = q.id;
                  answerOf.textContent = `Answering: ${q.text.slice(0, 200)}`;
                  answer.hidden = false;
                  answerText.focus();
                },
              }, 'Answer') : null,
              (f || mineQ) && !q.hidden ? el('button', {
                type: 'button', className: 'secondary small', dataset: { key: `hide-${q.id}` },
                ariaLabel: `${f ? 'Hide' : 'Withdraw'}: ${q.text.slice(0, 80)}`,
                onclick: () => act('question.hide', { question: q.id }, f ? 'hide it' : 'withdraw it'),
              }, f ? 'Hide' : 'Withdraw') : null)));
        }));
        if (answering && !state.questions.some((q) => q.id === answering && !q.answered)) {
          answering = null;
          answer.hidden = true;
        }
      },
    };
  }

  async function vote(q, up) {
    const channel = ch;
    const reply = await act(up ? 'question.upvote' : 'question.unvote', { question: q.id },
      up ? 'upvote' : 'take the upvote back');
    if (!reply) return;
    const set = new Set(channel.ws.mine.upvoted);
    if (up) set.add(q.id);
    else set.delete(q.id);
    channel.ws.mine.upvoted = [...set];
    if (channel === ch) draw();
  }

  // Breakouts

  function breakoutsPart(f) {
    const dynamic = el('div', { className: 'ws-breakout-body' });
    const reports = el('div', { className: 'ws-reports' });
    const open = f ? breakoutForm() : null;
    const broadcast = f ? broadcastForm() : null;
    const node = card('breakouts', 'Breakouts', dynamic, open?.node, broadcast, reports);
    return {
      node,
      draw(state) {
        const { breakout } = state;
        if (open) {
          open.node.hidden = Boolean(breakout);
          open.draw();
        }
        if (broadcast) broadcast.hidden = !breakout;
        const mine = breakout?.groups.find((g) => g.members.includes(me()));
        const roomButton = (g, key) => el('button', {
          type: 'button', className: 'small', dataset: { key },
          onclick: () => app.openRoom(g.channel),
        }, `Open ${g.name}'s room`);
        redraw(dynamic,
          !breakout ? (f ? null : el('p', { className: 'hint' }, 'No breakouts running.')) : null,
          breakout && mine ? el('div', { className: 'ws-my-group' },
            el('p', {}, `You are in ${mine.name}`,
              mine.members.length > 1
                ? ` with ${listText(mine.members.filter((u) => u !== me()).map(plainName))}.` : '.'),
            roomButton(mine, 'my-room')) : null,
          breakout && !mine && !f ? el('p', { className: 'hint' },
            'Breakouts are running; you are not in a group.') : null,
          breakout && f ? el('ul', { className: 'ws-groups' }, ...breakout.groups.map((g) => el('li', {},
            el('span', { className: 'ws-group-name' }, g.name), ': ',
            el('span', {}, g.members.length ? listText(g.members.map(plainName)) : 'nobody'), ' ',
            roomButton(g, `room-${g.id}`)))) : null,
          breakout && f ? el('button', {
            type: 'button', className: 'secondary', dataset: { key: 'close-breakouts' },
            onclick: () => act('breakout.close', {}, 'close the breakouts'),
          }, 'Close breakouts') : null);
        const names = new Map((breakout?.groups ?? []).map((g) => [g.id, g.name]));
        redraw(reports, state.reports.length ? [
          el('h4', {}, 'Reports'),
          el('ul', { className: 'ws-report-list' }, ...state.reports.map((r) => el('li', {},
            el('strong', {}, names.get(r.group) ?? groupName(r.group)), el('span', { className: 'hint' },
              ` · ${plainName(r.by)}`), el('p', { className: 'ws-report-text' }, r.text)))),
        ] : []);
      },
    };
  }

  /** Group names of closed breakouts: remembered from when they were open (syncRooms). */
  const groupName = (id) => groupNames.get(id) ?? 'A group';

  function breakoutForm() {
    const groups = el('input', { id: 'ws-groups', type: 'number', min: 1, max: MAX_GROUPS, value: 2,
      inputMode: 'numeric' });
    const minutes = el('input', { id: 'ws-breakout-minutes', type: 'number', min: 1,
      max: MAX_BREAKOUT_MINUTES, inputMode: 'numeric' });
    const manual = el('input', { type: 'radio', name: 'ws-assign', value: 'manual' });
    const random = el('input', { type: 'radio', name: 'ws-assign', value: 'random', checked: true });
    const picks = new Map(); // user id -> group index (0-based) or -1
    const table = el('div', { className: 'ws-assign' });
    const error = el('p', { className: 'error', role: 'alert' });
    const node = el('form', { className: 'ws-breakout-form' },
      el('h4', {}, 'Open breakouts'),
      el('div', { className: 'ws-fields' },
        el('div', {}, ...field('Groups', groups)),
        el('div', {}, ...field('Minutes', minutes, '(optional)'))),
      el('fieldset', {}, el('legend', {}, 'Who goes where'),
        el('label', { className: 'check' }, random, ' At random (the attendees)'),
        el('label', { className: 'check' }, manual, ' I choose')),
      table, error,
      el('button', { type: 'submit' }, 'Open breakouts'));
    const count = () => Math.max(1, Math.min(MAX_GROUPS, Number(groups.value) || 1));
    function drawTable() {
      if (!manual.checked) return redraw(table);
      const members = [...(ch?.community.members?.values() ?? [])]
        .filter((m) => !m.bot && m.id !== me())
        .sort((a, b) => a.name.localeCompare(b.name));
      if (!ch?.community.members) app.loadMembers(ch.community.id).then(() => drawTable(), app.report);
      redraw(table, members.map((m) => {
        const id = `ws-pick-${m.id}`;
        const select = el('select', { id, dataset: { key: id }, onchange: () => picks.set(m.id, Number(select.value)) },
          el('option', { value: '-1' }, 'No group'),
          ...Array.from({ length: count() }, (_, i) => el('option', { value: String(i) }, `Group ${i + 1}`)));
        const pick = picks.get(m.id) ?? -1;
        select.value = String(pick < count() ? pick : -1);
        return el('div', { className: 'ws-pick' }, el('label', { htmlFor: id }, m.name), select);
      }));
    }
    groups.addEventListener('input', drawTable);
    manual.addEventListener('change', drawTable);
    random.addEventListener('change', drawTable);
    node.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.textContent = '';
      const d = { groups: count() };
      if (minutes.value) d.minutes = Number(minutes.value);
      if (manual.checked) {
        d.assignment = Array.from({ length: count() }, () => []);
        for (const [user, i] of picks) if (i >= 0 && i < count()) d.assignment[i].push(user);
      }
      try {
        await app.client().command('breakout.open', { channel: ch.id, ...d });
      } catch (err) {
        error.textContent = err.message;
      }
    });
    return { node, draw: drawTable };
  }

  function broadcastForm() {
    const text = el('textarea', { id: 'ws-broadcast-text', rows: 2, maxLength: 4000 });
    const form = el('form', { className: 'ws-broadcast' }, ...field('Message to every group', text),
      el('button', { type: 'submit', className: 'secondary' }, 'Send to all groups'));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (!text.value.trim()) return;
      if (await act('breakout.broadcast', { text: text.value }, 'send it')) {
        text.value = '';
        say('Sent to every group.');
      }
    });
    return form;
  }

  // The head: participation, end

  $('#ws-end').addEventListener('click', () => {
    const channel = ch;
    if (!channel?.ws?.state) return;
    confirmAction({
      title: 'End the workshop?',
      text: 'Open polls close, breakouts and the timer end, and a recap thread is written in this channel.',
      action: 'End workshop',
      async run() {
        const reply = await app.client().command('workshop.end', { channel: channel.id });
        if (reply?.recap) channel.ws.recap = reply.recap;
      },
      returnTo: () => (channel === ch ? heading : null),
    });
  });

  const dialog = $('#participation-dialog');
  async function loadParticipation() {
    const community = ch?.community;
    if (!community) return;
    const tbody = $('#participation-table tbody');
    const error = $('.error', dialog);
    error.textContent = '';
    dialog.setAttribute('aria-busy', 'true');
    try {
      await app.loadMembers(community.id).catch(() => null);
      const reply = await app.client().command('community.participation',
        { community: community.id, sessions: Number($('#participation-count').value) });
      const sessions = reply.sessions ?? [];
      $('#participation-sessions').textContent = sessions.length
        ? `Over ${plural(sessions.length, 'workshop')}: ${sessions.map((s) => s.title).join(', ')}.`
        : 'No workshops yet.';
      const who = (id) => community.members?.get(id)?.name ?? app.userName(id) ?? id;
      tbody.replaceChildren(...(reply.members ?? []).map((m) => el('tr', { dataset: { user: m.user } },
        el('th', { scope: 'row' }, who(m.user)),
        ...['attended', 'messages', 'hands', 'turns', 'votes', 'questions', 'upvotes']
          .map((k) => el('td', {}, String(m[k] ?? 0))))));
      const silent = (reply.silent ?? []).map(who);
      $('#participation-silent').textContent = silent.length ? listText(silent) : 'Nobody.';
    } catch (err) {
      error.textContent = err.message;
    } finally {
      dialog.removeAttribute('aria-busy');
    }
  }
  $('#participation-count').addEventListener('change', loadParticipation);
  $('#ws-participation').addEventListener('click', () => {
    $('#participation-table tbody').replaceChildren();
    $('#participation-silent').textContent = '';
    $('#participation-sessions').textContent = 'Loading…';
    openDialog(dialog, { focus: $('#participation-count') });
    loadParticipation();
  });

  return aroundChat(chat, {
    subscribed,
    event,
    /** The workshop's state of a channel, for the room view: {state, …} or null. */
    stateOf: (channel) => channel?.ws ?? null,
    show(channel) {
      const switched = channel !== ch;
      ch = channel;
      root.hidden = false;
      record(channel);
      if (switched) built = null;
      draw();
    },
    refresh(channel) {
      if (channel !== ch) return false;
      syncRooms(channel); // the viewer's role may have changed: all rooms, or their own
      draw();
      return true;
    },
    /** Another kind of channel is on screen: let go of this one (the chat view stays). */
    hide() {
      ch = null;
      built = null;
      parts = {};
      root.hidden = true;
      body.replaceChildren();
      clearInterval(ticker);
      ticker = null;
    },
  });
}
