"""``python -m bench toolcalls``: do the answers to opencode's turns come back as tool calls it can
act on? Replays recorded opencode requests (``bench/data/agent/*.json.gz``: ``{"name", "source",
"description", "turns": [{"body": <chat request>}]}``) against one llama-server alone and
through ``swarm up --instances N``, and sorts every answer into:

``call``
    structured ``tool_calls`` whose arguments fit the declared schemas: opencode acts on it;
``invalid_call``
    structured ``tool_calls`` naming an undeclared tool or with arguments the schema refuses;
``leaked_call``
    text that writes a valid call (a ``<tool_call>`` tag, a fenced JSON block, bare JSON): the
    swarm turns it into a call, opencode alone would show the text;
``leaked_invalid``
    text that writes a call whose arguments the schema refuses;
``text``
    plain text (an answer, a question, or nothing useful);
``empty``
    nothing at all;
``error``
    no answer (an HTTP error or a timeout).

For the swarm it counts the answer the client got and every voter's own answer (from the
``swarm`` extension: what each wrote, which calls were recovered, which dropped and why).
Voters a quorum cancelled have no answer and are counted apart. The request's own sampling is
kept (opencode sends no temperature); ``max_tokens`` is lowered to keep the run bounded.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from bench.common import REPO, print_table, write_result
from bench.swarm_home import SwarmHome
from bench.toolcalls_answers import CATEGORIES, classify, summarize, voter_categories
from swarm_supervisor.consensus import Toolbox, recover_calls

DATA = REPO / "bench" / "data" / "agent"


#: turns that share opencode's system prompt, so llama-server's prompt cache saves most prefills
DEFAULT_TURNS = "explain-vote:0,explain-vote:1"


@dataclass(frozen=True)
class Turn:
    session: str
    index: int
    body: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.session}:{self.index}"


def _read_session(name: str, data: Path, ref: str | None) -> dict[str, Any]:
    path = data / f"{name}.json.gz"
    if path.is_file():
        raw = path.read_bytes()
    elif ref:
        rel = path.relative_to(REPO).as_posix()
        got = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:{rel}"], capture_output=True)
        if got.returncode != 0:
            raise click.ClickException(f"no {path} and no {rel} on {ref}: {got.stderr.decode()[:300]}")
        raw = got.stdout
    else:
        raise click.ClickException(
            f"no {path}: the recorded opencode sessions are missing (give --data or --ref)"
        )
    doc: dict[str, Any] = json.loads(gzip.decompress(raw))
    return doc


def load_turns(spec: str, data: Path, ref: str | None) -> list[Turn]:
    """``SESSION:TURN,...`` -> the recorded request bodies."""
    sessions: dict[str, dict[str, Any]] = {}
    out: list[Turn] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        name, _, index = item.partition(":")
        if name not in sessions:
            sessions[name] = _read_session(name, data, ref)
        turns = sessions[name]["turns"]
        i = int(index or 0)
        if not 0 <= i < len(turns):
            raise click.BadParameter(f"{name} has turns 0-{len(turns) - 1}, not {i}", param_hint="--turns")
        out.append(Turn(name, i, turns[i]["body"]))
    return out


def request_body(turn: Turn, max_tokens: int) -> dict[str, Any]:
    """The recorded request, not streamed (the answer is read whole), ``max_tokens`` lowered."""
    body = {k: v for k, v in turn.body.items() if k not in ("stream", "stream_options", "model")}
    return {**body, "max_tokens": max_tokens, "stream": False}


def _post(url: str, body: dict[str, Any], key: str | None, timeout_s: float) -> tuple[dict[str, Any], float]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    t0 = time.perf_counter()
    r = httpx.post(url, json=body, headers=headers, timeout=timeout_s)
    took = time.perf_counter() - t0
    if r.status_code != 200:
        raise click.ClickException(f"{url} answered {r.status_code}: {r.text[:500]}")
    data: dict[str, Any] = r.json()
    return data, took


def replay(
    url: str, turns: list[Turn], repeats: int, max_tokens: int, timeout_s: float, echo: Any
) -> list[dict[str, Any]]:
    """Every turn ``repeats`` times against ``url`` (chat completions); one record per answer."""
    records: list[dict[str, Any]] = []
    for turn in turns:  # the repeats of a turn one after another: llama-server reuses its prompt cache
        box = Toolbox.from_openai(turn.body.get("tools"))
        for r in range(repeats):
            try:
                answer, took = _post(url, request_body(turn, max_tokens), None, timeout_s)
            except (click.ClickException, httpx.HTTPError) as exc:
                msg = exc.message if isinstance(exc, click.ClickException) else f"{type(exc).__name__}: {exc}"
                records.append({"turn": turn.label, "repeat": r, "category": "error", "error": msg[:300]})
                echo(f"  {turn.label} #{r}: error: {msg[:200]}")
                continue
            choice = (answer.get("choices") or [{}])[0]
            message = choice.get("message") or {}
            rec: dict[str, Any] = {
                "turn": turn.label,
                "repeat": r,
                "category": classify(message, box),
                "finish_reason": choice.get("finish_reason"),
                "seconds": round(took, 2),
                "prompt_tokens": (answer.get("usage") or {}).get("prompt_tokens"),
                "calls": [(c.get("function") or {}).get("name") for c in message.get("tool_calls") or []],
                "content_head": (message.get("content") or "")[:160],
            }
            leaked = recover_calls(message.get("content") or "", box.names)
            if leaked is not None:
                rec["form"] = leaked.form
            swarm = answer.get("swarm")
            if swarm is not None:
                rec["voters"] = voter_categories(swarm)
                rec["agreement"] = swarm.get("agreement")
                rec["recovered"] = swarm.get("recovered")
                rec["dropped"] = swarm.get("dropped")
            records.append(rec)
            echo(f"  {turn.label} #{r}: {rec['category']} in {took:.1f} s {rec['calls'] or ''}")
    return records


def one_instance(
    binary: Path,
    model: Path,
    ctx: int,
    turns: list[Turn],
    repeats: int,
    max_tokens: int,
    logdir: Path,
    extra: list[str],
) -> list[dict[str, Any]]:
    from bench.topology import servers
    from swarm_supervisor.swarm.system import free_port

    argv = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(free_port()),
            "-c", str(ctx), "--parallel", "1", "--threads", "1", "--alias", "bench", *extra]  # fmt: skip
    with servers([argv], logdir) as (server,):
        return replay(f"{server.url}/v1/chat/completions", turns, repeats, max_tokens, 900, click.echo)


def through_swarm(
    home: SwarmHome, up_args: list[str], turns: list[Turn], repeats: int, max_tokens: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from swarm_supervisor.swarm.system import free_port

    home.up(*up_args, "--port", str(free_port()), timeout_s=600)
    try:
        rec = home.record()
        info = {
            "instances": len(rec.get("instances") or []),
            "slots": [i.get("slots") for i in rec.get("instances") or []],
        }
        url = f"{rec['base_url']}/chat/completions"
        return replay(url, turns, repeats, max_tokens, 900, click.echo), info
    finally:
        home.down()


def _template(value: str) -> Path | None:
    if value == "own":
        return None
    path = Path(value)
    if not path.is_absolute():
        path = REPO / path
    if not path.is_file():
        raise click.BadParameter(f"{value}: no such file", param_hint="--template")
    return path


def run_one(
    template: Path | None,
    *,
    binary: Path,
    model: Path,
    turns: list[Turn],
    repeats: int,
    instances: int,
    max_tokens: int,
    context: int,
    only: str,
    base: Path,
    topology: str,
    threads: int,
) -> dict[str, Any]:
    """One template: the lone llama-server, then the swarm; their answers and shares."""
    extra = ["--jinja", "--chat-template-file", str(template)] if template else []
    name = str(template.relative_to(REPO)) if template else "own"
    click.echo(f"== chat template: {name}")
    single: list[dict[str, Any]] = []
    swarm: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    t0 = time.monotonic()
    work = base / name.replace("/", "_")
    work.mkdir()
    if only in ("both", "single"):
        click.echo(f"one llama-server (-c {context}, --parallel 1, --threads 1):")
        single = one_instance(binary, model, context, turns, repeats, max_tokens, work, extra)
    if only in ("both", "swarm"):
        click.echo(f"swarm up --instances {instances}:")
        more = (
            ["--threads", str(threads)] if threads > 0 else []
        )  # after the plan's: llama.cpp takes the last
        tables = {"binary": {"extra_args": extra + more}, "proxy": {"request_timeout_s": 1800.0}}
        with SwarmHome(work / "home", **tables) as home:
            args = ["--model", str(model), "--instances", str(instances), "--llama-server", str(binary)]
            args += ["--topology", topology] if topology != "plan" else []
            swarm, info = through_swarm(home, args, turns, repeats, max_tokens)
    return {
        "chat_template": name,
        "swarm_shape": info,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "shares": summarize(single, swarm),
        "answers": {"one_instance": single, "swarm": swarm},
    }


@click.command("toolcalls")
@click.option(
    "--turns",
    "turns_spec",
    default=DEFAULT_TURNS,
    show_default=True,
    help="Recorded turns to replay: SESSION:TURN,... (files bench/data/agent/SESSION.json.gz).",
)
@click.option("--data", type=click.Path(path_type=Path), default=DATA, show_default=True)
@click.option(
    "--ref",
    default="agentbench",
    show_default=True,
    help="Git ref to read the sessions from when --data lacks them ('' for none).",
)
@click.option("--repeats", default=3, show_default=True, help="Requests per turn (fresh seeds each).")
@click.option("--instances", default=3, show_default=True, help="Voters of the swarm.")
@click.option("--max-tokens", default=256, show_default=True)
@click.option("--context", default=8192, show_default=True, help="Context of the lone llama-server.")
@click.option("--llama-server", "binary_s", help="llama-server (default: the cached one).")
@click.option("--model", "model_s", help="GGUF (default: the embedded SmolLM2).")
@click.option("--only", type=click.Choice(["both", "single", "swarm"]), default="both", show_default=True)
@click.option(
    "--template",
    "templates",
    multiple=True,
    default=("own", "bench/templates/chatml-tools.jinja"),
    show_default=True,
    help="Chat templates to measure, each in turn: 'own' (the model's), or a Jinja file given to "
    "every llama-server with --jinja --chat-template-file. SmolLM2's own template drops the tools; "
    "bench/templates/chatml-tools.jinja shows them to the model.",
)
@click.option(
    "--topology",
    type=click.Choice(["processes", "slots", "plan"]),
    default="plan",
    show_default=True,
    help="The swarm's topology (swarm up --topology; plan: the plan's choice).",
)
@click.option(
    "--threads",
    type=int,
    default=1,
    show_default=True,
    help="--threads of every llama-server (0: as planned). On a busy 2-core machine the plan's one "
    "process of 3 slots with 2 threads generated 0.38 tokens/s (its threads wait at barriers for "
    "cores others hold); with 1 thread it keeps going.",
)
@click.option("--out", default="toolcalls", show_default=True, help="Result name: bench/results/<out>.json.")
def command(turns_spec: str, data: Path, ref: str, repeats: int, instances: int, max_tokens: int,
            context: int, binary_s: str | None, model_s: str | None, only: str,
            templates: tuple[str, ...], topology: str, threads: int, out: str) -> None:  # fmt: skip
    """Share of answers to recorded opencode turns that are tool calls, text, or calls leaked into
    text: one llama-server alone, the swarm's answer, and each voter."""
    from bench.topology import find_binary, find_model

    binary, model = find_binary(binary_s), find_model(model_s)
    chosen = [_template(t) for t in templates]
    turns = load_turns(turns_spec, data, ref or None)
    click.echo(f"{len(turns)} turns x {repeats}: {', '.join(t.label for t in turns)}")
    t0 = time.monotonic()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-toolcalls-") as tmp:
        for template in chosen:
            runs.append(
                run_one(template, binary=binary, model=model, turns=turns, repeats=repeats,
                        instances=instances, max_tokens=max_tokens, context=context, only=only,
                        base=Path(tmp), topology=topology, threads=threads)
            )  # fmt: skip
    cols = ["template", "answers", "n", *CATEGORIES, "no_answer"]
    rows = [
        [run["chat_template"], name, *(row.get(c, "") for c in cols[2:])]
        for run in runs
        for name, row in run["shares"].items()
    ]
    print_table(f"Tool calls on recorded opencode turns ({model.name}, max_tokens {max_tokens})", cols, rows)
    path = write_result(
        out,
        {
            "model": model.name,
            "turns": [t.label for t in turns],
            "repeats": repeats,
            "max_tokens": max_tokens,
            "instances": instances,
            "topology": topology,
            "threads": threads,
            "elapsed_s": round(time.monotonic() - t0, 1),
            "runs": runs,
        },
    )
    click.echo(f"wrote {path}")
