"""Batch digests: a fingerprint of every batch's bytes, to show that the
same batches come out whichever engines serve them.

``batch_digest(batch)`` is the SHA-256 (hex) of, for each tensor name in
sorted (code point) order, the concatenation of:

- the name in UTF-8, then a NUL byte;
- the dtype as torch names it without ``torch.`` (``float32``, ``int64``,
  ...) in ASCII, then a NUL byte;
- the shape as decimal sizes joined by ``,`` (``2,8,64,64``; empty for a
  scalar) in ASCII, then a NUL byte;
- the elements' raw bytes, little-endian, in C (row-major) order, so batch
  row 0 first.

The bytes are hashed as they are, whatever the dtype: a ``bfloat16`` or
``float16`` element is its 2-byte bit pattern, a ``uint8`` image one byte;
nothing is widened or converted first. A batch served with
``PipelineSpec.image_dtype="bfloat16"`` therefore has its own digests (its
dtype names and bytes differ from float32's), equally stable across engines.

Every tensor counts, ``sample_id`` included, so the digest covers the ids and
their order too. ``digest_lines`` gives one line per micro-batch of an epoch,
``POSITION IDS SHA256``: the global position where the batch's global batch
starts, the sample ids joined by ``,``, and the digest; this is what
``dataengine digest`` prints.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping

import torch

from dataengine.client._client import EngineClient

__all__ = ["batch_digest", "digest_lines", "format_line"]

_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _le_bytes(t: torch.Tensor) -> bytes:
    """Raw little-endian C-order bytes of ``t`` (on any host)."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if t.is_complex():
        flat = torch.view_as_real(flat).reshape(-1)
    size = flat.element_size()
    array = flat.view(_INT_OF_SIZE[size]).numpy()
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def batch_digest(batch: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a batch, as defined in the module docstring."""
    h = hashlib.sha256()
    for name in sorted(batch):
        t = batch[name]
        h.update(name.encode("utf-8") + b"\0")
        h.update(str(t.dtype).removeprefix("torch.").encode("ascii") + b"\0")
        h.update(",".join(str(d) for d in t.shape).encode("ascii") + b"\0")
        h.update(_le_bytes(t))
    return h.hexdigest()


def format_line(position: int, batch: Mapping[str, torch.Tensor]) -> str:
    """``POSITION IDS SHA256`` for one micro-batch."""
    ids = ",".join(str(int(i)) for i in batch["sample_id"].tolist())
    return f"{position} {ids} {batch_digest(batch)}"


def digest_lines(
    client: EngineClient, epoch: int, start: int = 0, limit: int | None = None
) -> Iterator[str]:
    """One line per micro-batch of ``client``'s rank in epoch ``epoch``, from
    global position ``start`` on, at most ``limit`` lines. Moves the client's
    cursor to ``(epoch, start)`` first."""
    client.load_state_dict({"seed": client.config.seed, "epoch": epoch, "position": start})
    if limit is not None and limit <= 0:
        return
    with contextlib.closing(client.positioned_batches(epochs=1)) as batches:
        for count, (_epoch, position, batch) in enumerate(batches, 1):
            yield format_line(position, batch)
            if limit is not None and count >= limit:
                return
