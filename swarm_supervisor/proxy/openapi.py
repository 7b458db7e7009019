"""``GET /openapi.json``: an OpenAPI 3.1 document built from the proxy's pydantic models.

Request bodies come from :mod:`.schemas` (the models the proxy validates with), so the document
cannot drift from what the proxy accepts. Response bodies are described by the models below,
which exist only for this document: the proxy forwards llama-server's answers as JSON objects and
adds its ``swarm`` extension; these models name the fields a client relies on.

>>> doc = openapi_document()
>>> doc["openapi"], sorted(doc["paths"])[:2]
('3.1.0', ['/health', '/metrics'])
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from .. import __version__
from .schemas import ChatRequest, CompletionRequest
from .settings import ProxySettings

REF = "#/components/schemas/{model}"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Doc):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, upstream_error, ...")
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx the proxy answers has this OpenAI shape."""

    error: ErrorDetail


class SwarmVoter(_Doc):
    id: str
    instance: str
    latency_ms: float
    ok: bool
    error: str | None = None
    answer: str | None = None  # text, tool_calls or none as the voter wrote it; null: no answer


class Fallback(_Doc):
    """Set when the swarm runs the embedded stand-in instead of the model its plan chose."""

    planned: str = Field(description="the model the plan chose, e.g. qwen2.5-coder:1.5b:q4_k_m")
    running: str = Field(description="the stand-in that answers instead, e.g. smollm2:135m:q4_1")
    why: str = Field(description="why the planned model is not running")
    fix: str = Field(description="what to do to run the planned model")


class SwarmExtension(_Doc):
    """How the vote went: added by the proxy to every non-streamed answer (and the last chunk)."""

    votes: int
    asked: int  # voters the request went to: agreement is counted against them
    winner: str
    clusters: list[list[str]]
    agreement: float = Field(ge=0, le=1)
    strategy: str
    kind: str
    mean_similarity: float
    dropped: list[dict[str, str]]
    recovered: dict[str, str]  # voter -> the form of the tool call it wrote as text
    usage_total: dict[str, int]
    voters: list[SwarmVoter]
    fallback: Fallback | None = None


class Usage(_Doc):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ToolCall(_Doc):
    id: str | None = None
    type: str = "function"
    function: dict[str, Any]


class AssistantMessage(_Doc):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(_Doc):
    index: int
    message: AssistantMessage
    finish_reason: str | None = None


class ChatCompletion(_Doc):
    """A chat answer; with ``stream: true`` the same arrives as ``chat.completion.chunk`` SSE events."""

    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    swarm: SwarmExtension | None = None


class TextChoice(_Doc):
    index: int
    text: str
    finish_reason: str | None = None


class Completion(_Doc):
    id: str
    object: str = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None
    swarm: SwarmExtension | None = None


class ModelEntry(_Doc):
    id: str = Field(description="a name requests may send as `model`")
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    alias_of: str | None = Field(None, description="for an alias (`proxy.aliases`): the model id it names")
    context_length: int
    fallback: Fallback | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelEntry]


class Health(_Doc):
    status: Literal["ok", "unavailable"]
    model: str
    ready: int = Field(description="instances ready now")
    voters: int = Field(description="slots of the ready instances: answers per vote")
    instances: dict[str, str] = Field(description="instance id -> state")
    fallback: Fallback | None = None


class SwarmStatus(_Doc):
    """What `swarm ps --json` shows."""

    instances: list[dict[str, Any]]


_MODELS: tuple[type[BaseModel], ...] = (
    ModelEntry,
    ChatRequest,
    CompletionRequest,
    ErrorResponse,
    ChatCompletion,
    Completion,
    ModelList,
    Health,
    SwarmStatus,
)

_ERRORS: dict[str, str] = {
    "400": "The body is not JSON, not an object, or a field has the wrong type or value.",
    "401": "The proxy has an API key and the request did not send it as `Authorization: Bearer`.",
    "404": "No such path.",
    "404model": "The request names a `model` the swarm does not serve (code `model_not_found`; the "
    "message lists the served names). `proxy.accept_any_model` turns this off.",
    "405": "The path exists but not with this method.",
    "413": "The body is larger than `proxy.max_body_bytes`.",
    "502": "Every instance that voted failed (an error, invalid JSON, a dropped connection).",
    "503": "No instance is ready yet (see `Retry-After` and `swarm ps`).",
    "504": "The request deadline passed before any instance answered.",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json(ErrorResponse, _ERRORS[code]) for code in codes}


def _generate(summary: str, request: type[BaseModel], answer: type[BaseModel]) -> dict[str, Any]:
    sse = {  # one server-sent event; `data` is a JSON chunk, then `[DONE]` ends the stream
        "type": "object",
        "description": "Server-sent events: `data: {chunk}` lines, then `data: [DONE]`; "
        "`: keep-alive` comments while a streamed vote is pending.",
        "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}},
    }
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
            "responses": {
                "200": {
                    "description": "The winning answer (JSON), or its SSE stream when `stream` is true.",
                    "headers": {
                        name: {"schema": {"type": "string"}, "description": text}
                        for name, text in (
                            ("X-Swarm-Agreement", "share of the voters asked in the winner's cluster"),
                            ("X-Swarm-Strategy", "the voting strategy used"),
                            ("X-Swarm-Votes", "answers that took part in the vote"),
                            ("X-Swarm-Winner", "the voter whose answer won"),
                            ("X-Swarm-Fallback", "only while a stand-in runs: RUNNING; planned=PLANNED"),
                        )
                    },
                    "content": {
                        "application/json": {"schema": _ref(answer)},
                        "text/event-stream": {"schema": sse},
                    },
                },
                **_errors("400", "401", "413", "502", "503", "504"),
                "404": _json(ErrorResponse, _ERRORS["404model"]),
            },
        }
    }


def _get(summary: str, ok: dict[str, Any], *codes: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": ok, **_errors(*codes)}}}


def openapi_document(settings: ProxySettings | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the proxy (``settings`` decides whether a key is required)."""
    settings = settings or ProxySettings()
    _, top = models_json_schema([(m, "validation") for m in _MODELS], ref_template=REF)
    defs = top.get("$defs", {})
    metrics_ok = {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}
    paths: dict[str, Any] = {
        "/v1/chat/completions": _generate(
            "Chat completion answered by a vote of the swarm", ChatRequest, ChatCompletion
        ),
        "/v1/completions": _generate("Text completion answered by a vote", CompletionRequest, Completion),
        "/v1/models": _get(
            "The swarm's model",
            _json(ModelList, "the swarm's model id, then one entry per alias (`alias_of`)"),
            "401",
        ),
        "/v1/models/{model}": {
            "get": {
                "summary": "One model entry: the model id or an alias",
                "parameters": [
                    {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json(ModelEntry, "the entry of that name"),
                    "404": _json(ErrorResponse, _ERRORS["404model"]),
                    **_errors("401"),
                },
            }
        },
        "/health": {
            "get": {
                "summary": "200 while at least one instance is ready (never needs a key)",
                "security": [],
                "responses": {
                    "200": _json(Health, "at least one instance is ready"),
                    "503": _json(Health, "no instance is ready (with Retry-After)"),
                },
            }
        },
        "/metrics": _get("Prometheus metrics of the proxy and its instances", metrics_ok, "401"),
        "/swarm/status": _get("What `swarm ps` shows", _json(SwarmStatus, "the swarm's state"), "401"),
        "/openapi.json": _get(
            "This document",
            {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}},
            "401",
        ),
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Local Swarm",
            "version": __version__,
            "description": "An OpenAI-compatible endpoint answered by a voting swarm of llama-server "
            "instances. Unknown request fields pass through to llama-server; `swarm_strategy` "
            "and `swarm_stream_mode` (or the `X-Swarm-Strategy` / `X-Swarm-Stream-Mode` headers) "
            "choose how the swarm votes.",
        },
        "paths": paths,
        "components": {"schemas": defs},
    }
    if settings.api_key:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
