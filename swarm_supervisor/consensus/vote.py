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

Confidence: where the voters sent their token log-probabilities, equal-sized clusters are
ordered by their members' mean confidence (`certainty`), and the surest member of the winning
cluster wins instead of its medoid.

Tool calls are compared by structure (`toolcalls.signature`), never as text; the winner is a
candidate as it was sent. When some answers are text and some call tools, the kind with more
answers wins (a tie goes to the kind of the fastest answer) and the vote runs inside that kind.
"""

from __future__ import annotations

from collections.abc import Sequence

from .certainty import Measure, certainty
from .cluster import cluster_vote
from .quality import analyse
from .tokens import tokenize
from .types import STRATEGIES, Candidate, Dropped, Strategy, Verdict

DEFAULT_THRESHOLD = 0.85
#: how the voters' own confidence enters the vote (measured offline, docs/voting.md):
#: the measure, and whether the surest member of the winning cluster wins rather than its medoid
DEFAULT_CONFIDENCE: Measure | None = "mean_logprob"
SUREST_IN_CLUSTER = True


def vote(
    candidates: Sequence[Candidate],
    strategy: Strategy = "similarity",
    threshold: float = DEFAULT_THRESHOLD,
    *,
    prompt: str | None = None,
    confidence: Measure | None = DEFAULT_CONFIDENCE,
) -> Verdict:
    """Choose one of ``candidates``. ``prompt`` (optional) is the request's user text; the
    ``quality`` strategy reads the requested function names from it. ``confidence`` names the
    measure of the voters' own certainty (`certainty`) that breaks ties between clusters of
    equal size and picks inside the winning cluster; candidates without log-probabilities
    vote as before (None: ignore them)."""
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
    conf = [certainty(c, confidence) for c in candidates] if confidence else None
    if conf is not None and all(v is None for v in conf):
        conf = None
    sim, clusters, winner, kind = cluster_vote(
        candidates, pool, threshold, keys, conf=conf, surest=SUREST_IN_CLUSTER
    )
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


#: first-to-ahead-by-k: stop once the leading cluster is this many answers ahead of the next
#: (measured offline, docs/voting.md); None waits until nothing the others say could change it
DEFAULT_MARGIN: int | None = 2


def settled(sizes: Sequence[int], remaining: int, margin: int | None = DEFAULT_MARGIN) -> bool:
    """Whether a vote with clusters of ``sizes`` so far and ``remaining`` voters still out may
    stop: the leader is ahead of the runner-up by more than the remaining voters could close
    (all joining the runner-up, or forming a new cluster), or by at least ``margin``.

    >>> settled([2], remaining=3, margin=None), settled([2], remaining=3, margin=2)
    (False, True)
    """
    if not sizes:
        return False
    ordered = sorted(sizes, reverse=True)
    gap = ordered[0] - (ordered[1] if len(ordered) > 1 else 0)
    if gap > remaining:
        return True
    return margin is not None and margin > 0 and gap >= margin


def quorum_reached(
    candidates_so_far: Sequence[Candidate],
    total_voters: int,
    threshold: float = DEFAULT_THRESHOLD,
    strategy: Strategy = "similarity",
    *,
    prompt: str | None = None,
    margin: int | None = DEFAULT_MARGIN,
) -> bool:
    """True once the answers so far settle the vote (`settled`): the leading cluster is ahead of
    the runner-up by more than the answers still out could close, or by ``margin`` answers
    (first-to-ahead-by-k); the proxy then votes on what it has and cancels the rest. With
    ``fastest`` the first non-empty answer is a quorum. Answers that ``quality`` would drop do
    not count (cut-off ones included); they are not outstanding either."""
    if not candidates_so_far:
        return False
    if total_voters == 1:
        return True
    if strategy == "fastest":
        return any(c.kind != "none" for c in candidates_so_far)
    remaining = max(0, total_voters - len(candidates_so_far))
    pool = list(range(len(candidates_so_far)))
    keys: dict[int, list[str]] = {}
    if strategy == "quality":
        dropped, keys = analyse(candidates_so_far, prompt, others_finished=True)
        gone = {d.index for d in dropped}
        pool = [i for i in pool if i not in gone]
        if not pool:
            return False
    for i in pool:
        if i not in keys and candidates_so_far[i].kind == "text":
            keys[i] = tokenize(candidates_so_far[i].content or "")
    _, clusters, _, _ = cluster_vote(candidates_so_far, pool, threshold, keys)
    return settled([len(c) for c in clusters], remaining, margin)


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
