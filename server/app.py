"""The application: ``create_app(settings)`` wires store, broker, hub and routes.

An app factory rather than module globals, so that tests and benchmarks can
run several servers in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from protocol import CloseCode, event
from server.backends import broker_from, live_from, store_from
from server.broker import Broker
from server.collector import freeze_startup_heap, set_full_threshold
from server.discussions import (
    dms,
    pins,
    reactions,
    reads,
    resources,
    search,
    threads,
    typing_indicators,
)
from server.domain import (
    accounts,
    audit,
    bots,
    channels,
    communities,
    invites,
    messages,
    moderation,
    presence,
    tokens,
)
from server.domain.accounts import Accounts
from server.domain.setup import FirstOwner
from server.domain.throttle import Throttle
from server.errors import Unavailable
from server.gateway import session as gateway_session
from server.gateway.deadlines import DeadlineWheel, tick_for
from server.gateway.endpoint import Gateway
from server.gateway.hub import Hub
from server.gateway.router import CommandRouter
from server.gateway.session import Session, heartbeat_window
from server.http_surface import HttpSurface, on_port
from server.live import LiveState
from server.metrics import CONTENT_TYPE_LATEST, Metrics
from server.settings import Settings
from server.store import Appended, Publishable, Store
from server.workshops import breakouts, hands, polls, questions, recap, running, timers
from server.workshops.live import LiveWorkshops

log = logging.getLogger("agora")

#: The domain modules whose commands the gateway routes.
DOMAIN = (
    gateway_session,
    accounts,
    audit,
    channels,
    communities,
    dms,
    invites,
    messages,
    moderation,
    pins,
    presence,
    reactions,
    reads,
    resources,
    search,
    threads,
    typing_indicators,
    running,
    timers,
    hands,
    polls,
    questions,
    breakouts,
    recap,
)

WEB_CLIENT = Path(__file__).resolve().parent.parent / "clients" / "web"


class Agora:
    """One server's services, shared by its routes and sessions."""

    def __init__(self, settings: Settings, store: Store, broker: Broker, live: LiveState) -> None:
        self.settings = settings
        self.store = store
        self.broker = broker
        self.metrics = Metrics()
        self.hub = Hub(store, broker, self.metrics)
        self.accounts = Accounts(
            store,
            registration=settings.registration,
            hash_queue=settings.hash_queue,
            token_ttl_days=settings.token_ttl_days,
        )
        self.throttle = Throttle(live, settings)
        self.first_owner = FirstOwner(store, settings.host)
        self.router = CommandRouter()
        for domain in DOMAIN:
            self.router.include(domain.router)
        self.live = live
        self.sessions: set[Session] = set()
        #: every session's identify and heartbeat deadlines, swept once a tick (not a timer each)
        self.identify_deadlines: DeadlineWheel[Session] = DeadlineWheel(
            tick_for(settings.identify_timeout_ms / 1000), Session.check_identified
        )
        self.heartbeat_deadlines: DeadlineWheel[Session] = DeadlineWheel(
            tick_for(heartbeat_window(settings.heartbeat_ms)), Session.check_heartbeat
        )
        #: user id -> this process's identified sessions of that user
        self.user_sessions: dict[str, set[Session]] = {}
        self.hub.on_topic_event = self._on_topic_event
        self.metrics.open_outboxes = lambda: (s.outbox for s in self.sessions)
        self.draining = False
        #: threads whose parent hears ``thread.updated`` soon (see ``discussions.threads``)
        self.pending_thread_updates: set[str] = set()
        #: (user, channel) -> when this node last forwarded their ``typing.started``
        self.typing_forwarded: dict[tuple[str, str], float] = {}
        self.token_watch = tokens.TokenWatch(self)
        self.revocations = tokens.RecentRevocations()
        self.workshops = LiveWorkshops(self)
        self.workshops.on_due = lambda channel: timers.due(self, channel)
        self.workshops.on_unwritten_recap = lambda row: recap.write_recap(self, row)
        store.on_epochs_rotated = self._epochs_rotated

    async def start(self) -> None:
        await self.store.open()
        log.info("opened the %s", self.settings.database_description)
        await self.first_owner.start()
        await self.hub.start()
        await self.hub.serve(tokens.REVOCATIONS, lambda frame: tokens.on_revocation(self, frame))
        self.token_watch.start()
        await self.live.start(lambda user, status: presence.changed(self, user, status))
        self.workshops.start()

    async def stop(self) -> None:
        await self.drain()
        self.identify_deadlines.stop()
        self.heartbeat_deadlines.stop()
        await self.token_watch.stop()
        await self.workshops.stop()
        await self.live.stop()
        await self.hub.stop()
        await self.store.close()

    async def publish(
        self,
        channel: str,
        t: str,
        d: dict[str, Any],
        *,
        idempotency: tuple[str, str] | None = None,
    ) -> Appended:
        """Store a durable event, then publish it: the one path every event takes."""
        stored = await self.store.append(channel, t, d, idempotency=idempotency)
        # A retry (created=False) publishes again: the first attempt may have
        # been stored but not published. Feeds drop offsets they delivered.
        await self.broker.publish(channel, stored.frame)
        if stored.created:
            self.metrics.events_published.inc()
        return stored

    async def publish_many(self, events: list[Publishable]) -> list[Appended | Exception]:
        """``publish`` each event, in order, storing them in one transaction; each one's
        outcome in its place (see ``Store.append_many``)."""
        stored = await self.store.append_many(events)
        outcomes: list[Appended | Exception] = []
        for e, appended in zip(events, stored, strict=True):
            if isinstance(appended, Appended):
                try:
                    await self.broker.publish(e.channel_id, appended.frame)
                except Exception as exc:
                    outcomes.append(exc)
                    continue
                if appended.created:
                    self.metrics.events_published.inc()
            outcomes.append(appended)
        return outcomes

    def _epochs_rotated(self) -> None:
        """The store may have lost commits and gave every channel a new epoch: every
        session resubscribes (its feeds' offsets may name lost events), so close them all."""
        log.warning("closing %d sessions: every channel has a new epoch", len(self.sessions))
        for session in list(self.sessions):
            session.close(CloseCode.SERVICE_RESTART, "store restarted", flush=False)
            session.leave_all()

    def _on_topic_event(self, topic: str, event: dict[str, Any]) -> None:
        communities.on_topic_event(self, topic, event)
        threads.on_topic_event(self, topic, event)

    async def publish_ephemeral(self, topic: str, t: str, ch: str, d: dict[str, Any]) -> None:
        """Publish an event that is not stored (no offset) to a topic's listeners."""
        await self.broker.publish(topic, msgpack.packb(event(t, ch, d), use_bin_type=True))

    def identified(self, session: Session) -> None:
        assert session.user is not None
        self.user_sessions.setdefault(session.user.id, set()).add(session)

    async def closed(self, session: Session) -> None:
        """A session ended: forget it, and tell the others if its user went offline."""
        if session.user is None:
            return
        sessions = self.user_sessions.get(session.user.id)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self.user_sessions[session.user.id]
        await presence.session_ended(session)

    async def drain(self) -> None:
        """Close every session with 1001 once its in-flight command is answered."""
        if self.draining:
            return
        self.draining = True
        for session in list(self.sessions):
            session.drain()
        deadline = asyncio.get_running_loop().time() + self.settings.shutdown_timeout_ms / 1000
        while self.sessions and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)


class AgoraApp(Starlette):
    """Starlette, with the gateway reached before the middleware stack, and the HTTP
    surface's rules around all of it.

    Starlette's exception middleware wraps ``send`` for every WebSocket frame;
    the gateway handles its own errors and needs the server's own ``send``.
    ``HttpSurface`` wraps Starlette whole, so that even the plain 500 of its
    outermost error middleware carries the security headers.
    """

    def __init__(self, gateway: Gateway, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gateway = gateway
        listen = gateway.agora.settings.metrics_listen
        #: the socket that serves /metrics alone (``metrics_address``), if any
        self.metrics_port = None if listen is None else listen[1]
        self.surface = HttpSurface(super().__call__, gateway.agora.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and on_port(scope, self.metrics_port):
            await receive()  # websocket.connect
            await send({"type": "websocket.close"})  # before accept: HTTP 403
            return
        if scope["type"] == "websocket" and scope["path"] == "/gateway":
            scope["app"] = self
            await self.gateway(scope, receive, send)
        else:
            await self.surface(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    broker: Broker | None = None,
) -> Starlette:
    settings = settings or Settings.from_env()
    agora = Agora(
        settings,
        store or store_from(settings),
        broker or broker_from(settings),
        live_from(settings),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await agora.start()
        set_full_threshold(settings.gc_full_threshold)
        if settings.gc_freeze:
            freeze_startup_heap()
        agora.metrics.gc_pauses.start()
        try:
            yield
        finally:
            agora.metrics.gc_pauses.stop()
            await agora.stop()

    async def healthz(request: Request) -> Response:
        try:
            await asyncio.wait_for(agora.store.check(), timeout=2)
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def unavailable(request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {"error": {"code": "unavailable", "message": "the server's storage is unavailable"}},
            status_code=503,
            headers={"retry-after": "1"},
        )

    async def client_gone(request: Request, exc: Exception) -> None:
        # The client left before its body was read: no one to answer, nothing broke.
        log.info(
            "%s %s: the client disconnected before sending its whole body",
            request.method,
            request.url.path,
        )

    async def web_client_page(request: Request) -> Response:
        # The web client's own URLs (an invite link): the page reads its path itself.
        return FileResponse(WEB_CLIENT / "index.html")

    async def metrics(request: Request) -> Response:
        return Response(agora.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app = AgoraApp(
        Gateway(agora),
        routes=[
            Route("/api/v1/auth/register", accounts.register, methods=["POST"]),
            Route("/api/v1/auth/login", accounts.login, methods=["POST"]),
            Route("/api/v1/auth/logout", tokens.logout, methods=["POST"]),
            Route("/api/v1/auth/password", tokens.change_password, methods=["POST"]),
            Route("/api/v1/auth/sessions", tokens.sessions, methods=["GET"]),
            Route("/api/v1/auth/sessions", tokens.revoke_others, methods=["DELETE"]),
            Route("/api/v1/auth/sessions/{session_id}", tokens.revoke, methods=["DELETE"]),
            Route("/api/v1/bots", bots.create, methods=["POST"]),
            Route("/api/v1/bots", bots.list_mine, methods=["GET"]),
            Route("/api/v1/bots/{bot_id}/tokens", bots.new_token, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Route("/invite/{code}", web_client_page),
            Mount("/", StaticFiles(directory=WEB_CLIENT, html=True)),
        ],
        lifespan=lifespan,
        exception_handlers={Unavailable: unavailable, ClientDisconnect: client_gone},
    )
    app.state.agora = agora
    return app
