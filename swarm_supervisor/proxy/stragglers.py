"""How long a vote waits for its last voters once most have answered.

A voter that hangs (a SIGSTOPped or swapping instance) must not hold the client until
``proxy.request_timeout_s`` when the others answered long ago. Once at least half of the voters
have finished (answered or failed) and at least one answered, the rest get until
``start + max(min_wait_s, factor x the slowest answer so far)``; then the vote goes on without
them::

    policy = StragglerPolicy(min_wait_s=10.0, factor=3.0)
    cutoff = policy.cutoff(start, latencies=[2.1, 2.4], failed=0, voters=3)   # start + 10.0

``fan_out`` waits until ``min(request deadline, cutoff)``. The floor keeps a vote of quick
answers from cutting off one that is merely a little slower; the factor scales it to long answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: what ``VoterOutcome.error`` says for a voter given up this way
GAVE_UP = "timed out (straggler: the other voters had answered)"


@dataclass(frozen=True)
class StragglerPolicy:
    """``min_wait_s``: never cut before this; ``factor``: x the slowest answer. factor 0: off."""

    min_wait_s: float = 10.0
    factor: float = 3.0

    def cutoff(self, start: float, latencies: list[float], failed: int, voters: int) -> float:
        """The monotonic time after which unfinished voters are given up (``inf``: not yet)."""
        if self.factor <= 0 or not latencies:
            return math.inf
        if 2 * (len(latencies) + failed) < voters:  # fewer than half have finished
            return math.inf
        return start + max(self.min_wait_s, self.factor * max(latencies))
