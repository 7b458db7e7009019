"""Child processes for tests and benchmarks: each prints ``URL <url> ...`` on its first line once it
serves, and stops on SIGTERM (then SIGKILL), in its own process group, on loopback only.

    fakes = spawn_fakes(3)                   # three in-process fakes (testkit.llama) in one child
    proxy = spawn_proxy(fakes.urls, slots=FAKE_SLOTS)
    try: ... httpx.post(proxy.url + "/v1/chat/completions", ...)
    finally: proxy.stop(); fakes.stop()

    with fake_swarm(3, piece_delay_s=0.01) as proxy: ...
    with real_swarm(binary, model, instances=2, n_predict=16) as proxy: ...

The children are this module run as ``python -m testkit.spawn ROLE ARGS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
INTERNAL_KEY = "bench-internal-key"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    """A child process that printed ``URL ...`` on its first line; stopped with SIGTERM, then SIGKILL."""

    proc: subprocess.Popen[bytes]
    urls: list[str]
    log: Path | None = None

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _spawn(argv: list[str], timeout_s: float = 30.0, log: Path | None = None) -> Child:
    err = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
    )
    if log:
        err.close()  # type: ignore[union-attr]
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            Child(proc, []).stop(1)
            raise RuntimeError(f"{argv[:4]} did not start (exit {proc.returncode}); log: {log}")
        if sel.select(left):
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                continue
            line += chunk
    sel.close()
    words = line.decode().split()
    assert words[0] == "URL", line
    return Child(proc, words[1:], log)


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "testkit.spawn", *args]


def spawn_fakes(count: int = 3, *, content: str = "def add(a, b):\n    return a + b\n", pieces: int = 8,
                piece_delay_s: float = 0.0, latency_s: float = 0.0) -> Child:  # fmt: skip
    """``count`` fake llama-servers (testkit.llama.inprocess) in one child process."""
    return _spawn(
        _python("_fakes", str(count), json.dumps(content), str(pieces), str(piece_delay_s), str(latency_s))
    )


def spawn_proxy(urls: list[str], **settings: Any) -> Child:
    """The proxy (create_app + ProxyServer on uvloop) over ``urls``, in a child process.
    ``settings`` are ProxySettings fields; ``internal_key`` sets the pool's key for the instances,
    ``slots`` the requests each upstream takes at once (the proxy's admission gate lets that many
    votes run together: a fake answers any number, one real llama-server its ``--parallel``)."""
    return _spawn(_python("_proxy", json.dumps({"urls": urls, **settings})))


def spawn_llama(binary: Path, model: Path, *, slots: int = 1, context: int = 1024, n_predict: int = 16,
                threads: int = 1, log: Path | None = None, key: str = INTERNAL_KEY) -> Child:  # fmt: skip
    """One real llama-server on a free loopback port, with the internal key; URL once /health is 200."""
    return _spawn(
        _python(
            "_llama", str(binary), str(model), str(slots), str(context), str(n_predict), str(threads), key
        ),
        timeout_s=120,
        log=log,
    )


def _wait_for_signal() -> None:
    got = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: got.set())
    while not got.wait(0.5):
        pass


def _serve_fakes(count: int, content: str, pieces: int, delay: float, latency: float) -> None:
    from testkit.llama.inprocess import Behaviour, fake_upstreams

    behaviours = [
        Behaviour(content, stream_pieces=pieces, piece_delay_s=delay, latency_s=latency) for _ in range(count)
    ]
    with fake_upstreams(*behaviours) as fakes:
        print("URL", *[f.url for f in fakes], flush=True)
        _wait_for_signal()


def _serve_proxy(spec: dict[str, Any]) -> None:
    import uvloop

    from swarm_supervisor.proxy.app import create_app
    from swarm_supervisor.proxy.server import ProxyServer
    from swarm_supervisor.proxy.settings import ProxySettings
    from swarm_supervisor.proxy.upstreams import UpstreamPool

    urls = spec.pop("urls")
    key = spec.pop("internal_key", None)
    host = spec.pop("host", "127.0.0.1")
    pool = UpstreamPool.from_urls(urls, model_id="bench", slots=int(spec.pop("slots", 1)))
    pool.api_key = key

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with ProxyServer(create_app(pool, ProxySettings(**spec)), host=host) as server:
            print("URL", server.url, flush=True)
            await stop.wait()

    uvloop.run(main())


def _serve_llama(
    binary: str, model: str, slots: int, context: int, n_predict: int, threads: int, key: str
) -> None:
    import httpx

    port = free_port()
    argv = [binary, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-c", str(context * slots)]
    argv += ["--parallel", str(slots), "--threads", str(threads), "-n", str(n_predict), "-ngl", "0"]
    argv += ["--api-key", key, "--metrics"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)  # stderr: our log
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 100
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("llama-server did not become ready")
        time.sleep(0.2)
    print("URL", url, flush=True)
    try:
        _wait_for_signal()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


#: what a fake upstream declares it serves at once (it has no limit; above any --clients used)
FAKE_SLOTS = 4096


@contextlib.contextmanager
def fake_swarm(upstreams: int, piece_delay_s: float) -> Iterator[Child]:
    fakes = spawn_fakes(upstreams, pieces=8, piece_delay_s=piece_delay_s)
    try:
        # a fake serves any number of requests at once: declare it, or the gate queues every vote
        proxy = spawn_proxy(fakes.urls, stream_mode="consensus", request_timeout_s=120.0, slots=FAKE_SLOTS)
        try:
            yield proxy
        finally:
            proxy.stop()
    finally:
        fakes.stop()


@contextlib.contextmanager
def real_swarm(
    binary: Path, model: Path, instances: int, n_predict: int, context: int = 1024
) -> Iterator[Child]:
    """``instances`` real llama-servers (one slot, one thread each) and the proxy over them."""
    llamas: list[Child] = []
    try:
        for _ in range(instances):
            llamas.append(spawn_llama(binary, model, n_predict=n_predict, context=context))
        proxy = spawn_proxy([c.url for c in llamas], internal_key=INTERNAL_KEY, request_timeout_s=300.0)
        try:
            yield proxy
        finally:
            proxy.stop()
    finally:
        for c in llamas:
            c.stop()


def _child_main(argv: list[str]) -> None:
    role, *args = argv
    if role == "_fakes":
        _serve_fakes(int(args[0]), json.loads(args[1]), int(args[2]), float(args[3]), float(args[4]))
    elif role == "_proxy":
        _serve_proxy(json.loads(args[0]))
    elif role == "_llama":
        _serve_llama(args[0], args[1], int(args[2]), int(args[3]), int(args[4]), int(args[5]), args[6])
    else:
        raise SystemExit(f"unknown role {role!r}: _fakes, _proxy or _llama")


if __name__ == "__main__":
    _child_main(sys.argv[1:])
