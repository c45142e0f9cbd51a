"""Where the engines are: the ``--engines`` sources, and their live watch.

``--engines`` (the trainer, ``dataengine digest``, ``EngineClient``) takes
one of three sources:

- ``HOST:PORT[,HOST:PORT...]``: a fixed list (IPv6 hosts in brackets);
- ``dns:///NAME:PORT``: every A and AAAA record of ``NAME`` (a Kubernetes
  headless Service gives one per ready engine pod), each with ``PORT``;
  resolved again every ``discovery_interval_s`` seconds;
- ``file:///PATH``: one ``HOST:PORT`` a line, ``#`` starts a comment, blank
  lines are ignored. Read again every ``discovery_interval_s`` seconds (a
  few hundred bytes) and applied when its content changes. A malformed line
  is logged with its line number and skipped; the others still count.
  Writers should replace the file atomically (write a temporary file, then
  ``mv`` it over the old one), so a reader never sees half a list.

A resolution that fails (no such name, unreadable file) or yields no engine
at all is logged, counted (``DiscoveryStats.failures``, ``last_error``) and
tried again at the next interval; meanwhile the client keeps the last good
set. If those engines are gone too, the client's ``unavailable_timeout_s``
decides when there is no engine at all (``EngineUnavailableError``).

What a changed set does (``dataengine/client/_client.py``): an engine that
appears is asked for its dataset's manifest fingerprint and takes work from
the next request on if it matches the fleet's (it is refused, and logged,
if not); an engine that disappears is treated as drained: no new work goes
to it, its open streams finish. It is not counted as a failure.

**Ranks need not see the same engine set.** Each rank resolves its source
on its own clock, so at a batch boundary two ranks may route to different
sets. Nothing in a batch depends on the set: the ids of each micro-batch
come from ``order(seed, epoch)`` and the rank (``dataengine/order.py``),
and a sample's bytes from ``(seed, epoch, sample_id)`` and the pipeline
alone, whichever path (prepared view, decode cache, RAM, fresh decode) and
whichever engine served it (``tests/dataengine/fleet/test_fleet_bytes.py``
checks 1, 2 and 3 engines, and an engine added mid-epoch, give the same
digests). The fingerprint check makes every engine of every rank serve the
same manifest. What differs between ranks for a few seconds is only which
engine's cache a shard warms (rendezvous ownership over different sets):
a cost, never a byte.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dataengine.configs import setting
from dataengine.errors import ConfigError, DataEngineError

__all__ = [
    "DNS_PREFIX",
    "FILE_PREFIX",
    "DiscoveryError",
    "DiscoverySettings",
    "DiscoveryStats",
    "EngineSource",
    "Resolved",
    "SourceWatch",
    "parse_endpoint",
    "parse_engines_file",
    "parse_source",
    "resolve",
]

_LOG = logging.getLogger(__name__)
DNS_PREFIX, FILE_PREFIX = "dns:///", "file:///"
_FIELD = "client.endpoints"


class DiscoveryError(DataEngineError):
    """A source that resolved to nothing usable (the message says why)."""

    kind = "unavailable"


@dataclass(frozen=True, kw_only=True)
class DiscoverySettings:
    """``discovery_interval_s``: seconds between two resolutions of a
    ``dns:///`` or ``file:///`` source (a fixed list is never resolved)."""

    discovery_interval_s: float = setting(
        10.0,
        help="seconds between two resolutions of a dns:/// or file:/// --engines source",
        flag="--discovery-interval",
        metavar="SECONDS",
    )


@dataclass
class DiscoveryStats:
    """What discovery saw (``EngineClient.stats.discovery``).

    ``source``: the ``dns:///`` or ``file:///`` source ("" for a fixed
    list); ``engines``: how many engines its last good resolution gave;
    ``failures``: resolutions that failed or gave no engine; ``last_error``:
    the latest failure's message ("" if none yet). Updated by one thread;
    the trainer's metrics read them as they are."""

    source: str = ""
    engines: int = 0
    failures: int = 0
    last_error: str = ""


def parse_endpoint(text: str, where: str = _FIELD) -> str:
    """``HOST:PORT`` (``[V6]:PORT`` for an IPv6 address) as given, checked:
    ``ConfigError`` naming ``where`` if it is not."""
    host, sep, port = text.rpartition(":")
    ok = bool(sep and host and port.isdigit() and 0 < int(port) < 65536)
    if ok and host.startswith("["):
        try:
            ok = host.endswith("]") and ipaddress.ip_address(host[1:-1]).version == 6
        except ValueError:
            ok = False
    elif ok:
        ok = ":" not in host and not any(c.isspace() or c in "/[]" for c in host)
    if not ok:
        raise ConfigError(where, f"{text!r} is not HOST:PORT")
    return text


@dataclass(frozen=True)
class EngineSource:
    """A parsed ``--engines``: ``kind`` is ``list``, ``dns`` or ``file``.
    ``text`` is the source as given (for a list: the endpoints joined)."""

    kind: str
    text: str
    endpoints: tuple[str, ...] = ()  # list
    host: str = ""  # dns
    port: int = 0  # dns
    path: Path | None = None  # file

    @property
    def dynamic(self) -> bool:
        """True if the set can change (a DNS name or a file)."""
        return self.kind != "list"


def parse_source(engines: Sequence[str] | str) -> EngineSource:
    """``HOST:PORT,...``, a list of them, ``dns:///NAME:PORT`` or
    ``file:///PATH`` -> an ``EngineSource`` (``ConfigError`` naming
    ``client.endpoints`` if malformed). A source URL stands alone."""
    items = engines.split(",") if isinstance(engines, str) else list(engines)
    items = list(dict.fromkeys(e.strip() for e in items if e.strip()))
    if not items:
        raise ConfigError(_FIELD, "at least one HOST:PORT, dns:///NAME:PORT or file:///PATH")
    urls = [e for e in items if "://" in e]
    if not urls:
        return EngineSource("list", ",".join(items), tuple(parse_endpoint(e) for e in items))
    if len(items) > 1:
        raise ConfigError(_FIELD, f"{urls[0]!r} must be the only source, not one of a list")
    url = urls[0]
    if url.startswith(DNS_PREFIX):
        rest = url[len(DNS_PREFIX) :]
        try:
            parse_endpoint(rest)
        except ConfigError:
            raise ConfigError(_FIELD, f"{url!r}: expected dns:///NAME:PORT") from None
        host, _, port = rest.rpartition(":")
        return EngineSource("dns", url, host=host.strip("[]"), port=int(port))
    if url.startswith(FILE_PREFIX):
        path = url[len(FILE_PREFIX) - 1 :]  # keeps the leading "/"
        if path == "/" or path.endswith("/"):
            raise ConfigError(_FIELD, f"{url!r}: expected file:///PATH of a file")
        return EngineSource("file", url, path=Path(path))
    raise ConfigError(_FIELD, f"{url!r}: only dns:///NAME:PORT and file:///PATH are sources")


@dataclass(frozen=True)
class Resolved:
    """One resolution: the engines (sorted, unique) and, for a file, its
    malformed lines as ``(line number, line, why)``."""

    endpoints: tuple[str, ...]
    skipped: tuple[tuple[int, str, str], ...] = ()


def parse_engines_file(text: str) -> Resolved:
    """An engines file's text -> its engines; malformed lines are listed
    in ``skipped`` (1-based line numbers), never fatal."""
    found: list[str] = []
    skipped: list[tuple[int, str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            found.append(parse_endpoint(line, "engines file"))
        except ConfigError:
            skipped.append((number, raw.strip(), "not HOST:PORT"))
    return Resolved(tuple(sorted(set(found))), tuple(skipped))


def _resolve_dns(host: str, port: int) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise DiscoveryError(f"{DNS_PREFIX}{host}:{port}: {exc}") from None
    out = set()
    for family, _, _, _, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]  # no IPv6 zone index
        out.add(f"[{address}]:{port}" if family == socket.AF_INET6 else f"{address}:{port}")
    return tuple(sorted(out))


def resolve(source: EngineSource) -> Resolved:
    """The engines ``source`` names now. ``DiscoveryError`` if it cannot be
    resolved or names no engine at all (a file of only bad lines too)."""
    if source.kind == "list":
        return Resolved(source.endpoints)
    if source.kind == "dns":
        got = Resolved(_resolve_dns(source.host, source.port))
    else:
        assert source.path is not None  # a file source always has one
        try:
            got = parse_engines_file(source.path.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            raise DiscoveryError(f"{source.text}: {exc.strerror or exc}") from None
    if not got.endpoints:
        bad = f" ({len(got.skipped)} malformed lines)" if got.skipped else ""
        raise DiscoveryError(f"{source.text} names no engine{bad}")
    return got


@dataclass(eq=False)
class SourceWatch:
    """Resolves a dynamic ``source`` every ``interval_s`` seconds on its own
    thread and calls ``apply(endpoints)`` when the set differs from the last
    good one. Failures are logged, counted in ``stats`` and retried; the
    last good set stays. ``start()``, ``stop(timeout)``."""

    source: EngineSource
    interval_s: float
    apply: Callable[[tuple[str, ...]], None]
    stats: DiscoveryStats
    current: tuple[str, ...] = ()
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _reported: tuple[tuple[int, str, str], ...] = ()

    def resolve_once(self) -> Resolved | None:
        """One resolution, logged and counted; None if it failed."""
        try:
            got = resolve(self.source)
        except DiscoveryError as exc:
            self.stats.failures += 1
            self.stats.last_error = str(exc)
            _LOG.warning(
                "engine discovery failed: %s; keeping the last %d engines, retrying in %.1fs",
                exc,
                len(self.current),
                self.interval_s,
            )
            return None
        if got.skipped != self._reported:  # once per change of the file
            self._reported = got.skipped
            for number, line, why in got.skipped:
                _LOG.warning("%s line %d skipped (%s): %r", self.source.text, number, why, line)
        self.stats.engines = len(got.endpoints)
        return got

    def poll(self) -> None:
        """Resolve; apply a changed set."""
        got = self.resolve_once()
        if got is None or got.endpoints == self.current:
            return
        _LOG.info(
            "engine discovery: %s now names %d engines (was %d)",
            self.source.text,
            len(got.endpoints),
            len(self.current),
        )
        self.current = got.endpoints
        self.apply(got.endpoints)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # never let discovery die silently
                _LOG.exception("engine discovery failed; continuing")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="engine-discovery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
