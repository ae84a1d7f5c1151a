#!/usr/bin/env bash
# quickstart.sh - sets up a fresh machine and runs llmflash's main job. It
# needs nothing beside the repository:
#   1. installs the dependencies and builds;
#   2. synthesizes a 1.7 GB llama-architecture model (llmflash synth, F16);
#   3. converts it to a flash file (llmflash convert);
#   4. runs it in stream mode under a DRAM budget of half the file's size,
#      printing the generated tokens and the flash-against-DRAM traffic.
# The weights are random, so the text is random syllables: the point is the
# model running in half its size. Set LLMFLASH_MODEL_DIR to keep the models
# elsewhere (default build/models).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
[ -d build ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
bin=build/llmflash
dir=${LLMFLASH_MODEL_DIR:-build/models}
mkdir -p "$dir"
src=$dir/synth-1b-f16.gguf
flash=$dir/synth-1b-f16.flash.gguf
[ -f "$src" ] || $bin synth --shape 1b --type f16 -o "$src"
[ -f "$flash" ] || $bin convert "$src" "$flash"
size=$(stat -c %s "$flash")
budget=$((size / 2))
echo "== streaming $flash ($((size >> 20)) MiB) under a DRAM budget of $((budget >> 20)) MiB"
$bin run -m "$flash" --mode stream --dram-budget "$budget" -p "Once upon a time" -n 32 --temp 0 --stats "$dir/stats.json"
echo
echo "== per-run statistics: $dir/stats.json"
