"""The sample host over HTTP, as a client meets it: the original's testing guide (workflow start,
the background consumer, commands and queries, validation), plus the API's OpenAPI document."""

from __future__ import annotations

import json
import shutil
import subprocess
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
                     "stream:        users (persistent, at_least_once",
                     "stream:        invitations (persistent, at_least_once",
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

    # a header that contradicts the command's own workflow field is refused, as documented
    other = str(uuid.uuid4())
    status, ctype, problem, _ = await post(f"{sample.http_url}/api/command/declineInvitation",
                                           {"invitation_id": invitation_id},
                                           headers={"Workflow-Id": other})
    assert status == 400 and ctype == PROBLEM_JSON
    assert problem["errors"][0]["field"] == "invitation_id"
    assert invitation_id in problem["detail"] and other in problem["detail"]
    assert "Workflow-Id" in problem["detail"]
    _, _, doc = await get(f"{sample.http_url}/openapi.json")
    for name in ("acceptInvitation", "declineInvitation"):
        op = doc["paths"][f"/api/command/{name}"]["post"]
        [header] = [p for p in op["parameters"] if p["name"] == "Workflow-Id"]
        assert "`invitation_id`" in header["description"] and "400" in header["description"]
        assert "Workflow-Id" in op["responses"]["400"]["description"]
    plain = doc["paths"]["/api/command/addUser"]["post"]
    assert "400" not in plain["parameters"][0]["description"]


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
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(f"{sample.http_url}/api/command/addUser") as r:
            assert r.status == 405 and r.content_type == PROBLEM_JSON
            assert r.headers["Allow"] == "POST"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_a_405_lists_the_allowed_methods_as_rfc_9110_says(sample: SampleProcess,
                                                               method: str):
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.request(method, f"{sample.http_url}/api/query/getUser") as r:
            assert r.status == 405 and r.content_type == PROBLEM_JSON
            allow = r.headers["Allow"]
    # a comma-separated list of method tokens (RFC 9110 section 10.2.1)
    assert [m.strip() for m in allow.split(",")] == ["GET", "POST"] and allow == "GET, POST"


# --- what the schema allows, the server accepts ------------------------------------------------


async def test_whole_number_floats_are_integers_in_bodies_as_in_query_strings(
        sample: SampleProcess):
    # JSON Schema's "integer" is any number without a fraction: 30.0 is one
    status, _, added, _ = await post(f"{sample.http_url}/api/command/addUser",
                                     {"name": "Float", "email": unique_email(), "age": 30.0})
    assert status == 200, added
    user_id = added["result"]
    status, _, by_post, _ = await post(f"{sample.http_url}/api/query/getUser",
                                       {"user_id": float(user_id)})
    assert status == 200 and by_post["result"]["age"] == 30 and by_post["result"]["id"] == user_id
    status, _, by_get = await get(f"{sample.http_url}/api/query/getUser",
                                  {"user_id": f"{user_id}.0"})
    assert status == 200 and by_get == by_post
    # a fraction is still no integer, in a body or a query string
    status, _, problem, _ = await post(f"{sample.http_url}/api/query/getUser",
                                       {"user_id": user_id + 0.5})
    assert status == 400 and problem["errors"][0]["field"] == "user_id"
    status, _, problem = await get(f"{sample.http_url}/api/query/getUser",
                                   {"user_id": f"{user_id}.5"})
    assert status == 400 and problem["errors"][0]["field"] == "user_id"
    status, _, problem, _ = await post(f"{sample.http_url}/api/command/addUser",
                                       {"name": "Float", "email": unique_email(), "age": 30.5})
    assert status == 400 and problem["errors"][0]["field"] == "age"
    status, _, removed, _ = await post(f"{sample.http_url}/api/command/removeUser",
                                       {"user_id": float(user_id)})
    assert status == 200 and removed["result"] is True


#: ECMA-262's WhiteSpace and LineTerminator code points: what \s means in a JSON Schema pattern
ECMA_WHITESPACE = "\t\n\v\f\r \u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200b))) \
    + "\u2028\u2029\u202f\u205f\u3000\ufeff"
#: whitespace to Python's \s that ECMA-262's \s does not match
PYTHON_ONLY_WHITESPACE = "\x1c\x1d\x1e\x1f\x85"


def ecma_matches(pattern: str, strings: list[str]) -> list[bool] | None:
    """Whether ``pattern`` matches each string in JavaScript (an ECMA-262 engine), or None
    where no ``node`` is installed."""
    node = shutil.which("node")
    if node is None:
        return None
    script = ("const [p, s] = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
              "process.stdout.write(JSON.stringify(s.map(x => new RegExp(p).test(x))));")
    out = subprocess.run([node, "-e", script], input=json.dumps([pattern, strings]),
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)


async def test_the_email_and_name_patterns_mean_what_json_schema_means(sample: SampleProcess):
    _, _, doc = await get(f"{sample.http_url}/openapi.json")
    props = doc["components"]["schemas"]["AddUserCommand"]["properties"]
    email_pattern, name_pattern = props["email"]["pattern"], props["name"]["pattern"]
    emails = [f"a{c}b-{uuid.uuid4().hex[:6]}@example.com"
              for c in ECMA_WHITESPACE + PYTHON_ONLY_WHITESPACE]
    names = list(ECMA_WHITESPACE + PYTHON_ONLY_WHITESPACE)
    expected_emails = [c in PYTHON_ONLY_WHITESPACE for c in ECMA_WHITESPACE
                       + PYTHON_ONLY_WHITESPACE]
    # an ECMA-262 engine agrees with the code points the spec lists
    for pattern, strings, expected in ((email_pattern, emails, expected_emails),
                                       (name_pattern, names, expected_emails)):
        js = ecma_matches(pattern, strings)
        assert js is None or js == expected, [hex(ord(c)) for c, a, b in zip(
            ECMA_WHITESPACE + PYTHON_ONLY_WHITESPACE, js, expected) if a != b]
    # and the server accepts exactly what the schema allows
    for email, allowed in zip(emails, expected_emails):
        status, _, body, _ = await post(f"{sample.http_url}/api/command/inviteUser",
                                        {"email": email})
        assert status == (200 if allowed else 400), (hex(ord(email[1])), body)
        if not allowed:
            assert body["errors"][0]["field"] == "email"
    for name, allowed in zip(names, expected_emails):
        status, _, body, _ = await post(f"{sample.http_url}/api/command/addUser",
                                        {"name": name, "email": unique_email()})
        assert status == (200 if allowed else 400), (hex(ord(name)), body)


async def test_a_pattern_in_an_error_is_shown_as_the_schema_has_it(sample: SampleProcess):
    _, _, doc = await get(f"{sample.http_url}/openapi.json")
    pattern = doc["components"]["schemas"]["AddUserCommand"]["properties"]["email"]["pattern"]
    status, _, problem, _ = await post(f"{sample.http_url}/api/command/addUser",
                                       {"name": "Ada", "email": "not-an-email"})
    assert status == 400
    assert problem["detail"] == f"email: expected str matching regex `{pattern}`"
    assert problem["errors"][0]["message"] == f"expected str matching regex `{pattern}`"
    assert "\\\\" not in problem["detail"]  # no doubled backslash


async def test_a_query_with_required_fields_documents_its_body_as_required(
        sample: SampleProcess):
    _, _, doc = await get(f"{sample.http_url}/openapi.json")
    assert doc["paths"]["/api/query/getUser"]["post"]["requestBody"]["required"] is True
    assert doc["paths"]["/api/query/listUsers"]["post"]["requestBody"]["required"] is False
    status, _, problem, _ = await post(f"{sample.http_url}/api/query/getUser", raw=b"")
    assert status == 400 and problem["errors"][0]["field"] == "user_id"
    status, _, listed, _ = await post(f"{sample.http_url}/api/query/listUsers", raw=b"")
    assert status == 200 and isinstance(listed["result"], list)


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
    commands = {"addUser", "removeUser", "inviteUser", "acceptInvitation", "declineInvitation",
                "expireInvitation"}
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
