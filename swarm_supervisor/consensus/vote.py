"""The vote: N candidates in, one `Verdict` out. Pure: no I/O, nothing executed.

Strategies:

``similarity``
    Answers are split into code-aware tokens and compared pairwise
    (``rapidfuzz`` Indel similarity on the token lists). Clusters are built around the answer
    with the most neighbours at or above ``threshold``; the medoid of the largest cluster
    wins; equal sizes go to the cluster whose medoid answered first, and so do equal medoids.
``quality``
    First drops empty answers, answers cut off by ``finish_reason: "length"`` while others
    finished, answers with a fenced block that does not parse as the language it names
    (Python through ``ast.parse``, JSON through ``json.loads``; an unlabelled block that looks
    like Python is checked as Python) and, when the request names the function it wants
    (``def NAME(`` or "a function named NAME" in ``prompt``), text answers that define none of
    them. Then votes by similarity over the rest. If every answer was dropped it votes over all.
``fastest``
    The answer with the lowest latency that is not empty.

Tool calls are compared by structure (`toolcalls.signature`), never as text; the winner is a
candidate as it was sent. When some answers are text and some call tools, the kind with more
answers wins (a tie goes to the kind of the fastest answer) and the vote runs inside that kind.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import Indel

from .code import block_problem, code_blocks, defined_functions, python_source, requested_functions
from .tokens import tokenize
from .toolcalls import signature
from .types import Candidate, Dropped, Kind, Strategy, Verdict

DEFAULT_THRESHOLD = 0.85


def vote(
    candidates: Sequence[Candidate],
    strategy: Strategy = "similarity",
    threshold: float = DEFAULT_THRESHOLD,
    *,
    prompt: str | None = None,
) -> Verdict:
    """Choose one of ``candidates``. ``prompt`` (optional) is the request's user text; the
    ``quality`` strategy reads the requested function names from it."""
    n = len(candidates)
    if n == 0:
        raise ValueError("vote() needs at least one candidate")
    if strategy == "fastest":
        return _fastest(candidates)
    if strategy not in ("similarity", "quality"):
        raise ValueError(f"unknown strategy {strategy!r}: use similarity, quality or fastest")

    dropped: list[Dropped] = []
    fallback = False
    pool = list(range(n))
    if strategy == "quality":
        dropped = quality_problems(candidates, prompt)
        gone = {d.index for d in dropped}
        pool = [i for i in range(n) if i not in gone]
        if not pool:
            pool, fallback = list(range(n)), True
    sim, clusters, winner, kind = _similarity_vote(candidates, pool, threshold)
    win_cluster = next(c for c in clusters if winner in c)
    off_diag = [sim[i][j] for i in pool for j in pool if i < j]
    return Verdict(
        winner=winner,
        clusters=clusters,
        agreement=len(win_cluster) / n,
        strategy=strategy,
        kind=kind,
        similarity=sim,
        mean_similarity=sum(off_diag) / len(off_diag) if off_diag else 1.0,
        dropped=[] if fallback else dropped,
        fallback=fallback,
    )


def quorum_reached(
    candidates_so_far: Sequence[Candidate],
    total_voters: int,
    threshold: float = DEFAULT_THRESHOLD,
    strategy: Strategy = "similarity",
    *,
    prompt: str | None = None,
) -> bool:
    """True once a cluster of agreeing answers holds a strict majority of ``total_voters``:
    the answers still out are too few to outvote it, so the proxy can vote now and cancel
    them. With ``fastest`` the first non-empty answer is a quorum. Answers that ``quality``
    would drop do not count (cut-off ones included)."""
    if not candidates_so_far:
        return False
    if strategy == "fastest":
        return any(c.kind != "none" for c in candidates_so_far)
    need = total_voters // 2 + 1
    if len(candidates_so_far) < need:
        return False
    pool = list(range(len(candidates_so_far)))
    if strategy == "quality":
        gone = {d.index for d in quality_problems(candidates_so_far, prompt, others_finished=True)}
        pool = [i for i in pool if i not in gone]
    if len(pool) < need:
        return False
    _, clusters, _, _ = _similarity_vote(candidates_so_far, pool, threshold)
    return max(len(c) for c in clusters) >= need


# --------------------------------------------------------------------------- quality


def quality_problems(
    candidates: Sequence[Candidate], prompt: str | None = None, *, others_finished: bool | None = None
) -> list[Dropped]:
    """The candidates `quality` drops, with the reason, in candidate order.
    ``others_finished`` overrides "did any other candidate finish" (the quorum check uses True)."""
    wanted = requested_functions(prompt) if prompt else set()
    finished = [c.finish_reason != "length" and c.kind != "none" for c in candidates]
    out: list[Dropped] = []
    for i, c in enumerate(candidates):
        if c.kind == "none":
            out.append(Dropped(i, "empty answer"))
            continue
        if c.finish_reason == "length":
            someone_finished = (
                others_finished
                if others_finished is not None
                else any(f for j, f in enumerate(finished) if j != i)
            )
            if someone_finished:
                out.append(Dropped(i, "cut off (finish_reason length) while others finished"))
                continue
        if c.kind != "text" or not c.content:
            continue
        blocks = code_blocks(c.content)
        # a block left open by a cut-off answer cannot parse; judge the blocks that closed
        checked = [b for b in blocks if b.closed or c.finish_reason != "length"]
        problem = next((p for b in checked if (p := block_problem(b)) is not None), None)
        if problem:
            out.append(Dropped(i, problem))
            continue
        if wanted and not (wanted & defined_functions(python_source(c.content))):
            names = ", ".join(sorted(wanted))
            out.append(Dropped(i, f"defines none of the requested functions ({names})"))
    return out


# --------------------------------------------------------------------------- similarity


def _fastest(candidates: Sequence[Candidate]) -> Verdict:
    n = len(candidates)
    order = sorted(range(n), key=lambda i: (candidates[i].kind == "none", candidates[i].latency_s, i))
    w = order[0]
    return Verdict(
        winner=w,
        clusters=[[i] for i in order],
        agreement=1 / n,
        strategy="fastest",
        kind=candidates[w].kind,
    )


def _similarity_vote(
    candidates: Sequence[Candidate], pool: list[int], threshold: float
) -> tuple[list[list[float]], list[list[int]], int, Kind]:
    """Similarity matrix (full size), clusters (winning first), winner, winning kind."""
    n = len(candidates)
    sim = [[0.0] * n for _ in range(n)]
    for i in pool:
        sim[i][i] = 1.0
    lat = [c.latency_s for c in candidates]
    groups: dict[Kind, list[int]] = {"text": [], "tool_calls": [], "none": []}
    for i in pool:
        groups[candidates[i].kind].append(i)

    clusters: list[list[int]] = []
    medoids: dict[int, int] = {}  # cluster position -> medoid
    text = groups["text"]
    if text:
        toks = {i: tokenize(candidates[i].content or "") for i in text}
        for a_pos, a in enumerate(text):
            for b in text[a_pos + 1 :]:
                s = Indel.normalized_similarity(toks[a], toks[b])
                sim[a][b] = sim[b][a] = s
        for members in _leader_clusters(sim, text, threshold, lat):
            medoids[len(clusters)] = _medoid(sim, members, lat)
            clusters.append(members)
    calls = groups["tool_calls"]
    if calls:
        by_sig: dict[object, list[int]] = {}
        for i in calls:
            by_sig.setdefault(signature(candidates[i].tool_calls or []), []).append(i)
        for members in by_sig.values():
            for a in members:
                for b in members:
                    sim[a][b] = 1.0
            medoids[len(clusters)] = min(members, key=lambda i: (lat[i], i))
            clusters.append(members)
    if groups["none"]:
        members = groups["none"]
        for a in members:
            for b in members:
                sim[a][b] = 1.0
        medoids[len(clusters)] = min(members, key=lambda i: (lat[i], i))
        clusters.append(members)

    # the kind with more answers wins; a tie goes to the kind of the fastest answer
    kind_rank = {
        k: (len(v) if k != "none" else -1, -min((lat[i] for i in v), default=0.0)) for k, v in groups.items()
    }
    kinds: tuple[Kind, ...] = ("text", "tool_calls", "none")
    win_kind = max(kinds, key=lambda k: kind_rank[k] if groups[k] else (-2, 0.0))
    order = sorted(
        range(len(clusters)),
        key=lambda p: (
            candidates[medoids[p]].kind != win_kind,
            -len(clusters[p]),
            lat[medoids[p]],
            medoids[p],
        ),
    )
    clusters = [clusters[p] for p in order]
    winner = medoids[order[0]]
    return sim, clusters, winner, win_kind


def _leader_clusters(
    sim: list[list[float]], idx: list[int], threshold: float, lat: list[float]
) -> list[list[int]]:
    """Greedy clustering: the answer with the most neighbours (similarity >= threshold) among
    those left takes them as its cluster; repeat. Every member is close to its cluster's centre."""
    left = list(idx)
    out: list[list[int]] = []
    while left:
        ranks = {i: _rank(sim, i, left, threshold, lat) for i in left}
        centre = max(left, key=ranks.__getitem__)
        members = [j for j in left if sim[centre][j] >= threshold]
        out.append(members)
        left = [j for j in left if j not in members]
    return out


def _rank(
    sim: list[list[float]], i: int, left: list[int], threshold: float, lat: list[float]
) -> tuple[int, float, float, int]:
    near = sum(1 for j in left if sim[i][j] >= threshold)
    return (near, sum(sim[i][j] for j in left), -lat[i], -i)


def _medoid(sim: list[list[float]], members: list[int], lat: list[float]) -> int:
    """The member most similar to the rest; ties go to the faster one."""
    return min(members, key=lambda i: (-sum(sim[i][j] for j in members), lat[i], i))
