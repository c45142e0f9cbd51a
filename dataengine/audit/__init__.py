"""A tamper-evident audit chain: hash-chained JSON lines, seals, checks.

The API (see ``README.md`` in this folder for the file format)::

    from dataengine.audit import AuditLog, verify_chain, write_seal, load_seal_key

    log = AuditLog.open("engine-audit.jsonl", "fsync")   # or "200ms", "none"
    line = log.append(principal="alice", action="StreamSamples", dataset="ct",
                      sample_count=64, ids_digest=ids_digest([3, 1, 2]),
                      request_id="r-1", peer="ipv4:10.0.0.5:51234")
    log.close()                                          # or: with AuditLog.open(...) as log

    path, seal = write_seal("engine-audit.jsonl", load_seal_key("audit.key"))
    result = verify_chain("engine-audit.jsonl", seal=path, key=load_seal_key("audit.key"))
    result.ok, result.bad_line, result.reason

- ``AuditLog.open(path, durability) -> AuditLog``: check the chain, cut off a
  line torn by a crash, hold the file (one writer), go on from its head.
  ``.append(**fields) -> dict`` writes one line and returns it (with
  ``time``, ``seq``, ``prev_hash``, ``hash``); thread-safe. ``.close()``.
- ``parse_durability("fsync" | "200ms" | "1s" | "none")``: for a
  ``--audit-durability`` flag (``ConfigError`` naming the field otherwise).
- ``verify_chain(path, seal=None, key=None) -> VerifyResult``.
- ``write_seal(log, key, out=None) -> (path, seal)``; ``load_seal_key(file)``.
- ``dataset_audit(dataset_dir, action, **fields)`` (a context manager) and
  ``record_dataset_event(...)``: the dataset's own chain,
  ``DATASET_DIR/audit.jsonl``, that pack, prepare and verify append to.
- ``ids_digest(ids)``: a digest of the sample ids of one request, for the
  ``ids_digest`` field (the ids themselves need not be logged).
"""

from dataengine.audit._canonical import GENESIS, RESERVED, canonical_json, line_hash
from dataengine.audit._chain import AuditError, ChainScan, scan_chain, scan_file
from dataengine.audit._dataset import (
    DATASET_AUDIT_NAME,
    DatasetEvent,
    dataset_audit,
    manifest_facts,
    record_dataset_event,
    run_context,
)
from dataengine.audit._digest import ids_digest
from dataengine.audit._durability import DURABILITY_MODES, Durability, parse_durability
from dataengine.audit._log import AuditLog
from dataengine.audit._seal import (
    MIN_SEAL_KEY_BYTES,
    SEAL_FORMAT,
    check_seal,
    default_seal_path,
    load_seal_key,
    read_seal,
    seal_key_id,
    write_seal,
)
from dataengine.audit._verify import VerifyResult, verify_chain

__all__ = [
    "DATASET_AUDIT_NAME",
    "DURABILITY_MODES",
    "GENESIS",
    "MIN_SEAL_KEY_BYTES",
    "RESERVED",
    "SEAL_FORMAT",
    "AuditError",
    "AuditLog",
    "ChainScan",
    "DatasetEvent",
    "Durability",
    "VerifyResult",
    "canonical_json",
    "check_seal",
    "dataset_audit",
    "default_seal_path",
    "ids_digest",
    "line_hash",
    "load_seal_key",
    "manifest_facts",
    "parse_durability",
    "read_seal",
    "record_dataset_event",
    "run_context",
    "scan_chain",
    "scan_file",
    "seal_key_id",
    "verify_chain",
    "write_seal",
]
