"""The live page, ``GET /live`` on the HTTP port: send ``addUser`` / ``inviteUser`` from a form
and watch that command's workflow arrive over a WebSocket (acked, correlation-scoped, ending at
its terminal event), beside a running list of ``user-analytics`` events over Server-Sent
Events. Both endpoints are the ``svrnty-events-web`` routes, mounted on the same port (same
origin: no CORS, no second port)."""

from __future__ import annotations

import json
from importlib import resources

from aiohttp import web

from svrnty_events import EventStreamingHost
from svrnty_events.events import event_type_name
from svrnty_events_web import mount

from .domain import TERMINAL_INVITATION_EVENTS, UserAdded, UserRemoved

#: the event types the page listens for on the user-analytics SSE stream
USER_EVENT_TYPES = [event_type_name(t) for t in (UserAdded, UserRemoved)]


def add_live_page(app: web.Application, host: EventStreamingHost) -> None:
    """Mount the SSE / WebSocket routes and ``/live`` on ``app`` (before it starts)."""
    mount(app, host)
    page = resources.files(__package__).joinpath("live.html").read_text(encoding="utf-8")
    page = page.replace("__USER_EVENT_TYPES__", json.dumps(USER_EVENT_TYPES)).replace(
        "__TERMINAL_EVENT_TYPES__",
        json.dumps([event_type_name(t) for t in TERMINAL_INVITATION_EVENTS]))

    async def live_view(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app.router.add_get("/live", live_view)
