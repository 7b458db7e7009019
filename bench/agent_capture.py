"""Record real opencode sessions for ``python -m bench agent`` (a developer's tool, not run in CI).

A Starlette app on 127.0.0.1 plays the model: it records every ``POST /v1/chat/completions`` body
opencode sends and answers with a streamed, scripted turn (tool calls, then a short text), so
opencode runs the tools itself (read, grep, glob, task...) and sends their real results back on its
next request. Each agent request is a turn of the recorded session; title requests (no ``tools``)
are answered and dropped. A ``task`` call makes opencode start a subagent, whose requests come to
the same endpoint: they are recorded as a session of their own.

    python -m bench.agent_capture --opencode /path/to/node_modules/.bin/opencode \\
        --project /tmp/local-swarm --out bench/data/agent

The script of every session (its prompt, then one list of tool calls per turn) is ``SCRIPTS`` in
``bench/agent_scripts.py``; the scripted answer for a request is chosen by the request's first
user message and how many assistant messages it already holds, so the endpoint keeps no state of
its own.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bench.agent_scripts import SCRIPTS, Call, Script

OPENCODE_VERSION = "1.18.33"


MODEL_ID = "coder"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-capture",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _sse(chunks: list[dict[str, Any]]) -> Iterator[bytes]:
    for c in chunks:
        yield b"data: " + json.dumps(c).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


def answer_chunks(calls: list[Call] | None, text: str, turn: int) -> list[dict[str, Any]]:
    """The SSE chunks of a streamed answer: tool calls (finish ``tool_calls``) or ``text``."""
    chunks = [_chunk({"role": "assistant", "content": ""})]
    if calls:
        for i, (name, args) in enumerate(calls):
            tc = {"index": i, "id": f"call_{turn}_{i}", "type": "function",
                  "function": {"name": name, "arguments": json.dumps(args)}}  # fmt: skip
            chunks.append(_chunk({"tool_calls": [tc]}))
        chunks.append(_chunk({}, "tool_calls"))
    else:
        chunks.append(_chunk({"content": text}))
        chunks.append(_chunk({}, "stop"))
    usage = {"prompt_tokens": 1000, "completion_tokens": 20, "total_tokens": 1020}
    chunks.append({**_chunk({}), "choices": [], "usage": usage})
    return chunks


def first_user_text(body: dict[str, Any]) -> str:
    for m in body.get("messages", []):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return "".join(p.get("text", "") for p in c if isinstance(p, dict))
    return ""


@dataclass
class Recorder:
    scripts: list[Script]
    turns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script_for(self, body: dict[str, Any]) -> Script | None:
        text = first_user_text(body)
        for s in self.scripts:
            if s.prompt in text:
                return s
        return None

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        if not body.get("tools"):  # the title request
            return StreamingResponse(
                _sse(answer_chunks(None, "Agent session", 0)), media_type="text/event-stream"
            )
        script = self.script_for(body)
        done = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        with self.lock:
            if script is None:
                self.unmatched.append(body)
            else:
                self.turns.setdefault(script.name, []).append(body)
        calls = script.turns[done] if script and done < len(script.turns) else None
        final = script.final if script else "I cannot help with that."
        return StreamingResponse(_sse(answer_chunks(calls, final, done)), media_type="text/event-stream")

    async def other(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(rec: Recorder) -> Iterator[str]:
    app = Starlette(routes=[
        Route("/v1/chat/completions", rec.chat, methods=["POST"]),
        Route("/{rest:path}", rec.other, methods=["GET", "POST"]),
    ])  # fmt: skip
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


def opencode_config(base_url: str) -> dict[str, Any]:
    """The provider ``swarm opencode`` would write, for a model of 32k context and 4k output."""
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {"swarm": {
            "npm": "@ai-sdk/openai-compatible", "name": "Local Swarm",
            "options": {"baseURL": base_url, "includeUsage": True},
            "models": {MODEL_ID: {"name": "coder", "limit": {"context": 32768, "output": 4096}}},
        }},
        "model": f"swarm/{MODEL_ID}",
    }  # fmt: skip


def clean_env(root: Path) -> dict[str, str]:
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "NO_COLOR": "1",
        "TERM": "dumb",
        "NO_PROXY": "127.0.0.1,localhost",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "OPENCODE_DISABLE_CLAUDE_CODE": "1",
        "OPENCODE_DISABLE_EXTERNAL_SKILLS": "1",
    }


def run_opencode(exe: Path, project: Path, env: dict[str, str], prompt: str, timeout_s: float) -> int:
    proc = subprocess.Popen(
        [str(exe), "run", prompt], cwd=project, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    click.echo(out[-1500:])
    return proc.returncode


def write_session(out: Path, name: str, source: str, description: str, bodies: list[dict[str, Any]]) -> Path:
    doc = {"name": name, "source": source, "description": description, "turns": [{"body": b} for b in bodies]}
    path = out / f"{name}.json.gz"
    path.write_bytes(gzip.compress(json.dumps(doc, ensure_ascii=False).encode(), mtime=0))
    return path


@click.command()
@click.option("--opencode", "exe", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--project", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="the folder opencode works in (a copy of this repository)")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench/data/agent"))
@click.option("--only", multiple=True, help="capture only these scripts")
@click.option("--timeout", "timeout_s", type=float, default=300.0)
def main(exe: Path, project: Path, out: Path, only: tuple[str, ...], timeout_s: float) -> None:
    """Run opencode once per scripted session against a recording endpoint; write the sessions."""
    out.mkdir(parents=True, exist_ok=True)
    rec = Recorder(SCRIPTS)
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"agent-capture-{os.getpid()}"
    with serving(rec) as base_url:
        (project / "opencode.json").write_text(json.dumps(opencode_config(base_url), indent=2))
        for s in SCRIPTS:
            if s.subagent or (only and s.name not in only):
                continue
            click.echo(f"== {s.name}")
            rc = run_opencode(exe, project, clean_env(root), s.prompt, timeout_s)
            click.echo(f"opencode exit {rc}; turns recorded: { {k: len(v) for k, v in rec.turns.items()} }")
    for s in SCRIPTS:
        bodies = rec.turns.get(s.name, [])
        if bodies:
            src = f"opencode {OPENCODE_VERSION} capture"
            click.echo(
                f"wrote {write_session(out, s.name, src, s.description, bodies)} ({len(bodies)} turns)"
            )
    if rec.unmatched:
        click.echo(f"{len(rec.unmatched)} request(s) matched no script; first user text: "
                   f"{first_user_text(rec.unmatched[0])[:200]!r}")  # fmt: skip


if __name__ == "__main__":
    main()
