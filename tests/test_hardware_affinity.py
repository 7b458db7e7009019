"""A process limited to some CPUs (taskset, a container's cpuset) plans for those CPUs only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux affinity and at least 2 CPUs",
)


def test_detect_counts_only_the_cpus_this_process_may_use() -> None:
    one = min(os.sched_getaffinity(0))
    out = subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", "detect", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.sched_setaffinity(0, {one}),
        check=True,
    )
    profile = json.loads(out.stdout)
    text = json.dumps(profile)
    assert '"logical_cores": 1' in text and '"physical_cores": 1' in text, text[:400]
