"""Agora's clients: the async Python client, the bot framework, and (in ``web/``) the browser."""

from clients.bot import Bot, Context
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
    "Bot",
    "Client",
    "CommandError",
    "ConnectionClosed",
    "Context",
    "Event",
    "Gap",
    "login",
    "register",
]
