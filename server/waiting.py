"""An event and a queue for asyncio whose waiters are allocated on first wait.

``asyncio.Event`` and ``asyncio.Queue`` make their ``collections.deque``s of
waiters (and the queue its items) when created, and an empty deque holds a
block of 64 slots: 760 bytes. A connection had six of them, waiting on none
most of its life: 4.5 KiB of its 27. These keep a list, made the first time
someone waits (or something is queued), and behave as asyncio's do for the
calls Agora and uvicorn make. Neither is thread-safe (neither is asyncio's).
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class LazyEvent:
    """``asyncio.Event``: ``set``, ``clear``, ``is_set``, ``wait``."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if self._value:
            return
        self._value = True
        if self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(True)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        """Return True once the event is set (at once if it is)."""
        if self._value:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            self._waiters.remove(waiter)


class LazyQueue(Generic[T]):
    """An unbounded ``asyncio.Queue``: ``put_nowait``, ``get``, ``empty``, ``qsize``.

    Items are taken from the front of a list: the queues it serves hold a few
    items at most (uvicorn pauses reading while one message waits).
    """

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[T] | None = None
        self._getters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: T) -> None:
        if self._items is None:
            self._items = []
        self._items.append(item)
        if self._getters:
            for getter in self._getters:
                if not getter.done():
                    getter.set_result(None)
                    break

    async def get(self) -> T:
        """The first item, once there is one."""
        while not self._items:
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                # Woken, then cancelled: hand the item on to the next getter, as asyncio does.
                self._getters.remove(getter)
                if self._items and getter.done() and not getter.cancelled():
                    self._wake_next()
                raise
            else:
                self._getters.remove(getter)
        return self._items.pop(0)

    def _wake_next(self) -> None:
        for getter in self._getters or ():
            if not getter.done():
                getter.set_result(None)
                return
