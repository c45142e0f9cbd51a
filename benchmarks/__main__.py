"""``python -m benchmarks [NAME ...] [-- options]``: run the benchmarks (all
by default). Options after the names go to each benchmark's own parser."""

from __future__ import annotations

import sys

from benchmarks import bench_vs_dataloader

BENCHMARKS = {"vs_dataloader": bench_vs_dataloader.main}


def main(argv: list[str]) -> int:
    names = [a for a in argv if a in BENCHMARKS]
    rest = [a for a in argv if a not in BENCHMARKS and a != "--"]
    for name in names or list(BENCHMARKS):
        print(f"== benchmark {name} ==", flush=True)
        code = BENCHMARKS[name](rest)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
