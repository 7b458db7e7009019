"""The pickers ``python -m bench quality-offline`` simulates, over the candidate pool read as
:class:`TaskPool` s (every answer with its temperature, pass/fail, tokens and confidence, and
the pairwise structure similarity): the quality vote with tie-breaking and within-cluster
options, and the no-vote baselines, by name in ``PICKERS``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rapidfuzz.distance import Indel

from bench.quality_gen import load_tasks, user_message
from bench.quality_pool import DATA
from swarm_supervisor.consensus import Candidate, analyse, tokenize
from swarm_supervisor.consensus.certainty import mean_logprob, self_certainty
from swarm_supervisor.consensus.cluster import leader_clusters, medoid
from swarm_supervisor.consensus.vote import DEFAULT_THRESHOLD


@dataclass
class Answer:
    temperature: float
    ok: bool
    tokens: int
    cand: Candidate
    conf: dict[str, float]


@dataclass
class TaskPool:
    key: str
    greedy: Answer
    by_temp: dict[float, list[Answer]]
    answers: list[Answer]  # greedy first (index 0), then every sample
    sim: list[list[float]]  # structure similarity (quality's keys), all answers
    problem: list[bool]  # quality drops it for a reason other than being cut off
    prompt: str


def _answer(rec: dict[str, Any], ok: bool, i: int) -> Answer:
    lps = tuple(rec["lp"]) or None
    tops = tuple(tuple(r) for r in rec["top"]) or None
    cand = Candidate(f"v{i}", rec["content"], None, rec["finish_reason"], float(i), None, lps, tops)
    conf = {"mean_logprob": mean_logprob(cand) or -99.0, "self_certainty": self_certainty(cand) or 0.0}
    return Answer(rec["temperature"], ok, rec["tokens"], cand, conf)


def task_pools(pool: dict[str, Any], name: str) -> list[TaskPool]:
    tasks = {t["task_id"]: t for t in load_tasks(DATA / f"{name}.jsonl.gz")}
    out = []
    for tid in pool["sets"][name]:
        recs = pool["answers"].get(f"{name}/{tid}")
        if not recs:
            continue
        answers = [_answer(r, pool["passed"][r["program"]], i) for i, r in enumerate(recs)]
        greedy = next(a for a in answers if a.temperature == 0.0)
        by_temp: dict[float, list[Answer]] = {}
        for a in answers:
            if a is not greedy:
                by_temp.setdefault(a.temperature, []).append(a)
        prompt = user_message(tasks[tid])
        cands = [a.cand for a in answers]
        dropped, keys = analyse(cands, prompt, others_finished=False)
        problem = [False] * len(answers)
        for d in dropped:
            problem[d.index] = True
        for i, c in enumerate(cands):
            if i not in keys:
                keys[i] = tokenize(c.content or "")
        n = len(answers)
        sim = [[1.0] * n for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                sim[i][j] = sim[j][i] = Indel.normalized_similarity(keys[i], keys[j])
        assert answers[0] is greedy, "the pool lists the greedy answer first"
        out.append(TaskPool(tid, greedy, by_temp, answers, sim, problem, prompt))
    return out


Pick = Callable[[TaskPool, list[int]], int]


def pool_of(tp: TaskPool, idx: list[int]) -> list[int]:
    """What `quality` keeps of the draw ``idx`` (same rules as consensus.quality.analyse)."""
    finished = {
        i for i in idx if tp.answers[i].cand.finish_reason != "length" and tp.answers[i].cand.kind != "none"
    }
    keep = []
    for i in idx:
        if tp.problem[i]:
            continue
        if tp.answers[i].cand.finish_reason == "length" and finished - {i}:
            continue
        keep.append(i)
    return keep or list(idx)


def clusters_of(tp: TaskPool, keep: list[int]) -> list[list[int]]:
    lat = [float(a.tokens) for a in tp.answers]
    return leader_clusters(tp.sim, keep, DEFAULT_THRESHOLD, lat)


def picker(
    tie: str | None = None, within: str | None = None, weight: str | None = None, anchor: bool = False
) -> Pick:
    """The quality vote with options: ``tie`` breaks equal cluster sizes by the members' mean
    confidence (a measure name), ``within`` picks the surest member of the winning cluster
    instead of its medoid, ``weight`` counts a cluster as the sum of exp(mean logprob) of its
    members, ``anchor`` breaks equal sizes towards the greedy voter's cluster."""

    def pick(tp: TaskPool, idx: list[int]) -> int:
        keep = pool_of(tp, idx)
        lat = [float(a.tokens) for a in tp.answers]
        groups = leader_clusters(tp.sim, keep, DEFAULT_THRESHOLD, lat)
        meds = [medoid(tp.sim, g, lat) for g in groups]

        def conf(i: int, m: str) -> float:
            return tp.answers[i].conf[m]

        def rank(p: int) -> tuple[float, ...]:
            g = groups[p]
            size = sum(2.718281828 ** conf(i, weight) for i in g) if weight else float(len(g))
            key: list[float] = [-size]
            if anchor:
                key.append(-float(0 in g))
            if tie:
                key.append(-statistics.mean(conf(i, tie) for i in g))
            key += [lat[meds[p]], meds[p]]
            return tuple(key)

        best = min(range(len(groups)), key=rank)
        if within:
            return max(groups[best], key=lambda i: (conf(i, within), -lat[i]))
        return meds[best]

    return pick


def max_confidence(measure: str) -> Pick:
    """No vote: the surest answer that `quality` keeps."""

    def pick(tp: TaskPool, idx: list[int]) -> int:
        return max(pool_of(tp, idx), key=lambda i: tp.answers[i].conf[measure])

    return pick


PICKERS: dict[str, Pick] = {
    "quality": picker(),
    "quality, anchor ties": picker(anchor=True),
    "+ties by mean logprob": picker(tie="mean_logprob"),
    "+ties by self-certainty": picker(tie="self_certainty"),
    "+ties and within by mean logprob": picker(tie="mean_logprob", within="mean_logprob"),
    "+ties and within by self-certainty": picker(tie="self_certainty", within="self_certainty"),
    "anchor ties, then ties and within by mean logprob": picker(
        anchor=True, tie="mean_logprob", within="mean_logprob"
    ),
    "weighted by exp(mean logprob)": picker(weight="mean_logprob", within="mean_logprob"),
    "max mean logprob (no vote)": max_confidence("mean_logprob"),
    "max self-certainty (no vote)": max_confidence("self_certainty"),
}
