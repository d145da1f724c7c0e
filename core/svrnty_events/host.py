"""EventStreaming (configuration + plugin registry) and EventStreamingHost (the running system:
store, streams, subscriptions, delivery providers)."""

from __future__ import annotations

import difflib
import inspect
import logging
import time
from datetime import datetime
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import msgspec
import pluggy

from . import plugins as plugin_registry
from .commands import CommandResult, Handler, HandlerRegistry, operation_name
from .config import (
    MAX_PARTITIONS,
    DeliverySemantics,
    HostConfig,
    StoreConfig,
    StreamConfig,
    StreamScope,
    StreamType,
    SubscriptionConfig,
    convert,
    load_toml,
)
from .errors import (
    ConfigError,
    StreamScopeError,
    UnknownStreamError,
    UnknownWorkflowError,
)
from . import lifecycle
from . import process_managers as pms
from .events import EventTypes, RecordedEvent, event_type_name, record
from .heap import freeze_startup_heap
from .scheduling import Scheduler
from .plugins import Registry
from .projections import Projection, Projections, make_projection
from .store import DeadLetter, EventStore, Receipt, StreamInfo
from .subscriptions import Consumer, Subscriber, SubscriptionEngine, SubscriptionRuntime, type_names
from .workflow import Workflow

log = logging.getLogger("svrnty_events.host")

C = TypeVar("C", bound=Callable[..., Any])
_NoneType = type(None)


@runtime_checkable
class DeliveryProvider(Protocol):
    """What a delivery provider factory returns. It bridges remote consumers to the engine
    (``host.open_consumer``) and holds no delivery logic of its own."""

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...

    def endpoints(self) -> list[str]: ...


class EventStreaming:
    """Configuration and handlers of an event-streaming application.

    The store defaults to ``memory``; ``EventStreaming(store="sqlite", store_options={...})``
    picks another store plugin; :meth:`from_toml` builds the same from a file. Nothing is loaded
    or validated until :meth:`run` starts a host.
    """

    def __init__(self, store: str = "memory", store_options: dict[str, Any] | None = None, *,
                 plugins: Iterable[object] = (), load_entrypoints: bool = True) -> None:
        self.config = HostConfig(store=StoreConfig(plugin=store, options=dict(store_options or {})))
        self.handlers = HandlerRegistry()
        self.extra_plugins = list(plugins)
        self.load_entrypoints = load_entrypoints
        self.workflows: dict[type[Workflow], str] = {}
        #: event classes deliveries decode into; filled by add_subscription(event_types=...),
        #: register_event_types() and the events handlers emit
        self.event_types = EventTypes()
        self.source: str | None = None
        #: read models built from streams (``@streaming.projection``), by name
        self.projections: dict[str, Projection] = {}

    @classmethod
    def from_toml(cls, path: str | Path, **kwargs: Any) -> EventStreaming:
        """Load a TOML configuration (see docs/configuration.md). Raises ConfigError."""
        config = load_toml(path)
        streaming = cls(**kwargs)
        streaming.config = config
        streaming.source = str(path)
        return streaming

    # --- builder ---------------------------------------------------------------------------------

    def add_stream(self, workflow: type[Workflow] | str, *, name: str | None = None,
                   type: StreamType | str = StreamType.EPHEMERAL,
                   delivery_semantics: DeliverySemantics | str = DeliverySemantics.AT_LEAST_ONCE,
                   scope: StreamScope | str = StreamScope.INTERNAL, **options: Any) -> StreamConfig:
        """Add a stream, for a workflow type (its events go there) or by name."""
        if isinstance(workflow, str):
            stream_name = name or workflow
        else:
            stream_name = name or workflow.default_stream_name()
            self.workflows[workflow] = stream_name
        if "workflow_timeout_event" in options and \
                not isinstance(options["workflow_timeout_event"], (str, _NoneType)):
            self.event_types.add(options["workflow_timeout_event"])
            options["workflow_timeout_event"] = event_type_name(options["workflow_timeout_event"])
        if "terminal_event_types" in options:
            for t in options["terminal_event_types"]:
                if not isinstance(t, str):
                    self.event_types.add(t)
            options["terminal_event_types"] = type_names(options["terminal_event_types"])
        raw = {"name": stream_name, "type": str(type),
               "delivery_semantics": str(delivery_semantics), "scope": str(scope), **options}
        config = convert(raw, StreamConfig, prefix=f"streams[{len(self.config.streams)}]")
        self.config.streams.append(config)
        return config

    def register_event_types(self, *classes: type) -> None:
        """Name the classes this application's deliveries decode into (events it consumes but
        does not emit itself). Raises ValueError for two classes with one type name."""
        for cls in classes:
            self.event_types.add(cls)

    def bind_workflow(self, workflow: type[Workflow], stream: str) -> None:
        """Send a workflow's events to a stream declared elsewhere (e.g. in the TOML file)."""
        self.workflows[workflow] = stream

    def add_subscription(self, stream: type[Workflow] | str, name: str, *,
                         mode: str = "broadcast",
                         event_types: Sequence[type | str] = (),
                         terminal_event_types: Sequence[type | str] = (),
                         **options: Any) -> SubscriptionConfig:
        """Add a subscription to a workflow's stream (or a stream by name)."""
        if isinstance(stream, str):
            stream_name = stream
        else:
            stream_name = self.workflows.get(stream) or stream.default_stream_name()
        for t in (*event_types, *terminal_event_types):
            if not isinstance(t, str):
                self.event_types.add(t)
        raw = {"name": name, "stream": stream_name, "mode": str(mode),
               "event_types": type_names(event_types),
               "terminal_event_types": type_names(terminal_event_types), **options}
        config = convert(raw, SubscriptionConfig,
                         prefix=f"subscriptions[{len(self.config.subscriptions)}]")
        self.config.subscriptions.append(config)
        return config

    def add_telemetry(self, **options: Any) -> None:
        """Configure the telemetry plugin (``[telemetry]`` in TOML), e.g.
        ``add_telemetry(prometheus={"host": "127.0.0.1", "port": 9464})``."""
        self.config.telemetry = options

    def add_delivery(self, provider: str, **options: Any) -> None:
        """Enable a delivery provider plugin with its options (``[delivery.NAME]`` in TOML)."""
        self.config.delivery[provider] = options

    def command_handler(self, command: type, *, workflow: type[Workflow],
                        name: str | None = None) -> Callable[[C], C]:
        """Register ``handler(command, workflow) -> value`` (sync or async) for a command Struct."""
        def decorate(func: C) -> C:
            self.handlers.add(Handler("command", name or operation_name(command), command, func,
                                      workflow, inspect.getdoc(func) or ""))
            return func
        return decorate

    def query_handler(self, query: type, *, name: str | None = None) -> Callable[[C], C]:
        """Register ``handler(query) -> value`` (sync or async) for a query Struct."""
        def decorate(func: C) -> C:
            self.handlers.add(Handler("query", name or operation_name(query), query, func, None,
                                      inspect.getdoc(func) or ""))
            return func
        return decorate

    def process_manager(self, name: str, *, streams: Sequence[type[Workflow] | str],
                        event_types: Sequence[type | str] = (),
                        state: Callable[[], Any] | None = None,
                        apply: Callable[[Any, Any], Any] | None = None,
                        **subscription_options: Any) -> Callable[[C], C]:
        """Register ``handler(event, pm)`` (sync or async), run once per event of the
        workflows' ``streams`` (only ``event_types``, if given); ``pm.send(command)`` sends a
        command once, continuing the triggering workflow unless told otherwise; ``pm.state``
        is the workflow's state folded by ``apply(state, event)`` from ``state()``.
        ``subscription_options`` go to its subscriptions (``pm.NAME.STREAM``, mode
        ``consumer_group``, 10 delivery attempts unless given). See
        :mod:`svrnty_events.process_managers` and docs/workflows.md."""
        def decorate(func: C) -> C:
            pms.register(self, name, streams, func, event_types=event_types, state=state,
                         apply=apply, **subscription_options)
            return func
        return decorate

    def upcaster(self, event_type: type | str, *, from_version: int) -> Callable[[C], C]:
        """Register ``upcaster(payload: dict) -> dict``: turns the stored payload of
        ``event_type`` version ``from_version`` into version ``from_version + 1`` before it is
        decoded (see :mod:`svrnty_events.upcasting`). Raises UpcasterError for a version
        below 1 or a second upcaster of the same step."""
        name = event_type if isinstance(event_type, str) else event_type_name(event_type)

        def decorate(func: C) -> C:
            self.event_types.upcasters.add(name, from_version, func)
            return func
        return decorate

    def projection(self, name: str, *, stream: type[Workflow] | str,
                   event_types: Sequence[type | str] = (), batch_size: int = 100,
                   poll_interval: float = 1.0) -> Callable[[Callable[..., Any]], Projection]:
        """Register ``handler(event, ctx)``, which updates a read model from the events of
        ``stream`` (only ``event_types``, if given) in stream order; the store keeps its
        position. See :mod:`svrnty_events.projections`: on a database store a plain-function
        handler writes through ``ctx.connection`` in the store's transaction with the
        checkpoint. ``poll_interval``: how soon appends made by another process are seen
        (the host's own appends wake it at once). Raises ConfigError for a duplicate name."""
        stream_name = stream if isinstance(stream, str) else \
            self.workflows.get(stream) or stream.default_stream_name()

        def decorate(func: Callable[..., Any]) -> Projection:
            if name in self.projections:
                raise ConfigError(f"projection {name}", f'duplicate projection name "{name}"')
            projection = make_projection(name, stream_name, func, event_types=event_types,
                                         batch_size=batch_size, poll_interval=poll_interval)
            for t in event_types:
                if not isinstance(t, str):
                    self.event_types.add(t)
            self.projections[name] = projection
            return projection
        return decorate

    # --- run -------------------------------------------------------------------------------------

    def build_host(self) -> EventStreamingHost:
        """Load plugins and validate the configuration (raises before anything starts)."""
        pms.prepare(self)
        pm = plugin_registry.get_plugin_manager(self.load_entrypoints, self.extra_plugins)
        registry = plugin_registry.collect_registry(pm)
        return EventStreamingHost(self, pm, registry)

    @asynccontextmanager
    async def run(self, *, grace: float = 5.0) -> AsyncIterator[EventStreamingHost]:
        """Start a host; stop it on exit, giving providers ``grace`` seconds to finish."""
        host = self.build_host()
        await host.start()
        try:
            yield host
        finally:
            await host.stop(grace)


class EventStreamingHost:
    """A running event-streaming system. Build with ``EventStreaming.run()``."""

    def __init__(self, streaming: EventStreaming, pm: pluggy.PluginManager,
                 registry: Registry) -> None:
        self.streaming = streaming
        self.pm = pm
        self.registry = registry
        self.config = streaming.config
        self.handlers = streaming.handlers
        self.streams: dict[str, StreamConfig] = {}
        self.providers: dict[str, DeliveryProvider] = {}
        #: what plugins other than delivery providers serve (e.g. a metrics endpoint), listed
        #: by endpoints() and the banner
        self.extra_endpoints: list[str] = []
        self.started = False
        self._validate()
        self.store: EventStore = self._store_reg.factory(self._store_options)
        lifecycle.check_store(self)
        self.engine = SubscriptionEngine(self.store, streaming.event_types)
        #: the projections and their operations (status, rebuild, reset)
        self.projections = Projections(self, list(streaming.projections.values()))
        if streaming.projections:
            pm.register(self.projections.plugin, name="projections")
        self.engine.observers = plugin_registry.observation_hooks(pm)
        #: pm.hook when a plugin implements command_context / publish_context, else None
        self._contexts = plugin_registry.context_hooks(pm)
        #: the task that appends due scheduled events (stores that keep them)
        self.scheduler: Scheduler | None = None
        #: the tasks that run the process managers
        self.process_managers = pms.ProcessManagerRunner(self)

    # --- validation: everything is checked before anything starts -----------------------------

    def _validate(self) -> None:
        cfg, src = self.config, self.streaming.source
        store_reg = self.registry.get("event store", cfg.store.plugin, path="store.plugin",
                                      source=src)
        self._store_reg = store_reg
        self._store_options = _options(store_reg.options, cfg.store.options, "store", src)
        caps = store_reg.factory.capabilities if hasattr(store_reg.factory, "capabilities") \
            else None
        for i, stream in enumerate(cfg.streams):
            if stream.name in self.streams:
                raise ConfigError(f"streams[{i}].name", f'duplicate stream name "{stream.name}"',
                                  source=src)
            if not 1 <= stream.partitions <= MAX_PARTITIONS:
                raise ConfigError(f"streams[{i}].partitions",
                                  f"must be >= 1 and <= {MAX_PARTITIONS}", source=src)
            if stream.delivery_semantics == DeliverySemantics.EXACTLY_ONCE:
                if stream.type != StreamType.PERSISTENT:
                    raise ConfigError(f"streams[{i}].delivery_semantics",
                                      "exactly_once needs a persistent stream (type = "
                                      '"persistent") to deduplicate appends by event id',
                                      source=src)
                if caps is not None and not caps.idempotent_append:
                    raise ConfigError(f"streams[{i}].delivery_semantics",
                                      f'store "{cfg.store.plugin}" cannot deduplicate appends, '
                                      "so it cannot give exactly_once", source=src)
            lifecycle.validate_stream(stream, i, source=src,
                                      event_types=self.streaming.event_types)
            self.streams[stream.name] = stream
        if cfg.schedule_poll_interval <= 0:
            raise ConfigError("schedule_poll_interval", "must be > 0 seconds", source=src)
        for workflow, stream_name in self.streaming.workflows.items():
            if stream_name not in self.streams:
                raise ConfigError("streams", f"workflow {workflow.__name__} is bound to stream "
                                  f'"{stream_name}", which is not configured', source=src)
        for handler in self.handlers.commands.values():
            assert handler.workflow is not None
            if handler.workflow not in self.streaming.workflows:
                raise ConfigError(
                    "streams", f"command {handler.name} uses workflow {handler.workflow.__name__}"
                    f", which has no stream: call add_stream({handler.workflow.__name__})",
                    source=src)
        self._modes: dict[str, Any] = {}
        names: set[str] = set()
        for i, sub in enumerate(cfg.subscriptions):
            if sub.name in names:
                raise ConfigError(f"subscriptions[{i}].name",
                                  f'duplicate subscription name "{sub.name}"', source=src)
            names.add(sub.name)
            if sub.stream not in self.streams:
                raise ConfigError(f"subscriptions[{i}].stream",
                                  f'unknown stream "{sub.stream}"; streams: '
                                  f'{", ".join(sorted(self.streams)) or "none"}', source=src)
            mode_reg = self.registry.get("subscription mode", sub.mode,
                                         path=f"subscriptions[{i}].mode", source=src)
            options = _options(mode_reg.options, sub.options, f"subscriptions[{i}].options", src)
            self._modes[sub.name] = (mode_reg, options)
            partitions = getattr(options, "partitions", None)
            stream_cfg = self.streams[sub.stream]
            if partitions is not None and partitions != stream_cfg.partitions:
                j = next(k for k, st in enumerate(cfg.streams) if st.name == sub.stream)
                raise ConfigError(
                    f"subscriptions[{i}].options.partitions",
                    f"{partitions} contradicts streams[{j}].partitions = "
                    f'{stream_cfg.partitions} (stream "{sub.stream}"): partitions belong to '
                    f"the stream; drop the option or set it to {stream_cfg.partitions}",
                    source=src)
            for field_name in ("visibility_timeout", "heartbeat_timeout"):
                if getattr(sub, field_name) <= 0:
                    raise ConfigError(f"subscriptions[{i}].{field_name}", "must be > 0",
                                      source=src)
            if not 0.0 <= sub.backoff_jitter < 1.0:
                raise ConfigError(f"subscriptions[{i}].backoff_jitter",
                                  "must be >= 0 and < 1", source=src)
            if sub.window < 1:
                raise ConfigError(f"subscriptions[{i}].window", "must be >= 1", source=src)
            if sub.max_delivery_attempts < 0:
                raise ConfigError(f"subscriptions[{i}].max_delivery_attempts", "must be >= 0",
                                  source=src)
        if cfg.telemetry is not None and self.pm.get_plugin("telemetry") is None:
            raise ConfigError("telemetry", "configured, but the telemetry plugin is not loaded: "
                              "pip install svrnty-events-telemetry (or add it to "
                              f"{plugin_registry.PLUGINS_ENV})", source=src)
        self._provider_regs = {}
        for name, options in cfg.delivery.items():
            reg = self.registry.get("delivery provider", name, path=f"delivery.{name}",
                                    source=src)
            self._provider_regs[name] = (reg, _options(reg.options, options, f"delivery.{name}",
                                                       src))

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._warn_unknown_event_types()
        await self.store.start()
        try:
            for stream in self.streams.values():
                await self.store.create_stream(stream)
            for sub in self.config.subscriptions:
                await self.store.create_subscription(sub)
                mode_reg, options = self._modes[sub.name]
                mode = mode_reg.factory(sub, options) if options is not None \
                    else mode_reg.factory(sub)
                self.engine.add(SubscriptionRuntime(sub, self.streams[sub.stream], mode))
                if mode.shared:
                    await self.store.ensure_group(sub.name, "")
            if type(self.store).capabilities.schedules:
                self.scheduler = Scheduler(self, poll_interval=self.config.schedule_poll_interval)
                self.scheduler.start()
            await self.projections.start()
            for name, (reg, options) in self._provider_regs.items():
                provider = reg.factory(self, options)
                self.providers[name] = provider
                await provider.start()
            self.process_managers.start()
            self.started = True
            for result in self.pm.hook.host_started(host=self):
                if inspect.isawaitable(result):
                    await result
            # a plugin may register an observer of its own for this host as it starts
            self.engine.observers = plugin_registry.observation_hooks(self.pm)
            self._contexts = plugin_registry.context_hooks(self.pm)
            if self.config.gc_freeze:
                freeze_startup_heap()
        except BaseException:
            await self.stop()
            raise

    def _warn_unknown_event_types(self) -> None:
        """Log a warning per subscription whose event-type filters name types no class known
        here has (the host's event types or any Event subclass): likely a typo, which would
        make the subscription settle every event undelivered. Not an error: another service
        may publish events of those types."""
        known = self.streaming.event_types.names()
        for sub in self.config.subscriptions:
            unknown = [f'{field} "{name}" ({_close_names(name, sorted(known))})'
                       for field in ("event_types", "terminal_event_types")
                       for name in getattr(sub, field) if name not in known]
            if unknown:
                log.warning(
                    'subscription "%s" filters on event types no known event class has: %s. '
                    "Harmless if another service publishes events of these types; otherwise "
                    "fix the names or register the classes (register_event_types)",
                    sub.name, "; ".join(unknown))

    async def stop(self, grace: float = 5.0) -> None:
        """Stop providers (remote streams end with a retryable status), release in-process
        consumers' events, close the store. May be called twice."""
        if getattr(self, "_stopped", False):
            return
        self._stopped = True
        try:
            if self.started:
                for result in self.pm.hook.host_stopping(host=self):
                    if inspect.isawaitable(result):
                        await result
        finally:
            await self.process_managers.stop()
            if self.scheduler is not None:
                await self.scheduler.stop()
            for provider in reversed(list(self.providers.values())):
                try:
                    await provider.stop(grace)
                except Exception:
                    log.exception("delivery provider failed to stop")
            await self.projections.stop()
            await self.engine.close()
            await self.store.close()

    # --- commands and queries ---------------------------------------------------------------

    async def send(self, command: Any, workflow_id: str | None = None, *,
                   headers: dict[str, str] | None = None) -> CommandResult:
        """Run the command's handler in a new workflow, or continue ``workflow_id``.

        The events it emits are appended as one batch only if it returns; the batch carries the
        workflow id as correlation id. Raises UnknownWorkflowError for an unknown workflow id and
        ConcurrencyError when another command appended to the same workflow meanwhile, and
        WorkflowClosedError (WorkflowExpiredError) for a workflow that expired or ended."""
        return await self._dispatch(command, workflow_id, headers=headers)

    async def _dispatch(self, command: Any, workflow_id: str | None = None, *,
                        headers: dict[str, str] | None = None, new_id: str | None = None,
                        ids: Callable[[str], str] | None = None) -> CommandResult:
        """``send``; ``new_id`` names a new workflow, ``ids(key)`` derives the ids of the
        events and schedules (a process manager's re-run then appends nothing twice)."""
        handler = self.handlers.for_payload(command, "command")
        workflow_type = handler.workflow
        assert workflow_type is not None
        stream = self.streaming.workflows[workflow_type]
        contexts = self._contexts
        if contexts is None:
            return await self._run_command(handler, stream, command, workflow_id, headers,
                                           new_id, ids)
        with ExitStack() as stack:
            for manager in contexts.command_context(command=command, command_name=handler.name,
                                                    stream=stream, workflow_id=workflow_id):
                stack.enter_context(manager)
            return await self._run_command(handler, stream, command, workflow_id, headers,
                                           new_id, ids)

    async def _run_command(self, handler: Handler, stream: str, command: Any,
                           workflow_id: str | None, headers: dict[str, str] | None,
                           new_id: str | None,
                           ids: Callable[[str], str] | None) -> CommandResult:
        workflow_type = handler.workflow
        assert workflow_type is not None
        stream_cfg = self.streams[stream]
        if workflow_id is None:
            workflow = workflow_type(new_id)
        else:
            version = await self.store.correlation_version(stream, workflow_id)
            if version == 0:
                raise UnknownWorkflowError(workflow_id, stream)
            await lifecycle.check_open(self, stream_cfg, workflow_id)
            workflow = workflow_type(workflow_id, is_new=False, version=version)
            if workflow._declares_state():
                await lifecycle.rebuild_state(self, workflow, stream)
        workflow._handler = handler.label  # emit() names it in InvalidEventError
        workflow._ids = ids
        value = handler.func(command, workflow)
        if inspect.isawaitable(value):
            value = await value
        lifecycle.check_schedules(self, workflow)
        event_types = self.streaming.event_types
        for e, _ in workflow._pending:
            if event_type_name(type(e)) not in event_types:
                event_types.add(type(e))
        events = [record(e, stream=stream, correlation_id=workflow.id, headers=h,
                         event_id=None if ids is None else ids(f"event/{i}"))
                  for i, (e, h) in enumerate(workflow._pending)]
        if headers:
            events = [msgspec.structs.replace(e, headers={**headers, **e.headers})
                      for e in events]
        if workflow._schedules or events and (stream_cfg.workflow_timeout is not None
                                              or stream_cfg.workflow_expiry is not None):
            # saved first, anchored to the events: a crash after the append loses none
            await lifecycle.before_append(self, stream_cfg, workflow, events)
        appended = await self._append(stream, events, workflow.version) if events else []
        if appended or workflow._schedules or workflow._cancels:
            await lifecycle.after_append(self, stream_cfg, workflow, appended)
        return CommandResult(value, workflow.id if events or not workflow.is_new else None,
                             appended)

    async def _append(self, stream: str, events: list[RecordedEvent],
                      expected_version: int | None = None) -> list[RecordedEvent]:
        """Append through the store, inside the plugins' publish contexts, and report it."""
        contexts = self._contexts
        if contexts is None:
            appended = await self.store.append(stream, events, expected_version=expected_version)
        else:
            with ExitStack() as stack:
                for manager in contexts.publish_context(stream=stream, events=events):
                    stack.enter_context(manager)
                appended = await self.store.append(stream, events,
                                                   expected_version=expected_version)
        if appended and (observers := self.engine.observers) is not None:
            # inside an application transaction (an outbox), once it commits
            self.store.after_commit(
                lambda: observers.events_appended(stream=stream, events=appended))
        return appended

    async def query(self, query: Any) -> Any:
        handler = self.handlers.for_payload(query, "query")
        value = handler.func(query)
        if inspect.isawaitable(value):
            value = await value
        return value

    async def send_named(self, name: str, payload: Any,
                         workflow_id: str | None = None) -> CommandResult:
        """Decode ``payload`` (JSON or a mapping) for command ``name`` and send it. Raises
        ValidationError naming the field, UnknownCommandError for an unknown name."""
        handler = self.handlers.named(name, "command")
        return await self.send(self.handlers.decode(handler, payload), workflow_id)

    async def query_named(self, name: str, payload: Any) -> Any:
        handler = self.handlers.named(name, "query")
        return await self.query(self.handlers.decode(handler, payload))

    # --- streams -----------------------------------------------------------------------------------

    def subscription_config(self, subscription: str) -> SubscriptionConfig:
        """The configuration of a subscription. Raises UnknownSubscriptionError."""
        return self.engine.runtime(subscription).config

    def shares_group(self, subscription: str) -> bool:
        """True when the subscription's consumers draw from one delivery group (exclusive,
        consumer_group): a consumer then has no cursor of its own unless it is scoped to a
        correlation id. Raises UnknownSubscriptionError."""
        return self.engine.runtime(subscription).mode.shared

    def stream_config(self, stream: str) -> StreamConfig:
        try:
            return self.streams[stream]
        except KeyError:
            raise UnknownStreamError(stream, self.streams) from None

    async def publish(self, stream: str, events: Sequence[RecordedEvent], *,
                      external: bool = True) -> list[RecordedEvent]:
        """Append already-encoded events, e.g. from another service. With ``external`` only
        streams of scope ``cross_service`` accept them (StreamScopeError otherwise)."""
        config = self.stream_config(stream)
        if external and config.scope != StreamScope.CROSS_SERVICE:
            raise StreamScopeError(stream)
        own_headers = self._contexts is not None  # publish contexts may add to the headers
        events = [e if e.stream == stream and not own_headers
                  else msgspec.structs.replace(e, stream=stream, headers=dict(e.headers))
                  for e in events]
        return await self._append(stream, events)

    async def read(self, stream: str, **kwargs: Any) -> list[RecordedEvent]:
        self.stream_config(stream)
        return await self.store.read(stream, **kwargs)

    async def stream_info(self, stream: str) -> StreamInfo:
        self.stream_config(stream)
        return await self.store.stream_info(stream)

    # --- consumers ---------------------------------------------------------------------------------

    def subscribe(self, subscription: str, consumer_id: str, *, auto_ack: bool = True,
                  correlation_id: str | None = None,
                  event_types: Iterable[type | str] | None = None,
                  terminal_event_types: Iterable[type | str] | None = None,
                  window: int | None = None, heartbeat_timeout: float | None = None,
                  start: int | datetime | str | None = None) -> Subscriber:
        """Consume a subscription in-process: ``async with host.subscribe(...) as deliveries:
        async for delivery in deliveries: ...``. See :class:`Subscriber` for ack styles.
        Raises ConfigError for ``window < 1``."""
        _check_window(window, "subscribe(window)")
        return Subscriber(self.engine, subscription, consumer_id, auto_ack=auto_ack,
                          correlation_id=correlation_id, event_types=event_types,
                          terminal_event_types=terminal_event_types, window=window,
                          heartbeat_timeout=heartbeat_timeout, start=start)

    async def open_consumer(self, subscription: str, consumer_id: str,
                            **options: Any) -> Consumer:
        """The consumer API delivery providers build on (see SubscriptionEngine.open_consumer).
        Raises ConfigError for ``window < 1``."""
        _check_window(options.get("window"), "open_consumer(window)")
        return await self.engine.open_consumer(subscription, consumer_id, **options)

    def consumers(self, subscription: str) -> list[dict[str, Any]]:
        return [c.info() for c in self.engine.runtime(subscription).consumers.values()]

    # --- dead letters and receipts -----------------------------------------------------------

    async def subscription_stats(self, subscription: str | None = None) -> list[dict[str, Any]]:
        """Per subscription (one, or every one): ``lag`` (events appended and not yet settled,
        summed over its delivery groups) and ``groups`` (group -> lag), both None when the
        store does not report lags; ``in_flight`` and ``consumers`` of this host; and
        ``dead_letters``, ``oldest_dead_letter_age`` (seconds, 0 when none). Raises
        UnknownSubscriptionError."""
        names = [subscription] if subscription is not None else list(self.engine.subscriptions)
        now = time.time()
        out: list[dict[str, Any]] = []
        for name in names:
            runtime = self.engine.runtime(name)
            try:
                groups: dict[str, int] | None = await self.store.group_lags(name)
            except NotImplementedError:
                groups = None
            letters = await self.store.list_dead_letters(name)
            oldest = min((d.dead_lettered_at.timestamp() for d in letters), default=None)
            out.append({
                "subscription": name, "stream": runtime.config.stream,
                "mode": str(runtime.config.mode),
                "lag": None if groups is None else sum(groups.values()), "groups": groups,
                "in_flight": sum(len(c.held) for c in runtime.consumers.values()),
                "consumers": len(runtime.consumers), "dead_letters": len(letters),
                "oldest_dead_letter_age": 0.0 if oldest is None else max(now - oldest, 0.0)})
        return out

    async def dead_letters(self, subscription: str, *, limit: int | None = None
                           ) -> list[DeadLetter]:
        self.engine.runtime(subscription)
        return await self.store.list_dead_letters(subscription, limit=limit)

    async def replay_dead_letters(self, subscription: str,
                                  event_ids: Sequence[str] | None = None) -> int:
        self.engine.runtime(subscription)
        return await self.store.replay_dead_letters(subscription, event_ids)

    async def purge_dead_letters(self, subscription: str,
                                 event_ids: Sequence[str] | None = None) -> int:
        self.engine.runtime(subscription)
        return await self.store.purge_dead_letters(subscription, event_ids)

    async def receipts(self, subscription: str, *, event_id: str | None = None,
                       consumer_id: str | None = None) -> list[Receipt]:
        self.engine.runtime(subscription)
        return await self.store.list_receipts(subscription, event_id=event_id,
                                              consumer_id=consumer_id)

    # --- description ---------------------------------------------------------------------------

    def endpoints(self) -> list[str]:
        return [*(e for p in self.providers.values() for e in p.endpoints()),
                *self.extra_endpoints]

    def banner(self, extra_endpoints: Iterable[str] = ()) -> str:
        """The startup banner: plugins, store, streams, subscriptions, endpoints."""
        lines = ["svrnty-events host started"]
        plugins = plugin_registry.list_plugins(self.pm, self.registry)
        lines.append("  plugins:       " + ", ".join(
            f"{p.name}" + (f" ({p.distribution} {p.version})" if p.distribution else "")
            for p in plugins))
        lines.append(f"  store:         {self.config.store.plugin}")
        for s in self.streams.values():
            lines.append(f"  stream:        {s.name} ({s.type}, {s.delivery_semantics}, "
                         f"{s.scope})")
        for sub in self.config.subscriptions:
            lines.append(f"  subscription:  {sub.name} -> {sub.stream} ({sub.mode})")
        for e in [*self.endpoints(), *extra_endpoints]:
            lines.append(f"  endpoint:      {e}")
        return "\n".join(lines)


def _close_names(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    return "did you mean " + " or ".join(f'"{c}"' for c in close) + "?" if close \
        else "no known type is close"


def _check_window(window: int | None, path: str) -> None:
    # the same error as `window = 0` in a configuration file (see _validate)
    if window is not None and window < 1:
        raise ConfigError(path, "must be >= 1")


def _options(options_type: type | None, raw: dict[str, Any], path: str,
             source: str | None) -> Any:
    if options_type is None:
        if raw:
            raise ConfigError(f"{path}.{next(iter(raw))}", "this plugin takes no options",
                              source=source)
        return None
    return convert(raw, options_type, prefix=path, source=source)
