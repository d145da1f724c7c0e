"""The OpenAPI 3.1 document of the HTTP API, generated from the registered handlers' msgspec
types: adding a handler adds its operation, its request schema and its response schema."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from svrnty_events.commands import Handler, HandlerRegistry

from .operations import FieldError

REF = "#/components/schemas/{name}"
WORKFLOW_ID_HEADER = "Workflow-Id"

#: problem types (RFC 7807 ``type``): relative references into the docs page, which explains them
PROBLEM_TYPES = {
    "validation": "/docs#problem-validation",
    "unknown_operation": "/docs#problem-unknown-operation",
    "not_found": "/docs#problem-not-found",
    "conflict": "/docs#problem-conflict",
    "internal": "/docs#problem-internal",
}


class ProblemDetails(msgspec.Struct, omit_defaults=True):
    """RFC 7807 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] = []


class EventInfo(msgspec.Struct):
    """An event the command appended."""

    id: str
    type: str
    stream: str
    sequence: int
    correlation_id: str


def openapi_document(handlers: HandlerRegistry, *, title: str, version: str,
                     description: str = "", servers: list[str] | None = None,
                     links: list[tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """The document of every registered command and query. ``links`` are OpenAPI links
    ``(command, target operation, field)``: the command's ``result`` is the target's ``field``
    (clients and the docs page follow them; so does a stateful test of the API)."""
    ops = [*handlers.commands.values(), *handlers.queries.values()]
    types: list[Any] = [ProblemDetails, EventInfo]
    for h in ops:
        types += [h.payload_type, h.return_type]
    inline, components = msgspec.json.schema_components(types, ref_template=REF)
    # the schemas of each handler's payload and result, in the order they were listed
    payload_schema_of = {(h.kind, h.name): inline[2 + 2 * i] for i, h in enumerate(ops)}
    result_schema_of = {(h.kind, h.name): inline[3 + 2 * i] for i, h in enumerate(ops)}
    problem = _problem_response
    paths: dict[str, Any] = {}

    for h in handlers.commands.values():
        result = result_schema_of[(h.kind, h.name)]
        continues = getattr(h.payload_type, "continues", None)
        if continues:
            header_doc = (f"The workflow this command continues is its `{continues}` field; "
                          f"a {WORKFLOW_ID_HEADER} header, when sent, must name the same one "
                          f"(another id is refused with 400, `errors[0].field` = "
                          f"`{continues}`)")
            invalid = (f"The payload is invalid, or a {WORKFLOW_ID_HEADER} header names "
                       f"another workflow than `{continues}`; `errors` names the fields")
        else:
            header_doc = "Continue this workflow instead of starting a new one"
            invalid = "The payload is invalid; `errors` names the fields"
        paths[f"/api/command/{h.name}"] = {"post": {
            "operationId": h.name,
            "tags": [_tag(h)],
            "summary": _summary(h),
            "description": _description(h),
            "parameters": [{
                "name": WORKFLOW_ID_HEADER, "in": "header", "required": False,
                "description": header_doc, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": payload_schema_of[(h.kind, h.name)]}}},
            "responses": {
                "200": {"description": "The command ran; its events were appended",
                        "headers": {WORKFLOW_ID_HEADER: {
                            "description": "The workflow the command ran in",
                            "schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": {
                            "type": "object",
                            "properties": {
                                "result": result,
                                "workflow_id": {"anyOf": [{"type": "string"},
                                                          {"type": "null"}],
                                                "description": "The workflow's id: the "
                                                "correlation id of its events"},
                                "events": {"type": "array",
                                           "items": {"$ref": REF.format(name="EventInfo")}}},
                            "required": ["result", "workflow_id", "events"]}}}},
                "400": problem(invalid),
                "404": problem("Unknown command, or unknown workflow to continue"),
                "409": problem("The command does not apply to the current state"),
            },
        }}

    for h in handlers.queries.values():
        payload_schema = components.get(h.payload_type.__name__, {})
        ok = {"description": "The query's result", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"result": result_schema_of[(h.kind, h.name)]},
            "required": ["result"]}}}}
        responses = {"200": ok, "400": problem("The query is invalid; `errors` names the fields"),
                     "404": problem("Unknown query, or nothing found")}
        required = set(payload_schema.get("required", ()))
        paths[f"/api/query/{h.name}"] = {
            "get": {
                "operationId": h.name,
                "tags": [_tag(h)],
                "summary": _summary(h),
                "description": _description(h),
                "parameters": [
                    {"name": name, "in": "query", "required": name in required,
                     "schema": schema}
                    for name, schema in payload_schema.get("properties", {}).items()],
                "responses": responses,
            },
            "post": {
                "operationId": f"{h.name}Post",
                "tags": [_tag(h)],
                "summary": _summary(h).rstrip(".") + " (JSON body).",
                "description": _description(h),
                # a query with required fields needs a body; one without takes none as {}
                "requestBody": {"required": bool(required), "content": {"application/json": {
                    "schema": payload_schema_of[(h.kind, h.name)]}}},
                "responses": responses,
            },
        }

    for source, target, field in links or ():
        response = paths[f"/api/command/{source}"]["post"]["responses"]["200"]
        response.setdefault("links", {})[target] = {
            "operationId": target,
            "description": f"`result` is the `{field}` of {target}",
            "requestBody": {field: "$response.body#/result"}}

    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {"schemas": components},
    }
    if servers:
        doc["servers"] = [{"url": url} for url in servers]
    return doc


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {
        "schema": {"$ref": REF.format(name="ProblemDetails")}}}}


def _tag(h: Handler) -> str:
    if h.workflow is not None:
        return h.workflow.__name__
    return "Queries"


def _summary(h: Handler) -> str:
    """The first sentence of the docstring's first paragraph, on one line."""
    doc = h.description or h.payload_type.__doc__ or ""
    paragraph = " ".join(doc.strip().split("\n\n", 1)[0].split())
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", paragraph, maxsplit=1)[0] or h.name


def _description(h: Handler) -> str:
    return (h.description or "").strip()
