"""The Broker interface: carries stored events to every process that wants them.

What a Broker promises:

- It carries frames the Store already holds (stored before published), as the
  exact bytes given to ``publish`` (msgpack event frames), so no process
  re-encodes them.
- After ``subscribe(channel)`` returns, frames published to that channel
  anywhere reach ``on_message`` in this process until ``unsubscribe``.
- Delivery is at most once and best effort: a frame may be lost (a dropped
  connection) or arrive after a later one (two publishers). The Hub detects
  both by offset and repairs them from the Store, so a Broker never needs to
  buffer or retry.
- ``on_message`` is called on the event loop, never concurrently with itself.
- When a broker loses its connection it reconnects on its own (with backoff)
  and resubscribes; once every subscription is back it calls ``on_resume``,
  because frames published meanwhile were lost: the Hub then reads them from
  the Store. While disconnected, ``publish`` and ``subscribe`` raise
  ``Unavailable``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

#: What a Broker calls for each frame it receives: (channel id, msgpack frame).
OnMessage = Callable[[str, bytes], None]
#: What a Broker calls after it reconnected and resubscribed.
OnResume = Callable[[], None]


class Broker(Protocol):
    async def start(self, on_message: OnMessage, on_resume: OnResume) -> None:
        """Connect; from now on received frames go to ``on_message``.

        Raises ``Unavailable`` if the first connection fails.
        """

    async def stop(self) -> None: ...

    async def publish(self, channel: str, frame: bytes) -> None:
        """Send a stored event's frame to every subscribed process, this one included."""

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...
