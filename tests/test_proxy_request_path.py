"""The proxy listens before its request path (handlers, vote, aiohttp) is loaded, and loads it later.

`swarm up` returns once the models are loaded and the proxy answers /health; the request path's
imports (most of the proxy's CPU at start) come after, or with the first request that needs them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from swarm_supervisor.proxy import request_path
from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.upstreams import Upstream, UpstreamPool
from swarm_supervisor.swarm.daemon import request_path_beside_models
from swarm_supervisor.swarm.spec import SwarmSpec
from testkit.llama.inprocess import Behaviour, asgi_client, fake_upstreams
from tests.test_supervisor import make_spec

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parent.parent
CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

#: run in a fresh interpreter: which modules a listening proxy has loaded, before and after the load
SCRIPT = """
import asyncio, json, sys
import httpx
from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.server import ProxyServer
from swarm_supervisor.proxy.upstreams import UpstreamPool

HEAVY = ("aiohttp", "rapidfuzz", "swarm_supervisor.proxy.handlers", "swarm_supervisor.consensus")

def heavy():
    return sorted(m for m in HEAVY if m in sys.modules)

async def main():
    app = create_app(UpstreamPool(model_id="m", context=1024), load_at_start=False)
    async with ProxyServer(app) as server:
        async with httpx.AsyncClient(trust_env=False) as client:
            health = (await client.get(server.url + "/health")).status_code
            models = (await client.get(server.url + "/v1/models")).status_code
        before = heavy()
        server.load_request_path()
        await app.state.request_path.ready()
        print(json.dumps({"health": health, "models": models, "before": before, "after": heavy()}))

asyncio.run(main())
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_listening_proxy_has_not_loaded_the_request_path_until_asked() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["health"] == 503 and seen["models"] == 200  # no instance ready, but it answers
    assert seen["before"] == []
    assert seen["after"] == sorted(
        ["aiohttp", "rapidfuzz", "swarm_supervisor.proxy.handlers", "swarm_supervisor.consensus"]
    )


async def test_the_first_request_loads_the_request_path_and_gets_its_answer() -> None:
    with fake_upstreams(Behaviour("a")) as fakes:
        pool = UpstreamPool(model_id="m", context=1024)
        pool.set_ready(Upstream("0", fakes[0].url, slots=1), True)
        app = create_app(pool, load_at_start=False)
        async with asgi_client(app) as client:
            assert not app.state.request_path.loaded
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "a"
            assert app.state.request_path.loaded
            assert len(fakes[0].record.bodies) == 1


async def test_a_request_path_that_cannot_load_is_a_clear_500_and_an_unhealthy_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken() -> Any:
        raise ImportError("No module named 'aiohttp'")

    monkeypatch.setattr(request_path, "_import", broken)
    with fake_upstreams(Behaviour("a")) as fakes:
        pool = UpstreamPool(model_id="m", context=1024)
        pool.set_ready(Upstream("0", fakes[0].url, slots=1), True)
        app = create_app(pool, load_at_start=False)
        async with asgi_client(app) as client:
            assert (await client.get("/health")).status_code == 200  # not asked yet
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 500
            message = r.json()["error"]["message"]
            assert "cannot load its request handlers" in message and "No module named 'aiohttp'" in message
            h = await client.get("/health")
            assert h.status_code == 503 and "aiohttp" in h.json()["error"]
            m = await client.get("/metrics")  # the proxy's own metrics still, the 500 counted
            assert m.status_code == 200 and 'status="500"' in m.text
            assert fakes[0].record.bodies == []  # nothing reached an instance


def _spec(threads: list[int], gpu_layers: int = 0) -> SwarmSpec:
    spec = make_spec(Path("/tmp"), Path("/bin/true"), Path("/tmp/m.gguf"), len(threads))
    insts = tuple(
        dataclasses.replace(i, threads=t, gpu_layers=gpu_layers)
        for i, t in zip(spec.instances, threads, strict=True)
    )
    return dataclasses.replace(spec, instances=insts)


def test_the_request_path_loads_beside_the_models_only_where_that_takes_no_cores_from_them() -> None:
    # this 2-core machine's plans: 2 one-thread processes, or one process of 2 threads
    assert not request_path_beside_models(_spec([1, 1]), cores=2)
    assert not request_path_beside_models(_spec([2]), cores=2)
    assert request_path_beside_models(_spec([1, 1]), cores=4)  # a core to spare
    assert request_path_beside_models(_spec([16], gpu_layers=999), cores=16)  # the models load onto a GPU
