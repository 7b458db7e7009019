"""Faulty instances (real HTTP fakes): the rest still vote, or the client gets the right 5xx,
and the proxy stays up."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import UpstreamPool
from testkit.llama.inprocess import Behaviour, fake_upstreams, served_client

pytestmark = pytest.mark.anyio

GOOD = "def add(a, b):\n    return a + b\n"
CHAT: dict[str, Any] = {"model": "swarm", "messages": [{"role": "user", "content": "add"}]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("stream", [False, True])
async def test_the_rest_still_vote(stream: bool) -> None:
    behaviours = [
        Behaviour(GOOD),
        Behaviour(GOOD, latency_s=0.3),  # slow
        Behaviour(fault="500"),
        Behaviour(fault="invalid_json"),
        Behaviour(fault="drop"),
        Behaviour(fault="hang"),  # never answers
    ]
    with fake_upstreams(*behaviours) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        settings = ProxySettings(request_timeout_s=1.5, stream_mode="consensus", keepalive_s=0.2)
        async with served_client(create_app(pool, settings)) as client:
            r = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
            assert r.status_code == 200
            if stream:
                assert GOOD.strip().split("\n")[0][:10] in r.text
                assert r.text.rstrip().endswith("data: [DONE]")
            else:
                body = r.json()
                assert body["choices"][0]["message"]["content"] == GOOD
                voters = {v["id"]: v for v in body["swarm"]["voters"]}
                assert body["swarm"]["votes"] == 2
                assert [voters[f"{i}.0"]["ok"] for i in range(6)] == [True, True, False, False, False, False]
                assert voters["2.0"]["error"] == "HTTP 500"
                assert "JSON" in voters["3.0"]["error"]
                # two agreeing answers, three failed, one hung: the one still out cannot close
                # a lead of 2, so the vote is settled and the hung voter is let go
                assert voters["5.0"]["error"] == "cancelled"
                # the share of the voters asked: the failed ones did not agree (issue 14)
                assert body["swarm"]["agreement"] == pytest.approx(2 / 6, abs=1e-3)
                assert body["swarm"]["asked"] == 6
            assert (await client.get("/health")).status_code == 200
            st = (await client.get("/swarm/status")).json()
            assert {i["id"]: i["errors"] for i in st["instances"]}["2"] == 1


async def test_all_failing_is_502_and_the_proxy_stays_up() -> None:
    bad = [Behaviour(fault="500"), Behaviour(fault="invalid_json"), Behaviour(fault="drop")]
    with fake_upstreams(*bad) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool)) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 502
            assert r.json()["error"]["type"] == "upstream_error"
            for f in fakes:  # the instances recover: so does the answer
                f.behaviour.fault = None
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 200


async def test_none_answering_is_504() -> None:
    with fake_upstreams(Behaviour(fault="hang"), Behaviour(fault="hang")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool, ProxySettings(request_timeout_s=0.5))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 504
            assert (await client.get("/health")).status_code == 200


async def test_an_instance_that_is_gone_does_not_vote() -> None:
    with fake_upstreams(Behaviour(GOOD), Behaviour(GOOD)) as fakes:
        urls = [f.url for f in fakes] + ["http://127.0.0.1:9"]  # nothing listens there
        pool = UpstreamPool.from_urls(urls)
        async with served_client(create_app(pool, ProxySettings(quorum=False))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    voters = {v["id"]: v for v in r.json()["swarm"]["voters"]}
    assert voters["2.0"]["ok"] is False and "Connect" in voters["2.0"]["error"]


async def test_a_request_every_instance_refuses_is_a_400_not_a_502() -> None:
    """llama-server answers 500 to messages it cannot parse; when every voter says the same, the
    client gets a 400 with that reason. One instance failing otherwise makes it a 502 again."""
    with fake_upstreams(Behaviour(fault="reject"), Behaviour(fault="reject")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool, ProxySettings(request_timeout_s=5))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 400, r.text
            err = r.json()["error"]
            assert err["type"] == "invalid_request_error" and err["code"] == "rejected_by_instances"
            assert "Failed to parse messages" in err["message"]
    with fake_upstreams(Behaviour(fault="reject"), Behaviour(fault="500")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool, ProxySettings(request_timeout_s=5))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 502, r.text


@pytest.mark.parametrize("stream", [False, True])
async def test_a_vote_the_client_left_leaves_no_task_behind(stream: bool) -> None:
    """The client hangs up while every voter is still out: the vote is cancelled with its upstream
    calls and nothing of it stays pending (a task left waiting on the fan-out's inbox was later
    destroyed by the garbage collector: 'Task was destroyed but it is pending!' in the log)."""
    with fake_upstreams(Behaviour(fault="hang"), Behaviour(fault="hang")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        app = create_app(pool, ProxySettings(keepalive_s=0.1))
        async with served_client(app) as client:
            if stream:  # a keep-alive comment, then the client hangs up
                async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
                    assert await r.aiter_bytes().__anext__()
            else:
                with pytest.raises(httpx.ReadTimeout):
                    await client.post("/v1/chat/completions", json=CHAT, timeout=0.5)
            for _ in range(100):  # the proxy sees the client go and cancels the vote
                if all(f.record.disconnects for f in fakes):
                    break
                await asyncio.sleep(0.05)
            assert all(f.record.disconnects == 1 for f in fakes)
            await asyncio.sleep(0.1)
            left = [t for t in asyncio.all_tasks() if "Queue.get" in repr(t.get_coro())]
            assert left == []
