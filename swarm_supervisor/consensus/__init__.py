"""Consensus: pure voting over the swarm's answers (no I/O, nothing executed).

from swarm_supervisor.consensus import Candidate, vote, quorum_reached

verdict = vote([Candidate("a", "x = 1", latency_s=0.4), Candidate("b", "x = 1", latency_s=0.3)])
verdict.winner, verdict.agreement   # (1, 1.0): identical answers, the faster one wins
"""

from __future__ import annotations

from ..vocabulary import STRATEGIES, Strategy
from .code import CodeBlock, code_blocks, requested_functions
from .quality import analyse, quality_problems
from .recover import Recovered, TextCall, recover_calls
from .structure import canonical, definition
from .tokens import tokenize
from .toolcalls import canonical_arguments, signature
from .tools import Prepared, Toolbox, prepare
from .types import Candidate, Dropped, Kind, Verdict
from .vote import DEFAULT_THRESHOLD, quorum_reached, vote

__all__ = [
    "DEFAULT_THRESHOLD",
    "STRATEGIES",
    "Candidate",
    "CodeBlock",
    "Dropped",
    "Kind",
    "Prepared",
    "Recovered",
    "Strategy",
    "TextCall",
    "Toolbox",
    "Verdict",
    "analyse",
    "canonical",
    "canonical_arguments",
    "code_blocks",
    "definition",
    "prepare",
    "quality_problems",
    "quorum_reached",
    "recover_calls",
    "requested_functions",
    "signature",
    "tokenize",
    "vote",
]
