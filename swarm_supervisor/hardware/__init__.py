"""The ``hardware`` stage: what this machine has, as a frozen :class:`HardwareProfile`.

    detect() -> HardwareProfile                    read this machine (never raises)
    profile_from_overrides(base, ...) -> profile   the what-if flags of ``swarm plan``

Thin I/O at the edge (``detect``, the ``probe_*`` functions), pure parsers inside
(``nvidia``, ``amd``, ``apple``), ``assemble`` puts readings together.
"""

from __future__ import annotations

from ..vocabulary import GpuVendor
from .detect import detect
from .profile import GPU, HardwareProfile, OsName
from .whatif import profile_from_overrides

__all__ = ["GPU", "GpuVendor", "HardwareProfile", "OsName", "detect", "profile_from_overrides"]
