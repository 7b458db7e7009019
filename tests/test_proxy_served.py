"""Which `model` names the proxy serves (404 model_not_found, aliases, accept_any_model) and how a
stand-in model (the embedded fallback) shows in /v1/models, each answer and its headers.

Each test runs the real proxy app against fake llama-servers on real ports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swarm_supervisor.config import load_config
from swarm_supervisor.errors import ConfigError
from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import UpstreamPool
from testkit.llama.inprocess import Behaviour, FakeUpstream, asgi_client, fake_upstreams, served_client

pytestmark = pytest.mark.anyio

MODEL = "qwen2.5-coder:1.5b:q4_k_m"
MESSAGES = [{"role": "user", "content": "add"}]
FALLBACK = {
    "planned": "qwen2.5-coder:1.5b:q4_k_m",
    "running": "smollm2:135m:q4_1",
    "why": "the hub is unreachable",
    "fix": "run `swarm pull --model qwen2.5-coder:1.5b` where the hub is reachable",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fakes() -> Any:
    with fake_upstreams(Behaviour("same"), Behaviour("same")) as running:
        yield running


def _pool(
    fakes: list[FakeUpstream], model_id: str = MODEL, fallback: dict[str, str] | None = None
) -> UpstreamPool:
    pool = UpstreamPool.from_urls([f.url for f in fakes], model_id=model_id)
    pool.fallback = fallback
    return pool


def _sent(fakes: list[FakeUpstream]) -> int:
    return sum(len(f.record.bodies) for f in fakes)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES}),
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES, "stream": True}),
        ("/v1/completions", {"model": "gpt-4o", "prompt": "def add("}),
    ],
)
async def test_an_unknown_model_is_404_listing_what_is_served(
    fakes: list[FakeUpstream], path: str, body: dict[str, Any]
) -> None:
    settings = ProxySettings(aliases=("coder", "qwen"), quorum=False)
    async with asgi_client(create_app(_pool(fakes), settings)) as client:
        r = await client.post(path, json=body)
    assert r.status_code == 404
    err = r.json()["error"]
    assert (err["type"], err["code"], err["param"]) == ("invalid_request_error", "model_not_found", "model")
    assert err["message"].startswith("the model 'gpt-4o' does not exist here: ")
    assert f"this swarm serves '{MODEL}', 'coder', 'qwen'" in err["message"]
    assert "accept_any_model" in err["message"]  # and what to do about it
    assert _sent(fakes) == 0  # refused before any instance was asked


@pytest.mark.parametrize("model", [MODEL, "coder", None, ""])
async def test_the_model_id_an_alias_or_no_name_is_answered_as_the_model_id(
    fakes: list[FakeUpstream], model: str | None
) -> None:
    body: dict[str, Any] = {"messages": MESSAGES}
    if model is not None:
        body["model"] = model
    settings = ProxySettings(aliases=("coder",), quorum=False)
    async with asgi_client(create_app(_pool(fakes), settings)) as client:
        r = await client.post("/v1/chat/completions", json=body)
        c = await client.post("/v1/completions", json={**body, "prompt": "x"})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == MODEL
    assert c.status_code == 200 and c.json()["model"] == MODEL
    assert all("model" not in b for f in fakes for b in f.record.bodies)  # the instances' own name


async def test_names_are_exact(fakes: list[FakeUpstream]) -> None:
    async with asgi_client(create_app(_pool(fakes), ProxySettings(aliases=("coder",)))) as client:
        for near in ("Coder", "coder ", MODEL.upper(), "qwen2.5-coder:1.5b"):
            r = await client.post("/v1/chat/completions", json={"model": near, "messages": MESSAGES})
            assert r.status_code == 404, near


async def test_accept_any_model_answers_any_name(fakes: list[FakeUpstream]) -> None:
    settings = ProxySettings(accept_any_model=True, quorum=False)
    async with asgi_client(create_app(_pool(fakes), settings)) as client:
        r = await client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    assert r.status_code == 200 and r.json()["model"] == MODEL


async def test_models_lists_the_id_then_the_aliases(fakes: list[FakeUpstream]) -> None:
    settings = ProxySettings(aliases=("coder", MODEL, "qwen"))  # the id itself is listed once
    async with asgi_client(create_app(_pool(fakes), settings)) as client:
        data = (await client.get("/v1/models")).json()["data"]
    assert [(m["id"], m["alias_of"]) for m in data] == [(MODEL, None), ("coder", MODEL), ("qwen", MODEL)]
    assert all(m["object"] == "model" and m["fallback"] is None for m in data)


def test_the_config_keys(tmp_path: Path) -> None:
    f = tmp_path / "config.toml"
    f.write_text('[proxy]\naliases = ["gpt-4o", "qwen"]\naccept_any_model = true\n')
    cfg = load_config(f)
    settings = ProxySettings.from_config(cfg.proxy)
    assert (settings.aliases, settings.accept_any_model) == (("gpt-4o", "qwen"), True)
    assert ProxySettings.from_config(load_config(None).proxy).accept_any_model is False  # 404 by default


@pytest.mark.parametrize(
    ("text", "key", "what"),
    [
        ('aliases = "gpt-4o"', "proxy.aliases", "valid list"),
        ('aliases = [""]', "proxy.aliases[0]", "not a model name"),
        ('aliases = ["ok", " padded"]', "proxy.aliases[1]", "not a model name"),
        ('aliases = ["a", "a"]', "proxy", "'a' listed twice"),
        ('accept_any_model = "yes"', "proxy.accept_any_model", "valid boolean"),
        ("accept_any_models = true", "proxy.accept_any_models", "unknown key"),
    ],
)
def test_a_bad_key_is_named(tmp_path: Path, text: str, key: str, what: str) -> None:
    f = tmp_path / "config.toml"
    f.write_text(f"[proxy]\n{text}\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert str(err.value).startswith(f"{f}: {key}: ")
    assert what in str(err.value)


# ----------------------------------------------------------------------------- the fallback


async def test_a_stand_in_says_so_everywhere(fakes: list[FakeUpstream]) -> None:
    pool = _pool(fakes, model_id="smollm2:135m:q4_1", fallback=FALLBACK)
    settings = ProxySettings(aliases=("coder",), quorum=False, stream_mode="consensus")
    async with served_client(create_app(pool, settings)) as client:
        models = (await client.get("/v1/models")).json()["data"]
        answer = await client.post("/v1/chat/completions", json={"messages": MESSAGES})
        streamed = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
        fast = {"messages": MESSAGES, "stream": True, "swarm_stream_mode": "fastest"}
        fastest = await client.post("/v1/chat/completions", json=fast)
        planned = await client.post(
            "/v1/chat/completions", json={"model": FALLBACK["planned"], "messages": MESSAGES}
        )
        health = (await client.get("/health")).json()
        status = (await client.get("/swarm/status")).json()
    assert [m["fallback"] for m in models] == [FALLBACK, FALLBACK]
    assert answer.status_code == 200 and answer.json()["swarm"]["fallback"] == FALLBACK
    last = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")][-1]
    assert last["swarm"]["fallback"] == FALLBACK
    want = "smollm2:135m:q4_1; planned=qwen2.5-coder:1.5b:q4_k_m"
    for r in (answer, streamed, fastest):
        assert r.headers["x-swarm-fallback"] == want
    # the planned model's name is not served by the stand-in: the client hears why
    assert planned.status_code == 404
    message = planned.json()["error"]["message"]
    assert "smollm2:135m:q4_1 is an embedded stand-in for qwen2.5-coder:1.5b:q4_k_m" in message
    assert FALLBACK["why"] in message and FALLBACK["fix"] in message
    assert health["fallback"] == FALLBACK and status["fallback"] == FALLBACK


async def test_no_stand_in_no_header(fakes: list[FakeUpstream]) -> None:
    async with asgi_client(create_app(_pool(fakes), ProxySettings(quorum=False))) as client:
        r = await client.post("/v1/chat/completions", json={"messages": MESSAGES})
    assert r.status_code == 200
    assert "x-swarm-fallback" not in r.headers and r.json()["swarm"]["fallback"] is None


async def test_one_model_by_name(fakes: list[FakeUpstream]) -> None:
    pool = _pool(fakes, fallback=FALLBACK)
    async with asgi_client(create_app(pool, ProxySettings(aliases=("team/coder",)))) as client:
        own = await client.get(f"/v1/models/{MODEL}")
        alias = await client.get("/v1/models/team/coder")  # a name may hold a slash
        missing = await client.get("/v1/models/gpt-4o")
    assert own.status_code == 200 and own.json()["id"] == MODEL and own.json()["fallback"] == FALLBACK
    assert alias.status_code == 200 and alias.json()["alias_of"] == MODEL
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
