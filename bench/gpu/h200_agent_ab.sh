#!/usr/bin/env bash
# Lent GPU machine, call 2 (after h200_agent_setup.sh on the same warm machine). Carried: .smol2.
# The agent benchmark A/B: 8 voters as the plan lays them out, arms (ARMS, in this order):
#   split    a KV cache per slot (--no-kv-unified; the default before 2026-12-03)
#   shared   one pool, each slot capped (the swarm's default where the binary has the flags)
#   noram    shared, and no host-RAM prompt cache (--cache-ram 0: it copies idle slots to RAM)
#   gpusamp  shared, and llama-server's experimental sampling on the GPU (--backend-sampling)
#   ppg2     shared, the 8 voters split between 2 llama-servers on the GPU (--processes-per-gpu 2)
set -uxo pipefail
export PYTHONPATH=$PWD/.device/site:$PWD SWARM_HOME=$PWD/.device/home PYTHONUNBUFFERED=1
mkdir -p .device/smol && { [ -d .smol2 ] && cp .smol2/p .device/smol/p2; true; }
bin=$(cat .device/bin.txt); m=$PWD/.device/stub-q4_k_m.gguf
for arm in ${ARMS:-split shared noram gpusamp}; do
  case $arm in
    split) extra=(--llama-arg=--no-kv-unified) ;;
    noram) extra=(--llama-arg=--cache-ram --llama-arg=0) ;;
    gpusamp) extra=(--llama-arg=--backend-sampling) ;;
    ppg2) extra=(--swarm-arg=--processes-per-gpu=2) ;;
    *) extra=() ;;
  esac
  timeout "${ARM_S:-140}" python3 -m bench agent --model "$m" --instances 8 --ngl 999 --llama-server "$bin" \
    --max-tokens "${TOKENS:-64}" --max-turns "${MAX_TURNS:-4}" --concurrency "${CONC:-1,4}" \
    --time-budget "${BUDGET:-100}" --sessions "${SESSIONS:-bench/data/agent/*.json.gz}" "${extra[@]}" --out "$OUT/agent-h200-$arm.json" 2>&1 \
    > "$OUT/agent-h200-$arm.log"; tail -4 "$OUT/agent-h200-$arm.log"
done
rm -f "$OUT"/*.png  # $OUT brings back 8 files at most: 4 arms x (json, log)
ls -la "$OUT"
