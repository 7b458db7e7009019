"""Each way an instance can fail is one class of proxy/failures.py, and each class reaches the
client as docs/api.md's error table says: its status, ``type`` and ``code``, and its voter's
outcome in the metrics. Real HTTP fakes (testkit/llama/inprocess.py), one per fault."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.client import UpstreamClient, new_session
from swarm_supervisor.proxy.collect import assemble
from swarm_supervisor.proxy.failures import (
    UpstreamBadStream,
    UpstreamFailure,
    UpstreamHttpError,
    UpstreamUnreachable,
    no_answer,
)
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import UpstreamPool
from testkit.llama.inprocess import Behaviour, asgi_client, fake_upstreams

pytestmark = pytest.mark.anyio

CHAT: dict[str, Any] = {"model": "swarm", "messages": [{"role": "user", "content": "hi"}]}
NOTHING_LISTENS = "nothing"  # a loopback port with no server: the instance is down


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _raised(url: str) -> UpstreamFailure:
    """What one streamed call to ``url`` raises, read the way the fan-out reads it."""
    pool = UpstreamPool.from_urls([url])
    async with new_session() as session:
        client = UpstreamClient(session, pool)
        try:
            async with client.stream(url + "/v1/chat/completions", {**CHAT, "stream": True}) as lines:
                await assemble(lines, "chat")
        except UpstreamFailure as exc:
            return exc
    raise AssertionError("the call did not fail")


@pytest.mark.parametrize(
    ("fault", "cls", "status"),
    [
        (NOTHING_LISTENS, UpstreamUnreachable, None),
        ("drop", UpstreamUnreachable, None),
        ("500", UpstreamHttpError, 500),
        ("reject", UpstreamHttpError, 500),
        ("400", UpstreamHttpError, 400),
        ("401", UpstreamHttpError, 401),
        ("invalid_json", UpstreamBadStream, None),
        ("huge_line", UpstreamBadStream, None),
    ],
)
async def test_each_fault_is_one_failure_class(
    fault: str, cls: type[UpstreamFailure], status: int | None
) -> None:
    if fault == NOTHING_LISTENS:
        failure = await _raised(f"http://127.0.0.1:{free_port()}")
    else:
        with fake_upstreams(Behaviour(fault=fault)) as fakes:
            failure = await _raised(fakes[0].url)
    assert type(failure) is cls, repr(failure)
    if isinstance(failure, UpstreamHttpError):
        assert failure.status == status and isinstance(failure.body, dict)


# (fault of every voter, status, type, code): the rows of docs/api.md's error table
CLIENT_ERRORS = [
    (NOTHING_LISTENS, 502, "upstream_error", "upstream_failed", "error"),  # UpstreamUnreachable
    ("drop", 502, "upstream_error", "upstream_failed", "error"),  # UpstreamUnreachable
    ("500", 502, "upstream_error", "upstream_failed", "error"),  # UpstreamHttpError 5xx
    (
        "reject",
        400,
        "invalid_request_error",
        "rejected_by_instances",
        "error",
    ),  # the same 500 about the input
    ("400", 400, "exceed_context_size_error", None, "error"),  # UpstreamHttpError 4xx: passed through
    ("401", 502, "upstream_error", "internal_key_rejected", "error"),  # the swarm's own key refused
    ("invalid_json", 502, "upstream_error", "upstream_failed", "error"),  # UpstreamBadStream
    ("hang", 504, "timeout", "upstream_timeout", "timeout"),  # UpstreamTimeout
]


@pytest.mark.parametrize(("fault", "status", "type_", "code", "outcome"), CLIENT_ERRORS)
async def test_each_failure_class_reaches_the_client_as_documented(
    fault: str, status: int, type_: str, code: str | None, outcome: str
) -> None:
    settings = ProxySettings(request_timeout_s=1.0)
    behaviours = [] if fault == NOTHING_LISTENS else [Behaviour(fault=fault)] * 2
    with fake_upstreams(*behaviours) as fakes:
        urls = [f.url for f in fakes] or [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
        async with asgi_client(create_app(UpstreamPool.from_urls(urls), settings)) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
            metrics = (await client.get("/metrics")).text
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert (err["type"], err["code"]) == (type_, code), err
    assert err["message"]
    for instance in ("0", "1"):
        assert f'swarm_voter_results_total{{instance="{instance}",outcome="{outcome}"}} 1.0' in metrics


async def test_a_voter_the_vote_did_not_wait_for_is_cancelled_not_failed() -> None:
    """UpstreamCancelled: two agreeing answers settle a vote of three; the hung third is let go,
    shown as ``cancelled`` and counted as such, and the client gets its 200."""
    behaviours = [Behaviour("same"), Behaviour("same"), Behaviour(fault="hang")]
    with fake_upstreams(*behaviours) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with asgi_client(create_app(pool, ProxySettings(request_timeout_s=30))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
            metrics = (await client.get("/metrics")).text
    assert r.status_code == 200, r.text
    voters = {v["id"]: v for v in r.json()["swarm"]["voters"]}
    assert voters["2.0"]["error"] == "cancelled" and voters["2.0"]["ok"] is False
    assert 'swarm_voter_results_total{instance="2",outcome="cancelled"} 1.0' in metrics
    assert 'swarm_voter_results_total{instance="2",outcome="error"}' not in metrics


@pytest.mark.parametrize(
    "message",
    [
        "Unknown reasoning format: weird",  # reasoning_format: "weird"
        "Cannot use both json_schema and grammar",  # both fields in one request
        "Multimodal data provided, but model does not support multimodal requests.",
    ],
)
def test_what_llama_server_says_of_a_bad_field_in_a_500_is_a_rejection(message: str) -> None:
    """Words llama-server (this build) answers a 500 with for a field it cannot take, seen live:
    every voter saying one of them is the request's fault (400), not the instances' (502)."""
    body = {"error": {"code": 500, "message": message, "type": "server_error"}}
    failures = [UpstreamHttpError("HTTP 500", status=500, body=body) for _ in range(2)]
    err = no_answer(failures, timed_out=False)
    assert (err.status, err.code) == (400, "rejected_by_instances")
    assert message in err.message
    boom = {"error": {"code": 500, "message": "boom", "type": "server_error"}}
    other = [UpstreamHttpError("HTTP 500", status=500, body=boom)] * 2
    assert no_answer(other, timed_out=False).status == 502
