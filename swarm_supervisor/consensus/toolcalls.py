"""Tool calls compared by structure: function name plus canonical JSON arguments.

>>> a = [{"function": {"name": "read", "arguments": '{"path": "a", "limit": 5}'}}]
>>> b = [{"function": {"name": "read", "arguments": '{"limit":5,"path":"a"}'}}]
>>> signature(a) == signature(b)
True
"""

from __future__ import annotations

import json
from typing import Any

Signature = tuple[tuple[str, str], ...]


def canonical_arguments(arguments: Any) -> str:
    """``arguments`` as canonical JSON (sorted keys, no spaces); text that is not JSON stays as it is."""
    if isinstance(arguments, str):
        try:
            value = json.loads(arguments)
        except (ValueError, RecursionError):  # too deep to parse: unparseable, compared as text
            return arguments
    else:
        value = arguments
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return str(arguments)


def signature(tool_calls: list[dict[str, Any]]) -> Signature:
    """The structure of a list of tool calls, in order: ``((name, canonical_args), ...)``.
    Call ids and anything else the upstream added are ignored."""
    out: list[tuple[str, str]] = []
    for call in tool_calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            fn = {}
        name = fn.get("name")
        out.append((str(name) if name is not None else "", canonical_arguments(fn.get("arguments", ""))))
    return tuple(out)


def names_of(sig: Signature) -> tuple[str, ...]:
    """The function names of a signature, in order: the second level of the vote."""
    return tuple(name for name, _ in sig)
