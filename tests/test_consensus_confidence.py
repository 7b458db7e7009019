"""The voters' confidence in the vote, and when a vote may stop early (first-to-ahead-by-k)."""

from __future__ import annotations

import pytest

from swarm_supervisor.consensus import Candidate, quorum_reached, vote
from swarm_supervisor.consensus.vote import settled

PROMPT = 'def is_even(n: int) -> bool:\n    """Return True if n is even."""\n'
MOD = "```python\ndef is_even(n):\n    return n % 2 == 0\n```\n"
MOD_DOC = '```python\ndef is_even(n):\n    """Even."""\n    return n % 2 == 0\n```\n'
BIT = "```python\ndef is_even(n):\n    return (n & 1) == 0\n```\n"
STR = "```python\ndef is_even(n):\n    return str(n)[-1] in '02468'\n```\n"
BROKEN = "```python\ndef is_even(n)\n    return n % 2 == 0\n```\n"


def c(voter: str, text: str, lp: float | None = None, latency: float = 1.0) -> Candidate:
    return Candidate(voter, text, latency_s=latency, token_logprobs=None if lp is None else (lp, lp))


def test_a_tie_between_clusters_goes_to_the_surer_one() -> None:
    # two against two: without confidence the cluster of the fastest medoid wins
    answers = [c("a", BIT, -0.9, 0.1), c("b", BIT, -0.8, 0.2), c("c", MOD, -0.1, 0.5), c("d", MOD, -0.2, 0.6)]
    assert vote(answers, "quality", prompt=PROMPT, confidence=None).winner in (0, 1)
    v = vote(answers, "quality", prompt=PROMPT)
    assert v.winner == 2 and sorted(v.clusters[0]) == [2, 3]


def test_size_still_beats_confidence() -> None:
    answers = [
        c("a", BIT, -1.5),
        c("b", BIT, -1.4),
        c("c", BIT, -1.6),
        c("d", MOD, -0.01),
        c("e", MOD, -0.02),
    ]
    assert vote(answers, "quality", prompt=PROMPT).winner in (0, 1, 2)


def test_inside_the_winning_cluster_the_medoid_still_wins() -> None:
    # measured: picking the surest member instead of the medoid did not help (docs/voting.md)
    answers = [
        c("a", MOD, -0.6, 0.1),
        c("b", MOD_DOC, -0.05, 0.9),
        c("c", MOD, -0.5, 0.2),
        c("d", STR, -0.01),
    ]
    v = vote(answers, "quality", prompt=PROMPT)
    assert (
        v.winner in (0, 1, 2) and v.winner == vote(answers, "quality", prompt=PROMPT, confidence=None).winner
    )
    assert v.agreement == pytest.approx(0.75)


def test_cluster_vote_can_pick_the_surest_member() -> None:
    from swarm_supervisor.consensus.cluster import cluster_vote

    answers = [c("a", "x = 1"), c("b", "x = 1"), c("c", "x = 1")]
    keys = {i: ["x", "=", "1"] for i in range(3)}
    conf = [-0.5, -0.1, None]
    assert cluster_vote(answers, [0, 1, 2], 0.85, keys, conf=conf, surest=True)[2] == 1
    assert cluster_vote(answers, [0, 1, 2], 0.85, keys, conf=conf)[2] == 0  # the medoid (first)


def test_dropped_answers_never_win_on_confidence() -> None:
    answers = [c("a", BROKEN, -0.001), c("b", MOD, -0.9), c("c", STR, -0.8)]
    v = vote(answers, "quality", prompt=PROMPT)
    assert v.winner != 0 and [d.index for d in v.dropped] == [0]


def test_without_logprobs_the_vote_is_unchanged() -> None:
    answers = [
        c("a", BIT, latency=0.1),
        c("b", BIT, latency=0.2),
        c("c", MOD, latency=0.5),
        c("d", MOD, latency=0.3),
    ]
    assert (
        vote(answers, "quality", prompt=PROMPT).winner
        == vote(answers, "quality", prompt=PROMPT, confidence=None).winner
    )
    # some with and some without: the known ones decide the tie
    mixed = [c("a", BIT, latency=0.1), c("b", BIT, latency=0.2), c("c", MOD, -0.3), c("d", MOD, latency=0.3)]
    assert vote(mixed, "quality", prompt=PROMPT).winner in (2, 3)  # the MOD cluster


def test_settled_when_the_lead_cannot_be_closed_or_is_k_ahead() -> None:
    assert not settled([], 5)
    assert settled([3], remaining=2, margin=None)  # 3 against at most 2
    assert not settled([2], remaining=2, margin=None)  # the other 2 could tie
    assert settled([2], remaining=2, margin=2)  # first to ahead by 2
    assert not settled([2, 1], remaining=2, margin=2)
    assert settled([3, 1], remaining=1, margin=None)
    assert not settled([2, 2], remaining=0, margin=3)  # a tie; all in (the caller stops anyway)
    assert settled([1, 2, 1], remaining=0, margin=None) is True  # order of sizes does not matter
    assert not settled([1], remaining=4, margin=0)  # margin 0 means no early stop, not "always"


def test_quorum_with_a_margin_stops_on_two_agreeing_answers() -> None:
    two = [c("a", MOD), c("b", MOD_DOC)]
    assert not quorum_reached(two, "quality", asked=5, prompt=PROMPT, margin=None)
    assert quorum_reached(two, "quality", asked=5, prompt=PROMPT, margin=2)
    split = [c("a", MOD), c("b", BIT)]
    assert not quorum_reached(split, "quality", asked=5, prompt=PROMPT, margin=2)
    # dropped answers are neither votes nor outstanding
    assert not quorum_reached(
        [c("a", MOD), c("b", BROKEN)], asked=3, strategy="quality", prompt=PROMPT, margin=2
    )
    assert quorum_reached(
        [c("a", MOD), c("b", BROKEN), c("c", MOD)], asked=3, strategy="quality", prompt=PROMPT, margin=None
    )


def test_two_voters_stop_only_when_they_agree() -> None:
    assert quorum_reached(
        [c("a", MOD), c("b", MOD_DOC)], asked=2, strategy="quality", prompt=PROMPT, margin=2
    )
    assert not quorum_reached([c("a", MOD)], "quality", asked=2, prompt=PROMPT, margin=2)
