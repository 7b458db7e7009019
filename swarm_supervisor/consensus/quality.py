"""What the `quality` strategy knows about an answer without running it: whether to drop it,
and the tokens it is compared on (the structure of its code rather than its wording)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from .code import block_problem, code_blocks, requested_functions
from .lint import lint_problem
from .structure import canonical, definition
from .tokens import tokenize
from .types import Candidate, Dropped

#: the static checks (pyflakes and ``ast``) read at most this much of an answer's Python: they
#: are for the function a request asks for, and take about 0.3 s per 100 KB on the event loop
MAX_LINT_CHARS = 32 * 1024


@functools.lru_cache(maxsize=64)
def _text_problem(
    content: str, finish_reason: str | None, wanted: frozenset[str], prompt: str
) -> tuple[str | None, list[str]]:
    """(why to drop it or None, its comparison tokens) for one text answer. Remembered: the
    quorum check analyses the answers in so far each time one more arrives, then the vote
    analyses them all, and each is the same answer to the same request every time."""
    blocks = code_blocks(content)
    # a block left open by a cut-off answer cannot parse; judge the blocks that closed
    py = [b.body for b in blocks if b.is_python]
    for b in blocks:
        if b.closed or finish_reason != "length":
            problem = block_problem(b)
            if problem is not None:
                return problem, []
    if not py:
        if wanted:
            return f"has no Python code defining {', '.join(sorted(wanted))}", []
        return None, tokenize(content)
    code = tokenize("\n".join(py))
    if wanted:
        fn = definition(code, wanted)
        if fn is None:
            return f"defines none of the requested functions ({', '.join(sorted(wanted))})", []
        source = "\n".join(py)
        if finish_reason != "length" and len(source) <= MAX_LINT_CHARS:
            problem = lint_problem(source, wanted, prompt)
            if problem is not None:
                return problem, []
        return None, canonical(fn)
    return None, canonical(code)


def analyse(
    candidates: Sequence[Candidate], prompt: str | None = None, *, others_finished: bool | None = None
) -> tuple[list[Dropped], dict[int, list[str]]]:
    """The candidates `quality` drops (with the reason, in order) and, for the others that are
    text, the tokens to compare: the canonical structure of their Python (of the requested
    function alone when ``prompt`` names one), or their text when they hold no code.

    ``others_finished`` overrides "did another candidate finish" for the cut-off rule (the
    quorum check passes True: an answer cut off now never counts towards a quorum).
    Identical answers are analysed once."""
    wanted = frozenset(requested_functions(prompt)) if prompt else frozenset()
    finished = [c.finish_reason != "length" and c.kind != "none" for c in candidates]
    dropped: list[Dropped] = []
    keys: dict[int, list[str]] = {}
    for i, c in enumerate(candidates):
        if c.kind == "none":
            dropped.append(Dropped(i, "empty answer"))
            continue
        if c.finish_reason == "length":
            if others_finished is None:
                someone = any(f for j, f in enumerate(finished) if j != i)
            else:
                someone = others_finished
            if someone:
                dropped.append(Dropped(i, "cut off (finish_reason length) while others finished"))
                continue
        if c.kind != "text" or not c.content:
            continue
        cut = "length" if c.finish_reason == "length" else None
        problem, tokens = _text_problem(c.content, cut, wanted, prompt or "")
        if problem is not None:
            dropped.append(Dropped(i, problem))
        else:
            keys[i] = tokens
    return dropped, keys


def quality_problems(
    candidates: Sequence[Candidate], prompt: str | None = None, *, others_finished: bool | None = None
) -> list[Dropped]:
    """Only the drops of `analyse`."""
    return analyse(candidates, prompt, others_finished=others_finished)[0]
