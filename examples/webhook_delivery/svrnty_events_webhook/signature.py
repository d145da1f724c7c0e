"""Signing and verifying webhook requests, in two schemes a receiver can check with published
libraries.

``standard`` follows `Standard Webhooks <https://www.standardwebhooks.com>`_ (the scheme of
Svix): three headers, ``webhook-id`` (the event id, the same on every retry),
``webhook-timestamp`` (unix seconds) and ``webhook-signature: v1,<base64>``, where ``<base64>``
is the HMAC-SHA256 of ``"<id>.<timestamp>.<body>"``. The key is the secret's bytes: for a
secret in the ``whsec_<base64>`` form the base64 part decoded, for any other secret its UTF-8
bytes (a receiver then passes ``standard_secret(secret)`` to its library). The ``standardwebhooks``
and ``svix`` packages verify it::

    from standardwebhooks import Webhook

    Webhook(SECRET).verify(request_body, request.headers)   # whsec_... secret

``stripe`` is the scheme of Stripe webhooks, in the ``Svrnty-Signature`` header:
``t=<unix seconds>,v1=<hex>``, the hex HMAC-SHA256 of ``"<t>." + body`` keyed with the UTF-8
bytes of the secret (whatever its form, as Stripe's library does). Stripe's library verifies
it: ``stripe.WebhookSignature.verify_header(body, header, SECRET, tolerance=300)``.

Signing the timestamp with the body lets a receiver reject replays of an old request: the
verifiers here refuse timestamps more than ``tolerance`` seconds away from their clock. During
a secret rotation the sender signs with every current secret (one ``v1`` each, in both schemes)
and a receiver accepts any of them.

This module depends on the standard library only, so a receiver can vendor it::

    from svrnty_events_webhook.signature import SignatureError, verify_standard

    try:
        verify_standard(SECRET, request_body, request.headers)
    except SignatureError:
        return 400
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

#: the header of the ``stripe`` scheme
SIGNATURE_HEADER = "Svrnty-Signature"
#: the headers of the ``standard`` scheme (Standard Webhooks)
WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
#: the signature schemes an endpoint can send (its ``signature`` option)
SCHEMES = ("standard", "stripe")
#: the signature version, in both schemes
SCHEME = "v1"
#: the prefix of a secret in the Standard Webhooks form, ``whsec_<base64 of the key>``
SECRET_PREFIX = "whsec_"
#: default largest age (and clock skew) of a request the verifiers accept, in seconds
DEFAULT_TOLERANCE = 300.0

Secret = str | bytes


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale, or matches no secret."""


def _key(secret: Secret) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _secrets(secrets: Secret | Sequence[Secret]) -> list[bytes]:
    if isinstance(secrets, (str, bytes)):
        keys = [_key(secrets)]
    else:
        keys = [_key(s) for s in secrets]
    if not keys or not all(keys):
        raise ValueError("at least one non-empty secret is required")
    return keys


def _decode_standard(encoded: str) -> bytes:
    """The key of a ``whsec_`` secret: its base64, padding optional. Raises ValueError."""
    encoded = encoded + "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64 after {SECRET_PREFIX!r}: {exc}") from None
    if not key:
        raise ValueError(f"no key after {SECRET_PREFIX!r}")
    return key


def standard_key(secret: Secret) -> bytes:
    """The HMAC key of the ``standard`` scheme: the decoded base64 of a ``whsec_`` secret (as
    Standard Webhooks libraries decode it), else the secret's bytes. Raises ValueError for a
    ``whsec_`` secret that is not base64."""
    if isinstance(secret, str) and secret.startswith(SECRET_PREFIX):
        return _decode_standard(secret[len(SECRET_PREFIX):])
    return _key(secret)


def standard_secret(secret: Secret) -> str:
    """The ``whsec_`` form of ``secret``, which Standard Webhooks libraries take: ``secret``
    itself when it already has that form."""
    if isinstance(secret, str) and secret.startswith(SECRET_PREFIX):
        return secret
    return SECRET_PREFIX + base64.b64encode(_key(secret)).decode()


def _now(timestamp: int | None) -> int:
    return int(time.time()) if timestamp is None else int(timestamp)


def _check_age(timestamp: int, tolerance: float, now: float | None) -> None:
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(
            f"timestamp {timestamp} is {current - timestamp:.0f}s from now; "
            f"outside the tolerance of {tolerance:.0f}s")


# --- standard (Standard Webhooks, Svix) ---------------------------------------------------------


def standard_signature(secret: Secret, msg_id: str, body: bytes, timestamp: int) -> str:
    """The base64 HMAC-SHA256 of ``"<msg_id>.<timestamp>.<body>"`` keyed with
    :func:`standard_key` of ``secret``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(
        hmac.new(standard_key(secret), signed, hashlib.sha256).digest()).decode()


def sign_standard(secrets: Secret | Sequence[Secret], msg_id: str, body: bytes,
                  timestamp: int | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``: ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature`` (``v1,<base64>``, space-separated, one per secret). ``timestamp``
    defaults to now."""
    if isinstance(secrets, (str, bytes)):
        secrets = [secrets]
    _secrets(secrets)
    if not msg_id:
        raise ValueError("msg_id must not be empty")
    t = _now(timestamp)
    return {
        WEBHOOK_ID_HEADER: msg_id,
        WEBHOOK_TIMESTAMP_HEADER: str(t),
        WEBHOOK_SIGNATURE_HEADER: " ".join(
            f"{SCHEME},{standard_signature(s, msg_id, body, t)}" for s in secrets),
    }


def verify_standard(secrets: Secret | Sequence[Secret], body: bytes,
                    headers: Mapping[str, str], *, tolerance: float = DEFAULT_TOLERANCE,
                    now: float | None = None) -> int:
    """Check a request signed in the ``standard`` scheme: ``headers`` are its headers (any
    mapping; names compared case-insensitively), ``body`` its raw bytes. ``secrets`` is the
    endpoint secret, or several during a rotation.

    Returns the signed timestamp. Raises SignatureError when a header is missing or malformed,
    when the timestamp is more than ``tolerance`` seconds from ``now``, or when no signature
    matches a secret."""
    if isinstance(secrets, (str, bytes)):
        secrets = [secrets]
    _secrets(secrets)
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get(WEBHOOK_ID_HEADER)
    stamp = lower.get(WEBHOOK_TIMESTAMP_HEADER)
    header = lower.get(WEBHOOK_SIGNATURE_HEADER)
    missing = [name for name, value in ((WEBHOOK_ID_HEADER, msg_id),
                                        (WEBHOOK_TIMESTAMP_HEADER, stamp),
                                        (WEBHOOK_SIGNATURE_HEADER, header)) if not value]
    if missing:
        raise SignatureError(f"missing {', '.join(missing)} header")
    assert msg_id and stamp and header
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError(f"malformed timestamp {stamp!r}") from None
    signatures = []
    for part in header.split():
        version, sep, value = part.partition(",")
        if not sep:
            raise SignatureError(f"malformed signature {part!r}")
        if version == SCHEME:
            signatures.append(value)
    if not signatures:
        raise SignatureError(f"{WEBHOOK_SIGNATURE_HEADER} has no {SCHEME} signature")
    _check_age(timestamp, tolerance, now)
    for secret in secrets:
        expected = standard_signature(secret, msg_id, body, timestamp)
        if any(hmac.compare_digest(expected, s) for s in signatures):
            return timestamp
    raise SignatureError("no signature matches the secret")


# --- stripe (Svrnty-Signature) ------------------------------------------------------------------


def signature(secret: Secret, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body`` keyed with ``secret``."""
    return hmac.new(_key(secret), b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def sign(secrets: Secret | Sequence[Secret], body: bytes, timestamp: int | None = None) -> str:
    """The ``Svrnty-Signature`` header value for ``body``: ``t=<timestamp>,v1=<hex>``, with one
    ``v1`` per secret (several during a rotation). ``timestamp`` defaults to now."""
    keys = _secrets(secrets)
    t = _now(timestamp)
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
    """Check a request signed in the ``stripe`` scheme: ``header`` is its ``Svrnty-Signature`` value, ``body`` its raw bytes
    (before any JSON parsing). ``secrets`` is the endpoint secret, or several during a rotation.

    Returns the signed timestamp. Raises SignatureError when the header is missing or malformed,
    when the timestamp is more than ``tolerance`` seconds from ``now`` (a replayed or badly
    delayed request), or when no signature matches a secret.
    """
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    keys = _secrets(secrets)
    timestamp, signatures = parse_header(header)
    _check_age(timestamp, tolerance, now)
    for key in keys:
        expected = signature(key, body, timestamp)
        if any(hmac.compare_digest(expected, s) for s in signatures):
            return timestamp
    raise SignatureError("no signature matches the secret")
