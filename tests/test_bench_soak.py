"""The soak benchmark at CI size: `swarm up` over fake llama-servers, 300 mixed requests (plain,
streamed, tool-calling) with two instances SIGKILLed during them, through the same code as
``python -m bench soak --fake --requests 300 --kills 2`` (bench/soak.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.soak import run_soak
from testkit.llama import FAKE_LLAMA_SERVER as FAKE


@pytest.mark.llama  # the plan reads the real SmolLM2 file's metadata; the instances are fakes
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_soak_with_kills_loses_no_request_and_every_instance_comes_back(
    tmp_path: Path, smollm2_gguf: Path
) -> None:
    t0 = time.monotonic()
    r = run_soak(
        root=tmp_path / "home",
        model=smollm2_gguf,
        binary=FAKE,
        fake=True,
        requests=300,
        concurrency=4,
        kills=2,
        warmup=30,
        rate=50.0,  # 6 s of requests: time for each killed instance to come back
        timeout_s=30.0,
        time_cap_s=120.0,
    )
    took = time.monotonic() - t0
    assert r["requests_sent"] == 300
    assert r["lost"] == 0, r["lost_detail"]
    assert r["ok"] > 0
    assert r["kills"] == 2
    assert r["all_back"], r["instances_after"]
    assert all(i["restarts"] >= i["killed"] for i in r["instances_after"])
    assert r["down_rc"] == 0
    assert not (tmp_path / "home" / "state" / "runs" / "default.json").exists()
    assert took < 120
