"""The parts of ``python -m bench agent`` that talk to servers: the recorded sessions, counting a
turn's prompt tokens, one streamed turn with its clocks, ``llamacpp:prompt_tokens_total`` from
``/metrics``, and the baseline llama-server.

    sessions = load_sessions("bench/data/agent/*.json.gz")
    body = prepare(sessions[0].turns[0], model="any", max_tokens=256)
    async with httpx.AsyncClient(timeout=600, trust_env=False) as client:
        before = await prompt_tokens_total(client, "http://127.0.0.1:8080")
        turn = await stream_turn(client, "http://127.0.0.1:8080/v1/chat/completions", body)
        evaluated(before, await prompt_tokens_total(client, "http://127.0.0.1:8080"))
        turn.ttfb_s, turn.answer_s, turn.answer_tokens
"""

from __future__ import annotations

import contextlib
import copy
import glob
import gzip
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.common import stop_group

DATA = Path(__file__).resolve().parent / "data" / "agent"
DEFAULT_GLOB = str(DATA / "*.json.gz")
#: a conservative estimate where the server cannot count (no /apply-template): 3 chars a token
CHARS_PER_TOKEN = 3.0


@dataclass(frozen=True)
class Session:
    """One recorded session: ``turns`` are the request bodies, each the whole conversation so far."""

    name: str
    source: str
    description: str
    turns: list[dict[str, Any]]


def load_sessions(pattern: str) -> list[Session]:
    """Every session file matching ``pattern`` (a glob), sorted by name; a clear error if none."""
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise click.ClickException(f"no session files match {pattern!r} (see bench/data/agent/)")
    out = []
    for p in paths:
        try:
            raw = gzip.decompress(Path(p).read_bytes()) if p.endswith(".gz") else Path(p).read_bytes()
            doc = json.loads(raw)
            turns = [t["body"] for t in doc["turns"]]
            out.append(
                Session(str(doc["name"]), str(doc.get("source", "")), str(doc.get("description", "")), turns)
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise click.ClickException(f"{p} is not a session file ({exc}); see docs/benchmarks.md") from None
    return out


def prepare(body: dict[str, Any], *, model: str, max_tokens: int | None) -> dict[str, Any]:
    """The body to send: as recorded, with ``model`` set and ``max_tokens`` capped (None: as
    recorded); streamed with the usage chunk, as opencode sends it."""
    out = copy.deepcopy(body)
    out["model"] = model
    out["stream"] = True
    out["stream_options"] = {"include_usage": True}
    if max_tokens:
        out["max_tokens"] = min(int(out.get("max_tokens") or max_tokens), max_tokens)
    return out


def estimate_tokens(body: dict[str, Any]) -> int:
    text = json.dumps(body.get("messages", []), ensure_ascii=False) + json.dumps(body.get("tools", []))
    return int(len(text) / CHARS_PER_TOKEN)


def count_tokens(client: httpx.Client, base_url: str, body: dict[str, Any]) -> tuple[int, str]:
    """The prompt tokens of ``body`` with the server's chat template (``/apply-template`` then
    ``/tokenize``), and how it was counted; an estimate where the server has no such endpoints."""
    try:
        r = client.post(
            f"{base_url}/apply-template", json={k: body[k] for k in ("messages", "tools") if k in body}
        )
        if r.status_code == 200:
            t = client.post(f"{base_url}/tokenize", json={"content": r.json()["prompt"]})
            if t.status_code == 200:
                return len(t.json()["tokens"]), "tokenize"
    except (httpx.HTTPError, ValueError, KeyError):
        pass
    return estimate_tokens(body), f"estimate ({CHARS_PER_TOKEN:g} chars/token)"


# --------------------------------------------------------------------------- one turn


@dataclass
class Turn:
    """What one streamed answer took. Times in seconds from sending the request."""

    ok: bool = False
    ttfb_s: float | None = None  # the first ``data:`` event (keep-alive comments do not count)
    first_token_s: float | None = None  # the first content or tool-call delta
    answer_s: float = 0.0  # ``[DONE]``
    answer_tokens: int | None = None  # usage.completion_tokens
    usage_prompt_tokens: int | None = None
    finish_reason: str | None = None
    tool_calls: int = 0
    error: str | None = None
    started: float = 0.0  # perf_counter at send, for the concurrency phase's timeline

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("started")
        return d


def _read_chunk(turn: Turn, payload: str, t0: float) -> None:
    chunk = json.loads(payload)
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        turn.answer_tokens = usage.get("completion_tokens")
        turn.usage_prompt_tokens = usage.get("prompt_tokens")
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if turn.first_token_s is None and (delta.get("content") or delta.get("tool_calls")):
            turn.first_token_s = time.perf_counter() - t0
        turn.tool_calls += sum(1 for tc in delta.get("tool_calls") or [] if tc.get("id"))
        if choice.get("finish_reason"):
            turn.finish_reason = choice["finish_reason"]


async def stream_turn(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Turn:
    """POST ``body`` to ``url`` and read its SSE stream to ``[DONE]``; errors are recorded, not raised."""
    turn = Turn(started=time.perf_counter())
    t0 = turn.started
    try:
        async with client.stream("POST", url, json=body, headers=headers or {}) as resp:
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace")
                turn.error = f"HTTP {resp.status_code}: {text[:300]}"
                return turn
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank lines and ": keep-alive" comments
                if turn.ttfb_s is None:
                    turn.ttfb_s = time.perf_counter() - t0
                payload = line[5:].strip()
                if payload == "[DONE]":
                    turn.ok = True
                    break
                _read_chunk(turn, payload, t0)
            if not turn.ok:
                turn.error = "the stream ended without [DONE]"
    except (httpx.HTTPError, ValueError) as exc:
        turn.error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        turn.answer_s = time.perf_counter() - t0
    return turn


async def prompt_tokens_total(
    client: httpx.AsyncClient, base_url: str, headers: dict[str, str] | None = None
) -> dict[str, float]:
    """``llamacpp:prompt_tokens_total`` from ``base_url``/metrics, by its ``instance`` label (a
    llama-server's own: one value under ""; the swarm proxy's re-exposes each instance's with a
    label, and leaves out an instance that did not answer in time)."""
    r = await client.get(f"{base_url}/metrics", headers=headers or {})
    if r.status_code != 200:
        raise click.ClickException(
            f"{base_url}/metrics answered {r.status_code}: start llama-server with --metrics"
        )
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        if family.name in ("llamacpp:prompt_tokens", "llamacpp:prompt_tokens_total"):
            for smp in family.samples:
                if smp.name.endswith("_total") or smp.name == family.name:
                    key = smp.labels.get("instance", "")
                    out[key] = out.get(key, 0.0) + smp.value
    return out


def evaluated(before: dict[str, float], after: dict[str, float]) -> float:
    """Prompt tokens evaluated between two readings: over the instances present in both (an
    instance missing from one reading, or restarted in between, is left out)."""
    return sum(max(0.0, after[k] - before[k]) for k in before.keys() & after.keys())


# --------------------------------------------------------------------------- the baseline


@dataclass
class Baseline:
    """One llama-server answering alone: ``-np 1``, every core as a thread, ``--metrics``."""

    url: str
    argv: list[str]
    proc: subprocess.Popen[bytes] = field(repr=False)


def baseline_argv(binary: Path, model: Path, port: int, context: int, ngl: int, threads: int) -> list[str]:
    return [
        str(binary),
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-c",
        str(context),
        "-np",
        "1",
        "--threads",
        str(threads),
        "-ngl",
        str(ngl),
        "--metrics",
        "--alias",
        "baseline",
    ]


@contextlib.contextmanager
def baseline_server(argv: list[str], log: Path, timeout_s: float = 300.0) -> Iterator[Baseline]:
    """Start ``argv``, wait for /health 200 (or its exit, with the log's tail), stop it after."""
    port = argv[argv.index("--port") + 1]
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0, trust_env=False) as c:
            while True:
                if proc.poll() is not None:
                    tail = log.read_text(errors="replace")[-1500:]
                    raise click.ClickException(
                        f"the baseline llama-server exited with {proc.returncode}:\n{tail}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if c.get(f"{url}/health").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise click.ClickException(
                        f"the baseline llama-server was not ready in {timeout_s:.0f} s ({log})"
                    )
                time.sleep(0.1)
        yield Baseline(url, argv, proc)
    finally:
        stop_group(proc, 15.0)
