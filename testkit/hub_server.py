"""A real HTTP server on 127.0.0.1 that answers the requests huggingface_hub makes for a download.

    with HubServer() as hub:
        hub.publish("org/repo", "model.gguf", data)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)

It serves ``HEAD`` and ``GET /{org}/{name}/resolve/{revision}/{filename}`` the way the hub does for
an LFS file: ``X-Repo-Commit``, ``ETag`` / ``X-Linked-Etag`` (the sha256 of the content),
``X-Linked-Size``, ``Content-Length``, and ``Range: bytes=N-`` answered with 206 and
``Content-Range``. A Starlette app run by uvicorn in a thread, on a socket bound to a free port.

Faults, per file (:class:`Fault`): ``cut_first`` sends half the bytes of the first GET (with the
full Content-Length) and drops the connection; ``then_status`` answers that many following GETs
with 503; ``announce_size`` makes HEAD announce another size than what GET sends. Every request
is recorded in ``requests`` (method, path, headers). Also here: :func:`tiny_gguf`, a small but
real GGUF file written with ``gguf.GGUFWriter``.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Fault:
    cut_first: bool = False  # first GET: half the bytes, then the connection drops
    then_status: int = 0  # how many GETs after the cut answer 503
    announce_size: int | None = None  # HEAD says this size instead of the real one
    commit: str | None = None  # X-Repo-Commit says this instead of COMMIT (a hostile hub)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class _File:
    data: bytes
    fault: Fault = field(default_factory=Fault)
    gets: int = 0

    @property
    def etag(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class _CutResponse(Response):
    """Headers promise the whole file; half of it is sent, then the app returns (uvicorn drops it)."""

    def __init__(self, data: bytes, headers: dict[str, str]) -> None:
        super().__init__(status_code=200, headers=headers)
        self._half = data[: len(data) // 2]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self._half, "more_body": True})


class HubServer:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str], _File] = {}
        self.requests: list[Seen] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        app = Starlette(
            routes=[
                Route(
                    "/{org}/{name}/resolve/{revision}/{filename:path}",
                    self._resolve,
                    methods=["GET", "HEAD"],
                )
            ]
        )
        config = uvicorn.Config(app, log_level="critical", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def publish(self, repo: str, filename: str, data: bytes, fault: Fault | None = None) -> None:
        self.files[(repo, filename)] = _File(data, fault or Fault())

    def gets(self, filename: str) -> list[Seen]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/" + filename)]

    async def _resolve(self, request: Request) -> Response:
        p = request.path_params
        self.requests.append(Seen(request.method, request.url.path, dict(request.headers)))
        f = self.files.get((f"{p['org']}/{p['name']}", p["filename"]))
        if f is None:
            return Response(status_code=404, headers={"X-Error-Code": "EntryNotFound"})
        size = len(f.data)
        headers = {
            "X-Repo-Commit": f.fault.commit or COMMIT,
            "ETag": f'"{f.etag}"',
            "X-Linked-Etag": f'"{f.etag}"',
            "Accept-Ranges": "bytes",
        }
        if request.method == "HEAD":
            announced = f.fault.announce_size if f.fault.announce_size is not None else size
            headers["X-Linked-Size"] = str(announced)
            headers["Content-Length"] = str(announced)
            return Response(status_code=200, headers=headers)
        f.gets += 1
        if f.fault.cut_first and f.gets == 1:
            return _CutResponse(f.data, {**headers, "Content-Length": str(size)})
        if f.fault.cut_first and 1 < f.gets <= 1 + f.fault.then_status:
            return Response(status_code=503, content=b"busy")
        start = 0
        rng = request.headers.get("range")
        if rng and rng.startswith("bytes="):
            start = int(rng[len("bytes=") :].split("-")[0] or 0)
            if start >= size:
                return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
            return Response(content=f.data[start:], status_code=206, headers=headers)
        return Response(content=f.data, status_code=200, headers=headers)

    def __enter__(self) -> HubServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake hub did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


def tiny_gguf(
    path: Path,
    *,
    arch: str = "llama",
    n_layers: int = 4,
    n_heads: int = 8,
    n_kv_heads: int = 2,
    embedding: int = 64,
    context: int = 2048,
    key_length: int | None = None,
    chat_template: str | None = "{{ messages }}",
    tensors: int = 2,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A small real GGUF (metadata of a transformer, a few f32 tensors) written with GGUFWriter."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_name("tiny test model")
    w.add_block_count(n_layers)
    w.add_context_length(context)
    w.add_embedding_length(embedding)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv_heads)
    if key_length is not None:
        w.add_key_length(key_length)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    for key, value in (extra or {}).items():
        if isinstance(value, int):
            w.add_uint32(key, value)
        else:
            w.add_string(key, str(value))
    for i in range(tensors):
        w.add_tensor(f"blk.{i}.weight", np.full((16, embedding), i, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
