"""Bad input: each gets a clear status (or close code) naming what is wrong; the server keeps
running and no event is lost."""

from __future__ import annotations

import aiohttp
import pytest
from web_testkit import TaskAdded, append, base_url, running, sse, websocket, within

from svrnty_events.errors import ConfigError

PROBLEM = "application/problem+json"


async def problem(response: aiohttp.ClientResponse) -> dict:
    assert response.headers["Content-Type"].startswith(PROBLEM), response.headers
    return await response.json(content_type=None)


@pytest.mark.parametrize("endpoint", ["events", "ws"])
async def test_unknown_subscription_is_404_naming_the_available_ones(host, http, endpoint):
    async with http.get(f"{base_url(host)}/subscriptions/nope/{endpoint}") as r:
        assert r.status == 404
        body = await problem(r)
    assert body["status"] == 404
    assert 'unknown subscription "nope"; available: all, tracking, work' in body["detail"]
    assert body["available"] == ["all", "tracking", "work"]


@pytest.mark.parametrize(("query", "headers", "parameter"), [
    ("from_sequence=abc", {}, "from_sequence"),
    ("from_sequence=-1", {}, "from_sequence"),
    ("from_time=yesterday", {}, "from_time"),
    ("new_only=maybe", {}, "new_only"),
    ("new_only=true&from_sequence=2", {}, "new_only"),
    ("window=0", {}, "window"),
    ("event_type=TaskAdded", {}, "event_type"),
    ("event_types=A,,B", {}, "event_types"),
    ("consumer_id=", {}, "consumer_id"),
    ("correlation_id=", {}, "correlation_id"),
    ("consumer_id=a&consumer_id=b", {}, "consumer_id"),
    ("", {"Last-Event-ID": "seven"}, "Last-Event-ID"),
])
async def test_bad_sse_parameters_are_400_naming_the_parameter(host, http, query, headers,
                                                             parameter):
    async with http.get(f"{base_url(host)}/subscriptions/all/events?{query}",
                        headers=headers) as r:
        assert r.status == 400
        body = await problem(r)
    assert body["detail"].startswith(f"{parameter}: "), body
    assert body["parameter"] == parameter


async def test_event_types_on_a_shared_group_is_400(host, http):
    async with http.get(f"{base_url(host)}/subscriptions/work/events?event_types=X") as r:
        assert r.status == 400
        body = await problem(r)
    assert body["parameter"] == "event_types" and "exclusive" in body["detail"]


async def test_tokens_from_header_query_parameter_or_cookie(http):
    async with running(tokens=["s3cret"]) as host:
        url = f"{base_url(host)}/subscriptions/all/events"
        for kwargs in ({}, {"headers": {"Authorization": "Bearer wrong"}},
                       {"params": {"access_token": "wrong"}}):
            async with http.get(url, **kwargs) as r:
                assert r.status == 401
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                body = await problem(r)
                assert "token" in body["detail"]
        async with http.get(f"{base_url(host)}/subscriptions/all/ws") as r:
            assert r.status == 401  # refused before the upgrade
        await append(host, TaskAdded(task_id=1))
        for kwargs in ({"headers": {"Authorization": "Bearer s3cret"}},
                       {"params": {"access_token": "s3cret"}},
                       {"cookies": {"svrnty_events_token": "s3cret"}}):
            async with aiohttp.ClientSession(cookies=kwargs.pop("cookies", None)) as session:
                async with sse(session, f"{url}?from_beginning=1", **kwargs) as stream:
                    [msg] = await stream.take(1)
                    assert msg["event"] == "TaskAdded"


async def test_an_unset_token_env_stops_the_start():
    with pytest.raises(ConfigError, match="delivery.web.token_env"):
        async with running(token_env="SVRNTY_WEB_TEST_UNSET_TOKENS"):
            pass


async def test_origins_cors_and_preflight(http):
    async with running(allowed_origins=["http://app.example"]) as host:
        url = f"{base_url(host)}/subscriptions/all/events"
        async with http.get(url, headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403
            assert "allowed_origins" in (await problem(r))["detail"]
        async with http.get(f"{base_url(host)}/subscriptions/all/ws",
                            headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403  # a WebSocket is not covered by CORS: checked here
        async with sse(http, url, headers={"Origin": "http://app.example"}) as stream:
            headers = stream.response.headers
            assert headers["Access-Control-Allow-Origin"] == "http://app.example"
            assert headers["Access-Control-Allow-Credentials"] == "true"
        async with http.options(url, headers={"Origin": "http://app.example",
                                              "Access-Control-Request-Method": "GET"}) as r:
            assert r.status == 204
            assert "Last-Event-ID" in r.headers["Access-Control-Allow-Headers"]
        same = base_url(host)
        async with sse(http, url, headers={"Origin": same}):
            pass  # the server's own origin needs no listing


async def test_max_connections_is_503_with_retry_after(http):
    async with running(max_connections=1) as host:
        url = f"{base_url(host)}/subscriptions/all/events"
        async with sse(http, url):
            async with http.get(url) as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "1"
                assert "max_connections" in (await problem(r))["detail"]
        gateway = host.providers["web"].gateway
        await within(_until(lambda: gateway.connections == 0))
        async with sse(http, url):  # room again
            pass


async def _until(condition) -> None:
    import asyncio

    while not condition():
        await asyncio.sleep(0.01)


async def test_unknown_paths_and_methods_are_problems(host, http):
    async with http.get(f"{base_url(host)}/nothing") as r:
        assert r.status == 404
        await problem(r)
    async with http.post(f"{base_url(host)}/subscriptions/all/events") as r:
        assert r.status == 405
        await problem(r)


@pytest.mark.parametrize(("send", "code", "reason"), [
    ("str:not json", 1008, "request: invalid JSON"),
    ("bytes:\x00\x01", 1003, "request: binary messages are not supported"),
    ('str:{"ack": {"event_ids": []}}', 1008, "request: the first message must be `subscribe`"),
    ('str:{"subscribe": {}}', 1008, "request: Object missing required field `consumer_id`"),
    ('str:{"subscribe": {"consumer_id": "c", "window": "big"}}', 1008,
     "request: Expected `int | null`, got `str` - at `$.subscribe.window`"),
    ('str:{"subscribe": {"consumer_id": "c", "new_only": true, "from_sequence": 1}}', 1008,
     "subscribe.new_only: cannot be combined with subscribe.from_sequence"),
    ('str:{"subscribe": {"consumer_id": "c", "subscription": "all"}}', 1008,
     'subscribe.subscription: "all" differs'),
    ('str:{"hello": 1}', 1008, "request: Object contains unknown field `hello`"),
    ("str:{}", 1008, "request: set exactly one of"),
])
async def test_a_malformed_first_message_closes_with_a_code_and_reason(host, http, send, code,
                                                                      reason):
    kind, _, payload = send.partition(":")
    async with websocket(http, f"{base_url(host)}/subscriptions/work/ws") as ws:
        if kind == "bytes":
            await ws.ws.send_bytes(payload.encode())
        else:
            await ws.ws.send_str(payload)
        error = await ws.receive()
        assert error["error"]["code"] == code
        assert error["error"]["message"].startswith(reason), error
        got_code, got_reason = await ws.closed()
    assert got_code == code and got_reason.startswith(reason[:60])


@pytest.mark.parametrize(("message", "reason"), [
    ('{"nack": {"event_id": ""}}', "nack.event_id: required"),
    ('{"nack": {"event_id": "ID", "delay_seconds": -1}}', "nack.delay_seconds: must be"),
    ('{"ack": {"event_ids": ["not-held"]}}', "ack.event_ids: consumer does not hold"),
    ('{"subscribe": {"consumer_id": "again"}}', "subscribe: this socket is already subscribed"),
    ('{"ack": {"event_ids": "ID"}}', "request: Expected `array`"),
])
async def test_a_malformed_later_message_closes_and_loses_nothing(host, http, message, reason):
    await append(host, TaskAdded(task_id=1))
    url = f"{base_url(host)}/subscriptions/work/ws"
    async with websocket(http, url) as ws:
        await ws.send(subscribe={"consumer_id": "c1"})
        await ws.receive()
        [held] = await ws.events(1)
        await ws.ws.send_str(message.replace("ID", held["id"]))
        error = await ws.receive()
        assert error["error"]["message"].startswith(reason), error
        code, _ = await ws.closed()
        assert code == 1008
    async with websocket(http, url) as ws:  # the server keeps serving; the event comes back
        await ws.send(subscribe={"consumer_id": "c2"})
        await ws.receive()
        [again] = await ws.events(1)
    assert (again["id"], again["attempt"]) == (held["id"], 2)


async def test_a_stopping_server_closes_sockets_with_1001(http):
    async with running() as host:
        async with websocket(http, f"{base_url(host)}/subscriptions/all/ws") as ws:
            await ws.send(subscribe={"consumer_id": "c"})
            await ws.receive()
            import asyncio

            closing = asyncio.ensure_future(ws.closed())  # a reading client answers the close
            await within(host.providers["web"].stop(1.0))
            code, reason = await within(closing)
    assert code == 1001 and "stopping" in reason
