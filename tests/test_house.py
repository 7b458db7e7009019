"""The house rules that keep the code easy to walk, read from the files themselves (``ast``; the
import rules between the package's stages are in test_import_rules.py):

- no module of the package, ``bin_fetch``, ``bench`` or ``testkit`` is over 400 lines (split by
  concept when one grows: docs/ARCHITECTURE.md);
- ``testkit`` (the fakes and spawn helpers) is the one thing tests and bench share: neither bench
  nor testkit imports ``tests``, testkit does not import ``bench``, and a test imports ``bench``
  only to test bench itself (``tests/test_bench_*.py``);
- the process fake runs as a llama-server binary under whatever ``python3`` is on PATH, so it and
  the surface it answers with import only the standard library.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400


def modules(*where: str) -> list[Path]:
    return sorted(p for w in where for p in (ROOT / w).rglob("*.py") if "results" not in p.parts)


def top_imports(path: Path) -> set[str]:
    """The top-level package of every absolute import in ``path``, in functions too."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("module", modules("swarm_supervisor", "bin_fetch", "bench", "testkit"), ids=rel)
def test_no_module_is_over_400_lines(module: Path) -> None:
    lines = len(module.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{rel(module)} has {lines} lines (> {MAX_LINES}): split it by concept"


def test_the_line_rule_sees_the_modules() -> None:
    """It would pass vacuously over an empty list: the bench commands and the fakes are there."""
    names = {rel(p) for p in modules("bench", "testkit")}
    assert {"bench/soak.py", "bench/load.py", "testkit/llama/surface.py", "testkit/spawn.py"} <= names


@pytest.mark.parametrize("module", modules("bench", "testkit"), ids=rel)
def test_bench_and_testkit_never_import_tests(module: Path) -> None:
    found = top_imports(module)
    assert "tests" not in found, f"{rel(module)} imports tests/: move what it needs into testkit/"
    assert "fakes" not in found, f"{rel(module)} imports the old tests/fakes: use testkit"
    if rel(module).startswith("testkit/"):
        assert "bench" not in found, f"{rel(module)} imports bench/: testkit sits below both"


@pytest.mark.parametrize("module", modules("tests"), ids=rel)
def test_only_bench_tests_import_bench(module: Path) -> None:
    if module.name.startswith("test_bench_"):
        return
    assert "bench" not in top_imports(module), (
        f"{rel(module)} imports bench/: shared helpers belong in testkit/, or name it test_bench_*.py"
    )


def test_the_import_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from tests.fakes import x\n    import bench.load\n", encoding="utf-8")
    assert top_imports(src) == {"tests", "bench"}


@pytest.mark.parametrize("name", ["__init__.py", "surface.py", "server.py"])
def test_the_process_fake_needs_only_the_standard_library(name: str) -> None:
    path = ROOT / "testkit" / "llama" / name
    third_party = top_imports(path) - set(sys.stdlib_module_names) - {"__future__", "testkit"}
    assert not third_party, (
        f"testkit/llama/{name} imports {sorted(third_party)}: the fake runs under any python3"
    )
