"""A tool call's arguments checked against the JSON schema its request declared for the tool,
with the `jsonschema` library, at a bounded cost.

The schema is the client's and the arguments are a model's, and the check runs on the proxy's
event loop: a check that takes a minute stalls every client for that minute. Neither side can
be trusted to be cheap. A ``pattern`` such as ``^(a|aa)+$`` backtracks for minutes on forty
characters under Python's ``re``, and a schema of a few hundred bytes whose ``anyOf`` branches
``$ref`` the same definitions takes time exponential in their depth. So:

- every regular expression of a schema (``pattern``, ``patternProperties`` and the
  ``additionalProperties`` that depends on them) is matched with the `regex` module, which
  avoids most catastrophic backtracking and takes a timeout for the rest;
- the checks of one request share a time budget (`Budget`, `BUDGET_S` of checking in all);
  a check that runs past it stops, and that call and every later one of the request count as
  valid (not checked): the vote goes on as if the request had declared no schema;
- a schema longer than `MAX_SCHEMA_CHARS` of JSON is not checked at all, nor ``uniqueItems``
  on an array of more than `MAX_UNIQUE_ITEMS` items, nor ``unevaluatedProperties`` in a schema
  that also has ``patternProperties`` (jsonschema matches those with ``re``).

A call that was not checked is never dropped: the check exists to drop calls a client cannot act
on, and a call it could not judge is not known to be one.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: seconds of schema checking one request may spend, over all its voters' calls
BUDGET_S = 0.1
#: a declared schema whose JSON is longer than this is not checked
MAX_SCHEMA_CHARS = 256 * 1024
#: ``uniqueItems`` is not checked on a longer array (jsonschema compares unhashable items pairwise)
MAX_UNIQUE_ITEMS = 1000

_deadline: ContextVar[float] = ContextVar("schema_check_deadline", default=math.inf)


class OverBudget(Exception):
    """The request's time for schema checks ran out during a check."""


@dataclass
class Budget:
    """The checking time one request has left, spent by `first_error`."""

    left_s: float = BUDGET_S

    @property
    def spent(self) -> bool:
        return self.left_s <= 0


def _left() -> float:
    """Seconds left before the current check's deadline; `OverBudget` when none are."""
    left = _deadline.get() - time.perf_counter()
    if left <= 0:
        raise OverBudget
    return left


def _search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches somewhere in ``text`` (``re.search``'s question), within the
    time left; a pattern the `regex` module cannot read counts as matching (not held against
    the voter)."""
    import regex  # loaded by make_validator; only a schema with patterns needs it

    left = _left()
    try:
        return regex.search(pattern, text, timeout=None if math.isinf(left) else left) is not None
    except TimeoutError:
        raise OverBudget from None
    except (regex.error, RecursionError, OverflowError):
        return True


def first_error(validator: Any, arguments: Any, budget: Budget) -> Any | None:
    """The most relevant error of ``arguments`` under ``validator`` (`make_validator`'s), or None
    when they are valid or when the check cannot be finished within ``budget`` (then the budget
    is spent, and every later call of the request goes unchecked)."""
    from jsonschema import exceptions as schema_errors
    from referencing.exceptions import Unresolvable

    if budget.spent:
        return None
    start = time.perf_counter()
    token = _deadline.set(start + budget.left_s)
    try:
        return schema_errors.best_match(validator.iter_errors(arguments))
    except OverBudget:
        budget.left_s = 0.0
        log.warning(
            "tool-call check: the declared schemas took more than %.0f ms to check; "
            "this request's calls count as valid",
            BUDGET_S * 1000,
        )
        return None
    except (Unresolvable, RecursionError):
        return None  # a schema that cannot be applied (a $ref to elsewhere): not the voter's fault
    finally:
        _deadline.reset(token)
        if not budget.spent:
            budget.left_s -= time.perf_counter() - start


def make_validator(schema: Any) -> Any | None:
    """A validator of arguments for ``schema`` (its own draft; 2020-12 when it names none), or
    None when it is not to be checked: not a JSON schema, too long, or not a valid schema of its
    draft (the client's mistake is not the voters')."""
    if not isinstance(schema, dict | bool):
        return None
    try:
        text = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        return None
    if len(text) > MAX_SCHEMA_CHARS or not _valid_schema(text):
        return None
    # jsonschema (with referencing, attrs, rpds: about 50 ms) on the first request with tools,
    # not at the proxy's start, which `swarm up` waits for
    from jsonschema import validators

    base = validators.validator_for(schema, default=validators.Draft202012Validator)
    if "pattern" in text:
        import regex  # noqa: F401  # here, not on the first match: its import is not the check's time

    lenient = "patternProperties" in text and "unevaluatedProperties" in text
    return _bounded(base, lenient)(schema)


@functools.lru_cache(maxsize=512)
def _valid_schema(text: str) -> bool:
    """Whether the JSON text of a schema is a valid schema of its draft. Checking against the
    metaschema is the slow part (about 3 ms for one of opencode's tools) and clients send the
    same tools with every request, so the answer is remembered."""
    from jsonschema import exceptions as schema_errors
    from jsonschema import validators

    schema = json.loads(text)
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except (schema_errors.SchemaError, RecursionError):
        return False
    return True


Keyword = Callable[[Any, Any, Any, Any], Any]


@functools.cache
def _bounded(base: Any, lenient_unevaluated: bool) -> Any:
    """``base`` (a jsonschema validator class) with every keyword timed against the deadline and
    the regular expressions matched by `_search` (module docstring)."""
    from jsonschema import validators

    keywords: dict[str, Keyword] = dict(base.VALIDATORS)
    if "pattern" in keywords:
        keywords["pattern"] = _pattern
    if "patternProperties" in keywords:
        keywords["patternProperties"] = _pattern_properties
    if "additionalProperties" in keywords:
        keywords["additionalProperties"] = _additional_properties(keywords["additionalProperties"])
    if "uniqueItems" in keywords:
        keywords["uniqueItems"] = _unique_items(keywords["uniqueItems"])
    if lenient_unevaluated and "unevaluatedProperties" in keywords:
        keywords["unevaluatedProperties"] = _unchecked
    return validators.extend(base, {name: _timed(fn) for name, fn in keywords.items()})


def _timed(keyword: Keyword) -> Keyword:
    def timed(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        _left()
        return keyword(validator, value, instance, schema)

    return timed


def _unchecked(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
    return iter(())


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and isinstance(pattern, str) and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object") or not isinstance(patterns, dict):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(original: Keyword) -> Keyword:
    """``additionalProperties`` as jsonschema has it, except that the keys ``patternProperties``
    covers are found by `_search`."""

    def keyword(validator: Any, additional: Any, instance: Any, schema: Any) -> Iterator[Any]:
        from jsonschema.exceptions import ValidationError

        patterns = schema.get("patternProperties")
        if not patterns or not isinstance(patterns, dict) or not validator.is_type(instance, "object"):
            yield from original(validator, additional, instance, schema) or ()
            return
        named = schema.get("properties") or {}
        extras = [k for k in instance if k not in named and not any(_search(p, k) for p in patterns)]
        if validator.is_type(additional, "object"):
            for key in extras:
                yield from validator.descend(instance[key], additional, path=key)
        elif additional is False and extras:
            listed = ", ".join(repr(k) for k in sorted(extras))
            yield ValidationError(f"{listed}: not allowed (matched by no property name or pattern)")

    return keyword


def _unique_items(original: Keyword) -> Keyword:
    def keyword(validator: Any, unique: Any, instance: Any, schema: Any) -> Any:
        if isinstance(instance, list) and len(instance) > MAX_UNIQUE_ITEMS:
            return None
        return original(validator, unique, instance, schema)

    return keyword
