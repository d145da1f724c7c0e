"""The committed gRPC code matches sample/protos, and the proto matches the registered handlers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from svrnty_sample.app import create_streaming
from svrnty_sample.grpc_services import _servicer, rpc_name
from svrnty_sample.proto import commands_pb2, commands_pb2_grpc

SAMPLE = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("sample_generate_proto",
                                                  SAMPLE / "generate_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_up_to_date(tmp_path: Path):
    pytest.importorskip("grpc_tools")
    gen = _generator()
    for name, source in gen.generate(tmp_path).items():
        committed = (gen.PACKAGE_DIR / name).read_text(encoding="utf-8")
        assert gen.normalized(committed) == gen.normalized(source), (
            f"{name} is stale: run python sample/generate_proto.py")


def test_generated_imports_resolve_inside_the_package():
    source = (SAMPLE / "svrnty_sample" / "proto" / "commands_pb2_grpc.py").read_text()
    assert "from . import commands_pb2" in source and "from svrnty." not in source


def test_every_handler_has_its_rpc_and_message_types():
    streaming = create_streaming()
    services = commands_pb2.DESCRIPTOR.services_by_name
    for kind, table, service in (("Command", streaming.handlers.commands, "CommandService"),
                                 ("Query", streaming.handlers.queries, "QueryService")):
        methods = services[service].methods_by_name
        assert set(methods) == {rpc_name(name) for name in table}
        for name in table:
            method = methods[rpc_name(name)]
            assert method.input_type.name == f"{rpc_name(name)}{kind}Request"
            assert method.output_type.name == f"{rpc_name(name)}{kind}Response"


def test_a_handler_without_rpc_stops_the_service_naming_it():
    handlers = dict.fromkeys(create_streaming().handlers.commands) | {"launchRocket": None}
    with pytest.raises(RuntimeError, match="no RPC for LaunchRocket"):
        _servicer(commands_pb2_grpc.CommandServiceServicer(), "CommandService", handlers,
                  lambda name: None)
