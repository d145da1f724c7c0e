"""The docs page at /docs in a real browser (headless Chromium over the DevTools protocol): it
renders the OpenAPI document with whole summaries, and its "Try it" examples work as shown,
in order: inviteUser's result fills acceptInvitation's invitation_id (an OpenAPI link)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from svrnty_events_web.testing import Chromium
from svrnty_sample.app import SamplePlugin, create_streaming

pytestmark = pytest.mark.skipif(
    Chromium.executable() is None,
    reason="no chromium on this machine (apt-get install chromium, or set $CHROMIUM)")

TIMEOUT = 30.0


@pytest.fixture
async def sample(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Any, str]]:
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "memory,grpc")
    plugin = SamplePlugin(http_port=0, consume=())
    async with create_streaming(plugin=plugin, grpc_port=0).run() as host:
        assert plugin.http is not None
        yield host, plugin.http.url


def op(operation_id: str, selector: str) -> str:
    return f"document.querySelector({f'#{operation_id} {selector}'!r})"


async def send(page: Any, operation_id: str) -> str:
    """Click the operation's Send and return what the page shows of the answer."""
    await page.evaluate(f"{op(operation_id, 'pre')}.textContent = '';"
                        f"{op(operation_id, 'button')}.click()")
    await page.wait_for(f"/^\\d{{3}} /.test({op(operation_id, 'pre')}.textContent)", TIMEOUT)
    return await page.evaluate(f"{op(operation_id, 'pre')}.textContent")


async def test_the_docs_page_shows_whole_summaries_and_examples_that_work(sample) -> None:
    host, url = sample
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/openapi.json") as r:
            doc = await r.json()
    summaries = {o["operationId"]: o["summary"] for p in doc["paths"].values()
                 for o in p.values()}
    assert summaries["acceptInvitation"] == ("Accept a pending invitation (continues its "
                                             "workflow): adds the user and returns the new "
                                             "user id.")
    assert summaries["inviteUser"].endswith("take to continue the invitation's workflow.")
    assert all(s.endswith(".") for s in summaries.values()), summaries

    async with Chromium.launch() as browser:
        page = await browser.new_page(f"{url}/docs")
        await page.wait_for(f"document.querySelectorAll('details.op').length == {len(summaries)}",
                            TIMEOUT)
        shown = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('details.op')]"
            ".map(d => [d.id, d.querySelector('.summary').textContent]))")
        assert shown == summaries

        # as shown before anything ran: a meaningful id, and a hint where it comes from
        example = json.loads(await page.evaluate(f"{op('acceptInvitation', 'textarea')}.value"))
        assert example["invitation_id"] and example["name"]
        hint = await page.evaluate(f"{op('acceptInvitation', '.hint')}.textContent")
        assert "inviteUser" in hint and "invitation_id" in hint

        # inviteUser as shown, then acceptInvitation as shown: the link carried the id
        invited = await send(page, "inviteUser")
        assert invited.startswith("200 "), invited
        invitation_id = json.loads(invited.split("\n", 1)[1])["result"]
        example = json.loads(await page.evaluate(f"{op('acceptInvitation', 'textarea')}.value"))
        assert example["invitation_id"] == invitation_id
        accepted = await send(page, "acceptInvitation")
        assert accepted.startswith("200 "), accepted
        assert json.loads(accepted.split("\n", 1)[1])["workflow_id"] == invitation_id

        # an error shows the pattern as the schema has it, not repr-escaped
        await page.evaluate(f"{op('addUser', 'textarea')}.value = "
                            "JSON.stringify({name: 'Ada', email: 'not-an-email'})")
        refused = await send(page, "addUser")
    pattern = doc["components"]["schemas"]["AddUserCommand"]["properties"]["email"]["pattern"]
    assert refused.startswith("400 "), refused
    problem = json.loads(refused.split("\n", 1)[1])
    assert problem["detail"] == f"email: expected str matching regex `{pattern}`"
    assert [e.type for e in await host.read("invitations")] == ["InvitationSent",
                                                                 "InvitationAccepted"]
