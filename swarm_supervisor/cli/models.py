"""``swarm models``: the cached model weights and llama-server binaries, and removing one.

The store (:mod:`swarm_supervisor.store.inventory`) and ``bin_fetch`` (:mod:`bin_fetch.inventory`)
list what their caches hold, :mod:`swarm_supervisor.in_use` which running swarm uses what; this
module joins them and refuses to remove anything a running swarm uses.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ..errors import SwarmStateError
from ..units import format_bytes
from .app import Ctx, pass_ctx

GROUPS = ("models", "binaries")


@dataclass(frozen=True)
class Row:
    """One thing in a cache, as `swarm models` shows it."""

    group: str  # "models" (the models cache) or "binaries" (the binary cache)
    name: str
    kind: str  # model, binary, source, partial
    bytes: int
    source: str
    paths: tuple[Path, ...]  # what removing it deletes
    used_by: list[str] = field(default_factory=list)  # running swarms that use it
    version: str | None = None
    remove: Callable[[], None] | None = None  # deletes it


def inventory(ctx: Ctx) -> list[Row]:
    from bin_fetch.inventory import list_binaries, remove_binary

    from ..in_use import files_in_use, used_by
    from ..store.inventory import list_models, paths_of, remove_model

    in_use = files_in_use(ctx.dirs)
    rows = []
    for m in list_models(ctx.dirs.models, ctx.catalogue):
        paths = paths_of(m)
        rows.append(
            Row(
                "models",
                m.name,
                m.kind,
                m.bytes,
                m.source,
                paths,
                used_by(paths, in_use),
                remove=functools.partial(remove_model, m),
            )
        )
    bin_dir = ctx.dirs.bin
    for b in list_binaries(bin_dir):
        rows.append(
            Row(
                "binaries",
                b.name,
                b.kind,
                b.bytes,
                b.source,
                (b.path,),
                used_by((b.path,), in_use),
                version=b.version,
                remove=functools.partial(remove_binary, bin_dir, b),
            )
        )
    return rows


def _remove(ctx: Ctx, rows: list[Row], name: str) -> None:
    row = next((r for r in rows if r.name == name), None)
    if row is None:
        names = ", ".join(r.name for r in rows) or "none (the caches are empty)"
        raise click.BadParameter(f"nothing cached is named {name!r}; the names: {names}", param_hint="--rm")
    if row.used_by:
        swarms = ", ".join(repr(s) for s in row.used_by)
        how = " and ".join(f"`swarm down{'' if s == 'default' else ' --name ' + s}`" for s in row.used_by)
        raise SwarmStateError(f"{name} is in use by the running swarm {swarms}; stop it first ({how})")
    from bin_fetch.errors import FetchBinaryError

    assert row.remove is not None
    try:
        row.remove()
    except FetchBinaryError as exc:  # bin_fetch's own tree: shown the same way as the store's
        raise SwarmStateError(str(exc)) from None
    ctx.console.print(f"Removed {name} ({format_bytes(row.bytes)}).", highlight=False)


def _as_json(row: Row) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": row.kind,
        "bytes": row.bytes,
        "source": row.source,
        "version": row.version,
        "paths": [str(p) for p in row.paths],
        "used_by": row.used_by,
    }


def _table(rows: list[Row]) -> Any:
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for col in ("NAME", "KIND", "SIZE", "SOURCE", "USED BY"):
        table.add_column(col, justify="right" if col == "SIZE" else "left", overflow="fold")
    for group in GROUPS:
        mine = [r for r in rows if r.group == group]
        for i, r in enumerate(mine):
            used = ", ".join(r.used_by) or "-"
            table.add_row(
                r.name, r.kind, format_bytes(r.bytes), r.source, used, end_section=i == len(mine) - 1
            )
    return table


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--rm", "remove", metavar="NAME", help="Remove this model or binary (not one a running swarm uses)."
)
@pass_ctx
def command(ctx: Ctx, as_json: bool, remove: str | None) -> None:
    """List the cached model weights and llama-server binaries: size, source and which running
    swarm uses each; `--rm NAME` removes one that no running swarm uses.

    \b
    swarm models                          what the caches hold
    swarm models --rm qwen2.5-coder:7b:q4_k_m
    swarm models --rm partial:Qwen/Qwen2.5-Coder-7B-Instruct-GGUF/3f2a9c01b7de   a stale download
    """
    rows = inventory(ctx)
    if remove is not None:
        _remove(ctx, rows, remove)
        return
    if as_json:
        out: dict[str, Any] = {group: [_as_json(r) for r in rows if r.group == group] for group in GROUPS}
        out["dirs"] = {"models": str(ctx.dirs.models), "binaries": str(ctx.dirs.bin)}
        click.echo(json.dumps(out, indent=2))
        return
    if not rows:
        ctx.console.print(
            f"Nothing cached yet in {ctx.dirs.cache}: `swarm pull` fetches what `swarm up` needs."
        )
        return
    ctx.console.print(_table(rows))
    total = sum(r.bytes for r in rows)
    ctx.console.print(
        f"\n{len(rows)} item(s), {format_bytes(total)} in {ctx.dirs.cache}. "
        "`swarm models --rm NAME` removes one that no running swarm uses.",
        highlight=False,
    )
