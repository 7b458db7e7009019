"""``python -m bench agent`` at CI size: a short session cut from a recorded opencode session (its
first two turns, with a short system prompt and two tool schemas so that SmolLM2 answers in
seconds) through a real ``swarm up`` of two SmolLM2 voters and one llama-server alone, M = 1, 2;
the result JSON has what the docs promise, and the token counts agree with what was sent."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.agent_replay import DATA, load_sessions

REPO = Path(__file__).resolve().parent.parent


def short_session(dst: Path) -> Path:
    """The first two turns of the recorded explain-vote session with a one-line system prompt (SmolLM2's
    template leaves the tool schemas out): a few dozen tokens a turn."""
    doc = json.loads(gzip.decompress((DATA / "explain-vote.json.gz").read_bytes()))
    turns = []
    for t in doc["turns"][:2]:
        body = t["body"]
        body["messages"][0]["content"] = "You are a coding agent. Use the tools to answer."
        body["tools"] = [x for x in body["tools"] if x["function"]["name"] in ("glob", "grep")]
        turns.append({"body": body})
    path = dst / "short.json.gz"
    doc = {"name": "short", "source": "built from capture", "description": "CI", "turns": turns}
    path.write_bytes(gzip.compress(json.dumps(doc).encode()))
    return path


def test_the_committed_sessions_have_the_documented_shape() -> None:
    sessions = load_sessions(str(DATA / "*.json.gz"))
    assert len(sessions) >= 5
    assert any("subagent" in s.name for s in sessions)
    for s in sessions:
        assert s.source in ("opencode 1.18.33 capture", "built from capture")
        assert len(s.turns) >= 3
        for prev, body in zip(s.turns, s.turns[1:], strict=False):
            # each turn is the whole conversation so far: the previous one's messages, then more
            assert body["messages"][: len(prev["messages"])] == prev["messages"]
            assert len(body["messages"]) > len(prev["messages"])
        first = s.turns[0]
        assert (
            first["stream"] is True and first["tools"] and first["stream_options"] == {"include_usage": True}
        )


def test_no_session_file_is_a_clear_error(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "bench", "agent", "--sessions", str(tmp_path / "*.json.gz")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert "no session files match" in r.stderr


@pytest.mark.llama
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_agent_bench_end_to_end(tmp_path: Path, llama_server_bin: Path, smollm2_gguf: Path) -> None:
    short_session(tmp_path)
    out = tmp_path / "agent.json"
    r = subprocess.run(
        [sys.executable, "-m", "bench", "agent", "--sessions", str(tmp_path / "*.json.gz"),
         "--model", str(smollm2_gguf), "--llama-server", str(llama_server_bin), "--instances", "2",
         "--swarm-arg=--context=4096", "--max-tokens", "8", "--concurrency", "1,2", "--out", str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=560,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    assert (tmp_path / "agent.png").stat().st_size > 10_000
    assert data["swarm"]["voters"] == 2 and data["swarm"]["context"] == 4096
    assert "-np 1" in data["baseline"]["argv"]
    assert data["sessions"] == [
        {"name": "short", "source": "built from capture", "turns": 2,
         "prompt_tokens": data["sessions"][0]["prompt_tokens"], "counted_by": "tokenize"}
    ]  # fmt: skip
    t0, t1 = data["sessions"][0]["prompt_tokens"]
    assert 20 < t0 < t1 < 3000
    rows = data["turns"]
    assert [(x["session"], x["turn"]) for x in rows] == [("short", 0), ("short", 1)]
    assert {rows[0]["first"], rows[1]["first"]} == {"swarm", "baseline"}  # interleaved, alternating
    for row in rows:
        for target in ("swarm", "baseline"):
            got = row[target]
            assert got["ok"], got
            assert 0 < got["ttfb_s"] <= got["answer_s"]
            assert 1 <= got["answer_tokens"] <= 8
    # the first turn: the lone server evaluates the whole prompt once, and so does the swarm's one
    # process (the plan's CPU topology: a slot per voter, one request with n = 2)
    first = rows[0]
    assert first["swarm"]["instances_read"] == data["swarm"]["processes"] == 1
    assert abs(first["baseline"]["evaluated_prompt_tokens"] - t0) <= 8
    assert abs(first["swarm"]["evaluated_prompt_tokens"] - t0) <= 8
    # the second turn reuses the cached conversation: fewer tokens evaluated than its prompt
    assert 0 < rows[1]["baseline"]["evaluated_prompt_tokens"] < t1
    s = data["summary"]
    assert s["turns_both_ok"] == 2
    assert s["ratio_per_session"]["n"] == 1 and s["ratio_per_session"]["median"] > 0
    rates = {(x["m"], x["target"]): x for x in s["rates"]}
    assert set(rates) == {(1, "swarm"), (1, "baseline"), (2, "swarm"), (2, "baseline")}
    for x in rates.values():
        assert x["answers"] >= 2 and x["answers_per_s"] > 0 and x["p50_s"] <= x["p95_s"]
    assert rates[(2, "swarm")]["answers"] == 4  # two workers, one session each, two turns
