"""Why the proxy cannot listen on HOST:PORT, in words a user can act on.

    >>> bind_problem("127.0.0.1", 0) is None
    True

``swarm up`` checks before it plans anything (:func:`bind_problem`); the supervisor words a
failed bind the same way (:func:`describe_bind_error`).
"""

from __future__ import annotations

import errno
import socket
import sys


def describe_bind_error(exc: OSError, host: str, port: int) -> str:
    """The cause of a failed ``bind((host, port))``, with what to do about it."""
    code = exc.errno
    if code == errno.EADDRINUSE:
        return f"port {port} on {host} is in use by another program; choose another with `--port N` (0: any)"
    if code == errno.EACCES:
        return (
            f"binding port {port} on {host} is not permitted for this user (ports under 1024 need "
            "privileges); choose a port above 1023 with `--port N`"
        )
    if code == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; give one of its own with `--host`"
    if code == errno.EAFNOSUPPORT:
        return f"{host} is an IPv6 address and IPv6 is off on this machine; use `--host 127.0.0.1`"
    return f"cannot listen on {host}:{port} ({exc.strerror or exc}); check `--host` and `--port`"


def bind_problem(host: str, port: int) -> str | None:
    """None when ``host:port`` can be bound now, else why not (see :func:`describe_bind_error`)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return (
            f"{host} is not an address or host name this machine can resolve ({exc.strerror}); check `--host`"
        )
    except UnicodeError:
        return f"{host!r} is not a valid host name; check `--host`"
    family, kind, proto, _, addr = infos[0]
    try:
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        return describe_bind_error(exc, host, port)
    with sock:
        if sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            return describe_bind_error(exc, host, port)
    return None
