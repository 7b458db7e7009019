"""Every error a client can get, in the OpenAI shape, with the right status; never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from swarm_supervisor.config import ProxyConfig
from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import Upstream, UpstreamPool
from testkit.llama.inprocess import Behaviour, asgi_client, fake_upstreams

pytestmark = pytest.mark.anyio

CHAT: dict[str, Any] = {"model": "swarm", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def openai_error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert err["message"]
    return dict(err)


@pytest.fixture
def one_fake() -> Any:
    with fake_upstreams(Behaviour("fine")) as fakes:
        yield fakes[0]


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[1, 2]", None),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": 1e999}', None),
        (b'{"messages": [{"role": "user", "content": "x"}], "top_k": -1E400}', None),
        (b'{"messages": "hi"}', "messages"),
        (b'{"messages": []}', "messages"),
        (b'{"model": "swarm"}', "messages"),
        (b'{"messages": [{"content": "no role"}]}', "messages.0.role"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes please"}', "stream"),
        (b'{"messages": [{"role": "user", "content": "x"}], "swarm_strategy": "loudest"}', "swarm_strategy"),
    ],
)
async def test_bad_bodies_are_400(one_fake: Any, payload: bytes, param: str | None) -> None:
    pool = UpstreamPool.from_urls([one_fake.url])
    async with asgi_client(create_app(pool)) as client:
        r = await client.post(
            "/v1/chat/completions", content=payload, headers={"content-type": "application/json"}
        )
    err = openai_error(r, 400)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    assert one_fake.record.bodies == []  # nothing reached the instance


async def test_bad_completion_body_and_bad_strategy_header(one_fake: Any) -> None:
    pool = UpstreamPool.from_urls([one_fake.url])
    async with asgi_client(create_app(pool)) as client:
        r = await client.post("/v1/completions", json={"prompt": 3})
        openai_error(r, 400)
        r = await client.post("/v1/chat/completions", json=CHAT, headers={"X-Swarm-Strategy": "loudest"})
        assert openai_error(r, 400)["param"] == "swarm_strategy"


@pytest.mark.parametrize("prompt", [["a", "b"], [[1, 2], [3]], ["a", [1, 2]]])
async def test_several_prompts_in_one_completion_request_are_a_400(one_fake: Any, prompt: Any) -> None:
    """llama-server answers a list of prompts with one answer each (its stream then carries a
    ``data: null`` event, which the vote cannot read: it was a 502); a vote has one answer, so the
    client is told."""
    pool = UpstreamPool.from_urls([one_fake.url])
    async with asgi_client(create_app(pool)) as client:
        r = await client.post("/v1/completions", json={"prompt": prompt})
        err = openai_error(r, 400)
        assert err["param"] == "prompt" and "one prompt per request" in err["message"]
        assert one_fake.record.bodies == []
        for one in ("a", ["a"], [1, 2], [[1, 2]], ["a", 5]):  # one prompt, in each spelling
            assert (await client.post("/v1/completions", json={"prompt": one})).status_code == 200


async def test_a_tool_choice_naming_an_undeclared_tool_is_a_400(one_fake: Any) -> None:
    """llama-server would ignore the choice and answer as it likes; OpenAI refuses it, and says why."""
    read = {"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}
    pick = {"type": "function", "function": {"name": "write"}}
    pool = UpstreamPool.from_urls([one_fake.url])
    async with asgi_client(create_app(pool)) as client:
        for body in ({**CHAT, "tools": [read], "tool_choice": pick}, {**CHAT, "tool_choice": pick}):
            err = openai_error(await client.post("/v1/chat/completions", json=body), 400)
            assert err["param"] == "tool_choice" and "'write'" in err["message"], err
            assert not err["message"].startswith("tool_choice: Value error")
        assert one_fake.record.bodies == []
        for choice in ("auto", "required", {"type": "function", "function": {"name": "read"}}):
            r = await client.post(
                "/v1/chat/completions", json={**CHAT, "tools": [read], "tool_choice": choice}
            )
            assert r.status_code == 200, r.text


async def test_unknown_fields_pass_through(one_fake: Any) -> None:
    pool = UpstreamPool.from_urls([one_fake.url])
    async with asgi_client(create_app(pool)) as client:
        r = await client.post("/v1/chat/completions", json={**CHAT, "top_k": 5, "cache_prompt": True})
    assert r.status_code == 200
    sent = one_fake.record.bodies[0]
    assert sent["top_k"] == 5 and sent["cache_prompt"] is True
    assert "model" not in sent  # the instance serves its one model whatever the client calls it


async def test_oversized_body_is_413_by_length_and_by_count(one_fake: Any) -> None:
    pool = UpstreamPool.from_urls([one_fake.url])
    app = create_app(pool, ProxySettings(max_body_bytes=1000))
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the proxy counts
        for _ in range(20):
            yield b" " * 100

    async with asgi_client(app) as client:
        openai_error(await client.post("/v1/chat/completions", json=big), 413)
        r = await client.post("/v1/chat/completions", content=chunks())
        assert "content-length" not in r.request.headers
        openai_error(r, 413)
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_no_ready_instance_is_503_with_retry_after() -> None:
    pool = UpstreamPool(model_id="swarm", context=4096)
    pool.add(Upstream("0", "http://127.0.0.1:9"), state="starting")
    async with asgi_client(create_app(pool)) as client:
        r = await client.post("/v1/chat/completions", json=CHAT)
        assert openai_error(r, 503)["code"] == "no_ready_instance"
        assert int(r.headers["retry-after"]) > 0
        h = await client.get("/health")
        assert h.status_code == 503 and h.json()["instances"] == {"0": "starting"}


async def test_deadline_is_504() -> None:
    with fake_upstreams(Behaviour(fault="hang"), Behaviour(fault="hang")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with asgi_client(create_app(pool, ProxySettings(request_timeout_s=0.5))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
    assert openai_error(r, 504)["type"] == "timeout"


async def test_upstream_client_error_passes_through() -> None:
    with fake_upstreams(Behaviour(fault="400"), Behaviour(fault="400")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with asgi_client(create_app(pool)) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
    err = openai_error(r, 400)
    assert err["message"] == "the prompt is too long"
    assert err["type"] == "exceed_context_size_error"


async def test_api_key(one_fake: Any) -> None:
    pool = UpstreamPool.from_urls([one_fake.url])
    app = create_app(pool, ProxySettings.from_config(ProxyConfig(api_key="s3cret")))
    async with asgi_client(app) as client:
        for path in ("/v1/models", "/metrics", "/swarm/status"):
            err = openai_error(await client.get(path), 401)
            assert err["type"] == "authentication_error"
        openai_error(await client.post("/v1/chat/completions", json=CHAT), 401)
        bad = {"Authorization": "Bearer nope"}
        openai_error(await client.post("/v1/chat/completions", json=CHAT, headers=bad), 401)
        good = {"Authorization": "Bearer s3cret"}
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=good)).status_code == 200
        assert (await client.get("/health")).status_code == 200  # open: it shows only instance states
    # the instance got the swarm's internal key, never the client's
    assert "s3cret" not in str(one_fake.record.headers)


async def test_unknown_path_and_method_in_openai_shape(one_fake: Any) -> None:
    pool = UpstreamPool.from_urls([one_fake.url])
    async with asgi_client(create_app(pool)) as client:
        openai_error(await client.get("/v1/nothing"), 404)
        openai_error(await client.get("/v1/chat/completions"), 405)


async def test_cors_only_when_configured(one_fake: Any) -> None:
    pool = UpstreamPool.from_urls([one_fake.url])
    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
    async with asgi_client(
        create_app(pool, ProxySettings(cors_origins=("http://localhost:3000",)))
    ) as client:
        r = await client.options("/v1/chat/completions", headers=preflight)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
        r = await client.post("/v1/chat/completions", json=CHAT, headers={"Origin": "http://localhost:3000"})
        assert "x-swarm-agreement" in r.headers["access-control-expose-headers"].lower()
    async with asgi_client(create_app(pool)) as client:
        r = await client.post("/v1/chat/completions", json=CHAT, headers={"Origin": "http://localhost:3000"})
        assert "access-control-allow-origin" not in r.headers


async def test_a_trailing_slash_is_a_404_naming_the_endpoint_not_a_redirect(one_fake: Any) -> None:
    """Starlette answered a 307 whose Location it built from the client's Host header; OpenAI and
    llama-server answer a 404, and so does the proxy, saying which path is meant."""
    pool = UpstreamPool.from_urls([one_fake.url])
    async with asgi_client(create_app(pool)) as client:
        evil = {"Host": "evil.example"}
        for method, path in (
            ("POST", "/v1/chat/completions/"),
            ("POST", "/v1/completions/"),
            ("GET", "/v1/models/"),
            ("GET", "/health/"),
        ):
            r = await client.request(method, path, json=CHAT, headers=evil)
            err = openai_error(r, 404)
            assert "location" not in r.headers and "evil" not in r.text
            assert f"the endpoint is {path.rstrip('/')}, without the trailing slash" in err["message"], err
        assert (await client.get("/v1/models/swarm")).status_code == 200
    assert one_fake.record.bodies == []


async def test_a_refused_cors_preflight_is_an_openai_error_with_starlettes_headers(one_fake: Any) -> None:
    pool = UpstreamPool.from_urls([one_fake.url])
    app = create_app(pool, ProxySettings(cors_origins=("http://localhost:3000",)))
    async with asgi_client(app) as client:
        other = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
        r = await client.options("/v1/chat/completions", headers=other)
        err = openai_error(r, 400)
        assert err["code"] == "cors_preflight_refused" and "origin" in err["message"], err
        assert "proxy.cors_origins" in err["message"]
        assert "access-control-allow-origin" not in r.headers  # refused as before: only the body changed
        put = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "PUT"}
        r = await client.options("/v1/chat/completions", headers=put)
        assert "method" in openai_error(r, 400)["message"]
        assert r.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
        assert r.headers["content-type"] == "application/json"
