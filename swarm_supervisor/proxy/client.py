"""The one shared upstream HTTP client: aiohttp, chosen by measurement (docs/performance.md).

Cancelling a call closes its connection, which is how llama-server learns to free the slot.

Idle keep-alive connections: llama-server (cpp-httplib) closes one after 5 s without a request,
and aiohttp reuses the *oldest* idle connection first. A connection reused at about that age
fails at once (measured: half the reuses after 4.97-5.03 s idle ended in "connection reset" or
"server disconnected"), which the soak benchmark saw as a lost request whenever the other
instance was down. So the pool drops connections idle longer than :data:`KEEPALIVE_S`, and a
request that fails before any response arrived because the server closed the connection is
sent once more (the server never read it: nothing was generated).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from .failures import UpstreamBadStream, UpstreamHttpError, UpstreamUnreachable
from .upstreams import UpstreamPool

#: seconds an idle upstream connection is kept: under cpp-httplib's keep-alive timeout (5 s)
KEEPALIVE_S = 4.0
#: extra attempts for a request whose connection the server closed before answering
STALE_RETRIES = 1


def new_session() -> aiohttp.ClientSession:
    """A session for the app's lifetime: no pool limit (the slots are the limit), no cookies."""
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        json_serialize=json.dumps,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0),
    )


class UpstreamClient:
    """Calls llama-server instances with the swarm's internal key."""

    def __init__(self, session: aiohttp.ClientSession, pool: UpstreamPool) -> None:
        self.session = session
        self.pool = pool
        #: upstream URLs that answered fewer choices than ``n`` asked for: asked once per voter
        self.ignores_n: set[str] = set()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.pool.api_key:
            headers["Authorization"] = f"Bearer {self.pool.api_key}"
        return headers

    @asynccontextmanager
    async def stream(self, url: str, body: dict[str, Any]) -> AsyncIterator[AsyncIterator[bytes]]:
        """POST ``body`` and yield its SSE ``data:`` payloads (bytes, without the prefix).

        Leaving the block early closes the connection (llama-server then stops generating).
        """
        data = json.dumps(body).encode()
        resp = await self._post(url, data)
        try:
            if resp.status != 200:
                raw = await resp.read()
                try:
                    parsed: Any = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    parsed = None
                raise UpstreamHttpError(f"HTTP {resp.status}", status=resp.status, body=parsed)
            yield _data_lines(resp)
        finally:
            if not resp.content.at_eof():
                resp.close()  # drop the connection: the instance frees its slot
            else:
                resp.release()

    async def _post(self, url: str, data: bytes) -> aiohttp.ClientResponse:
        """POST until the response's head arrives; again (``STALE_RETRIES`` times) when the server
        closed the connection without answering: a keep-alive connection it had just closed."""
        for attempt in range(STALE_RETRIES + 1):
            try:
                return await self.session.post(url, data=data, headers=self._headers())
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # ClientConnectorError (nothing listens: the instance is down) is final
                if isinstance(exc, aiohttp.ClientConnectorError) or attempt == STALE_RETRIES:
                    raise UpstreamUnreachable(_describe(exc)) from None
            except aiohttp.ClientError as exc:
                raise UpstreamUnreachable(_describe(exc)) from None
        raise AssertionError("unreachable")

    async def get_text(self, url: str, timeout_s: float) -> str | None:
        """GET ``url`` as text; None on any failure (used for the instances' own /metrics)."""
        try:
            async with self.session.get(
                url, headers=self._headers(), timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as resp:
                if resp.status != 200:
                    return None
                return await resp.text()
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
            return None


async def _data_lines(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for line in resp.content:
            line = line.strip()
            if line.startswith(b"data:"):
                yield line[5:].strip()
    except aiohttp.ClientError as exc:
        raise UpstreamUnreachable(f"the stream broke off: {type(exc).__name__}") from None
    except (HttpProcessingError, ValueError) as exc:  # a line longer than aiohttp reads (LineTooLong)
        raise UpstreamBadStream(f"a stream event is too long ({type(exc).__name__})") from None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".rstrip(": ")
