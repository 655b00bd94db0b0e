"""Agora's clients: the async Python client (and, in ``web/``, the browser client)."""

from clients.client import (
    AgoraClientError,
    Client,
    CommandError,
    ConnectionClosed,
    Event,
    Gap,
    login,
    register,
)

__all__ = [
    "AgoraClientError",
    "Client",
    "CommandError",
    "ConnectionClosed",
    "Event",
    "Gap",
    "login",
    "register",
]
