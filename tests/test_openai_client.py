"""The official ``openai`` package against the proxy served by uvicorn: what real clients see."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.server import ProxyServer
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import Upstream, UpstreamPool
from testkit.llama.inprocess import Behaviour, FakeUpstream, fake_upstreams

pytestmark = pytest.mark.anyio

GOOD = "def add(a, b):\n    return a + b\n"
MESSAGES: list[Any] = [{"role": "user", "content": "Write add(a, b)."}]
READ = {"id": "call_7", "type": "function", "function": {"name": "read", "arguments": '{"filePath": "a.py"}'}}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "read",
            "description": "Read a file",
            "parameters": {"type": "object", "properties": {"filePath": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fakes() -> Any:
    with fake_upstreams(Behaviour(GOOD), Behaviour(GOOD), Behaviour("something else")) as running:
        yield running


async def _client(fakes: list[FakeUpstream], **settings: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    pool = UpstreamPool.from_urls([f.url for f in fakes], model_id="swarm-coder")
    async with ProxyServer(create_app(pool, ProxySettings(**settings))) as server:
        key = settings.get("api_key") or "unused"
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0) as client:
            yield client


@pytest.fixture
async def client(fakes: list[FakeUpstream]) -> AsyncIterator[openai.AsyncOpenAI]:
    async for c in _client(fakes, quorum=False, stream_mode="consensus"):
        yield c


async def test_models(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [m.id for m in models.data] == ["swarm-coder"]


async def test_chat(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="swarm-coder", messages=MESSAGES)
    resp = raw.parse()
    assert resp.choices[0].message.content == GOOD
    assert resp.model == "swarm-coder"
    assert resp.usage is not None and resp.usage.total_tokens > 0
    assert raw.headers["x-swarm-agreement"] == "0.667"
    extra = resp.model_extra or {}
    assert extra["swarm"]["votes"] == 3


async def test_completions(client: openai.AsyncOpenAI) -> None:
    resp = await client.completions.create(model="swarm-coder", prompt="def add(a, b):")
    assert resp.choices[0].text == GOOD


async def test_streaming_chat_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="swarm-coder", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text, finish, usage = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == GOOD
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


async def test_streamed_tool_calls_accumulate(fakes: list[FakeUpstream]) -> None:
    for f in fakes:
        f.behaviour.tool_calls = [READ]
    async for client in _client(fakes, stream_mode="consensus"):
        opened = client.chat.completions.stream(model="swarm-coder", messages=MESSAGES, tools=TOOLS)
        async with opened as stream:
            final = await stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call.id == "call_7" and call.function.name == "read"
    assert json.loads(call.function.arguments) == {"filePath": "a.py"}
    assert all(b["tools"] == TOOLS for f in fakes for b in f.record.bodies)


async def test_fastest_stream(fakes: list[FakeUpstream]) -> None:
    async for client in _client(fakes, stream_mode="fastest"):
        stream = await client.chat.completions.create(model="swarm-coder", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text in (GOOD, "something else")


async def test_errors(fakes: list[FakeUpstream]) -> None:
    async for client in _client(fakes, api_key="proxy-key"):
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="swarm-coder", messages=[])
        assert bad.value.status_code == 400 and bad.value.param == "messages"
        wrong = client.with_options(api_key="wrong")
        with pytest.raises(openai.AuthenticationError):
            await wrong.chat.completions.create(model="swarm-coder", messages=MESSAGES)
        for f in fakes:
            f.behaviour.fault = "500"
        with pytest.raises(openai.APIStatusError) as failed:
            await client.chat.completions.create(model="swarm-coder", messages=MESSAGES)
        assert failed.value.status_code == 502


async def test_no_instance_is_503() -> None:
    pool = UpstreamPool(model_id="swarm-coder", context=1)
    pool.add(Upstream("0", "http://127.0.0.1:9"))
    async with (
        ProxyServer(create_app(pool)) as server,
        openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as client,
    ):
        with pytest.raises(openai.InternalServerError) as err:
            await client.chat.completions.create(model="swarm-coder", messages=MESSAGES)
    assert err.value.status_code == 503


async def test_error_mid_stream_raises_in_the_client(fakes: list[FakeUpstream]) -> None:
    for f in fakes:
        f.behaviour.fault, f.behaviour.latency_s = "500", 0.5
    async for client in _client(fakes, stream_mode="consensus", keepalive_s=0.1):
        stream = await client.chat.completions.create(model="swarm-coder", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass


async def test_an_unknown_model_is_not_found_and_the_message_lists_the_served_names(
    fakes: list[FakeUpstream],
) -> None:
    async for client in _client(fakes, aliases=("gpt-4o",)):
        with pytest.raises(openai.NotFoundError) as err:
            await client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
        assert err.value.code == "model_not_found" and err.value.param == "model"
        assert "'swarm-coder', 'gpt-4o'" in err.value.message
        assert not [b for f in fakes for b in f.record.bodies]  # refused before any fan-out
        models = await client.models.list()
        assert [m.id for m in models.data] == ["swarm-coder", "gpt-4o"]
        assert (await client.models.retrieve("gpt-4o")).id == "gpt-4o"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("gpt-4.1")
        answer = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert answer.model == "swarm-coder"
