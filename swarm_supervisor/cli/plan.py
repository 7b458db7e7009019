"""``swarm plan``: which model, size and quantization would run, how, and the memory sum behind it.

Rendering is pure (:func:`render_plan`); the command wires hardware (with the what-if flags),
the catalogue, the config and :func:`make_plan`.
"""

from __future__ import annotations

import json

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..plan import Plan, arithmetic_lines, plan_to_json
from ..plan.guard import voter_excess
from ..units import MiB, format_bytes
from .app import Ctx, pass_ctx
from .options import PlanChoices, plan_options
from .planning import plan_for


def _where(plan: Plan) -> str:
    if plan.device != "gpu":
        return "Apple GPU (unified memory)" if plan.device == "apple" else "CPU"
    spots = []
    for p in plan.placements:
        gpus = p.gpus or ((p.gpu,) if p.gpu is not None else ())
        spots.append(f"#{p.instance} on GPU {'+'.join(str(g) for g in gpus)}")
    return ", ".join(spots)


def plan_rows(plan: Plan) -> list[tuple[str, str]]:
    """The plan as (label, value) rows, in display order."""
    model = plan.gguf_path or f"{plan.model} {plan.size} {plan.quant}"
    if plan.embedded:
        model += " (embedded)"
    return [
        ("Model", model),
        ("Serves as", plan.model_id),
        ("Voters", str(plan.voters)),
        ("Requests at once", str(plan.concurrency)),
        (
            "Processes x slots",
            f"{plan.processes} x {plan.slots} ({plan.topology}): {plan.voters_per_process} voter(s) x "
            f"{plan.concurrency} request(s) at once",
        ),
        ("Context per slot", f"{plan.context} tokens"),
        ("KV cache", plan.kv_type + ("" if plan.kv_type == "f16" else " (flash attention on)")),
        ("Threads per process", str(plan.threads)),
        ("GPU layers", str(plan.gpu_layers)),
        ("Where", _where(plan)),
        ("Memory", f"{format_bytes(plan.memory.total_bytes)} of {format_bytes(plan.memory.budget_bytes)}"),
        ("Prompt cache", _cache(plan)),
    ]


def _cache(plan: Plan) -> str:
    """llama-server's host-RAM prompt cache (plan/cache.py), and whether Memory counts it."""
    m = plan.memory
    if not m.cache_ram_bytes:
        return "off (--cache-ram 0): memory is short"
    each = f"{plan.processes} x {format_bytes(m.cache_ram_bytes)} (--cache-ram {m.cache_ram_bytes // MiB})"
    return each + (", counted in Memory" if m.cache_in_budget else " of host RAM, beside the VRAM")


def render_plan(plan: Plan) -> RenderableType:
    """The whole ``swarm plan`` screen: the plan, the memory arithmetic, reasons and warnings."""
    table = Table(title="The plan", title_justify="left", show_header=False, show_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in plan_rows(plan):
        table.add_row(label, value)
    parts: list[RenderableType] = [table, Text(""), Text("Memory", style="bold")]
    parts += [Text(f"  {line}") for line in arithmetic_lines(plan)]
    parts += [Text(""), Text("Why", style="bold")]
    parts += [Text(f"  {r}") for r in plan.reasons]
    if plan.warnings:
        parts.append(Text(""))
        parts += [Text(f"warning: {w}", style="yellow") for w in plan.warnings]
    return Group(*parts)


@click.command("plan")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (bytes as integers).")
@plan_options
@pass_ctx
def command(ctx: Ctx, as_json: bool, plan_choices: PlanChoices) -> None:
    """Show what would run here (model, size, quantization, voters, slots, context, threads, GPU
    layers, placement) and the memory arithmetic behind it. Downloads and starts nothing.

    \b
    swarm plan --gpu-memory 24GiB          what would run on one 24 GiB card
    swarm plan --gpu-memory 80GiB --gpu-memory 80GiB
    swarm plan --apple-silicon --ram 16GiB
    swarm plan --model qwen2.5-coder:7b --instances 4 --context 8192
    swarm plan --gpu-memory 24GiB --kv-type q8_0 --concurrency 4
    """
    planned = plan_for(ctx.config, plan_choices, catalogue=ctx.catalogue, dirs=ctx.dirs)
    plan = planned.plan
    if as_json:
        click.echo(json.dumps(plan_to_json(plan)))
    else:
        ctx.console.print(render_plan(plan))
    too_many = voter_excess(plan, planned.hardware, ctx.config)
    if too_many:
        ctx.warn(f"`swarm up` refuses this without --force: {too_many}")
