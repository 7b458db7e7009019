"""The plan's flags, shared by ``swarm plan`` and ``swarm up`` so both take exactly the same choices.

    @click.command("up")
    @plan_options
    @pass_ctx
    def command(ctx: Ctx, plan_choices: PlanChoices) -> None:
        planned = plan_for(ctx.config, plan_choices, catalogue=ctx.catalogue, dirs=ctx.dirs)

What-if flags (``--gpu-memory``, ``--ram``, ``--apple-silicon``, ``--cpu-only``) replace what
``detect()`` found; the others (``--model``, ``--instances``, ``--concurrency``, ``--context``,
``--kv-type``, ``--topology``) become :class:`PlanOverrides` (:mod:`.planning`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import click

from ..config import KvType
from ..hardware import HardwareProfile, detect, profile_from_overrides
from ..plan import Topology
from ..units import parse_size

F = TypeVar("F", bound=Callable[..., Any])


if TYPE_CHECKING:
    _ParamBase: TypeAlias = click.ParamType[int]  # generic from click 8.2; a plain class before
else:
    _ParamBase = click.ParamType


class SizeType(_ParamBase):
    """``24GiB``, ``16GB``, ``512MiB`` -> bytes."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.replace(".", "", 1).isdigit():  # `--gpu-memory 24` meant 24 GiB, not 24 bytes
            self.fail(f"{text!r} has no unit: write {text}GiB for {text} GiB (or GB, MiB, MB)", param, ctx)
        try:
            return parse_size(text)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@dataclass(frozen=True)
class PlanChoices:
    """What the plan flags said (None / empty: not given)."""

    model: str | None = None
    instances: int | None = None
    context: int | None = None
    topology: Topology | None = None
    concurrency: int | None = None
    kv_type: KvType | None = None
    processes_per_gpu: int | None = None
    gpu_memory: tuple[int, ...] = ()
    ram: int | None = None
    apple_silicon: bool = False
    cpu_only: bool = False

    @property
    def what_if(self) -> bool:
        return bool(self.gpu_memory) or self.ram is not None or self.apple_silicon or self.cpu_only


def hardware_from_options(
    choices: PlanChoices, detect_fn: Callable[[], HardwareProfile] = detect
) -> HardwareProfile:
    """This machine as ``detect()`` sees it, with the what-if flags applied."""
    return profile_from_overrides(
        detect_fn(),
        gpu_memory=choices.gpu_memory,
        ram=choices.ram,
        apple_silicon=choices.apple_silicon,
        cpu_only=choices.cpu_only,
    )


_OPTIONS: tuple[Callable[[F], F], ...] = (
    click.option(
        "--model",
        metavar="NAME[:SIZE[:QUANT]]|PATH",
        help="A catalogue model (qwen2.5-coder, qwen2.5-coder:7b, qwen2.5-coder:7b:q4_k_m) or a .gguf file.",
    ),
    click.option(
        "--instances",
        type=click.IntRange(min=1),
        help="Voters (slots in all). Default: as many as fit, up to 3 a GPU or machine "
        "(up to plan.max_instances where the config sets it).",
    ),
    click.option(
        "--concurrency",
        type=click.IntRange(min=1, max=64),
        help="Voted requests that run at once (slots = voters x this). Default: plan.concurrency, "
        "else 2 where memory allows (1 on a CPU whose cores the voters already take).",
    ),
    click.option(
        "--context",
        type=click.IntRange(min=512),
        help="Tokens of context per slot. Default: plan.context, else the model's own up to 32768 "
        "(shorter only when nothing else fits).",
    ),
    click.option(
        "--kv-type",
        "kv_type",
        type=click.Choice(["f16", "q8_0", "q4_0"]),
        help="KV-cache type (llama-server -ctk/-ctv; quantized ones turn flash attention on). "
        "q8_0 takes about half the memory of f16. Default: plan.kv_type (f16).",
    ),
    click.option(
        "--topology",
        type=click.Choice(["slots", "processes"]),
        help="One process with a slot per voter (slots) or one process per voter (processes).",
    ),
    click.option(
        "--processes-per-gpu",
        "processes_per_gpu",
        type=click.IntRange(min=1, max=8),
        help="GPU, topology slots: split each GPU's voters between this many llama-servers (each "
        "evaluates the prompt once). Default: plan.processes_per_gpu, else 2 where one process would "
        "hold 8 voters or more of a model up to 3B, else 1.",
    ),
)


def _what_if_options(hidden: bool) -> tuple[Callable[[F], F], ...]:
    return (
        click.option(
            "--gpu-memory",
            "gpu_memory",
            type=SizeType(),
            multiple=True,
            hidden=hidden,
            help="What if: an NVIDIA GPU with this much VRAM (repeat for several GPUs), e.g. 24GiB.",
        ),
        click.option(
            "--ram",
            type=SizeType(),
            hidden=hidden,
            help="What if: this much RAM (unified memory with --apple-silicon).",
        ),
        click.option("--apple-silicon", is_flag=True, hidden=hidden, help="What if: an Apple Silicon Mac."),
        click.option("--cpu-only", is_flag=True, hidden=hidden, help="What if: no GPU at all."),
    )


def plan_options(f: F) -> F:
    """Add the plan flags to a click command; it receives them as ``plan_choices: PlanChoices``."""
    return _with_plan_options(f, what_if=True)


def run_plan_options(f: F) -> F:
    """:func:`plan_options` with the what-if flags hidden from ``--help``, for a command that runs
    on the hardware it finds (it still receives them, to refuse them with a sentence that says
    where they belong)."""
    return _with_plan_options(f, what_if=False)


def _with_plan_options(f: F, what_if: bool) -> F:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        choices = PlanChoices(
            model=kwargs.pop("model"),
            instances=kwargs.pop("instances"),
            context=kwargs.pop("context"),
            topology=kwargs.pop("topology"),
            concurrency=kwargs.pop("concurrency"),
            kv_type=kwargs.pop("kv_type"),
            processes_per_gpu=kwargs.pop("processes_per_gpu"),
            gpu_memory=tuple(kwargs.pop("gpu_memory")),
            ram=kwargs.pop("ram"),
            apple_silicon=kwargs.pop("apple_silicon"),
            cpu_only=kwargs.pop("cpu_only"),
        )
        return f(*args, plan_choices=choices, **kwargs)

    decorated: Any = wrapper
    for option in reversed((*_OPTIONS, *_what_if_options(hidden=not what_if))):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]
