#!/usr/bin/env bash
# bench_ablation.sh LLMFLASH [MODEL_DIR] - the paper's ablation on a realistic
# sparse 7B shape, in one run: the same prompt and tokens through mmap (the
# llama.cpp-style baseline), naive, hybrid, then hybrid with the predictor,
# the windowed cache, bundled reads, co-activation placement and lookahead,
# each with the page cache dropped and inside a memory cgroup capped at 50%
# of the flash file (so mmap's page cache is capped too), plus the dense
# model held wholly in RAM. Prints, per row: generation ms/token, flash MiB
# read per token, device MiB/s during generation, I/O-wait share.
#
#   PRESET  llama2-7b-relu (default) or llama2-7b-silu
#   TOKENS  tokens generated per row (default 24)
#   SPARSITY (silu) the ground truth's sparsity for calibrate (default 0.3)
#   CALIB_TOKENS  calibration tokens (default 1280)
# The model, its flash file, its placed copy and their predictors are made
# once in MODEL_DIR (synth, convert, calibrate --lookahead --reorder) and
# reused; calibrate's time is printed when it runs.
set -uo pipefail
bin=$1
dir=${2:-${LLMFLASH_MODEL_DIR:-/tmp/llmflash-models}}
preset=${PRESET:-llama2-7b-relu}
n=${TOKENS:-24}
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${LF_SHARED_DIR:-$root/../shared}
mkdir -p "$dir"
src=$dir/$preset.gguf
flash=$dir/$preset.flash.gguf
placed=$dir/$preset.placed.flash.gguf
calib_text=$shared/data/wiki.valid.tokens
prompt_file=$shared/data/wiki.test.tokens
[ -f "$src" ] || "$bin" synth --shape "$preset" --type q4_0 --tokenizer-from "$shared/vocab/ggml-vocab-llama-spm.gguf" -o "$src" || exit 1
[ -f "$flash" ] || "$bin" convert "$src" "$flash" || exit 1
if [ ! -f "$placed.predictor" ] || [ ! -f "$flash.predictor" ]; then
    extra=()
    case $preset in *silu*) extra+=(--sparsity "${SPARSITY:-0.3}") ;; esac
    t0=$(date +%s)
    "$bin" calibrate -m "$flash" -f "$calib_text" --tokens "${CALIB_TOKENS:-1280}" --lookahead \
        --reorder "$placed" --force "${extra[@]}" || exit 1
    echo "calibrate: $(( $(date +%s) - t0 )) s on this machine (one run fits the model's and the placed copy's predictors)"
fi
size=$(stat -c %s "$flash")
cap=$((size / 2))
budget=$((cap - (48 << 20)))
# a short prompt of real text, the same for every row: most traffic is generation's
prompt=$(head -c 2000 "$prompt_file" | tr '\n' ' ' | tr -s ' ' | cut -c 1-60)
grep -o 'flags.*' /proc/cpuinfo | head -1 | grep -o 'avx512[a-z_0-9]*\|avx2\|fma\|f16c' | sort -u | tr '\n' ' ' |
    sed 's/^/cpu features: /'
echo
echo "model: $flash ($((size >> 20)) MiB); cgroup cap $((cap >> 20)) MiB; --dram-budget $((budget >> 20)) MiB; $n tokens"
printf "%-12s %9s %13s %11s %10s %12s %7s %s\n" row ms/token flash_MiB/tok reads/tok KiB/read device_MiB/s io_wait note
row() { # name file args...
    local name=$1 file=$2
    shift 2
    sync
    [ -w /proc/sys/vm/drop_caches ] && echo 3 >/proc/sys/vm/drop_caches
    local args=(run -m "$file" -p "$prompt" -n "$n" --temp 0 --ctx 128 --stats "$dir/$name.json" "$@")
    if [ -w /sys/fs/cgroup/memory ]; then
        bash "$root/scripts/cgroup_run.sh" "$cap" "$bin" "${args[@]}" >/dev/null 2>"$dir/$name.err"
    else
        "$bin" "${args[@]}" >/dev/null 2>"$dir/$name.err"
    fi
    local rc=$?
    if [ $rc -ne 0 ]; then
        printf "%-12s %9s %13s %11s %10s %12s %7s %s\n" "$name" - - - - - - "$(grep -o 'LF_E_[A-Z_]*' "$dir/$name.err" | head -1) (exit $rc)"
        return
    fi
    python3 - "$dir/$name.json" "$name" "$(grep -o 'peak [0-9]* bytes' "$dir/$name.err")" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); name = sys.argv[2]
g = d["generation"]; tok = max(g["tokens"], 1)
ms = g["ms_per_token"]
read = g["ffn_bytes_read"] / tok / 2**20
span = d["prompt"]["ms"] + g["ms"]  # device reads are counted over the whole session
dev = d["device_read_bytes"] / 2**20 / (span / 1e3) if span else 0
wait = "%.0f%%" % (100.0 * g["io_wait_ms"] / g["ms"]) if g["ms"] and d["params"]["mode"] != "mmap" else "-"
la = d.get("lookahead", {})
reads = d["io_reads"] / max(d["tokens"], 1)  # the loader's reads (after coalescing), per token
size = d["io_bytes"] / d["io_reads"] / 1024 if d["io_reads"] else 0
note = "cgroup %s; predictor %.1f%% of time" % (sys.argv[3], 100.0 * d["mask_ms"] / d["compute_ms"] if d["compute_ms"] else 0)
if la.get("units"): note += "; lookahead recall %.2f precision %.2f" % (la["recall"], la["precision"])
if d["params"]["mode"] == "mmap": reads, size = float("nan"), float("nan")
print("%-12s %9.1f %13.2f %11.1f %10.1f %12.0f %7s %s" % (name, ms, read, reads, size, dev, wait, note))
PY
}
row mmap "$flash" --mode mmap
row naive "$flash" --mode naive --predictor all --dram-budget "$budget"
row hybrid "$flash" --mode hybrid --predictor all --dram-budget "$budget"
row +predictor "$flash" --mode hybrid --predictor predictor --unbundled-reads --dram-budget "$budget"
row +window "$flash" --mode stream --predictor predictor --unbundled-reads --dram-budget "$budget"
row +bundling "$flash" --mode stream --predictor predictor --dram-budget "$budget"
row +placement "$placed" --mode stream --predictor predictor --dram-budget "$budget"
row +lookahead "$placed" --mode stream --predictor predictor --lookahead --dram-budget "$budget"
# the dense model wholly in RAM (no cap; the file read into the page cache first)
cat "$src" >/dev/null
dense=$("$bin" bench -m "$src" -n 8 --no-membw 2>/dev/null | awk '/generation:/ {print $2}')
echo "dense model in RAM (bench, no cap): ${dense:-?} ms/token"
