"""AMD GPUs through ``rocm-smi --showproductname --showmeminfo vram --showdriverversion --json``.

The JSON is one object per card (``"card0"``, ``"card1"``, ...) with string values, plus a
``"system"`` object holding ``"Driver version"`` (some releases put it on each card instead)::

    {"card0": {"VRAM Total Memory (B)": "205822885888", "VRAM Total Used Memory (B)": "299687936",
               "Card Series": "AMD Instinct MI300X", ...},
     "system": {"Driver version": "6.8.5"}}

Older releases spell the product keys in lower case (``"Card series"``); both are read.
"""

from __future__ import annotations

import json
import re

from .nvidia import ParseError
from .profile import GPU
from .tools import ToolError, run_tool, which

ROCM_SMI_ARGV = ["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--showdriverversion", "--json"]

_CARD = re.compile(r"^card(\d+)$")
_NAME_KEYS = ("card series", "device name", "card model")


def _get(card: dict[str, object], key: str) -> str | None:
    for k, v in card.items():
        if k.strip().lower() == key:
            text = str(v).strip()
            return None if text in ("", "N/A") else text
    return None


def _int(card: dict[str, object], key: str, card_name: str) -> int:
    value = _get(card, key)
    if value is None:
        raise ParseError(f"rocm-smi: {card_name} has no {key!r}")
    try:
        return int(value)
    except ValueError:
        raise ParseError(f"rocm-smi: {card_name} {key!r} is not a number: {value!r}") from None


def parse_rocm_smi_json(text: str) -> tuple[GPU, ...]:
    """rocm-smi JSON -> GPUs (free = total - used), sorted by card index."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"rocm-smi did not print JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ParseError("rocm-smi JSON is not an object")
    system = data.get("system")
    system_driver = _get(system, "driver version") if isinstance(system, dict) else None
    gpus: list[GPU] = []
    for key, card in data.items():
        m = _CARD.match(key)
        if not m or not isinstance(card, dict):
            continue
        total = _int(card, "vram total memory (b)", key)
        used = _int(card, "vram total used memory (b)", key)
        name = next((n for n in (_get(card, k) for k in _NAME_KEYS) if n), "AMD GPU")
        gpus.append(
            GPU(
                vendor="amd",
                index=int(m.group(1)),
                name=name,
                total_bytes=total,
                free_bytes=max(0, total - used),
                driver=_get(card, "driver version") or system_driver,
            )
        )
    return tuple(sorted(gpus, key=lambda g: g.index))


def probe_amd() -> tuple[tuple[GPU, ...], tuple[str, ...]]:
    """AMD GPUs and notes. No rocm-smi on PATH is the normal case on other machines: no note."""
    if which("rocm-smi") is None:
        return (), ()
    try:
        return parse_rocm_smi_json(run_tool(ROCM_SMI_ARGV)), ()
    except (ToolError, ParseError) as exc:
        return (), (f"AMD: {exc}",)
