"""End to end on a real ``svrnty-sample`` process started with ``--invitation-ttl 1``: an
invitation not accepted within the time is expired (inviteUser's scheduled InvitationDue, then
the invitation-expiry process manager's expireInvitation), after which accepting it is a
conflict; an invitation accepted in time is never expired (its schedule was cancelled)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from conftest import SampleProcess

PROBLEM_JSON = "application/problem+json"


async def post(url: str, body: Any) -> tuple[int, str, Any, dict[str, str]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.post(url, data=json.dumps(body),
                                headers={"Content-Type": "application/json"}) as r:
            return r.status, r.content_type, await r.json(content_type=None), dict(r.headers)


def _email() -> str:
    return f"guest-{uuid.uuid4().hex[:8]}@example.com"


async def test_an_invitation_not_accepted_in_time_is_expired(expiring_sample: SampleProcess):
    sample = expiring_sample
    mark = sample.mark()
    status, _, invited, _ = await post(f"{sample.http_url}/api/command/inviteUser",
                                       {"email": _email()})
    assert status == 200
    invitation_id = invited["result"]
    # the consumer of the sample logs every invitation event it gets: the scheduled event,
    # then the process manager's follow-up command's event, in the invitation's workflow
    for event in ("InvitationDue", "InvitationExpired"):
        await sample.expect(rf"event {event} correlation_id={invitation_id} "
                            r"subscription=invitation-processor ", timeout=20, start=mark)
    status, ctype, problem, _ = await post(f"{sample.http_url}/api/command/acceptInvitation",
                                           {"invitation_id": invitation_id, "name": "Late"})
    assert status == 409 and ctype == PROBLEM_JSON and "expired" in problem["detail"]
    # expired once: a second expiry finds nothing pending
    status, _, again, _ = await post(f"{sample.http_url}/api/command/expireInvitation",
                                     {"invitation_id": invitation_id})
    assert status == 200 and again["result"] is False and again["events"] == []


async def test_an_invitation_accepted_in_time_is_never_expired(expiring_sample: SampleProcess):
    sample = expiring_sample
    mark = sample.mark()
    status, _, invited, _ = await post(f"{sample.http_url}/api/command/inviteUser",
                                       {"email": _email()})
    invitation_id = invited["result"]
    status, _, accepted, _ = await post(f"{sample.http_url}/api/command/acceptInvitation",
                                        {"invitation_id": invitation_id, "name": "Prompt"})
    assert status == 200, accepted
    await sample.expect(rf"event InvitationAccepted correlation_id={invitation_id} ",
                        start=mark)
    # a control invitation, left alone, expires: by then the accepted one would have too
    status, _, control, _ = await post(f"{sample.http_url}/api/command/inviteUser",
                                       {"email": _email()})
    await sample.expect(rf"event InvitationExpired correlation_id={control['result']} ",
                        timeout=20, start=mark)
    await asyncio.sleep(0.5)
    assert f"event InvitationDue correlation_id={invitation_id}" not in sample.output
    assert f"event InvitationExpired correlation_id={invitation_id}" not in sample.output


def test_a_bad_invitation_ttl_is_refused(start_sample):
    process = start_sample("--grpc-port", "0", "--http-port", "0", "--invitation-ttl", "0")
    assert process.proc.wait(20) != 0
    process.wait_for(r"invitation_ttl: must be > 0", timeout=10)
