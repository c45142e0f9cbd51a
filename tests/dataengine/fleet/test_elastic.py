"""Elastic resume: a cursor taken with 2 ranks resumes with 3 from the same
global position; across both runs every sample of the epoch comes once, with
the same bytes as in an undisturbed single-rank epoch."""

from __future__ import annotations

import contextlib

import pytest
import torch

from dataengine.client import EngineClient
from dataengine.client.digest import batch_digest
from dataengine.pipeline.spec import Augmentations, PipelineSpec

pytestmark = pytest.mark.slow

AUGMENTED = PipelineSpec(augment=Augmentations.all_on())


def _per_sample(batches) -> dict[int, str]:
    """sample id -> digest of its row of every tensor."""
    out = {}
    for b in batches:
        for i, sid in enumerate(b["sample_id"].tolist()):
            out[sid] = batch_digest({name: t[i : i + 1] for name, t in b.items()})
    return out


def _ranks(stack: contextlib.ExitStack, engine: str, world: int) -> list[EngineClient]:
    return [
        stack.enter_context(
            EngineClient(engine, pipeline=AUGMENTED, seed=8, batch_size=2, rank=r, world_size=world)
        )
        for r in range(world)
    ]


@pytest.mark.parametrize(("before", "after"), [(2, 3), (3, 2)])
def test_a_cursor_taken_with_w_ranks_resumes_with_another_w(
    engine: str, before: int, after: int
) -> None:
    with EngineClient(engine, pipeline=AUGMENTED, seed=8, batch_size=12) as client:
        reference = _per_sample(client.batches(epochs=1))
    seen = []
    with contextlib.ExitStack() as stack:
        ranks = _ranks(stack, engine, before)
        iters = [r.batches(epochs=1) for r in ranks]
        seen += [next(it) for it in iters]  # one global batch, in lockstep
        cursors = [r.state_dict() for r in ranks]
    assert cursors == [{"seed": 8, "epoch": 0, "position": 2 * before}] * before
    with contextlib.ExitStack() as stack:
        for r in _ranks(stack, engine, after):
            r.load_state_dict(cursors[0])
            seen += list(r.batches(epochs=1))
    ids = torch.cat([b["sample_id"] for b in seen]).tolist()
    assert sorted(ids) == list(range(12))  # every sample exactly once
    assert _per_sample(seen) == reference  # with the same bytes
