"""The engine's door: who is calling, may they, is there room, and the record.

``AccessGate`` is a gRPC server interceptor on the ``DataEngine`` service
(health and reflection pass untouched, so probes and ``grpcurl list`` work
without a principal). For each call it

1. finds the principal (``auth.py``): a bearer token, else an mTLS client
   certificate's common name; with no auth file every caller is
   ``anonymous``. No principal: ``UNAUTHENTICATED``.
2. checks the method's role, and for ``StreamSamples`` and
   ``DescribeDataset`` the dataset grant *before* the dataset is looked up,
   so a refusal (``PERMISSION_DENIED``) says nothing of whether it exists.
3. admits long-lived calls (``StreamSamples``, ``AttachSharedMemory``,
   ``OpenDataChannel``) within ``max_streams`` in all and
   ``max_streams_per_principal`` per principal (with auth on), else
   ``RESOURCE_EXHAUSTED``. Each holds a gRPC thread until it ends, so
   bounding them keeps threads for health checks and short calls.
4. writes audit records (when given an audit log): one per unary call, a
   start and an end per long-lived call, one per refused call, each with the
   principal, action, dataset, sample count, the digest of the sample ids
   (``dataengine.audit.ids_digest``; none for a request over the id cap),
   the request id (``x-request-id`` metadata or a fresh uuid), the peer and
   the outcome (a gRPC status name). Never a token, never sample contents.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

import grpc

from dataengine.audit import ids_digest
from dataengine.errors import ConfigError
from dataengine.server.auth import AuthTable, Principal, bearer_token

__all__ = ["AccessGate", "AuditSink"]

_LOG = logging.getLogger(__name__)
ANONYMOUS = "anonymous"
# method -> (role, audit action, long-lived, names a dataset)
_RULES: dict[str, tuple[str, str, bool, bool]] = {
    "StreamSamples": ("stream", "stream", True, True),
    "DescribeDataset": ("describe", "describe", False, True),
    "GetStats": ("stats", "stats", False, False),
    "AttachSharedMemory": ("stream", "attach_shared_memory", True, False),
    "OpenDataChannel": ("stream", "open_data_channel", True, False),
}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_NAME_MAX = 128  # characters of a client-chosen name kept in messages and records


class AuditSink(Protocol):
    def append(self, **fields: Any) -> Any: ...


def _clip(text: str) -> str:
    return text if len(text) <= _NAME_MAX else text[:_NAME_MAX] + "..."


def _request_id(metadata: Sequence[tuple[str, Any]]) -> str:
    for key, value in metadata:
        if key == "x-request-id" and isinstance(value, str) and _REQUEST_ID.match(value):
            return value
    return uuid.uuid4().hex


@dataclass
class _Call:
    """One admitted call: what its records say."""

    action: str
    principal: str
    dataset: str
    sample_count: int
    ids_digest: str
    request_id: str
    peer: str
    long_lived: bool
    sent: int = 0
    outcome: str | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "principal": self.principal,
            "dataset": self.dataset,
            "sample_count": self.sample_count,
            "ids_digest": self.ids_digest,
            "request_id": self.request_id,
            "peer": self.peer,
        }


def _status_name(context: grpc.ServicerContext) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "UNKNOWN"


class AccessGate(grpc.ServerInterceptor):
    """See the module docstring. ``service`` is the full name of the gated
    service; ``datasets`` the names served (one: an empty request name means
    it); ``auth_file`` None turns authentication off; ``max_ids`` is the
    engine's id cap per request (longer requests get no ids digest: the
    servicer refuses them)."""

    def __init__(
        self,
        service: str,
        datasets: Sequence[str],
        *,
        auth_file: Path | None = None,
        max_streams: int,
        max_streams_per_principal: int,
        max_ids: int,
        audit: AuditSink | None = None,
    ) -> None:
        self._service = service
        self._only = datasets[0] if len(datasets) == 1 else None
        self._auth_file = auth_file
        self._table: AuthTable | None = AuthTable.load(auth_file) if auth_file else None
        self._max = max_streams
        self._max_each = max_streams_per_principal
        self._max_ids = max_ids
        self.audit = audit
        self._lock = threading.Lock()
        self._open = 0
        self._open_by: dict[str, int] = {}
        if self._table is not None:
            _LOG.info("auth: %d principals from %s", len(self._table.principals), auth_file)

    @property
    def auth_on(self) -> bool:
        return self._auth_file is not None

    @property
    def open_calls(self) -> int:
        """Long-lived calls open now."""
        with self._lock:
            return self._open

    def reload(self) -> bool:
        """Read the auth file again (SIGHUP). A file that does not load is
        logged and the table in use is kept; True if the new one is in use."""
        if self._auth_file is None:
            return False
        try:
            table = AuthTable.load(self._auth_file)
        except ConfigError as exc:
            _LOG.error("auth file not reloaded, keeping the previous one: %s", exc)
            return False
        self._table = table
        _LOG.info("auth: reloaded %s, %d principals", self._auth_file, len(table.principals))
        return True

    # -- interception --------------------------------------------------------

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        service, _, method = handler_call_details.method.lstrip("/").partition("/")
        if handler is None or service != self._service:
            return handler  # health, reflection: open
        rule = _RULES.get(method, ("admin", method, False, False))
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, rule),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, rule),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(
        self, inner: Callable[[Any, grpc.ServicerContext], Any], rule: tuple[str, str, bool, bool]
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            call = self._admit(request, context, rule)
            try:
                reply = inner(request, context)
            except BaseException:
                self._record(call, "call", _status_name(context))
                raise
            self._record(call, "call", "OK")
            return reply

        return behavior

    def _streaming(
        self,
        inner: Callable[[Any, grpc.ServicerContext], Iterator[Any]],
        rule: tuple[str, str, bool, bool],
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def behavior(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call = self._admit(request, context, rule)
            try:
                for item in inner(request, context):
                    call.sent += 1  # counted before the yield: the client may cancel
                    yield item
            except GeneratorExit:
                call.outcome = "CANCELLED"
                raise
            except BaseException:
                call.outcome = _status_name(context)
                raise
            call.outcome = "OK"

        return behavior

    # -- admission -------------------------------------------------------------

    def _refuse(
        self,
        context: grpc.ServicerContext,
        code: grpc.StatusCode,
        message: str,
        fields: dict[str, Any],
    ) -> NoReturn:
        self._append(event="refused", outcome=code.name, **fields)
        context.abort(code, message)
        raise AssertionError("unreachable: context.abort raises")

    def _principal(self, context: grpc.ServicerContext) -> Principal | None:
        table = self._table
        if table is None:
            return None
        token = bearer_token(context.invocation_metadata())
        if token is not None:
            return table.by_token(token) if token else None
        names = context.auth_context().get("x509_common_name", [])
        return table.by_cert(n.decode("utf-8", "replace") for n in names)

    def _admit(
        self, request: Any, context: grpc.ServicerContext, rule: tuple[str, str, bool, bool]
    ) -> _Call:
        role, action, long_lived, names_dataset = rule
        metadata = tuple(context.invocation_metadata())
        ids = request.sample_ids if action == "stream" else ()
        digest = self.audit is not None and 0 < len(ids) <= self._max_ids
        call = _Call(
            action=action,
            principal=ANONYMOUS,
            dataset=_clip(request.dataset or self._only or "") if names_dataset else "",
            sample_count=len(ids),
            ids_digest=ids_digest(ids) if digest else "",
            request_id=_request_id(metadata),
            peer=context.peer(),
            long_lived=long_lived,
        )
        if self.auth_on:
            principal = self._principal(context)
            if principal is None:
                call.principal = ""
                self._refuse(
                    context,
                    grpc.StatusCode.UNAUTHENTICATED,
                    "no valid credentials: send 'authorization: Bearer <token>' "
                    "or a client certificate this engine knows",
                    call.fields(),
                )
            call.principal = principal.name
            if not principal.has_role(role):
                self._refuse(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"principal {principal.name!r} lacks the {role!r} role",
                    call.fields(),
                )
            if names_dataset:
                self._check_grant(principal, call, context)
        if long_lived:
            self._enter(call, context)
        if call.long_lived:
            self._record(call, "start", "STARTED")
            if not context.add_callback(lambda: self._leave(call)):
                self._leave(call)
        return call

    def _check_grant(
        self, principal: Principal, call: _Call, context: grpc.ServicerContext
    ) -> None:
        """The dataset grant, before anything looks the dataset up."""
        name = call.dataset
        if not name:
            if principal.datasets is None:
                return  # granted every dataset: the servicer says one is required
            self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "the request names no dataset: name one this principal is granted",
                call.fields(),
            )
        if not principal.may_read(name):
            self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"principal {principal.name!r} is not granted dataset {_clip(name)!r}",
                call.fields(),
            )

    def _enter(self, call: _Call, context: grpc.ServicerContext) -> None:
        with self._lock:
            mine = self._open_by.get(call.principal, 0)
            if self._open >= self._max:
                reason = f"{self._open} streams open on this engine (limit {self._max})"
            elif self.auth_on and self._max_each and mine >= self._max_each:
                reason = (
                    f"{mine} streams open for principal {call.principal!r} (limit {self._max_each})"
                )
            else:
                self._open += 1
                self._open_by[call.principal] = mine + 1
                reason = ""
        if reason:
            call.long_lived = False  # nothing to release
            self._refuse(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{reason}: retry later or ask another engine",
                call.fields(),
            )

    def _leave(self, call: _Call) -> None:
        """The call ended on the wire (done, failed or cancelled)."""
        with self._lock:
            self._open -= 1
            left = self._open_by[call.principal] - 1
            if left:
                self._open_by[call.principal] = left
            else:
                del self._open_by[call.principal]
        self._record(call, "end", call.outcome or "CANCELLED")

    def _record(self, call: _Call, event: str, outcome: str) -> None:
        fields = call.fields()
        if event == "end" and call.action == "stream":
            fields["sample_count"] = call.sent
        self._append(event=event, outcome=outcome, **fields)

    def _append(self, **fields: Any) -> None:
        if self.audit is None:
            return
        try:
            self.audit.append(**fields)
        except Exception:  # an audit failure must be loud; the data path goes on
            _LOG.exception("audit: could not append a %s record", fields.get("event"))
