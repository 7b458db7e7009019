"""The voters' own confidence, read from llama-server's log-probabilities.

A request with ``logprobs: true`` (and ``top_logprobs: K``) gets, per choice,
``logprobs.content = [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}, ...]}, ...]``
(streamed: the same entries, a few per chunk). llama-server reports the model's distribution
*before* sampling (temperature not applied), so answers sampled at different temperatures are
compared on the same scale.

    >>> logprob_fields({"logprobs": {"content": [
    ...     {"token": "x", "logprob": -0.5, "top_logprobs": [{"token": "x", "logprob": -0.5}]}]}})
    {'token_logprobs': (-0.5,), 'top_logprobs': ((-0.5,),)}
    >>> logprob_fields({"message": {"content": "x"}})
    {}
"""

from __future__ import annotations

import math
from typing import Any


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def logprob_fields(choice: dict[str, Any]) -> dict[str, Any]:
    """The `Candidate` fields ``token_logprobs`` and ``top_logprobs`` (log-probabilities of the
    K most likely tokens at each position, most likely first) from one OpenAI choice; ``{}``
    when the choice carries no log-probabilities (the upstream was not asked, or gave none).
    Entries that are not well formed are skipped, never guessed."""
    logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content:
        return {}
    tokens: list[float] = []
    tops: list[tuple[float, ...]] = []
    for entry in content:
        if not isinstance(entry, dict):
            continue
        lp = _number(entry.get("logprob"))
        if lp is None:
            continue
        tokens.append(lp)
        top = entry.get("top_logprobs")
        row: list[float] = []
        if isinstance(top, list):
            for alt in top:
                alt_lp = _number(alt.get("logprob")) if isinstance(alt, dict) else None
                if alt_lp is not None:
                    row.append(alt_lp)
        tops.append(tuple(sorted(row, reverse=True)))
    if not tokens:
        return {}
    out: dict[str, Any] = {"token_logprobs": tuple(tokens)}
    if any(tops):
        out["top_logprobs"] = tuple(tops)
    return out


def stream_entries(chunk_choice: dict[str, Any]) -> list[dict[str, Any]]:
    """The log-probability entries one streamed chunk's choice carries (``[]`` when none):
    a stream's answer has the concatenation of its chunks' entries as ``logprobs.content``."""
    logprobs = chunk_choice.get("logprobs") if isinstance(chunk_choice, dict) else None
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    return [e for e in content if isinstance(e, dict)] if isinstance(content, list) else []
