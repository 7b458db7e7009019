"""/v1/models, /health, /metrics, /swarm/status, and ProxyServer in a running loop."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from swarm_supervisor.config import ProxyConfig
from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.server import ProxyServer
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import Upstream, UpstreamPool
from testkit.llama.inprocess import Behaviour, asgi_client, fake_upstreams

pytestmark = pytest.mark.anyio

CHAT: dict[str, Any] = {"model": "swarm", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_models_health_status() -> None:
    with fake_upstreams(Behaviour("a")) as fakes:
        pool = UpstreamPool(model_id="qwen2.5-coder:1.5b:q4_k_m", context=16384)
        pool.set_ready(Upstream("0", fakes[0].url, slots=3), True)
        pool.add(Upstream("1", "http://127.0.0.1:9"), state="starting")
        async with asgi_client(create_app(pool)) as client:
            models = (await client.get("/v1/models")).json()
            assert models["object"] == "list"
            assert models["data"][0]["id"] == "qwen2.5-coder:1.5b:q4_k_m"
            assert models["data"][0]["context_length"] == 16384
            h = await client.get("/health")
            assert h.status_code == 200
            assert h.json()["instances"] == {"0": "ready", "1": "starting"}
            assert h.json()["voters"] == 3
            st = (await client.get("/swarm/status")).json()
            assert [i["state"] for i in st["instances"]] == ["ready", "starting"]
            assert "api_key" not in str(st)
            pool.status = {"name": "default", "instances": []}
            assert (await client.get("/swarm/status")).json() == {"name": "default", "instances": []}
            pool.set_ready(Upstream("0", fakes[0].url, slots=3), False, state="crashed")
            h = await client.get("/health")
            assert h.status_code == 503 and h.json()["instances"]["0"] == "crashed"


async def test_metrics() -> None:
    with fake_upstreams(Behaviour("same"), Behaviour("same")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        pool.restarts["1"] = 2
        async with asgi_client(create_app(pool, ProxySettings(quorum=False))) as client:
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
            assert (await client.post("/v1/chat/completions", content=b"{")).status_code == 400
            r = await client.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain")
        m = samples(r.text)
        endpoint = "/v1/chat/completions"
        assert m[("swarm_requests_total", (("endpoint", endpoint), ("status", "200")))] == 1
        assert m[("swarm_requests_total", (("endpoint", endpoint), ("status", "400")))] == 1
        assert m[("swarm_request_duration_seconds_count", (("endpoint", endpoint),))] == 2
        assert m[("swarm_vote_agreement_count", (("strategy", "quality"),))] == 1
        assert m[("swarm_vote_agreement_sum", (("strategy", "quality"),))] == 1.0
        assert m[("swarm_instance_ready", (("instance", "0"),))] == 1
        assert m[("swarm_instance_restarts", (("instance", "1"),))] == 2
        assert m[("swarm_voter_results_total", (("instance", "0"), ("outcome", "ok")))] == 1
        assert m[("swarm_tokens_total", (("kind", "prompt"),))] == 20
        # the instances' own llama-server metrics, relabelled
        assert m[("llamacpp:prompt_tokens_total", (("instance", "0"),))] == 42
        assert m[("llamacpp:prompt_tokens_total", (("instance", "1"),))] == 42


async def test_each_app_has_its_own_registry() -> None:
    pool = UpstreamPool(model_id="swarm", context=1)
    a, b = create_app(pool), create_app(pool)  # the global registry would refuse the second
    assert a.state.ctx.metrics.registry is not b.state.ctx.metrics.registry


async def test_proxy_server_runs_in_the_current_loop_on_a_free_port() -> None:
    with fake_upstreams(Behaviour("served")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        settings = ProxySettings.from_config(ProxyConfig(port=0), voters=pool.voters)
        assert settings.stream_mode == "fastest"  # one voter: nothing to vote on
        server = ProxyServer(create_app(pool, settings), port=0)
        await server.start()
        try:
            assert server.port > 0
            async with httpx.AsyncClient(base_url=server.url) as client:
                r = await client.post("/v1/chat/completions", json=CHAT)
                assert r.json()["choices"][0]["message"]["content"] == "served"
        finally:
            await server.stop()
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(server.url + "/health")


async def test_port_in_use_is_an_oserror() -> None:
    pool = UpstreamPool(model_id="swarm", context=1)
    async with ProxyServer(create_app(pool), port=0) as first:
        with pytest.raises(OSError):
            await ProxyServer(create_app(pool), port=first.port).start()
