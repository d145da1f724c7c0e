"""Who may connect: the token (header, query parameter or cookie) and the page's origin (CORS
for SSE; WebSockets are not covered by CORS, so the same origin check protects them from
cross-site use of a cookie)."""

from __future__ import annotations

import hmac
import os

from aiohttp import web

from svrnty_events.errors import ConfigError

from .options import WebOptions
from .problems import Problem

#: query parameter that may carry the token (the name OAuth 2.0 bearer tokens and SignalR use)
TOKEN_PARAMETER = "access_token"


def accepted_tokens(options: WebOptions) -> list[str]:
    """The configured tokens and those of ``token_env``. Raises ConfigError when ``token_env``
    names an unset or empty variable."""
    tokens = list(options.tokens)
    if options.token_env:
        value = os.environ.get(options.token_env, "")
        from_env = [t.strip() for t in value.split(",") if t.strip()]
        if not from_env:
            raise ConfigError("delivery.web.token_env", f"environment variable "
                              f"{options.token_env} is not set or holds no token")
        tokens.extend(from_env)
    return tokens


def request_origin(request: web.Request) -> str:
    """The origin of the server as the request reached it (``http://host:port``)."""
    return f"{request.scheme}://{request.host}"


class Access:
    def __init__(self, options: WebOptions, tokens: list[str]) -> None:
        self.options = options
        self._tokens = [t.encode() for t in tokens]
        self._any_origin = "*" in options.allowed_origins
        self._origins = {o.rstrip("/") for o in options.allowed_origins}

    def origin_allowed(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        # no Origin: not a browser page (or a same-origin GET, which browsers may send bare)
        return (origin is None or self._any_origin or origin in self._origins
                or origin == request_origin(request))

    def cors_headers(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin is None or origin == request_origin(request) or not self.origin_allowed(request):
            return {}
        # the origin itself rather than "*", so that an EventSource withCredentials (sending
        # the token cookie) is allowed too
        return {"Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}

    def check(self, request: web.Request) -> None:
        """Raise Problem 403 for a page of a foreign origin, 401 for a missing or wrong token."""
        if not self.origin_allowed(request):
            raise Problem(403, "Forbidden", f"Origin: {request.headers.get('Origin')} is not "
                          "allowed; add it to delivery.web.allowed_origins")
        if not self._tokens:
            return
        token, where = self._token_of(request)
        challenge = {"WWW-Authenticate": 'Bearer realm="svrnty-events"'}
        if token is None:
            raise Problem(401, "Unauthorized",
                          f"token: missing; send `Authorization: Bearer TOKEN`, the "
                          f"`{TOKEN_PARAMETER}` query parameter or the "
                          f"`{self.options.token_cookie}` cookie", headers=challenge)
        given = token.encode()
        ok = False
        for t in self._tokens:  # every one, so timing does not tell which one nearly matched
            ok |= hmac.compare_digest(given, t)
        if not ok:
            raise Problem(401, "Unauthorized", f"{where}: invalid token", headers=challenge)

    def _token_of(self, request: web.Request) -> tuple[str | None, str]:
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip(), "Authorization"
            return "", "Authorization"
        if TOKEN_PARAMETER in request.query:
            return request.query[TOKEN_PARAMETER], TOKEN_PARAMETER
        cookie = request.cookies.get(self.options.token_cookie)
        if cookie is not None:
            return cookie, f"cookie {self.options.token_cookie}"
        return None, ""
