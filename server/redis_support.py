"""What the Redis store and broker share: connection settings and error translation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

from server.errors import Unavailable

#: Seconds to open a connection; an outage should fail commands fast, not hang them.
CONNECT_TIMEOUT = 2.0
#: Seconds a command may take before its connection counts as dead.
COMMAND_TIMEOUT = 5.0


def connection_pool(url: str, *, max_connections: int) -> BlockingConnectionPool:
    """A bounded pool: past ``max_connections`` callers wait (then get ``Unavailable``)."""
    return BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=COMMAND_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        socket_keepalive=True,
        protocol=2,
        # Two quick retries ride out a dropped connection; a real outage fails fast.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
    )


@contextlib.contextmanager
def unavailable_on_errors() -> Iterator[None]:
    """Turn "Redis cannot be reached" into ``Unavailable``; other errors pass through."""
    try:
        yield
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise Unavailable(f"Redis is unavailable: {exc}") from exc
