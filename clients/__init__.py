"""Agora's clients: the async Python client, the bot framework, and (in ``web/``) the browser."""

from clients.bot import Bot, Context
from clients.client import (
    AgoraClientError,
    Client,
    CommandError,
    ConnectionClosed,
    Event,
    Gap,
    change_password,
    login,
    logout,
    register,
    revoke_other_sessions,
    revoke_session,
    sessions,
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
    "change_password",
    "login",
    "logout",
    "register",
    "revoke_other_sessions",
    "revoke_session",
    "sessions",
]
