"""The terminal driver of ``agora chat`` on Linux and macOS: Textual's, except that
going on after a ``SIGSTOP`` starts no second input thread."""

from __future__ import annotations

import contextlib
import termios
import tty
from typing import Any

from textual.drivers.linux_driver import LinuxDriver


class ChatDriver(LinuxDriver):
    """Textual's ``LinuxDriver`` starts application mode again on every ``SIGCONT``.

    After a ``SIGTSTP`` that is right: its handler ended application mode (and
    its input thread) before stopping. But a ``SIGSTOP`` cannot be caught, so
    application mode goes on through it, and starting it again starts a second
    input thread (and a second writer) beside the first. From then on both
    threads read the terminal, each with its own parser, and hand what they read
    to the app independently: the keys that waited while the process was stopped
    (and any later burst) are shared out between them and can reach the app out
    of order, one line typed ahead becoming parts of two messages.

    Here a ``SIGCONT`` that finds the input thread still reading starts nothing:
    it sets the terminal's modes again (a shell may have changed them while we
    were stopped) and redraws the screen.
    """

    def _sigcont_application(self, *args: Any) -> None:
        if self._key_thread is None or not self._key_thread.is_alive():
            super()._sigcont_application(*args)  # suspended by SIGTSTP, or not started
            return
        # In a signal handler: leave the work to the event loop.
        with contextlib.suppress(RuntimeError):  # the loop has closed: we are ending
            self._loop.call_soon_threadsafe(self._resume_after_stop)

    def _resume_after_stop(self) -> None:
        if self._key_thread is None or not self._key_thread.is_alive():
            return  # application mode ended meanwhile
        with contextlib.suppress(termios.error):
            attrs = termios.tcgetattr(self.fileno)
            attrs[tty.LFLAG] = self._patch_lflag(attrs[tty.LFLAG])
            attrs[tty.IFLAG] = self._patch_iflag(attrs[tty.IFLAG])
            attrs[tty.CC][termios.VMIN] = 1
            termios.tcsetattr(self.fileno, termios.TCSANOW, attrs)
        self.write("\x1b[?25l")  # hide the cursor
        self.write("\x1b[?1004h")  # focus in and out
        self._enable_mouse_support()
        self._enable_bracketed_paste()
        self._disable_line_wrap()
        self.flush()
        self._app.refresh(layout=True)
