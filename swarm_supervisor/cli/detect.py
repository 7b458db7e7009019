"""``swarm detect``: what this machine has.

Rendering is pure (:func:`render_profile`, :func:`profile_json`); the command only wires
``hardware.detect()`` and, when ``bin_fetch`` offers it, the known llama-server binary.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..hardware import HardwareProfile, detect
from ..units import format_bytes
from .app import Ctx, pass_ctx


def binary_info(described: object) -> dict[str, Any] | None:
    """Whatever ``bin_fetch.describe_known_binary`` returned, as a JSON-able dict (None: nothing known)."""
    if described is None:
        return None
    if isinstance(described, Mapping):
        return {str(k): (str(v) if isinstance(v, Path) else v) for k, v in described.items()}
    if dataclasses.is_dataclass(described) and not isinstance(described, type):
        return binary_info(dataclasses.asdict(described))
    if isinstance(described, str | Path):
        return {"path": str(described)}
    return {"description": str(described)}


def _binary_text(info: Mapping[str, Any]) -> str:
    parts = [str(info[k]) for k in ("path", "version", "backend", "source") if info.get(k) not in (None, "")]
    return "  ".join(parts) if parts else ", ".join(f"{k}={v}" for k, v in info.items())


def summary_rows(profile: HardwareProfile, binary: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """The machine as (label, value) rows, in display order."""
    cores = f"{profile.physical_cores} physical / {profile.logical_cores} logical"
    if profile.performance_cores:
        cores += f" ({profile.performance_cores} performance)"
    total, available = format_bytes(profile.ram_total_bytes), format_bytes(profile.ram_available_bytes)
    rows = [
        ("OS", f"{profile.os} ({profile.arch})"),
        ("CPU", profile.cpu_name or "unknown"),
        ("Cores", cores),
        ("RAM", f"{total} total, {available} available"),
        ("Apple Silicon", "yes (unified memory)" if profile.apple_silicon else "no"),
        ("GPUs", str(len(profile.gpus)) if profile.gpus else "none"),
    ]
    if binary is not None:
        rows.append(("llama-server", _binary_text(binary)))
    return rows


def gpu_table(profile: HardwareProfile) -> Table:
    table = Table(title="GPUs", title_justify="left", show_edge=False)
    for col in ("vendor", "index", "name", "VRAM total", "VRAM free", "driver"):
        table.add_column(col, justify="right" if col.startswith(("VRAM", "index")) else "left")
    for g in profile.gpus:
        table.add_row(
            g.vendor,
            str(g.index),
            g.name,
            format_bytes(g.total_bytes),
            format_bytes(g.free_bytes),
            g.driver or "-",
        )
    return table


def render_profile(profile: HardwareProfile, binary: Mapping[str, Any] | None = None) -> RenderableType:
    """The whole ``swarm detect`` screen: a summary table, the GPU table (if any), the notes."""
    summary = Table(title="This machine", title_justify="left", show_header=False, show_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    for label, value in summary_rows(profile, binary):
        summary.add_row(label, value)
    parts: list[RenderableType] = [summary]
    if profile.gpus:
        parts += [Text(""), gpu_table(profile)]
    if profile.notes:
        parts.append(Text(""))
        parts += [Text(f"note: {n}", style="yellow") for n in profile.notes]
    return Group(*parts)


def profile_json(profile: HardwareProfile, binary: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The profile as one JSON object (bytes as integers), plus ``llama_server`` (null when unknown)."""
    data = dataclasses.asdict(profile)
    data["gpus"] = [dataclasses.asdict(g) for g in profile.gpus]
    data["notes"] = list(profile.notes)
    data["has_discrete_gpu"] = profile.has_discrete_gpu
    data["llama_server"] = dict(binary) if binary is not None else None
    return data


def known_binary(cache_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Ask ``bin_fetch.describe_known_binary(cache_dir)`` when it exists: (info, note on failure)."""
    try:
        import bin_fetch
    except ImportError:
        return None, None
    describe = getattr(bin_fetch, "describe_known_binary", None)
    if describe is None:
        return None, None
    try:
        return binary_info(describe(cache_dir)), None
    except Exception as exc:  # describing the binary is informational: never fail detect for it
        return None, f"llama-server: could not describe the known binary: {exc}"


@click.command("detect")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (bytes as integers).")
@pass_ctx
def command(ctx: Ctx, as_json: bool) -> None:
    """Show OS, CPU cores, RAM and GPUs (and the llama-server binary once one is known).

    Never fails for a missing GPU, driver or tool: what a probe could not read is a note.
    """
    profile = detect()
    binary, note = known_binary(ctx.dirs.bin)
    if note:
        profile = dataclasses.replace(profile, notes=(*profile.notes, note))
    if as_json:
        click.echo(json.dumps(profile_json(profile, binary)))
    else:
        ctx.console.print(render_profile(profile, binary))
