"""Tool calls written as text: small models often write the call they mean in their answer instead
of the structured ``tool_calls`` field, and a client like opencode then shows the text instead of
acting on it. This module finds such a call, without running anything: it only decodes JSON.

The forms looked for, in this order (the first form that yields a call wins):

``tag``
    ``<tool_call>{"name": "read", "arguments": {...}}</tool_call>`` (Hermes / Qwen style; a
    missing closing tag is tolerated).
``fenced``
    a fenced block (```` ```json ````, or any label) whose body is the call.
``bare``
    a JSON object or list anywhere in the text.

A JSON value is a call when it names a tool the request declared, in one of these shapes:
``{"name": N, "arguments": A}`` (also ``"parameters"``, ``"args"``, ``"input"`` for A),
``{"function": N, "arguments": A}``, ``{"function": {"name": N, "arguments": A}}``,
``{"tool": N, ...}``, the llama.cpp generic ``{"tool_call": {...}}`` / ``{"tool_calls": [...]}``,
or a list of calls. ``A`` may be an object or a JSON text; a call without it has no arguments.

    >>> found = recover_calls('<tool_call>{"name": "glob", "arguments": {"pattern": "*.py"}}</tool_call>',
    ...                       {"glob"})
    >>> found.form, found.calls
    ('tag', [TextCall(name='glob', arguments={'pattern': '*.py'})])
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Set
from dataclasses import dataclass
from typing import Any, Literal

from .code import code_blocks

Form = Literal["tag", "fenced", "bare"]

_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_NAME_KEYS = ("name", "function", "tool", "tool_name")
_ARG_KEYS = ("arguments", "parameters", "args", "input")
_WRAPPERS = ("tool_calls", "tool_call", "function_call")
#: bounds on the work done for one answer (it is on the request path)
_MAX_TEXT = 64 * 1024
_MAX_STARTS = 256
_decoder = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class TextCall:
    """One call found in text: the tool's name and its arguments as decoded (any JSON value;
    a string when the model wrote the arguments as a JSON text that does not decode)."""

    name: str
    arguments: Any


@dataclass(frozen=True, slots=True)
class Recovered:
    """The calls an answer wrote as text, and the form they were written in."""

    calls: list[TextCall]
    form: Form


def recover_calls(text: str, declared: Set[str]) -> Recovered | None:
    """The tool calls ``text`` writes out, when at least one names a tool in ``declared``; None
    when the text holds no such call. Calls to undeclared tools are left out (they are JSON that
    happens to have a ``name``, not a call the client could act on)."""
    if not text or not declared or len(text) > _MAX_TEXT:
        return None
    if "<tool_call>" in text:
        calls = [c for body in _TAG.findall(text) for c in _calls_in(_values(body), declared)]
        if calls:
            return Recovered(calls, "tag")
    if "```" in text:
        calls = [c for b in code_blocks(text) for c in _calls_in(_values(b.body), declared)]
        if calls:
            return Recovered(calls, "fenced")
    calls = list(_calls_in(_values(text), declared))
    return Recovered(calls, "bare") if calls else None


def _values(text: str) -> Iterator[Any]:
    """Every JSON object or list in ``text``, outermost first, left to right."""
    pos = 0
    starts = 0
    while starts < _MAX_STARTS:
        brace, bracket = text.find("{", pos), text.find("[", pos)
        found = [i for i in (brace, bracket) if i >= 0]
        if not found:
            return
        start = min(found)
        starts += 1
        try:
            value, end = _decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            pos = start + 1
            continue
        yield value
        pos = end


def _calls_in(values: Iterator[Any], declared: Set[str]) -> Iterator[TextCall]:
    for value in values:
        yield from _as_calls(value, declared, depth=0)


def _as_calls(value: Any, declared: Set[str], depth: int) -> Iterator[TextCall]:
    if depth > 3:
        return
    if isinstance(value, list):
        for item in value:
            yield from _as_calls(item, declared, depth + 1)
        return
    if not isinstance(value, dict):
        return
    for key in _WRAPPERS:
        if key in value and isinstance(value[key], list | dict):
            yield from _as_calls(value[key], declared, depth + 1)
            return
    call = _one_call(value, declared)
    if call is not None:
        yield call


def _one_call(obj: dict[str, Any], declared: Set[str]) -> TextCall | None:
    inner = obj.get("function")
    if isinstance(inner, dict):  # OpenAI's own shape: {"type": "function", "function": {...}}
        return _one_call(inner, declared)
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if name is None or name not in declared:
        return None
    return TextCall(name, decode_arguments(next((obj[k] for k in _ARG_KEYS if k in obj), {})))


def decode_arguments(arguments: Any) -> Any:
    """Arguments written as a JSON text, decoded (blank text: no arguments, ``{}``); anything
    else, or text that does not decode, as it is (the schema check then says what is wrong)."""
    if not isinstance(arguments, str):
        return arguments
    if not arguments.strip():
        return {}
    try:
        return json.loads(arguments)
    except (ValueError, RecursionError):
        return arguments
