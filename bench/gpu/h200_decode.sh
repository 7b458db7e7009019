#!/usr/bin/env bash
# Lent GPU machine, after h200_agent_setup.sh on the same warm machine (it left .device/bin.txt and
# the Qwen2.5-Coder-1.5B-shaped stand-in). Where a voted agent turn's time goes inside llama-server:
# one answer against 8 answers from one process (and with a two-sampler chain), and 8 answers
# split over 2, 4 and 8 processes (bench/probes/decode_split.py).
set -uxo pipefail
export PYTHONPATH=$PWD/.device/site:$PWD SWARM_HOME=$PWD/.device/home PYTHONUNBUFFERED=1
bin=$(cat .device/bin.txt); m=$PWD/.device/stub-q4_k_m.gguf
timeout -k 10 "${DECODE_S:-240}" python3 -m bench.probes.decode_split --binary "$bin" --model "$m" \
  --ngl 999 --voters 8 --splits "${SPLITS:-1,2,4,8}" --rounds "${ROUNDS:-3}" --max-turns 4 \
  --max-tokens "${TOKENS:-64}" --out "$OUT/decode-h200.json" > "$OUT/decode-h200.log" 2>&1
echo "decode rc=$?" >> "$OUT/decode-h200.log"; tail -12 "$OUT/decode-h200.log"
