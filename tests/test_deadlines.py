"""The shared deadline wheel (sessions' identify and heartbeat deadlines), on a real loop."""

from __future__ import annotations

import asyncio

from server.gateway.deadlines import DeadlineWheel, tick_for
from tests.conftest import timeout


async def test_items_are_checked_never_before_their_deadline_and_each_once() -> None:
    loop = asyncio.get_running_loop()
    checked: dict[str, float] = {}
    deadlines: dict[str, float] = {}
    all_checked = asyncio.Event()

    def due(item: str) -> None:
        assert item not in checked
        checked[item] = loop.time()
        if len(checked) == len(deadlines):
            all_checked.set()

    wheel: DeadlineWheel[str] = DeadlineWheel(0.02, due)
    now = loop.time()
    for i in range(30):
        deadlines[f"item{i}"] = now + 0.005 * i
        wheel.add(f"item{i}", deadlines[f"item{i}"])
    async with asyncio.timeout(timeout(5)):
        await all_checked.wait()
    assert all(checked[item] >= deadline for item, deadline in deadlines.items())
    assert len(wheel) == 0


async def test_a_removed_item_is_never_checked() -> None:
    loop = asyncio.get_running_loop()
    checked: list[str] = []
    wheel: DeadlineWheel[str] = DeadlineWheel(0.01, checked.append)
    wheel.add("removed", loop.time() + 0.01)
    wheel.add("kept", loop.time() + 0.03)  # due after the removed one
    wheel.remove("removed")
    async with asyncio.timeout(timeout(5)):
        while not checked:
            await asyncio.sleep(0.01)
    assert checked == ["kept"]


async def test_a_check_that_returns_a_deadline_is_checked_again_then() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    times: list[float] = []
    done = asyncio.Event()

    def due(item: str) -> float | None:
        times.append(loop.time())
        if len(times) == 3:
            done.set()
            return None
        return start + 0.05 * (len(times) + 1)

    wheel: DeadlineWheel[str] = DeadlineWheel(0.01, due)
    wheel.add("session", start + 0.05)
    async with asyncio.timeout(timeout(5)):
        await done.wait()
    assert [t >= start + 0.05 * (i + 1) for i, t in enumerate(times)] == [True, True, True]
    assert len(wheel) == 0


async def test_adding_again_replaces_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    checked: list[float] = []
    wheel: DeadlineWheel[str] = DeadlineWheel(0.01, lambda _: checked.append(loop.time()))
    wheel.add("session", loop.time() + 0.01)
    later = loop.time() + 0.08
    wheel.add("session", later)
    assert len(wheel) == 1
    async with asyncio.timeout(timeout(5)):
        while not checked:
            await asyncio.sleep(0.01)
    assert len(checked) == 1 and checked[0] >= later


async def test_a_failing_check_does_not_stop_the_others() -> None:
    loop = asyncio.get_running_loop()
    checked: list[str] = []

    def due(item: str) -> None:
        if item == "bad":
            raise RuntimeError("a bug in one check")
        checked.append(item)

    wheel: DeadlineWheel[str] = DeadlineWheel(0.01, due)
    wheel.add("bad", loop.time())
    wheel.add("good", loop.time() + 0.02)
    async with asyncio.timeout(timeout(5)):
        while not checked:
            await asyncio.sleep(0.01)
    assert checked == ["good"]


def test_the_tick_is_a_tenth_of_the_timeout_within_bounds() -> None:
    assert tick_for(45.0) == 1.0
    assert tick_for(0.45) == 0.045
    assert tick_for(0.001) == 0.01
