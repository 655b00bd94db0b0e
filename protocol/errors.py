"""The protocol's exception tree.

::

    ProtocolError             any failure a frame can cause; carries an ErrorCode
    ├── FrameError            bad_frame: not decodable, not a map, wrong message kind
    └── RequestError          bad_request (or too_large): unknown op, missing or
                              mistyped field, a value out of range

Decoding and validation raise nothing else, for any input. A server turns a
``ProtocolError`` into an ``error`` frame (see :func:`protocol.frames.error_from`);
the session stays open.

An error message that shows a string the client sent shows it through
:func:`echo`, so that encoding the error cannot fail.
"""

from __future__ import annotations

from protocol.codes import ErrorCode


class ProtocolError(Exception):
    """A frame or command that cannot be served, with the code to answer it with.

    ``command_id`` is the command's ``id`` when the frame had a usable one, so
    that the ``error`` frame can echo it.
    """

    code: ErrorCode = ErrorCode.BAD_REQUEST

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        command_id: int | None = None,
        retry_after_ms: int | None = None,
        permission: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.command_id = command_id
        self.retry_after_ms = retry_after_ms
        #: the permission a ``forbidden`` error lacks
        self.permission = permission


class FrameError(ProtocolError):
    """The bytes are not a frame: undecodable, not a map, or the wrong message kind."""

    code = ErrorCode.BAD_FRAME


class RequestError(ProtocolError):
    """The frame is a map but not a valid command: unknown op, missing or mistyped field."""

    code = ErrorCode.BAD_REQUEST


#: Most characters of a client's string that an error message shows.
ECHO_CHARS = 64


def echo(value: str, limit: int | None = ECHO_CHARS) -> str:
    """A string the client sent, as an error message may show it.

    At most ``limit`` characters (``None``: all of them). A character that UTF-8
    cannot carry (a lone surrogate, which a JSON escape such as ``"\\ud800"`` can
    smuggle in) becomes a backslash escape, so the result encodes in msgpack and
    JSON alike and an error built from it can always be sent.
    """
    if limit is not None:
        value = value[:limit]
    if value.isascii():
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")
