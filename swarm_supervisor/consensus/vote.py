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
    (``def NAME(`` or "a function named NAME" in ``prompt``), answers that do not define it.
    Then votes like ``similarity``, but compares the *structure* of the answers' Python (of the
    requested function alone when there is one): comments, docstrings, annotations, quote
    style and the code's own names (v0, v1, ...) taken out, prose around the code ignored.
    If every answer was dropped it votes over all of them, by text.
``fastest``
    The answer with the lowest latency that is not empty.

Tool calls are compared by structure (`toolcalls.signature`), never as text; the winner is a
candidate as it was sent. When some answers are text and some call tools, the kind with more
answers wins (a tie goes to the kind of the fastest answer) and the vote runs inside that kind.
"""

from __future__ import annotations

from collections.abc import Sequence

from .cluster import cluster_vote
from .quality import analyse
from .tokens import tokenize
from .types import STRATEGIES, Candidate, Dropped, Strategy, Verdict

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
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: use similarity, quality or fastest")
    if strategy == "fastest":
        return _fastest(candidates)
    if n == 1:  # nothing to choose between: no analysis (it would cost the proxy for nothing)
        return Verdict(0, [[0]], 1.0, strategy, candidates[0].kind, similarity=[[1.0]])

    dropped: list[Dropped] = []
    fallback = False
    pool = list(range(n))
    keys: dict[int, list[str]] = {}
    if strategy == "quality":
        dropped, keys = analyse(candidates, prompt)
        gone = {d.index for d in dropped}
        pool = [i for i in range(n) if i not in gone]
        if not pool:
            pool, fallback, dropped, keys = list(range(n)), True, [], {}
    for i in pool:
        if i not in keys and candidates[i].kind == "text":
            keys[i] = tokenize(candidates[i].content or "")
    sim, clusters, winner, kind = cluster_vote(candidates, pool, threshold, keys)
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
        dropped=dropped,
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
    if total_voters == 1:
        return True
    if strategy == "fastest":
        return any(c.kind != "none" for c in candidates_so_far)
    need = total_voters // 2 + 1
    if len(candidates_so_far) < need:
        return False
    pool = list(range(len(candidates_so_far)))
    keys: dict[int, list[str]] = {}
    if strategy == "quality":
        dropped, keys = analyse(candidates_so_far, prompt, others_finished=True)
        gone = {d.index for d in dropped}
        pool = [i for i in pool if i not in gone]
        if len(pool) < need:
            return False
    for i in pool:
        if i not in keys and candidates_so_far[i].kind == "text":
            keys[i] = tokenize(candidates_so_far[i].content or "")
    _, clusters, _, _ = cluster_vote(candidates_so_far, pool, threshold, keys)
    return len(clusters[0]) >= need


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
