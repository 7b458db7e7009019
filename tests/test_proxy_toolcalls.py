"""Tool calls through the proxy: a call a voter wrote as text reaches the client as a structured
tool call, invalid calls lose to valid ones, and agreement counts every voter asked.

Fake llama-servers answer; the official ``openai`` client reads the answers, streamed (as
opencode asks) and not."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.server import ProxyServer
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import UpstreamPool
from testkit.llama.inprocess import Behaviour, FakeUpstream, fake_upstreams

pytestmark = pytest.mark.anyio

READ_SCHEMA = {
    "type": "object",
    "properties": {"filePath": {"type": "string"}, "limit": {"type": "number"}},
    "required": ["filePath"],
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": "read", "description": "Read a file", "parameters": READ_SCHEMA},
    },
    {"type": "function", "function": {"name": "glob", "parameters": {"type": "object"}}},
]
MESSAGES: list[Any] = [{"role": "user", "content": "What is in a.py?"}]
# how SmolLM2-sized models often answer a request with tools: the call as text
FENCED = 'I will read the file.\n```json\n{"name": "read", "arguments": {"filePath": "a.py"}}\n```'
TAGGED = '<tool_call>\n{"name": "read", "arguments": {"filePath": "a.py"}}\n</tool_call>'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def server_for(fakes: list[FakeUpstream], **settings: Any) -> ProxyServer:
    pool = UpstreamPool.from_urls([f.url for f in fakes], model_id="swarm-coder")
    return ProxyServer(create_app(pool, ProxySettings(**settings)))


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_written_as_text_reaches_the_client_as_a_tool_call(stream: bool) -> None:
    behaviours = (Behaviour(FENCED), Behaviour(TAGGED), Behaviour("The file is empty."))
    with fake_upstreams(*behaviours) as fakes:
        async with (
            server_for(fakes, quorum=False, stream_mode="consensus") as server,
            openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0) as client,
        ):
            if stream:
                chunks = [
                    c
                    async for c in await client.chat.completions.create(
                        model="swarm-coder", messages=MESSAGES, tools=TOOLS, stream=True
                    )
                ]
                deltas = [c.choices[0].delta for c in chunks if c.choices]
                pieces = [tc for d in deltas for tc in d.tool_calls or []]
                name = "".join(p.function.name or "" for p in pieces if p.function)
                arguments = "".join(p.function.arguments or "" for p in pieces if p.function)
                content = "".join(d.content or "" for d in deltas)
                finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
                call_id = pieces[0].id
                swarm = (chunks[-1].model_extra or {}).get("swarm")
            else:
                r = await client.chat.completions.create(model="swarm-coder", messages=MESSAGES, tools=TOOLS)
                message = r.choices[0].message
                assert message.tool_calls is not None and len(message.tool_calls) == 1
                only = message.tool_calls[0]
                assert only.type == "function"
                name, arguments, call_id = only.function.name, only.function.arguments, only.id
                content, finish = message.content or "", r.choices[0].finish_reason
                swarm = (r.model_extra or {}).get("swarm")
        assert all(b["tools"] == TOOLS for f in fakes for b in f.record.bodies)
    assert name == "read"
    assert json.loads(arguments) == {"filePath": "a.py"}
    assert content == ""  # the text the call was written in is not shown as well
    assert finish == "tool_calls"
    assert call_id and call_id.startswith("call_")
    assert swarm is not None
    assert swarm["kind"] == "tool_calls"
    assert sorted(swarm["recovered"].values()) == ["fenced", "tag"]
    assert [v["answer"] for v in swarm["voters"]] == ["text"] * 3  # as written, before recovery
    assert swarm["agreement"] == pytest.approx(2 / 3, abs=1e-3)


async def test_one_voter_writing_a_call_as_text_is_answered_with_the_call() -> None:
    with fake_upstreams(Behaviour(TAGGED)) as fakes:
        async with server_for(fakes) as server, httpx.AsyncClient(base_url=server.url) as client:
            r = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "tools": TOOLS})
            plain = await client.post("/v1/chat/completions", json={"messages": MESSAGES})
            refused = await client.post(
                "/v1/chat/completions", json={"messages": MESSAGES, "tools": TOOLS, "tool_choice": "none"}
            )
    message = r.json()["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"]["name"] == "read"
    # without tools, or with calls forbidden, the text is the answer
    for other in (plain, refused):
        assert other.json()["choices"][0]["message"]["content"] == TAGGED
        assert other.json()["choices"][0]["finish_reason"] == "stop"


async def test_an_invalid_call_loses_to_a_valid_one_and_says_why() -> None:
    wrong = {"id": "c1", "type": "function", "function": {"name": "read", "arguments": '{"path": "a.py"}'}}
    right = {
        "id": "c2",
        "type": "function",
        "function": {"name": "read", "arguments": '{"filePath": "a.py"}'},
    }
    with fake_upstreams(
        Behaviour(tool_calls=[wrong], latency_s=0.0),
        Behaviour(tool_calls=[wrong], latency_s=0.0),
        Behaviour(tool_calls=[right], latency_s=0.2),
    ) as fakes:
        async with server_for(fakes, quorum=True) as server, httpx.AsyncClient(base_url=server.url) as client:
            r = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "tools": TOOLS})
    body = r.json()
    assert body["choices"][0]["message"]["tool_calls"][0]["id"] == "c2"
    swarm = body["swarm"]
    # the two invalid calls agreed, but did not make a quorum: the valid third answer was awaited
    assert swarm["votes"] == 3 and swarm["asked"] == 3
    assert [d["reason"] for d in swarm["dropped"]] == [
        "invalid tool call: read: 'filePath' is a required property"
    ] * 2
    assert swarm["agreement"] == pytest.approx(1 / 3, abs=1e-3)


async def test_agreement_counts_the_voters_a_quorum_cancelled() -> None:
    # two of three agree at once, the third is cancelled: agreement 2/3, not 2/2
    slow, slowest = Behaviour("x = 1", latency_s=0.3), Behaviour("x = 1", latency_s=30)
    with fake_upstreams(Behaviour("x = 1"), slow, slowest) as fakes:
        async with server_for(fakes, quorum=True) as server, httpx.AsyncClient(base_url=server.url) as client:
            r = await client.post("/v1/chat/completions", json={"messages": MESSAGES})
            fastest = await client.post(
                "/v1/chat/completions", json={"messages": MESSAGES, "swarm_strategy": "fastest"}
            )
    assert r.json()["swarm"]["votes"] == 2
    assert r.headers["x-swarm-agreement"] == "0.667"
    # fastest takes one answer and compares nothing: it claims no agreement
    assert fastest.json()["swarm"]["votes"] == 1
    assert fastest.headers["x-swarm-agreement"] == "0.333"


@pytest.mark.timeout(60)
async def test_a_schema_built_to_be_slow_to_check_does_not_stall_the_proxy() -> None:
    # the client's schema backtracks under Python's re for minutes on the argument the voters
    # wrote; the check gives up within its budget, the call is not dropped (it is not known to
    # be invalid), and the proxy goes on answering
    schema = {"type": "object", "properties": {"q": {"type": "string", "pattern": "^(a|aa)+$"}}}
    slow_tools = [{"type": "function", "function": {"name": "find", "parameters": schema}}]
    argument = {
        "id": "c1",
        "type": "function",
        "function": {"name": "find", "arguments": json.dumps({"q": "a" * 64 + "!"})},
    }
    with fake_upstreams(*[Behaviour(tool_calls=[argument])] * 3) as fakes:
        async with (
            server_for(fakes, quorum=False) as server,
            httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        ):
            r = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "tools": slow_tools})
            health = await client.get("/health")
    assert r.status_code == 200 and health.status_code == 200
    body = r.json()
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "find"
    assert body["swarm"]["dropped"] == [] and body["swarm"]["votes"] == 3
