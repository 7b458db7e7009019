"""Re-run the vote of this checkout on the answers live runs counted, and score the new winners.

Each `python -m bench quality` result keeps, for every voted answer, the candidates its vote
counted (`candidates`: content, finish reason, mean log-probability). This probe votes again on
them with the current `quality` vote (its filters included), executes each winner's program in
the sandbox of `bench.quality_gen.passes` (once per distinct program, cached in ``--cache``), and
prints, per result, the live pass rate against the re-vote's. A hint, not a live run: the
quorum might have waited for other voters had the vote dropped more.

    python -m bench.probes.revote_live --run h200-v3:none --run h200-t08:0.8 [--out F]
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import click

from bench.quality_gen import load_tasks, passes, program_for, program_key, user_message
from bench.quality_pool import DATA
from swarm_supervisor.consensus import Candidate, vote

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _candidates(rec: dict[str, Any]) -> list[Candidate]:
    return [
        Candidate(
            f"v{i}",
            c["content"],
            None,
            c.get("finish_reason", "stop"),
            float(i),
            None,
            (c["mean_logprob"],) if c.get("mean_logprob") is not None else None,
        )
        for i, c in enumerate(rec.get("candidates") or [])
    ]


#: the static checks' reasons name the function and the name; counted by kind
_LINT_KINDS = ("which is defined nowhere", "never reads its parameter", "returns no value")


def _kind(reason: str) -> str:
    return next((k for k in _LINT_KINDS if k in reason), reason.split(":")[0].split(" (")[0])


@click.command()
@click.option("--run", "runs", multiple=True, required=True, help="RESULT:SETTING, e.g. h200-v3:none.")
@click.option("--cache", type=click.Path(path_type=Path), default=Path("/tmp/revote-passed.json"))
@click.option("--out", type=click.Path(path_type=Path))
def main(runs: tuple[str, ...], cache: Path, out: Path | None) -> None:
    tasks = {
        f"{n}/{t['task_id']}": t
        for n in ("micro-dev", "micro2-dev")
        for t in load_tasks(DATA / f"{n}.jsonl.gz")
    }
    extra: dict[str, bool] = json.loads(cache.read_text()) if cache.is_file() else {}
    rows = []

    def ok(task: dict[str, Any], content: str, passed: dict[str, bool]) -> bool:
        program = program_for(task, content)
        key = program_key(program)
        if key not in passed and key not in extra:
            extra[key] = passes(program)
        return passed.get(key, extra.get(key, False))

    for spec in runs:
        result, setting = spec.rsplit(":", 1)
        passed = json.loads((RESULTS / f"quality-live-{result}.passed.json").read_text())
        n = live = again = changed = 0
        drops: Counter[str] = Counter()  # the vote's drop reasons, for the JSON
        with gzip.open(RESULTS / f"quality-live-{result}.answers.jsonl.gz", "rt") as f:
            for line in f:
                rec = json.loads(line)
                cands = _candidates(rec)
                if rec["setting"] != setting or not cands:
                    continue
                task = tasks[rec["task"]]
                verdict = vote(cands, "quality", prompt=user_message(task))
                drops.update(_kind(d.reason) for d in verdict.dropped)
                winner = cands[verdict.winner].content or ""
                n += 1
                live += ok(task, rec["content"], passed)
                again += ok(task, winner, passed)
                changed += winner != rec["content"]
        row = {"run": spec, "votes": n, "live": round(live / n, 4), "revote": round(again / n, 4),
               "diff": round((again - live) / n, 4), "changed": changed, "dropped": drops}  # fmt: skip
        rows.append(row)
        print(f"{spec:22s} votes {n:4d} changed {changed:3d} live {row['live']:.3f} "
              f"revote {row['revote']:.3f} ({row['diff']:+.4f})", flush=True)  # fmt: skip
    votes = sum(r["votes"] for r in rows)
    total = sum(r["diff"] * r["votes"] for r in rows) / votes
    print(f"all {votes} votes: {total:+.4f}")
    cache.write_text(json.dumps(extra))
    if out:
        out.write_text(json.dumps({"runs": rows, "votes": votes, "diff": round(total, 4)}, indent=1))


if __name__ == "__main__":
    main()
