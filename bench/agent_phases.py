"""The two phases of ``python -m bench agent``: the sessions fitted to a slot's context, a
:class:`Target` (the swarm or the baseline llama-server), phase 1 (each session turn by turn, the
two targets interleaved) and phase M (M sessions at once against one target).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx

from bench.agent_replay import (
    Session,
    Turn,
    count_tokens,
    evaluated,
    prepare,
    prompt_tokens_total,
    stream_turn,
)

TIMEOUT_S = 900.0


def fit_sessions(
    sessions: list[Session],
    base_url: str,
    *,
    context: int,
    max_tokens: int,
    max_prompt: int | None,
    max_turns: int | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each session's turns that fit (prompt + answer within ``context``, prompt within
    ``max_prompt``, at most ``max_turns``), with their prompt tokens; and what was dropped."""
    kept, dropped = [], []
    with httpx.Client(timeout=60.0, trust_env=False) as c:
        for s in sessions:
            turns = []
            for i, body in enumerate(s.turns):
                if max_turns is not None and i >= max_turns:
                    dropped.append({"session": s.name, "turn": i, "why": f"--max-turns {max_turns}"})
                    continue
                tokens, how = count_tokens(c, base_url, body)
                why = None
                if tokens + max_tokens > context:
                    why = f"{tokens} prompt + {max_tokens} answer tokens > {context} context"
                elif max_prompt is not None and tokens > max_prompt:
                    why = f"{tokens} prompt tokens > --max-prompt-tokens {max_prompt}"
                if why:
                    dropped.append({"session": s.name, "turn": i, "prompt_tokens": tokens, "why": why})
                    continue
                turns.append({"index": i, "body": body, "prompt_tokens": tokens, "counted_by": how})
            if turns:
                kept.append({"session": s, "turns": turns})
    return kept, dropped


class Target:
    """One endpoint: its chat URL, where its ``/metrics`` is, and the model name to send."""

    def __init__(self, name: str, base: str, chat: str, model: str) -> None:
        self.name, self.base, self.chat, self.model = name, base, chat, model

    async def turn(self, client: httpx.AsyncClient, body: dict[str, Any], max_tokens: int) -> dict[str, Any]:
        before = await prompt_tokens_total(client, self.base)
        t = await stream_turn(client, self.chat, prepare(body, model=self.model, max_tokens=max_tokens))
        after = await prompt_tokens_total(client, self.base)
        return {
            **t.as_dict(),
            "evaluated_prompt_tokens": evaluated(before, after),
            "instances_read": len(after),
        }


async def phase_one(
    targets: list[Target],
    fitted: list[dict[str, Any]],
    repeats: int,
    max_tokens: int,
    deadline: float,
    echo: Any,
) -> list[dict[str, Any]]:
    """Phase 1; no turn starts after ``deadline`` (time.monotonic)."""
    rows: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False) as client:
        for t in targets:  # warm-up: pages the weights in; not measured
            await stream_turn(
                client,
                t.chat,
                {
                    "model": t.model,
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 4,
                    "stream": True,
                },
            )
        flip = 0
        for r in range(repeats):
            for item in fitted:
                s: Session = item["session"]
                prev = 0
                for turn in item["turns"]:
                    if time.monotonic() > deadline:
                        echo(f"  the time budget is spent: stopped before {s.name} turn {turn['index']}")
                        return rows
                    order = targets if flip % 2 == 0 else targets[::-1]
                    flip += 1
                    row: dict[str, Any] = {
                        "repeat": r,
                        "session": s.name,
                        "turn": turn["index"],
                        "prompt_tokens": turn["prompt_tokens"],
                        "new_tokens": turn["prompt_tokens"] - prev,
                        "first": order[0].name,
                    }
                    prev = turn["prompt_tokens"]
                    for t in order:
                        row[t.name] = await t.turn(client, turn["body"], max_tokens)
                    sw, bl = row["swarm"], row["baseline"]
                    echo(
                        f"  r{r} {s.name} turn {turn['index']} ({turn['prompt_tokens']} tok): "
                        f"swarm {sw['answer_s']:.1f} s / {sw['evaluated_prompt_tokens']:.0f} eval, "
                        f"baseline {bl['answer_s']:.1f} s / {bl['evaluated_prompt_tokens']:.0f} eval"
                        + (f"  ERR swarm: {sw['error']}" if sw["error"] else "")
                        + (f"  ERR baseline: {bl['error']}" if bl["error"] else "")
                    )
                    rows.append(row)
    return rows


async def phase_m(target: Target, fitted: list[dict[str, Any]], m: int, max_tokens: int) -> dict[str, Any]:
    """``m`` sessions at once (session j of the fitted list for worker j, wrapping around), each
    turn by turn against ``target``: answers/s over the wall time, p50/p95 seconds a turn."""
    limits = httpx.Limits(max_connections=4 * m + 8)
    async with httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False, limits=limits) as client:
        before = await prompt_tokens_total(client, target.base)

        async def worker(j: int) -> list[tuple[str, int, Turn]]:
            item = fitted[j % len(fitted)]
            out = []
            for turn in item["turns"]:
                body = prepare(turn["body"], model=target.model, max_tokens=max_tokens)
                out.append(
                    (item["session"].name, turn["index"], await stream_turn(client, target.chat, body))
                )
            return out

        t0 = time.perf_counter()
        results = await asyncio.gather(*(worker(j) for j in range(m)))
        wall = time.perf_counter() - t0
        after = await prompt_tokens_total(client, target.base)
    turns = [t for w in results for t in w]
    ok = [t.answer_s for _, _, t in turns if t.ok]
    q = statistics.quantiles(ok, n=20, method="inclusive") if len(ok) >= 2 else ok * 19
    return {
        "m": m,
        "target": target.name,
        "sessions": sorted({fitted[j % len(fitted)]["session"].name for j in range(m)}),
        "answers": len(ok),
        "errors": [t.error for _, _, t in turns if not t.ok],
        "wall_s": wall,
        "answers_per_s": len(ok) / wall if wall else 0.0,
        "p50_s": statistics.median(ok) if ok else None,
        "p95_s": q[18] if ok else None,
        "evaluated_prompt_tokens": evaluated(before, after),
        "turns": [{"session": s, "turn": i, **t.as_dict()} for s, i, t in turns],
    }
