"""The sample host over HTTP, as a client meets it: the original's testing guide (workflow start,
the background consumer, commands and queries, validation), plus the API's OpenAPI document."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from conftest import SampleProcess

TIMEOUT = aiohttp.ClientTimeout(total=10)
PROBLEM_JSON = "application/problem+json"


async def post(url: str, body: Any = None, *, raw: bytes | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, str, Any, dict[str, str]]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        async with session.post(url, data=data, headers={
                "Content-Type": "application/json", **(headers or {})}) as r:
            return r.status, r.content_type, await r.json(content_type=None), dict(r.headers)


async def get(url: str, params: dict[str, str] | None = None) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(url, params=params) as r:
            return r.status, r.content_type, await r.json(content_type=None)


def unique_email(name: str = "user") -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


async def add_user(sample: SampleProcess, name: str = "Ada", **fields: Any) -> dict[str, Any]:
    status, _, body, _ = await post(f"{sample.http_url}/api/command/addUser",
                                    {"name": name, "email": unique_email(), **fields})
    assert status == 200, body
    return body


# --- the testing guide -------------------------------------------------------------------------


def test_banner_names_plugins_streams_subscriptions_and_endpoints(sample: SampleProcess):
    banner = sample.output
    for expected in ("plugins:", "memory (svrnty-events-memory", "grpc (svrnty-events-grpc",
                     "svrnty_sample", "store:         memory",
                     "stream:        users (ephemeral, at_least_once",
                     "stream:        invitations (ephemeral, at_least_once",
                     "subscription:  user-analytics -> users (broadcast)",
                     "subscription:  invitation-processor -> invitations (exclusive)",
                     f"endpoint:      {sample.http_url}", f"{sample.http_url}/docs"):
        assert expected in banner
    assert sample.grpc_target in banner


async def test_add_user_returns_the_id_and_the_consumer_logs_the_event(sample: SampleProcess):
    mark = sample.mark()
    status, ctype, body, headers = await post(f"{sample.http_url}/api/command/addUser",
                                              {"name": "Ada", "email": unique_email("ada")})
    assert status == 200 and ctype == "application/json"
    assert isinstance(body["result"], int) and body["result"] >= 1
    workflow_id = body["workflow_id"]
    assert headers["Workflow-Id"] == workflow_id
    assert [e["type"] for e in body["events"]] == ["UserAdded"]
    assert body["events"][0]["correlation_id"] == workflow_id

    line = await sample.expect(
        rf"event UserAdded correlation_id={workflow_id} subscription=user-analytics "
        r"consumer=(analytics-[0-9a-f-]{36}) attempt=1 .*data=(\{.*\})$", start=mark)
    assert json.loads(line.group(2))["user_id"] == body["result"]


async def test_each_add_user_starts_a_new_workflow(sample: SampleProcess):
    first, second = await add_user(sample, "One"), await add_user(sample, "Two")
    assert first["result"] != second["result"]
    assert first["workflow_id"] != second["workflow_id"]


async def test_the_consumer_logs_remove_user_too(sample: SampleProcess):
    user = await add_user(sample, "Short-lived")
    mark = sample.mark()
    status, _, body, _ = await post(f"{sample.http_url}/api/command/removeUser",
                                    {"user_id": user["result"]})
    assert status == 200 and body["result"] is True
    await sample.expect(rf"event UserRemoved correlation_id={body['workflow_id']} ", start=mark)
    status, ctype, problem = await get(f"{sample.http_url}/api/query/getUser",
                                       {"user_id": str(user["result"])})
    assert status == 404 and ctype == PROBLEM_JSON


async def test_invitation_accept_continues_the_invitation_workflow(sample: SampleProcess):
    mark = sample.mark()
    email = unique_email("grace")
    status, _, invited, _ = await post(f"{sample.http_url}/api/command/inviteUser",
                                       {"email": email, "inviter": "Ada"})
    assert status == 200
    invitation_id = invited["result"]
    assert invited["workflow_id"] == invitation_id

    status, _, accepted, _ = await post(f"{sample.http_url}/api/command/acceptInvitation",
                                        {"invitation_id": invitation_id, "name": "Grace"})
    assert status == 200, accepted
    assert accepted["workflow_id"] == invitation_id  # one correlation id across both commands
    assert accepted["events"][0]["type"] == "InvitationAccepted"
    assert accepted["events"][0]["sequence"] > invited["events"][0]["sequence"]

    for event in ("InvitationSent", "InvitationAccepted"):
        await sample.expect(rf"event {event} correlation_id={invitation_id} "
                            r"subscription=invitation-processor ", start=mark)

    status, _, user = await get(f"{sample.http_url}/api/query/getUser",
                                {"user_id": str(accepted["result"])})
    assert status == 200 and user["result"]["email"] == email

    # the workflow is over: it cannot be declined any more
    status, ctype, problem, _ = await post(f"{sample.http_url}/api/command/declineInvitation",
                                           {"invitation_id": invitation_id})
    assert status == 409 and ctype == PROBLEM_JSON and "accepted" in problem["detail"]


async def test_workflow_id_header_continues_a_workflow(sample: SampleProcess):
    status, _, invited, _ = await post(f"{sample.http_url}/api/command/inviteUser",
                                       {"email": unique_email()})
    invitation_id = invited["result"]
    status, _, declined, headers = await post(
        f"{sample.http_url}/api/command/declineInvitation",
        {"invitation_id": invitation_id, "reason": "not now"},
        headers={"Workflow-Id": invitation_id})
    assert status == 200 and declined["workflow_id"] == invitation_id

    # a header that contradicts the command's own workflow field is refused
    status, _, problem, _ = await post(f"{sample.http_url}/api/command/declineInvitation",
                                       {"invitation_id": invitation_id},
                                       headers={"Workflow-Id": str(uuid.uuid4())})
    assert status == 400 and problem["errors"][0]["field"] == "invitation_id"


async def test_continuing_an_unknown_workflow_is_404(sample: SampleProcess):
    status, ctype, problem, _ = await post(f"{sample.http_url}/api/command/acceptInvitation",
                                           {"invitation_id": "no-such-invitation",
                                            "name": "Nobody"})
    assert status == 404 and ctype == PROBLEM_JSON
    assert "no-such-invitation" in problem["detail"]


# --- validation: RFC 7807 problem details naming the field ---------------------------------------


@pytest.mark.parametrize(("body", "field"), [
    ({"email": "ada@example.com"}, "name"),
    ({"name": "", "email": "ada@example.com"}, "name"),
    ({"name": "Ada", "email": "not-an-email"}, "email"),
    ({"name": "Ada", "email": "ada@example.com", "age": 200}, "age"),
    ({"name": "Ada", "email": "ada@example.com", "age": "old"}, "age"),
    ({"name": "Ada", "email": "ada@example.com", "nickname": "A"}, "nickname"),
])
async def test_invalid_add_user_is_a_problem_naming_the_field(sample: SampleProcess,
                                                              body: dict[str, Any], field: str):
    mark = sample.mark()
    status, ctype, problem, _ = await post(f"{sample.http_url}/api/command/addUser", body)
    assert status == 400
    assert ctype == PROBLEM_JSON
    assert problem["title"] == "Validation failed"
    assert problem["status"] == 400
    assert problem["detail"].startswith(f"{field}: ")
    assert problem["errors"][0]["field"] == field and problem["errors"][0]["message"]
    assert problem["type"] and problem["instance"] == "/api/command/addUser"
    # nothing was appended, so the consumer logs nothing; the host keeps serving
    user = await add_user(sample, "After")
    await sample.expect(rf"event UserAdded correlation_id={user['workflow_id']} ", start=mark)
    assert not any("correlation_id" in line and "UserAdded" in line
                   and user["workflow_id"] not in line for line in sample.lines[mark:])


async def test_malformed_json_is_a_problem(sample: SampleProcess):
    status, ctype, problem, _ = await post(f"{sample.http_url}/api/command/addUser",
                                           raw=b'{"name": ')
    assert status == 400 and ctype == PROBLEM_JSON
    assert problem["errors"][0]["field"] == "body"
    assert "malformed JSON" in problem["detail"]


async def test_unknown_command_and_query_are_404_problems(sample: SampleProcess):
    status, ctype, problem, _ = await post(f"{sample.http_url}/api/command/launchRocket", {})
    assert status == 404 and ctype == PROBLEM_JSON
    assert problem["title"] == "Unknown command" and "addUser" in problem["detail"]
    status, ctype, problem = await get(f"{sample.http_url}/api/query/launchRockets")
    assert status == 404 and ctype == PROBLEM_JSON and "listUsers" in problem["detail"]


async def test_a_command_takes_post_only(sample: SampleProcess):
    status, ctype, problem = await get(f"{sample.http_url}/api/command/addUser")
    assert status == 405 and ctype == PROBLEM_JSON


# --- queries -------------------------------------------------------------------------------------


async def test_queries_over_get_and_post(sample: SampleProcess):
    added = await add_user(sample, "Query Me", age=41)
    user_id = added["result"]

    status, ctype, by_get = await get(f"{sample.http_url}/api/query/getUser",
                                      {"user_id": str(user_id)})
    assert status == 200 and ctype == "application/json"
    assert by_get["result"]["id"] == user_id
    assert by_get["result"]["name"] == "Query Me" and by_get["result"]["age"] == 41

    status, _, by_post, _ = await post(f"{sample.http_url}/api/query/getUser",
                                       {"user_id": user_id})
    assert status == 200 and by_post == by_get

    status, _, listed = await get(f"{sample.http_url}/api/query/listUsers")
    assert status == 200 and user_id in [u["id"] for u in listed["result"]]
    status, _, listed_post, _ = await post(f"{sample.http_url}/api/query/listUsers")
    assert status == 200 and listed_post == listed


async def test_query_validation_and_not_found(sample: SampleProcess):
    status, ctype, problem = await get(f"{sample.http_url}/api/query/getUser",
                                       {"user_id": "abc"})
    assert status == 400 and ctype == PROBLEM_JSON
    assert problem["errors"][0]["field"] == "user_id"
    status, _, problem = await get(f"{sample.http_url}/api/query/getUser")
    assert status == 400 and problem["errors"][0]["field"] == "user_id"
    status, ctype, problem = await get(f"{sample.http_url}/api/query/getUser",
                                       {"user_id": "999999"})
    assert status == 404 and ctype == PROBLEM_JSON and "999999" in problem["detail"]


# --- OpenAPI and docs ----------------------------------------------------------------------------


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_openapi_document_lists_every_operation(sample: SampleProcess):
    status, ctype, doc = await get(f"{sample.http_url}/openapi.json")
    assert status == 200 and ctype == "application/json"
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] and doc["info"]["version"]
    commands = {"addUser", "removeUser", "inviteUser", "acceptInvitation", "declineInvitation"}
    assert {p.rsplit("/", 1)[1] for p in doc["paths"] if p.startswith("/api/command/")} \
        == commands
    for name in commands:
        op = doc["paths"][f"/api/command/{name}"]["post"]
        assert op["operationId"] == name
        assert set(op["responses"]) >= {"200", "400"}
        assert op["responses"]["400"]["content"]["application/problem+json"]
    for name in ("getUser", "listUsers"):
        assert set(doc["paths"][f"/api/query/{name}"]) == {"get", "post"}
    # every reference resolves, and the schemas carry the validation rules
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas
    add_user = schemas["AddUserCommand"]
    assert add_user["required"] == ["name", "email"]
    assert add_user["properties"]["name"]["minLength"] == 1
    assert "pattern" in add_user["properties"]["email"]
    assert add_user["properties"]["age"]["anyOf"][0]["maximum"] == 150
    operation_ids = [op["operationId"] for path in doc["paths"].values()
                     for op in path.values()]
    assert len(operation_ids) == len(set(operation_ids))


async def test_docs_page_renders_the_openapi_document(sample: SampleProcess):
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(f"{sample.http_url}/docs") as r:
            assert r.status == 200 and r.content_type == "text/html"
            page = await r.text()
        async with session.get(f"{sample.http_url}/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/docs"
    assert 'fetch("/openapi.json")' in page
    assert "<script src" not in page  # self-contained: works without internet access
    assert 'id="problem-validation"' in page


# --- any input: a clear answer, never a server error ---------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["addUser", "removeUser", "inviteUser", "acceptInvitation",
                                "declineInvitation"]),
       body=st.dictionaries(st.sampled_from(["name", "email", "age", "user_id", "invitation_id",
                                             "inviter", "reason", "extra"]),
                            json_values, max_size=4) | json_values)
def test_any_payload_gets_a_clear_answer(sample: SampleProcess, command: str, body: Any):
    request = urllib.request.Request(f"{sample.http_url}/api/command/{command}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, ctype, payload = response.status, response.headers.get_content_type(), \
                json.load(response)
    except urllib.error.HTTPError as error:
        status, ctype, payload = error.code, error.headers.get_content_type(), json.load(error)
    assert status in (200, 400, 404, 409), payload
    if status == 200:
        assert ctype == "application/json" and "workflow_id" in payload
    else:
        assert ctype == PROBLEM_JSON and payload["status"] == status and payload["detail"]
    if status == 400:
        assert payload["errors"][0]["field"]
