"""The request fields llama-server reads loosely (``stop``, ``logit_bias``, ``response_format``) and
strings it cannot take (lone UTF-16 surrogates): a 400 naming the field, before any instance sees
the request; every form llama-server does use passes through as the client sent it."""

from __future__ import annotations

from typing import Any

import pytest

from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.upstreams import UpstreamPool
from testkit.llama.inprocess import Behaviour, asgi_client, fake_upstreams

pytestmark = pytest.mark.anyio

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
JSON = {"content-type": "application/json"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def one_fake() -> Any:
    with fake_upstreams(Behaviour("fine")) as fakes:
        yield fakes[0]


def _error(r: Any) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    err: dict[str, Any] = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert str(err["param"] or "") in err["message"] and "Value error" not in err["message"]
    return err


WRONG: list[tuple[str, Any, str, str]] = [
    # field, value, param, words of the message; llama-server ignores each of these without a word
    ("stop", 5, "stop", "a string or an array of strings, not a number"),
    ("stop", ["\n", 5], "stop", "item 1 is a number"),
    ("stop", {"a": 1}, "stop", "not an object"),
    ("stop", "", "stop", "empty string"),  # llama-server: an empty answer at once
    ("stop", ["x", ""], "stop", "item 1 is an empty string"),
    ("logit_bias", [1, 2], "logit_bias", "item 0 is a number; an array holds [token, bias] pairs"),
    ("logit_bias", {"abc": "x"}, "logit_bias", 'the bias of "abc" is a string'),
    ("logit_bias", {"15339": True}, "logit_bias", "or false to ban the token"),
    ("logit_bias", {"15339": 101}, "logit_bias", "a number from -100 to 100"),
    ("logit_bias", {"-1": 5}, "logit_bias", 'the token of "-1" is -1'),
    ("logit_bias", {"": 5}, "logit_bias", "an empty string"),  # llama-server: token 0
    ("logit_bias", [[True, 5]], "logit_bias", "the token of item 0 is a boolean"),
    ("logit_bias", "x", "logit_bias", "must be an object of token ids to biases"),
    ("response_format", "json", "response_format", 'an object such as {"type": "json_object"}'),
    ("response_format", {"type": "yaml"}, "response_format.type", "'json_schema'"),
    ("response_format", {"type": 5}, "response_format.type", "'text'"),
    ("response_format", {}, "response_format.type", "required"),
    ("response_format", {"type": "json_schema"}, "response_format", "needs a `json_schema` object"),
    ("response_format", {"type": "json_schema", "json_schema": 5}, "response_format.json_schema", ""),
    ("response_format", {"type": "json_schema", "json_schema": {}}, "response_format.json_schema.name", ""),
    (
        "response_format",
        {"type": "json_schema", "json_schema": {"name": "answer", "schema": 5}},
        "response_format.json_schema.schema",
        "dictionary",
    ),
]


@pytest.mark.parametrize(("field", "value", "param", "words"), WRONG, ids=[f"{w[0]}={w[1]!r}" for w in WRONG])
async def test_a_field_llama_server_would_ignore_is_a_400_naming_it(
    one_fake: Any, field: str, value: Any, param: str, words: str
) -> None:
    pool = UpstreamPool.from_urls([one_fake.url])
    async with asgi_client(create_app(pool)) as client:
        err = _error(await client.post("/v1/chat/completions", json={**CHAT, field: value}))
        assert err["param"] == param and words in err["message"], err
        err = _error(await client.post("/v1/completions", json={"prompt": "hi", field: value}))
        assert err["param"] == param, err
    assert one_fake.record.bodies == []


RIGHT: list[tuple[str, Any]] = [
    ("stop", "\n"),
    ("stop", ["a", "b", "c", "d", "e", "f"]),  # past OpenAI's 4: llama-server takes any number
    ("stop", None),
    ("logit_bias", {"15339": -100, "49151": 100, "7": 0.5}),
    ("logit_bias", {" hello": -5, "42": False}),  # llama-server: a token's text; false bans it
    ("logit_bias", [[15339, -1.5], ["hello", False]]),  # llama-server's pairs
    ("response_format", {"type": "text"}),
    ("response_format", {"type": "json_object"}),
    ("response_format", {"type": "json_object", "schema": {"type": "object"}}),  # llama-server's
    ("response_format", {"type": "json_schema", "json_schema": {"name": "a", "schema": {}, "strict": True}}),
]


async def test_every_form_llama_server_reads_passes_through_as_sent(one_fake: Any) -> None:
    pool = UpstreamPool.from_urls([one_fake.url])
    async with asgi_client(create_app(pool)) as client:
        for field, value in RIGHT:
            r = await client.post("/v1/chat/completions", json={**CHAT, field: value})
            assert r.status_code == 200, (field, value, r.text)
            assert one_fake.record.bodies[-1][field] == value


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (rb'{"messages": [{"role": "user", "content": "hi \ud800"}]}', "messages.0.content"),
        (rb'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\uDFFF"}]}]}', None),
        # a surrogate the proxy itself had to write as UTF-8 (its token estimate): it was a 500
        (
            rb'{"messages": [{"role": "user", "content": "hi"}],'
            rb' "tools": [{"type": "function", "function": {"name": "f\udc00"}}]}',
            "tools.0.function.name",
        ),
        (rb'{"messages": [{"role": "user", "content": "hi"}], "stop": ["\ud83d"]}', "stop.0"),
        (rb'{"messages": [{"role": "user", "content": "hi"}], "model": "\ud800"}', "model"),
        (rb'{"messages": [{"role": "user", "content": "hi", "x\udc00": 1}]}', "messages.0"),
    ],
)
async def test_a_lone_surrogate_is_a_400_naming_where_it_is(
    one_fake: Any, body: bytes, param: str | None
) -> None:
    """llama-server refuses the whole body for one (a JSON parse error whose column is in the
    proxy's re-encoding, not the client's): the proxy says where it is, and nothing is forwarded."""
    pool = UpstreamPool.from_urls([one_fake.url])
    async with asgi_client(create_app(pool)) as client:
        err = _error(await client.post("/v1/chat/completions", content=body, headers=JSON))
    assert "lone UTF-16 surrogate" in err["message"], err
    assert err["param"] == (param or "messages.0.content.0.text")
    assert one_fake.record.bodies == []


async def test_surrogate_pairs_pass_and_encoded_surrogates_are_not_utf8(one_fake: Any) -> None:
    pool = UpstreamPool.from_urls([one_fake.url])
    async with asgi_client(create_app(pool)) as client:
        pair = (
            rb'{"messages": [{"role": "user", "content": "\ud83d\ude00 \\ud800"}]}'  # + an escaped backslash
        )
        r = await client.post("/v1/chat/completions", content=pair, headers=JSON)
        assert r.status_code == 200, r.text
        assert one_fake.record.bodies[-1]["messages"][0]["content"] == "\U0001f600 \\ud800"
        cesu = b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'  # U+D800 as bytes
        err = _error(await client.post("/v1/chat/completions", content=cesu, headers=JSON))
        assert err["code"] == "invalid_json" and "utf-8" in err["message"], err
    assert len(one_fake.record.bodies) == 1


FORMATS: list[tuple[Any, Any]] = [
    # response_format on /v1/completions, and the json_schema llama-server gets (its chat's rule)
    ({"type": "json_object"}, {"type": "object"}),
    ({"type": "json_object", "schema": {"type": "array"}}, {"type": "array"}),
    ({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "required": ["x"]}}},
     {"type": "object", "required": ["x"]}),
    ({"type": "json_schema", "json_schema": {"name": "a"}}, {"type": "object"}),
    ({"type": "text"}, None),
]  # fmt: skip


async def test_a_completions_format_becomes_the_json_schema_llama_server_reads_there(one_fake: Any) -> None:
    """llama-server reads ``response_format`` on chat only: on /v1/completions it would drop the
    client's JSON constraint without a word."""
    pool = UpstreamPool.from_urls([one_fake.url])
    async with asgi_client(create_app(pool)) as client:
        for fmt, schema in FORMATS:
            r = await client.post("/v1/completions", json={"prompt": "{", "response_format": fmt})
            assert r.status_code == 200, (fmt, r.text)
            sent = one_fake.record.bodies[-1]
            assert "response_format" not in sent and sent.get("json_schema") == schema, (fmt, sent)
        r = await client.post("/v1/completions", json={"prompt": "{", "json_schema": {"type": "array"}})
        assert r.status_code == 200 and one_fake.record.bodies[-1]["json_schema"] == {"type": "array"}


@pytest.mark.parametrize("other", [{"grammar": 'root ::= "a"'}, {"json_schema": {"type": "array"}}])
async def test_a_completions_format_beside_another_constraint_is_a_400(
    one_fake: Any, other: dict[str, Any]
) -> None:
    pool = UpstreamPool.from_urls([one_fake.url])
    body = {"prompt": "{", "response_format": {"type": "json_object"}, **other}
    async with asgi_client(create_app(pool)) as client:
        err = _error(await client.post("/v1/completions", json=body))
        assert err["param"] == "response_format" and f"{next(iter(other))} constrains" in err["message"], err
        ok = await client.post("/v1/completions", json={**body, "response_format": {"type": "text"}})
        assert ok.status_code == 200, ok.text
    assert len(one_fake.record.bodies) == 1


@pytest.mark.parametrize(
    ("bias", "token"),
    [({"49152": -100}, 49152), ({"15339": -1, " 999999": 5}, 999999), ([[7, 1], [50000, False]], 50000)],
)
async def test_a_token_id_outside_the_vocabulary_is_a_400_naming_it(
    one_fake: Any, bias: Any, token: int
) -> None:
    """llama-server skips such a bias without a word; the vocabulary size comes from an
    instance's /v1/models (``meta.n_vocab``: 49152 in the fake, SmolLM2's)."""
    pool = UpstreamPool.from_urls([one_fake.url])
    async with asgi_client(create_app(pool)) as client:
        for path, body in (("/v1/chat/completions", CHAT), ("/v1/completions", {"prompt": "hi"})):
            err = _error(await client.post(path, json={**body, "logit_bias": bias}))
            assert err["param"] == "logit_bias" and f"token id {token} " in err["message"], err
            assert "0 to 49151" in err["message"], err
        inside = await client.post(
            "/v1/chat/completions", json={**CHAT, "logit_bias": {"49151": -100, "x": 1}}
        )
        assert inside.status_code == 200, inside.text
    assert len(one_fake.record.bodies) == 1 and pool.vocab == 49152


async def test_without_a_vocabulary_size_from_the_instances_ids_are_not_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An instance whose /v1/models has no ``meta`` (another server, an older llama-server)."""
    from testkit.llama import surface

    monkeypatch.setattr(surface, "models", lambda model="m": {"object": "list", "data": [{"id": model}]})
    with fake_upstreams(Behaviour("fine")) as (fake,):
        pool = UpstreamPool.from_urls([fake.url])
        async with asgi_client(create_app(pool)) as client:
            r = await client.post("/v1/chat/completions", json={**CHAT, "logit_bias": {"999999": -100}})
    assert r.status_code == 200, r.text
    assert pool.vocab is None and fake.record.bodies[-1]["logit_bias"] == {"999999": -100}
    assert pool.vocab_unreported  # asked once, not on every request
