"""Options of the ``webhook`` delivery provider (``[delivery.webhook]`` in TOML).

```toml
[delivery.webhook]

[[delivery.webhook.endpoints]]
url = "https://billing.example.com/hooks/svrnty"
subscriptions = ["billing"]
secret_env = "BILLING_WEBHOOK_SECRET"   # or: secret = "whsec_..."
signature = ["standard", "stripe"]      # the schemes each request is signed in
concurrency = 4
timeout = 5.0
```
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

from .signature import (
    WEBHOOK_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
    standard_key,
)

#: headers the provider sets itself; an endpoint's ``headers`` cannot override them
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", WEBHOOK_ID_HEADER,
                              WEBHOOK_TIMESTAMP_HEADER, WEBHOOK_SIGNATURE_HEADER})
RESERVED_PREFIX = "svrnty-"
MIN_SECRET_LENGTH = 16

Scheme = Literal["standard", "stripe"]


class WebhookEndpoint(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One receiving URL and the subscriptions whose events it gets."""

    #: where events are POSTed (http or https)
    url: str
    #: names of the subscriptions delivered to this URL
    subscriptions: list[str]
    #: the shared secret that signs requests (at least 16 characters; ``whsec_<base64>``, the
    #: Standard Webhooks form, or any other string) ...
    secret: str | None = None
    #: ... or the name of the environment variable holding it (read when the host starts)
    secret_env: str | None = None
    #: secrets still accepted by the receiver during a rotation: each request is signed with
    #: ``secret`` and with each of these
    previous_secrets: list[str] = []
    #: the signature schemes of each request: ``standard`` (Standard Webhooks headers
    #: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``), ``stripe``
    #: (``Svrnty-Signature: t=...,v1=...``), or both
    signature: Annotated[list[Scheme], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["standard", "stripe"])
    #: names the endpoint in logs, the banner and consumer ids (``webhook:NAME``); defaults to
    #: the URL without credentials, query or fragment. Keep it stable: it is the consumer id,
    #: which a persistent store uses to resume a broadcast subscription where it left off.
    name: str | None = None
    #: requests in flight at once to this endpoint, across its subscriptions
    concurrency: int = 4
    #: seconds for a whole request (connect, send, response); past it the event is retried
    timeout: float = 5.0
    #: extra request headers (e.g. an Authorization the receiver wants besides the signature)
    headers: dict[str, str] = {}
    #: a Retry-After longer than this many seconds is cut to it
    max_retry_after: float = 3600.0
    #: bytes of a failed response body kept in the dead letter or nack reason
    body_excerpt: int = 512

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url: must be an http:// or https:// URL, got {self.url!r}")
        if not self.subscriptions:
            raise ValueError("subscriptions: name at least one subscription")
        if len(set(self.subscriptions)) != len(self.subscriptions):
            raise ValueError("subscriptions: a subscription is listed twice")
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("secret: set exactly one of secret and secret_env")
        for field, value in (("secret", self.secret), *(
                (f"previous_secrets[{i}]", s) for i, s in enumerate(self.previous_secrets))):
            if value is not None and len(value) < MIN_SECRET_LENGTH:
                raise ValueError(f"{field}: must be at least {MIN_SECRET_LENGTH} characters")
        if len(set(self.signature)) != len(self.signature):
            raise ValueError("signature: a scheme is listed twice")
        if "standard" in self.signature:
            for field, value in (("secret", self.secret), *(
                    (f"previous_secrets[{i}]", s) for i, s in enumerate(self.previous_secrets))):
                if value is not None:
                    check_secret(field, value)
        if self.secret_env is not None and not self.secret_env:
            raise ValueError("secret_env: must name an environment variable")
        if self.concurrency < 1:
            raise ValueError("concurrency: must be >= 1")
        if self.timeout <= 0:
            raise ValueError("timeout: must be > 0")
        if self.max_retry_after < 0:
            raise ValueError("max_retry_after: must be >= 0")
        if self.body_excerpt < 0:
            raise ValueError("body_excerpt: must be >= 0")
        for header, value in self.headers.items():
            low = header.lower()
            if low in RESERVED_HEADERS or low.startswith(RESERVED_PREFIX):
                raise ValueError(f"headers.{header}: set by the provider, cannot be overridden")
            if not header or any(c in header for c in " :\r\n") or any(
                    c in value for c in "\r\n"):
                raise ValueError(f"headers.{header}: not a valid header name and value")
        if self.name is not None and not self.name.strip():
            raise ValueError("name: must not be empty")

    @property
    def display_name(self) -> str:
        return self.name or redacted_url(self.url)

    @property
    def consumer_id(self) -> str:
        return f"webhook:{self.display_name}"


class WebhookOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Validated options of the webhook delivery provider."""

    endpoints: list[WebhookEndpoint] = []
    #: the User-Agent of every request; defaults to ``svrnty-events-webhook/VERSION``
    user_agent: str | None = None

    def __post_init__(self) -> None:
        seen: dict[str, int] = {}
        for i, endpoint in enumerate(self.endpoints):
            name = endpoint.display_name
            if name in seen:
                raise ValueError(f"endpoints[{i}].name: endpoints[{seen[name]}] already uses "
                                 f"the name {name!r}; give one of them a distinct name")
            seen[name] = i


def check_secret(field: str, secret: str) -> None:
    """Raise ValueError naming ``field`` when ``secret`` has the ``whsec_`` prefix of Standard
    Webhooks secrets but no base64 key after it: receivers' libraries could not use it."""
    try:
        standard_key(secret)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc} (a whsec_ secret is base64 after the prefix; "
                         f'sign with signature = ["stripe"] alone to use it as it is)') from None


def redacted_url(url: str) -> str:
    """``url`` without its password, query and fragment (either may carry a token), for logs,
    consumer metadata and the banner."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}" if parts.password else \
            f"{parts.username}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
