#!/usr/bin/env bash
# On the lent GPU machine, step 2 of 2 (after h200_build.sh on the same machine): detect and plan,
# N processes vs N slots vs the plan's choice through the swarm (bench/gpu/swarm_topology.py), the
# same straight to llama-server (bench/gpu/topology.py), and swarm up / ps / down with real VRAM.
set -euxo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD SWARM_HOME=$PWD/.device/home PYTHONUNBUFFERED=1
m=.device/stub-q4_k_m.gguf
sw="python3 -m swarm_supervisor"
$sw plan > "$OUT/h200-plan.txt"
$sw plan --json > "$OUT/h200-plan.json"
$sw plan --model $m --instances 8 --context 4096 > "$OUT/h200-plan-stub.txt"
python3 bench/gpu/swarm_topology.py --model $m --n 2 4 8 --out "$OUT/h200-swarm-topology.json"
bin=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["llama_server"]["path"])' .device/h200-pull.json)
python3 bench/gpu/topology.py --server "$bin" --model $m --n 2 4 8 --out "$OUT/h200-direct-topology.json"
$sw up --model $m --instances 8 --context 4096 --port 0 > "$OUT/h200-up.txt" 2>&1
$sw ps > "$OUT/h200-ps.txt"; $sw ps --json > "$OUT/h200-ps.json"
$sw down > "$OUT/h200-down.txt" 2>&1
pgrep -a llama-server || echo "no llama-server left" >> "$OUT/h200-down.txt"
