#!/usr/bin/env bash
# quickstart.sh - sets up a fresh machine, builds llmflash and runs the main
# job: greedy generation from the real stories260K model.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
[ -d build ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
model=${1:-../shared/models/stories260K.gguf}
./build/llmflash run -m "$model" -p "Once upon a time" -n 200 --temp 0
echo
