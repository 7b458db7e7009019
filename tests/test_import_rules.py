"""Data flows one way (docs/ARCHITECTURE.md), read from the code's own imports with ``ast``.

- ``swarm/``: only ``daemon.py`` imports the proxy; the supervisor reports through its events.
- ``plan/``: imports neither the proxy nor the processes (no I/O either: test_plan_pure.py).
- ``proxy/`` knows nothing of how processes are started; ``consensus/`` is pure voting.
- ``bin_fetch`` is a leaf: it never imports ``swarm_supervisor``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "swarm_supervisor"


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports (relative imports resolved; ``from x import y`` gives both
    ``x`` and ``x.y``, since ``y`` may be a module), including imports inside functions and
    ``if TYPE_CHECKING:``."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = [p for p in package if p != "__init__"]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)
    return out


def reaches(path: Path, target: str) -> list[str]:
    return sorted(m for m in imported(path) if m == target or m.startswith(target + "."))


def modules(*where: str) -> list[Path]:
    return sorted(p for w in where for p in (ROOT / w).rglob("*.py"))


def test_the_resolver_sees_relative_imports() -> None:
    """The rule below would pass vacuously if relative imports were missed: the daemon's are seen."""
    assert reaches(PKG / "swarm" / "daemon.py", "swarm_supervisor.proxy")
    assert "swarm_supervisor.swarm.events" in imported(PKG / "swarm" / "supervisor.py")


@pytest.mark.parametrize("module", modules("swarm_supervisor/swarm"), ids=lambda p: p.name)
def test_only_the_daemon_imports_the_proxy(module: Path) -> None:
    if module.name == "daemon.py":
        return
    assert not reaches(module, "swarm_supervisor.proxy"), (
        f"swarm/{module.name} imports the proxy; report through swarm/events.py and let daemon.py wire it"
    )


@pytest.mark.parametrize("module", modules("swarm_supervisor/plan"), ids=lambda p: p.name)
def test_the_plan_imports_neither_proxy_nor_processes(module: Path) -> None:
    for target in ("swarm_supervisor.proxy", "swarm_supervisor.swarm", "swarm_supervisor.cli"):
        assert not reaches(module, target), f"plan/{module.name} imports {reaches(module, target)}"


@pytest.mark.parametrize("module", modules("swarm_supervisor/proxy"), ids=lambda p: p.name)
def test_the_proxy_does_not_know_how_processes_are_started(module: Path) -> None:
    for target in ("swarm_supervisor.swarm", "swarm_supervisor.cli", "swarm_supervisor.store"):
        assert not reaches(module, target), f"proxy/{module.name} imports {reaches(module, target)}"


@pytest.mark.parametrize("module", modules("swarm_supervisor/consensus"), ids=lambda p: p.name)
def test_consensus_imports_no_stage(module: Path) -> None:
    for target in ("swarm_supervisor.proxy", "swarm_supervisor.swarm", "swarm_supervisor.cli"):
        assert not reaches(module, target), f"consensus/{module.name} imports {reaches(module, target)}"


@pytest.mark.parametrize("module", modules("bin_fetch"), ids=lambda p: p.name)
def test_bin_fetch_is_a_leaf(module: Path) -> None:
    assert not reaches(module, "swarm_supervisor"), f"bin_fetch/{module.name} imports swarm_supervisor"


@pytest.mark.parametrize(
    "module", modules("swarm_supervisor", "bin_fetch"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_nothing_imports_the_cli(module: Path) -> None:
    if module.is_relative_to(PKG / "cli") or module.name == "__main__.py":
        return
    assert not reaches(module, "swarm_supervisor.cli"), f"{module.relative_to(ROOT)} imports the CLI"
