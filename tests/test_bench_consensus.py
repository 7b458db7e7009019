"""The answer-quality benchmark's harness: what it runs, and that a bad candidate cannot hang it.
(Candidate code runs only in the benchmark, in a subprocess with limits; never in the proxy.)"""

from __future__ import annotations

from bench.quality_gen import passes, program_for

TASK = {
    "task_id": "Micro/0",
    "prompt": 'from typing import List\n\ndef total(xs: List[int]) -> int:\n    """Sum of xs."""\n',
    "entry_point": "total",
    "test": "def check(c):\n    assert c([1, 2]) == 3\n    assert c([]) == 0\n",
}


def test_a_full_function_in_a_fenced_answer_is_tested() -> None:
    answer = "Here:\n```python\ndef total(xs):\n    return sum(xs)\n```\nDone."
    program = program_for(TASK, answer)
    assert program is not None and "from typing import List" in program and "check(total)" in program
    assert passes(program)


def test_a_bare_body_completes_the_prompt() -> None:
    assert passes(program_for(TASK, "```python\n    return sum(xs)\n```"))


def test_wrong_hanging_and_codeless_answers_fail() -> None:
    assert not passes(program_for(TASK, "```python\ndef total(xs):\n    return 0\n```"))
    assert not passes(program_for(TASK, "```python\ndef total(xs):\n    while True:\n        pass\n```"), 2.0)
    assert program_for(TASK, "I cannot help with that.") is None
    assert not passes(None)
