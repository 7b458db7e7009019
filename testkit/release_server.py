"""A real HTTP server on 127.0.0.1 that plays GitHub's release API for bin_fetch's tests.

    with ReleaseServer() as srv:
        srv.publish("b1234", {"llama-b1234-bin-ubuntu-x64.tar.gz": archive_bytes})
        Request(..., release_base_url=srv.api_url, release_tag="b1234")

``publish`` serves ``GET /repos/ggml-org/llama.cpp/releases/tags/<tag>`` (JSON: assets with name,
size, browser_download_url, digest) and each asset under ``/download/<tag>/<name>``. Faults:
``listed_size`` / ``listed_digest`` override what the JSON says; ``cut_after`` sends that many
bytes of an asset (with the full Content-Length) and then drops the connection; an unknown path
answers 404. Every request path is recorded in ``requests``.

Also here: the archives themselves (``tar_gz`` / ``zip_bytes``) and a fake llama-server script that
only runs when its backend library lies beside it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_PATH = "/repos/ggml-org/llama.cpp"


def fake_server_script(version: str = "1234 (abc)", needs: tuple[str, ...] = ("libggml-cpu.so",)) -> bytes:
    """A POSIX sh llama-server: ``--version`` prints llama.cpp's line to stderr, if its libs are beside it."""
    checks = "".join(
        f'[ -f "$here/{lib}" ] || {{ echo "error while loading shared libraries: {lib}" >&2; exit 127; }}\n'
        for lib in needs
    )
    return (
        "#!/bin/sh\n"
        'here=$(dirname "$0")\n'
        f"{checks}"
        'case "$1" in\n'
        f'  --version) echo "version: {version}" >&2; echo "built with fake cc for test" >&2; exit 0;;\n'
        '  --list-devices) echo "Available devices:"; echo "  (none)"; exit 0;;\n'
        "esac\n"
        "exit 1\n"
    ).encode()


@dataclass
class Member:
    data: bytes
    mode: int = 0o644
    symlink_to: str | None = None


def tar_gz(members: dict[str, Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, m in members.items():
            info = tarfile.TarInfo(name)
            if m.symlink_to is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = m.symlink_to
                tar.addfile(info)
                continue
            info.size = len(m.data)
            info.mode = m.mode
            tar.addfile(info, io.BytesIO(m.data))
    return buf.getvalue()


def zip_bytes(members: dict[str, Member]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, m in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | m.mode) << 16
            zf.writestr(info, m.data)
    return buf.getvalue()


@dataclass
class _Blob:
    body: bytes
    cut_after: int | None = None


@dataclass
class ReleaseServer:
    blobs: dict[str, _Blob] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # ------------------------------------------------------------------ content

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.base_url + API_PATH

    def publish(
        self,
        tag: str,
        assets: dict[str, bytes],
        *,
        listed_size: dict[str, int] | None = None,
        listed_digest: dict[str, str | None] | None = None,
        cut_after: dict[str, int] | None = None,
        missing: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Serve a release; names in ``missing`` are listed but answer 404."""
        listed: list[dict[str, Any]] = []
        for name, body in assets.items():
            url = f"{self.base_url}/download/{tag}/{name}"
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            if listed_digest and name in listed_digest:
                digest = listed_digest[name]  # type: ignore[assignment]
            listed.append(
                {
                    "name": name,
                    "size": (listed_size or {}).get(name, len(body)),
                    "browser_download_url": url,
                    "digest": digest,
                    "content_type": "application/octet-stream",
                }
            )
            if name not in missing:
                self.blobs[f"/download/{tag}/{name}"] = _Blob(body, (cut_after or {}).get(name))
        release = {"tag_name": tag, "name": tag, "assets": listed}
        self.blobs[f"{API_PATH}/releases/tags/{tag}"] = _Blob(json.dumps(release).encode())
        return release

    # ------------------------------------------------------------------ serving

    def __enter__(self) -> ReleaseServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                server.requests.append(self.path)
                blob = server.blobs.get(self.path)
                if blob is None:
                    body = b'{"message": "Not Found"}'
                    self.send_response(404)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                ctype = "application/json" if "/releases/" in self.path else "application/octet-stream"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(blob.body)))
                self.end_headers()
                if blob.cut_after is None:
                    self.wfile.write(blob.body)
                else:
                    self.wfile.write(blob.body[: blob.cut_after])
                    self.wfile.flush()
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def count(self, suffix: str) -> int:
        return sum(1 for r in self.requests if r.endswith(suffix))
