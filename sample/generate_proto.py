"""Regenerate the committed protobuf / gRPC code of svrnty_sample from sample/protos/svrnty/sample/v1/commands.proto.

Run ``python sample/generate_proto.py`` after editing it (needs ``grpcio-tools``). The test suite runs the same
generation into a temporary directory and fails when the committed code is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from svrnty_events_grpc.codegen import ProtoTarget

HERE = Path(__file__).resolve().parent
TARGET = ProtoTarget(proto_root=HERE / "protos", proto="svrnty/sample/v1/commands.proto", package_dir=HERE / "svrnty_sample" / "proto")
# what the tests check the committed code against
PROTO_ROOT, PROTO, PACKAGE_DIR = TARGET.proto_root, TARGET.proto, TARGET.package_dir
generate, normalized = TARGET.generate, TARGET.normalized

if __name__ == "__main__":
    sys.exit(TARGET.regenerate())
