"""The committed generated code matches protos/ (regenerated with grpcio-tools)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
GENERATOR = HERE.parent / "generate_proto.py"


def _generator():
    spec = importlib.util.spec_from_file_location("generate_proto", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_generated_code_is_fresh(tmp_path):
    pytest.importorskip("grpc_tools")
    gen = _generator()
    if not (gen.PROTO_ROOT / gen.PROTO).exists():
        pytest.skip("protos/ is not next to this checkout")
    fresh = gen.generate(tmp_path)
    stale = [name for name, source in fresh.items()
             if gen.normalized(source) != gen.normalized(
                 (gen.PACKAGE_DIR / name).read_text(encoding="utf-8"))]
    assert not stale, (f"generated code is stale: {', '.join(stale)}; run "
                       f"python {GENERATOR.relative_to(HERE.parent.parent.parent)}")


def test_generated_code_imports_inside_the_package():
    from svrnty_events_grpc.proto import events_pb2, events_pb2_grpc

    assert events_pb2.DESCRIPTOR.package == "svrnty.events.v1"
    assert events_pb2_grpc.EventServiceStub
    source = (_generator().PACKAGE_DIR / "events_pb2_grpc.py").read_text()
    assert "from svrnty.events" not in source
