"""The plan is a pure function: no module under swarm_supervisor/plan/ reads files, runs programs
or touches the network (the model store reads GGUF metadata and hands the numbers in)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PLAN = Path(__file__).resolve().parent.parent / "swarm_supervisor" / "plan"
IO_MODULES = {"os", "pathlib", "io", "shutil", "subprocess", "socket", "gguf", "httpx", "aiohttp", "psutil"}
IO_CALLS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "stat", "GGUFReader"}


@pytest.mark.parametrize("module", sorted(PLAN.glob("*.py")), ids=lambda p: p.name)
def test_no_io_under_plan(module: Path) -> None:
    tree = ast.parse(module.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in IO_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in IO_MODULES:
                found.append(node.module)
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name in IO_CALLS:
                found.append(f"{name}() at line {node.lineno}")
    assert not found, f"{module.name} does I/O: {found}"
