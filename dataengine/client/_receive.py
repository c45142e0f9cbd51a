"""How the client receives samples: what arrived becomes a ``Frame``.

Over TCP a sample arrives as the bytes of its ``Sample`` message, read in
place (``dataengine/frame.py``). From an engine on the same host it arrives
in a shared-memory slot, and the message carries only a ``SharedRef``
(``_shm.py``). ``Receiver`` decides per request which way (a link with
enough free slots: shared memory; else TCP), opens links in the background
once the first sample from an engine tells the slot size, and counts what
receiving cost this process (CPU seconds in the receiving threads, bytes)
per transport in ``ClientStats``. A link whose segment vanished or was
truncated, or whose frame could not be trusted, is dropped, counted
(``shared_memory_failures``, an ``shm_failure`` event) and that engine
stays on TCP for the rest of the client's life.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
from dataclasses import dataclass

from dataengine.client._collate import Frame
from dataengine.client._fleet import Fleet
from dataengine.client._shm import NotSameHostError, SharedLink
from dataengine.client.config import ClientConfig
from dataengine.client.stats import ClientStats
from dataengine.errors import DataEngineError
from dataengine.frame import FrameError, SampleView, peek_sample_id, read_sample
from dataengine.shm import SHARED_MEMORY, TCP, SharedMemoryError
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["LinkFailure", "Received", "Receiver", "Slots"]

_LOG = logging.getLogger(__name__)


class LinkFailure(DataEngineError):
    """A frame in shared memory could not be trusted (the segment vanished or
    was truncated, a reference points elsewhere): the link is dropped and
    the call's missing samples are asked again over TCP."""

    kind = "data_loss"


@dataclass(frozen=True)
class Slots:
    """The slots one request may fill: ``slot_of`` maps each id to its slot."""

    link: SharedLink
    ticket: int
    slot_of: dict[int, int]

    def message(self, ids: list[int]) -> pb.SharedSlots:
        return pb.SharedSlots(
            segment=self.link.segment.name, ticket=self.ticket, slots=[self.slot_of[i] for i in ids]
        )


@dataclass(frozen=True)
class Received:
    """One sample as received: its frame, and the shared-memory slot it
    still holds (released once its batch is assembled)."""

    frame: Frame
    transport: str
    nbytes: int
    link: SharedLink | None = None
    slot: int = -1

    @property
    def sample_id(self) -> int:
        return self.frame.view.sample_id

    def release(self) -> None:
        if self.link is not None:
            self.link.release([self.slot])


class Receiver:
    """Links per engine and the receive path of each request."""

    def __init__(
        self, config: ClientConfig, fleet: Fleet, stats: ClientStats, pool: cf.Executor
    ) -> None:
        self._cfg = config
        self._fleet = fleet
        self._stats = stats
        self._pool = pool
        self._lock = threading.Lock()
        self._links: dict[str, SharedLink] = {}
        self._off: dict[str, str] = {}  # endpoints that cannot share memory, and why
        self._opening: set[str] = set()
        # Slots per link: the batches in flight, one held by the consumer's
        # assembly, and one more for hedges, failovers and cancelled calls.
        self.slots_per_link = config.batch_size * (config.prefetch_batches + 2)

    # -- links -------------------------------------------------------------

    def slots_for(self, endpoint: str, ids: list[int]) -> Slots | None:
        """Shared-memory slots for a request of ``ids`` to ``endpoint``, or
        None (no link, or not enough free slots: TCP)."""
        with self._lock:
            link = self._links.get(endpoint)
            if link is not None and link.broken is not None:
                del self._links[endpoint]  # opened again after its next TCP sample
                link = None
        if link is None:
            return None
        try:
            got = link.allocate(len(set(ids)))
        except SharedMemoryError as exc:  # vanished or truncated: the link is broken
            self._stats.count("shared_memory_failures")
            self._stats.event("shm_failure", endpoint, str(exc))
            self._stay_on_tcp(endpoint, str(exc))
            self.drop(endpoint, str(exc))
            return None
        if got is None:
            return None
        ticket, slots = got
        return Slots(link, ticket, dict(zip(dict.fromkeys(ids), slots, strict=True)))

    def _maybe_link(self, endpoint: str, frame_bytes: int) -> None:
        """Open a link to ``endpoint`` in the background, once per engine life."""
        if not self._cfg.shared_memory:
            return
        with self._lock:
            if endpoint in self._links or endpoint in self._off or endpoint in self._opening:
                return
            self._opening.add(endpoint)
        try:
            self._pool.submit(self._open, endpoint, frame_bytes)
        except RuntimeError:  # the pool is shutting down
            with self._lock:
                self._opening.discard(endpoint)

    def _open(self, endpoint: str, frame_bytes: int) -> None:
        link = None
        try:
            link = SharedLink.open(
                endpoint,
                self._fleet.stub(endpoint),
                self.slots_per_link,
                frame_bytes,
                self._cfg.connect_timeout_s,
            )
        except NotSameHostError as exc:
            with self._lock:
                self._off[endpoint] = str(exc)
            _LOG.info("engine %s is not on this host's shared memory: TCP (%s)", endpoint, exc)
        except (SharedMemoryError, KeyError) as exc:
            self._stats.event("shm_unavailable", endpoint, str(exc))
            _LOG.warning("no shared memory with %s, staying on TCP: %s", endpoint, exc)
        finally:
            with self._lock:
                self._opening.discard(endpoint)
                if link is not None:
                    self._links[endpoint] = link
        if link is not None:
            self._stats.event("shm_attached", endpoint, link.segment.name)

    def _stay_on_tcp(self, endpoint: str, reason: str) -> None:
        """No more links to ``endpoint`` for this client's life: its shared
        memory failed once (a segment that vanished or was truncated, a
        frame that could not be trusted), and whatever did it may do it
        again. TCP serves every sample as well."""
        with self._lock:
            if endpoint in self._off:
                return
            self._off[endpoint] = f"shared memory failed: {reason}"
        _LOG.warning("shared memory with %s failed; TCP from now on: %s", endpoint, reason)

    def drop(self, endpoint: str, reason: str) -> None:
        """Close ``endpoint``'s link (its engine died, or a frame failed)."""
        with self._lock:
            link = self._links.pop(endpoint, None)
        if link is not None:
            link.close(reason)

    def close(self) -> None:
        with self._lock:
            links, self._links = list(self._links.values()), {}
        for link in links:
            link.close()

    # -- frames ------------------------------------------------------------

    def receive(self, endpoint: str, raw: bytes, slots: Slots | None) -> Received | None:
        """What ``raw`` (one message of a stream to ``endpoint``) delivers.

        A malformed frame whose sample id can be read is that sample, lost
        with kind ``data_loss``; one without a readable id is dropped (None;
        the stream's missing ids fail over). ``LinkFailure`` when a
        shared-memory frame cannot be trusted."""
        try:
            view = read_sample(raw)
        except FrameError as exc:
            sid = peek_sample_id(raw)
            self._stats.count("malformed_frames")
            _LOG.warning("malformed frame from %s (sample %s): %s", endpoint, sid, exc)
            if sid is None:
                return None
            lost = SampleView(sid, error=("data_loss", f"malformed frame from {endpoint}: {exc}"))
            return Received(Frame(raw, lost), TCP, len(raw))
        if view.shared is None:
            if view.error is None:
                self._maybe_link(endpoint, len(raw))
            return Received(Frame(raw, view), TCP, len(raw))
        slot, size = view.shared
        if slots is None or slots.slot_of.get(view.sample_id) != slot:
            reason = f"{endpoint} sent sample {view.sample_id} in slot {slot}, not its slot"
            self._stay_on_tcp(endpoint, reason)
            raise LinkFailure(reason)
        try:
            frame = slots.link.frame(slot, size, view.sample_id)
        except (SharedMemoryError, FrameError) as exc:
            self._stay_on_tcp(endpoint, str(exc))
            raise LinkFailure(str(exc)) from None
        return Received(frame, SHARED_MEMORY, size + len(raw), slots.link, slot)
