"""Errors answered before a stream starts, as RFC 9457 problem details
(``application/problem+json``)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

PROBLEM_JSON = "application/problem+json"

_encoder = msgspec.json.Encoder()


class Problem(Exception):
    """Raised by request checks; answered as a problem+json response with ``status``.
    ``detail`` names the offending parameter, header or field first."""

    def __init__(self, status: int, title: str, detail: str, *,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.headers = headers or {}
        self.extra = extra

    def response(self, instance: str, headers: dict[str, str] | None = None) -> web.Response:
        body = {"type": "about:blank", "title": self.title, "status": self.status,
                "detail": self.detail, "instance": instance, **self.extra}
        return web.Response(body=_encoder.encode(body), status=self.status,
                            content_type=PROBLEM_JSON, headers={**self.headers, **(headers or {})})


def bad_parameter(name: str, message: str) -> Problem:
    return Problem(400, "Bad request", f"{name}: {message}", parameter=name)
