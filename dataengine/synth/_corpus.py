"""``generate_corpus``: a folder of studies as a hospital would export them."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataengine.errors import ConfigError
from dataengine.synth._ct import TRANSFER_SYNTAXES, make_ct_series
from dataengine.synth._ecg import make_ecg_signals, write_ecg_edf
from dataengine.synth._identity import FINDINGS, make_identity
from dataengine.synth._report import make_report

__all__ = ["PHI_PLANTED_NAME", "SynthSummary", "generate_corpus", "study_folder_name"]

_LOG = logging.getLogger(__name__)

PHI_PLANTED_NAME = "phi_planted.json"


@dataclass(frozen=True)
class SynthSummary:
    """What ``generate_corpus`` wrote."""

    studies: int
    files: int  # files written, phi_planted.json included
    bytes: int  # bytes written
    seconds: float  # wall-clock time taken

    def format(self) -> str:
        return (
            f"synth: {self.studies} studies, {self.files} files, "
            f"{self.bytes / 1e6:.2f} MB in {self.seconds:.2f} s"
        )


def study_folder_name(index: int) -> str:
    """Folder of study ``index`` (an export sequence number: folder names are
    kept free of PHI, since paths end up in quarantine reports)."""
    return f"study_{index:04d}"


def _check(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"synth.{name}", f"must be an integer within [{lo}, {hi}], got {value!r}")


def generate_corpus(
    raw_dir: Path,
    studies: int,
    seed: int = 0,
    *,
    slices: int = 6,
    rows: int = 64,
    cols: int = 64,
    ecg_seconds: int = 10,
    ecg_rate_hz: int = 250,
    transfer_syntaxes: Sequence[str] = ("explicit",),
) -> SynthSummary:
    """Write ``studies`` study folders under ``raw_dir`` plus ``phi_planted.json``.

    Each ``raw_dir/study_NNNN/`` holds ``ct_0000.dcm``... (a CT series of
    ``slices`` x ``rows`` x ``cols`` voxels, in shuffled instance order),
    ``ecg.edf`` (EDF+ 12-lead ECG, mV, ``ecg_seconds`` s at ``ecg_rate_hz``
    Hz) and ``report.txt``. The output is byte-identical for equal arguments.
    Study ``i``'s CT files use ``transfer_syntaxes[i % len(transfer_syntaxes)]``
    (names of ``TRANSFER_SYNTAXES``: ``explicit``, ``rle``, ``jpeg2000``, all
    lossless), so ``("explicit", "rle", "jpeg2000")`` gives a third of each.
    ``phi_planted.json`` is a sorted JSON list of every identifying string
    written, in each written form.
    """
    _check("studies", studies, 1, 1_000_000)
    _check("slices", slices, 1, 1024)
    _check("rows", rows, 8, 4096)
    _check("cols", cols, 8, 4096)
    _check("ecg_seconds", ecg_seconds, 1, 3600)
    _check("ecg_rate_hz", ecg_rate_hz, 50, 10_000)
    syntaxes = tuple(transfer_syntaxes)
    if isinstance(transfer_syntaxes, str) or not syntaxes:
        raise ConfigError(
            "synth.transfer_syntaxes",
            f"must be a non-empty list of names, got {transfer_syntaxes!r}",
        )
    unknown = [name for name in syntaxes if name not in TRANSFER_SYNTAXES]
    if unknown:
        raise ConfigError(
            "synth.transfer_syntaxes",
            f"unknown {unknown!r}; choose from {sorted(TRANSFER_SYNTAXES)}",
        )
    start = time.perf_counter()
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    planted: set[str] = set()
    files = 0
    total = 0
    # labels cycle through a seeded order of the findings: every corpus of
    # five or more studies is balanced, which keeps it learnable
    label_order = np.random.default_rng([seed]).permutation(len(FINDINGS))
    for index in range(studies):
        rng = np.random.default_rng([seed, index])
        ident = make_identity(rng)
        finding = FINDINGS[int(label_order[index % len(FINDINGS)])]
        heart_rate = int(rng.integers(110, 131) if finding.tachycardia else rng.integers(60, 81))
        lesion_mm = int(rng.integers(8, 16))
        folder = raw_dir / study_folder_name(index)
        folder.mkdir(exist_ok=True)
        series = make_ct_series(
            ident,
            finding,
            seed=seed,
            study_index=index,
            slices=slices,
            rows=rows,
            cols=cols,
            rng=rng,
            transfer_syntax=syntaxes[index % len(syntaxes)],
        )
        for k, data in enumerate(series.files):
            (folder / f"ct_{k:04d}.dcm").write_bytes(data)
            files += 1
            total += len(data)
        signals = make_ecg_signals(heart_rate, ecg_rate_hz, ecg_seconds, rng)
        edf_path = folder / "ecg.edf"
        write_ecg_edf(edf_path, ident, signals, ecg_rate_hz)
        files += 1
        total += edf_path.stat().st_size
        report = make_report(ident, finding, heart_rate, lesion_mm, rng).encode("utf-8")
        (folder / "report.txt").write_bytes(report)
        files += 1
        total += len(report)
        planted.update(ident.planted())
        planted.update((series.study_uid, series.series_uid, series.frame_uid, *series.sop_uids))
    body = (json.dumps(sorted(planted), indent=1) + "\n").encode("utf-8")
    (raw_dir / PHI_PLANTED_NAME).write_bytes(body)
    summary = SynthSummary(studies, files + 1, total + len(body), time.perf_counter() - start)
    _LOG.info(
        "synth wrote %d studies (%d files, %d bytes) to %s",
        studies,
        summary.files,
        summary.bytes,
        raw_dir,
    )
    return summary
