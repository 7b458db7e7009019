"""One way from the config and the plan flags to a plan, for ``swarm plan``, ``swarm pull`` and ``swarm up``.

    planned = plan_for(ctx.config, plan_choices, catalogue=ctx.catalogue, dirs=ctx.dirs)
    planned.plan                          # make_plan's answer, made on first use (PlanError when
                                          # nothing fits: `swarm pull` then pulls a pinned model anyway)
    planned.fallback("qwen2.5-coder:7b")  # the embedded model's plan, same flags and hardware

The model is ``--model``, else ``plan.model`` of the config. When it is a ``.gguf`` path, the
model store reads its metadata (:func:`swarm_supervisor.store.gguf_check.check_gguf_cached`,
remembered per path, size and modification time) and hands the numbers to the plan, which does
no I/O of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Catalogue, Config
from ..errors import PlanError
from ..hardware import HardwareProfile, detect
from ..paths import Dirs, ensure_private_dir
from ..plan import Plan, PlanOverrides, embedded_plan, is_gguf_path, make_plan
from ..plan.types import ModelFacts
from .options import PlanChoices, hardware_from_options


def model_spec(choices: PlanChoices, config: Config) -> str | None:
    """The model asked for: ``--model``, else the config's ``plan.model``, else None (the plan picks)."""
    return choices.model or config.plan.model


def gguf_facts(path: Path, dirs: Dirs) -> ModelFacts:
    """A local model file's numbers, read (and checked) by the store; remembered between runs."""
    from ..store.gguf_check import check_gguf_cached, split_parts

    ensure_private_dir(dirs.cache)
    return check_gguf_cached(path, dirs.models / "facts", parts=split_parts(path)).facts


def overrides_for(choices: PlanChoices, config: Config, dirs: Dirs) -> PlanOverrides:
    """The flags and the config as :class:`PlanOverrides`, with a ``.gguf`` file's facts read."""
    spec = model_spec(choices, config)
    facts = None
    model = choices.model
    if spec and is_gguf_path(spec):
        path = Path(spec).expanduser().absolute()
        if not path.is_file():
            where = "--model" if choices.model else f"plan.model in {dirs.config_file}"
            raise PlanError(f"{where}: {spec}: no such file (give the path of a .gguf model file)")
        facts = gguf_facts(path, dirs)
        model = str(path)
    return PlanOverrides(
        model=model,
        instances=choices.instances,
        context=choices.context,
        topology=choices.topology,
        concurrency=choices.concurrency,
        kv_type=choices.kv_type,
        processes_per_gpu=choices.processes_per_gpu,
        facts=facts,
    )


@dataclass(frozen=True)
class Planned:
    """What a plan is made from, and the plan; a fallback is planned from the same inputs."""

    hardware: HardwareProfile
    overrides: PlanOverrides
    catalogue: Catalogue
    config: Config

    @functools.cached_property
    def plan(self) -> Plan:
        """:func:`make_plan` of these inputs; raises :class:`PlanError` when nothing fits."""
        return make_plan(self.hardware, self.catalogue, self.config, self.overrides)

    def fallback(self, instead_of: str) -> Plan:
        """The best embedded model's plan, for when ``instead_of`` cannot be fetched."""
        return embedded_plan(self.hardware, self.catalogue, self.config, self.overrides, instead_of)


def plan_for(
    config: Config,
    choices: PlanChoices,
    *,
    catalogue: Catalogue,
    dirs: Dirs,
    detect_fn: Callable[[], HardwareProfile] = detect,
) -> Planned:
    """The inputs of the plan for this machine (with the what-if flags applied), the config and
    the flags; ``.plan`` makes it. A ``.gguf`` that is missing or unreadable is an error here."""
    hw = hardware_from_options(choices, detect_fn)
    return Planned(hw, overrides_for(choices, config, dirs), catalogue, config)
