"""Admission: votes run at once up to the pool's room for them, the rest wait first come first served."""

from __future__ import annotations

import asyncio

import pytest

from swarm_supervisor.proxy.admission import Admission
from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import Upstream, UpstreamPool
from testkit.llama.inprocess import Behaviour, asgi_client, fake_upstreams

pytestmark = pytest.mark.anyio

CHAT = {"model": "swarm", "messages": [{"role": "user", "content": "hi"}]}
#: an agent's turn: declared tools, so one request per process carries all its voters (no anchor)
AGENT = {**CHAT, "tools": [{"type": "function", "function": {"name": "read", "parameters": {}}}]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_waiters_are_served_in_arrival_order_and_a_leaver_gives_its_place_up() -> None:
    gate = Admission(lambda: 1)
    order: list[str] = []
    release = asyncio.Event()

    async def hold(name: str) -> None:
        async with gate.turn():
            order.append(name)
            await release.wait()

    first = asyncio.ensure_future(hold("a"))
    await asyncio.sleep(0)
    waiters = [asyncio.ensure_future(hold(n)) for n in ("b", "c", "d")]
    await asyncio.sleep(0.01)
    assert order == ["a"] and gate.waiting == 3
    waiters[1].cancel()  # "c" leaves the queue
    await asyncio.sleep(0.01)
    assert gate.waiting == 2
    release.set()
    await asyncio.gather(first, waiters[0], waiters[2])
    assert order == ["a", "b", "d"]
    assert gate.active == 0


async def test_capacity_follows_the_pool() -> None:
    pool = UpstreamPool(model_id="swarm", context=4096)
    pool.set_ready(Upstream("0", "http://127.0.0.1:9", slots=6, voters=3), True)
    pool.set_ready(Upstream("1", "http://127.0.0.1:9", slots=4, voters=2), True)
    assert pool.concurrency == 2 and pool.voters == 5
    pool.set_ready(Upstream("1", "http://127.0.0.1:9", slots=2, voters=2), True)
    assert pool.concurrency == 1


@pytest.mark.parametrize(("slots", "overlapped"), [(2, False), (4, True)])
async def test_a_second_session_runs_beside_the_first_only_where_slots_allow(
    slots: int, overlapped: bool
) -> None:
    with fake_upstreams(Behaviour("x = 1", latency_s=0.6)) as fakes:
        pool = UpstreamPool(model_id="swarm", context=4096)
        pool.set_ready(Upstream("0", fakes[0].url, slots=slots, voters=2), True)
        async with asgi_client(create_app(pool, ProxySettings(quorum=False))) as client:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            a, b = await asyncio.gather(
                client.post("/v1/chat/completions", json=AGENT),
                client.post("/v1/chat/completions", json=AGENT),
            )
            took = loop.time() - t0
    assert a.status_code == b.status_code == 200
    assert [body["n"] for body in fakes[0].record.bodies] == [2, 2]
    if overlapped:
        assert took < 1.1, f"two votes with room for both ran one after the other ({took:.2f} s)"
    else:
        assert took >= 1.2, f"the second vote did not wait for the first ({took:.2f} s)"
