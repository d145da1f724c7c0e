"""Generate the sample's gRPC code from protos/ into svrnty_sample/proto/.

    python sample/scripts/generate_protos.py          # needs grpcio-tools

The generated modules import each other as ``svrnty.sample.v1``; they are rewritten to relative
imports so they resolve inside the ``svrnty_sample.proto`` package. The staleness test
(tests/test_protos.py) regenerates into a temporary folder and compares.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent
PROTO_ROOT = SAMPLE / "protos"
PROTOS = ["svrnty/sample/v1/commands.proto"]
OUTPUT = SAMPLE / "svrnty_sample" / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out: Path = OUTPUT) -> list[Path]:
    """Run protoc for PROTOS; write the flattened, import-fixed modules to ``out``."""
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={tmp}",
                f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", *PROTOS]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        for path in sorted(Path(tmp).rglob("*.py*")):
            if not path.name.endswith(GENERATED_SUFFIXES):
                continue
            text = re.sub(r"^from svrnty\.sample\.v1 import (\w+)", r"from . import \1",
                          path.read_text(encoding="utf-8"), flags=re.M)
            target = out / path.name
            target.write_text(text, encoding="utf-8")
            written.append(target)
    return written


if __name__ == "__main__":
    for p in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT):
        print(p)
