"""The proxy in front of two REAL llama-server instances of SmolLM2: answered and voted on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import Upstream, UpstreamPool
from testkit.llama.inprocess import served_client

pytestmark = [pytest.mark.llama, pytest.mark.anyio]

KEY = "internal-test-key"
PROMPT = [{"role": "user", "content": "Write a Python function add(a, b) that returns a + b."}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_llama_servers(
    binary: Path, model: Path, count: int, tmp: Path, *, ctx: int = 4096, parallel: int = 1
) -> Iterator[list[str]]:
    """``count`` llama-server processes (own process groups), ready; stopped afterwards."""
    key_file = tmp / "key"
    key_file.write_text(KEY)
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for i in range(count):
            port = _free_port()
            log = (tmp / f"llama-{i}.log").open("wb")
            argv = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
            argv += ["--threads", "1", "-c", str(ctx * parallel), "--parallel", str(parallel)]
            argv += ["--metrics", "--api-key-file", str(key_file), "--alias", "smollm2"]
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        for proc, url in zip(procs, urls, strict=True):
            while True:
                assert proc.poll() is None, (tmp / "llama-0.log").read_text()[-2000:]
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "llama-server did not become ready in 60 s"
                time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def llama_urls(
    llama_server_bin: Path, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    yield from start_llama_servers(llama_server_bin, smollm2_gguf, 2, tmp_path_factory.mktemp("llama"))


def _pool(urls: list[str]) -> UpstreamPool:
    pool = UpstreamPool(model_id="smollm2:135m:q4_1", context=4096, api_key=KEY)
    for i, url in enumerate(urls):
        pool.set_ready(Upstream(str(i), url), True)
    return pool


async def test_chat_is_answered_and_voted_on(llama_urls: list[str]) -> None:
    app = create_app(_pool(llama_urls), ProxySettings(quorum=False))
    async with served_client(app) as client:
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "smollm2:135m:q4_1", "messages": PROMPT, "max_tokens": 48, "temperature": 0.7},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "smollm2:135m:q4_1"
        assert body["choices"][0]["message"]["content"].strip()
        swarm = body["swarm"]
        assert swarm["votes"] == 2
        assert all(v["ok"] for v in swarm["voters"])
        assert 0.5 <= swarm["agreement"] <= 1.0
        assert r.headers["x-swarm-agreement"]
        assert body["usage"]["completion_tokens"] > 0
        assert swarm["usage_total"]["completion_tokens"] >= body["usage"]["completion_tokens"]

        metrics = (await client.get("/metrics")).text
        assert 'llamacpp:prompt_tokens_total{instance="0"}' in metrics
        assert 'llamacpp:prompt_tokens_total{instance="1"}' in metrics


async def test_greedy_answers_agree(llama_urls: list[str]) -> None:
    app = create_app(_pool(llama_urls), ProxySettings(quorum=False))
    async with served_client(app) as client:
        r = await client.post(
            "/v1/chat/completions",
            json={"messages": PROMPT, "max_tokens": 32, "temperature": 0},
            timeout=120,
        )
    assert r.json()["swarm"]["agreement"] == 1.0  # greedy decoding: the same answer twice


@pytest.mark.parametrize("mode", ["consensus", "fastest"])
async def test_streamed_chat(llama_urls: list[str], mode: str) -> None:
    app = create_app(_pool(llama_urls), ProxySettings(stream_mode=mode))  # type: ignore[arg-type]
    body: dict[str, Any] = {
        "messages": PROMPT,
        "max_tokens": 32,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with served_client(app) as client:
        r = await client.post("/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200
    lines = [ln for ln in r.text.splitlines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert '"usage"' in lines[-2]
    assert any('"content"' in ln for ln in lines)


async def test_completions(llama_urls: list[str]) -> None:
    app = create_app(_pool(llama_urls), ProxySettings(quorum=False))
    async with served_client(app) as client:
        r = await client.post(
            "/v1/completions", json={"prompt": "def add(a, b):", "max_tokens": 16}, timeout=120
        )
    assert r.status_code == 200, r.text
    assert r.json()["swarm"]["votes"] == 2


async def test_a_json_format_on_completions_gives_json(llama_urls: list[str]) -> None:
    """llama-server skips ``response_format`` on /v1/completions (it reads it on chat only): the
    proxy sends it as the ``json_schema`` llama-server reads there, so every voter writes JSON."""
    app = create_app(_pool(llama_urls), ProxySettings(quorum=False))
    body = {"prompt": "A user record as JSON:", "max_tokens": 48, "response_format": {"type": "json_object"}}
    async with served_client(app) as client:
        r = await client.post("/v1/completions", json={**body, "swarm_candidates": True}, timeout=120)
    assert r.status_code == 200, r.text
    texts = [c["content"] for c in r.json()["swarm"]["candidates"]]
    assert len(texts) == 2
    for text in texts:  # a JSON object, or its opening cut off by max_tokens
        assert text.lstrip().startswith("{"), texts


async def test_a_token_id_outside_the_models_vocabulary_is_a_400(llama_urls: list[str]) -> None:
    """llama-server would skip the bias without a word; the size is its /v1/models meta.n_vocab."""
    pool = _pool(llama_urls)
    app = create_app(pool, ProxySettings(quorum=False))
    async with served_client(app) as client:
        body = {"messages": PROMPT, "max_tokens": 4, "logit_bias": {"999999": -100}}
        r = await client.post("/v1/chat/completions", json=body, timeout=120)
        assert r.status_code == 400, r.text
        assert "999999" in r.json()["error"]["message"] and "0 to 49151" in r.json()["error"]["message"]
        ok = await client.post(
            "/v1/chat/completions", json={**body, "logit_bias": {"49151": -100}}, timeout=120
        )
        assert ok.status_code == 200, ok.text
    assert pool.vocab == 49152  # SmolLM2's


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"reasoning_format": "weird"}, "Unknown reasoning format"),
        ({"json_schema": {"type": "object"}, "grammar": 'root ::= "a"'}, "json_schema and grammar"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_fields_llama_server_refuses_with_a_500_are_a_400(
    llama_urls: list[str], extra: dict[str, Any], says: str, stream: bool
) -> None:
    """llama-server answers these fields with a 500 (a runtime_error while it reads the request):
    the client's mistake, so a 400 that says what is wrong, not a 502 that blames the instances."""
    app = create_app(_pool(llama_urls))
    body = {"messages": PROMPT, "max_tokens": 4, "stream": stream, **extra}
    async with served_client(app) as client:
        r = await client.post("/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "rejected_by_instances" and says in err["message"]


async def _processing(client: httpx.AsyncClient, url: str) -> float:
    text = (await client.get(url + "/metrics", headers={"Authorization": f"Bearer {KEY}"})).text
    line = next(ln for ln in text.splitlines() if ln.startswith("llamacpp:requests_processing"))
    return float(line.split()[-1])


async def test_a_client_that_goes_away_frees_the_slots(llama_urls: list[str]) -> None:
    import anyio

    app = create_app(_pool(llama_urls), ProxySettings(quorum=False))
    long = {"messages": PROMPT, "max_tokens": 4000, "ignore_eos": True}
    async with served_client(app) as client, httpx.AsyncClient() as direct:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/v1/chat/completions", json=long, timeout=1.5)
        busy = [await _processing(direct, u) for u in llama_urls]
        with anyio.fail_after(10):
            while any([await _processing(direct, u) for u in llama_urls]):
                await anyio.sleep(0.1)
    assert busy  # generation of 4000 tokens would take far longer than the 10 s allowed above


def _prompt_tokens_total(url: str) -> float:
    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).text
    for line in text.splitlines():
        if line.startswith("llamacpp:prompt_tokens_total"):
            return float(line.split()[-1])
    raise AssertionError("no llamacpp:prompt_tokens_total in /metrics")


async def test_three_voters_of_one_process_share_one_prompt_evaluation(
    llama_server_bin: Path, smollm2_gguf: Path, tmp_path: Path
) -> None:
    """One llama-server holding 3 voters evaluates the prompt once (n = 3), not three times."""
    for urls in start_llama_servers(llama_server_bin, smollm2_gguf, 1, tmp_path, ctx=2048, parallel=3):
        pool = UpstreamPool(model_id="smollm2", context=2048, api_key=KEY)
        pool.set_ready(Upstream("0", urls[0], slots=3), True)
        before = _prompt_tokens_total(urls[0])
        async with served_client(create_app(pool, ProxySettings(quorum=False))) as client:
            r = await client.post(
                "/v1/chat/completions",
                json={"messages": PROMPT, "max_tokens": 24, "temperature": 0.8, "cache_prompt": False},
                timeout=120,
            )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["swarm"]["votes"] == 3 and body["swarm"]["requests"] == 1
        prompt = body["usage"]["prompt_tokens"]
        assert prompt > 10
        evaluated = _prompt_tokens_total(urls[0]) - before
        assert evaluated == prompt, f"{evaluated} prompt tokens evaluated for a {prompt}-token prompt"
        assert body["swarm"]["usage_total"]["prompt_tokens"] == prompt
        assert len({v["id"] for v in body["swarm"]["voters"] if v["ok"]}) == 3
