"""Regenerate the committed protobuf / gRPC code of svrnty_sample from protos/.

Run ``python sample/generate_proto.py`` after editing
``sample/protos/svrnty/sample/v1/commands.proto`` (needs ``grpcio-tools``). The test suite runs the
same generation into a temporary directory and fails when the committed code is stale.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE / "protos"
PROTO = "svrnty/sample/v1/commands.proto"
PACKAGE_DIR = HERE / "svrnty_sample" / "proto"
GENERATED = ("commands_pb2.py", "commands_pb2.pyi", "commands_pb2_grpc.py")


def generate(out_dir: Path) -> dict[str, str]:
    """Run protoc (from grpcio-tools) into ``out_dir``; return {file name: fixed source}."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}",
            f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
            PROTO]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO_ROOT / PROTO}")
    src_dir = out_dir / Path(PROTO).parent
    return {name: fix_imports((src_dir / name).read_text(encoding="utf-8"))
            for name in GENERATED}


def fix_imports(source: str) -> str:
    # protoc writes `from svrnty.sample.v1 import commands_pb2`; the code lives inside
    # svrnty_sample.proto, so the import is made relative.
    return re.sub(r"^from svrnty\.sample\.v1 import ", "from . import ", source, flags=re.M)


def normalized(source: str) -> str:
    """The source without the lines that only name the generator's version, so the staleness
    check compares what the .proto says, not which grpcio-tools wrote it."""
    skip = re.compile(r"(Protobuf Python Version|_runtime_version\.|GRPC_GENERATED_VERSION =|"
                      r"^\s*\d+,\s*$|^\s*'',?\s*$|^\s*'svrnty/sample/v1/commands\.proto'\s*$)")
    return "\n".join(line for line in source.splitlines() if not skip.search(line))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
    PACKAGE_DIR.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (PACKAGE_DIR / name).write_text(source, encoding="utf-8")
        print(f"wrote {PACKAGE_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
