"""``swarm ps`` on screen: pure functions from the status object to rich renderables.

status = {"base_url": ..., "model": ..., "instances": [{"id": "0", "pid": 123, ...}], ...}
console.print(render_status(status, now=time.time()))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .units import format_bytes

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


def instances_table(rows: list[InstanceRow]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for name, justify in (
        ("ID", "right"),
        ("PID", "right"),
        ("PORT", "right"),
        ("STATE", "left"),
        ("GPU", "left"),
        ("RSS", "right"),
        ("VRAM", "right"),
        ("UPTIME", "right"),
        ("REQS", "right"),
        ("AVG LAT", "right"),
        ("RESTARTS", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r.id,
            _opt(r.pid),
            _opt(r.port),
            Text(r.state, style=_STATE_STYLE.get(r.state, "")),
            r.gpu or "cpu",
            "-" if r.rss_bytes is None else format_bytes(r.rss_bytes),
            "-" if r.vram_bytes is None else format_bytes(r.vram_bytes),
            format_duration(r.uptime_s),
            str(r.requests),
            _opt(r.avg_latency_ms, "{:.0f} ms"),
            str(r.restarts),
        )
    return table


def header_lines(status: dict[str, Any], rows: list[InstanceRow]) -> list[Text]:
    ready = sum(1 for r in rows if r.state == "ready")
    rss = sum(r.rss_bytes or 0 for r in rows)
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
    totals += f", RSS {format_bytes(rss)}"
    if vram:
        totals += f", VRAM {format_bytes(sum(vram))}"
    status_word = str(status.get("status") or "?")
    lines = [
        Text.assemble(("Swarm ", "bold"), (str(status.get("name", "")), "bold cyan"), f"  [{status_word}]"),
        Text.assemble(("Base URL  ", "bold"), str(status.get("base_url") or "-")),
        Text.assemble(("Model     ", "bold"), str(status.get("model") or "-")),
        Text.assemble(("Totals    ", "bold"), totals),
    ]
    if status.get("reason"):
        lines.append(Text(f"reason: {status['reason']}", style="red"))
    return lines


def render_status(status: dict[str, Any], now: float) -> RenderableType:
    """The whole ``swarm ps`` screen: header, the table, then why any instance is not ready."""
    rows = rows_from_status(status, now)
    parts: list[RenderableType] = [*header_lines(status, rows), Text(""), instances_table(rows)]
    for r in rows:
        if r.reason and r.state != "ready":
            parts.append(Text(f"instance {r.id} {r.state}: {r.reason}", style=_STATE_STYLE.get(r.state, "")))
    return Group(*parts)
