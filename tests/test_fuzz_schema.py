"""schemathesis against the proxy's own /openapi.json and a live proxy (its own process) over fake
upstreams (real HTTP servers): every generated request gets a 2xx, or a 4xx in the OpenAI error
shape; never a 5xx, a crash or a hang; and the swarm still answers afterwards.

The run against real SmolLM2 llama-servers is marked ``llama`` and ``slow``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from swarm_supervisor.proxy.openapi import openapi_document
from testkit.spawn import Child, real_swarm, spawn_fakes, spawn_proxy

SCHEMA = schemathesis.openapi.from_dict(openapi_document())
# derandomize: CI runs the same examples every time (a new failure shows up as a code change, not luck)
FUZZ = settings(
    max_examples=40, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def check_answer(response: Any) -> None:
    """The contract: 2xx, or a 4xx with {"error": {"message": str, "type": str, ...}}."""
    status = response.status_code
    assert status < 500, f"{status}: {response.text[:500]}"
    if status >= 400:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), dict), response.text[:500]
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        assert isinstance(body["error"]["type"], str)


def still_answers(proxy: Child) -> None:
    assert proxy.proc.poll() is None, "the proxy process died"
    r = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
    assert httpx.get(f"{proxy.url}/health", timeout=10).status_code == 200


@pytest.fixture(scope="module")
def live_proxy() -> Iterator[Child]:
    fakes = spawn_fakes(3)
    try:
        proxy = spawn_proxy(fakes.urls, request_timeout_s=10.0, keepalive_s=1.0)
        try:
            yield proxy
            still_answers(proxy)
        finally:
            proxy.stop()
    finally:
        fakes.stop()


@SCHEMA.parametrize()
@FUZZ
def test_generated_requests_against_fakes(case: schemathesis.Case, live_proxy: Child) -> None:
    response = case.call(base_url=live_proxy.url, timeout=30)
    check_answer(response)
    # every other stock check (response schemas, negative data rejected, status codes documented);
    # not "positive data accepted": JSON Schema counts 2.0 as an integer, the proxy's strict
    # models do not (llama-server gets the client's raw JSON, so the proxy keeps it exact)
    case.validate_response(response, excluded_checks=[schemathesis.checks.positive_data_acceptance])


@pytest.mark.llama
@pytest.mark.slow
def test_generated_requests_against_smollm2(llama_server_bin: Path, smollm2_gguf: Path) -> None:
    """The same contract through real llama-servers. Their context is 256 tokens so that a huge
    ``max_tokens`` ends within seconds (this llama-server's ``-n`` is a default, not a cap)."""
    with real_swarm(llama_server_bin, smollm2_gguf, instances=2, n_predict=16, context=256) as proxy:
        for result in SCHEMA.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(FUZZ, max_examples=12)
                def run(case: schemathesis.Case) -> None:
                    response = case.call(base_url=proxy.url, timeout=120)
                    assert response.status_code < 500, (case.method, case.path, case.body, response.text)
                    check_answer(response)

                with contextlib.suppress(Unsatisfiable):  # nothing to make invalid in a bare GET
                    run()
        still_answers(proxy)
