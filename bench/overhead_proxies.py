"""The proxies ``python -m bench overhead`` measures: the project's (``create_app`` over one upstream
with N slots, served as ``swarm up`` serves it; this module run as ``python -m
bench.overhead_proxies --upstream URL --voters N --port P``) and LiteLLM's (its own venv
``bench/.venv-litellm``, simple-shuffle over N deployments of the same upstream).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

LITELLM_VENV = Path(__file__).resolve().parent / ".venv-litellm"


def swarm_proxy_argv(upstream: str, voters: int, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.overhead_proxies",
        "--upstream",
        upstream,
        "--voters",
        str(voters),
        "--port",
        str(port),
    ]


def serve_swarm_proxy(upstream: str, voters: int, port: int) -> None:
    """The project's proxy over one upstream with ``voters`` slots, as ``swarm up`` builds it."""
    from swarm_supervisor.config import ProxyConfig
    from swarm_supervisor.proxy.app import create_app
    from swarm_supervisor.proxy.server import run
    from swarm_supervisor.proxy.settings import ProxySettings
    from swarm_supervisor.proxy.upstreams import Upstream, UpstreamPool

    pool = UpstreamPool(model_id="swarm", context=4096)
    pool.set_ready(Upstream("0", upstream, slots=voters), True)
    run(create_app(pool, ProxySettings.from_config(ProxyConfig(), voters=voters)), "127.0.0.1", port)


def litellm_bin(mode: str) -> Path | None:
    """LiteLLM's ``litellm`` command in its own venv; ``auto`` installs it there when missing."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if mode == "skip":
        return None
    if exe.is_file():
        return exe
    if mode != "auto":
        raise click.ClickException(f"{exe} is missing: run with --litellm auto to install it")
    click.echo(f"installing litellm[proxy] into {LITELLM_VENV} (once) ...", err=True)
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    return exe


def litellm_version() -> str | None:
    py = LITELLM_VENV / "bin" / "python"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    done = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    return done.stdout.strip() or None


def litellm_config(upstream: str, voters: int, path: Path) -> None:
    """N deployments of the same upstream under one model name, simple-shuffle routing."""
    lines = ["model_list:"]
    for i in range(voters):
        lines += [
            "  - model_name: swarm",
            "    litellm_params:",
            f"      model: openai/fake-{i}",
            f"      api_base: {upstream}/v1",
            "      api_key: none",
        ]
    lines += [
        "router_settings:",
        "  routing_strategy: simple-shuffle",
        "litellm_settings:",
        "  telemetry: false",
        "  drop_params: true",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def litellm_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOG": "ERROR",
            "DISABLE_ADMIN_UI": "True",
            # loopback only, and the swarm's proxy is measured without a key too: no auth on either
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
        }
    )
    return env


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bench.overhead_proxies", description="serve the proxy under test"
    )
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--voters", type=int, default=1)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve_swarm_proxy(args.upstream, args.voters, args.port)
