#!/usr/bin/env bash
# Lent GPU machine, call 2 of 3 (after h200_agent_setup.sh on the same machine). Carried: .smol2.
# The agent benchmark with the 1.5B stand-in: 8 voters through swarm up against one llama-server
# of the same build answering alone, opencode sessions of 2k-30k tokens, M = 1, 2, 4 sessions.
set -uxo pipefail
export PYTHONPATH=$PWD/.device/site:$PWD SWARM_HOME=$PWD/.device/home PYTHONUNBUFFERED=1

bin=$(cat .device/bin.txt); m=$PWD/.device/stub-q4_k_m.gguf
python3 -m swarm_supervisor plan --model "$m" --instances 8 > "$OUT/h200-agent-plan.txt" 2>&1
python3 -m swarm_supervisor plan --model "$m" --instances 8 --json > "$OUT/h200-agent-plan.json" 2>&1
timeout 540 python3 -m bench agent --model "$m" --instances 8 --ngl 999 --llama-server "$bin" \
  --max-tokens 256 --max-turns "${MAX_TURNS:-8}" --concurrency 1,2,4 --time-budget "${BUDGET:-240}" \
  --out "$OUT/agent-h200.json" 2>&1 | tee "$OUT/agent-h200.log" | tail -60
ls -la "$OUT"
