#!/usr/bin/env bash
# bench_dense.sh LLMFLASH [MODEL_DIR] - dense generation speed on a 7B-shaped
# Q4_0 model held in RAM, against the DRAM-bandwidth limit measured in the
# same run. Synthesizes the model once (3.6 GiB) into MODEL_DIR.
set -euo pipefail
bin=$1
dir=${2:-${LLMFLASH_MODEL_DIR:-/tmp/llmflash-models}}
mkdir -p "$dir"
model=$dir/llama2-7b-q4_0.gguf
[ -f "$model" ] || "$bin" synth --shape llama2-7b --type q4_0 -o "$model"
# read it once so the page cache holds it: this measures compute, not disk
cat "$model" >/dev/null
"$bin" bench -m "$model" -n 16 --warmup 2
