"""The HTTP API (aiohttp): one route per registered command and query, generated from the
handler registry; errors as RFC 7807 problem details; the OpenAPI document and its docs page.

    POST /api/command/{name}         JSON body -> {"result", "workflow_id", "events"}
    GET  /api/query/{name}?field=..  -> {"result"}
    POST /api/query/{name}           JSON body -> {"result"}
    GET  /openapi.json, /docs, /asyncapi.json, /healthz

A command continues a workflow when it names one in a field (``acceptInvitation`` carries
``invitation_id``) or when the request has a ``Workflow-Id`` header.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import msgspec
from aiohttp import web

from svrnty_events import EventStreamingHost
from svrnty_events.asyncapi import asyncapi_document, listening_servers

from . import __version__
from .domain import STREAM_EVENT_TYPES
from .openapi import PROBLEM_TYPES, WORKFLOW_ID_HEADER, EventInfo, ProblemDetails, openapi_document
from .operations import problem_for, run_command, run_query

log = logging.getLogger("svrnty_sample.http")

PROBLEM_JSON = "application/problem+json"
HOST_KEY = web.AppKey("host", EventStreamingHost)
OPENAPI_KEY = web.AppKey("openapi", bytes)
#: the AsyncAPI document, encoded, by the local address it was asked on
ASYNCAPI_KEY = web.AppKey("asyncapi", dict)

_encoder = msgspec.json.Encoder()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: the sample's OpenAPI links: the result of one command is a field of another
OPERATION_LINKS = [
    ("inviteUser", "acceptInvitation", "invitation_id"),
    ("inviteUser", "declineInvitation", "invitation_id"),
    ("inviteUser", "expireInvitation", "invitation_id"),
    ("addUser", "removeUser", "user_id"),
]


def build_app(host: EventStreamingHost) -> web.Application:
    app = web.Application(middlewares=[problem_middleware])
    app[HOST_KEY] = host
    app[OPENAPI_KEY] = _encoder.encode(openapi_document(
        host.handlers, title="svrnty-events sample", version=__version__,
        description="Commands and queries of the svrnty-events sample host, generated from its "
                    "handlers. Every command runs in a workflow whose id is the correlation id "
                    "of the events it emits.",
        links=[(source, target, field) for source, target, field in OPERATION_LINKS
               if source in host.handlers.commands and target in host.handlers.commands]))
    for name in host.handlers.commands:
        app.router.add_post(f"/api/command/{name}", _command_view(name))
    for name in host.handlers.queries:
        view = _query_view(name)
        app.router.add_get(f"/api/query/{name}", view)
        app.router.add_post(f"/api/query/{name}", view)
    # names without a handler: a 404 problem that lists the ones there are
    app.router.add_route("*", "/api/command/{name}", _unknown_view("command"))
    app.router.add_route("*", "/api/query/{name}", _unknown_view("query"))
    app[ASYNCAPI_KEY] = {}
    app.router.add_get("/openapi.json", openapi_view)
    app.router.add_get("/asyncapi.json", asyncapi_view)
    app.router.add_get("/docs", docs_view)
    app.router.add_get("/healthz", health_view)
    app.router.add_get("/", index_view)
    return app


# --- views --------------------------------------------------------------------------------------


def _command_view(name: str) -> Handler:
    async def view(request: web.Request) -> web.Response:
        host = request.app[HOST_KEY]
        result = await run_command(host, name, await request.read(),
                                   request.headers.get(WORKFLOW_ID_HEADER) or None)
        body = {"result": result.value, "workflow_id": result.workflow_id,
                "events": [EventInfo(e.id, e.type, e.stream, e.sequence, e.correlation_id)
                           for e in result.events]}
        headers = {WORKFLOW_ID_HEADER: result.workflow_id} if result.workflow_id else None
        return _json(body, headers=headers)
    return view


def _query_view(name: str) -> Handler:
    async def view(request: web.Request) -> web.Response:
        host = request.app[HOST_KEY]
        payload: Any = await request.read() if request.method == "POST" \
            else dict(request.query)
        return _json({"result": await run_query(host, name, payload)})
    return view


def _unknown_view(kind: str) -> Handler:
    async def view(request: web.Request) -> web.Response:
        host = request.app[HOST_KEY]
        table = host.handlers.commands if kind == "command" else host.handlers.queries
        methods = ["POST"] if kind == "command" else ["GET", "POST"]
        name = request.match_info["name"]
        if name in table:
            # RFC 9110 section 10.2.1: Allow is a comma-separated list of methods
            return _problem(ProblemDetails(
                "about:blank", "Method not allowed", 405,
                f"{kind} {name} takes {' or '.join(methods)}", request.path),
                {"Allow": ", ".join(methods)})
        return _problem(ProblemDetails(
            PROBLEM_TYPES["unknown_operation"], f"Unknown {kind}", 404,
            f'unknown {kind} "{name}"; available: {", ".join(sorted(table))}', request.path))
    return view


async def index_view(request: web.Request) -> web.Response:
    raise web.HTTPFound("/docs")


async def openapi_view(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_KEY], content_type="application/json")


async def asyncapi_view(request: web.Request) -> web.Response:
    # the servers are the addresses the host bound: this connection's local one for HTTP
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    address = (f"[{sockname[0]}]:{sockname[1]}" if ":" in sockname[0]
               else f"{sockname[0]}:{sockname[1]}") if sockname else request.host
    cache = request.app[ASYNCAPI_KEY]
    if address not in cache:
        cache[address] = _encoder.encode(asyncapi_for(request.app[HOST_KEY], address))
    return web.Response(body=cache[address], content_type="application/json")


def asyncapi_for(host: EventStreamingHost, http_address: str) -> dict[str, Any]:
    """The AsyncAPI document of the running sample: its streams, subscriptions and event types,
    and as servers the gRPC EventService and the SSE / WebSocket routes on this HTTP port."""
    servers: dict[str, dict[str, Any]] = {}
    grpc = host.providers.get("grpc")
    for endpoint in grpc.endpoints() if grpc is not None else ():
        scheme, _, address = endpoint.partition("://")
        servers.update(listening_servers("grpc", address, tls=scheme == "grpcs"))
    servers.update(listening_servers("web", http_address))
    return asyncapi_document(
        host, title="svrnty-events sample", version=__version__,
        description="The streams and subscriptions of the svrnty-events sample host: users and "
                    "invitations as workflows, whose ids are the correlation ids of their "
                    "events. Commands are over HTTP (/openapi.json) and gRPC.",
        stream_event_types=STREAM_EVENT_TYPES, servers=servers)


async def docs_view(request: web.Request) -> web.Response:
    page = resources.files(__package__).joinpath("docs.html").read_text(encoding="utf-8")
    return web.Response(text=page, content_type="text/html")


async def health_view(request: web.Request) -> web.Response:
    host = request.app[HOST_KEY]
    return _json({"status": "ok" if host.started else "starting",
                  "streams": sorted(host.streams)})


# --- errors as problem details ----------------------------------------------------------------


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _problem(ProblemDetails("about:blank", exc.reason, exc.status, exc.text or
                                       exc.reason, request.path))
    except Exception as exc:
        problem = problem_for(exc)
        if problem is None:
            log.exception("%s %s failed", request.method, request.path)
            return _problem(ProblemDetails(PROBLEM_TYPES["internal"], "Internal error", 500,
                                           f"{type(exc).__name__}: the host logged the details",
                                           request.path))
        return _problem(ProblemDetails(PROBLEM_TYPES[problem.kind], problem.title,
                                       problem.status, problem.detail, request.path,
                                       problem.errors))


def _problem(problem: ProblemDetails, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_encoder.encode(problem), status=problem.status,
                        content_type=PROBLEM_JSON, headers=headers)


def _json(body: Any, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_encoder.encode(body), content_type="application/json",
                        headers=headers)


# --- server -------------------------------------------------------------------------------------


class HttpServer:
    """The HTTP API on ``host:port`` (port 0 = a free one; :attr:`url` has the bound one)."""

    def __init__(self, host: EventStreamingHost, bind: str, port: int) -> None:
        self.app = build_app(host)
        self.bind, self.port = bind, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    @property
    def url(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop accepting, let requests in progress finish. May be called twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
