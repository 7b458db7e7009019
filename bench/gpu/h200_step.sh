#!/usr/bin/env bash
# Lent GPU machine, after h200_agent_setup.sh on the same warm machine (it left .device/bin.txt and
# the Qwen2.5-Coder-1.5B-shaped stand-in). What one decoding step of k voters costs inside
# llama-server and what changes it (bench/probes/decode_step.py); then, where Nsight Systems is
# installed, the GPU's kernel time against the wall time for one answer and for 8 voters.
set -uxo pipefail
export PYTHONPATH=$PWD/.device/site:$PWD SWARM_HOME=$PWD/.device/home PYTHONUNBUFFERED=1
command -v nvcc || export PATH=/usr/local/cuda/bin:$PATH
bin=$(cat .device/bin.txt); m=$PWD/.device/stub-q4_k_m.gguf
timeout -k 10 "${STEP_S:-300}" python3 -m bench.probes.decode_step --binary "$bin" --model "$m" \
  ${ARMS:+--arms "$ARMS"} --rounds "${ROUNDS:-3}" --out "$OUT/step-h200.json" > "$OUT/step-h200.log" 2>&1
echo "step rc=$?" >> "$OUT/step-h200.log"; tail -14 "$OUT/step-h200.log"
nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
echo "nsys=${nsys:-none} perf=$(command -v perf || echo none) gdb=$(command -v gdb || echo none)" | tee "$OUT/tools.txt"
[ -n "$nsys" ] || exit 0
for n in 1 8; do
  port=$((18500 + n))
  "$nsys" launch --session-new="s$n" -t cuda "$bin" -m "$m" --host 127.0.0.1 --port $port -c $((n * 16384)) \
    --parallel $n --kv-unified -ngl 999 > "$OUT/nsys-server-$n.log" 2>&1 &
  for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
  python3 -m bench.probes.decode_step --url "http://127.0.0.1:$port" --n $n --rounds 1 > /dev/null
  "$nsys" start --session="s$n" -o "$PWD/.device/prof$n" --force-overwrite=true
  t0=$(date +%s.%N)
  python3 -m bench.probes.decode_step --url "http://127.0.0.1:$port" --n $n --rounds 2 > "$OUT/nsys-ask-$n.jsonl"
  echo "wall_s=$(echo "$(date +%s.%N) - $t0" | bc)" >> "$OUT/nsys-ask-$n.jsonl"
  "$nsys" stop --session="s$n"
  "$nsys" shutdown --session="s$n" --kill sigterm || true
  sleep 3
  "$nsys" stats -q -r cuda_gpu_kern_sum,cuda_api_sum -f csv -o "$OUT/nsys$n" "$PWD/.device/prof$n.nsys-rep" \
    > "$OUT/nsys-stats-$n.log" 2>&1 || "$nsys" stats -r cuda_gpu_kern_sum,cuda_api_sum "$PWD/.device/prof$n.nsys-rep" > "$OUT/nsys-stats-$n.txt" 2>&1
  ls "$OUT" | tail -3
done
