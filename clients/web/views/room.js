// views/room.js — a breakout room: the channel of kind `breakout` of one group
// of a workshop's open breakout (docs/protocol.md §5.10). `identify` does not
// list it: the shell adds it to the sidebar while the breakout is open, from
// the workshop's state (app.setRooms). It is drawn like a text channel by the
// chat view, under a bar with the group's name, a way back to the workshop and
// the "Report back" box (`breakout.report`).

import { $ } from '../dom.js';
import { MAX_REPORT_CHARS } from '../workshop_state.js';
import { aroundChat } from './chat.js';

export function createRoomView(app, chat) {
  const bar = $('#room-bar');
  const form = $('#room-report');
  const text = $('#room-report-text');
  const note = $('#room-note');
  let ch = null;

  function drawBar() {
    if (!ch) return;
    const parent = app.channels.get(ch.parent);
    const title = parent?.ws?.state?.title;
    $('#room-name').textContent = ch.name;
    $('#room-of').textContent = parent
      ? `· breakout of #${parent.name}${title ? `, ${title}` : ''}` : '· breakout room';
    $('#room-back').hidden = !parent;
  }

  $('#room-back').addEventListener('click', () => {
    if (ch?.parent) app.select(ch.parent, { focus: true });
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = text.value.trim();
    if (!ch || !value) return;
    if (value.length > MAX_REPORT_CHARS) {
      note.textContent = `A report is at most ${MAX_REPORT_CHARS} characters.`;
      return;
    }
    note.textContent = '';
    try {
      await app.client().command('breakout.report', { channel: ch.id, text: value });
      text.value = '';
      note.textContent = 'Report sent to the workshop.';
    } catch (err) {
      note.textContent = `Could not send the report: ${err.message}`;
    }
  });

  return aroundChat(chat, {
    show(channel) {
      if (channel !== ch) note.textContent = '';
      ch = channel;
      bar.hidden = false;
      drawBar();
    },
    refresh(channel) {
      if (channel !== ch) return false;
      drawBar();
      return true;
    },
    hide() {
      ch = null;
      bar.hidden = true;
    },
  });
}
