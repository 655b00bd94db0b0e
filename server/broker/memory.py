"""The in-process Broker of the embedded deployment: a direct call, no copy."""

from __future__ import annotations

from server.broker.base import OnMessage, OnResume


class MemoryBroker:
    def __init__(self) -> None:
        self._on_message: OnMessage | None = None
        self._channels: set[str] = set()

    async def start(self, on_message: OnMessage, on_resume: OnResume) -> None:
        # never disconnects, so never resumes
        self._on_message = on_message

    async def stop(self) -> None:
        self._on_message = None
        self._channels.clear()

    async def publish(self, channel: str, frame: bytes) -> None:
        if self._on_message is not None and channel in self._channels:
            self._on_message(channel, frame)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
