"""A tool call's arguments checked against a client's JSON schema at a bounded cost: the check
runs on the proxy's event loop, so a schema or an answer built to make it slow must not stall
the proxy, while the checks an ordinary schema asks for still drop the calls they should."""

from __future__ import annotations

import time
from typing import Any

import pytest

from swarm_supervisor.consensus import Toolbox
from swarm_supervisor.consensus.argcheck import MAX_SCHEMA_CHARS, MAX_UNIQUE_ITEMS

# Python's re backtracks on this for longer than anyone waits once the text has 40 characters
BACKTRACKING = "^(a|aa)+$"


def box(parameters: dict[str, Any]) -> Toolbox:
    return Toolbox.from_openai([{"type": "function", "function": {"name": "f", "parameters": parameters}}])


def exponential(depth: int) -> dict[str, Any]:
    """A schema of a few hundred bytes whose check takes time 2**depth: every level is an anyOf
    of two references to the next."""
    defs: dict[str, Any] = {
        f"n{i}": {"anyOf": [{"$ref": f"#/$defs/n{i + 1}"}, {"$ref": f"#/$defs/n{i + 1}"}]}
        for i in range(depth)
    }
    defs[f"n{depth}"] = {"type": "string"}
    return {"$defs": defs, "type": "object", "properties": {"x": {"$ref": "#/$defs/n0"}}}


def test_patterns_are_still_checked() -> None:
    tools = box({"type": "object", "properties": {"q": {"type": "string", "pattern": "^[a-z]+$"}}})
    assert tools.problem("f", {"q": "abc"}) is None
    assert tools.problem("f", {"q": "B1"}) == "f: 'B1' does not match '^[a-z]+$' (at q)"


def test_pattern_properties_and_the_additional_properties_they_leave() -> None:
    tools = box(
        {"type": "object", "patternProperties": {"^x_": {"type": "integer"}}, "additionalProperties": False}
    )
    assert tools.problem("f", {"x_a": 1, "x_b": 2}) is None
    assert tools.problem("f", {"x_a": "one"}) == "f: 'one' is not of type 'integer' (at x_a)"
    assert (
        tools.problem("f", {"x_a": 1, "y": 1})
        == "f: 'y': not allowed (matched by no property name or pattern)"
    )
    # additionalProperties as a schema applies to the keys no pattern covers
    tools = box(
        {
            "type": "object",
            "patternProperties": {"^x_": {"type": "integer"}},
            "additionalProperties": {"type": "string"},
        }
    )
    assert tools.problem("f", {"x_a": 1, "y": "s"}) is None
    assert tools.problem("f", {"y": 2}) == "f: 2 is not of type 'string' (at y)"


@pytest.mark.timeout(60)
def test_a_backtracking_pattern_does_not_stall_the_check() -> None:
    tools = box({"type": "object", "properties": {"q": {"type": "string", "pattern": BACKTRACKING}}})
    started = time.perf_counter()
    # not known to be invalid: the call is not dropped
    assert tools.problem("f", {"q": "a" * 64 + "!"}) is None
    assert time.perf_counter() - started < 5


@pytest.mark.timeout(60)
def test_an_exponential_schema_is_given_up_on_for_the_rest_of_the_request() -> None:
    tools = box(exponential(40))
    started = time.perf_counter()
    assert tools.problem("f", {"x": 1}) is None
    # the request's time for checks is spent: its later calls are not checked either
    assert tools.problem("f", {"x": 2}) is None
    assert time.perf_counter() - started < 5
    # the next request gets its own time, and a schema that is cheap to check is checked
    assert (
        box(exponential(3)).problem("f", {"x": 1})
        == "f: 1 is not valid under any of the given schemas (at x)"
    )


def test_a_schema_too_long_to_check_accepts_any_object() -> None:
    values = [f"value-{i}" for i in range(MAX_SCHEMA_CHARS // 10)]
    tools = box({"type": "object", "properties": {"q": {"enum": values}}, "required": ["q"]})
    assert tools.problem("f", {}) is None
    assert box({"type": "object", "required": ["q"]}).problem("f", {}) == "f: 'q' is a required property"


def test_unique_items_is_checked_on_arrays_of_ordinary_length() -> None:
    tools = box({"type": "object", "properties": {"xs": {"type": "array", "uniqueItems": True}}})
    assert tools.problem("f", {"xs": [{"a": 1}, {"a": 1}]}) == (
        "f: [{'a': 1}, {'a': 1}] has non-unique elements (at xs)"
    )
    # past the limit the pairwise comparison is not made
    assert tools.problem("f", {"xs": [{"a": 1}] * (MAX_UNIQUE_ITEMS + 1)}) is None


@pytest.mark.timeout(60)
def test_unevaluated_properties_beside_pattern_properties_is_not_checked() -> None:
    # jsonschema matches the patterns behind unevaluatedProperties with re: that keyword is let go
    # (the regex module answers this pattern at once, where re backtracks)
    schema = {
        "type": "object",
        "allOf": [{"patternProperties": {"^(a+)+$": {"type": "string"}}}],
        "unevaluatedProperties": False,
    }
    assert box(schema).problem("f", {"a" * 64 + "!": "v"}) is None
    plain = {"type": "object", "properties": {"a": {"type": "string"}}, "unevaluatedProperties": False}
    assert box(plain).problem("f", {"b": 1}) is not None


def test_a_schema_nested_deeper_than_the_stack_accepts_the_call() -> None:
    # 300 levels of properties: within a request body's nesting limit, past what jsonschema can
    # check with Python's stack (RecursionError escaped the vote before)
    schema: dict[str, Any] = {"type": "string"}
    arguments: Any = "x"
    for _ in range(300):
        schema = {"type": "object", "properties": {"a": schema}}
        arguments = {"a": arguments}
    assert box(schema).problem("f", arguments) is None
