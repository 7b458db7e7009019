"""Streaming: the voted winner sent as OpenAI SSE, the fastest relay, keep-alives, disconnects."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import UpstreamPool
from testkit.llama.inprocess import Behaviour, fake_upstreams, served_client

pytestmark = pytest.mark.anyio

TEXT = "Here is the function:\n\n```python\ndef add(a, b):\n    return a + b\n```\nIt adds two numbers."
CHAT: dict[str, Any] = {"stream": True, "messages": [{"role": "user", "content": "add"}]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def events(text: str) -> list[Any]:
    """SSE events: parsed JSON objects, "[DONE]", or ":" for a comment."""
    out: list[Any] = []
    for block in text.split("\n\n"):
        block = block.strip()
        if not block:
            continue
        if block.startswith(":"):
            out.append(":")
        elif block == "data: [DONE]":
            out.append("[DONE]")
        else:
            assert block.startswith("data: "), block
            out.append(json.loads(block[6:]))
    return out


async def test_consensus_stream_of_text() -> None:
    with fake_upstreams(Behaviour(TEXT), Behaviour("nope"), Behaviour(TEXT)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes], model_id="swarm-model")
        settings = ProxySettings(stream_mode="consensus", quorum=False)
        async with served_client(create_app(pool, settings)) as client:
            r = await client.post(
                "/v1/chat/completions", json={**CHAT, "stream_options": {"include_usage": True}}
            )
        # the voters stream (so that a cancelled one stops at once) and always report usage
        assert all(
            b["stream"] is True and b["stream_options"]["include_usage"]
            for f in fakes
            for b in f.record.bodies
        )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-swarm-agreement"] == "0.667"
    ev = events(r.text)
    assert ev[-1] == "[DONE]"
    chunks = ev[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "swarm-model" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks[1:] if c["choices"]]
    assert "".join(deltas) == TEXT
    assert len([d for d in deltas if d]) > 3  # sent in small pieces
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == "stop"
    assert finish[0]["swarm"]["agreement"] == pytest.approx(2 / 3, abs=1e-3)
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] > 0


async def test_consensus_stream_of_tool_calls() -> None:
    args = '{"filePath": "/tmp/project/main.py", "offset": 0, "limit": 200}'
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": args}},
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "glob", "arguments": '{"pattern": "*.py"}'},
        },
    ]
    with fake_upstreams(Behaviour(tool_calls=calls), Behaviour(tool_calls=calls)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool, ProxySettings(stream_mode="consensus"))) as client:
            r = await client.post("/v1/chat/completions", json={**CHAT, "tools": [{"type": "function"}]})
    ev = events(r.text)
    assert ev[-1] == "[DONE]"
    chunks = [c for c in ev[:-1] if c["choices"]]
    assert not any("usage" in c for c in ev[:-1])  # no include_usage: no usage chunk
    tool_deltas = [
        c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]
    ]
    for index, call in enumerate(calls):
        mine = [d for d in tool_deltas if d["index"] == index]
        assert mine[0] == {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        assert all(set(d) == {"index", "function"} for d in mine[1:])
        assert "".join(d["function"]["arguments"] for d in mine) == call["function"]["arguments"]
    assert len([d for d in tool_deltas if d["index"] == 0]) > 2  # arguments in pieces
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_completions_stream() -> None:
    with fake_upstreams(Behaviour("x = 1\ny = 2\n"), Behaviour("x = 1\ny = 2\n")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool, ProxySettings(stream_mode="consensus"))) as client:
            r = await client.post("/v1/completions", json={"prompt": "x =", "stream": True})
    ev = events(r.text)
    assert ev[-1] == "[DONE]"
    assert "".join(c["choices"][0]["text"] for c in ev[:-1]) == "x = 1\ny = 2\n"
    assert ev[-2]["choices"][0]["finish_reason"] == "stop"


async def test_keepalives_while_the_vote_is_pending() -> None:
    with fake_upstreams(Behaviour(TEXT, latency_s=1.0), Behaviour(TEXT, latency_s=1.0)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        settings = ProxySettings(stream_mode="consensus", keepalive_s=0.2)
        async with served_client(create_app(pool, settings)) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
    ev = events(r.text)
    assert ev[0] == ":" and ev.count(":") >= 2
    assert ev[-1] == "[DONE]"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in ev if isinstance(c, dict)) == TEXT


async def test_failure_after_keepalives_is_an_error_event() -> None:
    with fake_upstreams(
        Behaviour(fault="500", latency_s=0.6), Behaviour(fault="500", latency_s=0.6)
    ) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        settings = ProxySettings(stream_mode="consensus", keepalive_s=0.2)
        async with served_client(create_app(pool, settings)) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200  # the headers were gone before the failure was known
    ev = events(r.text)
    assert ev[-1]["error"]["type"] == "upstream_error"


async def test_failure_before_the_first_byte_keeps_its_status() -> None:
    with fake_upstreams(Behaviour(fault="500"), Behaviour(fault="500")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool, ProxySettings(stream_mode="consensus"))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_failed"


async def test_fastest_relays_the_first_stream_and_cancels_the_rest() -> None:
    slow = Behaviour("slow one", latency_s=30)
    quick = Behaviour("the quick answer", stream_pieces=3)
    with fake_upstreams(slow, quick) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes], model_id="swarm-model")
        async with served_client(create_app(pool, ProxySettings(stream_mode="fastest"))) as client:
            r = await client.post(
                "/v1/chat/completions", json={**CHAT, "stream_options": {"include_usage": True}}
            )
            ev = events(r.text)
            assert ev[-1] == "[DONE]"
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in ev[:-1] if c["choices"])
            assert text == "the quick answer"
            assert all(c["model"] == "swarm-model" for c in ev[:-1])
            assert ev[-2]["usage"]["total_tokens"] > 0  # the upstream's own usage chunk, relayed
            assert all(b["stream"] is True for f in fakes for b in f.record.bodies)
            await _eventually(lambda: fakes[0].record.disconnects == 1)


async def test_fastest_skips_an_instance_that_fails() -> None:
    with fake_upstreams(Behaviour(fault="500"), Behaviour("still here", latency_s=0.1)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool, ProxySettings(stream_mode="fastest"))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
    ev = events(r.text)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in ev[:-1]) == "still here"


async def test_fastest_stream_dropped_mid_way_ends_with_an_error_event() -> None:
    with fake_upstreams(Behaviour("one two three four", fault="drop")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool, ProxySettings(stream_mode="fastest"))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 200
            assert events(r.text)[-1]["error"]["type"] == "upstream_error"
            assert (await client.get("/health")).status_code == 200  # the proxy stays up


@pytest.mark.parametrize("mode", ["consensus", "fastest"])
async def test_client_disconnect_cancels_every_upstream_request(mode: str) -> None:
    with fake_upstreams(Behaviour(fault="hang"), Behaviour(fault="hang")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        settings = ProxySettings(stream_mode=mode, keepalive_s=0.1)  # type: ignore[arg-type]
        async with served_client(create_app(pool, settings)) as client:
            async with client.stream("POST", "/v1/chat/completions", json=CHAT) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    assert line.startswith(":")  # a keep-alive: the proxy is waiting
                    break
            await _eventually(lambda: [f.record.disconnects for f in fakes] == [1, 1])


async def test_client_disconnect_cancels_a_plain_request() -> None:
    with fake_upstreams(Behaviour(fault="hang"), Behaviour(fault="hang")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool)) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/v1/chat/completions", json={**CHAT, "stream": False}, timeout=0.5)
            await _eventually(lambda: [f.record.disconnects for f in fakes] == [1, 1])


async def _eventually(check: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)
