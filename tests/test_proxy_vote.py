"""The vote through the proxy: fan-out to every slot, majority wins, the swarm extension, seeds."""

from __future__ import annotations

import pytest

from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.sampling import VOTER_TEMPERATURE, seeds
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import Upstream, UpstreamPool
from testkit.llama.inprocess import Behaviour, asgi_client, fake_upstreams

pytestmark = pytest.mark.anyio

GOOD = "def add(a, b):\n    return a + b\n"
CHAT = {"messages": [{"role": "user", "content": "Write add(a, b) in Python."}]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_majority_wins_with_agreement_two_thirds() -> None:
    with fake_upstreams(Behaviour(GOOD), Behaviour("I cannot help with that."), Behaviour(GOOD)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes], model_id="smollm2:135m:q4_1")
        settings = ProxySettings(quorum=False, aliases=("gpt-4o",))
        async with asgi_client(create_app(pool, settings)) as client:
            r = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4o"})
    assert r.status_code == 200
    body = r.json()
    assert body["choices"][0]["message"]["content"] == GOOD
    assert body["model"] == "smollm2:135m:q4_1"  # an alias in, the swarm's id out
    swarm = body["swarm"]
    assert swarm["votes"] == 3
    assert swarm["agreement"] == pytest.approx(2 / 3, abs=1e-3)
    assert r.headers["x-swarm-agreement"] == "0.667"
    assert sorted(map(sorted, swarm["clusters"])) == [["0.0", "2.0"], ["1.0"]]
    assert swarm["winner"] in {"0.0", "2.0"}
    assert [v["ok"] for v in swarm["voters"]] == [True, True, True]
    # usage is the winner's own; the extension sums every voter's
    assert body["usage"]["prompt_tokens"] == 10
    assert swarm["usage_total"]["prompt_tokens"] == 30


async def test_each_voter_gets_its_own_seed_and_the_internal_key() -> None:
    with fake_upstreams(Behaviour(GOOD), Behaviour(GOOD)) as fakes:
        pool = UpstreamPool(model_id="swarm", context=4096, api_key="internal-secret")
        for i, f in enumerate(fakes):
            pool.set_ready(Upstream(str(i), f.url, slots=2), True)
        async with asgi_client(create_app(pool, ProxySettings(quorum=False))) as client:
            r = await client.post(
                "/v1/chat/completions", json={**CHAT, "seed": 7, "swarm_strategy": "quality"}
            )
        assert r.status_code == 200
        assert r.json()["swarm"]["votes"] == 4  # a voter is a slot: 2 processes x 2 slots
        assert r.json()["swarm"]["strategy"] == "quality"
        bodies = [b for f in fakes for b in f.record.bodies]
        # llama-server seeds child i of an n = k request with seed + i: the four voters sample
        # with seeds 7, 8, 9 and 10 however their requests are grouped (sampling.py)
        assert sorted(b["seed"] + i for b in bodies for i in range(b["n"])) == [7, 8, 9, 10]
        assert sum(b["n"] for b in bodies) == 4
        assert all("swarm_strategy" not in b and b["stream"] is True for b in bodies)
        assert all(h["authorization"] == "Bearer internal-secret" for f in fakes for h in f.record.headers)


async def test_the_voters_sample_at_the_configured_temperature_unless_the_client_sends_one() -> None:
    """proxy.voter_temperature reaches llama-server, and caps a client's higher temperature
    (proxy.client_temperature = "keep": the client's stands); a lower one (0 too) stands; null
    leaves the temperature out, so llama-server's own default applies."""
    for setting, cap, body, sent in (
        (0.2, True, CHAT, {0.2}),
        (0.6, True, CHAT, {0.6}),
        (0.6, True, {**CHAT, "temperature": 0.9}, {0.6}),
        (0.6, False, {**CHAT, "temperature": 0.9}, {0.9}),
        (0.6, True, {**CHAT, "temperature": 0.3}, {0.3}),
        (0.6, True, {**CHAT, "temperature": 0}, {0}),
        (None, True, CHAT, {None}),
        (None, True, {**CHAT, "temperature": 0.9}, {0.9}),
    ):
        with fake_upstreams(Behaviour(GOOD), Behaviour(GOOD)) as fakes:
            pool = UpstreamPool.from_urls([f.url for f in fakes])
            settings = ProxySettings(quorum=False, voter_temperature=setting, cap_client_temperature=cap)
            async with asgi_client(create_app(pool, settings)) as client:
                r = await client.post("/v1/chat/completions", json={**body, "swarm_candidates": True})
        assert r.status_code == 200, r.text
        assert {b.get("temperature") for f in fakes for b in f.record.bodies} == sent, (setting, body)
        # and the answer says what each voter sampled at
        assert {c["temperature"] for c in r.json()["swarm"]["candidates"]} == sent, r.json()["swarm"]


async def test_seed_minus_one_means_fresh_random_seeds_on_every_request() -> None:
    # llama.cpp reads seed -1 as "random": the voters must not get the same seeds every time
    with fake_upstreams(Behaviour(GOOD), Behaviour(GOOD), Behaviour(GOOD)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with asgi_client(create_app(pool, ProxySettings(quorum=False))) as client:
            for _ in range(2):
                r = await client.post("/v1/chat/completions", json={**CHAT, "seed": -1})
                assert r.status_code == 200
    first, second = ([f.record.bodies[k]["seed"] for f in fakes] for k in (0, 1))
    for sent in (first, second):
        assert len(set(sent)) == 3  # every voter its own seed
        assert all(0 <= s < 2**31 - 1 for s in sent)  # none of them -1 or its wrap-around
    assert first != second


def test_seeds_keep_a_given_seed_and_draw_for_none_and_minus_one() -> None:
    assert seeds(3, 7) == [7, 8, 9]
    assert seeds(2, 2**31 - 2) == [2**31 - 2, 0]
    assert seeds(3, -1) != seeds(3, -1)  # a collision has odds of one in 2**31
    assert seeds(3, None) != seeds(3, None)


async def test_strategy_header_and_fastest() -> None:
    with fake_upstreams(Behaviour("slow answer", latency_s=0.5), Behaviour("quick answer")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with asgi_client(create_app(pool)) as client:
            r = await client.post("/v1/chat/completions", json=CHAT, headers={"X-Swarm-Strategy": "fastest"})
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "quick answer"
    assert r.headers["x-swarm-strategy"] == "fastest"


async def test_tool_calls_voted_by_structure() -> None:
    call_a = {"id": "c1", "type": "function", "function": {"name": "read", "arguments": '{"path": "a.py"}'}}
    call_a2 = {"id": "c9", "type": "function", "function": {"name": "read", "arguments": '{ "path":"a.py" }'}}
    call_b = {"id": "c2", "type": "function", "function": {"name": "bash", "arguments": '{"cmd": "ls"}'}}
    with fake_upstreams(
        Behaviour(tool_calls=[call_b]), Behaviour(tool_calls=[call_a]), Behaviour(tool_calls=[call_a2])
    ) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with asgi_client(create_app(pool, ProxySettings(quorum=False))) as client:
            r = await client.post("/v1/chat/completions", json={**CHAT, "tools": [{"type": "function"}]})
    body = r.json()
    calls = body["choices"][0]["message"]["tool_calls"]
    assert calls[0]["function"]["name"] == "read"
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["swarm"]["kind"] == "tool_calls"
    assert body["swarm"]["agreement"] == pytest.approx(2 / 3, abs=1e-3)


async def test_completions_endpoint_votes_too() -> None:
    with fake_upstreams(Behaviour("x = 1"), Behaviour("x = 1"), Behaviour("zzz")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with asgi_client(create_app(pool, ProxySettings(quorum=False))) as client:
            r = await client.post("/v1/completions", json={"model": "swarm", "prompt": "x ="})
    assert r.status_code == 200
    assert r.json()["choices"][0]["text"] == "x = 1"
    assert r.json()["swarm"]["votes"] == 3


async def test_quorum_cancels_the_straggler() -> None:
    with fake_upstreams(Behaviour(GOOD), Behaviour(GOOD), Behaviour(GOOD, latency_s=30)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with asgi_client(create_app(pool, ProxySettings(quorum=True))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 200
            swarm = r.json()["swarm"]
            assert swarm["votes"] == 2
            straggler = next(v for v in swarm["voters"] if v["id"] == "2.0")
            assert straggler == {**straggler, "ok": False, "error": "cancelled"}
            # the slow instance saw its client go away (that is what frees a llama-server slot)
            await _eventually(lambda: fakes[2].record.disconnects == 1)


async def _eventually(check: object, timeout: float = 5.0) -> None:
    import anyio

    with anyio.fail_after(timeout):
        while not check():  # type: ignore[operator]
            await anyio.sleep(0.02)


async def test_swarm_candidates_returns_every_counted_answer_with_its_temperature() -> None:
    # a user (or a benchmark) asks to see what every voter wrote, how it was sampled and where
    # the vote put it; without the field the extension stays as it was, and nothing is forwarded
    bad = "I cannot help with that."
    with fake_upstreams(Behaviour(GOOD), Behaviour(bad), Behaviour(GOOD)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with asgi_client(create_app(pool, ProxySettings(quorum=False))) as client:
            r = await client.post("/v1/chat/completions", json={**CHAT, "swarm_candidates": True})
            plain = await client.post("/v1/chat/completions", json=CHAT)
            streamed = await client.post(
                "/v1/chat/completions", json={**CHAT, "stream": True, "swarm_candidates": True}
            )
    assert r.status_code == 200
    swarm = r.json()["swarm"]
    got = {c["voter"]: c for c in swarm["candidates"]}
    assert sorted(got) == ["0.0", "1.0", "2.0"]
    assert got["1.0"]["content"] == bad and got["0.0"]["content"] == GOOD
    assert got["0.0"]["cluster"] == got["2.0"]["cluster"] == 0
    assert sorted(swarm["clusters"][0]) == ["0.0", "2.0"]
    assert swarm["clusters"][got["1.0"]["cluster"]] == ["1.0"]
    # no client temperature: every voter at the voter temperature (proxy/sampling.py)
    assert {c["temperature"] for c in got.values()} == {VOTER_TEMPERATURE}
    sent = {f.record.bodies[0].get("temperature") for f in fakes}
    assert sent == {c["temperature"] for c in got.values()}
    assert all("swarm_candidates" not in b for f in fakes for b in f.record.bodies)
    assert "candidates" not in plain.json()["swarm"]
    assert '"candidates"' in streamed.text  # the stream's last chunk carries the same extension
