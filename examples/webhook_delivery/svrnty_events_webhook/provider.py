"""The webhook delivery provider: each event of the configured subscriptions is POSTed, signed,
to its endpoint, and the response settles it through the engine's consumer API.

It holds no delivery logic of its own beyond mapping an HTTP outcome to ack / nack /
dead letter: redelivery, attempts, backoff and the dead-letter queue are the engine's
(``host.open_consumer``), so a webhook consumer behaves exactly as any other consumer.

Per endpoint there is one engine consumer per subscription (consumer id ``webhook:NAME``, its
window = the endpoint's ``concurrency``) feeding one queue, and ``concurrency`` workers taking
from it: that is the endpoint's limit of requests in flight, whatever its subscriptions.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import time
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from svrnty_events.config import SubscriptionConfig
from svrnty_events.errors import ConfigError, ConsumerClosedError, SvrntyEventsError
from svrnty_events.host import EventStreamingHost
from svrnty_events.subscriptions import Consumer, Delivery

from .options import WebhookEndpoint, WebhookOptions, check_secret, redacted_url
from .payload import (
    ATTEMPT_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SUBSCRIPTION_HEADER,
    encode_body,
)
from .signature import SIGNATURE_HEADER, sign, sign_standard

log = logging.getLogger("svrnty_events.webhook")

VERSION = "0.1.0"
#: pause before a fetch loop tries again after an unexpected error (e.g. the store is down)
FETCH_ERROR_PAUSE = 1.0


# --- outcome of one request -------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What to do with a delivery after one request: ``ack``, ``retry`` or ``dead_letter``."""

    action: str
    reason: str = ""
    error: str | None = None
    #: for ``retry``: seconds the receiver asked to wait (Retry-After), if it did
    retry_after: float | None = None


def classify(status: int, *, retry_after: str | None = None, excerpt: str = "",
             now: float | None = None) -> Outcome:
    """Map an HTTP status to an outcome. 2xx: ack. 408, 429, 5xx: retry (honouring
    Retry-After). Other 4xx: dead letter at once, since retrying the same request cannot help.
    1xx and 3xx (redirects are not followed): retry, so a moved endpoint can be fixed without
    losing events; they dead-letter once the subscription's attempts are used up."""
    reason = f"HTTP {status}"
    error = excerpt or None
    if 200 <= status < 300:
        return Outcome("ack")
    if status in (408, 429) or status >= 500:
        return Outcome("retry", reason, error, parse_retry_after(retry_after, now=now))
    if 400 <= status < 500:
        return Outcome("dead_letter", reason, error)
    if 300 <= status < 400:
        return Outcome("retry", f"{reason}: redirects are not followed", error)
    return Outcome("retry", f"{reason}: unexpected status", error)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date. None when absent or
    unreadable (then the subscription's backoff applies)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def backoff(subscription: SubscriptionConfig, attempt: int) -> float:
    """Exponential backoff from the subscription's ``redelivery_delay``, whatever its
    ``backoff`` setting: a receiver that is down must not be retried at a fixed pace. The
    subscription's multiplier applies when it asks for exponential backoff, 2 otherwise."""
    if subscription.backoff == "exponential":
        return subscription.redelivery_delay_for(attempt)
    delay = subscription.redelivery_delay * 2.0 ** max(attempt - 1, 0)
    return min(delay, subscription.max_redelivery_delay)


def retry_delay(subscription: SubscriptionConfig, attempt: int, retry_after: float | None,
                max_retry_after: float) -> float:
    """The nack delay: the backoff, or, when the receiver sent Retry-After, the longer of
    Retry-After (cut to ``max_retry_after``) and the backoff, so a receiver asking for less
    never speeds the retries up into a storm."""
    delay = backoff(subscription, attempt)
    if retry_after is None:
        return delay
    return max(min(retry_after, max_retry_after), delay)


# --- the provider ------------------------------------------------------------------------------


@dataclass
class _Target:
    """One endpoint at run time."""

    options: WebhookEndpoint
    secrets: list[str]
    queue: asyncio.Queue[Delivery | None] = field(default_factory=asyncio.Queue)
    consumers: list[Consumer] = field(default_factory=list)
    in_flight: int = 0

    @property
    def name(self) -> str:
        return self.options.display_name


class WebhookDeliveryProvider:
    """The ``webhook`` delivery provider. Built by the host from ``[delivery.webhook]``."""

    def __init__(self, host: EventStreamingHost, options: WebhookOptions) -> None:
        self.host = host
        self.options = options
        self.targets: list[_Target] = []
        self.session: aiohttp.ClientSession | None = None
        self._subscriptions: dict[str, SubscriptionConfig] = {}
        self._fetchers: list[asyncio.Task[None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._started = False

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open one consumer per endpoint and subscription, and start delivering. Raises
        ConfigError for an unknown subscription or an unset ``secret_env``."""
        self._subscriptions = {s.name: s for s in self.host.config.subscriptions}
        self.targets = [self._target(i, e) for i, e in enumerate(self.options.endpoints)]
        user_agent = self.options.user_agent or f"svrnty-events-webhook/{VERSION}"
        total = sum(t.options.concurrency for t in self.targets)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(total, 1)),
            headers={"User-Agent": user_agent}, raise_for_status=False)
        self._started = True
        try:
            for target in self.targets:
                await self._start_target(target)
        except BaseException:
            await self.stop(0)
            raise

    def _target(self, index: int, endpoint: WebhookEndpoint) -> _Target:
        path = f"delivery.webhook.endpoints[{index}]"
        for j, name in enumerate(endpoint.subscriptions):
            sub = self._subscriptions.get(name)
            if sub is None:
                known = ", ".join(sorted(self._subscriptions)) or "none"
                raise ConfigError(f"{path}.subscriptions[{j}]",
                                  f'unknown subscription "{name}"; subscriptions: {known}',
                                  source=self.host.streaming.source)
            if sub.visibility_timeout <= endpoint.timeout:
                log.warning("subscription %s has a visibility_timeout (%ss) no longer than the "
                            "timeout of webhook %s (%ss): slow requests will be redelivered "
                            "while still in flight", name, sub.visibility_timeout,
                            endpoint.display_name, endpoint.timeout)
        if endpoint.secret_env is not None:
            secret = os.environ.get(endpoint.secret_env, "")
            if not secret:
                raise ConfigError(f"{path}.secret_env",
                                  f"environment variable {endpoint.secret_env} is not set",
                                  source=self.host.streaming.source)
            if "standard" in endpoint.signature:
                try:
                    check_secret("secret_env", secret)
                except ValueError as exc:
                    raise ConfigError(f"{path}.secret_env", f"{endpoint.secret_env}: {exc}",
                                      source=self.host.streaming.source) from None
        else:
            assert endpoint.secret is not None
            secret = endpoint.secret
        return _Target(endpoint, [secret, *endpoint.previous_secrets])

    async def _start_target(self, target: _Target) -> None:
        endpoint = target.options
        for name in endpoint.subscriptions:
            # the window bounds what waits for a worker: no more than the endpoint can take
            window = min(endpoint.concurrency, self._subscriptions[name].window)
            consumer = await self.host.open_consumer(
                name, endpoint.consumer_id, window=window,
                metadata={"provider": "webhook",
                          "url": redacted_url(endpoint.url)})
            target.consumers.append(consumer)
            self._fetchers.append(asyncio.create_task(
                self._fetch_loop(target, consumer),
                name=f"webhook {target.name}: fetch {name}"))
        for n in range(endpoint.concurrency):
            self._workers.append(asyncio.create_task(
                self._work_loop(target), name=f"webhook {target.name}: worker {n}"))

    async def stop(self, grace: float) -> None:
        """Stop fetching; let requests in flight finish for up to ``grace`` seconds (their
        outcome is settled), then cancel the rest. Events not settled are released for
        redelivery when the consumers close. May be called twice."""
        if self._stopping or not self._started:
            return
        self._stopping = True
        try:
            await _cancel(self._fetchers)
            for target in self.targets:
                for _ in range(target.options.concurrency):
                    target.queue.put_nowait(None)  # each worker ends after its current request
            if self._workers:
                await asyncio.wait(self._workers, timeout=max(grace, 0.0))
            await _cancel(self._workers)
        finally:
            for target in self.targets:
                for consumer in target.consumers:
                    with suppress(Exception):
                        await consumer.close("webhook provider stopping")
            if self.session is not None:
                await self.session.close()

    def endpoints(self) -> list[str]:
        """One line per endpoint: ``webhook NAME: POST URL <- subscriptions``."""
        return [f"webhook {t.name}: POST {redacted_url(t.options.url)} <- "
                f"{', '.join(t.options.subscriptions)}" for t in self.targets]

    # --- the loops -------------------------------------------------------------------------

    async def _fetch_loop(self, target: _Target, consumer: Consumer) -> None:
        # The consumer's window (= concurrency) bounds what it holds, so the queue stays small.
        while True:
            try:
                batch = await consumer.fetch()
            except ConsumerClosedError as exc:
                if not self._stopping:
                    log.error("webhook %s: consumer of %s was closed (%s); no more deliveries "
                              "from it until the host restarts", target.name,
                              consumer.subscription, exc)
                return
            except Exception:
                log.exception("webhook %s: fetching from %s failed; trying again in %.0fs",
                              target.name, consumer.subscription, FETCH_ERROR_PAUSE)
                await asyncio.sleep(FETCH_ERROR_PAUSE)
                continue
            for delivery in batch:
                target.queue.put_nowait(delivery)

    async def _work_loop(self, target: _Target) -> None:
        while True:
            delivery = await target.queue.get()
            if delivery is None:
                return
            if self._stopping:
                continue  # not sent: released for redelivery when its consumer closes
            target.in_flight += 1
            try:
                await self._deliver(target, delivery)
            except Exception:
                # a bug must not stop the worker; the event is redelivered after its
                # visibility timeout
                log.exception("webhook %s: delivering %s failed", target.name, delivery.id)
            finally:
                target.in_flight -= 1

    # --- one delivery ----------------------------------------------------------------------

    async def _deliver(self, target: _Target, delivery: Delivery) -> None:
        outcome = await self.post(target, delivery)
        sub = self._subscriptions[delivery.subscription]
        try:
            if outcome.action == "ack":
                await delivery.ack()
            elif outcome.action == "dead_letter":
                log.warning("webhook %s: %s %s refused with %s; dead-lettered", target.name,
                            delivery.type, delivery.id, outcome.reason)
                await delivery.dead_letter(outcome.reason, error=outcome.error)
            else:
                delay = retry_delay(sub, delivery.attempt, outcome.retry_after,
                                    target.options.max_retry_after)
                log.info("webhook %s: %s %s attempt %d failed (%s); retrying", target.name,
                         delivery.type, delivery.id, delivery.attempt, outcome.reason)
                await delivery.nack(delay=delay, reason=outcome.reason, error=outcome.error)
        except SvrntyEventsError as exc:
            # the consumer let go of the event meanwhile (closed, or it was redelivered after
            # its visibility timeout): the engine already owns it again
            log.info("webhook %s: could not settle %s: %s", target.name, delivery.id, exc)

    async def post(self, target: _Target, delivery: Delivery) -> Outcome:
        """Send ``delivery`` to ``target`` once and classify the result."""
        assert self.session is not None
        endpoint = target.options
        body = encode_body(delivery)
        headers = {
            **endpoint.headers,
            "Content-Type": "application/json",
            EVENT_ID_HEADER: delivery.id,
            EVENT_TYPE_HEADER: delivery.type,
            ATTEMPT_HEADER: str(delivery.attempt),
            SUBSCRIPTION_HEADER: delivery.subscription,
            **signature_headers(endpoint.signature, target.secrets, delivery.id, body),
        }
        # the event's W3C trace context (its creation context, set by the telemetry plugin),
        # so the receiver's span can join the trace
        for name in ("traceparent", "tracestate"):
            if (value := delivery.headers.get(name)) is not None:
                headers[name] = value
        try:
            async with self.session.post(
                    endpoint.url, data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=endpoint.timeout)) as response:
                excerpt = await _excerpt(response, endpoint.body_excerpt)
                return classify(response.status,
                                retry_after=response.headers.get("Retry-After"),
                                excerpt=excerpt)
        except TimeoutError:
            return Outcome("retry", f"timeout: no response within {endpoint.timeout}s")
        except aiohttp.ClientError as exc:
            return Outcome("retry", f"connection error: {type(exc).__name__}",
                           error=str(exc) or None)


def signature_headers(schemes: list[str], secrets: list[str], msg_id: str, body: bytes,
                      timestamp: int | None = None) -> dict[str, str]:
    """The signature headers of one request, in each of ``schemes``, with one timestamp."""
    t = int(time.time()) if timestamp is None else timestamp
    headers: dict[str, str] = {}
    if "standard" in schemes:
        headers.update(sign_standard(secrets, msg_id, body, t))
    if "stripe" in schemes:
        headers[SIGNATURE_HEADER] = sign(secrets, body, t)
    return headers


async def _excerpt(response: aiohttp.ClientResponse, limit: int) -> str:
    if limit <= 0 or 200 <= response.status < 300:
        return ""
    raw = await response.content.read(limit + 1)
    text = raw[:limit].decode("utf-8", errors="replace")
    return text + "..." if len(raw) > limit else text


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with suppress(asyncio.CancelledError):
            try:
                await task
            except Exception:
                log.exception("webhook task %s failed", task.get_name())
    tasks.clear()
