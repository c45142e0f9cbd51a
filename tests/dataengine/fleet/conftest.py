"""Fleet fixtures: a dataset with one sample per shard (so ownership spreads
the 12 samples over 12 shards, and shard id == sample id), and fleets of real
``dataengine serve`` processes with one decode worker each (the test machine
has 2 cores), started side by side."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc


@pytest.fixture(scope="session")
def fleet_dataset(raw_corpus: Path, deid_key, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dataengine.pack import PackConfig, pack_dataset

    out = tmp_path_factory.mktemp("fleet") / "fleet12"
    pack_dataset(raw_corpus, out, PackConfig(shard_samples=1, workers=2, key=deid_key))
    return out


def _start_side_by_side(factory: Callable, dataset: Path, n: int, flags: tuple[str, ...]) -> list:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: factory([dataset], "--workers", "1", *flags), range(n)))


@pytest.fixture
def start_fleet(start_engine, fleet_dataset: Path) -> Callable[..., list]:
    """Factory: ``start_fleet(n, *flags)`` -> ``n`` engines serving
    ``fleet_dataset`` (``EngineProcess``, stopped at teardown)."""
    return lambda n, *flags: _start_side_by_side(start_engine, fleet_dataset, n, flags)


@pytest.fixture(scope="session")
def shared_fleet(start_session_engine, fleet_dataset: Path) -> list:
    """3 engines (``EngineProcess``) shared by the session: only for tests
    that leave them serving (SIGCONT what they SIGSTOP) and do not depend on
    what other tests asked them before."""
    return _start_side_by_side(start_session_engine, fleet_dataset, 3, ())


@pytest.fixture(scope="session")
def samples_served() -> Callable[[str], int]:
    """``samples_served(endpoint)``: the engine's GetStats samples_served."""

    def _served(endpoint: str) -> int:
        with grpc.insecure_channel(endpoint) as channel:
            stats = pb_grpc.DataEngineStub(channel).GetStats(pb.GetStatsRequest(), timeout=30)
        return int(stats.samples_served)

    return _served


@pytest.fixture(scope="session")
def wait_until() -> Callable[[Callable[[], bool]], None]:
    """``wait_until(condition)``: poll until true, failing after 30 s."""

    def _wait(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "condition not met within 30 s"
            time.sleep(0.05)

    return _wait
