#!/usr/bin/env bash
# Lent GPU machine, call 3+ (after h200_agent_setup.sh and h200_agent_ab.sh on the same warm
# machine). Carried: .smol3 (the last third of SmolLM2-135M-Instruct; the others are in
# .device/smol). The live answer-quality benchmark through `swarm up` on the dev sets, and an
# offline pool of answers (greedy + 8 samples at 0.2/0.5/0.8 per task) for designing the picker.
set -uxo pipefail
export PYTHONPATH=$PWD/.device/site:$PWD SWARM_HOME=$PWD/.device/home PYTHONUNBUFFERED=1
mkdir -p .device/smol ../shared && ln -sfn "$PWD/.carry/data" ../shared/data
[ -d .smol3 ] && cp .smol3/p .device/smol/p3
smol=$PWD/.device/smol/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$smol" ] || cat .device/smol/p1 .device/smol/p2 .device/smol/p3 > "$smol"
echo "$(cat .carry/smol.sha)  $smol" | sha256sum -c - || exit 3
bin=$(cat .device/bin.txt)
cp .device/results/* bench/results/ 2>/dev/null
if [ "${POOL:-1}" = 1 ]; then
  timeout "${POOL_S:-200}" python3 -m bench quality-pool --llama-server "$bin" --model "$smol" --ngl 999 \
    --threads 4 --at-once 4 --samples 8 --out .device/results/quality-pool-h200.json.gz 2>&1 | tail -5
fi
timeout "${LIVE_S:-330}" python3 -m bench quality --model "$smol" --instances "${VOTERS:-5}" --llama-server "$bin" \
  --bare-arg=-ngl --bare-arg=999 --sets micro-dev,micro2-dev --settings "${SETTINGS:-none,0.2,0.5,0.8}" \
  --repeats "${REPEATS:-3}" --concurrency 8 --tag -h200 2>&1 | tail -40
mkdir -p .device/results && cp bench/results/quality-live-h200* .device/results/ 2>/dev/null
cp .device/results/* "$OUT/" 2>/dev/null; ls -la "$OUT"
