"""The tools a request declared, and what the vote does with the calls the voters make.

Before a vote over answers to a request with ``tools``, `prepare`:

- recovers a call written as text (`recover.recover_calls`) that names a declared tool: the
  answer takes part in the vote as that tool call (and, if it wins, goes back to the client as
  a structured ``tool_calls`` message);
- checks every call, structured or recovered: the tool must be declared, the arguments must be
  a JSON object that the tool's JSON schema (``function.parameters``) accepts, checked with the
  `jsonschema` library. An answer with a call that fails is dropped before the vote, with the
  reason. Nothing is executed: arguments are only decoded and checked.

    >>> box = Toolbox.from_openai([{"type": "function", "function": {"name": "read",
    ...     "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
    ...                    "required": ["path"]}}}])
    >>> box.problem("read", {"path": 3})
    "read: 3 is not of type 'string' (at path)"
    >>> box.problem("read", {"path": "a.py"}) is None
    True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .argcheck import Budget, first_error, make_validator
from .recover import Form, decode_arguments, recover_calls
from .types import Candidate, Dropped

_MAX_MESSAGE = 200


@dataclass(frozen=True)
class Toolbox:
    """The functions a request declared: name -> the JSON schema of its arguments. A schema is
    turned into a validator only when a voter calls that tool; a declared schema that is itself
    not a valid JSON schema accepts any object (the client's mistake is not the voters')."""

    schemas: dict[str, Any] = field(default_factory=dict)
    _validators: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _budget: Budget = field(default_factory=Budget, init=False, repr=False, compare=False)

    @classmethod
    def from_openai(cls, tools: Sequence[Any] | None) -> Toolbox:
        """From an OpenAI ``tools`` array: ``{"type": "function", "function": {"name",
        "parameters"}}`` (the flat ``{"type": "function", "name", "parameters"}`` is read too).
        Entries without a name are skipped. Cheap: nothing is compiled here."""
        found: dict[str, Any] = {}
        for tool in tools or []:
            if not isinstance(tool, dict):
                continue
            inner = tool.get("function")
            fn: dict[str, Any] = inner if isinstance(inner, dict) else tool
            name = fn.get("name")
            if not isinstance(name, str) or not name:
                continue
            schema = fn.get("parameters")
            found[name] = schema if schema is not None else {"type": "object"}
        return cls(found)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.schemas)

    def validator(self, name: str) -> Any:
        """The validator of ``name``'s arguments (None: accept any object), made once."""
        if name not in self._validators:
            self._validators[name] = make_validator(self.schemas[name])
        return self._validators[name]

    def problem(self, name: str, arguments: Any) -> str | None:
        """Why a call of ``name`` with ``arguments`` (decoded JSON, or the text that would not
        decode) cannot be acted on; None when it can (or when the request's time for checks
        ran out: `argcheck`)."""
        if name not in self.schemas:
            declared = ", ".join(sorted(self.schemas)) or "none"
            return f"calls {name!r}, which the request did not declare (declared: {declared})"
        if isinstance(arguments, str):
            return f"{name}: the arguments are not JSON"
        if not isinstance(arguments, dict):
            return f"{name}: the arguments are {_json_type(arguments)}, not an object"
        validator = self.validator(name)
        if validator is None:
            return None
        error = first_error(validator, arguments, self._budget)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        message = (
            error.message if len(error.message) <= _MAX_MESSAGE else error.message[:_MAX_MESSAGE] + "..."
        )
        return f"{name}: {message}" + (f" (at {where})" if where else "")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "an array" if isinstance(value, list) else "a JSON value"


@dataclass(frozen=True)
class Prepared:
    """The candidates as the vote sees them (recovered calls in place of their text), the ones
    dropped with the reason, and which were recovered, in what form."""

    candidates: list[Candidate]
    dropped: list[Dropped]
    recovered: dict[int, Form]


def prepare(candidates: Sequence[Candidate], toolbox: Toolbox) -> Prepared:
    """Recover calls written as text and drop answers whose calls cannot be acted on (module
    docstring). Text answers that write no call stay as they are."""
    out: list[Candidate] = []
    dropped: list[Dropped] = []
    recovered: dict[int, Form] = {}
    names = toolbox.names
    for i, c in enumerate(candidates):
        if c.tool_calls:
            problem = _first_problem(toolbox, c.tool_calls)
        elif c.content and (found := recover_calls(c.content, names)) is not None:
            calls = [_openai_call(tc.name, tc.arguments) for tc in found.calls]
            problem = next((p for tc in found.calls if (p := toolbox.problem(tc.name, tc.arguments))), None)
            if problem is not None:
                problem = f"wrote a call as text ({found.form}); {problem}"
            else:
                recovered[i] = found.form
                c = replace(c, content=None, tool_calls=calls, finish_reason="tool_calls")
        else:
            problem = None
        if problem is not None:
            dropped.append(Dropped(i, f"invalid tool call: {problem}"))
        out.append(c)
    return Prepared(out, dropped, recovered)


def _first_problem(toolbox: Toolbox, tool_calls: list[dict[str, Any]]) -> str | None:
    for call in tool_calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return "a call without a function name"
        problem = toolbox.problem(fn["name"], decode_arguments(fn.get("arguments", "")))
        if problem is not None:
            return problem
    return None


def _openai_call(name: str, arguments: Any) -> dict[str, Any]:
    """A call in OpenAI's shape, arguments as compact JSON text; the proxy gives it an id."""
    text = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
    return {"id": None, "type": "function", "function": {"name": name, "arguments": text}}
