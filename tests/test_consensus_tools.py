"""Tool calls in the vote: calls written as text recovered, arguments checked against the declared
schemas, the three-level vote (call or not, name, arguments), and agreement against voters asked.

The answers are in the forms small models write (SmolLM2 and its like, asked by opencode)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from swarm_supervisor.consensus import Candidate, Toolbox, quorum_reached, recover_calls, signature, vote


def tool(name: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return {
        "type": "function",
        "function": {"name": name, "description": f"the {name} tool", "parameters": schema},
    }


# opencode-shaped declarations (its real ones are longer, the same in kind)
TOOLS = [
    tool(
        "read",
        {"filePath": {"type": "string"}, "offset": {"type": "number"}, "limit": {"type": "number"}},
        ["filePath"],
    ),
    tool(
        "bash", {"command": {"type": "string"}, "description": {"type": "string"}}, ["command", "description"]
    ),
    tool("glob", {"pattern": {"type": "string"}, "path": {"type": "string"}}, ["pattern"]),
]
NAMES = {"read", "bash", "glob"}


def call(name: str, arguments: dict[str, Any] | str, id: str = "c") -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": id, "type": "function", "function": {"name": name, "arguments": text}}


def calls(voter: str, *tool_calls: dict[str, Any], latency: float = 0.5) -> Candidate:
    return Candidate(voter, None, list(tool_calls), finish_reason="tool_calls", latency_s=latency)


def text(voter: str, content: str, latency: float = 0.5) -> Candidate:
    return Candidate(voter, content, latency_s=latency)


# --------------------------------------------------------------------------- recovery


def test_recovers_a_call_in_tool_call_tags() -> None:
    found = recover_calls(
        'I will read it.\n<tool_call>\n{"name": "read", "arguments": {"filePath": "src/app.py"}}'
        "\n</tool_call>",
        NAMES,
    )
    assert found is not None and found.form == "tag"
    assert [(c.name, c.arguments) for c in found.calls] == [("read", {"filePath": "src/app.py"})]
    # the closing tag forgotten (or cut off) still counts
    unclosed = recover_calls('<tool_call>{"name": "glob", "arguments": {"pattern": "*.py"}}', NAMES)
    assert unclosed is not None and unclosed.calls[0].name == "glob"


def test_recovers_a_call_in_a_json_fence() -> None:
    answer = (
        "To list the files, call the glob tool:\n\n```json\n"
        '{\n  "name": "glob",\n  "arguments": {"pattern": "**/*.ts"}\n}\n```\n'
    )
    found = recover_calls(answer, NAMES)
    assert found is not None and found.form == "fenced"
    assert found.calls[0].arguments == {"pattern": "**/*.ts"}


def test_recovers_bare_json_in_the_shapes_models_use() -> None:
    shapes = [
        '{"name": "bash", "arguments": {"command": "ls", "description": "list"}}',
        '{"name": "bash", "parameters": {"command": "ls", "description": "list"}}',
        '{"function": "bash", "arguments": {"command": "ls", "description": "list"}}',
        '{"type": "function", "function": {"name": "bash", "arguments": "{\\"command\\": \\"ls\\", '
        '\\"description\\": \\"list\\"}"}}',
        '{"tool_call": {"name": "bash", "arguments": {"command": "ls", "description": "list"}}}',
        'Sure! [{"name": "bash", "arguments": {"command": "ls", "description": "list"}}] will do it.',
    ]
    for shape in shapes:
        found = recover_calls(shape, NAMES)
        assert found is not None, shape
        assert found.form == "bare"
        assert [(c.name, c.arguments) for c in found.calls] == [
            ("bash", {"command": "ls", "description": "list"})
        ]
    two = recover_calls(
        '{"tool_calls": [{"name": "glob", "arguments": {"pattern": "a"}}, {"name": "read"}]}', NAMES
    )
    assert two is not None and [(c.name, c.arguments) for c in two.calls] == [
        ("glob", {"pattern": "a"}),
        ("read", {}),
    ]


def test_text_that_is_not_a_call_to_a_declared_tool_stays_text() -> None:
    assert recover_calls("The answer is 42.", NAMES) is None
    assert recover_calls('Use {"name": "deploy", "arguments": {}} to deploy.', NAMES) is None  # undeclared
    assert recover_calls('```json\n{"name": "Ada", "age": 36}\n```', NAMES) is None
    assert recover_calls("```python\ndef f(x):\n    return {x: [1, 2]}\n```", NAMES) is None
    assert recover_calls('{"name": "read"', NAMES) is None  # not JSON: nothing is guessed
    assert recover_calls('<tool_call>{"name": "read"}</tool_call>', set()) is None  # no tools declared


# --------------------------------------------------------------------------- schemas


def test_arguments_are_checked_against_the_declared_schema() -> None:
    box = Toolbox.from_openai(TOOLS)
    assert box.problem("read", {"filePath": "a.py", "limit": 20}) is None
    assert box.problem("read", {}) == "read: 'filePath' is a required property"
    assert box.problem("read", {"filePath": 3}) == "read: 3 is not of type 'string' (at filePath)"
    extra = box.problem("glob", {"pattern": "*", "recursive": True})
    assert extra is not None and "recursive" in extra
    assert box.problem("read", ["a.py"]) == "read: the arguments are an array, not an object"
    assert box.problem("read", "{filePath: a.py") == "read: the arguments are not JSON"
    undeclared = box.problem("write", {"filePath": "a"})
    assert undeclared is not None and "did not declare" in undeclared and "read" in undeclared


def test_a_declared_schema_that_is_not_a_schema_accepts_any_object() -> None:
    box = Toolbox.from_openai(
        [
            {"type": "function", "function": {"name": "odd", "parameters": {"type": "no-such-type"}}},
            {"type": "function", "function": {"name": "bare"}},  # no parameters at all
            {"type": "function"},  # nothing to call: skipped
        ]
    )
    assert box.names == {"odd", "bare"}
    assert box.problem("odd", {"anything": 1}) is None
    assert box.problem("bare", {}) is None
    assert box.problem("odd", [1]) is not None  # still must be an object


# --------------------------------------------------------------------------- the vote


def test_invalid_calls_are_dropped_before_the_vote() -> None:
    bad = call("read", {"path": "a.py"})  # opencode's read takes filePath: this call would fail there
    good = call("read", {"filePath": "a.py"})
    answers = [calls("a", bad, latency=0.1), calls("b", bad, latency=0.2), calls("c", bad), calls("d", good)]
    v = vote(answers, tools=TOOLS)
    assert v.winner == 3 and v.kind == "tool_calls"
    assert [d.index for d in v.dropped] == [0, 1, 2]
    assert all("'filePath' is a required property" in d.reason for d in v.dropped)
    assert v.agreement == pytest.approx(1 / 4)
    # without the declared tools the invalid majority would win
    assert vote(answers).winner in {0, 1, 2}


def test_a_call_written_as_text_takes_part_as_the_call_it_writes() -> None:
    structured = call("glob", {"pattern": "*.py"})
    answers = [
        text("a", '```json\n{"name": "glob", "arguments": {"pattern": "*.py"}}\n```', latency=0.1),
        calls("b", structured, latency=0.4),
        text("c", "Run `ls` to see the files.", latency=0.2),
    ]
    v = vote(answers, tools=TOOLS)
    assert v.kind == "tool_calls"
    assert v.clusters[0] == [0, 1]  # same call, one written as text, one structured
    assert v.winner == 0 and v.recovered == {0: "fenced"}
    assert v.tool_calls is not None
    assert signature(v.tool_calls) == signature([structured])
    assert v.agreement == pytest.approx(2 / 3)


def test_a_call_written_as_text_with_bad_arguments_is_dropped() -> None:
    answers = [
        text("a", '<tool_call>{"name": "read", "arguments": {"file": 1}}</tool_call>'),
        text("b", "hi"),
    ]
    v = vote(answers, "quality", tools=TOOLS)
    assert v.winner == 1
    assert len(v.dropped) == 1 and v.dropped[0].index == 0
    assert v.dropped[0].reason.startswith("invalid tool call: wrote a call as text (tag); read:")


def test_call_or_not_comes_first() -> None:
    g = call("glob", {"pattern": "*"})
    answers = [text("a", "It is in src/.", 0.1), text("b", "It is in src/.", 0.2), text("c", "src/", 0.3)]
    answers += [calls("d", g, latency=0.05), calls("e", g, latency=0.06)]
    v = vote(answers, tools=TOOLS)
    assert v.kind == "text"  # three answered in text, two called: no call


def test_the_function_name_is_voted_before_the_arguments() -> None:
    # read has three votes (split 2-1 on arguments), bash two: read wins, then its arguments by 2-1,
    # although the bash pair is as large as the read pair and faster
    ra, rb = call("read", {"filePath": "a.py"}), call("read", {"filePath": "b.py"})
    sh = call("bash", {"command": "cat a.py", "description": "show a.py"})
    answers = [
        calls("a", sh, latency=0.1),
        calls("b", sh, latency=0.1),
        calls("c", ra, latency=0.5),
        calls("d", rb, latency=0.3),
        calls("e", ra, latency=0.6),
    ]
    v = vote(answers, tools=TOOLS)
    assert v.winner == 2 and v.clusters[0] == [2, 4]
    assert v.agreement == pytest.approx(2 / 5)
    # a tie on names goes to the larger exact cluster, then to the fastest
    tie = [calls("a", ra, latency=0.3), calls("b", rb, latency=0.1), calls("c", ra, latency=0.4)]
    assert vote(tie, tools=TOOLS).winner == 0


def test_fastest_takes_the_fastest_valid_call() -> None:
    answers = [
        calls("a", call("read", {}), latency=0.1),
        text("b", '{"name": "glob", "arguments": {"pattern": "x"}}'),
    ]
    v = vote(answers, "fastest", tools=TOOLS)
    assert v.winner == 1 and v.recovered == {1: "bare"} and v.kind == "tool_calls"


def test_quorum_counts_recovered_calls_and_not_invalid_ones() -> None:
    g = call("glob", {"pattern": "*.md"})
    as_text = text("b", '<tool_call>{"name": "glob", "arguments": {"pattern": "*.md"}}</tool_call>')
    assert quorum_reached([calls("a", g), as_text], asked=3, tools=TOOLS)
    assert not quorum_reached([calls("a", g), as_text], asked=3)  # as text they differ
    bad = call("glob", {"pattern": 5})
    assert not quorum_reached([calls("a", bad), calls("b", bad)], asked=3, tools=TOOLS)
    assert quorum_reached([calls("a", bad), calls("b", bad)], asked=3)


# --------------------------------------------------------------------------- agreement


def test_agreement_is_counted_against_every_voter_asked() -> None:
    same = [text(v, "x = 1", latency=0.1 * i) for i, v in enumerate("abc")]
    assert vote(same).agreement == 1.0
    assert vote(same, asked=5).agreement == pytest.approx(0.6)  # 3 agreeing of 5 asked
    assert vote(same, "quality", asked=5).asked == 5
    assert vote(same[:1], asked=5).agreement == pytest.approx(0.2)
    assert vote(same[:1], asked=1).agreement == 1.0
    with pytest.raises(ValueError, match="asked=2"):
        vote(same, asked=2)


def test_fastest_never_claims_agreement_from_one_answer() -> None:
    v = vote([text("a", "x = 1", 0.3)], "fastest", asked=5)
    assert v.agreement == pytest.approx(0.2)
    # even when all answered alike: fastest compares nothing, so it shows no agreement
    assert vote([text(x, "x = 1") for x in "abc"], "fastest").agreement == pytest.approx(1 / 3)


def test_verdict_names_recovered_answers_and_voters_asked() -> None:
    v = vote([text("a", '{"name": "glob", "arguments": {"pattern": "*"}}')], asked=3, tools=TOOLS)
    assert v.asked == 3 and v.recovered == {0: "bare"}
    assert v.agreement == pytest.approx(1 / 3)
