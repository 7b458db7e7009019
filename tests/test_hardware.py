"""Hardware stage: the pure parsers on canned readings of real machines, assembly, what-if
overrides, and ``detect()`` on this machine (with real, fake ``nvidia-smi`` / ``rocm-smi``
executables on PATH for the fallback and failure paths)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import psutil
import pytest

from swarm_supervisor.errors import PlanError
from swarm_supervisor.hardware import HardwareProfile, detect, profile_from_overrides
from swarm_supervisor.hardware.amd import parse_rocm_smi_json
from swarm_supervisor.hardware.apple import parse_sysctl
from swarm_supervisor.hardware.assemble import HostReading, assemble, normalize_arch, normalize_os
from swarm_supervisor.hardware.nvidia import ParseError, parse_nvidia_smi_csv
from swarm_supervisor.hardware.tools import ToolError, run_tool
from tests.machines import A100X2, ALL, CPU16, DATA, H100, LAPTOP_8GB, M2_16, M3MAX_64, MI300X, RTX4090

GiB = 1024**3
MiB = 1024**2


# --- nvidia-smi CSV ------------------------------------------------------------------------------


def test_rtx4090_csv() -> None:
    (gpu,) = parse_nvidia_smi_csv((DATA / "rtx4090" / "nvidia-smi.csv").read_text())
    assert (gpu.vendor, gpu.index, gpu.name) == ("nvidia", 0, "NVIDIA GeForce RTX 4090")
    assert gpu.total_bytes == 24564 * MiB  # what a 24 GB card reports: just under 24 GiB
    assert gpu.free_bytes == 23981 * MiB
    assert gpu.driver == "550.54.14"


def test_laptop_csv() -> None:
    (gpu,) = parse_nvidia_smi_csv((DATA / "laptop_8gb" / "nvidia-smi.csv").read_text())
    assert gpu.name == "NVIDIA GeForce RTX 4060 Laptop GPU"
    assert 7.9 * GiB < gpu.total_bytes <= 8 * GiB


def test_two_a100s_csv() -> None:
    gpus = parse_nvidia_smi_csv((DATA / "a100x2" / "nvidia-smi.csv").read_text())
    assert [g.index for g in gpus] == [0, 1]
    assert all(g.total_bytes == 80 * GiB and g.name == "NVIDIA A100-SXM4-80GB" for g in gpus)


def test_h100_csv_and_nvml_agree() -> None:
    (from_csv,) = parse_nvidia_smi_csv((DATA / "h100" / "nvidia-smi.csv").read_text())
    (from_nvml,) = H100.gpus  # tests/machines.py builds H100 from nvml.json
    assert from_csv.name == from_nvml.name == "NVIDIA H100 80GB HBM3"
    assert from_csv.total_bytes == from_nvml.total_bytes
    assert from_csv.driver == from_nvml.driver


def test_real_h100_capture() -> None:
    """Read on the project's H100 device machine: nvidia-smi, NVML and detect() agree."""
    from tests.machines import load_machine

    folder = DATA / "h100_real"
    (from_csv,) = parse_nvidia_smi_csv((folder / "nvidia-smi.csv").read_text())
    (from_nvml,) = load_machine("h100_real").gpus
    assert from_csv.name == from_nvml.name == "NVIDIA H100 80GB HBM3"
    assert from_csv.total_bytes == from_nvml.total_bytes == 85520809984
    assert from_csv.driver == from_nvml.driver == "580.159.04"
    assert abs(from_csv.free_bytes - from_nvml.free_bytes) < MiB  # MiB-rounded, read moments apart


def test_csv_edge_cases() -> None:
    text = "\n1, Tesla T4, 15360, 14911, [N/A]\n\n0, Tesla T4, 15360, 15000, 535.1\n"
    gpus = parse_nvidia_smi_csv(text)
    assert [g.index for g in gpus] == [0, 1]  # sorted by index
    assert gpus[1].driver is None
    assert parse_nvidia_smi_csv("") == ()


@pytest.mark.parametrize(
    "bad",
    ["NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", "0, X, lots, 1, 2"],
)
def test_csv_garbage_is_a_parse_error(bad: str) -> None:
    with pytest.raises(ParseError, match="nvidia-smi line 1"):
        parse_nvidia_smi_csv(bad)


# --- rocm-smi JSON -------------------------------------------------------------------------------


def test_mi300x_rocm_smi() -> None:
    (gpu,) = parse_rocm_smi_json((DATA / "mi300x" / "rocm-smi.json").read_text())
    assert (gpu.vendor, gpu.index, gpu.name, gpu.driver) == ("amd", 0, "AMD Instinct MI300X", "6.8.5")
    assert gpu.total_bytes == 205822885888  # 191.7 GiB
    assert gpu.free_bytes == 205822885888 - 299687936


def test_rocm_smi_older_spelling_and_per_card_driver() -> None:
    text = json.dumps(
        {
            "card1": {"Card series": "Radeon RX 7900 XTX", "VRAM Total Memory (B)": "25753026560",
                      "VRAM Total Used Memory (B)": "1000", "Driver version": "6.3.6"},
            "card0": {"Card series": "N/A", "Card model": "0x744c", "VRAM Total Memory (B)": "100",
                      "VRAM Total Used Memory (B)": "200"},
        }
    )  # fmt: skip
    gpus = parse_rocm_smi_json(text)
    assert [g.index for g in gpus] == [0, 1]
    assert gpus[0].name == "0x744c" and gpus[0].free_bytes == 0 and gpus[0].driver is None
    assert gpus[1].name == "Radeon RX 7900 XTX" and gpus[1].driver == "6.3.6"


@pytest.mark.parametrize(
    ("text", "message"),
    [("not json", "did not print JSON"), ("[]", "not an object"), ('{"card0": {}}', "no 'vram total memory")],
)
def test_rocm_smi_bad_output(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_rocm_smi_json(text)


# --- sysctl --------------------------------------------------------------------------------------


def test_m2_sysctl() -> None:
    info = parse_sysctl((DATA / "m2_16" / "sysctl.txt").read_text())
    assert info.apple_silicon and info.cpu_name == "Apple M2"
    assert info.memsize == 16 * GiB
    assert (info.physical_cores, info.performance_cores, info.efficiency_cores) == (8, 4, 4)


def test_m3_max_sysctl() -> None:
    info = parse_sysctl((DATA / "m3max_64" / "sysctl.txt").read_text())
    assert info.memsize == 64 * GiB and info.performance_cores == 12


def test_intel_mac_sysctl_is_not_apple_silicon() -> None:
    text = "machdep.cpu.brand_string: Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz\nhw.memsize: 17179869184\n"
    info = parse_sysctl(text + "hw.physicalcpu: 6\nhw.logicalcpu: 12\n")
    assert not info.apple_silicon and info.performance_cores is None
    host = HostReading("darwin", "x86_64", 6, 12, 16 * GiB, 8 * GiB)
    profile = assemble(host, apple=info)
    assert profile.gpus == () and not profile.apple_silicon and profile.physical_cores == 6


def test_sysctl_without_memsize() -> None:
    with pytest.raises(ParseError, match=r"hw\.memsize"):
        parse_sysctl("sysctl: unknown oid 'hw.memsize'\n")


# --- the eight machines --------------------------------------------------------------------------


def test_eight_machines_as_profiles() -> None:
    assert len(ALL) == 8
    assert [len(p.gpus) for p in ALL.values()] == [1, 1, 2, 1, 1, 1, 1, 0]
    assert RTX4090.has_discrete_gpu and LAPTOP_8GB.has_discrete_gpu and A100X2.has_discrete_gpu
    assert MI300X.gpus[0].vendor == "amd"
    assert CPU16.gpus == () and not CPU16.has_discrete_gpu and CPU16.notes
    assert 15 * GiB < CPU16.ram_total_bytes <= 16 * GiB


@pytest.mark.parametrize("mac", [M2_16, M3MAX_64], ids=["m2", "m3max"])
def test_apple_silicon_profile(mac: HardwareProfile) -> None:
    assert mac.apple_silicon and mac.os == "darwin" and mac.arch == "arm64"
    assert not mac.has_discrete_gpu and mac.discrete_gpus == ()
    (gpu,) = mac.gpus
    assert gpu.vendor == "apple" and gpu.total_bytes == mac.ram_total_bytes  # the same unified bytes
    assert gpu.free_bytes == mac.ram_available_bytes


def test_normalize() -> None:
    assert [normalize_os(s) for s in ("Linux", "Darwin", "Windows")] == ["linux", "darwin", "windows"]
    assert [normalize_arch(m) for m in ("AMD64", "x86_64", "aarch64", "arm64")] == [
        "x86_64", "x86_64", "arm64", "arm64",
    ]  # fmt: skip


# --- what-if -------------------------------------------------------------------------------------


def test_whatif_gpu_memory_replaces_gpus() -> None:
    p = profile_from_overrides(CPU16, gpu_memory=[24 * GiB, 24 * GiB])
    assert [(g.vendor, g.index, g.total_bytes, g.free_bytes) for g in p.gpus] == [
        ("nvidia", 0, 24 * GiB, 24 * GiB),
        ("nvidia", 1, 24 * GiB, 24 * GiB),
    ]
    assert p.has_discrete_gpu and p.ram_total_bytes == CPU16.ram_total_bytes
    assert any("what-if" in n for n in p.notes) and not any("NVML" in n for n in p.notes)


def test_whatif_apple_silicon_with_ram() -> None:
    p = profile_from_overrides(CPU16, ram=64 * GiB, apple_silicon=True)
    assert p.apple_silicon and p.os == "darwin" and p.arch == "arm64" and not p.has_discrete_gpu
    assert p.ram_total_bytes == p.ram_available_bytes == p.gpus[0].total_bytes == 64 * GiB


def test_whatif_cpu_only_and_ram() -> None:
    p = profile_from_overrides(A100X2, ram=64 * GiB, cpu_only=True)
    assert p.gpus == () and p.ram_total_bytes == 64 * GiB and p.physical_cores == A100X2.physical_cores
    mac = profile_from_overrides(M2_16, cpu_only=True)
    assert mac.gpus == () and not mac.apple_silicon


def test_whatif_nothing_is_identity() -> None:
    assert profile_from_overrides(RTX4090) is RTX4090


@pytest.mark.parametrize(
    "kwargs",
    [{"gpu_memory": [GiB], "cpu_only": True}, {"apple_silicon": True, "cpu_only": True},
     {"gpu_memory": [GiB], "apple_silicon": True}],
)  # fmt: skip
def test_whatif_contradictions(kwargs: dict[str, object]) -> None:
    with pytest.raises(PlanError, match="give only one"):
        profile_from_overrides(CPU16, **kwargs)  # type: ignore[arg-type]


def test_whatif_zero_size() -> None:
    with pytest.raises(PlanError, match="positive"):
        profile_from_overrides(CPU16, gpu_memory=[0])


# --- tools and detect() on this machine ----------------------------------------------------------


def _nvml_available() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def _fake_tool(folder: Path, name: str, script: str) -> None:
    tool = folder / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH = an empty folder (and /bin for sh): no nvidia-smi or rocm-smi unless a test adds one."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/bin")
    return folder


def test_detect_on_this_machine() -> None:
    """Whatever machine runs the tests: detect() answers, and agrees with psutil."""
    profile = detect()
    assert profile.logical_cores == psutil.cpu_count()
    assert 1 <= profile.physical_cores <= profile.logical_cores
    assert abs(profile.ram_total_bytes - psutil.virtual_memory().total) < 64 * MiB
    assert 0 < profile.ram_available_bytes <= profile.ram_total_bytes
    if os.uname().sysname == "Linux" and not _nvml_available():
        assert any("NVML" in n for n in profile.notes)


@pytest.mark.skipif(_nvml_available(), reason="NVML works here: the fallback is not taken")
def test_detect_without_nvml_or_tools(bare_path: Path) -> None:
    """Here: nvmlInit() raises NVMLError_LibraryNotFound. No GPU, a note, no exception."""
    profile = detect()
    assert profile.gpus == ()
    assert any("NVML library not found" in n for n in profile.notes)


@pytest.mark.skipif(_nvml_available(), reason="NVML works here: the fallback is not taken")
def test_detect_falls_back_to_nvidia_smi(bare_path: Path) -> None:
    csv = (DATA / "a100x2" / "nvidia-smi.csv").read_text()
    _fake_tool(bare_path, "nvidia-smi", f"cat <<'EOF'\n{csv}EOF\n")
    profile = detect()
    assert [g.name for g in profile.gpus] == ["NVIDIA A100-SXM4-80GB"] * 2
    assert any("nvidia-smi instead" in n for n in profile.notes)


@pytest.mark.skipif(_nvml_available(), reason="NVML works here: the fallback is not taken")
def test_detect_survives_a_failing_nvidia_smi(bare_path: Path) -> None:
    _fake_tool(
        bare_path, "nvidia-smi", "echo 'NVIDIA-SMI has failed because it could not communicate' >&2\nexit 9\n"
    )
    profile = detect()
    assert profile.gpus == ()
    assert any("nvidia-smi exited with status 9" in n for n in profile.notes)


def test_detect_reads_rocm_smi(bare_path: Path) -> None:
    text = (DATA / "mi300x" / "rocm-smi.json").read_text()
    _fake_tool(bare_path, "rocm-smi", f"cat <<'EOF'\n{text}EOF\n")
    amd = [g for g in detect().gpus if g.vendor == "amd"]
    assert [g.name for g in amd] == ["AMD Instinct MI300X"]


def test_detect_survives_rocm_smi_garbage(bare_path: Path) -> None:
    _fake_tool(bare_path, "rocm-smi", "echo 'ERROR: GPU[0] : Unable to get VRAM'\n")
    profile = detect()
    assert not [g for g in profile.gpus if g.vendor == "amd"]
    assert any(n.startswith("AMD: rocm-smi did not print JSON") for n in profile.notes)


def test_run_tool_errors(bare_path: Path) -> None:
    _fake_tool(bare_path, "slow-tool", "sleep 30 &\nsleep 30\n")  # a hung tool with a child of its own
    with pytest.raises(ToolError, match=r"did not answer within 0\.3 s"):
        run_tool(["slow-tool"], timeout=0.3)
    with pytest.raises(ToolError, match="not found"):
        run_tool(["no-such-tool-here"])
    _fake_tool(bare_path, "quiet", "exit 0\n")
    with pytest.raises(ToolError, match="printed nothing"):
        run_tool(["quiet"])
    _fake_tool(bare_path, "partial", "echo 'hw.memsize: 1'\necho 'unknown oid' >&2\nexit 1\n")
    assert run_tool(["partial"], allow_failure=True).strip() == "hw.memsize: 1"
