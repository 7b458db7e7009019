"""bench toolcalls sorts answers the way the proxy's vote sees them: a call opencode can act on,
an invalid call, a call leaked into text, or text."""

from __future__ import annotations

import json
from typing import Any

from bench.toolcalls_answers import classify, shares, summarize, voter_categories
from swarm_supervisor.consensus import Toolbox

SCHEMA = {"type": "object", "properties": {"filePath": {"type": "string"}}, "required": ["filePath"]}
BOX = Toolbox.from_openai([{"type": "function", "function": {"name": "read", "parameters": SCHEMA}}])


def structured(arguments: dict[str, Any]) -> dict[str, Any]:
    call = {"id": "1", "type": "function", "function": {"name": "read", "arguments": json.dumps(arguments)}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def test_answers_are_sorted_by_what_a_client_can_do_with_them() -> None:
    assert classify(structured({"filePath": "a.py"}), BOX) == "call"
    assert classify(structured({"path": "a.py"}), BOX) == "invalid_call"
    leaked = '<tool_call>{"name": "read", "arguments": {"filePath": "a.py"}}</tool_call>'
    assert classify({"content": leaked}, BOX) == "leaked_call"
    assert classify({"content": '{"name": "read", "arguments": {}}'}, BOX) == "leaked_invalid"
    assert classify({"content": "The file defines main()."}, BOX) == "text"
    assert classify({"content": ""}, BOX) == "empty"


def test_voters_are_sorted_from_the_swarm_extension() -> None:
    swarm = {
        "dropped": [{"voter": "1.0", "reason": "invalid tool call: read: 'filePath' is a required property"}],
        "recovered": {"2.0": "tag"},
        "voters": [
            {"id": "0.0", "answer": "tool_calls"},
            {"id": "1.0", "answer": "tool_calls"},
            {"id": "2.0", "answer": "text"},
            {"id": "3.0", "answer": "text"},
            {"id": "4.0", "answer": None},
        ],
    }
    assert voter_categories(swarm) == [
        ("0.0", "call"),
        ("1.0", "invalid_call"),
        ("2.0", "leaked_call"),
        ("3.0", "text"),
        ("4.0", "no_answer"),
    ]
    rows = summarize(
        [{"category": "text"}, {"category": "call"}],
        [{"category": "call", "voters": voter_categories(swarm)}],
    )
    assert rows["one instance"] == {**shares(["text", "call"]), "call": 0.5, "text": 0.5, "n": 2}
    assert rows["swarm (answer)"]["call"] == 1.0
    assert rows["voters (all answers)"]["n"] == 4  # the voter with no answer is not in the shares
    assert rows["voter 4.0"]["no_answer"] == 1 and rows["voter 4.0"]["n"] == 0
