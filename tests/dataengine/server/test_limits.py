"""Bounded requests on a real engine: ids per request, duplicate ids, and the
long-lived calls open at once, in all and per principal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

from .test_auth import SERVICE, TOKENS, grpcurl, principals, serve_once, write_auth


def _stub(address: str) -> Iterator[pb_grpc.DataEngineStub]:
    with grpc.insecure_channel(address) as channel:
        yield pb_grpc.DataEngineStub(channel)


stub = contextmanager(_stub)


def _meta(name: str | None) -> list[tuple[str, str]]:
    return [] if name is None else [("authorization", f"Bearer {TOKENS[name]}")]


def _lease(s: pb_grpc.DataEngineStub, who: str | None) -> Any:
    """An open OpenDataChannel call (a long-lived lease until cancelled)."""
    call = s.OpenDataChannel(pb.DataChannelRequest(), metadata=_meta(who), timeout=60)
    next(call)  # the port and token: the lease is open
    return call


def _code(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def _stream(s: pb_grpc.DataEngineStub, ids: list[int], who: str | None = None) -> list[Any]:
    return list(s.StreamSamples(pb.SampleRequest(sample_ids=ids), metadata=_meta(who), timeout=60))


def test_ids_per_request_and_duplicates_are_invalid_argument(
    cold_dataset: Path, start_engine: Callable
) -> None:
    engine = start_engine([cold_dataset], "--workers", "1", "--max-ids-per-request", "4")
    with stub(engine.address) as s:
        code, details = _code(lambda: _stream(s, [0, 1, 2, 3, 4]))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("sample_ids:") and "at most 4" in details
        code, details = _code(lambda: _stream(s, [3, 1, 3]))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("sample_ids[2]:") and "twice" in details
        assert len(_stream(s, [3, 1, 2, 0])) == 4  # at the cap: served
    # The report's request: 200,000 copies of one id, refused before any claim.
    code, out = grpcurl(engine.address, f"{SERVICE}/StreamSamples", {"sample_ids": [1] * 200_000})
    assert code != 0 and "InvalidArgument" in out and "200000 ids" in out


def test_a_request_larger_than_the_cap_allows_is_refused_by_grpc(
    cold_dataset: Path, start_engine: Callable
) -> None:
    engine = start_engine([cold_dataset], "--workers", "1")
    with stub(engine.address) as s:
        huge = pb.SampleRequest(sample_ids=[2**60] * 1_000_000)  # ~9 MB
        code, _ = _code(lambda: list(s.StreamSamples(huge, timeout=60)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(_stream(s, [0, 1])) == 2  # and the engine serves on


def test_long_lived_calls_are_capped_per_principal_and_in_all(
    cold_dataset: Path, start_engine: Callable, tmp_path: Path
) -> None:
    auth = write_auth(tmp_path / "auth.json", principals(cold_dataset.name))
    entries = principals(cold_dataset.name)
    entries[2]["datasets"] = "*"  # "other" may stream too
    write_auth(auth, entries)
    engine = start_engine(
        [cold_dataset], "--workers", "1", "--auth-file", str(auth),
        "--max-streams", "3", "--max-streams-per-principal", "2",
    )  # fmt: skip
    with stub(engine.address) as s, grpc.insecure_channel(engine.address) as ch:
        held = [_lease(s, "reader"), _lease(s, "reader")]
        code, details = _code(lambda: _lease(s, "reader"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "principal 'reader'" in details and "limit 2" in details
        code, _ = _code(lambda: _stream(s, [0], "reader"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        held.append(_lease(s, "other"))  # the third, another principal's
        code, details = _code(lambda: _stream(s, [0], "other"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit 3" in details
        # Health and short calls still answer with every long-lived slot taken.
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        info = s.DescribeDataset(pb.DescribeDatasetRequest(), metadata=_meta("reader"), timeout=30)
        assert info.name == cold_dataset.name
        # Ending a call frees its slot (once the engine has seen the end).
        held.pop(0).cancel()
        for _ in range(100):
            code, _ = _code(lambda: _stream(s, [0, 1], "reader"))
            if code == grpc.StatusCode.OK:
                break
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert code == grpc.StatusCode.OK
        for call in held:
            call.cancel()


def test_without_auth_only_the_total_cap_applies(
    cold_dataset: Path, start_engine: Callable
) -> None:
    engine = start_engine([cold_dataset], "--workers", "1", "--max-streams", "2")
    with stub(engine.address) as s:
        held = [_lease(s, None), _lease(s, None)]
        code, details = _code(lambda: _lease(s, None))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit 2" in details
        for call in held:
            call.cancel()


@pytest.mark.parametrize("flag", ["--max-ids-per-request", "--max-streams-per-principal"])
def test_limit_flags_are_checked(cold_dataset: Path, flag: str) -> None:
    done = serve_once(cold_dataset, flag, "-1")
    assert done.returncode == 2 and flag.lstrip("-").replace("-", "_") in done.stderr
