"""Options of the ``web`` delivery provider (``[delivery.web]`` in TOML)."""

from __future__ import annotations

from typing import Annotated

import msgspec

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
Token = Annotated[str, msgspec.Meta(min_length=1, pattern=r"^\S+$")]


class WebOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Validated options of the web delivery provider. ``host`` and ``port`` only matter to the
    provider's own server; :func:`svrnty_events_web.mount` uses the rest."""

    #: interface to bind; the default accepts local connections only
    host: str = "127.0.0.1"
    #: port to bind; 0 picks a free port (read it from ``provider.port`` or the banner)
    port: Port = 6002
    #: origins (``https://app.example.com``) whose pages may connect, besides the server's own
    #: origin; ``["*"]`` = any. Requests from other origins get 403.
    allowed_origins: list[str] = []
    #: accepted tokens; none = no auth. Sent as ``Authorization: Bearer TOKEN``, as the
    #: ``access_token`` query parameter, or in the cookie named by ``token_cookie``
    tokens: list[Token] = []
    #: environment variable holding more accepted tokens, comma-separated
    token_env: str | None = None
    #: name of the cookie that may carry the token (EventSource cannot send headers)
    token_cookie: str = "svrnty_events_token"
    #: most SSE and WebSocket connections open at once; more get 503
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 1024
    #: seconds between SSE comment lines on an idle stream (keeps proxies from closing it, and
    #: finds dead connections)
    keepalive: Positive = 15.0
    #: reconnect delay an EventSource is told to use (the SSE ``retry:`` field), in milliseconds
    retry_ms: Annotated[int, msgspec.Meta(ge=0)] = 2000
    #: most events per WebSocket ``events`` message
    max_batch: Annotated[int, msgspec.Meta(ge=1)] = 256
    #: largest WebSocket message accepted from a client, in bytes
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1024 * 1024
