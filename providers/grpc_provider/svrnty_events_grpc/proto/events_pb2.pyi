import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeliveryMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_MODE_UNSPECIFIED: _ClassVar[DeliveryMode]
    DELIVERY_MODE_IMMEDIATE: _ClassVar[DeliveryMode]
    DELIVERY_MODE_BATCHED: _ClassVar[DeliveryMode]
DELIVERY_MODE_UNSPECIFIED: DeliveryMode
DELIVERY_MODE_IMMEDIATE: DeliveryMode
DELIVERY_MODE_BATCHED: DeliveryMode

class SubscribeRequest(_message.Message):
    __slots__ = ("subscribe", "ack", "nack", "heartbeat", "unsubscribe", "in_progress", "release")
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    NACK_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    subscribe: Subscribe
    ack: Ack
    nack: Nack
    heartbeat: Heartbeat
    unsubscribe: Unsubscribe
    in_progress: InProgress
    release: Release
    def __init__(self, subscribe: _Optional[_Union[Subscribe, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., nack: _Optional[_Union[Nack, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., unsubscribe: _Optional[_Union[Unsubscribe, _Mapping]] = ..., in_progress: _Optional[_Union[InProgress, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ...) -> None: ...

class Subscribe(_message.Message):
    __slots__ = ("subscription", "consumer_id", "correlation_id", "event_types", "terminal_event_types", "delivery_mode", "window", "metadata", "max_batch_size", "max_batch_delay_ms", "from_sequence", "from_time", "from_beginning", "new_only")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_MODE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    FROM_BEGINNING_FIELD_NUMBER: _ClassVar[int]
    NEW_ONLY_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    consumer_id: str
    correlation_id: str
    event_types: _containers.RepeatedScalarFieldContainer[str]
    terminal_event_types: _containers.RepeatedScalarFieldContainer[str]
    delivery_mode: DeliveryMode
    window: int
    metadata: _containers.ScalarMap[str, str]
    max_batch_size: int
    max_batch_delay_ms: int
    from_sequence: int
    from_time: _timestamp_pb2.Timestamp
    from_beginning: bool
    new_only: bool
    def __init__(self, subscription: _Optional[str] = ..., consumer_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ..., terminal_event_types: _Optional[_Iterable[str]] = ..., delivery_mode: _Optional[_Union[DeliveryMode, str]] = ..., window: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., max_batch_size: _Optional[int] = ..., max_batch_delay_ms: _Optional[int] = ..., from_sequence: _Optional[int] = ..., from_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., from_beginning: _Optional[bool] = ..., new_only: _Optional[bool] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("event_ids",)
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, event_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Nack(_message.Message):
    __slots__ = ("event_id", "delay_seconds", "reason")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    delay_seconds: float
    reason: str
    def __init__(self, event_id: _Optional[str] = ..., delay_seconds: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InProgress(_message.Message):
    __slots__ = ("event_ids",)
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, event_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("event_ids",)
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, event_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Unsubscribe(_message.Message):
    __slots__ = ("unprocessed_event_ids",)
    UNPROCESSED_EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    unprocessed_event_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, unprocessed_event_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("subscribed", "events", "completed", "draining")
    SUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    subscribed: Subscribed
    events: EventBatch
    completed: Completed
    draining: Draining
    def __init__(self, subscribed: _Optional[_Union[Subscribed, _Mapping]] = ..., events: _Optional[_Union[EventBatch, _Mapping]] = ..., completed: _Optional[_Union[Completed, _Mapping]] = ..., draining: _Optional[_Union[Draining, _Mapping]] = ...) -> None: ...

class Subscribed(_message.Message):
    __slots__ = ("subscription", "consumer_id", "stream", "window", "max_batch_size", "heartbeat_timeout_seconds")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    consumer_id: str
    stream: str
    window: int
    max_batch_size: int
    heartbeat_timeout_seconds: float
    def __init__(self, subscription: _Optional[str] = ..., consumer_id: _Optional[str] = ..., stream: _Optional[str] = ..., window: _Optional[int] = ..., max_batch_size: _Optional[int] = ..., heartbeat_timeout_seconds: _Optional[float] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[DeliveredEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[DeliveredEvent, _Mapping]]] = ...) -> None: ...

class DeliveredEvent(_message.Message):
    __slots__ = ("id", "type", "correlation_id", "stream", "sequence", "timestamp", "attempt", "headers", "data", "content_type", "partition", "version")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    correlation_id: str
    stream: str
    sequence: int
    timestamp: _timestamp_pb2.Timestamp
    attempt: int
    headers: _containers.ScalarMap[str, str]
    data: bytes
    content_type: str
    partition: int
    version: int
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., correlation_id: _Optional[str] = ..., stream: _Optional[str] = ..., sequence: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., headers: _Optional[_Mapping[str, str]] = ..., data: _Optional[bytes] = ..., content_type: _Optional[str] = ..., partition: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class Completed(_message.Message):
    __slots__ = ("event_id", "event_type")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    event_type: str
    def __init__(self, event_id: _Optional[str] = ..., event_type: _Optional[str] = ...) -> None: ...

class Draining(_message.Message):
    __slots__ = ("grace_seconds",)
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    grace_seconds: float
    def __init__(self, grace_seconds: _Optional[float] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("stream", "events")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    stream: str
    events: _containers.RepeatedCompositeFieldContainer[NewEvent]
    def __init__(self, stream: _Optional[str] = ..., events: _Optional[_Iterable[_Union[NewEvent, _Mapping]]] = ...) -> None: ...

class NewEvent(_message.Message):
    __slots__ = ("id", "type", "correlation_id", "data", "content_type", "headers", "timestamp")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    correlation_id: str
    data: bytes
    content_type: str
    headers: _containers.ScalarMap[str, str]
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., correlation_id: _Optional[str] = ..., data: _Optional[bytes] = ..., content_type: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[PublishedEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[PublishedEvent, _Mapping]]] = ...) -> None: ...

class PublishedEvent(_message.Message):
    __slots__ = ("id", "sequence")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    sequence: int
    def __init__(self, id: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("subscription", "limit")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    limit: int
    def __init__(self, subscription: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters",)
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("event", "subscription", "consumer_id", "reason", "attempts", "dead_lettered_at", "error", "group")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    event: DeliveredEvent
    subscription: str
    consumer_id: str
    reason: str
    attempts: int
    dead_lettered_at: _timestamp_pb2.Timestamp
    error: str
    group: str
    def __init__(self, event: _Optional[_Union[DeliveredEvent, _Mapping]] = ..., subscription: _Optional[str] = ..., consumer_id: _Optional[str] = ..., reason: _Optional[str] = ..., attempts: _Optional[int] = ..., dead_lettered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., group: _Optional[str] = ...) -> None: ...

class DeadLetterSelection(_message.Message):
    __slots__ = ("subscription", "event_ids")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subscription: _Optional[str] = ..., event_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeadLetterCount(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class GetStreamInfoRequest(_message.Message):
    __slots__ = ("stream",)
    STREAM_FIELD_NUMBER: _ClassVar[int]
    stream: str
    def __init__(self, stream: _Optional[str] = ...) -> None: ...

class StreamInfo(_message.Message):
    __slots__ = ("name", "type", "delivery_semantics", "scope", "length", "first_sequence", "next_sequence", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_SEMANTICS_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    delivery_semantics: str
    scope: str
    length: int
    first_sequence: int
    next_sequence: int
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., delivery_semantics: _Optional[str] = ..., scope: _Optional[str] = ..., length: _Optional[int] = ..., first_sequence: _Optional[int] = ..., next_sequence: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListConsumersRequest(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    def __init__(self, subscription: _Optional[str] = ...) -> None: ...

class ListConsumersResponse(_message.Message):
    __slots__ = ("consumers",)
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    consumers: _containers.RepeatedCompositeFieldContainer[ConsumerInfo]
    def __init__(self, consumers: _Optional[_Iterable[_Union[ConsumerInfo, _Mapping]]] = ...) -> None: ...

class ConsumerInfo(_message.Message):
    __slots__ = ("consumer_id", "subscription", "in_flight", "delivered", "correlation_id", "connected_at", "metadata", "group")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    consumer_id: str
    subscription: str
    in_flight: int
    delivered: int
    correlation_id: str
    connected_at: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    group: str
    def __init__(self, consumer_id: _Optional[str] = ..., subscription: _Optional[str] = ..., in_flight: _Optional[int] = ..., delivered: _Optional[int] = ..., correlation_id: _Optional[str] = ..., connected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., group: _Optional[str] = ...) -> None: ...

class ProjectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ProjectionStatus(_message.Message):
    __slots__ = ("name", "stream", "position", "lag", "state", "transactional", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONAL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    stream: str
    position: int
    lag: int
    state: str
    transactional: bool
    error: str
    def __init__(self, name: _Optional[str] = ..., stream: _Optional[str] = ..., position: _Optional[int] = ..., lag: _Optional[int] = ..., state: _Optional[str] = ..., transactional: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ProjectionStatusList(_message.Message):
    __slots__ = ("projections",)
    PROJECTIONS_FIELD_NUMBER: _ClassVar[int]
    projections: _containers.RepeatedCompositeFieldContainer[ProjectionStatus]
    def __init__(self, projections: _Optional[_Iterable[_Union[ProjectionStatus, _Mapping]]] = ...) -> None: ...

class ResetProjectionRequest(_message.Message):
    __slots__ = ("name", "position")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    name: str
    position: int
    def __init__(self, name: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class RebuildProgress(_message.Message):
    __slots__ = ("position", "target", "done")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    position: int
    target: int
    done: ProjectionStatus
    def __init__(self, position: _Optional[int] = ..., target: _Optional[int] = ..., done: _Optional[_Union[ProjectionStatus, _Mapping]] = ...) -> None: ...

class SubscriptionStatsRequest(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    def __init__(self, subscription: _Optional[str] = ...) -> None: ...

class GroupLag(_message.Message):
    __slots__ = ("group", "lag")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    group: str
    lag: int
    def __init__(self, group: _Optional[str] = ..., lag: _Optional[int] = ...) -> None: ...

class SubscriptionStats(_message.Message):
    __slots__ = ("subscription", "stream", "mode", "lag_known", "lag", "groups", "in_flight", "consumers", "dead_letters", "oldest_dead_letter_age_seconds")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    LAG_KNOWN_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_DEAD_LETTER_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    stream: str
    mode: str
    lag_known: bool
    lag: int
    groups: _containers.RepeatedCompositeFieldContainer[GroupLag]
    in_flight: int
    consumers: int
    dead_letters: int
    oldest_dead_letter_age_seconds: float
    def __init__(self, subscription: _Optional[str] = ..., stream: _Optional[str] = ..., mode: _Optional[str] = ..., lag_known: _Optional[bool] = ..., lag: _Optional[int] = ..., groups: _Optional[_Iterable[_Union[GroupLag, _Mapping]]] = ..., in_flight: _Optional[int] = ..., consumers: _Optional[int] = ..., dead_letters: _Optional[int] = ..., oldest_dead_letter_age_seconds: _Optional[float] = ...) -> None: ...

class SubscriptionStatsList(_message.Message):
    __slots__ = ("subscriptions",)
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[SubscriptionStats]
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[SubscriptionStats, _Mapping]]] = ...) -> None: ...
