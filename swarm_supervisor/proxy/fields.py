"""Checks of the request fields llama-server reads loosely: ``stop`` and ``logit_bias``; and
``response_format`` on ``/v1/completions``, which llama-server reads on chat only.

llama-server skips a value of either that it cannot read without a word (``"stop": 5``, a bias of
``"x"``), so the client's intent is lost and the answer looks fine. These checks turn each into a
400 that names the field and the item, and keep every form llama-server does use: a ``stop`` of
any number of strings (OpenAI caps it at 4), ``logit_bias`` keys that are token texts as well as
token ids, ``false`` as a bias (ban the token), and llama-server's array of ``[token, bias]`` pairs.

>>> check_stop(["\\n\\n", "```"])
['\\n\\n', '```']
>>> check_logit_bias({"15339": -100, "hello": 5, "42": False})
{'15339': -100, 'hello': 5, '42': False}
>>> completion_format({"prompt": "{", "response_format": {"type": "json_object"}})
{'prompt': '{', 'json_schema': {'type': 'object'}}
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import Field

#: a token's bias: OpenAI's range, or false (llama-server's way to ban the token)
Bias = Annotated[float, Field(ge=-100, le=100)] | Literal[False]
#: OpenAI's object of token ids (llama-server: or token texts) to biases, or llama-server's pairs
LogitBias = dict[str, Bias] | list[tuple[int | str, Bias]]
Stop = str | list[str]

#: llama-server reads a token id as a 32-bit int
MAX_TOKEN_ID = 2**31 - 1
#: a key llama-server reads as a token id (strtol over the whole key); any other key is a text
_INT_KEY = re.compile(r"\s*[+-]?[0-9]+")


def kind(value: Any) -> str:
    """How a JSON value is called in a message: ``a number``, ``an object``, ..."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    return "null" if value is None else "an object" if isinstance(value, dict) else names[type(value)]


def check_stop(stop: Any) -> Stop | None:
    """``stop`` as it came, or a ValueError: llama-server ignores one that is not a string or
    strings, and an empty string ends every answer before its first token."""
    if stop is None:
        return None
    words = [stop] if isinstance(stop, str) else stop
    if not isinstance(words, list):
        raise ValueError(f"must be a string or an array of strings, not {kind(stop)}")
    for i, word in enumerate(words):
        if not isinstance(word, str):
            raise ValueError(f"must be a string or an array of strings; item {i} is {kind(word)}")
        if not word:
            raise ValueError(f"item {i} is an empty string, which would end every answer before it starts")
    return stop  # type: ignore[no-any-return]


def check_logit_bias(bias: Any) -> LogitBias | None:
    """``logit_bias`` as it came, or a ValueError naming the key or item llama-server would skip."""
    if bias is None:
        return None
    if isinstance(bias, dict):
        for key, value in bias.items():
            where = json.dumps(key[:40])
            _check_token(key if _INT_KEY.fullmatch(key) is None else int(key), where)
            _check_bias(value, where)
        return bias
    if isinstance(bias, list):
        for i, pair in enumerate(bias):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError(
                    f"item {i} is {kind(pair)}; an array holds [token, bias] pairs "
                    '(or send an object: {"15339": -100})'
                )
            _check_token(pair[0], f"item {i}")
            _check_bias(pair[1], f"item {i}")
        return bias
    raise ValueError(f'must be an object of token ids to biases, such as {{"15339": -100}}, not {kind(bias)}')


def _check_token(token: Any, where: str) -> None:
    if isinstance(token, str) and token:
        return
    if isinstance(token, int) and not isinstance(token, bool) and 0 <= token <= MAX_TOKEN_ID:
        return
    number = isinstance(token, int | float) and not isinstance(token, bool)
    what = "an empty string" if token == "" else token if number else kind(token)
    raise ValueError(
        f"the token of {where} is {what}; a token is an id (0 to {MAX_TOKEN_ID}) or a non-empty text"
    )


def _check_bias(bias: Any, where: str) -> None:
    if bias is False:
        return
    number = isinstance(bias, int | float) and not isinstance(bias, bool)
    if number and -100 <= bias <= 100:
        return
    raise ValueError(
        f"the bias of {where} is {bias if number else kind(bias)}; "
        "a bias is a number from -100 to 100, or false to ban the token"
    )


#: llama-server's own constraints on a completion, which ``response_format`` would clash with
CONSTRAINTS = ("json_schema", "grammar")


def completion_format(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` for ``/v1/completions`` with a checked ``response_format`` turned into the
    ``json_schema`` llama-server reads there, as its chat endpoint turns it: ``json_object`` is
    its ``schema`` or any object, ``json_schema`` its schema, ``text`` no constraint. llama-server
    skips ``response_format`` on completions without a word, so the answer would not be JSON."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return body
    out = {k: v for k, v in body.items() if k != "response_format"}
    if fmt.get("type") == "json_object":
        schema = fmt.get("schema")
    elif fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
    else:
        return out
    out["json_schema"] = schema or {"type": "object"}  # llama-server: no schema means any object
    return out


def token_ids(bias: Any) -> list[int]:
    """The token ids a checked ``logit_bias`` names (keys that read as ids, ids in pairs); its
    token texts are left out. ``token_ids({"15339": -1, "hi": 2, " 7": 0})`` is ``[15339, 7]``."""
    if isinstance(bias, dict):
        return [int(k) for k in bias if _INT_KEY.fullmatch(k)]
    if isinstance(bias, list):
        return [
            p[0] for p in bias if isinstance(p, list) and isinstance(p[0], int) and not isinstance(p[0], bool)
        ]
    return []
