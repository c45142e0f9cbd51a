"""Run ``pack_dataset`` or ``prepare_dataset`` with a fault-injection hook,
as a script in a subprocess, so that a test can take a real process down
at a chosen point of a real run (the production code only calls the hook).

    python hooked_run.py [--kill-at EVENT:N] [--pause-s S] pack RAW_DIR DATASET_DIR
        --key-file FILE [--workers N] [--name NAME] [--shard-samples N]
    python hooked_run.py [--kill-at EVENT:N] [--pause-s S] prepare DATASET_DIR
        --pipeline JSON [--workers N]

``--kill-at sample:N|shard:N|journal:N`` SIGKILLs this process when the run
reports that event with that count (see ``dataengine.pack.PackEvent`` and
``dataengine.prepared.PrepareEvent``); ``--pause-s`` sleeps that long after
each journaled shard, so a test can kill the run from outside mid-way. The
configs are built as ``dataengine pack`` and ``dataengine prepare`` build
them from the same flags, so a rerun of those commands resumes the run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _hook(kill_at: str | None, pause_s: float) -> Callable[[str, int], None]:
    def on_event(event: str, count: int) -> None:
        if kill_at == f"{event}:{count}":
            logging.getLogger(__name__).warning("%s: killing this process", kill_at)
            os.kill(os.getpid(), signal.SIGKILL)
        if event == "journal" and pause_s:
            time.sleep(pause_s)

    return on_event


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hooked_run.py")
    parser.add_argument("--kill-at", default=None, metavar="EVENT:N")
    parser.add_argument("--pause-s", type=float, default=0.0)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("raw_dir", type=Path)
    p.add_argument("dataset_dir", type=Path)
    p.add_argument("--key-file", type=Path, required=True)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--name", default=None)
    p.add_argument("--shard-samples", type=int, default=64)
    p = sub.add_parser("prepare")
    p.add_argument("dataset_dir", type=Path)
    p.add_argument("--pipeline", required=True, metavar="JSON")
    p.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    on_event = _hook(args.kill_at, args.pause_s)
    if args.command == "pack":
        from dataengine.deid.keys import load_key
        from dataengine.pack import PackConfig, pack_dataset

        optional = {"workers": args.workers, "name": args.name}
        config = PackConfig(
            key=load_key(args.key_file),
            shard_samples=args.shard_samples,
            **{k: v for k, v in optional.items() if v is not None},
        )
        pack_dataset(args.raw_dir, args.dataset_dir, config, on_event=on_event)
    else:
        from dataengine.pipeline.spec import PipelineSpec
        from dataengine.prepared import PrepareConfig, prepare_dataset

        spec = PipelineSpec.from_dict(json.loads(args.pipeline))
        workers = {} if args.workers is None else {"workers": args.workers}
        prepare_dataset(args.dataset_dir, spec, PrepareConfig(**workers), on_event=on_event)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
