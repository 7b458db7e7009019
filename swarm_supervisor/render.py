"""``swarm ps`` on screen: pure functions from the status object to rich renderables.

status = {"base_url": ..., "model": ..., "instances": [{"id": "0", "pid": 123, ...}], ...}
console.print(render_status(status, now=time.time(), width=console.width))

Under :data:`NARROW` columns the table takes a narrow layout (short headers, no column for what
no instance has, cells that never wrap), so that it fits an 80-column terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .memory import MEANING
from .units import format_bytes

#: terminals narrower than this get the narrow table
NARROW = 100

_STATE_STYLE = {
    "ready": "green",
    "starting": "yellow",
    "unhealthy": "red",
    "stopping": "yellow",
    "stopped": "dim",
    "failed": "bold red",
}
_LIVE = ("starting", "ready", "unhealthy")


@dataclass(frozen=True)
class InstanceRow:
    id: str
    pid: int | None
    port: int | None
    state: str
    gpu: str | None
    rss_bytes: int | None
    memory_bytes: int | None
    memory_kind: str | None
    vram_bytes: int | None
    uptime_s: float | None
    requests: int
    avg_latency_ms: float | None
    restarts: int
    reason: str | None = None


def rows_from_status(status: dict[str, Any], now: float) -> list[InstanceRow]:
    rows = []
    for inst in status.get("instances") or []:
        state = str(inst.get("state") or "?")
        since = inst.get("ready_at") or inst.get("started_at")
        live = state in _LIVE
        rows.append(
            InstanceRow(
                id=str(inst.get("id")),
                pid=inst.get("pid") if live else None,
                port=inst.get("port") if live else None,
                state=state,
                gpu=inst.get("gpu"),
                rss_bytes=inst.get("rss_bytes"),
                memory_bytes=inst.get("memory_bytes", inst.get("rss_bytes")),
                memory_kind=inst.get("memory_kind") or ("rss" if inst.get("rss_bytes") is not None else None),
                vram_bytes=inst.get("vram_bytes"),
                uptime_s=max(0.0, now - since) if live and isinstance(since, int | float) else None,
                requests=int(inst.get("requests") or 0),
                avg_latency_ms=inst.get("avg_latency_ms"),
                restarts=int(inst.get("restarts") or 0),
                reason=inst.get("reason"),
            )
        )
    return rows


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _opt(value: object, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def memory_kind(rows: list[InstanceRow]) -> str:
    """What the memory column shows: ``pss``, ``uss`` or ``rss`` (the least precise one measured)."""
    kinds = {r.memory_kind for r in rows if r.memory_kind}
    for kind in ("rss", "uss", "pss"):
        if kind in kinds:
            return kind
    return "pss"


def instances_table(rows: list[InstanceRow], narrow: bool = False) -> Table:
    """One row per instance; ``narrow``: the layout for terminals under :data:`NARROW` columns."""
    mem = memory_kind(rows).upper()
    gpu = not narrow or any(r.gpu for r in rows)
    vram = not narrow or any(r.vram_bytes is not None for r in rows)
    columns: list[tuple[str, str, bool]] = [
        ("ID", "right", True),
        ("PID", "right", True),
        ("PORT", "right", True),
        ("STATE", "left", True),
        ("GPU", "left", gpu),
        (mem, "right", True),
        ("VRAM", "right", vram),
        ("UP" if narrow else "UPTIME", "right", True),
        ("REQS", "right", True),
        ("LAT" if narrow else "AVG LAT", "right", True),
        ("RST" if narrow else "RESTARTS", "right", True),
    ]
    if narrow:
        table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1), header_style="bold")
    else:
        table = Table(show_edge=False, pad_edge=False)
    for name, justify, shown in columns:
        if shown:
            table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in rows:
        cells: list[str | Text] = [
            r.id,
            _opt(r.pid),
            _opt(r.port),
            Text(r.state, style=_STATE_STYLE.get(r.state, "")),
            r.gpu or "cpu",
            "-" if r.memory_bytes is None else format_bytes(r.memory_bytes),
            "-" if r.vram_bytes is None else format_bytes(r.vram_bytes),
            format_duration(r.uptime_s),
            str(r.requests),
            _opt(r.avg_latency_ms, "{:.0f} ms"),
            str(r.restarts),
        ]
        table.add_row(*(cell for cell, (_, _, shown) in zip(cells, columns, strict=True) if shown))
    return table


def fallback_lines(status: dict[str, Any]) -> list[tuple[str, str]]:
    """Set when the swarm runs the embedded stand-in (the run file's ``fallback``): what, why, how
    to get the planned model. Empty otherwise."""
    fb = status.get("fallback")
    if not isinstance(fb, dict) or not fb.get("planned"):
        return []
    running = fb.get("running") or status.get("model") or "the embedded model"
    lines = [("Fallback", f"{running} is the embedded stand-in, not the planned {fb['planned']}")]
    if fb.get("why"):
        lines.append(("", f"why: {fb['why']}"))
    if fb.get("fix"):
        lines.append(("", f"to get it: {fb['fix']}"))
    return lines


def header_lines(status: dict[str, Any], rows: list[InstanceRow]) -> list[tuple[str, Text]]:
    """(label, value) pairs: the swarm, base URL, model, the fallback if any, totals, memory."""
    ready = sum(1 for r in rows if r.state == "ready")
    measured = [r.memory_bytes for r in rows if r.memory_bytes is not None]
    vram = [r.vram_bytes for r in rows if r.vram_bytes is not None]
    voters = [status.get(k) for k in ("ready_voters", "voters")]  # None while the swarm starts
    totals = (
        f"{ready}/{len(rows)} ready, " + "/".join("?" if v is None else str(v) for v in voters) + " voters"
    )
    concurrency = status.get("concurrency")
    if isinstance(concurrency, int) and concurrency > 1:
        totals += f", {concurrency} voted requests at once"
    if isinstance(status.get("requests"), int):
        totals += f", {status['requests']} requests"
    kind = memory_kind(rows)
    memory = f"{kind.upper()} {format_bytes(sum(measured))} ({MEANING[kind]})" if measured else "-"
    status_word = str(status.get("status") or "?")
    lines = [
        ("Swarm", Text.assemble((str(status.get("name", "")), "bold cyan"), f"  [{status_word}]")),
        ("Base URL", Text(str(status.get("base_url") or "-"))),
        ("Model", Text(str(status.get("model") or "-"))),
        *[(label, Text(value, style="yellow")) for label, value in fallback_lines(status)],
        ("Totals", Text(totals)),
        ("Memory", Text(memory)),
        *([("VRAM", Text(format_bytes(sum(vram))))] if vram else []),
    ]
    if status.get("reason"):
        lines.append(("Reason", Text(str(status["reason"]), style="red")))
    return lines


def header(status: dict[str, Any], rows: list[InstanceRow]) -> Table:
    """:func:`header_lines` as a grid: a long value wraps under itself, not under the label."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in header_lines(status, rows):
        grid.add_row(label, value)
    return grid


def render_status(status: dict[str, Any], now: float, width: int | None = None) -> RenderableType:
    """The whole ``swarm ps`` screen: header, the table, then why any instance is not ready.
    ``width``: the terminal's columns (under :data:`NARROW`: the narrow table)."""
    rows = rows_from_status(status, now)
    narrow = width is not None and width < NARROW
    parts: list[RenderableType] = [header(status, rows), Text(""), instances_table(rows, narrow)]
    for r in rows:
        if r.reason and r.state != "ready":
            parts.append(Text(f"instance {r.id} {r.state}: {r.reason}", style=_STATE_STYLE.get(r.state, "")))
    return Group(*parts)
