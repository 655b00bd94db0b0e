"""The lazily allocated event and queue that connections use instead of asyncio's."""

from __future__ import annotations

import asyncio
import contextlib

from server.waiting import LazyEvent, LazyQueue
from tests.conftest import timeout


async def test_an_event_wakes_every_waiter_when_set_and_returns_at_once_while_set() -> None:
    event = LazyEvent()
    assert not event.is_set()
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)  # let them wait
    assert not any(w.done() for w in waiters)
    event.set()
    async with asyncio.timeout(timeout(2)):
        assert await asyncio.gather(*waiters) == [True, True, True]
    assert event.is_set()
    assert await event.wait() is True
    event.clear()
    assert not event.is_set()


async def test_a_cancelled_event_waiter_is_forgotten() -> None:
    event = LazyEvent()
    waiter = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    assert event._waiters == []
    event.set()  # nothing to wake, nothing fails


async def test_a_queue_hands_items_out_in_order_to_a_waiting_getter() -> None:
    queue: LazyQueue[int] = LazyQueue()
    assert queue.empty() and queue.qsize() == 0
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait(1)
    queue.put_nowait(2)
    async with asyncio.timeout(timeout(2)):
        assert await getter == 1
        assert queue.qsize() == 1
        assert await queue.get() == 2
    assert queue.empty()


async def test_an_item_for_a_cancelled_getter_goes_to_the_next_one() -> None:
    queue: LazyQueue[str] = LazyQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("item")  # wakes the first getter
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    async with asyncio.timeout(timeout(2)):
        assert await second == "item"
