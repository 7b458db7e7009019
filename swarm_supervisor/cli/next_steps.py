"""What ``swarm up`` prints last: where the swarm is, one request to try, what to run next, and,
when the embedded stand-in runs instead of the planned model, that it does and how to get the
real one. Pure functions of the run record and of how ``swarm`` was started::

    for line in next_steps(status, swarm_command(), took_s=1.2):
        console.print(line)

:func:`swarm_command` is what the user can type to run ``swarm`` again: ``swarm`` when that is
what the shell finds, else the path of the script (``.venv/bin/swarm`` after ``make up``, which
runs it from the virtual environment), or ``python -m swarm_supervisor`` with the interpreter
that runs now.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

#: the environment variable the printed request (and ``swarm opencode``) reads the key from
API_KEY_ENV = "SWARM_API_KEY"
PROMPT = "Write a Python function that reverses a string."


def _shown(path: Path, cwd: Path) -> str:
    """``path`` relative to ``cwd`` when it lies below it (``.venv/bin/swarm``), else absolute."""
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


def _same_file(a: str | None, b: Path) -> bool:
    if a is None:
        return False
    try:
        return Path(a).samefile(b)
    except OSError:
        return False


def swarm_command(
    argv0: str | None = None,
    executable: str | None = None,
    path: str | None = None,
    cwd: Path | None = None,
) -> str:
    """The command that runs this ``swarm`` from the user's shell (defaults: this process)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    path = os.environ.get("PATH", "") if path is None else path
    cwd = Path.cwd() if cwd is None else cwd
    script = Path(argv0)
    if script.name in ("__main__.py", "-m", "-c") or script.suffix == ".py" or not script.name:
        python = Path(executable)
        found = shutil.which("python", path=path) or shutil.which("python3", path=path)
        # the same interpreter by path (a venv's python is a link to the system's: compare the
        # links, not what they point to)
        if found is not None and Path(found).absolute() == python.absolute():
            shown = Path(found).name
        else:
            shown = _shown(python.absolute(), cwd)
        return f"{shlex.quote(shown)} -m swarm_supervisor"
    if script.name == "swarm" and _same_file(shutil.which("swarm", path=path), script):
        return "swarm"
    shown = _shown((cwd / script).absolute() if not script.is_absolute() else script, cwd)
    if os.sep not in shown:
        shown = f".{os.sep}{shown}"  # a bare name would be looked up on PATH
    return shlex.quote(shown)


def example_request(base_url: str, model: str, key_required: bool) -> str:
    """One curl command line, ready to paste (the key from ``$SWARM_API_KEY`` when one is needed)."""
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 128}
    parts = [f"curl -s {base_url.rstrip('/')}/chat/completions", "-H 'Content-Type: application/json'"]
    if key_required:
        parts.append(f'-H "Authorization: Bearer ${API_KEY_ENV}"')
    parts.append(f"-d {shlex.quote(json.dumps(body))}")
    return " ".join(parts)


def next_steps(status: dict[str, Any], command: str, took_s: float | None = None) -> list[str]:
    """The last lines of ``swarm up`` (plain text, no markup); a fallback's note comes last, so
    that it is what stays on screen."""
    name = str(status.get("name") or "default")
    flag = "" if name == "default" else f" --name {name}"
    base_url = str(status.get("base_url") or "")
    model = str(status.get("model") or "")
    proxy = status.get("proxy") or {}
    keyed = bool(proxy.get("requires_api_key"))
    if not base_url:  # a swarm still starting (a second `swarm up --if-not-running` meanwhile)
        return [f"It is still starting: `{command} ps{flag}` shows how far it is."]
    lines = [f"Base URL: {base_url}", "", "Try it:", f"  {example_request(base_url, model, keyed)}"]
    if keyed:
        lines.append(f"  (the proxy wants its key: export {API_KEY_ENV}=<proxy.api_key from your config>)")
    lines += [
        "",
        f"opencode: {command} opencode{flag} --write   (then run opencode in this directory)",
        f"See it:   {command} ps{flag}      Stop it: {command} down{flag}",
    ]
    if took_s is not None:
        lines += ["", f"All ready in {took_s:.1f} s."]
    fb = status.get("fallback")
    if isinstance(fb, dict) and fb.get("planned"):
        running = fb.get("running") or model
        lines += [
            "",
            f"NOTE: this swarm runs {running}, the small embedded stand-in, not the planned {fb['planned']}"
            + (f" ({fb['why']})." if fb.get("why") else "."),
        ]
        if fb.get("fix"):
            lines.append(f"To get the planned model: {fb['fix']}.")
    return lines
