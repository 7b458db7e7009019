"""Apple Silicon through ``sysctl`` (macOS only).

Decision: an Apple Silicon Mac is ``apple_silicon=True`` **and** one GPU entry with
``vendor="apple"`` whose ``total_bytes`` is the unified memory (``hw.memsize``) and whose
``free_bytes`` is the RAM psutil calls available. That memory is the same bytes as
``ram_total_bytes``: never add the two. ``HardwareProfile.has_discrete_gpu`` is False there;
the plan budgets a fraction of unified memory, not VRAM.
"""

from __future__ import annotations

from dataclasses import dataclass

from .nvidia import ParseError
from .tools import ToolError, run_tool

SYSCTL_KEYS = (
    "machdep.cpu.brand_string",
    "hw.memsize",
    "hw.physicalcpu",
    "hw.logicalcpu",
    "hw.perflevel0.physicalcpu",
    "hw.perflevel1.physicalcpu",
    "hw.optional.arm64",
)
#: ``name: value`` lines; a name unknown on this Mac (Intel has no perflevels) is skipped by sysctl
SYSCTL_ARGV = ["sysctl", *SYSCTL_KEYS]


@dataclass(frozen=True)
class AppleInfo:
    cpu_name: str | None
    memsize: int
    physical_cores: int | None
    logical_cores: int | None
    performance_cores: int | None
    efficiency_cores: int | None
    arm64: bool

    @property
    def apple_silicon(self) -> bool:
        return self.arm64


def parse_sysctl(text: str) -> AppleInfo:
    """Parse ``sysctl NAME...`` output (``name: value`` lines)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            values[name.strip()] = value.strip()

    def number(key: str) -> int | None:
        raw = values.get(key)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise ParseError(f"sysctl {key} is not a number: {raw!r}") from None

    memsize = number("hw.memsize")
    if memsize is None:
        raise ParseError("sysctl printed no hw.memsize")
    return AppleInfo(
        cpu_name=values.get("machdep.cpu.brand_string") or None,
        memsize=memsize,
        physical_cores=number("hw.physicalcpu"),
        logical_cores=number("hw.logicalcpu"),
        performance_cores=number("hw.perflevel0.physicalcpu"),
        efficiency_cores=number("hw.perflevel1.physicalcpu"),
        arm64=number("hw.optional.arm64") == 1,
    )


def probe_apple() -> tuple[AppleInfo | None, tuple[str, ...]]:
    """Read sysctl (call on macOS only)."""
    try:
        return parse_sysctl(run_tool(SYSCTL_ARGV, allow_failure=True)), ()
    except (ToolError, ParseError) as exc:
        return None, (f"Apple: {exc}",)
