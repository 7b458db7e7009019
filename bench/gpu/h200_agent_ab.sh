#!/usr/bin/env bash
# Lent GPU machine, call 2 (after h200_agent_setup.sh on the same warm machine). Carried: .smol2.
# The agent benchmark A/B: 8 voters as the plan lays them out, with llama-server's KV cache per
# slot (default with an explicit --parallel) against one unified KV cache (--kv-unified), where
# the n = 8 children of one request share the prompt's cells instead of copying them.
set -uxo pipefail
export PYTHONPATH=$PWD/.device/site:$PWD SWARM_HOME=$PWD/.device/home PYTHONUNBUFFERED=1
mkdir -p .device/smol && cp .smol2/p .device/smol/p2
bin=$(cat .device/bin.txt); m=$PWD/.device/stub-q4_k_m.gguf
for arm in ${ARMS:-split unified}; do
  extra=(); [ "$arm" = unified ] && extra=(--llama-arg=--kv-unified)
  timeout 270 python3 -m bench agent --model "$m" --instances 8 --ngl 999 --llama-server "$bin" \
    --max-tokens "${TOKENS:-64}" --max-turns "${MAX_TURNS:-4}" --concurrency "${CONC:-1,4}" \
    --time-budget "${BUDGET:-150}" "${extra[@]}" --out "$OUT/agent-h200-$arm.json" 2>&1 \
    | tee "$OUT/agent-h200-$arm.log" | tail -25
done
ls -la "$OUT"
