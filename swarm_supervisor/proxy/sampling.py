"""How the voters of one vote are asked: which requests go to which process, with what settings.

A process that holds k voters gets one request with ``n = k`` (its prompt is evaluated once and
copied to k slots). :func:`voter_groups` may split a process's voters into several requests
(groups) with their own sampling settings; each extra group costs one more prompt evaluation
on that process (only the new tokens of a conversation, once its slots hold the earlier turns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Group:
    """One request to one process: ``n`` voters, and what replaces the client's body fields."""

    n: int
    overrides: dict[str, Any] = field(default_factory=dict)


def voter_groups(per_process: list[int], body: dict[str, Any], strategy: str) -> list[list[Group]]:
    """For each process (holding ``per_process[i]`` voters), the requests to send it.

    >>> voter_groups([3, 1], {}, "quality")
    [[Group(n=3, overrides={})], [Group(n=1, overrides={})]]
    """
    return [[Group(k)] for k in per_process]
