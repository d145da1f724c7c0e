"""The sample's CommandService and QueryService on the gRPC provider's server.

The RPCs are bound to the handlers by name (``AddUser`` -> command ``addUser``), and messages are
converted field by field to the handlers' msgspec types, so validation is the same as over HTTP:
one set of rules, in the Structs. Every registered command and query must have its RPC (and every
RPC its handler): a mismatch stops the host at start, naming what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import msgspec
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from svrnty_events import EventStreamingHost

from .operations import problem_for, run_command, run_query
from .proto import commands_pb2, commands_pb2_grpc

log = logging.getLogger("svrnty_sample.grpc")

WORKFLOW_ID_METADATA = "workflow-id"

STATUS_OF_PROBLEM = {
    "validation": grpc.StatusCode.INVALID_ARGUMENT,
    "unknown_operation": grpc.StatusCode.UNIMPLEMENTED,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "conflict": grpc.StatusCode.FAILED_PRECONDITION,
}

Rpc = Callable[[Message, grpc.aio.ServicerContext], Awaitable[Message]]


def add_services(server: grpc.aio.Server, host: EventStreamingHost) -> list[str]:
    """Add CommandService and QueryService for the host's handlers to ``server``; return their
    full names (for reflection and health checking)."""
    commands_pb2_grpc.add_CommandServiceServicer_to_server(
        _servicer(commands_pb2_grpc.CommandServiceServicer(), "CommandService",
                  host.handlers.commands, lambda name: _command_rpc(host, name)), server)
    commands_pb2_grpc.add_QueryServiceServicer_to_server(
        _servicer(commands_pb2_grpc.QueryServiceServicer(), "QueryService",
                  host.handlers.queries, lambda name: _query_rpc(host, name)), server)
    return [service.full_name for service in commands_pb2.DESCRIPTOR.services_by_name.values()]


def rpc_name(operation: str) -> str:
    """``addUser`` -> ``AddUser``."""
    return operation[:1].upper() + operation[1:]


def _servicer(servicer: Any, service_name: str, handlers: dict[str, Any],
              make_rpc: Callable[[str], Rpc]) -> Any:
    service: ServiceDescriptor = commands_pb2.DESCRIPTOR.services_by_name[service_name]
    rpcs = {m.name for m in service.methods}
    wanted = {rpc_name(name): name for name in handlers}
    missing, extra = sorted(set(wanted) - rpcs), sorted(rpcs - set(wanted))
    if missing or extra:
        raise RuntimeError(
            f"{service.full_name} does not match the registered handlers: "
            + "; ".join(filter(None, [missing and f"no RPC for {', '.join(missing)}",
                                      extra and f"no handler for {', '.join(extra)}"]))
            + " (edit protos/svrnty/sample/v1/commands.proto, then run sample/generate_proto.py)")
    for method in service.methods:
        setattr(servicer, method.name, make_rpc(wanted[method.name]))
    return servicer


def _command_rpc(host: EventStreamingHost, name: str) -> Rpc:
    method = commands_pb2.DESCRIPTOR.services_by_name["CommandService"].methods_by_name[
        rpc_name(name)]
    response_type = getattr(commands_pb2, method.output_type.name)

    async def rpc(request: Message, context: grpc.aio.ServicerContext) -> Message:
        metadata = dict(context.invocation_metadata() or ())
        try:
            result = await run_command(host, name, message_to_dict(request),
                                       metadata.get(WORKFLOW_ID_METADATA) or None)
        except Exception as exc:
            await _abort(context, exc, name)
        return _to_message({"result": result.value, "workflow_id": result.workflow_id},
                           response_type)
    return rpc


def _query_rpc(host: EventStreamingHost, name: str) -> Rpc:
    method = commands_pb2.DESCRIPTOR.services_by_name["QueryService"].methods_by_name[
        rpc_name(name)]
    response_type = getattr(commands_pb2, method.output_type.name)

    async def rpc(request: Message, context: grpc.aio.ServicerContext) -> Message:
        try:
            value = await run_query(host, name, message_to_dict(request))
        except Exception as exc:
            await _abort(context, exc, name)
        return _to_message({"result": value}, response_type)
    return rpc


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, name: str) -> None:
    problem = problem_for(exc)
    if problem is None:
        log.exception("gRPC %s failed", name)
        await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: the host "
                            "logged the details")
    assert problem is not None
    if problem.errors:
        context.set_trailing_metadata(tuple(("field", e.field) for e in problem.errors))
    await context.abort(STATUS_OF_PROBLEM[problem.kind], problem.detail)


def message_to_dict(message: Message) -> dict[str, Any]:
    """The fields of ``message`` as plain values: unset ``optional`` fields are left out (so the
    handler's default applies), plain proto3 scalars are always there (so an empty ``name`` is
    refused by the handler's rules, not mistaken for a missing one)."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        if field.has_presence and not message.HasField(field.name):
            continue
        value = getattr(message, field.name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                value = [message_to_dict(v) for v in value]
            else:
                value = message_to_dict(value)
        elif field.is_repeated:
            value = list(value)
        out[field.name] = value
    return out


def _to_message(value: dict[str, Any], message_type: type[Message]) -> Message:
    return json_format.ParseDict(_drop_none(msgspec.to_builtins(value)), message_type())


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
