"""Discovery through the entry point, configuration by name in TOML, and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from webhook_support import SECRET, OrderWorkflow, Receiver, endpoint, make_streaming, orders

from svrnty_events import EventStreaming
from svrnty_events.errors import ConfigError
from svrnty_events_webhook import SIGNATURE_HEADER, verify

CLI = Path(sys.executable).with_name("svrnty-events")

TOML = """\
[[streams]]
name = "orders"

[[subscriptions]]
name = "billing"
stream = "orders"
mode = "exclusive"
redelivery_delay = 0.05
backoff = "exponential"

[delivery.webhook]
user_agent = "acme-hooks/2"

[[delivery.webhook.endpoints]]
url = "{url}"
subscriptions = ["billing"]
secret_env = "ACME_WEBHOOK_SECRET"
concurrency = 2
timeout = 5.0
"""


def test_discovered_through_its_entry_point() -> None:
    env = {**os.environ, "SVRNTY_EVENTS_PLUGINS": "memory,webhook"}
    out = subprocess.run([str(CLI), "plugins", "--json"], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    [plugin] = [p for p in json.loads(out) if p["name"] == "webhook"]
    assert plugin["distribution"] == "svrnty-events-webhook"
    assert plugin["registered"] == {"delivery provider": ["webhook"]}
    assert plugin["hooks"] == ["register_delivery_providers"]


async def test_configured_by_name_in_toml(receiver: Receiver, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_WEBHOOK_SECRET", SECRET)
    path = tmp_path / "svrnty-events.toml"
    path.write_text(TOML.format(url=receiver.url))
    streaming = EventStreaming.from_toml(path)
    streaming.bind_workflow(OrderWorkflow, "orders")
    async with streaming.run() as host:
        await host.publish("orders", orders(2), external=False)
        got = await receiver.wait_count(2)
        assert host.endpoints() == [f"webhook {receiver.url}: POST {receiver.url} <- billing"]
    for request in got:
        verify(SECRET, request.body, request.headers[SIGNATURE_HEADER])
        assert request.headers["User-Agent"] == "acme-hooks/2"


def config_error(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        EventStreaming.from_toml(path).build_host()
    return err.value


@pytest.mark.parametrize(("change", "path", "message"), [
    (("concurrency = 2", "concurency = 2"), "delivery.webhook.endpoints[0].concurency",
     "unknown field"),
    (("concurrency = 2", 'concurrency = "2"'), "delivery.webhook.endpoints[0].concurrency",
     "expected int, got str"),
    (("concurrency = 2", "concurrency = 0"), "delivery.webhook.endpoints[0]",
     "concurrency: must be >= 1"),
    (('user_agent = "acme-hooks/2"', "retries = 3"), "delivery.webhook.retries",
     "unknown field"),
    (('subscriptions = ["billing"]', ""), "delivery.webhook.endpoints[0].subscriptions",
     "required field is missing"),
    (('secret_env = "ACME_WEBHOOK_SECRET"', ""), "delivery.webhook.endpoints[0]",
     "secret: set exactly one of secret and secret_env"),
    (('secret_env = "ACME_WEBHOOK_SECRET"', 'secret = "short"'), "delivery.webhook.endpoints[0]",
     "secret: must be at least 16 characters"),
    (("timeout = 5.0", "timeout = 0.0"), "delivery.webhook.endpoints[0]", "timeout: must be > 0"),
])
def test_bad_options_name_the_field(tmp_path: Path, change: tuple[str, str], path: str,
                                    message: str) -> None:
    text = TOML.format(url="http://127.0.0.1:9/hook").replace(*change)
    err = config_error(tmp_path, text)
    assert err.path == path
    assert message in err.message


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/hook", "http:///path"])
def test_bad_url(tmp_path: Path, url: str) -> None:
    err = config_error(tmp_path, TOML.format(url=url))
    assert err.path == "delivery.webhook.endpoints[0]" and "url: must be an http" in err.message


def test_reserved_headers_and_duplicate_names(tmp_path: Path) -> None:
    base: dict[str, Any] = {"url": "http://127.0.0.1:9/a", "secret": SECRET}
    with pytest.raises(ConfigError, match=r"headers.Svrnty-Signature: set by the provider"):
        make_streaming({**base, "subscriptions": ["billing"],
                        "headers": {"Svrnty-Signature": "x"}}).build_host()
    with pytest.raises(ConfigError, match=r"headers.X-Tenant: not a valid header"):
        make_streaming({**base, "subscriptions": ["billing"],
                        "headers": {"X-Tenant": "a\r\nInjected: 1"}}).build_host()
    with pytest.raises(ConfigError, match=r"endpoints\[1\].name: endpoints\[0\] already uses"):
        make_streaming({**base, "subscriptions": ["billing"]},
                       {**base, "subscriptions": ["billing"]}).build_host()


async def test_unknown_subscription_fails_the_start(tmp_path: Path) -> None:
    streaming = make_streaming(endpoint("http://127.0.0.1:9/hook", "billing", "bilin"))
    with pytest.raises(ConfigError) as err:
        async with streaming.run():
            pass
    assert err.value.path == "delivery.webhook.endpoints[0].subscriptions[1]"
    assert 'unknown subscription "bilin"; subscriptions: billing' in err.value.message


async def test_unset_secret_env_fails_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_WEBHOOK_SECRET", raising=False)
    streaming = make_streaming({"url": "http://127.0.0.1:9/hook", "subscriptions": ["billing"],
                                "secret_env": "NOT_SET_WEBHOOK_SECRET"})
    with pytest.raises(ConfigError, match="NOT_SET_WEBHOOK_SECRET is not set") as err:
        async with streaming.run():
            pass
    assert err.value.path == "delivery.webhook.endpoints[0].secret_env"


async def test_banner_hides_url_credentials_and_query() -> None:
    streaming = make_streaming(endpoint("https://hooks:p4ss@example.com:8443/in?token=abc",
                                        name="acme"))
    async with streaming.run() as host:
        assert host.endpoints() == [
            "webhook acme: POST https://hooks:***@example.com:8443/in <- billing"]
        assert "p4ss" not in host.banner() and "abc" not in host.banner()
