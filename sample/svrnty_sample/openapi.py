"""The OpenAPI 3.1 document of the HTTP API, generated from the registered handlers' msgspec
types: adding a handler adds its operation, its request schema and its response schema."""

from __future__ import annotations

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
                     description: str = "", servers: list[str] | None = None) -> dict[str, Any]:
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
        paths[f"/api/command/{h.name}"] = {"post": {
            "operationId": h.name,
            "tags": [_tag(h)],
            "summary": _summary(h),
            "description": _description(h),
            "parameters": [{
                "name": WORKFLOW_ID_HEADER, "in": "header", "required": False,
                "description": "Continue this workflow instead of starting a new one (commands "
                               "that name their workflow in a field need not send it)",
                "schema": {"type": "string"}}],
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
                "400": problem("The payload is invalid; `errors` names the fields"),
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
                "summary": _summary(h) + " (JSON body)",
                "description": _description(h),
                "requestBody": {"required": False, "content": {"application/json": {
                    "schema": payload_schema_of[(h.kind, h.name)]}}},
                "responses": responses,
            },
        }

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
    doc = h.description or h.payload_type.__doc__ or ""
    return doc.strip().split("\n", 1)[0] or h.name


def _description(h: Handler) -> str:
    return (h.description or "").strip()
