"""Request bodies, validated with pydantic: known OpenAI fields are typed, unknown ones pass through.

Only what the proxy reads is typed; everything else (``top_k``, ``grammar``, ``cache_prompt``, ...)
goes to llama-server untouched, because the forwarded body is the client's own JSON object.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..vocabulary import Strategy, StreamMode
from .errors import ApiError, bad_request
from .fields import CONSTRAINTS, LogitBias, Stop, check_logit_bias, check_stop, kind

#: llama-server reads a token count as a 32-bit int: a larger one wraps to a negative count
MAX_TOKENS = 2**31 - 1


class _Open(BaseModel):
    # strict: no "5" for 5, no false for 0.0: the instances get the client's raw JSON, not these values
    model_config = ConfigDict(extra="allow", strict=True)


#: the roles OpenAI's chat API and llama-server's chat templates know
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ToolCallFunction(_Open):
    name: Annotated[str, Field(min_length=1)]
    arguments: str  # a JSON text, as OpenAI sends it


class ToolCall(_Open):
    id: str | None = None
    type: Literal["function"]  # required, as in OpenAI's API (llama-server refuses a call without it)
    function: ToolCallFunction


class Message(_Open):
    role: Role
    content: str | list[Any] | None = None
    tool_calls: list[ToolCall] | None = None

    @model_validator(mode="after")
    def _has_something(self) -> Message:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("`content` is required (only an assistant message with tool_calls may omit it)")
        return self


class StreamOptions(_Open):
    include_usage: bool = False


class JsonSchemaFormat(_Open):
    name: Annotated[str, Field(min_length=1)]  # OpenAI requires it; llama-server does not read it
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]  # llama-server refuses any other type
    json_schema: JsonSchemaFormat | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")  # llama-server's, with json_object

    @model_validator(mode="after")
    def _has_schema(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError(
                'type "json_schema" needs a `json_schema` object: {"name": ..., "schema": {...}}'
            )
        return self


class _Common(_Open):
    model: str | None = None  # a served name or none (served.check_model); answers carry the model id
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1)] | None = None
    seed: int | None = None
    temperature: Annotated[float, Field(ge=0)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None
    #: chat: the winner's per-token log-probabilities come back (``choices[0].logprobs``);
    #: completions: llama-server's ``logprobs`` count (0-20), the same way
    logprobs: bool | Annotated[int, Field(ge=0, le=20)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None  # OpenAI's limit, per token
    n_probs: Annotated[int, Field(ge=0, le=20)] | None = None  # llama-server's name for top_logprobs
    stop: Stop | None = None  # any number of strings (llama-server has no cap, unlike OpenAI's 4)
    logit_bias: LogitBias | None = None
    swarm_strategy: Strategy | None = None  # the proxy's extensions: stripped before forwarding
    swarm_stream_mode: StreamMode | None = None
    swarm_candidates: bool = False  # every counted answer in the `swarm` object (docs/api.md)

    @field_validator("stop", mode="plain", json_schema_input_type=Stop | None)
    @classmethod
    def _stop(cls, stop: Any) -> Stop | None:
        return check_stop(stop)

    @field_validator("logit_bias", mode="plain", json_schema_input_type=LogitBias | None)
    @classmethod
    def _logit_bias(cls, bias: Any) -> LogitBias | None:
        return check_logit_bias(bias)

    @property
    def wants_logprobs(self) -> bool:
        return bool(self.logprobs) or bool(self.top_logprobs) or bool(self.n_probs)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(_Common):
    messages: Annotated[list[Message], Field(min_length=1)]
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None

    @field_validator("tool_choice")
    @classmethod
    def _declared(
        cls, choice: str | dict[str, Any] | None, info: ValidationInfo
    ) -> str | dict[str, Any] | None:
        """A named tool must be one of ``tools`` (llama-server would ignore the choice)."""
        fn = choice.get("function") if isinstance(choice, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str):
            declared = {
                t["function"].get("name")
                for t in info.data.get("tools") or []
                if isinstance(t, dict) and isinstance(t.get("function"), dict)
            }
            if name not in declared:
                have = ", ".join(sorted(str(n) for n in declared)) or "none"
                raise ValueError(f"names the tool {name!r}, which tools does not declare (declared: {have})")
        return choice

    @field_validator("response_format", mode="before")
    @classmethod
    def _format_object(cls, fmt: Any) -> Any:
        return _format_object(fmt)


def _format_object(fmt: Any) -> Any:
    if fmt is not None and not isinstance(fmt, dict):
        raise ValueError(
            f'must be an object such as {{"type": "json_object"}}, not {kind(fmt)}; '
            "its type is text, json_object or json_schema"
        )
    return fmt


class CompletionRequest(_Common):
    # text, token ids, or a list of either (llama-server also takes mixed lists of text and ids)
    prompt: str | list[str | int | list[int]]
    #: llama-server's own constraints, declared ahead of ``response_format`` so that its check
    #: sees them (their values are llama-server's to check)
    json_schema: Any = None
    grammar: Any = None
    #: llama-server ignores it here; the proxy sends it as ``json_schema`` (fields.completion_format)
    response_format: ResponseFormat | None = None

    @field_validator("response_format", mode="before")
    @classmethod
    def _one_constraint(cls, fmt: Any, info: ValidationInfo) -> Any:
        """One constraint a request: a JSON format beside ``json_schema`` or ``grammar`` would
        leave the voters one of the two, unsaid which."""
        fmt = _format_object(fmt)
        other = next((k for k in CONSTRAINTS if info.data.get(k) not in (None, "")), None)
        if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema") and other:
            raise ValueError(f"{other} constrains the answer too; send one of the two")
        return fmt

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt: str | list[str | int | list[int]]) -> str | list[str | int | list[int]]:
        """llama-server reads a list without a token id in it as one prompt per item and answers
        each: a vote has one answer, so that is one prompt per request."""
        if isinstance(prompt, list) and len(prompt) > 1 and not any(isinstance(p, int) for p in prompt):
            raise ValueError(
                f"holds {len(prompt)} prompts; the swarm answers one prompt per request: "
                "send each in a request of its own"
            )
        return prompt


M = TypeVar("M", bound=_Common)

#: fields of the client's body the proxy sets itself for each voter
PROXY_FIELDS = frozenset({"swarm_strategy", "swarm_stream_mode", "swarm_candidates"})


def _no_constant(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259); Python would accept them."""
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    """A JSON number as a float; one too large for a double (``1e999``) would be ``inf``, which
    the instances would get as ``Infinity``: not JSON, as above."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large for a double")
    return value


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 that says what is wrong."""
    if not raw.strip():
        raise bad_request("the request body is empty; send a JSON object", code="invalid_json")
    try:
        # decoded strictly: json.loads(bytes) would let UTF-8-encoded surrogates through
        text = raw.decode(json.detect_encoding(raw))
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise bad_request("the request body is nested too deeply", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    if _SURROGATE_ESCAPE.search(text):
        _no_lone_surrogates(data)
    return data


#: a ``\\uD800``-``\\uDFFF`` escape: the only way a surrogate gets into the parsed body
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_lone_surrogates(data: dict[str, Any]) -> None:
    """A 400 naming the first string that holds a UTF-16 surrogate without its pair (an escaped
    ``"\\ud800"``): it is no character, it cannot be written as UTF-8, and llama-server refuses
    the whole body for it. A pair (``"\\ud83d\\ude00"``) is one character and passes."""
    stack: list[tuple[Any, list[int | str]]] = [(data, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found:
                _surrogate_error(path, found.group(), "")
        elif isinstance(value, dict):
            for key in value:
                found = _SURROGATE.search(key)
                if found:
                    _surrogate_error(path, found.group(), "a key of ")
            stack.extend((value[key], [*path, key]) for key in reversed(value))  # in the body's order
        elif isinstance(value, list):
            stack.extend((value[i], [*path, i]) for i in reversed(range(len(value))))


def _surrogate_error(path: list[int | str], char: str, what: str) -> None:
    param = ".".join(str(p) for p in path) or None
    place = f"{what}{param}" if param else "a key of the body"
    raise bad_request(
        f"{place} holds a lone UTF-16 surrogate (U+{ord(char):04X}), which is not a character: "
        "send text as UTF-8, and a character above U+FFFF as a pair of \\u escapes",
        param=param,
        code="invalid_value",
    )


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in _data_path(data, first["loc"])) or None
        msg = str(first["msg"]).removeprefix("Value error, ")  # our own validators' words, as they are
        raise ApiError(400, f"{param or 'body'}: {msg}", param=param, code="invalid_value") from None
    except RecursionError:
        raise bad_request("the request body is nested too deeply", code="invalid_value") from None


def _data_path(data: Any, loc: tuple[int | str, ...]) -> list[int | str]:
    """The part of pydantic's error location that names places in the client's JSON: ``prompt``,
    not ``prompt.str`` (the name of a union member); a missing key is kept (``messages.0.role``)."""
    path: list[int | str] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and isinstance(part, str):
            path.append(part)
            if part not in cur:
                break
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            path.append(part)
            cur = cur[part]
        else:
            break
    return path


def forwardable(data: dict[str, Any]) -> dict[str, Any]:
    """The client's body without the proxy's own fields."""
    return {k: v for k, v in data.items() if k not in PROXY_FIELDS}
