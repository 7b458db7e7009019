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
    The answer with the lowest latency that is not empty. It compares nothing, so its
    agreement is 1/N: it is no evidence that the others would have agreed.

Tool calls are compared by structure (`toolcalls.signature`), never as text. When the request
declared ``tools``, every strategy first recovers calls written as text and drops answers whose
calls do not fit the declared schemas (`tools.prepare`). The vote then has three levels: call
or not (the kind with more answers wins; a tie goes to the kind of the fastest answer), then
the function names with the most votes, then the exact call (canonical JSON arguments) with the
most votes among those. The winner is a candidate as it was sent, or the call it wrote as text
(``Verdict.tool_calls``).

Confidence: where the voters sent their token log-probabilities, equal-sized clusters are
ordered by their members' mean confidence (`certainty`) before the faster medoid.

Agreement is the share of the voters *asked* that sit in the winner's cluster: an answer not
collected (cancelled once a quorum agreed, failed, timed out) or dropped does not agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..vocabulary import STRATEGIES, Strategy
from .certainty import Measure, certainty
from .cluster import cluster_vote
from .quality import analyse
from .tokens import tokenize
from .tools import Toolbox, prepare
from .types import Candidate, Dropped, Verdict

DEFAULT_THRESHOLD = 0.85
#: how the voters' own confidence enters the vote (measured offline, docs/voting.md): the
#: measure that breaks ties between equal clusters, and whether the surest member of the winning
#: cluster wins rather than its medoid (measured: no better, and worse on the held-out set)
DEFAULT_CONFIDENCE: Measure | None = "mean_logprob"
SUREST_IN_CLUSTER = False


def vote(
    candidates: Sequence[Candidate],
    strategy: Strategy = "similarity",
    threshold: float = DEFAULT_THRESHOLD,
    *,
    asked: int | None = None,
    prompt: str | None = None,
    tools: Toolbox | Sequence[Any] | None = None,
    confidence: Measure | None = DEFAULT_CONFIDENCE,
) -> Verdict:
    """Choose one of ``candidates`` (the same arguments as `quorum_reached`, less ``margin``,
    plus ``confidence``). ``asked`` is the number of voters the request went to (default: as
    many as there are candidates): agreement is counted against it, so an answer that was never
    collected (cancelled once a quorum agreed, failed, timed out) does not count as agreeing.
    ``prompt`` (optional) is the request's user text; the ``quality`` strategy reads the
    requested function names from it. ``tools`` is the request's OpenAI
    ``tools`` array (or a `Toolbox` made from it): calls written as text are recovered and
    calls that fail their tool's schema are dropped before the vote (`tools.prepare`).
    ``confidence`` names the measure of the voters' own certainty (`certainty`) that breaks ties
    between clusters of equal size and picks inside the winning cluster; candidates without
    log-probabilities vote as before (None: ignore them)."""
    n = len(candidates)
    if n == 0:
        raise ValueError("vote() needs at least one candidate")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: use similarity, quality or fastest")
    if asked is not None and asked < n:
        raise ValueError(f"asked={asked} voters cannot give {n} candidates")
    total = n if asked is None else asked
    work, dropped, recovered = _prepared(candidates, tools)
    if strategy == "fastest":
        return _fastest(work, total, dropped, recovered)
    if n == 1 and not dropped:  # nothing to choose between: no analysis (it would cost for nothing)
        only = work[0]
        return Verdict(
            0,
            [[0]],
            1 / total,
            strategy,
            only.kind,
            similarity=[[1.0]],
            asked=total,
            recovered=recovered,
            tool_calls=only.tool_calls,
        )

    fallback = False
    keys: dict[int, list[str]] = {}
    if strategy == "quality":
        more, keys = analyse(work, prompt)
        dropped = _merge(dropped, more)
    gone = {d.index for d in dropped}
    pool = [i for i in range(n) if i not in gone]
    if not pool:
        pool, fallback, dropped, keys = list(range(n)), True, [], {}
    for i in pool:
        if i not in keys and work[i].kind == "text":
            keys[i] = tokenize(work[i].content or "")
    conf = [certainty(c, confidence) for c in work] if confidence else None
    if conf is not None and all(v is None for v in conf):
        conf = None
    sim, clusters, winner, kind = cluster_vote(
        work, pool, threshold, keys, conf=conf, surest=SUREST_IN_CLUSTER
    )
    win_cluster = next(c for c in clusters if winner in c)
    off_diag = [sim[i][j] for i in pool for j in pool if i < j]
    return Verdict(
        winner=winner,
        clusters=clusters,
        agreement=len(win_cluster) / total,
        strategy=strategy,
        kind=kind,
        similarity=sim,
        mean_similarity=sum(off_diag) / len(off_diag) if off_diag else 1.0,
        dropped=dropped,
        fallback=fallback,
        asked=total,
        recovered=recovered,
        tool_calls=work[winner].tool_calls,
    )


#: first-to-ahead-by-k: stop once the leading cluster is this many answers ahead of the next;
#: None waits until nothing the others say could change it. Measured offline (docs/voting.md):
#: k = 2 of 5 voters saved 8-9% of the tokens and cost 1-2 points, so it is off by default
DEFAULT_MARGIN: int | None = None


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
    candidates: Sequence[Candidate],
    strategy: Strategy = "similarity",
    threshold: float = DEFAULT_THRESHOLD,
    *,
    asked: int,
    prompt: str | None = None,
    tools: Toolbox | Sequence[Any] | None = None,
    margin: int | None = DEFAULT_MARGIN,
) -> bool:
    """Whether ``candidates``, the answers so far of the ``asked`` voters that can still vote
    (those that failed do not count), already decide the vote: the arguments are `vote`'s.

    True once the answers so far settle the vote (`settled`): the leading cluster is ahead of
    the runner-up by more than the answers still out could close, or by ``margin`` answers
    (first-to-ahead-by-k); the proxy then votes on what it has and cancels the rest. With
    ``fastest`` the first non-empty answer is a quorum. Answers that ``quality`` would drop do
    not count (cut-off ones included), nor do answers with an invalid tool call when ``tools``
    is given (then calls written as text count as the calls they write); they are not
    outstanding either."""
    if not candidates:
        return False
    if asked == 1:
        return True
    work, dropped, _ = _prepared(candidates, tools)
    gone = {d.index for d in dropped}
    if strategy == "fastest":
        return any(c.kind != "none" for i, c in enumerate(work) if i not in gone)
    remaining = max(0, asked - len(work))
    keys: dict[int, list[str]] = {}
    if strategy == "quality":
        more, keys = analyse(work, prompt, others_finished=True)
        gone |= {d.index for d in more}
    pool = [i for i in range(len(work)) if i not in gone]
    if not pool:
        return False
    for i in pool:
        if i not in keys and work[i].kind == "text":
            keys[i] = tokenize(work[i].content or "")
    _, clusters, _, _ = cluster_vote(work, pool, threshold, keys)
    return settled([len(c) for c in clusters], remaining, margin)


def _prepared(
    candidates: Sequence[Candidate], tools: Toolbox | Sequence[Any] | None
) -> tuple[list[Candidate], list[Dropped], dict[int, str]]:
    if tools is None:
        return list(candidates), [], {}
    box = tools if isinstance(tools, Toolbox) else Toolbox.from_openai(tools)
    prep = prepare(candidates, box)
    return prep.candidates, prep.dropped, dict(prep.recovered)


def _merge(first: list[Dropped], more: list[Dropped]) -> list[Dropped]:
    """Both lists of drops, one entry per candidate (the first reason), in candidate order."""
    seen = {d.index for d in first}
    return sorted(first + [d for d in more if d.index not in seen], key=lambda d: d.index)


def _fastest(
    candidates: Sequence[Candidate], total: int, dropped: list[Dropped], recovered: dict[int, str]
) -> Verdict:
    """The fastest answer that is not empty (nor dropped, unless all were). It is not compared
    with the others, so its agreement is one voter of those asked: no evidence of agreement."""
    n = len(candidates)
    gone = {d.index for d in dropped}
    if len(gone) == n:
        gone, dropped = set(), []
    order = sorted(
        range(n), key=lambda i: (i in gone, candidates[i].kind == "none", candidates[i].latency_s, i)
    )
    w = order[0]
    return Verdict(
        winner=w,
        clusters=[[i] for i in order],
        agreement=1 / total,
        strategy="fastest",
        kind=candidates[w].kind,
        dropped=dropped,
        asked=total,
        recovered=recovered,
        tool_calls=candidates[w].tool_calls,
    )
