"""The live page in a real browser (headless Chromium over the DevTools protocol): a command
sent from its form shows its workflow's events as they arrive, until the terminal event, and
the running user-analytics list fills over Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
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
    plugin = SamplePlugin(http_port=0)
    async with create_streaming(plugin=plugin, grpc_port=0).run() as host:
        assert plugin.http is not None
        yield host, plugin.http.url


def texts(selector: str) -> str:
    return f"[...document.querySelectorAll({selector!r})].map((li) => li.textContent)"


async def test_the_live_page_shows_a_commands_workflow_and_the_analytics(sample, tmp_path: Path):
    host, url = sample
    async with Chromium.launch() as browser:
        page = await browser.new_page(f"{url}/live")
        await page.wait_for("document.getElementById('analytics-state').textContent == "
                            "'connected'", TIMEOUT)
        # addUser from the form: the event shows in its workflow and in the analytics list
        await page.evaluate("document.getElementById('name').value = 'Grace';"
                            "document.getElementById('email').value = 'grace@example.com';"
                            "document.getElementById('send').click()")
        await page.wait_for("document.querySelector('#analytics-events li[data-type=UserAdded]')",
                            TIMEOUT)
        await page.wait_for("document.querySelector('#workflow-events li[data-how=delivered]')",
                            TIMEOUT)
        analytics = await page.evaluate(texts("#analytics-events li"))
        assert len(analytics) == 1 and "UserAdded" in analytics[0] and "Grace" in analytics[0]
        # inviteUser, then accept from the page: the workflow ends at InvitationAccepted
        await page.evaluate("document.getElementById('command').value = 'inviteUser';"
                            "document.getElementById('email').value = 'linus@example.com';"
                            "document.getElementById('name').value = 'Linus';"
                            "document.getElementById('send').click()")
        await page.wait_for("document.getElementById('workflow-state').textContent == "
                            "'watching'", TIMEOUT)
        await page.wait_for("document.getElementById('invitation-actions').style.display == "
                            "'flex'", TIMEOUT)
        await page.evaluate("document.getElementById('accept').click()")
        await page.wait_for("document.getElementById('workflow-state').textContent"
                            ".startsWith('completed')", TIMEOUT)
        await page.wait_for("document.querySelector('#workflow-events "
                            "li[data-type=InvitationAccepted][data-how=delivered]')", TIMEOUT)
        workflow = await page.evaluate(texts("#workflow-events li"))
        state = await page.evaluate("document.getElementById('workflow-state').textContent")
        workflow_id = await page.evaluate("document.getElementById('workflow-id').textContent")
        png = await page.screenshot()
        (tmp_path / "live.png").write_bytes(png)
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert [t.split()[1] for t in workflow] == ["InvitationSent", "InvitationAccepted"]
    assert "(attempt 1)" in workflow[1]
    assert state == "completed at InvitationAccepted"
    [sent] = [e for e in await host.read("invitations") if e.type == "InvitationSent"]
    assert sent.correlation_id == workflow_id


async def test_the_live_routes_answer_bad_input_on_the_sample_port(sample):
    _, url = sample
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/live") as r:
            assert r.status == 200 and "user-analytics" in await r.text()
        async with http.get(f"{url}/subscriptions/nope/events") as r:
            assert r.status == 404
            body = await r.json(content_type=None)
        assert "available: invitation-processor, pm.invitation-expiry.invitations, " \
            "user-analytics" in body["detail"]
        async with http.get(f"{url}/subscriptions/user-analytics/events?new_only=perhaps") as r:
            assert r.status == 400
            assert (await r.json(content_type=None))["parameter"] == "new_only"
