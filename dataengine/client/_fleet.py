"""The engines as one client sees them: every known endpoint, its channel,
and whether it is *live* (work may be routed to it).

An endpoint stops being live when one of its streams fails or stalls, or
when its ``grpc.health.v1`` probe does not answer SERVING (a draining
engine answers NOT_SERVING; a killed or frozen one does not answer). It is
live again once a probe answers SERVING. Ownership is rendezvous hashing of
the shard id over the live endpoints (``dataengine.order.ranked_owners``),
so an engine's death moves only its shards and its return moves them back.

Every engine routed to serves one manifest fingerprint, the fleet's
(``set_reference``: the first engine of the starting set that answered).
An engine that states another one, in its ``DescribeDataset`` answer or in
a stream's initial metadata, is *refused*: never live, whatever its health
says, until a later check (``verify``, run before any engine that is not
live becomes live again, e.g. one restarted or discovered) finds it serving
the fleet's fingerprint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import grpc
import grpc.experimental
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dataengine.client.stats import ClientStats
from dataengine.errors import DataEngineError
from dataengine.order import ranked_owners
from dataengine.security.tls import ClientTLS
from dataengine.security.token import with_token
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

__all__ = ["Fleet"]

_LOG = logging.getLogger(__name__)
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 << 20),
    ("grpc.max_send_message_length", 256 << 20),
    # Reconnect to a restarted engine promptly (defaults back off up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Streams are read on the thread that iterates them (no hand-off from a
    # channel thread): cheaper, and their receive CPU is that thread's.
    (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
]
_SERVING = health_pb2.HealthCheckResponse.SERVING


_STREAM_SAMPLES = "/dataengine.v1.DataEngine/StreamSamples"


class _Engine:
    """One endpoint's channel and stubs. ``frames`` is ``StreamSamples``
    returning each ``Sample`` as the bytes that arrived (no parse: the
    client reads them in place, ``dataengine/frame.py``)."""

    def __init__(self, endpoint: str, tls: ClientTLS | None, token: str | None = None) -> None:
        self.endpoint = endpoint
        if tls is None:
            channel = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        else:
            channel = tls.channel(endpoint, CHANNEL_OPTIONS)
        self.channel = with_token(channel, token)  # every call carries the bearer token
        self.stub = pb_grpc.DataEngineStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.frames = self.channel.unary_stream(
            _STREAM_SAMPLES,
            request_serializer=pb.SampleRequest.SerializeToString,
            response_deserializer=None,
        )


class Fleet:
    """Known endpoints (in the order they were given or added), liveness,
    and the rendezvous ranking of a shard over the live ones. Thread-safe.
    ``tls``: every channel (and data channel) uses it; None: plaintext.
    ``token``: the bearer token every call carries (None: none).
    ``verify(endpoint)``: asked before an engine that is not live becomes
    live; returns None (it serves the fleet's fingerprint), a reason to
    refuse it, or raises ``DataEngineError`` (could not ask: not live yet)."""

    def __init__(
        self,
        endpoints: Iterable[str],
        stats: ClientStats,
        tls: ClientTLS | None = None,
        token: str | None = None,
        verify: Callable[[str], str | None] | None = None,
    ) -> None:
        self._stats = stats
        self.tls = tls
        self._token = token
        self._lock = threading.Lock()
        self._engines: dict[str, _Engine] = {}
        self._live: set[str] = set()
        self._retired: dict[str, _Engine] = {}  # removed; channels close with the client
        self._ranked: dict[int, list[str]] = {}  # shard -> live endpoints by weight
        self._refused: dict[str, str] = {}  # endpoint -> why (another fingerprint)
        self._told: dict[str, str] = {}  # endpoint -> the last refusal logged
        self._reference: tuple[str, str] | None = None  # (endpoint, fingerprint)
        self._verify = verify
        for endpoint in endpoints:
            self._engines[endpoint] = _Engine(endpoint, tls, token)
            self._live.add(endpoint)

    # -- membership --------------------------------------------------------

    def endpoints(self) -> list[str]:
        """Every known endpoint, live or not."""
        with self._lock:
            return list(self._engines)

    def live(self) -> list[str]:
        """The live endpoints, in the order they are known."""
        with self._lock:
            return [e for e in self._engines if e in self._live]

    def is_live(self, endpoint: str) -> bool:
        with self._lock:
            return endpoint in self._live

    def stub(self, endpoint: str) -> pb_grpc.DataEngineStub:
        """The endpoint's stub (also after ``remove``, until ``close``)."""
        with self._lock:
            engine = self._engines.get(endpoint) or self._retired[endpoint]
            return engine.stub

    def frames(self, endpoint: str) -> grpc.UnaryStreamMultiCallable:
        """The endpoint's raw ``StreamSamples`` (see ``_Engine``)."""
        with self._lock:
            engine = self._engines.get(endpoint) or self._retired[endpoint]
            return engine.frames

    def add(self, endpoint: str) -> bool:
        """Open a channel to ``endpoint`` (not live until a probe says so).
        False if it was already known."""
        with self._lock:
            if endpoint in self._engines:
                return False
            retired = self._retired.pop(endpoint, None)
            self._engines[endpoint] = (
                retired if retired is not None else _Engine(endpoint, self.tls, self._token)
            )
            return True

    def remove(self, endpoint: str) -> bool:
        """Stop routing to and probing ``endpoint``; its open streams finish
        (the client ``forget``s its channel after them). False if it was
        unknown."""
        with self._lock:
            engine = self._engines.pop(endpoint, None)
            if engine is None:
                return False
            self._refused.pop(endpoint, None)
            self._retired[endpoint] = engine
            if endpoint in self._live:
                self._live.discard(endpoint)
                self._ranked.clear()
        _LOG.info("engine %s removed from the fleet", endpoint)
        return True

    def retired(self) -> list[str]:
        """Endpoints removed from the fleet whose channels are still open."""
        with self._lock:
            return list(self._retired)

    def forget(self, endpoint: str) -> None:
        """Close a removed endpoint's channel (no stream of it is open: the
        caller checked); a later ``add`` opens a new one."""
        with self._lock:
            engine = self._retired.pop(endpoint, None)
        if engine is not None:
            engine.channel.close()

    def mark_dead(self, endpoint: str, reason: str) -> bool:
        """Stop routing new work to ``endpoint``; True if it was live."""
        with self._lock:
            if endpoint not in self._live:
                return False
            self._live.discard(endpoint)
            self._ranked.clear()
            left = len(self._live)
        self._stats.count("engines_lost")
        self._stats.event("dead", endpoint, reason)
        _LOG.warning(
            "engine %s is not routable (%s); %d live engines take over its shards",
            endpoint,
            reason,
            left,
        )
        return True

    def mark_live(self, endpoint: str, reason: str) -> bool:
        """Route work to ``endpoint`` again; True if it was not live."""
        with self._lock:
            if endpoint not in self._engines or endpoint in self._live:
                return False
            if endpoint in self._refused:
                return False
            self._live.add(endpoint)
            self._ranked.clear()
            count = len(self._live)
        self._stats.count("engines_revived")
        self._stats.event("live", endpoint, reason)
        _LOG.info("engine %s is live (%s); %d live engines", endpoint, reason, count)
        return True

    # -- one dataset ---------------------------------------------------------

    def set_reference(self, endpoint: str, fingerprint: str) -> None:
        """The fleet's manifest fingerprint, as ``endpoint`` stated it."""
        with self._lock:
            self._reference = (endpoint, fingerprint)

    def mismatch(self, endpoint: str, fingerprint: str) -> str | None:
        """None if ``fingerprint`` (what ``endpoint`` states) is the fleet's
        (or none is set yet); else why ``endpoint`` must be refused, naming
        both engines and both fingerprints."""
        with self._lock:
            reference = self._reference
        if reference is None or fingerprint == reference[1]:
            return None
        return (
            f"engine {endpoint} serves manifest fingerprint {fingerprint or '(none stated)'} "
            f"but engine {reference[0]} serves {reference[1]}: refusing to mix datasets; "
            f"{endpoint} gets no work"
        )

    def refuse(self, endpoint: str, reason: str) -> None:
        """Never route to ``endpoint`` (serving another dataset) until a
        ``verify`` finds it serving the fleet's. Logged, counted and put in
        the event log once per endpoint and reason (an engine whose streams
        and ``DescribeDataset`` disagree is refused again each probe)."""
        with self._lock:
            if endpoint not in self._engines:
                return
            new = self._told.get(endpoint) != reason
            self._told[endpoint] = reason
            self._refused[endpoint] = reason
            if endpoint in self._live:
                self._live.discard(endpoint)
                self._ranked.clear()
        if new:
            self._stats.count("engines_refused")
            self._stats.event("refused", endpoint, reason)
            _LOG.error("%s", reason)

    def refused(self) -> dict[str, str]:
        """Refused endpoints and why."""
        with self._lock:
            return dict(self._refused)

    def _admit(self, endpoint: str) -> str:
        """Before a SERVING engine that is not live becomes live: ``verify``.
        Returns the status to report: ``SERVING`` (admitted), ``REFUSED``
        or ``UNVERIFIED`` (could not ask; tried again at the next probe)."""
        if self._verify is None:
            return "SERVING"
        try:
            reason = self._verify(endpoint)
        except DataEngineError as exc:
            _LOG.info("engine %s answers its probe but not DescribeDataset: %s", endpoint, exc)
            return "UNVERIFIED"
        if reason is not None:
            self.refuse(endpoint, reason)
            return "REFUSED"
        with self._lock:
            was = self._refused.pop(endpoint, None)
        if was is not None:
            _LOG.info("engine %s serves the fleet's dataset again", endpoint)
        return "SERVING"

    # -- ownership ---------------------------------------------------------

    def ranked(self, shard: int) -> list[str]:
        """Live endpoints by rendezvous weight for ``shard`` (owner first)."""
        with self._lock:
            ranked = self._ranked.get(shard)
            if ranked is None:
                ranked = ranked_owners(shard, [e for e in self._engines if e in self._live])
                self._ranked[shard] = ranked
            return ranked

    # -- health ------------------------------------------------------------

    def probe(self, timeout_s: float, endpoints: Iterable[str] | None = None) -> dict[str, str]:
        """Ask each endpoint's health service (all at once, each within
        ``timeout_s`` seconds); mark it live if it answers SERVING, dead
        otherwise. An engine without a health service counts as SERVING if
        it answers at all; one that is not live yet is verified first
        (``verify``). Returns endpoint -> ``SERVING``, ``NOT_SERVING``
        (e.g. draining), ``NO_ANSWER`` (gone, frozen or unreachable),
        ``REFUSED`` (another dataset) or ``UNVERIFIED`` (SERVING, but its
        dataset could not be asked yet)."""
        with self._lock:
            names = list(self._engines) if endpoints is None else list(endpoints)
            engines = [self._engines[e] for e in names if e in self._engines]
        request = health_pb2.HealthCheckRequest(service="")
        pending = [(e, e.health.Check.future(request, timeout=timeout_s)) for e in engines]
        result: dict[str, str] = {}
        for engine, future in pending:
            try:
                status = "SERVING" if future.result().status == _SERVING else "NOT_SERVING"
                reason = f"health: {status}"
            except grpc.RpcError as exc:
                unimplemented = exc.code() == grpc.StatusCode.UNIMPLEMENTED
                status = "SERVING" if unimplemented else "NO_ANSWER"
                reason = f"health probe: {exc.code().name}"
            if status == "SERVING" and not self.is_live(engine.endpoint):
                status = self._admit(engine.endpoint)
            result[engine.endpoint] = status
            if status == "SERVING":
                self.mark_live(engine.endpoint, reason)
            elif status not in ("REFUSED", "UNVERIFIED"):  # those are not live already
                self.mark_dead(engine.endpoint, reason)
        return result

    def close(self) -> None:
        """Close every channel (ends any stream still open on them)."""
        with self._lock:
            engines = [*self._engines.values(), *self._retired.values()]
        for engine in engines:
            engine.channel.close()
