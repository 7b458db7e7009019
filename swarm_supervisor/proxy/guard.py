"""Connection limits uvicorn's httptools protocol does not have: header size, open connections,
and how long a client may take to send a request's head.

Without them a client could send a 200 MB header (httptools buffers it whole), hold a thousand
idle connections until the process runs out of file descriptors, or trickle a header one byte
every few seconds forever (each byte resets uvicorn's keep-alive timer). :func:`guarded_protocol`
returns the protocol class ``uvicorn.Config(http=...)`` takes::

    limits = ServerLimits(max_header_bytes=65536, max_connections=1024, header_timeout_s=10.0)
    uvicorn.Config(app, http=guarded_protocol(limits))

Past a limit a client gets a short HTTP answer and the connection is closed: 431 for a head over
``max_header_bytes``, 503 (with Retry-After) when ``max_connections`` are open, 408 when the head
did not arrive within ``header_timeout_s`` (a connection that sent nothing is closed silently);
what the HTTP parser refuses gets a 400 in the same OpenAI error shape.
The body is bounded by the app (``proxy.max_body_bytes``, ``proxy.body_timeout_s``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

#: seconds a refused connection stays open (reading and dropping) after its answer was sent
LINGER_S = 1.0


@dataclass(frozen=True)
class ServerLimits:
    max_header_bytes: int = 64 * 1024
    max_connections: int = 1024
    header_timeout_s: float = 10.0

    def effective_connections(self) -> int:
        """``max_connections``, lowered to a third of the open-file limit: every connection is a
        file descriptor, and each voted request needs more for its upstream calls."""
        try:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        except (OSError, ValueError):
            return self.max_connections
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(8, min(self.max_connections, (soft - 64) // 3))


def _response(status: int, reason: str, message: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    err = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    body = json.dumps({"error": err}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in extra]
    head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`ServerLimits` (set on a subclass)."""

    limits = ServerLimits()
    max_connections = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True  # waiting for (the rest of) a request's head
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refused = True
            log.warning("refused a connection: %d open (proxy.max_connections)", len(self.connections) - 1)
            message = f"too many open connections (more than {self.max_connections}); try again shortly"
            self._close_with(_response(503, "Service Unavailable", message, (("retry-after", "1"),)))
            return
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if (
            self._in_head
            and self._head_bytes > self.limits.max_header_bytes
            and not self.transport.is_closing()
        ):
            limit = self.limits.max_header_bytes
            message = f"the request head is larger than {limit} bytes (proxy.max_header_bytes)"
            self._close_with(_response(431, "Request Header Fields Too Large", message))

    def send_400_response(self, msg: str) -> None:
        """What the HTTP parser refuses (a broken request line, header or chunk): uvicorn's answer
        is plain text; this one is the JSON error body every other 4xx has. A request of this
        connection still being answered (the bad bytes were pipelined after it) is over: its app
        sees the client gone and writes nothing after this answer (what connection_lost does)."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        message = "the request is not a valid HTTP/1.1 request (its request line, a header or its framing)"
        self._close_with(_response(400, "Bad Request", message))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()

    # ------------------------------------------------------------------ the head's deadline

    def _await_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes == 0:  # an idle connection: nothing to answer
            self.transport.close()
            return
        limit = self.limits.header_timeout_s
        message = f"the request head did not arrive within {limit:g} s (proxy.header_timeout_s)"
        self._close_with(_response(408, "Request Timeout", message))

    def _close_with(self, response: bytes) -> None:
        """Answer, then close a moment later, dropping what still arrives meanwhile: closing at
        once with unread data makes the kernel send a reset that can destroy the answer."""
        self._in_head = False
        self._refused = True  # data_received drops everything from now on
        self._cancel_head_timer()
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


def guarded_protocol(limits: ServerLimits) -> type[GuardedProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` that enforces ``limits``."""
    attrs = {"limits": limits, "max_connections": limits.effective_connections()}
    return type("GuardedProtocol", (GuardedProtocol,), attrs)
