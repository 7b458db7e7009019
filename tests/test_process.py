"""One instance: argv, state table, readiness exits, stop, logs. Real llama-server where it can."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from swarm_supervisor.errors import NotReadyError, ProcessError
from swarm_supervisor.swarm.argv import instance_env, llama_server_argv, mlx_server_argv
from swarm_supervisor.swarm.instance import TRANSITIONS, Instance, State, TransitionError
from swarm_supervisor.swarm.spec import InstanceConfig
from swarm_supervisor.swarm.system import (
    create_time_of,
    free_port,
    log_tail,
    port_is_free,
    rotate_log,
    rotate_running_log,
    same_process,
    terminate_group,
)
from testkit.llama import FAKE_LLAMA_SERVER

FAKE = FAKE_LLAMA_SERVER


def fake_cfg(tmp_path: Path, *extra: str, id: str = "0") -> InstanceConfig:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    return InstanceConfig(
        id=id,
        binary=FAKE,
        model_path=model,
        model_id="fake:1b:q4_0",
        context=1024,
        log_path=tmp_path / f"instance-{id}.log",
        extra_args=extra,
    )


def real_cfg(tmp_path: Path, binary: Path, model: Path, *extra: str) -> InstanceConfig:
    return InstanceConfig(
        id="0",
        binary=binary,
        model_path=model,
        model_id="smollm2:135m:q4_1",
        context=1024,
        slots=2,
        threads=1,
        log_path=tmp_path / "instance-0.log",
        extra_args=extra,
    )


async def _run(inst: Instance, timeout_s: float = 60.0) -> None:
    await inst.wait_ready(timeout_s)


def _cleanup(inst: Instance) -> None:
    if inst.proc is not None and inst.proc.poll() is None:
        os.killpg(inst.proc.pid, 9)
        inst.proc.wait()


# --------------------------------------------------------------------------- pure parts


def test_llama_argv_has_every_size_explicit_and_total_context() -> None:
    cfg = InstanceConfig(
        id="1",
        binary=Path("/opt/llama-server"),
        model_path=Path("/m/q.gguf"),
        model_id="qwen2.5-coder:7b:q4_k_m",
        context=8192,
        slots=4,
        threads=3,
        gpu_layers=999,
        api_key_file=Path("/s/key"),
        seed=42,
        extra_args=("--flash-attn", "on"),
    )
    argv = llama_server_argv(cfg, 9123)
    assert argv[:3] == ["/opt/llama-server", "-m", "/m/q.gguf"]
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "9123"
    assert argv[argv.index("-c") + 1] == str(8192 * 4)  # -c is the total over the slots
    assert argv[argv.index("-ngl") + 1] == "999"
    assert argv[argv.index("--threads") + 1] == "3"
    assert argv[argv.index("--parallel") + 1] == "4"
    assert "--kv-unified" not in argv  # only where the binary has the per-slot cap (shared_kv)
    assert argv[argv.index("--alias") + 1] == "qwen2.5-coder:7b:q4_k_m"
    assert argv[argv.index("--api-key-file") + 1] == "/s/key"
    assert argv[argv.index("--seed") + 1] == "42"
    assert "--metrics" in argv
    assert argv[-2:] == ["--flash-attn", "on"]
    assert pairs  # argv is a list of strings, never a shell line
    assert all(isinstance(a, str) for a in argv)


def test_llama_argv_shared_kv_pool_caps_each_slot_at_its_context() -> None:
    cfg = InstanceConfig(
        id="1",
        binary=Path("/opt/llama-server"),
        model_path=Path("/m/q.gguf"),
        model_id="m",
        context=4096,
        slots=3,
        shared_kv=True,
        extra_args=("--no-kv-unified",),
    )
    argv = llama_server_argv(cfg, 9123)
    assert argv[argv.index("-c") + 1] == str(3 * 4096)  # the pool holds every slot at full context
    assert argv[argv.index("--kv-unified-per-slot") + 1] == "4096"  # and no slot takes more
    # llama-server reads its flags in order: the config's extra_args can turn it back off
    assert argv.index("--kv-unified") < argv.index("--no-kv-unified")
    assert "--kv-unified" not in llama_server_argv(dataclasses.replace(cfg, shared_kv=False), 9123)


def test_mlx_argv_passes_max_tokens() -> None:
    cfg = InstanceConfig(
        id="0",
        binary=Path("/venv/bin/mlx_lm.server"),
        model_path=Path("/m/qwen-mlx"),
        model_id="qwen",
        context=8192,
        backend="mlx",
        max_tokens=4096,
    )
    argv = mlx_server_argv(cfg, 9000)
    assert argv == [
        "/venv/bin/mlx_lm.server",
        "--model",
        "/m/qwen-mlx",
        "--host",
        "127.0.0.1",
        "--port",
        "9000",
        "--max-tokens",
        "4096",
    ]


def test_env_limits_the_visible_gpu_per_vendor() -> None:
    base = {"PATH": "/bin"}
    nv = InstanceConfig(
        id="0", binary=Path("x"), model_path=Path("m"), model_id="m", context=1, gpu=1, gpu_vendor="nvidia"
    )
    assert instance_env(nv, base) == {
        "PATH": "/bin",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # the indices are NVML's (PCI bus order)
        "CUDA_VISIBLE_DEVICES": "1",
    }
    amd = InstanceConfig(
        id="0",
        binary=Path("x"),
        model_path=Path("m"),
        model_id="m",
        context=1,
        gpus=(0, 1),
        gpu_vendor="amd",
    )
    assert instance_env(amd, base) == {"PATH": "/bin", "HIP_VISIBLE_DEVICES": "0,1"}
    cpu = InstanceConfig(id="0", binary=Path("x"), model_path=Path("m"), model_id="m", context=1)
    assert instance_env(cpu, base) == base


def test_transition_table_covers_every_state_and_rejects_others(tmp_path: Path) -> None:
    assert set(TRANSITIONS) == set(State)
    inst = Instance(fake_cfg(tmp_path))
    with pytest.raises(TransitionError):
        inst.transition(State.READY)  # stopped -> ready skips starting
    inst.transition(State.STARTING)
    inst.transition(State.READY)
    with pytest.raises(TransitionError):
        inst.transition(State.STOPPED)  # must pass through stopping


def test_log_rotation_keeps_three(tmp_path: Path) -> None:
    log = tmp_path / "i.log"
    for n in range(5):
        log.write_text(f"run {n}\n")
        rotate_log(log)
    assert not log.exists()
    assert [(tmp_path / f"i.log.{i}").read_text() for i in (1, 2, 3)] == ["run 4\n", "run 3\n", "run 2\n"]
    assert not (tmp_path / "i.log.4").exists()


def test_running_log_rotates_by_copy_then_truncate(tmp_path: Path) -> None:
    log = tmp_path / "i.log"
    with log.open("ab") as writer:
        writer.write(b"x" * 100)
        writer.flush()
        assert rotate_running_log(log, max_bytes=50)
        writer.write(b"after\n")  # O_APPEND: continues at the start of the emptied file
        writer.flush()
    assert (tmp_path / "i.log.1").read_bytes() == b"x" * 100
    assert log.read_bytes() == b"after\n"
    assert not rotate_running_log(log, max_bytes=50)


# --------------------------------------------------------------------------- real llama-server


@pytest.mark.llama
def test_real_server_ready_then_stop_leaves_nothing(
    tmp_path: Path, llama_server_bin: Path, smollm2_gguf: Path
) -> None:
    inst = Instance(real_cfg(tmp_path, llama_server_bin, smollm2_gguf))
    port = free_port()
    inst.spawn(port)
    try:
        assert os.getpgid(inst.pid or 0) == inst.pid  # its own process group
        asyncio.run(_run(inst))
        assert inst.state == State.READY
        r = httpx.get(f"http://127.0.0.1:{port}/v1/models")
        assert r.json()["data"][0]["id"] == "smollm2:135m:q4_1"  # --alias
        asyncio.run(inst.stop(grace_s=10))
        assert inst.state == State.STOPPED
        assert not psutil.pid_exists(inst.pid or 0) or psutil.Process(inst.pid).status() == "zombie"
        assert port_is_free(port)
        assert "--port" in inst.cfg.log_path.read_text().splitlines()[0]
    finally:
        _cleanup(inst)


@pytest.mark.llama
def test_real_server_bad_flag_exits_early_with_log_tail(
    tmp_path: Path, llama_server_bin: Path, smollm2_gguf: Path
) -> None:
    inst = Instance(real_cfg(tmp_path, llama_server_bin, smollm2_gguf, "--no-such-flag"))
    inst.spawn(free_port())
    try:
        with pytest.raises(ProcessError, match="exited with code") as err:
            asyncio.run(_run(inst))
        assert "no-such-flag" in str(err.value)  # the tail of the log says what was wrong
        assert inst.state == State.UNHEALTHY
    finally:
        _cleanup(inst)


@pytest.mark.llama
def test_real_server_port_taken_exits_early(
    tmp_path: Path, llama_server_bin: Path, smollm2_gguf: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        inst = Instance(real_cfg(tmp_path, llama_server_bin, smollm2_gguf))
        inst.spawn(taken.getsockname()[1])
        try:
            with pytest.raises(ProcessError, match="exited with code"):
                asyncio.run(_run(inst))
        finally:
            _cleanup(inst)


def test_missing_binary_is_a_process_error(tmp_path: Path) -> None:
    cfg = fake_cfg(tmp_path)
    inst = Instance(InstanceConfig(**{**cfg.__dict__, "binary": tmp_path / "nope"}))
    with pytest.raises(ProcessError, match="cannot run"):
        inst.spawn(free_port())
    assert inst.state == State.FAILED


# --------------------------------------------------------------------------- faults (fake server)


def test_never_ready_hits_the_deadline(tmp_path: Path) -> None:
    inst = Instance(fake_cfg(tmp_path, "--fake-never-ready"))
    inst.spawn(free_port())
    try:
        with pytest.raises(NotReadyError, match="was not ready after"):
            asyncio.run(_run(inst, timeout_s=1.5))
        assert inst.state == State.UNHEALTHY
        asyncio.run(inst.stop(grace_s=5))
        assert inst.state == State.STOPPED
    finally:
        _cleanup(inst)


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    inst = Instance(fake_cfg(tmp_path, "--fake-ignore-sigterm"))
    port = free_port()
    inst.spawn(port)
    try:
        asyncio.run(_run(inst, timeout_s=20))
        t0 = time.monotonic()
        asyncio.run(inst.stop(grace_s=1.0))
        took = time.monotonic() - t0
        assert inst.returncode() == -9
        assert took >= 1.0
        assert "ignoring SIGTERM" in log_tail(inst.cfg.log_path)
        assert port_is_free(port)
    finally:
        _cleanup(inst)


def test_terminate_group_never_signals_a_recycled_pid(tmp_path: Path) -> None:
    inst = Instance(fake_cfg(tmp_path))
    inst.spawn(free_port())
    try:
        assert inst.pid is not None and inst.create_time is not None
        # a different create_time: the pid now belongs to "another" process: left alone
        assert not terminate_group(inst.pid, inst.create_time - 100.0, grace_s=1.0)
        assert inst.alive()
        assert terminate_group(inst.pid, inst.create_time, grace_s=5.0)
        inst.proc.wait(timeout=5) if inst.proc else None
        assert not inst.alive()
    finally:
        _cleanup(inst)


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip("POSIX process groups")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_start_time_read_from_proc_is_the_one_psutil_reports(tmp_path: Path) -> None:
    """`swarm up` records when each process started without loading psutil (its import is 10-20 ms
    on the path to the first spawn); `swarm down` and `ps` later compare it with psutil's."""
    # a command name with a space and a parenthesis, as a process may name itself
    odd = tmp_path / "odd) name"
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([str(odd), "-c", "import time; time.sleep(30)"])
    try:
        for pid in (os.getpid(), child.pid):
            assert create_time_of(pid) == psutil.Process(pid).create_time()
            assert same_process(pid, create_time_of(pid))
    finally:
        child.kill()
        child.wait()
    assert create_time_of(child.pid) is None  # gone: no start time, from /proc or psutil
    assert not same_process(child.pid, None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_proc_it_cannot_read_falls_back_to_psutil(tmp_path: Path) -> None:
    pid = os.getpid()
    (tmp_path / str(pid)).mkdir()
    fields = " ".join(["S"] + ["0"] * 18 + ["250"] + ["0"] * 30)  # field 22: 250 ticks after boot
    (tmp_path / str(pid) / "stat").write_bytes(f"{pid} (a) b (c)) {fields}\n".encode())
    (tmp_path / "stat").write_bytes(b"cpu  1 2 3\nbtime 1700000000\n")
    assert create_time_of(pid, tmp_path) == 250 / os.sysconf("SC_CLK_TCK") + 1_700_000_000
    (tmp_path / "stat").write_bytes(b"cpu  1 2 3\n")  # no boot time: psutil says it
    assert create_time_of(pid, tmp_path) == psutil.Process(pid).create_time()
    assert create_time_of(pid, tmp_path / "nothing") == psutil.Process(pid).create_time()
