"""Graceful drain: refuse new streams, let open ones finish.

``DrainGate`` is a gRPC server interceptor on ``StreamSamples``. It counts
the streams that are open (until the RPC has ended on the wire, so a stream
whose last messages are still being sent counts too). Once ``close()`` is
called, every new ``StreamSamples`` is refused with ``UNAVAILABLE`` (clients
fail over to another engine), and ``wait_idle(grace)`` waits for the open
ones to end. ``EngineServer.stop`` uses it with the health status set to
NOT_SERVING, so a drained engine leaves every client's ownership ring.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

__all__ = ["DrainGate"]

_LOG = logging.getLogger(__name__)


class DrainGate(grpc.ServerInterceptor):
    """Counts open streams of ``method`` (``/package.Service/Method``) and
    refuses new ones once closed."""

    def __init__(self, method: str) -> None:
        self._method = method
        self._cond = threading.Condition()
        self._open = 0
        self._closed = False

    @property
    def open_streams(self) -> int:
        with self._cond:
            return self._open

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if (
            handler is None
            or handler_call_details.method != self._method
            or handler.unary_stream is None
        ):
            return handler
        inner = handler.unary_stream

        def behavior(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            if not self._admit(context):
                context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    "this engine is draining (shutting down): ask another engine",
                )
            yield from inner(request, context)

        return grpc.unary_stream_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _admit(self, context: grpc.ServicerContext) -> bool:
        with self._cond:
            if self._closed:
                return False
            self._open += 1
        if not context.add_callback(self._release):  # the RPC has already ended
            self._release()
        return True

    def _release(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify_all()

    def close(self) -> None:
        """Refuse new streams from now on."""
        with self._cond:
            self._closed = True

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for the open streams to end;
        True if none is left."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._open:
                _LOG.info("draining: %d streams open, up to %.1fs", self._open, timeout_s)
            while self._open:
                left = deadline - time.monotonic()
                if left <= 0:
                    _LOG.warning("drain grace over with %d streams open; cancelling", self._open)
                    return False
                self._cond.wait(left)
            return True
