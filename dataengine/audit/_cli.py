"""``dataengine audit seal|verify``: the flags and what each does.

``dataengine/cli.py`` registers the ``audit`` subcommand with
``add_audit_flags`` and prints what ``run_audit`` returns (the CLI is the
only module that prints).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dataengine.audit._seal import load_seal_key, write_seal
from dataengine.audit._verify import verify_chain

__all__ = ["add_audit_flags", "run_audit"]


def add_audit_flags(p: argparse.ArgumentParser) -> None:
    """``seal`` and ``verify`` under ``dataengine audit``."""
    sub = p.add_subparsers(dest="audit_command", required=True)
    seal = sub.add_parser(
        "seal",
        help="sign the head of an audit log with an HMAC key; copy the seal file to WORM storage",
        description="Write the chain head (seq, hash, time) of LOG, signed with HMAC-SHA256 "
        "under the key in --key-file, to a new seal file: LOG.seal-<seq>.json beside LOG or "
        "in --out-dir, or --out. Sealing an unchanged log again is a no-op. A broken chain is "
        "not sealed (exit 2).",
    )
    seal.add_argument("log", metavar="LOG", type=Path, help="the audit log (JSON lines)")
    seal.add_argument(
        "--key-file",
        type=Path,
        required=True,
        metavar="KEY",
        help="HMAC key: 32+ bytes, hex or raw, mode 600 (openssl rand -hex 32)",
    )
    where = seal.add_mutually_exclusive_group()
    where.add_argument(
        "--out", type=Path, default=None, metavar="SEAL", help="seal file (default: beside LOG)"
    )
    where.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="write LOG.seal-<seq>.json into DIR (created if need be), e.g. a WORM mount",
    )
    verify = sub.add_parser(
        "verify",
        help="check an audit log's chain, and its seals (exit 1 naming the first bad line)",
        description="Check every line of LOG against the one before it, and each --seal "
        "(its HMAC, and that LOG still holds the sealed line). Exit 0 when intact, 1 naming "
        "the first bad line and why.",
    )
    verify.add_argument("log", metavar="LOG", type=Path, help="the audit log (JSON lines)")
    verify.add_argument(
        "--seal",
        type=Path,
        action="append",
        default=None,
        metavar="SEAL",
        help="a seal file of this log (repeatable)",
    )
    verify.add_argument(
        "--key-file", type=Path, default=None, metavar="KEY", help="the seals' HMAC key"
    )
    verify.add_argument("--json", action="store_true", help="machine-readable result")


def run_audit(args: argparse.Namespace) -> tuple[int, str]:
    """Run ``dataengine audit`` as parsed by ``add_audit_flags``; return the
    exit status (0 ok, 1 a broken chain or seal) and the text to print.
    Raises ``AuditError`` / ``ConfigError`` for a missing log or bad key file
    (exit 2 in the CLI)."""
    if args.audit_command == "seal":
        seal_key = load_seal_key(args.key_file)
        path, body = write_seal(args.log, seal_key, args.out, out_dir=args.out_dir)
        return 0, f"sealed {args.log} at seq {body['seq']} ({body['hash']}) -> {path}"
    key = load_seal_key(args.key_file) if args.key_file is not None else None
    result = verify_chain(args.log, seal=args.seal, key=key)
    if args.json:
        from dataclasses import asdict

        return (0 if result.ok else 1), json.dumps(asdict(result), indent=2)
    return (0 if result.ok else 1), result.format()
