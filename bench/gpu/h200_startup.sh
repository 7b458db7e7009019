#!/usr/bin/env bash
# Lent GPU machine, after h200_agent_setup.sh on the same warm machine (the CUDA build and the
# Qwen2.5-Coder-1.5B-shaped stand-in are in .device/). `swarm up` to all-ready against the same
# llama-server command lines started by hand (issue 17), 8 voters as the plan lays them out.
set -uxo pipefail
export PYTHONPATH=$PWD/.device/site:$PWD SWARM_HOME=$PWD/.device/home PYTHONUNBUFFERED=1
bin=$(cat .device/bin.txt); m=$PWD/.device/stub-q4_k_m.gguf
timeout -k 10 "${STARTUP_S:-200}" python3 -m bench startup --voters "${VOTERS:-8}" --rounds "${ROUNDS:-3}" \
  --llama-server "$bin" --model "$m" --no-wait --out startup-h200 > "$OUT/startup-h200.log" 2>&1
echo "startup rc=$?" >> "$OUT/startup-h200.log"
cp bench/results/startup-h200.json "$OUT/" 2>/dev/null; ls -la "$OUT"
