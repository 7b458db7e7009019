"""The quality vote's static checks of the requested function (consensus/lint.py): an answer that
reads a name from nowhere, ignores a parameter or returns nothing is dropped before the vote, so
a majority of such slips no longer out-votes a right answer. Nothing is executed."""

from __future__ import annotations

from swarm_supervisor.consensus import Candidate, quorum_reached, vote
from swarm_supervisor.consensus.lint import lint_problem

PROMPT = 'Write a Python function:\n\ndef clamp(x: int, lo: int, hi: int) -> int:\n    """Clamp x."""\n'
RIGHT = "```python\ndef clamp(x: int, lo: int, hi: int) -> int:\n    return max(lo, min(x, hi))\n```"
UNREAD = "```python\ndef clamp(x: int, lo: int, hi: int) -> int:\n    return min(x, hi)\n```"
NOWHERE = "```python\ndef clamp(x: int, lo: int, hi: int) -> int:\n    return bound(lo, min(x, hi))\n```"
NO_VALUE = "```python\ndef clamp(x: int, lo: int, hi: int) -> int:\n    print(max(lo, min(x, hi)))\n```"


def cand(voter: str, content: str, latency: float = 1.0) -> Candidate:
    return Candidate(voter=voter, content=content, latency_s=latency)


def test_each_check_names_the_slip() -> None:
    code = lambda answer: answer.strip("`").removeprefix("python\n")  # noqa: E731
    assert lint_problem(code(RIGHT), {"clamp"}, PROMPT) is None
    assert lint_problem(code(UNREAD), {"clamp"}, PROMPT) == "clamp never reads its parameter lo"
    assert lint_problem(code(NOWHERE), {"clamp"}, PROMPT) == "clamp reads bound, which is defined nowhere"
    assert lint_problem(code(NO_VALUE), {"clamp"}, PROMPT) == "clamp returns no value"


def test_what_is_not_a_slip() -> None:
    # a helper the request mentions (from the user's file), an import the answer makes, builtins,
    # a helper the answer defines below, a generator, -> None, self, cls and _-names unread
    mentioned = "def total(xs):\n    return sum(scale(x) for x in xs)\n"
    assert lint_problem(mentioned, {"total"}, "def total(xs): uses scale() from utils.py") is None
    imported = "import math\n\ndef hyp(a, b):\n    return math.sqrt(a * a + b * b)\n"
    assert lint_problem(imported, {"hyp"}, "def hyp(a, b):") is None
    helper = "def f(n):\n    return g(n)\n\ndef g(n):\n    return n + 1\n"
    assert lint_problem(helper, {"f"}, "def f(n):") is None
    assert lint_problem("def gen(n):\n    yield from range(n)\n", {"gen"}, "def gen(n):") is None
    assert lint_problem("def log(msg) -> None:\n    print(msg)\n", {"log"}, "def log(msg):") is None
    method = "class A:\n    def size(self, _hint, *args):\n        return 1\n"
    assert lint_problem(method, {"size"}, "def size(self, _hint):") is None
    # a slip outside the requested function (example usage after it) is not the function's
    usage = "def inc(n):\n    return n + 1\n\nprint(inc(value))\n"
    assert lint_problem(usage, {"inc"}, "def inc(n):") is None
    # no requested function defined, or code that does not parse: other checks' business
    assert lint_problem("def other(n):\n    return\n", {"inc"}, "def inc(n):") is None
    assert lint_problem("def inc(n) return", {"inc"}, "def inc(n):") is None


def test_a_majority_of_slips_no_longer_outvotes_the_right_answer() -> None:
    v = vote([cand("a", UNREAD), cand("b", UNREAD), cand("c", RIGHT)], strategy="quality", prompt=PROMPT)
    assert v.winner == 2
    assert [d.reason for d in v.dropped] == ["clamp never reads its parameter lo"] * 2
    # every answer slipped: the vote falls back to all of them, as for any other drop
    v = vote([cand("a", NO_VALUE), cand("b", NOWHERE)], strategy="quality", prompt=PROMPT)
    assert v.winner in (0, 1)
    # without a prompt naming the function, nothing is checked
    assert not vote([cand("a", UNREAD), cand("b", RIGHT)], strategy="quality").dropped


def test_slips_do_not_count_towards_the_quorum() -> None:
    two_slips = [cand("a", UNREAD), cand("b", UNREAD)]
    assert not quorum_reached(two_slips, asked=3, strategy="quality", prompt=PROMPT)
    assert quorum_reached([cand("a", RIGHT), cand("b", RIGHT)], asked=3, strategy="quality", prompt=PROMPT)


def test_an_answer_cut_off_is_not_linted() -> None:
    cut = Candidate(voter="a", content=NO_VALUE, finish_reason="length")
    v = vote(
        [cut, Candidate(voter="b", content=NO_VALUE, finish_reason="length")],
        strategy="quality",
        prompt=PROMPT,
    )
    assert not any("returns no value" in d.reason for d in v.dropped)


def test_an_answer_past_the_lint_limit_is_not_linted() -> None:
    # the checks are for the function asked for; an answer with more Python than MAX_LINT_CHARS
    # is not run through pyflakes on the event loop (about 0.3 s a 100 KB), only parsed
    from swarm_supervisor.consensus.quality import MAX_LINT_CHARS

    filler = "\n".join(f"X{i} = {i}" for i in range(MAX_LINT_CHARS // 8))
    long_slip = UNREAD.removesuffix("```") + filler + "\n```"
    assert len(long_slip) > MAX_LINT_CHARS
    answers = [cand("a", long_slip), cand("b", long_slip), cand("c", RIGHT)]
    v = vote(answers, strategy="quality", prompt=PROMPT)
    assert not v.dropped and v.winner == 0
