"""`swarm opencode`: the provider config, merging it into opencode.json, and a real opencode run.

The CLI tests read a run file written by RunFile in an isolated SWARM_HOME. The end-to-end test
installs opencode-ai from npm (cached in the user's cache dir, keyed by version), brings up a
real swarm of SmolLM2, and runs `opencode run` against it with no network beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from click.testing import CliRunner, Result
from filelock import FileLock
from prometheus_client.parser import text_string_to_metric_families

from swarm_supervisor.cli import main
from swarm_supervisor.opencode import output_limit, v1_url, write_atomic
from swarm_supervisor.paths import dirs
from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.upstreams import UpstreamPool
from swarm_supervisor.swarm.record import RunRecord
from swarm_supervisor.swarm.runfile import RunFile, list_names
from swarm_supervisor.swarm.teardown import teardown
from testkit.llama.inprocess import Behaviour, asgi_client, fake_upstreams

OPENCODE_VERSION = "1.18.33"
#: where the npm install of opencode is kept between runs (the real user cache, not SWARM_HOME)
TOOLS_CACHE = dirs().cache / "test-tools"
MODEL = "smollm2:135m:q4_1"


def record(**over: Any) -> dict[str, Any]:
    """A run file as the supervisor writes it for a swarm that is up (its supervisor: this test)."""
    me = psutil.Process()
    rec: dict[str, Any] = {
        "version": 1,
        "name": "default",
        "status": "up",
        "reason": None,
        "base_url": "http://127.0.0.1:8123/v1",
        "model": MODEL,
        "context": 8192,
        "voters": 2,
        "ready_voters": 2,
        "supervisor": {"pid": os.getpid(), "create_time": me.create_time()},
        "supervisor_pid": os.getpid(),
        "proxy": {"host": "127.0.0.1", "port": 8123, "requires_api_key": False},
        "internal_key": "sk-internal-secret",
        "instances": [],
    }
    rec.update(over)
    return rec


def cli(args: list[str], env: dict[str, str] | None = None) -> Result:
    """``swarm ARGS`` in-process; a wide terminal, so that rich does not fold long paths."""
    return CliRunner().invoke(main, args, env={"COLUMNS": "1000", **(env or {})})


def write_run_file(rec: dict[str, Any], name: str = "default") -> None:
    rf = RunFile(name, dirs())
    with rf.lock():
        rf.write(RunRecord.from_json(rec))


EXPECTED = {
    "$schema": "https://opencode.ai/config.json",
    "provider": {
        "swarm": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Local Swarm",
            "options": {"baseURL": "http://127.0.0.1:8123/v1", "includeUsage": True},
            "models": {
                MODEL: {
                    "name": f"{MODEL} (Local Swarm, 2 voters)",
                    "limit": {"context": 8192, "output": 2048},
                }
            },
        }
    },
    "model": f"swarm/{MODEL}",
}


# --------------------------------------------------------------------------- printing


def test_prints_the_provider_config(swarm_home: Path) -> None:
    write_run_file(record())
    r = cli(["opencode"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == EXPECTED
    assert "sk-internal-secret" not in r.output


def test_api_key_model_id_and_named_swarm(swarm_home: Path) -> None:
    proxy = {"host": "0.0.0.0", "port": 8124, "requires_api_key": True}
    write_run_file(record(name="second", base_url="http://0.0.0.0:8124/v1", proxy=proxy), "second")
    r = cli(["opencode", "--name", "second", "--model-id", "coder"])
    assert r.exit_code == 0, r.output
    cfg = json.loads(r.stdout)
    provider = cfg["provider"]["swarm"]
    assert provider["name"] == "Local Swarm (second)"
    assert provider["options"] == {
        "baseURL": "http://127.0.0.1:8124/v1",  # a wildcard listen address is reached on loopback
        "apiKey": "{env:SWARM_API_KEY}",
        "includeUsage": True,
    }
    assert list(provider["models"]) == ["coder"]
    assert cfg["model"] == "swarm/coder"


@pytest.mark.parametrize(
    ("served", "ok"),
    [
        ({"aliases": [], "accept_any_model": False}, False),
        ({"aliases": ["gpt-4o"], "accept_any_model": False}, False),
        ({"aliases": ["coder"], "accept_any_model": False}, True),
        ({"aliases": [], "accept_any_model": True}, True),
    ],
)
def test_model_id_must_be_a_name_the_swarm_serves(swarm_home: Path, served: dict[str, Any], ok: bool) -> None:
    write_run_file(record(proxy={"host": "127.0.0.1", "port": 8123, "requires_api_key": False, **served}))
    r = cli(["opencode", "--model-id", "coder"])
    if ok:
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["model"] == "swarm/coder"
        return
    assert r.exit_code != 0 and r.stdout == ""
    assert "--model-id 'coder': swarm 'default' does not serve that name" in r.stderr
    assert f"(it serves '{MODEL}'" in r.stderr and "aliases" in r.stderr
    assert cli(["opencode", "--model-id", MODEL]).exit_code == 0  # the model id itself is always served


def test_api_key_from_the_config_for_an_older_run_file(swarm_home: Path) -> None:
    (swarm_home / "config").mkdir(parents=True)
    (swarm_home / "config" / "config.toml").write_text('[proxy]\napi_key = "sk-proxy"\n')
    write_run_file(record(proxy={"host": "127.0.0.1", "port": 8123}))  # no requires_api_key
    r = cli(["opencode"], env={"SWARM_API_KEY": "sk-proxy"})
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["provider"]["swarm"]["options"]["apiKey"] == "{env:SWARM_API_KEY}"


def test_little_context_warns(swarm_home: Path) -> None:
    write_run_file(record(context=2048))
    r = cli(["opencode"])
    assert r.exit_code == 0, r.output
    limit = json.loads(r.stdout)["provider"]["swarm"]["models"][MODEL]["limit"]
    assert limit == {"context": 2048, "output": 512}
    assert "--context 8192" in " ".join(r.stderr.split())


def test_output_limit_and_urls() -> None:
    assert [output_limit(c) for c in (512, 8192, 32768, 1_000_000)] == [128, 2048, 8192, 32_000]
    assert v1_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert v1_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/v1"
    assert v1_url("http://:::8000/v1") == "http://[::1]:8000/v1"
    assert v1_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"


# --------------------------------------------------------------------------- no swarm


def test_no_swarm_says_run_swarm_up(swarm_home: Path) -> None:
    r = cli(["opencode"])
    assert r.exit_code == 1
    assert "swarm up" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stdout == ""


def test_stale_or_starting_swarm_is_an_error(swarm_home: Path, tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = int(gone.stdout)
    write_run_file(record(supervisor={"pid": dead, "create_time": 1.0}, supervisor_pid=dead))
    r = cli(["opencode", "--write"])
    assert r.exit_code == 1 and "swarm up" in r.stderr
    write_run_file(record(status="starting", base_url=None))
    r = cli(["opencode"])
    assert r.exit_code == 1 and "not serving yet" in r.stderr


# --------------------------------------------------------------------------- --write


def test_write_creates_opencode_json(
    swarm_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_run_file(record())
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    r = cli(["opencode", "--write"])
    assert r.exit_code == 0, r.output
    assert json.loads((project / "opencode.json").read_text()) == EXPECTED
    assert "opencode.json" in r.stdout
    assert [p.name for p in project.iterdir()] == ["opencode.json"]  # no tmp file left


def test_write_merges_and_keeps_the_rest(swarm_home: Path, tmp_path: Path) -> None:
    write_run_file(record())
    target = tmp_path / "opencode.json"
    user: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "theme": "tokyonight",
        "model": "anthropic/claude-sonnet-4",
        "small_model": "anthropic/claude-haiku",
        "provider": {
            "anthropic": {"options": {"apiKey": "{env:ANTHROPIC_API_KEY}"}},
            "swarm": {"npm": "old", "options": {"baseURL": "http://127.0.0.1:1/v1"}, "models": {"x": {}}},
            "ollama": {
                "npm": "@ai-sdk/openai-compatible",
                "options": {"baseURL": "http://127.0.0.1:11434/v1"},
            },
        },
        "permission": {"edit": "ask"},
    }
    target.write_text(json.dumps(user, indent=4))
    target.chmod(0o640)
    r = cli(["opencode", "--path", str(target)])
    assert r.exit_code == 0, r.output
    got = json.loads(target.read_text())
    want = {**user, "model": f"swarm/{MODEL}"}
    want["provider"] = {**user["provider"], "swarm": EXPECTED["provider"]["swarm"]}  # type: ignore[index]
    assert got == want
    assert list(got) == list(user)  # the user's key order is kept
    assert list(got["provider"]) == ["anthropic", "swarm", "ollama"]
    assert target.stat().st_mode & 0o777 == 0o640
    out = " ".join(r.stdout.split())
    assert "Replaced provider 'swarm'" in out and "anthropic/claude-sonnet-4" in out
    assert "anthropic, ollama" in out


@pytest.mark.parametrize(
    "text",
    [
        '{\n  // my providers\n  "provider": {"anthropic": {}},\n}\n',  # JSONC: comment, trailing comma
        "not json at all",
        "[1, 2]",
        '{"provider": "nope"}',
    ],
)
def test_write_refuses_a_file_that_is_not_a_json_object(swarm_home: Path, tmp_path: Path, text: str) -> None:
    write_run_file(record())
    (tmp_path / "project").mkdir()
    target = tmp_path / "project" / "opencode.json"
    target.write_text(text)
    before = target.stat()
    r = cli(["opencode", "--path", str(target)])
    assert r.exit_code == 2, r.output
    err = " ".join(r.stderr.split())
    assert target.name in err and "untouched" in err
    assert target.read_text() == text and target.stat().st_mtime_ns == before.st_mtime_ns
    assert [p.name for p in target.parent.iterdir()] == ["opencode.json"]


def test_write_follows_a_symlink_and_warns_about_enabled_providers(swarm_home: Path, tmp_path: Path) -> None:
    write_run_file(record())
    real = tmp_path / "dotfiles" / "opencode.json"
    real.parent.mkdir()
    real.write_text(json.dumps({"enabled_providers": ["anthropic"]}))
    link = tmp_path / "opencode.json"
    link.symlink_to(real)
    r = cli(["opencode", "--path", str(link)])
    assert r.exit_code == 0, r.output
    assert link.is_symlink()
    assert json.loads(real.read_text())["provider"]["swarm"]["npm"] == "@ai-sdk/openai-compatible"
    assert "enabled_providers" in " ".join(r.stderr.split())


def test_write_atomic_keeps_mode_and_leaves_nothing(tmp_path: Path) -> None:
    p = tmp_path / "f.json"
    write_atomic(p, "{}\n")
    assert p.read_text() == "{}\n"
    p.chmod(0o600)
    write_atomic(p, "[]\n")
    assert p.read_text() == "[]\n" and p.stat().st_mode & 0o777 == 0o600
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]


# --------------------------------------------------------------------------- the proxy's counter


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _shape(stream: str, mode: str, tools: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = {"endpoint": "/v1/chat/completions", "stream": stream, "stream_mode": mode, "tools": tools}
    return ("swarm_completion_requests_total", tuple(sorted(labels.items())))


TOOL = {"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_proxy_counts_streamed_requests_with_tools(anyio_backend: str) -> None:
    chat: dict[str, Any] = {"model": "swarm", "messages": [{"role": "user", "content": "hi"}]}
    with fake_upstreams(Behaviour("same"), Behaviour("same")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with asgi_client(create_app(pool)) as client:
            await client.post("/v1/chat/completions", json={**chat, "stream": True, "tools": [TOOL]})
            await client.post(
                "/v1/chat/completions", json={**chat, "stream": True, "swarm_stream_mode": "fastest"}
            )
            await client.post("/v1/chat/completions", json={**chat, "tools": []})
            m = _samples((await client.get("/metrics")).text)
    assert m[_shape("true", "consensus", "true")] == 1
    assert m[_shape("true", "fastest", "false")] == 1
    assert m[_shape("false", "none", "false")] == 1


# --------------------------------------------------------------------------- end to end


def swarm(*args: str, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


def opencode_bin() -> Path:
    """opencode-ai@OPENCODE_VERSION, installed once into the user cache with npm."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not on PATH: the opencode end-to-end test needs it to install opencode-ai")
    home = TOOLS_CACHE / f"opencode-ai-{OPENCODE_VERSION}"
    exe = home / "node_modules" / ".bin" / "opencode"

    def works() -> bool:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
            return r.returncode == 0 and r.stdout.strip() == OPENCODE_VERSION
        return False

    TOOLS_CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(TOOLS_CACHE / f"{home.name}.lock"), timeout=600):
        if exe.exists() and works():
            return exe
        work = TOOLS_CACHE / f".{home.name}.partial"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        r = subprocess.run(
            [npm, "install", "--prefix", str(work), "--no-audit", "--no-fund", "--loglevel=error",
             f"opencode-ai@{OPENCODE_VERSION}"],
            capture_output=True,
            text=True,
            timeout=600,
        )  # fmt: skip
        assert r.returncode == 0, f"npm install opencode-ai@{OPENCODE_VERSION} failed:\n{r.stderr[-3000:]}"
        shutil.rmtree(home, ignore_errors=True)
        work.rename(home)
        assert works(), f"{exe} --version does not say {OPENCODE_VERSION}"
    return exe


class _DenyProxy(socketserver.ThreadingTCPServer):
    """An HTTP(S) proxy on 127.0.0.1 that refuses everything (403) and records what was asked."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.asked: list[str] = []
        super().__init__(("127.0.0.1", 0), _DenyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _DenyHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline(4096).decode("latin-1").strip()
        assert isinstance(self.server, _DenyProxy)
        self.server.asked.append(line)
        self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@contextlib.contextmanager
def deny_proxy() -> Iterator[_DenyProxy]:
    server = _DenyProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def opencode_env(root: Path, proxy_url: str, api_key: str) -> dict[str, str]:
    """A clean environment: opencode's home, config, data and cache all under ``root``; every
    outside request goes to a proxy that refuses it; the fetches opencode can skip are off."""
    home = root / "home"
    home.mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "TMPDIR": str(root),
        "NO_COLOR": "1",
        "TERM": "dumb",
        **{k: proxy_url for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")},
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",  # models.dev (models.opencode.ai/api.json)
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "OPENCODE_DISABLE_CLAUDE_CODE": "1",  # no ~/.claude prompts or skills
        "OPENCODE_DISABLE_EXTERNAL_SKILLS": "1",
        "SWARM_API_KEY": api_key,
    }


def run_opencode(
    exe: Path, cwd: Path, env: dict[str, str], prompt: str, timeout_s: float
) -> tuple[int, str, str]:
    """``opencode run PROMPT`` in its own process group, killed (the group) after ``timeout_s``."""
    proc = subprocess.Popen(
        [str(exe), "run", prompt],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return -1, out, err + f"\n[killed after {timeout_s:.0f} s]"
    return proc.returncode, out, err


def _opencode_log(root: Path) -> str:
    logs = sorted((root / "home" / ".local" / "share" / "opencode" / "log").glob("*.log"))
    return logs[-1].read_text(errors="replace")[-4000:] if logs else "(no opencode log)"


@pytest.fixture
def e2e_home(swarm_home: Path) -> Iterator[Path]:
    """SWARM_HOME with a proxy API key (opencode sends it from $SWARM_API_KEY); swarms torn down."""
    cfg = swarm_home / "config"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(
        '[proxy]\napi_key = "sk-e2e-opencode"\n\n[supervisor]\nhealth_interval_s = 0.5\nstop_grace_s = 5.0\n'
    )
    try:
        yield swarm_home
    finally:
        for name in list_names(dirs()):  # a backstop: the test runs `swarm down` itself
            teardown(RunFile(name, dirs()), grace_s=2.0)


@pytest.mark.llama
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_opencode_run_against_a_real_swarm(
    e2e_home: Path, tmp_path: Path, llama_server_bin: Path, smollm2_gguf: Path
) -> None:
    exe = opencode_bin()
    project = tmp_path / "project"
    project.mkdir()
    started = time.monotonic()
    up = swarm(
        "up", "--model", str(smollm2_gguf), "--instances", "2", "--context", "8192",
        "--llama-server", str(llama_server_bin), "--port", "0",
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        ps = swarm("ps", "--json")
        status = json.loads(ps.stdout)
        assert status["context"] >= 8192 and status["voters"] == 2

        wrote = swarm("opencode", "--write", cwd=project)
        assert wrote.returncode == 0, wrote.stdout + wrote.stderr
        cfg = json.loads((project / "opencode.json").read_text())
        assert cfg["provider"]["swarm"]["options"]["apiKey"] == "{env:SWARM_API_KEY}"
        assert cfg["model"].startswith("swarm/")

        with deny_proxy() as proxy:
            env = opencode_env(tmp_path, proxy.url, "sk-e2e-opencode")
            t0 = time.monotonic()
            rc, out, err = run_opencode(
                exe, project, env, "write a python function that adds two numbers", 480
            )
            took = time.monotonic() - t0
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out).strip()
        detail = f"rc={rc} after {took:.0f} s\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}\n"
        detail += f"refused outside requests: {proxy.asked}\nopencode log:\n{_opencode_log(tmp_path)}"
        assert rc == 0, detail
        assert text, detail

        root = status["base_url"].removesuffix("/v1")
        metrics = httpx.get(
            f"{root}/metrics", headers={"Authorization": "Bearer sk-e2e-opencode"}, timeout=30
        )
        assert metrics.status_code == 200
        m = _samples(metrics.text)
        agent = m.get(_shape("true", "consensus", "true"), 0)
        assert agent >= 1, f"no streamed chat request with tools was voted on:\n{metrics.text[:3000]}"
        assert m.get(("swarm_vote_agreement_count", (("strategy", "quality"),)), 0) >= 1
        print(f"\nopencode run: {took:.1f} s, {agent:.0f} agent request(s); refused: {proxy.asked}")
        print(f"its answer begins: {text[:300]!r}")
    finally:
        down = swarm("down")
        assert down.returncode == 0, down.stdout + down.stderr
        print(f"end to end (up, opencode, down): {time.monotonic() - started:.1f} s")
