"""Agora wire protocol v1, sans I/O: frames, codecs, validation, codes.

Both the server and the clients import this package, so they can never
disagree about a frame's shape. It does no I/O and imports nothing from
``server`` or ``clients``.
"""

from protocol.codec import DEFAULT_MAX_FRAME, Encoding, Wire, decode, encode, transcode
from protocol.codes import RECONNECTABLE, AuthCloseReason, CloseCode, ErrorCode
from protocol.commands import COMMANDS
from protocol.errors import FrameError, ProtocolError, RequestError, echo
from protocol.frames import (
    COMMUNITY_EVENTS,
    NOT_TO_SELF,
    PROTOCOL_VERSION,
    USER_EVENTS,
    Command,
    error,
    error_from,
    event,
    hello,
    parse_command,
    reply,
)

__all__ = [
    "COMMANDS",
    "COMMUNITY_EVENTS",
    "DEFAULT_MAX_FRAME",
    "NOT_TO_SELF",
    "PROTOCOL_VERSION",
    "RECONNECTABLE",
    "USER_EVENTS",
    "AuthCloseReason",
    "CloseCode",
    "Command",
    "Encoding",
    "ErrorCode",
    "FrameError",
    "ProtocolError",
    "RequestError",
    "Wire",
    "decode",
    "echo",
    "encode",
    "error",
    "error_from",
    "event",
    "hello",
    "parse_command",
    "reply",
    "transcode",
]
