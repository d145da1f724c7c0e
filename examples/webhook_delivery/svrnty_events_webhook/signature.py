"""Signing and verifying webhook requests (the scheme of Stripe and Svix webhooks).

Every request carries ``Svrnty-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is the
HMAC-SHA256, keyed with the endpoint's shared secret, of ``"<t>." + body``. Signing the
timestamp with the body lets a receiver reject replays of an old request: :func:`verify`
refuses timestamps more than ``tolerance`` seconds away from its clock. During a secret
rotation the sender signs with every current secret (one ``v1=`` each) and a receiver accepts
any of them.

This module depends on the standard library only, so a receiver can vendor it::

    from svrnty_events_webhook.signature import SignatureError, verify

    try:
        verify(SECRET, request_body, request.headers["Svrnty-Signature"])
    except SignatureError:
        return 400
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

#: the header that carries the signature
SIGNATURE_HEADER = "Svrnty-Signature"
#: the signature scheme version
SCHEME = "v1"
#: default largest age (and clock skew) of a request :func:`verify` accepts, in seconds
DEFAULT_TOLERANCE = 300.0

Secret = str | bytes


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale, or matches no secret."""


def _key(secret: Secret) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _secrets(secrets: Secret | Sequence[Secret]) -> list[bytes]:
    if isinstance(secrets, (str, bytes)):
        return [_key(secrets)]
    return [_key(s) for s in secrets]


def signature(secret: Secret, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body`` keyed with ``secret``."""
    return hmac.new(_key(secret), b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def sign(secrets: Secret | Sequence[Secret], body: bytes, timestamp: int | None = None) -> str:
    """The ``Svrnty-Signature`` header value for ``body``: ``t=<timestamp>,v1=<hex>``, with one
    ``v1`` per secret (several during a rotation). ``timestamp`` defaults to now."""
    keys = _secrets(secrets)
    if not keys or not all(keys):
        raise ValueError("at least one non-empty secret is required")
    t = int(time.time()) if timestamp is None else int(timestamp)
    return ",".join([f"t={t}", *(f"{SCHEME}={signature(k, body, t)}" for k in keys)])


def parse_header(header: str) -> tuple[int, list[str]]:
    """Split a signature header into its timestamp and its ``v1`` signatures. Unknown schemes
    are ignored, so a sender can add one without breaking receivers. Raises SignatureError."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed signature header element {part.strip()!r}")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError(f"malformed timestamp {value!r}") from None
        elif key == SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise SignatureError("signature header has no timestamp (t=...)")
    if not signatures:
        raise SignatureError(f"signature header has no {SCHEME} signature")
    return timestamp, signatures


def verify(secrets: Secret | Sequence[Secret], body: bytes, header: str | None, *,
           tolerance: float = DEFAULT_TOLERANCE, now: float | None = None) -> int:
    """Check a request: ``header`` is its ``Svrnty-Signature`` value, ``body`` its raw bytes
    (before any JSON parsing). ``secrets`` is the endpoint secret, or several during a rotation.

    Returns the signed timestamp. Raises SignatureError when the header is missing or malformed,
    when the timestamp is more than ``tolerance`` seconds from ``now`` (a replayed or badly
    delayed request), or when no signature matches a secret.
    """
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    keys = _secrets(secrets)
    if not keys or not all(keys):
        raise ValueError("at least one non-empty secret is required")
    timestamp, signatures = parse_header(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(
            f"timestamp {timestamp} is {current - timestamp:.0f}s from now; "
            f"outside the tolerance of {tolerance:.0f}s")
    for key in keys:
        expected = signature(key, body, timestamp)
        if any(hmac.compare_digest(expected, s) for s in signatures):
            return timestamp
    raise SignatureError("no signature matches the secret")
