"""Which ``model`` names the swarm answers to, and what it says about a stand-in model.

The swarm serves one model under its id (``pool.model_id``) and the ``[proxy] aliases`` of the
config; a request naming anything else gets 404 ``model_not_found`` listing those names, unless
``[proxy] accept_any_model`` is set. A request without ``model`` is always served::

    check_model("gpt-4o", pool, settings)       # ApiError 404 unless it is served
    model_entries(pool, settings, created)      # the /v1/models entries: the id, then the aliases

When the swarm runs the embedded stand-in instead of the planned model, ``pool.fallback`` holds
``{"planned", "running", "why", "fix"}``; it goes into every /v1/models entry, the ``swarm``
object of each answer and the ``X-Swarm-Fallback`` header.
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError
from .settings import ProxySettings
from .upstreams import UpstreamPool

#: the response header that names the stand-in (``running``) whenever the swarm runs one
FALLBACK_HEADER = "X-Swarm-Fallback"


def served_names(pool: UpstreamPool, settings: ProxySettings) -> list[str]:
    """The model id, then the aliases (without repeats)."""
    names = [pool.model_id]
    names += [a for a in settings.aliases if a not in names]
    return names


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def not_found(model: str, pool: UpstreamPool, settings: ProxySettings) -> ApiError:
    names = served_names(pool, settings)
    served = f"this swarm serves {_quoted(names)}"
    fb = pool.fallback
    if fb:
        served += (
            f" ({fb.get('running') or pool.model_id} is an embedded stand-in for {fb.get('planned')}: "
            f"{fb.get('why')}; {fb.get('fix')})"
        )
    return ApiError(
        404,
        f"the model {model!r} does not exist here: {served}. Send one of those as `model` (or none), "
        "add the name to `aliases` in the config's [proxy] table, or set `accept_any_model = true` there",
        type="invalid_request_error",
        code="model_not_found",
        param="model",
    )


def check_model(model: str | None, pool: UpstreamPool, settings: ProxySettings) -> None:
    """Raise the 404 of an unknown model; ``None`` or ``""`` (no name) is always served."""
    if not model or settings.accept_any_model:
        return
    if model == pool.model_id or model in settings.aliases:
        return
    raise not_found(model, pool, settings)


def model_entries(pool: UpstreamPool, settings: ProxySettings, created: int) -> list[dict[str, Any]]:
    """The /v1/models list: the model id first, then one entry per alias (``alias_of`` the id)."""
    out = []
    for name in served_names(pool, settings):
        out.append(
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "local-swarm",
                "alias_of": None if name == pool.model_id else pool.model_id,
                "context_length": pool.context,
                "meta": {"n_ctx": pool.context, "voters": pool.voters},
                "fallback": pool.fallback,
            }
        )
    return out


def fallback_headers(pool: UpstreamPool) -> dict[str, str]:
    """``X-Swarm-Fallback: RUNNING; planned=PLANNED`` while a stand-in runs, else nothing."""
    fb = pool.fallback
    if not fb:
        return {}
    return {FALLBACK_HEADER: f"{fb.get('running') or pool.model_id}; planned={fb.get('planned')}"}
