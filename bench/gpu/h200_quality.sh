#!/usr/bin/env bash
# Lent GPU machine, call 3+ (after h200_agent_setup.sh and h200_agent_ab.sh on the same warm
# machine, which left .device/smol/p1 and p2). Carried: .smol3 (the last third of
# SmolLM2-135M-Instruct); or, with the xz-compressed model, .sx2 (its second part: the first came
# with the set-up call) and .carry2 (the task sets and the model's sha256, without the sdist). The live answer-quality benchmark through `swarm up` on the dev sets,
# then (POOL=1) an offline pool of answers for designing the picker.
# Everything is written under $OUT as it goes (no `| tail`: a pipeline killed at the call's limit
# returns nothing), and every step has its own timeout so the call ends inside its limit.
# Resumable: answers are kept in .device/results between calls on the same warm machine.
set -uxo pipefail
export PYTHONPATH=$PWD/.device/site:$PWD SWARM_HOME=$PWD/.device/home PYTHONUNBUFFERED=1
carry=.carry; [ -d .carry2 ] && carry=.carry2
mkdir -p .device/smol .device/results ../shared && ln -sfn "$PWD/$carry/data" ../shared/data
[ -d .smol3 ] && cp .smol3/p .device/smol/p3
[ -d .sx2 ] && cp .sx2/p .device/smol/x2
[ -d .sx3 ] && cp .sx3/p .device/smol/x3
smol=$PWD/.device/smol/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$smol" ]; then
  if [ -f .device/smol/x2 ]; then cat .device/smol/x1 .device/smol/x2 .device/smol/x3 2>/dev/null | python3 -c \
      'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)' > "$smol"
  else cat .device/smol/p1 .device/smol/p2 .device/smol/p3 > "$smol"; fi
fi
echo "$(cat $carry/smol.sha)  $smol" | sha256sum -c - || exit 3
bin=$(cat .device/bin.txt)
cp .device/results/* bench/results/ 2>/dev/null
timeout -k 10 "${LIVE_S:-400}" python3 -m bench quality --model "$smol" --instances "${VOTERS:-5}" \
  --llama-server "$bin" --bare-arg=-ngl --bare-arg=999 --sets micro-dev,micro2-dev \
  --settings "${SETTINGS:-none,0.2,0.5,0.8}" --repeats "${REPEATS:-3}" --greedy-repeats "${GREEDY_REPEATS:-1}" --concurrency "${CONC:-8}" \
  --tag "${TAG:--h200}" > "$OUT/quality-live.log" 2>&1
echo "quality rc=$?" >> "$OUT/quality-live.log"
cp bench/results/quality-live"${TAG:--h200}"* .device/results/ 2>/dev/null
if [ "${POOL:-0}" = 1 ]; then
  timeout -k 10 "${POOL_S:-150}" python3 -m bench quality-pool --llama-server "$bin" --model "$smol" \
    --ngl 999 --threads 4 --at-once 4 --samples 8 --out .device/results/quality-pool-h200.json.gz \
    > "$OUT/quality-pool.log" 2>&1
fi
cp .device/results/* "$OUT/" 2>/dev/null; ls -la "$OUT"
