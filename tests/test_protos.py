"""The checked-in stubs are exactly what the pinned protoc generates."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "tools" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_stubs_match_the_protos(tmp_path: Path) -> None:
    _generator().generate(tmp_path)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*.py*"))
    assert [str(p) for p in generated] == [
        "dataengine/v1/dataengine_pb2.py",
        "dataengine/v1/dataengine_pb2.pyi",
        "dataengine/v1/dataengine_pb2_grpc.py",
        "dataengine/v1/record_pb2.py",
        "dataengine/v1/record_pb2.pyi",
        "dataengine/v1/record_pb2_grpc.py",
    ]
    for rel in generated:
        fresh = (tmp_path / rel).read_bytes()
        checked_in = (ROOT / rel).read_bytes()
        assert fresh == checked_in, f"{rel} drifted from protos/: run `make protos`"
