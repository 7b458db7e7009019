"""Clustering answers by pairwise similarity: the part of the vote every strategy but
`fastest` shares.

The vote has three levels where tool calls are concerned: "call or not" (the kind with more
answers wins), then the function names (the names with the most votes), then the arguments
(the exact call, canonical JSON, with the most votes among those names)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rapidfuzz.distance import Indel

from .toolcalls import Signature, names_of, signature
from .types import Candidate, Kind

_KINDS: tuple[Kind, ...] = ("text", "tool_calls", "none")


def cluster_vote(
    candidates: Sequence[Candidate],
    pool: list[int],
    threshold: float,
    keys: dict[int, list[str]],
    *,
    conf: Sequence[float | None] | None = None,
    surest: bool = False,
) -> tuple[list[list[float]], list[list[int]], int, Kind]:
    """Vote among ``pool`` (indices into ``candidates``); text answers are compared on
    ``keys[i]`` (token lists), tool calls on their structure. Returns the full similarity
    matrix, the clusters (winning first), the winner and the winning kind.

    ``conf`` (one value per candidate, None where unknown) breaks ties between clusters of
    equal size: the one whose members were surer on average wins. With ``surest`` the winner
    is the surest member of the winning cluster rather than its medoid."""
    n = len(candidates)
    sim = [[0.0] * n for _ in range(n)]
    for i in pool:
        sim[i][i] = 1.0
    lat = [c.latency_s for c in candidates]
    groups: dict[Kind, list[int]] = {"text": [], "tool_calls": [], "none": []}
    for i in pool:
        groups[candidates[i].kind].append(i)

    clusters: list[list[int]] = []
    medoids: list[int] = []
    text = groups["text"]
    for a_pos, a in enumerate(text):
        for b in text[a_pos + 1 :]:
            s = Indel.normalized_similarity(keys[a], keys[b])
            sim[a][b] = sim[b][a] = s
    for members in leader_clusters(sim, text, threshold, lat):
        clusters.append(members)
        medoids.append(medoid(sim, members, lat))
    # text clusters rank by their size; tool calls by the votes for their function names first,
    # then by the votes for the exact call (name and canonical arguments)
    rank = [len(members) for members in clusters]
    by_sig: dict[Signature, list[int]] = {}
    for i in groups["tool_calls"]:
        by_sig.setdefault(signature(candidates[i].tool_calls or []), []).append(i)
    name_votes: dict[tuple[str, ...], int] = {}
    for sig, members in by_sig.items():
        name_votes[names_of(sig)] = name_votes.get(names_of(sig), 0) + len(members)
    same = [(m, name_votes[names_of(sig)]) for sig, m in by_sig.items()]
    if groups["none"]:
        same.append((groups["none"], len(groups["none"])))
    for members, votes in same:
        for a in members:
            for b in members:
                sim[a][b] = 1.0
        clusters.append(members)
        medoids.append(min(members, key=lambda i: (lat[i], i)))
        rank.append(votes)

    # the kind with more answers wins (empty answers only when there is nothing else);
    # a tie goes to the kind of the fastest answer
    def kind_rank(k: Kind) -> tuple[int, float]:
        if not groups[k]:
            return (-2, 0.0)
        return (len(groups[k]) if k != "none" else -1, -min(lat[i] for i in groups[k]))

    win_kind = max(_KINDS, key=kind_rank)
    sure = [_mean_known(conf, members) for members in clusters] if conf else [0.0] * len(clusters)
    order = sorted(
        range(len(clusters)),
        key=lambda p: (
            candidates[medoids[p]].kind != win_kind,
            -rank[p],
            -len(clusters[p]),
            -sure[p],
            lat[medoids[p]],
            medoids[p],
        ),
    )
    best = order[0]
    winner = medoids[best]
    if surest and conf:
        known = [i for i in clusters[best] if conf[i] is not None]
        if known:
            winner = max(known, key=lambda i: (conf[i] or 0.0, -lat[i], -i))
    return sim, [clusters[p] for p in order], winner, win_kind


def _mean_known(conf: Sequence[float | None], members: list[int]) -> float:
    """The members' mean confidence; -inf when none is known (so it never wins a tie on it)."""
    known = [v for i in members if (v := conf[i]) is not None]
    return sum(known) / len(known) if known else -math.inf


def leader_clusters(
    sim: list[list[float]], idx: list[int], threshold: float, lat: list[float]
) -> list[list[int]]:
    """Greedy clustering: the answer with the most neighbours (similarity >= threshold) among
    those left takes them as its cluster; repeat. Every member is close to its cluster's centre.
    Ties: more total similarity, then the faster answer."""
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
    row = sim[i]
    near = sum(1 for j in left if row[j] >= threshold)
    return (near, sum(row[j] for j in left), -lat[i], -i)


def medoid(sim: list[list[float]], members: list[int], lat: list[float]) -> int:
    """The member most similar to the rest; ties go to the faster one."""
    return min(members, key=lambda i: (-sum(sim[i][j] for j in members), lat[i], i))
