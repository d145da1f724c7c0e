"""Regenerating committed protobuf / gRPC code: used by this package's ``generate_proto.py``,
by plugins that serve their own services on the provider's port (the sample's), and by their
staleness tests. Needs ``grpcio-tools`` (imported only when generating)."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProtoTarget:
    """One .proto file and the package folder its generated code is committed to."""

    proto_root: Path
    #: path of the .proto below ``proto_root``, e.g. ``svrnty/events/v1/events.proto``
    proto: str
    package_dir: Path

    @property
    def generated(self) -> tuple[str, ...]:
        stem = Path(self.proto).stem
        return (f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py")

    def generate(self, out_dir: Path) -> dict[str, str]:
        """Run protoc into ``out_dir``; return {file name: source with relative imports}."""
        import grpc_tools
        from grpc_tools import protoc

        include = Path(grpc_tools.__file__).parent / "_proto"
        args = ["grpc_tools.protoc", f"-I{self.proto_root}", f"-I{include}",
                f"--python_out={out_dir}", f"--pyi_out={out_dir}",
                f"--grpc_python_out={out_dir}", self.proto]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {self.proto_root / self.proto}")
        src_dir = out_dir / Path(self.proto).parent
        return {name: self.fix_imports((src_dir / name).read_text(encoding="utf-8"))
                for name in self.generated}

    def fix_imports(self, source: str) -> str:
        # protoc writes `from svrnty.events.v1 import events_pb2`; the code lives inside a
        # package of ours, so the import is made relative
        module = re.escape(str(Path(self.proto).parent).replace("/", "."))
        return re.sub(rf"^from {module} import ", "from . import ", source, flags=re.M)

    def normalized(self, source: str) -> str:
        """The source without the lines that only name the generator's version, so a
        staleness check compares what the .proto says, not which grpcio-tools wrote it."""
        skip = re.compile(r"(Protobuf Python Version|_runtime_version\.|GRPC_GENERATED_VERSION =|"
                          rf"^\s*\d+,\s*$|^\s*'',?\s*$|^\s*'{re.escape(self.proto)}'\s*$)")
        return "\n".join(line for line in source.splitlines() if not skip.search(line))

    def write(self, files: dict[str, str]) -> None:
        self.package_dir.mkdir(parents=True, exist_ok=True)
        for name, source in files.items():
            (self.package_dir / name).write_text(source, encoding="utf-8")
            print(f"wrote {self.package_dir / name}")

    def regenerate(self) -> int:
        """Generate in a temporary folder and write the files into the package (the
        ``generate_proto.py`` scripts' main). Returns the exit status."""
        with tempfile.TemporaryDirectory() as tmp:
            self.write(self.generate(Path(tmp)))
        return 0
