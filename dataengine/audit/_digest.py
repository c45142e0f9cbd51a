"""A digest of a request's sample ids, for the ``ids_digest`` audit field."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["ids_digest"]


def ids_digest(ids: Iterable[int]) -> str:
    """SHA-256 hex of the ids in request order, each as a decimal and a
    newline (``"3\\n1\\n2\\n"``): anyone holding the request's ids can
    recompute it (``printf '3\\n1\\n2\\n' | sha256sum``), and it says which
    samples were read without writing thousands of ids into every line."""
    h = hashlib.sha256()
    for i in ids:
        h.update(b"%d\n" % int(i))
    return h.hexdigest()
