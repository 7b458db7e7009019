"""What each process is asked for in a voted request (proxy.sampling.voter_groups)."""

from __future__ import annotations

from typing import Any

import pytest

from swarm_supervisor.proxy.sampling import TOP_LOGPROBS, VOTER_TEMPERATURE, Group, voter_groups

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "def f(x):"}]}


def temps(groups: list[list[Group]]) -> list[list[tuple[int, Any]]]:
    return [[(g.n, g.overrides.get("temperature")) for g in p] for p in groups]


def test_every_process_gets_exactly_its_voters() -> None:
    for per in ([5], [1, 1, 1, 1, 1], [3, 2], [2, 0, 3], [1], [8, 8]):
        for body in (CHAT, {**CHAT, "temperature": 0.5}, {**CHAT, "temperature": 0}):
            groups = voter_groups(per, body, "quality")
            assert [sum(g.n for g in p) for p in groups] == per
            assert all(g.n >= 1 for p in groups for g in p)


def test_no_client_temperature_samples_every_voter_at_the_voter_temperature() -> None:
    # one request per process, whatever the layout: the prompt is evaluated once per process
    assert temps(voter_groups([5], CHAT, "similarity")) == [[(5, VOTER_TEMPERATURE)]]
    assert temps(voter_groups([1, 1, 1], CHAT, "similarity")) == [[(1, 0.2)], [(1, 0.2)], [(1, 0.2)]]
    assert temps(voter_groups([3, 0, 2], CHAT, "similarity")) == [[(3, 0.2)], [], [(2, 0.2)]]
    # agent turns too (the same single request per process)
    agent = {**CHAT, "tools": [{"type": "function", "function": {"name": "read", "parameters": {}}}]}
    assert temps(voter_groups([3, 2], agent, "quality")) == [[(3, 0.2)], [(2, 0.2)]]


def test_the_voter_temperature_is_the_config_s_and_none_leaves_it_to_llama_server() -> None:
    assert temps(voter_groups([4], CHAT, "similarity", 0.5)) == [[(4, 0.5)]]
    assert [(g.n, g.overrides) for g in voter_groups([4], CHAT, "similarity", None)[0]] == [(4, {})]


def test_a_lone_voter_without_a_client_temperature_decodes_greedily() -> None:
    """Nothing to vote on: its single best guess, not a sample."""
    assert temps(voter_groups([1], CHAT, "similarity")) == [[(1, 0.0)]]
    assert temps(voter_groups([0, 1], CHAT, "similarity")) == [[], [(1, 0.0)]]
    assert voter_groups([1], CHAT, "similarity", None) == [[Group(1, {})]]


def test_a_client_temperature_above_the_voter_temperature_is_lowered_to_it_in_a_vote() -> None:
    """Measured live: voters at 0.2 beat voters at a client's 0.8 by 3.2 points (docs/voting.md)."""
    for t in (0.5, 0.8, 1.5):
        body = {**CHAT, "temperature": t}
        assert temps(voter_groups([4], body, "similarity")) == [[(4, VOTER_TEMPERATURE)]]
        assert temps(voter_groups([2, 2], body, "quality")) == [[(2, 0.2)], [(2, 0.2)]]
        assert temps(voter_groups([3], body, "quality", 0.6)) == [[(3, 0.6 if t > 0.6 else None)]]


def test_a_client_temperature_at_or_below_the_voter_temperature_stands() -> None:
    for t in (0, 0.1, 0.2):
        assert temps(voter_groups([4], {**CHAT, "temperature": t}, "similarity")) == [[(4, None)]]


def test_keep_and_no_vote_leave_the_client_temperature_to_every_voter() -> None:
    body = {**CHAT, "temperature": 0.8}
    assert [(g.n, g.overrides) for g in voter_groups([4], body, "similarity", cap=False)[0]] == [(4, {})]
    assert temps(voter_groups([2, 2], body, "fastest")) == [[(2, None)], [(2, None)]]  # the first wins
    assert temps(voter_groups([4], body, "similarity", None)) == [[(4, None)]]  # "llama-server": no number


def test_a_client_temperature_of_zero_is_greedy_for_every_voter() -> None:
    assert [(g.n, g.overrides) for g in voter_groups([3], {**CHAT, "temperature": 0}, "similarity")[0]] == [
        (3, {})
    ]


def test_a_single_voter_is_left_as_the_client_asked() -> None:
    assert voter_groups([1], {**CHAT, "temperature": 0.7}, "similarity") == [[Group(1, {})]]


def test_confidence_is_asked_for_only_where_the_vote_reads_it_and_llama_server_allows_it() -> None:
    q = voter_groups([2], CHAT, "quality")[0]
    assert all(g.overrides["logprobs"] is True and g.overrides["top_logprobs"] == TOP_LOGPROBS for g in q)
    assert all("logprobs" not in g.overrides for g in voter_groups([2], CHAT, "similarity")[0])
    # llama-server refuses logprobs with tools on a stream, and voters are streamed
    tools = {**CHAT, "tools": [{"type": "function", "function": {"name": "read", "parameters": {}}}]}
    assert all("logprobs" not in g.overrides for g in voter_groups([2], tools, "quality")[0])
    # the client's own choice stands
    own = voter_groups([2], {**CHAT, "logprobs": True, "top_logprobs": 2}, "quality")[0]
    assert all("logprobs" not in g.overrides and "top_logprobs" not in g.overrides for g in own)


def test_seeds_are_left_to_the_fan_out() -> None:
    for p in voter_groups([3, 2], {**CHAT, "seed": 5}, "quality"):
        assert all("seed" not in g.overrides for g in p)


def test_bad_voter_counts_are_an_error() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        voter_groups([2, -1], CHAT, "quality")
    assert voter_groups([], CHAT, "quality") == []
