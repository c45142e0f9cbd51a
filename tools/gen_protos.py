"""Regenerate the checked-in gRPC/protobuf stubs from ``protos/``.

Usage: ``python tools/gen_protos.py [OUT_DIR]`` (default: the repository root,
which writes ``dataengine/v1/*_pb2*.py``). ``tests/test_protos.py`` runs this
into a temporary directory and compares the bytes, so the stubs cannot drift
from the ``.proto`` files.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_FILES = ("dataengine/v1/dataengine.proto", "dataengine/v1/record.proto")


def generate(out_dir: Path) -> None:
    """Write ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *PROTO_FILES,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
