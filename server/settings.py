"""Every operator setting, with its unit and documented default.

Each setting is a command-line option of ``agora serve`` (``--max-frame``)
and an environment variable (``AGORA_MAX_FRAME``); the option wins.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

from protocol import DEFAULT_MAX_FRAME
from protocol.workshop import PULSE_WINDOW_MS


def _setting(default: Any, help: str, *, flag: str | None = None) -> Any:
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = _setting("127.0.0.1", "interface to listen on")
    port: int = _setting(8000, "TCP port to listen on")
    db: str = _setting(
        "agora.db", "path of the SQLite database file (the embedded store; --database wins)"
    )
    database_url: str = _setting(
        "",
        "database URL: postgresql://user@host:port/name (the scaled store) or sqlite:///path",
        flag="--database",
    )
    sqlite_synchronous: str = _setting(
        "normal",
        "SQLite durability: 'normal' survives a crash or kill -9 of the process (after a power"
        " loss every channel gets a new epoch, so clients refetch), 'full' also a power loss"
        " (an fsync per commit; slower, with latency tails on slow disks)",
    )
    redis_url: str = _setting(
        "",
        "Redis URL (redis://host:port/db) of the broker between processes; needs a"
        " PostgreSQL --database",
        flag="--redis",
    )
    workers: int = _setting(
        1, "server processes sharing the port (more than 1 needs PostgreSQL and --redis)"
    )
    presence_timeout_ms: int = _setting(
        30_000,
        "scaled deployment: a process silent this long is taken for dead, and its users'"
        " sessions go offline",
    )
    pulse_window_ms: int = _setting(
        PULSE_WINDOW_MS, "how long a participant's latest workshop pulse counts"
    )
    max_frame: int = _setting(DEFAULT_MAX_FRAME, "largest inbound frame in bytes; larger: 1009")
    rate_limit: int = _setting(
        600, "commands per minute per session (0 = no limit); over it: rate_limited"
    )
    rate_burst: int = _setting(30, "commands a session may send at once before the rate applies")
    flood_limit: int = _setting(
        20, "rate_limited errors in a row after which the session is closed with 4008"
    )
    outbox_limit: int = _setting(
        1024 * 1024, "bytes queued for one session before it is closed with 4010"
    )
    heartbeat_ms: int = _setting(30_000, "heartbeat interval; silence for 1.5x closes with 4009")
    identify_timeout_ms: int = _setting(10_000, "time to identify before the close with 4001")
    close_timeout_ms: int = _setting(
        10_000, "time a closing session has to take its close frame before it is dropped"
    )
    gc_freeze: bool = _setting(
        True,
        "once started, move the start-up heap out of the garbage collector's scans"
        " (gc.freeze): shorter full collections",
    )
    gc_full_threshold: int = _setting(
        100,
        "collections of the garbage collector's middle generation before a full one is"
        " considered (0 = Python's default, 10)",
    )
    replay_cap: int = _setting(1000, "most events a subscribe with since replays")
    request_header_timeout_ms: int = _setting(
        10_000,
        "time a new connection (and each next request on it) has to send its complete request"
        " headers; then it is closed without an answer",
    )
    request_body_timeout_ms: int = _setting(
        30_000, "time a request has to send its complete body once its headers are in"
    )
    max_connections_per_address: int = _setting(
        256,
        "open TCP connections from one client IP address (IPv6: one /64) (0 = no limit); more"
        " are closed as they are accepted",
    )
    max_sessions_per_user: int = _setting(
        50,
        "identified sessions of one account on one server process (0 = no limit); one more"
        " identify is refused with forbidden and close 1008",
    )
    allowed_origins: str = _setting(
        "", "comma-separated browser origins allowed to connect ('' = same origin, '*' = any)"
    )
    public_origin: str = _setting(
        "",
        "the origin browsers reach this server at, e.g. https://agora.example.org; when set, a"
        " browser's WebSocket must name it in Host ('' = no Host check)",
    )
    metrics_address: str = _setting(
        "",
        "HOST:PORT to serve /metrics on instead of the main port ('' = the main port)",
    )
    metrics_token: str = _setting(
        "", "bearer token /metrics requires ('' = none; Authorization: Bearer TOKEN)"
    )
    registration: bool = _setting(True, "whether anyone may register an account")
    token_ttl_days: float = _setting(
        30.0,
        "days a token may go unused before it is refused (0 = never; fractions allowed);"
        " bot tokens never expire by non-use",
    )
    revocation_check_ms: int = _setting(
        5_000,
        "how often each process checks its open sessions' tokens in the store, closing"
        " (4001) those revoked or disabled where no broker message told it (the admin CLI)",
    )
    register_address_limit: int = _setting(
        20,
        "registrations per client address per --register-window-s (0 = no limit); over it: 429",
    )
    register_window_s: int = _setting(3600, "window of --register-address-limit, in seconds")
    login_account_limit: int = _setting(
        10,
        "failed logins per account name per --login-window-s (0 = no limit); over it: 429",
    )
    login_address_limit: int = _setting(
        50,
        "failed logins per client address per --login-window-s (0 = no limit); over it: 429",
    )
    login_window_s: int = _setting(
        900, "window of the failed-login limits, in seconds, from the first failure"
    )
    hash_queue: int = _setting(
        16,
        "logins and registrations that may wait for a password hash; more are answered 503",
    )
    community_name: str = _setting("Agora", "name of the community a fresh database gets")
    server_name: str = _setting("agora", "server name sent in hello")
    shutdown_timeout_ms: int = _setting(
        5_000, "on SIGTERM, time given to in-flight commands before sessions close with 1001"
    )
    log_level: str = _setting("info", "log level: debug, info, warning, error")

    @property
    def postgres(self) -> bool:
        """Whether the store is PostgreSQL (else an SQLite file)."""
        return self.database_url.startswith(("postgresql://", "postgres://"))

    @property
    def sqlite_path(self) -> str:
        """The SQLite file: ``--database sqlite:///path``, else ``--db``."""
        if self.database_url.startswith("sqlite:///"):
            return self.database_url.removeprefix("sqlite:///")
        return self.db

    @property
    def database_description(self) -> str:
        """Which database this is, for the log: never a password."""
        if not self.postgres:
            return f"SQLite database {os.path.abspath(self.sqlite_path)}"
        url = urlsplit(self.database_url)
        host = url.hostname or "localhost (socket)"
        where = f"{host}:{url.port}" if url.port else host
        user = f" as {url.username}" if url.username else ""
        return f"PostgreSQL database {url.path.lstrip('/') or '(default)'} on {where}{user}"

    def check(self) -> None:
        """Raise ``ValueError`` for settings that cannot serve together."""
        if not 0 <= self.token_ttl_days < float("inf"):  # NaN fails too
            raise ValueError("--token-ttl-days must be 0 (never) or a finite number of days")
        if self.revocation_check_ms <= 0:
            raise ValueError("--revocation-check-ms must be more than 0")
        if self.database_url and not (self.postgres or self.database_url.startswith("sqlite:///")):
            raise ValueError("--database must be a postgresql:// or sqlite:/// URL")
        if self.redis_url and not self.postgres:
            raise ValueError(
                "--redis needs --database postgresql://…: processes that share a broker must"
                " share a database, and two processes must not share one SQLite file"
            )
        if self.public_origin and not _is_origin(self.public_origin):
            raise ValueError("--public-origin must be an origin such as https://agora.example.org")
        if self.metrics_address and _host_port(self.metrics_address) is None:
            raise ValueError("--metrics-address must be HOST:PORT, e.g. 127.0.0.1:9100")
        if self.workers > 1 and not (self.postgres and self.redis_url):
            raise ValueError(
                "--workers needs --database postgresql://… and --redis redis://…: the processes"
                " share the database and meet in Redis"
            )

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(
            o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()
        )

    @property
    def public_host(self) -> str | None:
        """The ``Host`` browsers send for ``public_origin`` (its host and port), if set."""
        if not self.public_origin:
            return None
        parts = urlsplit(self.public_origin)
        host = parts.netloc.rsplit("@", 1)[-1].lower()
        default_port = {"http": 80, "https": 443}[parts.scheme]
        return host.removesuffix(f":{default_port}")  # browsers leave a default port out

    @property
    def metrics_listen(self) -> tuple[str, int] | None:
        """Where ``/metrics`` is served apart from the main port, if anywhere."""
        return _host_port(self.metrics_address) if self.metrics_address else None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Settings from ``AGORA_*`` environment variables over the defaults."""
        environ = dict(os.environ) if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f"AGORA_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f.type, raw, f"AGORA_{f.name.upper()}")
        return cls(**values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add one ``--option`` per setting; unset options keep the env or default value."""
        for f in fields(cls):
            default = f.default if f.default is not MISSING else None
            flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
            help_text = f"{f.metadata['help']} (default {default!r}, env AGORA_{f.name.upper()})"
            if f.type == "bool":
                parser.add_argument(
                    flag,
                    dest=f.name,
                    default=None,
                    action=argparse.BooleanOptionalAction,
                    help=help_text,
                )
            else:
                parser.add_argument(
                    flag, dest=f.name, default=None, type=_TYPES[f.type], help=help_text
                )

    def to_env(self) -> dict[str, str]:
        """These settings as ``AGORA_*`` environment variables (for worker processes)."""
        return {f"AGORA_{f.name.upper()}": _format(getattr(self, f.name)) for f in fields(self)}

    def with_arguments(self, args: argparse.Namespace) -> Settings:
        given = {
            f.name: getattr(args, f.name)
            for f in fields(self)
            if getattr(args, f.name, None) is not None
        }
        return replace(self, **given)


_TYPES = {"int": int, "float": float, "str": str}


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse(kind: str, raw: str, name: str) -> Any:
    if kind == "bool":
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"{name} must be true or false, got {raw!r}")
    try:
        return _TYPES[kind](raw)
    except ValueError:
        raise ValueError(f"{name} must be {kind}, got {raw!r}") from None


def _is_origin(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.path in ("", "/")


def _host_port(value: str) -> tuple[str, int] | None:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)
