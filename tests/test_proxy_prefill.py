"""One prefill per process: a process holding k voters gets one request with ``n = k``.

Against small real fake llama-servers (testkit/llama/inprocess.py), which stream ``n`` interleaved
choices the way llama-server does, or one choice whatever ``n`` says (an older build).
"""

from __future__ import annotations

import pytest

from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import Upstream, UpstreamPool
from testkit.llama.inprocess import Behaviour, asgi_client, fake_upstreams

pytestmark = pytest.mark.anyio

GOOD = "def add(a, b):\n    return a + b\n"
BAD = "I cannot help with that."
#: an agent's turn (declared tools): no greedy anchor, so each process gets one request (sampling.py)
CHAT = {
    "model": "swarm",
    "messages": [{"role": "user", "content": "Write add(a, b) in Python."}],
    "tools": [{"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _pool(fakes: list, slots: int, voters: int = 0) -> UpstreamPool:
    pool = UpstreamPool(model_id="swarm", context=4096)
    for i, f in enumerate(fakes):
        pool.set_ready(Upstream(str(i), f.url, slots=slots, voters=voters), True)
    return pool


async def test_one_request_per_process_carries_all_its_voters() -> None:
    with fake_upstreams(Behaviour(contents=[GOOD, BAD, GOOD])) as fakes:
        async with asgi_client(create_app(_pool(fakes, slots=3), ProxySettings(quorum=False))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    body = r.json()
    assert len(fakes[0].record.bodies) == 1, "three voters, one request: the prompt is evaluated once"
    assert fakes[0].record.bodies[0]["n"] == 3
    assert body["choices"][0]["message"]["content"] == GOOD
    swarm = body["swarm"]
    assert swarm["votes"] == 3 and swarm["requests"] == 1
    assert sorted(map(sorted, swarm["clusters"])) == [["0.0", "0.2"], ["0.1"]]
    # the prompt was evaluated once: it counts once in the totals, and the winner's usage names it
    assert body["usage"]["prompt_tokens"] == 10
    assert swarm["usage_total"]["prompt_tokens"] == 10


async def test_slots_beyond_the_voters_are_room_for_other_requests() -> None:
    """A process with 4 slots that holds 2 voters answers a vote with n = 2 (concurrency 2)."""
    with fake_upstreams(Behaviour(GOOD), Behaviour(GOOD)) as fakes:
        pool = _pool(fakes, slots=4, voters=2)
        assert pool.voters == 4
        async with asgi_client(create_app(pool, ProxySettings(quorum=False))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    assert [b["n"] for f in fakes for b in f.record.bodies] == [2, 2]
    assert r.json()["swarm"]["votes"] == 4


async def test_a_server_that_ignores_n_is_asked_once_per_voter_and_remembered() -> None:
    with fake_upstreams(Behaviour(GOOD, ignore_n=True)) as fakes:
        async with asgi_client(create_app(_pool(fakes, slots=3), ProxySettings(quorum=False))) as client:
            first = await client.post("/v1/chat/completions", json=CHAT)
            assert first.status_code == 200
            assert first.json()["swarm"]["votes"] == 3, "the missing choices were asked for again"
            assert [b["n"] for b in fakes[0].record.bodies] == [3, 1, 1]
            seeds = [b["seed"] for b in fakes[0].record.bodies]
            assert len(set(seeds)) == 3, "each voter keeps a seed of its own"
            second = await client.post("/v1/chat/completions", json=CHAT)
    assert second.json()["swarm"]["votes"] == 3
    assert [b["n"] for b in fakes[0].record.bodies[3:]] == [1, 1, 1], "no second try of n = 3"


async def test_quorum_closes_the_whole_request_once_the_vote_is_settled() -> None:
    """Two of three choices agree: the vote is settled, the slow rest of the stream is dropped."""
    slow = Behaviour(contents=[GOOD, GOOD, GOOD], stream_pieces=4, piece_delay_s=0.0)
    with fake_upstreams(slow, Behaviour(GOOD, latency_s=30)) as fakes:
        pool = _pool(fakes[:1], slots=2)
        pool.set_ready(Upstream("1", fakes[1].url, slots=1), True)
        async with asgi_client(create_app(pool, ProxySettings(quorum=True))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200
        swarm = r.json()["swarm"]
        assert swarm["votes"] == 2
        straggler = next(v for v in swarm["voters"] if v["id"] == "1.0")
        assert straggler["error"] == "cancelled"


async def test_a_broken_stream_fails_only_the_voters_it_had_not_answered() -> None:
    with fake_upstreams(Behaviour(GOOD, fault="drop"), Behaviour(GOOD)) as fakes:
        pool = _pool(fakes[:1], slots=2)
        pool.set_ready(Upstream("1", fakes[1].url, slots=1), True)
        async with asgi_client(create_app(pool, ProxySettings(quorum=False))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    voters = {v["id"]: v for v in r.json()["swarm"]["voters"]}
    assert voters["1.0"]["ok"] is True
    assert voters["0.0"]["ok"] is False and voters["0.1"]["ok"] is False
    assert "broke off" in voters["0.0"]["error"] or "Disconnect" in voters["0.0"]["error"]


async def test_logprobs_asked_by_the_client_are_the_winners_and_absent_otherwise() -> None:
    with fake_upstreams(Behaviour(GOOD), Behaviour(GOOD)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with asgi_client(create_app(pool, ProxySettings(quorum=False))) as client:
            plain = await client.post("/v1/chat/completions", json=CHAT)
            asked = await client.post(
                "/v1/chat/completions", json={**CHAT, "logprobs": True, "top_logprobs": 2}
            )
            streamed = await client.post(
                "/v1/chat/completions", json={**CHAT, "logprobs": True, "stream": True}
            )
            too_many = await client.post("/v1/chat/completions", json={**CHAT, "top_logprobs": 100000})
    assert "logprobs" not in plain.json()["choices"][0]
    choice = asked.json()["choices"][0]
    tokens = choice["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == choice["message"]["content"] == GOOD
    assert all(b.get("top_logprobs") == 2 for b in fakes[0].record.bodies[1:2])
    events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: {")]
    import json

    with_lp = [json.loads(e) for e in events if '"logprobs": {' in e or '"logprobs":{' in e]
    assert len(with_lp) == 1, "the whole answer's logprobs ride on the finishing chunk"
    assert "".join(t["token"] for t in with_lp[0]["choices"][0]["logprobs"]["content"]) == GOOD
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "top_logprobs"
