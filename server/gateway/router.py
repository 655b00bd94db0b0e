"""Routing of commands to the domain modules that own them.

Each domain module keeps a ``CommandRouter`` of its own with its handlers; the
app includes them all. A handler gets the session and the validated payload
and returns the reply's ``d``, or raises ``ProtocolError`` with the code that
answers the command.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocol import COMMANDS, CloseCode, ErrorCode, ProtocolError

if TYPE_CHECKING:
    from server.gateway.session import Session


class Fatal(ProtocolError):
    """A command error after which the session is closed with ``close_code``."""

    def __init__(self, message: str, *, code: ErrorCode, close_code: CloseCode) -> None:
        super().__init__(message, code=code)
        self.close_code = close_code


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply with work to do right after it is queued (e.g. start live delivery)."""

    d: dict[str, Any]
    then: Callable[[], None]


Handler = Callable[["Session", dict[str, Any]], Awaitable["dict[str, Any] | Reply"]]

#: What a command came to: its reply's ``d`` (or a ``Reply``), or the exception that
#: answers it (a ``ProtocolError``'s code, ``unavailable``, or ``internal`` for any other).
Outcome = dict[str, Any] | Reply | Exception

#: Carries out a run of one command's payloads together, one outcome for each, in order.
BatchHandler = Callable[["Session", list[dict[str, Any]]], Awaitable[list[Outcome]]]


class CommandRouter:
    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        #: op -> the handler of a run of consecutive such commands that arrived together
        self.batch_handlers: dict[str, BatchHandler] = {}

    def command(self, op: str) -> Callable[[Handler], Handler]:
        if op not in COMMANDS:
            raise ValueError(f"'{op}' has no schema in protocol.commands")

        def register(handler: Handler) -> Handler:
            self.handlers[op] = handler
            return handler

        return register

    def batch(self, op: str) -> Callable[[BatchHandler], BatchHandler]:
        """Also carry out runs of ``op`` together (``op`` keeps its one-command handler)."""

        def register(handler: BatchHandler) -> BatchHandler:
            self.batch_handlers[op] = handler
            return handler

        return register

    def include(self, other: CommandRouter) -> None:
        taken = self.handlers.keys() & other.handlers.keys()
        if taken:
            raise ValueError(f"commands routed twice: {sorted(taken)}")
        self.handlers.update(other.handlers)
        self.batch_handlers.update(other.batch_handlers)
