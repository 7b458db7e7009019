"""The vote on real-looking answers: code, prose around code, tool calls. Nothing is executed."""

from __future__ import annotations

import pytest

from swarm_supervisor.consensus import (
    Candidate,
    Verdict,
    canonical,
    code_blocks,
    definition,
    quorum_reached,
    requested_functions,
    signature,
    tokenize,
    vote,
)

FIB = '''Here is a function that returns the n-th Fibonacci number:

```python
def fibonacci(n: int) -> int:
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    previous, current = 0, 1
    for _ in range(n - 1):
        previous, current = current, previous + current
    return current
```

It runs in O(n) time.
'''

# the same answer with renamed variables and different spacing
FIB_RENAMED = '''Here is a function that returns the n-th Fibonacci number:

```python
def fibonacci(n: int) -> int:
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    a, b = 0, 1
    for _ in range(n-1):
        a, b = b, a+b
    return b
```

It runs in O(n) time.
'''

FIB_SPACED = FIB.replace("previous + current", "previous  +  current").replace("\n\n```", "\n\n\n```")

FIB_RECURSIVE = """Sure! A recursive version:

```python
def fibonacci(n):
    if n <= 1:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)
```
"""

FIB_BROKEN = """```python
def fibonacci(n):
    if n < 2
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)
```
"""

PRIMES = """```python
def is_prime(k: int) -> bool:
    if k < 2:
        return False
    i = 2
    while i * i <= k:
        if k % i == 0:
            return False
        i += 1
    return True
```
"""

SHELL = """To list the files, run:

```bash
ls -la | grep '.py$'
```
"""


def cand(
    voter: str, content: str | None, latency: float = 1.0, finish: str = "stop", **kw: object
) -> Candidate:
    return Candidate(voter=voter, content=content, finish_reason=finish, latency_s=latency, **kw)  # type: ignore[arg-type]


def call(name: str, arguments: str, call_id: str = "call_1") -> dict[str, object]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# --------------------------------------------------------------------------- tokens


def test_tokens_ignore_spacing_but_keep_indentation() -> None:
    assert tokenize("x  =  a+b") == tokenize("x = a + b") == ["x", "=", "a", "+", "b"]
    assert tokenize("if a:\n    b\n") != tokenize("if a:\nb\n")
    assert tokenize("a\n\n\n    b") == tokenize("a\n    b")
    assert tokenize("a\r\n\tb") == tokenize("a\n    b")


def test_tokens_keep_strings_numbers_and_operators_whole() -> None:
    toks = tokenize("s = \"a b  c\" + f'{x}' ** 2.5e3 // 0x1F -> y != z")
    assert '"a b  c"' in toks and "'{x}'" in toks
    assert {"**", "2.5e3", "//", "0x1F", "->", "!="} <= set(toks)


# --------------------------------------------------------------------------- similarity


def test_identical_answers_are_unanimous_and_the_fastest_copy_wins() -> None:
    v = vote([cand("a", FIB, 0.9), cand("b", FIB, 0.4), cand("c", FIB, 0.7)])
    assert v.clusters == [[0, 1, 2]]
    assert v.agreement == 1.0
    assert v.winner == 1
    assert v.strategy == "similarity" and v.kind == "text"


def test_near_identical_answers_cluster_and_the_outlier_loses() -> None:
    answers = [cand("a", FIB, 1.0), cand("b", FIB_SPACED, 1.1), cand("c", PRIMES, 0.2), cand("d", FIB, 1.2)]
    v = vote(answers)
    assert v.winner in (0, 3)  # a medoid of the Fibonacci cluster, not the fast outlier
    assert sorted(v.clusters[0]) == [0, 1, 3]
    assert [2] in v.clusters
    assert v.agreement == pytest.approx(0.75)
    assert v.similarity[0][2] < 0.5 < v.similarity[0][1]


def test_renamed_variables_are_similar_but_not_identical() -> None:
    v = vote([cand("a", FIB), cand("b", FIB_RENAMED)], threshold=0.5)
    assert 0.5 < v.similarity[0][1] < 1.0
    assert v.clusters == [[0, 1]]


def test_all_different_answers_fall_to_the_fastest() -> None:
    v = vote([cand("a", FIB, 0.5), cand("b", PRIMES, 0.3), cand("c", SHELL, 0.9)])
    assert sorted(map(sorted, v.clusters)) == [[0], [1], [2]]
    assert v.winner == 1
    assert v.agreement == pytest.approx(1 / 3)


def test_tie_between_clusters_goes_to_the_faster_medoid() -> None:
    answers = [cand("a", FIB, 2.0), cand("b", FIB, 2.1), cand("c", PRIMES, 1.5), cand("d", PRIMES, 1.0)]
    v = vote(answers)
    assert v.winner == 3
    assert v.clusters[0] == [2, 3]


def test_threshold_is_a_parameter() -> None:
    answers = [cand("a", FIB, 0.1), cand("b", FIB_RENAMED, 0.2), cand("c", FIB_RENAMED, 0.3)]
    s = vote(answers, threshold=0.5).similarity[0][1]
    assert vote(answers, threshold=s - 0.01).agreement == 1.0
    assert vote(answers, threshold=min(1.0, s + 0.01)).clusters[0] == [1, 2]


def test_an_empty_answer_never_beats_a_real_one() -> None:
    v = vote([cand("a", "", 0.1), cand("b", None, 0.2), cand("c", FIB, 3.0)])
    assert v.winner == 2


def test_vote_needs_candidates_and_a_known_strategy() -> None:
    with pytest.raises(ValueError):
        vote([])
    with pytest.raises(ValueError):
        vote([cand("a", FIB)], strategy="loudest")  # type: ignore[arg-type]


def test_verdict_names_the_strategy_winner_and_dropped() -> None:
    v = vote([cand("a", FIB), cand("b", ""), cand("c", FIB_BROKEN)], strategy="quality")
    assert isinstance(v, Verdict)
    assert v.strategy == "quality" and v.winner == 0
    assert {d.index for d in v.dropped} == {1, 2}


# --------------------------------------------------------------------------- quality


def test_quality_drops_empty_cut_off_and_unparsable_answers() -> None:
    cut = FIB[: FIB.index("previous, current = 0")]
    answers = [
        cand("a", "", 0.1),
        cand("b", cut, 0.2, finish="length"),
        cand("c", FIB_BROKEN, 0.3),
        cand("d", FIB_RECURSIVE, 0.9),
    ]
    plain = vote(answers)
    assert plain.winner != 3  # by text alone the broken one is as good a pick as any
    v = vote(answers, strategy="quality")
    assert v.winner == 3
    reasons = {d.index: d.reason for d in v.dropped}
    assert set(reasons) == {0, 1, 2}
    assert "empty" in reasons[0]
    assert "length" in reasons[1]
    assert "does not parse" in reasons[2] and "line 2" in reasons[2]
    assert v.agreement == pytest.approx(0.25)


def test_quality_keeps_a_cut_off_answer_when_all_were_cut_off() -> None:
    a = FIB + "\nAnother way is"
    v = vote([cand("a", a, 0.5, finish="length"), cand("b", a, 0.4, finish="length")], strategy="quality")
    assert v.dropped == [] and v.winner == 1


def test_quality_judges_unlabelled_python_and_json_blocks_and_leaves_other_languages_alone() -> None:
    unlabelled = "```\ndef f(x):\n    return x +\n```"
    bad_json = 'The config:\n```json\n{"a": 1,}\n```'
    answers = [cand("a", unlabelled), cand("b", bad_json), cand("c", SHELL, 2.0)]
    v = vote(answers, strategy="quality")
    assert {d.index for d in v.dropped} == {0, 1}
    assert v.winner == 2


def test_quality_wants_the_requested_function() -> None:
    prompt = 'Complete this function:\n\ndef fibonacci(n: int) -> int:\n    """Return the n-th number."""\n'
    assert requested_functions(prompt) == {"fibonacci"}
    answers = [cand("a", PRIMES, 0.1), cand("b", PRIMES, 0.2), cand("c", FIB_RECURSIVE, 0.9)]
    assert vote(answers).winner == 0
    v = vote(answers, strategy="quality", prompt=prompt)
    assert v.winner == 2
    assert all("fibonacci" in d.reason for d in v.dropped)


def test_quality_falls_back_to_similarity_when_everything_is_dropped() -> None:
    v = vote([cand("a", "", 0.3), cand("b", FIB_BROKEN, 0.2)], strategy="quality")
    assert v.fallback is True
    assert v.dropped == []
    assert v.winner == 1


def test_code_blocks_reads_fences_and_bare_python() -> None:
    blocks = code_blocks(FIB + "\n```bash\nls\n```\n```python\nprint(1)")
    assert [(b.lang, b.closed) for b in blocks] == [("python", True), ("bash", True), ("python", False)]
    assert code_blocks("def f():\n    return 1\n")[0].is_python
    assert code_blocks("No code here.") == []


# --------------------------------------------------------------------------- tool calls


def test_tool_calls_with_the_same_arguments_in_another_order_agree() -> None:
    a = cand(
        "a",
        None,
        0.8,
        finish="tool_calls",
        tool_calls=[call("read", '{"path": "src/app.py", "limit": 50}', "x1")],
    )
    b = cand(
        "b",
        None,
        0.5,
        finish="tool_calls",
        tool_calls=[call("read", '{"limit":50,"path":"src/app.py"}', "x2")],
    )
    c = cand("c", None, 0.1, finish="tool_calls", tool_calls=[call("read", '{"path": "README.md"}', "x3")])
    v = vote([a, b, c])
    assert v.kind == "tool_calls"
    assert v.clusters[0] == [0, 1]
    assert v.winner == 1  # the faster of the agreeing pair, returned as sent
    assert v.agreement == pytest.approx(2 / 3)


def test_tool_calls_differ_by_name_arguments_and_count() -> None:
    base = [call("bash", '{"command": "ls"}')]
    assert signature(base) == signature([call("bash", '{ "command" : "ls" }', "other-id")])
    assert signature(base) != signature([call("bash", '{"command": "ls -la"}')])
    assert signature(base) != signature([call("glob", '{"command": "ls"}')])
    assert signature(base) != signature(base + base)
    # arguments that are not JSON are compared as their raw text
    assert signature([call("bash", "{ls")]) == (("bash", "{ls"),)


def test_mixed_answers_the_larger_kind_wins() -> None:
    tool = [call("bash", '{"command": "pytest -q"}')]
    answers = [
        cand("a", "Run `pytest -q` to test.", 0.1),
        cand("b", None, 0.5, finish="tool_calls", tool_calls=tool),
        cand("c", None, 0.6, finish="tool_calls", tool_calls=tool),
    ]
    v = vote(answers)
    assert v.kind == "tool_calls" and v.winner == 1
    assert v.clusters[0] == [1, 2] and [0] in v.clusters
    assert v.similarity[0][1] == 0.0


def test_fastest_picks_the_first_non_empty_answer() -> None:
    v = vote([cand("a", "", 0.1), cand("b", PRIMES, 0.5), cand("c", FIB, 0.3)], strategy="fastest")
    assert v.winner == 2 and v.strategy == "fastest"


# --------------------------------------------------------------------------- quorum


def test_quorum_without_a_margin_waits_until_the_rest_cannot_change_the_outcome() -> None:
    assert not quorum_reached([], asked=5, margin=None)
    assert not quorum_reached([cand("a", FIB), cand("b", FIB)], asked=5, margin=None)
    assert quorum_reached([cand("a", FIB), cand("b", FIB_SPACED), cand("c", FIB)], asked=5, margin=None)
    assert not quorum_reached([cand("a", FIB), cand("b", PRIMES), cand("c", SHELL)], asked=5, margin=None)
    assert quorum_reached([cand("a", FIB), cand("b", FIB)], asked=3, margin=None)
    assert not quorum_reached(
        [cand("a", FIB), cand("b", FIB)], asked=4, margin=None
    )  # 2 of 4 can still be tied


def test_quorum_with_quality_ignores_answers_it_would_drop() -> None:
    answers = [cand("a", FIB_BROKEN), cand("b", FIB_BROKEN), cand("c", FIB_RECURSIVE)]
    assert quorum_reached(answers, asked=3)
    assert not quorum_reached(answers, asked=4, strategy="quality")  # 1 valid answer; 1 voter still out


def test_quorum_for_tool_calls_and_fastest() -> None:
    t = [call("read", '{"path": "a"}')]
    answers = [cand(v, None, tool_calls=t, finish="tool_calls") for v in "ab"]
    assert quorum_reached(answers, asked=3)
    assert quorum_reached([cand("a", "", 0.1)], asked=4, strategy="fastest") is False
    assert quorum_reached([cand("a", "hi", 0.1)], asked=4, strategy="fastest")


# --------------------------------------------------------------------------- structure


def test_structure_ignores_names_annotations_docstrings_comments_and_quotes() -> None:
    a = tokenize(
        'def area(w: float, h: float) -> float:\n    """Area."""\n'
        "    # width times height\n    return w * h\n"
    )
    b = tokenize("def area(width, height):\n    return width*height  # simple\n")
    c = tokenize("def area(w, h):\n    return w + h\n")
    assert canonical(a) == canonical(b)
    assert canonical(a) != canonical(c)
    assert canonical(tokenize('x = "a"')) == canonical(tokenize("y = 'a'"))


def test_definition_cuts_out_the_requested_function() -> None:
    toks = tokenize(
        "import math\n\ndef helper(x):\n    return x\n\n"
        "def area(r):\n    return math.pi * r ** 2\n\nprint(area(2))\n"
    )
    fn = definition(toks, {"area"})
    assert fn is not None and fn[:2] == ["def", "area"]
    assert "print" not in fn and "helper" not in fn
    assert definition(toks, {"volume"}) is None


EXPLAINED = [
    "```python\ndef is_even(n):\n    return n % 2 == 0\n```\n\nThe modulo operator gives the remainder; "
    "an even number leaves none, so the comparison with zero is True exactly for even numbers.",
    'Sure, here it is:\n```python\ndef is_even(number: int) -> bool:\n    """True if even."""\n'
    "    return number % 2 == 0\n```\nThis works for negative numbers too, "
    "since Python's % keeps the sign of the divisor.",
    "```python\ndef is_even(k):\n    # check the last bit of the remainder\n    return k % 2 == 0\n```\n"
    "You can call it as `is_even(10)`, which returns True, or `is_even(7)`, which returns False.",
]
WRONG = "```python\ndef is_even(n):\n    return str(n).endswith('0')\n```\n\nThis checks whether n is even."


def test_quality_votes_on_code_structure_not_on_the_prose_around_it() -> None:
    prompt = 'def is_even(n: int) -> bool:\n    """Return True if n is even."""\n'
    answers = [cand("a", t, 1.0 + i) for i, t in enumerate(EXPLAINED)]
    answers += [cand("w1", WRONG, 0.2), cand("w2", WRONG, 0.3)]
    assert vote(answers).winner == 3  # by text, the two identical wrong answers agree most
    v = vote(answers, strategy="quality", prompt=prompt)
    assert v.winner in (0, 1, 2)
    assert sorted(v.clusters[0]) == [0, 1, 2]
    assert v.agreement == pytest.approx(0.6)


def test_quorum_with_quality_counts_structural_agreement() -> None:
    answers = [cand("a", t) for t in EXPLAINED[:2]]
    assert not quorum_reached(answers, asked=3)
    assert quorum_reached(answers, asked=3, strategy="quality", prompt="def is_even(n):")
