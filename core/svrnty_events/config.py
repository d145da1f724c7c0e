"""Configuration types. The Python builder and TOML files map to the same msgspec Structs.

Errors name the path of the offending field, e.g.
``subscriptions[1].visibility_timeout: expected float, got str``.
"""

from __future__ import annotations

import enum
import random
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from .errors import ConfigError


class StreamType(enum.StrEnum):
    EPHEMERAL = "ephemeral"    # queue-like: an event is dropped once every subscription acked it
    PERSISTENT = "persistent"  # full history: read from an offset, replay, catch up


class DeliverySemantics(enum.StrEnum):
    AT_MOST_ONCE = "at_most_once"
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


class SubscriptionMode(enum.StrEnum):
    """The built-in modes. Any registered mode name is accepted where a mode is expected."""

    BROADCAST = "broadcast"
    EXCLUSIVE = "exclusive"
    CONSUMER_GROUP = "consumer_group"
    READ_RECEIPT = "read_receipt"


class StreamScope(enum.StrEnum):
    INTERNAL = "internal"          # only this service appends
    CROSS_SERVICE = "cross_service"  # other services may publish (e.g. the gRPC Publish RPC)


class RetentionPolicy(enum.StrEnum):
    """What retention does with events some delivery group has not settled yet."""

    #: remove them all the same; each group that had not settled one gets it in its
    #: dead-letter queue with the reason "retention" (events in flight stay until settled)
    DEAD_LETTER = "dead_letter"
    #: keep them until every group settled them (JetStream's interest policy): the limits
    #: then bound only settled events
    KEEP_UNSETTLED = "keep_unsettled"


class Backoff(enum.StrEnum):
    FIXED = "fixed"
    EXPONENTIAL = "exponential"


MAX_PARTITIONS = 1024


class _Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class StreamConfig(_Config):
    name: str
    type: StreamType = StreamType.EPHEMERAL
    delivery_semantics: DeliverySemantics = DeliverySemantics.AT_LEAST_ONCE
    scope: StreamScope = StreamScope.INTERNAL
    #: keep at most this many events (oldest dropped first); None = no count limit
    retention_max_count: int | None = None
    #: drop events older than this many seconds; None = no age limit
    retention_max_age: float | None = None
    #: what retention does with events a subscription has not settled yet
    retention_policy: RetentionPolicy = RetentionPolicy.DEAD_LETTER
    #: partitions of the stream: an event's partition is fixed on append from its correlation
    #: id; a consumer_group spreads partitions over its consumers (one owner each)
    partitions: int = 1
    #: seconds without a new event after which a workflow of this stream gets a
    #: WorkflowTimedOut event (or ``workflow_timeout_event``), once; None = never
    workflow_timeout: float | None = None
    #: type name of the event appended on timeout instead of WorkflowTimedOut (a class whose
    #: fields all have defaults)
    workflow_timeout_event: str | None = None
    #: seconds after its first event after which a workflow is closed (WorkflowExpired is
    #: appended; continuing it raises WorkflowExpiredError); None = never
    workflow_expiry: float | None = None
    #: event types that close a workflow (continuing it raises WorkflowClosedError)
    terminal_event_types: list[str] = []
    description: str = ""


class SubscriptionConfig(_Config):
    name: str
    stream: str
    mode: str = SubscriptionMode.BROADCAST
    #: deliver only these event types (others are skipped and count as done); empty = all
    event_types: list[str] = []
    #: a correlation-scoped consumer completes when one of these types is delivered
    terminal_event_types: list[str] = []
    #: seconds a delivered event may stay un-acked before it is redelivered
    visibility_timeout: float = 30.0
    #: deliveries before the event goes to the dead-letter queue (0 = unlimited)
    max_delivery_attempts: int = 5
    #: delay before redelivering a nacked event that gave no delay of its own
    redelivery_delay: float = 1.0
    backoff: Backoff = Backoff.FIXED
    backoff_multiplier: float = 2.0
    max_redelivery_delay: float = 300.0
    #: spread each redelivery delay by up to this fraction, at random (0.1 = +/-10%), so events
    #: that failed together do not come back in lockstep
    backoff_jitter: float = 0.0
    #: un-acked events a consumer may hold at once (its backpressure window)
    window: int = 100
    #: seconds without a heartbeat (or any request) before a consumer is dropped
    heartbeat_timeout: float = 30.0
    #: maximum concurrent consumers; None = no limit
    max_consumers: int | None = None
    description: str = ""
    #: mode-specific options, validated by the mode plugin
    options: dict[str, Any] = {}

    def redelivery_delay_for(self, attempt: int) -> float:
        """Delay before redelivery after delivery number ``attempt`` failed."""
        delay = self.redelivery_delay
        if self.backoff == Backoff.EXPONENTIAL:
            delay = min(delay * self.backoff_multiplier ** max(attempt - 1, 0),
                        self.max_redelivery_delay)
        if self.backoff_jitter:
            delay *= 1.0 + random.uniform(-self.backoff_jitter, self.backoff_jitter)
        return delay


class StoreConfig(_Config):
    plugin: str = "memory"
    options: dict[str, Any] = {}


class HostConfig(_Config):
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    streams: list[StreamConfig] = []
    subscriptions: list[SubscriptionConfig] = []
    #: delivery provider name -> its options (validated by the provider's options Struct)
    delivery: dict[str, dict[str, Any]] = {}
    #: options of the telemetry plugin (``[telemetry]``, validated by that plugin); None = no
    #: section (an empty section turns telemetry on with its defaults)
    telemetry: dict[str, Any] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: seconds between the scheduler's looks for schedules other hosts added (a host's own
    #: schedules wake it directly): due events fire within this bound
    schedule_poll_interval: float = 0.5
    #: once the host started, move the objects alive then (modules, classes, plugins) out of
    #: the garbage collector's full passes (``gc.freeze()``, once per process): see
    #: :mod:`svrnty_events.heap`
    gc_freeze: bool = True


_MSGSPEC_ERROR = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _path_from_msgspec(path: str) -> str:
    return path.lstrip(".")


def convert(data: Any, type: type, *, prefix: str = "", source: str | None = None) -> Any:
    """msgspec.convert with errors turned into ConfigError naming the field path."""
    try:
        return msgspec.convert(data, type, strict=True)
    except msgspec.ValidationError as exc:
        path, message = split_validation_error(exc)
        full = ".".join(p for p in (prefix, path) if p).replace(".[", "[")
        raise ConfigError(full, message, source=source) from None


def split_validation_error(exc: msgspec.ValidationError) -> tuple[str, str]:
    """Split msgspec's ``Expected `float`, got `str` - at `$.a[1].b``` into
    (``a[1].b``, ``expected float, got str``)."""
    m = _MSGSPEC_ERROR.match(str(exc))
    assert m is not None
    message = m.group("msg").replace("`", "")
    message = message[:1].lower() + message[1:]
    path = _path_from_msgspec(m.group("path") or "")
    if message.startswith("object contains unknown field"):
        # msgspec names the unknown field in the message; put it in the path
        field = re.search(r"field (\S+)", message)
        if field:
            path = ".".join(p for p in (path, field.group(1)) if p)
            message = "unknown field"
    elif message.startswith("object missing required field"):
        field = re.search(r"field (\S+)", message)
        if field:
            path = ".".join(p for p in (path, field.group(1)) if p)
            message = "required field is missing"
    return path, message


def load_toml(path: str | Path) -> HostConfig:
    """Read and validate a TOML host configuration. Raises ConfigError naming the file and field."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("", "file not found", source=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read file: {exc}", source=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"invalid TOML: {exc}", source=str(p)) from None
    return parse_config(raw, source=str(p))


def parse_config(raw: dict[str, Any], *, source: str | None = None) -> HostConfig:
    raw = dict(raw)
    store = raw.get("store")
    if isinstance(store, dict):
        # `[store] plugin = "sqlite"` with the plugin's options beside it, or under `options`
        store = dict(store)
        options = dict(store.pop("options", {}) or {})
        plugin = store.pop("plugin", "memory")
        options.update(store)
        raw["store"] = {"plugin": plugin, "options": options}
    delivery = raw.get("delivery")
    if isinstance(delivery, dict):
        # msgspec names a dict value `delivery[...]`; name the provider instead
        for name, options in delivery.items():
            if not isinstance(options, dict):
                raise ConfigError(f"delivery.{name}",
                                  f"expected a table, got {type(options).__name__}",
                                  source=source)
    return convert(raw, HostConfig, source=source)
