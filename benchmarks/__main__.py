"""``python -m benchmarks [NAME ...] [-- options]``: run the benchmarks (all
by default, except those in ``OPT_IN``, run only when named: ``gpu``).
Options after the names go to each benchmark's own parser."""

from __future__ import annotations

import sys

from benchmarks import (
    bench_audit,
    bench_capacity,
    bench_client,
    bench_cold,
    bench_fleet_cache,
    bench_gpu,
    bench_hostile,
    bench_recovery,
    bench_security,
    bench_stored,
    bench_tiers,
    bench_vs_dataloader,
)

BENCHMARKS = {
    "vs_dataloader": bench_vs_dataloader.main,
    "tiers": bench_tiers.main,
    "fleet_cache": bench_fleet_cache.main,
    "recovery": bench_recovery.main,
    "cold": bench_cold.main,
    "stored": bench_stored.main,
    "client": bench_client.main,
    "security": bench_security.main,
    "audit": bench_audit.main,
    "hostile": bench_hostile.main,
    "capacity": bench_capacity.main,
    "gpu": bench_gpu.main,
}

# Run only when named: they need hardware this machine may not have.
OPT_IN = {"gpu"}


def main(argv: list[str]) -> int:
    names = [a for a in argv if a in BENCHMARKS]
    rest = [a for a in argv if a not in BENCHMARKS and a != "--"]
    for name in names or [n for n in BENCHMARKS if n not in OPT_IN]:
        print(f"== benchmark {name} ==", flush=True)
        code = BENCHMARKS[name](rest)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
