"""``GET /health`` of an instance over a fresh loopback connection, with nothing but asyncio.

    code = await health_status("127.0.0.1", 8081, timeout_s=1.0)   # 200, 503, ... or None

The supervisor asks this many times a second while the instances load, and every few seconds
after: one request line, one status line read, the connection closed. An HTTP client library
(httpx pulls in click, rich and pygments through its command line: about 0.1 s of CPU) would be
imported by the supervisor process only for this, while the models load beside it.
"""

from __future__ import annotations

import asyncio
import contextlib


async def health_status(host: str, port: int, timeout_s: float, path: str = "/health") -> int | None:
    """The status code of ``GET path``, or None when nothing answers in time (refused, reset, a
    reply that is not HTTP)."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                writer.write(request.encode())
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError, asyncio.CancelledError, TimeoutError):
                    await writer.wait_closed()
    except (OSError, TimeoutError, ValueError):
        return None
    parts = line.split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None
