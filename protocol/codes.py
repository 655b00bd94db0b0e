"""Error codes and close codes of wire protocol v1, as named constants.

Close codes are grouped by what the client should do next:

- reconnect and resume: ``GOING_AWAY``, ``SERVICE_RESTART``, ``HEARTBEAT_TIMEOUT``,
  ``TOO_SLOW``;
- back off, then reconnect: ``FLOODING``;
- re-authenticate: ``NOT_AUTHENTICATED``;
- stop (the client itself must change): ``POLICY_VIOLATION``, ``FRAME_TOO_LARGE``,
  ``UNSUPPORTED``.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """The ``code`` of an ``error`` frame."""

    BAD_FRAME = "bad_frame"  # not decodable, not a map, wrong message kind
    BAD_REQUEST = "bad_request"  # unknown op, missing or mistyped field
    UNAUTHORIZED = "unauthorized"  # a command before identify
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"  # carries retry_after_ms
    TOO_LARGE = "too_large"  # a field over its documented size
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"  # the store or broker cannot be reached; carries retry_after_ms


class CloseCode(IntEnum):
    """WebSocket close codes the server uses."""

    NORMAL = 1000
    GOING_AWAY = 1001
    SERVICE_RESTART = 1012
    POLICY_VIOLATION = 1008
    FRAME_TOO_LARGE = 1009
    NOT_AUTHENTICATED = 4001
    UNSUPPORTED = 4002
    FLOODING = 4008
    HEARTBEAT_TIMEOUT = 4009
    TOO_SLOW = 4010


class AuthCloseReason(StrEnum):
    """The reason strings of a 4001 close (``NOT_AUTHENTICATED``): why the session has no
    usable token. Each one asks the client to get a new token (log in again)."""

    BAD_TOKEN = "bad token"  # identify with an unknown or wrong token
    NOT_IDENTIFIED = "not identified in time"
    TOKEN_EXPIRED = "token expired"  # identify with a token unused for token_ttl_days
    ACCOUNT_DISABLED = "account disabled"  # by an operator (agora user disable)
    LOGGED_OUT = "logged out"  # POST /api/v1/auth/logout with this session's token
    TOKEN_REVOKED = "token revoked"  # the user revoked this session (or it is gone)
    PASSWORD_CHANGED = "password changed"  # the user changed the password elsewhere


#: Close codes after which a client should reconnect and resume on its own.
RECONNECTABLE: frozenset[int] = frozenset(
    {
        CloseCode.GOING_AWAY,
        CloseCode.FLOODING,
        CloseCode.HEARTBEAT_TIMEOUT,
        CloseCode.TOO_SLOW,
        1006,  # abnormal closure: the connection dropped without a close frame
        1011,  # server error
        CloseCode.SERVICE_RESTART,
    }
)
