#!/usr/bin/env bash
# Lent GPU machine, call 2 (after h200_agent_setup.sh on the same warm machine). Carried: .smol2.
# The agent benchmark A/B: 8 voters as the plan lays them out, arms (ARMS, in this order):
#   split    a KV cache per slot (--no-kv-unified; the default before 2026-12-03)
#   shared   one pool, each slot capped (the swarm's default where the binary has the flags)
#   noram    shared, and no host-RAM prompt cache (--cache-ram 0: it copies idle slots to RAM)
#   gpusamp  shared, and llama-server's experimental sampling on the GPU (--backend-sampling)
#   ppg2     shared, the 8 voters split between 2 llama-servers on the GPU (--processes-per-gpu 2)
#   ppg1     shared, the 8 voters in one llama-server (--processes-per-gpu 1; the default before
#            2026-12-04's automatic split of 8 small voters into 2 x 4)
#   v3, v5   the default plan with 3 or 5 voters instead of 8
# REPS=k runs the list k times, interleaved (results named ...-ARM-r1, -r2, ...).
set -uxo pipefail
export PYTHONPATH=$PWD/.device/site:$PWD SWARM_HOME=$PWD/.device/home PYTHONUNBUFFERED=1
mkdir -p .device/smol && { [ -d .smol2 ] && cp .smol2/p .device/smol/p2; true; }
bin=$(cat .device/bin.txt); m=$PWD/.device/stub-q4_k_m.gguf
for rep in $(seq 1 "${REPS:-1}"); do
for arm in ${ARMS:-split shared noram gpusamp}; do
  voters=8; name=$arm; [ "${REPS:-1}" = 1 ] || name=$arm-r$rep
  case $arm in
    split) extra=(--llama-arg=--no-kv-unified) ;;
    noram) extra=(--llama-arg=--cache-ram --llama-arg=0) ;;
    gpusamp) extra=(--llama-arg=--backend-sampling) ;;
    ppg2) extra=(--swarm-arg=--processes-per-gpu=2) ;;
    ppg1) extra=(--swarm-arg=--processes-per-gpu=1) ;;
    v3) extra=(); voters=3 ;;
    v5) extra=(); voters=5 ;;
    *) extra=() ;;
  esac
  timeout "${ARM_S:-140}" python3 -m bench agent --model "$m" --instances "$voters" --ngl 999 --llama-server "$bin" \
    --max-tokens "${TOKENS:-64}" --max-turns "${MAX_TURNS:-4}" --concurrency "${CONC:-1,4}" \
    --time-budget "${BUDGET:-100}" --sessions "${SESSIONS:-bench/data/agent/*.json.gz}" "${extra[@]}" --out "$OUT/agent-h200-$name.json" 2>&1 \
    > "$OUT/agent-h200-$name.log"; tail -4 "$OUT/agent-h200-$name.log"
done
done
rm -f "$OUT"/*.png  # $OUT brings back 8 files at most: 4 arms x (json, log)
ls -la "$OUT"
