"""Why the prepared view stores HU as int16 and waveforms as float16: size
and read cost of the stored form against the same arrays kept as float32.

For the studies of the ``cold`` corpus (made by ``python -m benchmarks cold``
first, or a small synthetic corpus with ``--quick``) and the ``cold`` job
shape, each study's prefix is encoded both ways as a prefix value (blob in a
checksummed zstd frame, level 3). Reported per study: value bytes, and the
CPU milliseconds of reading it back the way a worker does: decompress, parse,
and augment (crop, flip, window: the float32 conversion happens there), each
the mean of ``--repeats`` passes in one process. Ratios from one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_cold import FULL_CORPUS, QUICK_CORPUS, QUICK_SPEC, SPEC, cold_corpus
from dataengine.pipeline.augment import augment
from dataengine.pipeline.prefix import run_prefix
from dataengine.pipeline.spec import PipelineSpec
from dataengine.pipeline.stored import compress_blob, decode_prefix, decompress_blob, encode_prefix
from dataengine.shards import Dataset

__all__ = ["main"]


def _as_float32(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = dict(arrays)
    out["hu"] = arrays["hu"].astype(np.float32)
    out["wave"] = arrays["wave"].astype(np.float32)
    out["tokens"] = arrays["tokens"].astype(np.int32)
    return out


def _read_ms(value: bytes, sid: int, spec: PipelineSpec, repeats: int) -> float:
    t0 = time.process_time()
    for epoch in range(repeats):
        augment(decode_prefix(decompress_blob(value, sid), sid), spec, 0, epoch, sid)
    return 1e3 * (time.process_time() - t0) / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks stored", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="8 small studies")
    parser.add_argument("--out", type=Path, default=Path("bench-output"))
    parser.add_argument("--studies", type=int, default=12, help="studies measured")
    parser.add_argument("--repeats", type=int, default=10, help="reads per study and form")
    args = parser.parse_args(argv)
    corpus = QUICK_CORPUS if args.quick else FULL_CORPUS  # cold's, cached and shared
    spec = QUICK_SPEC if args.quick else SPEC
    paths = cold_corpus(args.out, corpus, spec)
    sizes: dict[str, list[int]] = {"stored": [], "float32": []}
    reads: dict[str, list[float]] = {"stored": [], "float32": []}
    with Dataset(paths.dataset) as ds:
        for sid in range(min(args.studies, len(ds))):
            stored = run_prefix(ds.read(sid), spec)
            for form, arrays in (("stored", stored), ("float32", _as_float32(stored))):
                value = compress_blob(encode_prefix(sid, arrays))
                sizes[form].append(len(value))
                reads[form].append(_read_ms(value, sid, spec, args.repeats))
    n = len(sizes["stored"])
    print(f"{n} studies of the cold corpus, job {spec.image_slices}x{spec.image_resize}^2, "
          f"ECG at {spec.wave_rate_hz:g} Hz; pid {os.getpid()}")  # fmt: skip
    print(f"{'form':<10}{'value KB/study':>16}{'read+augment CPU ms':>22}")
    for form in ("float32", "stored"):
        print(f"{form:<10}{np.mean(sizes[form]) / 1e3:>16.1f}{np.mean(reads[form]):>22.2f}")
    size_ratio = np.mean(sizes["stored"]) / np.mean(sizes["float32"])
    read_ratio = np.mean(reads["stored"]) / np.mean(reads["float32"])
    print(f"stored / float32: size {size_ratio:.2f}x, read cost {read_ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
