"""Configuration, result and error of a ``prepare`` run."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from dataengine.configs import check, check_int, setting
from dataengine.errors import DataEngineError

__all__ = ["PrepareConfig", "PrepareError", "PrepareSummary"]


class PrepareError(DataEngineError):
    """A prepare run cannot go on: other settings journaled in the view, a
    part still running, a write that failed (disk full). The message says
    what to do."""

    kind = "prepare"


def _default_workers() -> int:
    return os.cpu_count() or 1


def _part_arg(text: str) -> tuple[int, int]:
    """``I/N`` -> ``(I, N)`` (the range is checked by ``PrepareConfig``)."""
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit()):
        raise argparse.ArgumentTypeError(f"must be I/N, e.g. 0/8, got {text!r}")
    return int(index), int(count)


@dataclass(frozen=True)
class PrepareConfig:
    """How to prepare. Each setting's help says its meaning;
    ``dataengine prepare`` has one flag per setting
    (``dataengine.configs.add_flags``). Errors name the field as
    ``prepare.FIELD``."""

    workers: int = setting(
        factory=_default_workers,
        help="worker processes; 1 runs in the calling process (default: cores)",
    )
    part: tuple[int, int] | None = setting(
        None,
        help="prepare only the shards whose id % N == I (one machine of N); the last part "
        "to finish writes the manifest (default: all shards, and after an N-part run the "
        "shards no part finished)",
        metavar="I/N",
        parse=_part_arg,
    )

    def __post_init__(self) -> None:
        check_int(self.workers, "prepare.workers", 1)
        if self.part is not None:
            part = tuple(self.part)
            check(
                len(part) == 2
                and all(isinstance(v, int) for v in part)
                and 1 <= part[1] <= 1 << 20
                and 0 <= part[0] < part[1],
                "prepare.part",
                f"must be (index, count) with 0 <= index < count, got {part!r}",
            )
            object.__setattr__(self, "part", part)


@dataclass(frozen=True)
class PrepareSummary:
    """What a prepare run did. Sizes in bytes, times in seconds.

    ``status``: "prepared" (this run wrote manifest.json), "part_done" (this
    part's shards are done, other parts' are not yet), or
    "already_prepared" (the view was finished before; nothing done).
    ``samples``/``shards``/``bytes``/``failed`` describe the whole view (the
    shards finished so far for "part_done"); ``prepared_now`` counts the
    studies this run computed; ``cpu_s`` is this run's process tree.
    """

    status: str
    dataset: str
    view_dir: str
    prefix_key: str
    samples: int
    prepared_now: int
    shards: int
    shards_total: int
    bytes: int
    source_bytes: int
    failed: dict[str, int]
    elapsed_s: float
    cpu_s: float
    workers: int
    part: tuple[int, int] | None = None

    @property
    def studies_per_s(self) -> float:
        return self.prepared_now / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def size_ratio(self) -> float:
        """View bytes over the bytes of the source shards it covers."""
        return self.bytes / self.source_bytes if self.source_bytes else 0.0

    def format(self) -> str:
        failed = ", ".join(f"{k}={v}" for k, v in sorted(self.failed.items())) or "none"
        head = {
            "prepared": "prepared view",
            "part_done": f"prepared part {self.part[0]}/{self.part[1]} of view"
            if self.part
            else "prepared part of view",
            "already_prepared": "already prepared: view",
        }[self.status]
        lines = [
            f"{head} {self.prefix_key} of dataset {self.dataset!r} -> {self.view_dir}",
            f"  samples: {self.samples} ({self.prepared_now} prepared by this run), "
            f"failed: {failed}",
            f"  shards: {self.shards} of {self.shards_total}, {self.bytes / 1e6:.2f} MB "
            f"({self.size_ratio:.2f}x the source shards' {self.source_bytes / 1e6:.2f} MB)",
            f"  time: {self.elapsed_s:.2f} s ({self.studies_per_s:.1f} studies/s, "
            f"{self.cpu_s:.1f} CPU s, {self.workers} worker{'' if self.workers == 1 else 's'})",
        ]
        if self.status == "part_done":
            lines.append(
                f"  {self.shards_total - self.shards} shards remain in other parts; the last "
                "part to finish (or `dataengine prepare` without --part) writes manifest.json"
            )
        return "\n".join(lines)
