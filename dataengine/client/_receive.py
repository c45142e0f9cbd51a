"""How the client receives samples: what arrived becomes a ``Frame``.

Three ways (``dataengine/transport.py``). Inside the gRPC message: the
bytes of its ``Sample``, read in place (``dataengine/frame.py``); every
engine, always. In a shared-memory slot, from an engine on this host
(``_shm.py``). On a TCP data channel, from an engine elsewhere
(``_channel.py``). For the last two the message carries only a
``SharedRef``. ``Receiver`` opens one link per engine in the background once
the first sample from it tells the slot size (shared memory when the engine
can open the client's segment, else a data channel), decides per request
(a live link with enough free slots; else inside the messages), and counts
what receiving cost this process (CPU seconds in the receiving threads,
bytes) per transport in ``ClientStats``.

A link whose frames cannot be trusted (a segment that vanished or was
truncated, a reference to a slot the request did not have, a frame that did
not arrive) is dropped, counted (``shared_memory_failures`` and an
``shm_failure`` event, or ``data_channel_failures`` and a
``channel_failure`` event), and that engine gets no link of that kind again for
the client's life; the call's missing samples are asked again inside the
messages. A link that could not be opened is tried again after a minute.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from dataengine.client._channel import ChannelLink
from dataengine.client._collate import Frame
from dataengine.client._fleet import Fleet
from dataengine.client._shm import NotSameHostError, SharedLink
from dataengine.client.config import ClientConfig
from dataengine.client.stats import ClientStats
from dataengine.errors import DataEngineError
from dataengine.frame import FrameError, SampleView, peek_sample_id, read_sample
from dataengine.shm import SharedMemoryError
from dataengine.transport import DATA_CHANNEL, SHARED_MEMORY, TCP
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["Link", "LinkFailure", "Received", "Receiver", "Slots"]

_LOG = logging.getLogger(__name__)
_RETRY_OPEN_S = 60.0  # a link that could not be opened is tried again after this


class LinkFailure(DataEngineError):
    """A frame of a link could not be trusted (the segment vanished or was
    truncated, a reference points elsewhere, the frame did not arrive): the
    link is dropped and the call's missing samples are asked again."""

    kind = "data_loss"


class Link(Protocol):
    """What the fetcher needs of a shared-memory link or a data channel."""

    endpoint: str
    broken: str | None
    transport: str

    def allocate(self, count: int) -> tuple[int, list[int]] | None: ...
    def slots_message(self, ticket: int, slots: list[int]) -> pb.SharedSlots: ...
    def frame(self, slot: int, size: int, sample_id: int) -> Frame: ...
    def release(self, slots: Iterable[int]) -> None: ...
    def close(self, reason: str = ...) -> None: ...


@dataclass(frozen=True)
class Slots:
    """The slots one request may fill: ``slot_of`` maps each id to its slot."""

    link: Link
    ticket: int
    slot_of: dict[int, int]

    def message(self, ids: list[int]) -> pb.SharedSlots:
        return self.link.slots_message(self.ticket, [self.slot_of[i] for i in ids])


@dataclass(frozen=True)
class Received:
    """One sample as received: its frame, and the link slot it still holds
    (released once its batch is assembled)."""

    frame: Frame
    transport: str
    nbytes: int
    link: Link | None = None
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
        self._links: dict[str, Link] = {}
        # (endpoint, transport) -> why that link is not tried (for good) and,
        # for a link that could not be opened, when to try again.
        self._off: dict[tuple[str, str], str] = {}
        self._retry_at: dict[str, float] = {}
        self._opening: set[str] = set()
        # Slots per link: this engine's share of the batches in flight, of
        # one being assembled and of one more for hedges, failovers and
        # cancelled calls, plus a batch of slack (shards are not spread
        # evenly). A request that finds too few free slots goes inline.
        engines = max(1, len(fleet.endpoints()))  # the starting set (discovery may change it)
        share = -(-config.batch_size * (config.prefetch_batches + 2) // engines)
        self.slots_per_link = share + config.batch_size

    # -- links -------------------------------------------------------------

    def slots_for(self, endpoint: str, ids: list[int]) -> Slots | None:
        """Link slots for a request of ``ids`` to ``endpoint``, or None (no
        link, or not enough free slots: the samples come inside the messages)."""
        with self._lock:
            link = self._links.get(endpoint)
            if link is not None and link.broken is not None:
                del self._links[endpoint]  # opened again after its next inline sample
                link = None
        if link is None:
            return None
        try:
            got = link.allocate(len(set(ids)))
        except SharedMemoryError as exc:  # vanished or truncated: the link is broken
            self.link_failed(endpoint, link.transport, str(exc))
            return None
        if got is None:
            return None
        ticket, slots = got
        return Slots(link, ticket, dict(zip(dict.fromkeys(ids), slots, strict=True)))

    def _wanted(self, endpoint: str) -> list[str]:
        """The link kinds still worth trying with ``endpoint``, best first."""
        kinds = []
        if self._cfg.shared_memory and (endpoint, SHARED_MEMORY) not in self._off:
            kinds.append(SHARED_MEMORY)
        if self._cfg.data_channel and (endpoint, DATA_CHANNEL) not in self._off:
            kinds.append(DATA_CHANNEL)
        return kinds

    def _maybe_link(self, endpoint: str, frame_bytes: int) -> None:
        """Open a link to ``endpoint`` in the background, if none is open or
        being opened and the last failure to open one is a minute old."""
        with self._lock:
            if endpoint in self._links or endpoint in self._opening:
                return
            if time.monotonic() < self._retry_at.get(endpoint, 0.0) or not self._wanted(endpoint):
                return
            self._opening.add(endpoint)
        try:
            self._pool.submit(self._open, endpoint, frame_bytes)
        except RuntimeError:  # the pool is shutting down
            with self._lock:
                self._opening.discard(endpoint)

    def _open(self, endpoint: str, frame_bytes: int) -> None:
        link: Link | None = None
        try:
            for kind in self._wanted(endpoint):
                link = self._try(kind, endpoint, frame_bytes)
                if link is not None:
                    break
        except Exception:  # never lose a failure in the pool's future
            _LOG.exception("opening a link to %s failed", endpoint)
        finally:
            with self._lock:
                self._opening.discard(endpoint)
                if link is not None:
                    self._links[endpoint] = link
                else:
                    self._retry_at[endpoint] = time.monotonic() + _RETRY_OPEN_S
        if link is not None:
            name = link.segment.name if isinstance(link, SharedLink) else "data channel"
            kind = "shm_attached" if isinstance(link, SharedLink) else "channel_opened"
            self._stats.event(kind, endpoint, name)

    def _try(self, kind: str, endpoint: str, frame_bytes: int) -> Link | None:
        """Open one kind of link; None (and why, logged) when it cannot be."""
        stub, timeout = self._fleet.stub(endpoint), self._cfg.connect_timeout_s
        try:
            if kind == SHARED_MEMORY:
                return SharedLink.open(endpoint, stub, self.slots_per_link, frame_bytes, timeout)
            return ChannelLink.open(
                endpoint,
                stub,
                self.slots_per_link,
                frame_bytes,
                timeout,
                lambda cpu_s: self._stats.add_receive(DATA_CHANNEL, 0, 0, cpu_s),
                self._fleet.tls,
            )
        except NotSameHostError as exc:
            with self._lock:
                self._off[(endpoint, kind)] = str(exc)
            _LOG.info("engine %s is not on this host's shared memory (%s)", endpoint, exc)
        except (SharedMemoryError, KeyError) as exc:
            self._stats.event(f"{kind}_unavailable", endpoint, str(exc))
            _LOG.warning("no %s link with %s: %s", kind, endpoint, exc)
        return None

    def link_failed(self, endpoint: str, transport: str, reason: str) -> None:
        """A link's frame could not be trusted: count it, drop the link, and
        open no link of that kind to ``endpoint`` again."""
        self._stats.count(f"{transport}_failures")
        self._stats.event(
            "shm_failure" if transport == SHARED_MEMORY else "channel_failure", endpoint, reason
        )
        with self._lock:
            self._off[(endpoint, transport)] = f"failed: {reason}"
        _LOG.warning("%s with %s failed; not used again: %s", transport, endpoint, reason)
        self.drop(endpoint, reason)

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
        if slots is None:  # a reference the request did not ask for: a bad frame
            self._stats.count("malformed_frames")
            reason = f"{endpoint} sent a slot reference to a request without slots"
            lost = SampleView(view.sample_id, error=("data_loss", reason))
            return Received(Frame(raw, lost), TCP, len(raw))
        if slots.slot_of.get(view.sample_id) != slot:
            raise LinkFailure(
                f"{endpoint} sent sample {view.sample_id} in slot {slot}, not its slot"
            )
        try:
            frame = slots.link.frame(slot, size, view.sample_id)
        except (SharedMemoryError, FrameError) as exc:
            raise LinkFailure(str(exc)) from None
        return Received(frame, slots.link.transport, size + len(raw), slots.link, slot)
