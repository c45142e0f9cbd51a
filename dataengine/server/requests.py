"""Validation of a ``SampleRequest`` before any work is queued.

Everything a request names is checked in the gRPC front, so a bad request
fails once, fast, with ``INVALID_ARGUMENT`` or ``NOT_FOUND`` naming the
field, instead of once per sample inside the workers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from dataengine.errors import ConfigError, NotFoundError
from dataengine.formats.text import load_tokenizer
from dataengine.pipeline.spec import PipelineSpec
from dataengine.shards import Manifest
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["resolve_dataset", "resolve_pipeline", "validate_sample_ids"]


def resolve_dataset(name: str, manifests: Mapping[str, Manifest]) -> Manifest:
    """The served dataset ``name``; empty selects the only one.

    Raises ``ConfigError`` (field ``dataset``) when the name is empty and
    several are served, ``NotFoundError`` when it is not served here."""
    if not name:
        if len(manifests) == 1:
            return next(iter(manifests.values()))
        raise ConfigError(
            "dataset", f"is required: this engine serves {', '.join(sorted(manifests))}"
        )
    manifest = manifests.get(name)
    if manifest is None:
        served = ", ".join(sorted(manifests)) or "none"
        raise NotFoundError(f"dataset {name!r} is not served by this engine (serving: {served})")
    return manifest


def resolve_pipeline(msg: pb.PipelineSpec, tokenizer_dir: Path | None) -> PipelineSpec:
    """Validate the request's pipeline and resolve its tokenizer.

    ``tokenizer`` is ``"byte"`` or the bare file name of a vocabulary or a
    Hugging Face ``tokenizer.json`` in the engine's ``tokenizer_dir``: a
    client never names arbitrary paths on the engine host. The file is loaded
    here, so a bad one is reported at once."""
    spec = PipelineSpec.from_proto(msg)
    if spec.tokenizer == "byte":
        return spec
    if tokenizer_dir is None:
        raise ConfigError(
            "pipeline.tokenizer",
            f"{spec.tokenizer!r}: this engine offers only 'byte' "
            "(start it with --tokenizer-dir to serve vocabulary files)",
        )
    name = spec.tokenizer
    if Path(name).name != name or name in (".", ".."):
        raise ConfigError("pipeline.tokenizer", f"{name!r} must be a file name, not a path")
    path = (tokenizer_dir / name).resolve()
    if not path.is_file():
        raise ConfigError("pipeline.tokenizer", f"{name!r} is not in this engine's tokenizers")
    load_tokenizer(str(path))  # raises ConfigError on a bad file
    return dataclasses.replace(spec, tokenizer=str(path))


def validate_sample_ids(ids: Sequence[int], manifest: Manifest, max_ids: int | None = None) -> None:
    """At most ``max_ids`` ids (None: no bound), each existing and listed
    once; ``ConfigError`` names the field or the first bad index. Checked
    before anything is claimed, so a hostile request costs the engine only
    its parse."""
    if max_ids is not None and len(ids) > max_ids:
        raise ConfigError(
            "sample_ids",
            f"lists {len(ids)} ids; this engine takes at most {max_ids} per request "
            "(--max-ids-per-request): split the request",
        )
    n = manifest.num_samples
    seen: set[int] = set()
    for i, sid in enumerate(ids):
        if sid >= n:
            raise ConfigError(
                f"sample_ids[{i}]",
                f"{sid} is out of range; dataset {manifest.name!r} has sample ids 0..{n - 1}",
            )
        if sid in seen:
            raise ConfigError(
                f"sample_ids[{i}]",
                f"{sid} is listed twice in one request (each id at most once)",
            )
        seen.add(sid)
