"""Redelivery delays: fixed, exponential with a cap, and jitter within its bounds."""

import msgspec
import pytest

from svrnty_events import EventStreaming, SubscriptionConfig
from svrnty_events.errors import ConfigError


def test_fixed_and_exponential_backoff_with_cap():
    fixed = SubscriptionConfig(name="a", stream="s", redelivery_delay=0.5)
    assert [fixed.redelivery_delay_for(n) for n in (1, 2, 5)] == [0.5, 0.5, 0.5]
    exp = msgspec.convert({"name": "a", "stream": "s", "redelivery_delay": 1.0,
                           "backoff": "exponential", "max_redelivery_delay": 10.0},
                          SubscriptionConfig)
    assert [exp.redelivery_delay_for(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]


def test_jitter_spreads_delays_within_its_fraction():
    sub = SubscriptionConfig(name="a", stream="s", redelivery_delay=1.0, backoff_jitter=0.2)
    delays = [sub.redelivery_delay_for(1) for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert len({round(d, 6) for d in delays}) > 50  # not in lockstep


def test_jitter_out_of_range_is_refused_naming_the_field():
    streaming = EventStreaming()
    streaming.add_stream("s")
    streaming.add_subscription("s", "a", backoff_jitter=1.5)
    with pytest.raises(ConfigError) as err:
        streaming.build_host()
    assert str(err.value) == "subscriptions[0].backoff_jitter: must be >= 0 and < 1"
