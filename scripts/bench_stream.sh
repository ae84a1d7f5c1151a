#!/usr/bin/env bash
# bench_stream.sh LLMFLASH [MODEL_DIR] - the paper's ablation on this machine:
# a 7B-shaped Q4_0 model converted to a flash file, run in mmap, naive,
# hybrid and stream modes side by side, each with the page cache dropped and
# inside a memory cgroup capped at 50% of the file's size (so mmap's page
# cache is capped too). Prints generation ms/token, FFN bytes read per token
# and I/O wait for each mode.
set -uo pipefail
bin=$1
dir=${2:-${LLMFLASH_MODEL_DIR:-/tmp/llmflash-models}}
n=${TOKENS:-8}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir"
src=$dir/llama2-7b-q4_0.gguf
flash=$dir/llama2-7b-q4_0.flash.gguf
[ -f "$src" ] || "$bin" synth --shape llama2-7b --type q4_0 -o "$src"
[ -f "$flash" ] || "$bin" convert "$src" "$flash"
size=$(stat -c %s "$flash")
cap=$((size / 2))
overhead=$((24 << 20))
budget=$((cap - overhead))
echo "model: $flash ($((size >> 20)) MiB); cgroup cap $((cap >> 20)) MiB; --dram-budget $((budget >> 20)) MiB; $n tokens"
printf "%-8s %12s %16s %14s %s\n" mode ms/token FFN_MiB_read/tok io_wait% note
for mode in mmap naive hybrid stream; do
    sync
    [ -w /proc/sys/vm/drop_caches ] && echo 3 >/proc/sys/vm/drop_caches
    args=(run -m "$flash" --mode "$mode" -p "Once upon a time" -n "$n" --temp 0 --ctx 64 --stats "$dir/$mode.json")
    [ "$mode" = mmap ] || args+=(--dram-budget "$budget")
    if [ -w /sys/fs/cgroup/memory ]; then
        bash "$root/scripts/cgroup_run.sh" "$cap" "$bin" "${args[@]}" >/dev/null 2>"$dir/$mode.err"
    else
        "$bin" "${args[@]}" >/dev/null 2>"$dir/$mode.err"
    fi
    rc=$?
    if [ $rc -ne 0 ]; then
        printf "%-8s %12s %16s %14s %s\n" "$mode" - - - "$(grep -o 'LF_E_[A-Z_]*' "$dir/$mode.err" | head -1) (exit $rc)"
        continue
    fi
    ms=$(grep -o 'generated [0-9]* tokens, [0-9.]* ms/token' "$dir/$mode.err" | awk '{print $4}')
    python3 - "$dir/$mode.json" "$ms" "$mode" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); ms = float(sys.argv[2]); mode = sys.argv[3]
tok = max(d["tokens"], 1)
read = d["ffn_bytes_read"] / tok / 2**20
wait = 100.0 * d["io_wait_ms"] / d["compute_ms"] if d["compute_ms"] else 0
print("%-8s %12.1f %16.1f %14.0f %s" % (mode, ms, read, wait, "peak RSS %.0f MiB" % (d["peak_rss_bytes"] / 2**20)))
PY
done
# The model of the target: stream's time per token against (device bytes read
# per token / the bandwidth iobench measures at that read size) + compute,
# where compute is the dense engine's time with the weights in RAM.
if [ -f "$dir/stream.json" ]; then
    read -r io_bytes tokens < <(python3 -c "import json; d=json.load(open('$dir/stream.json')); print(d['io_bytes'], d['tokens'])")
    sync; [ -w /proc/sys/vm/drop_caches ] && echo 3 >/proc/sys/vm/drop_caches
    bw=$("$bin" iobench "$flash" --size 1M --qd 32 --seconds 5 | awk '/bandwidth/ {print $2}')
    cat "$src" >/dev/null
    dense=$("$bin" bench -m "$src" -n 8 --no-membw | awk '/generation:/ {print $2}')
    stream_ms=$(grep -o 'generated [0-9]* tokens, [0-9.]* ms/token' "$dir/stream.err" | awk '{print $4}')
    mmap_ms=$(grep -o 'generated [0-9]* tokens, [0-9.]* ms/token' "$dir/mmap.err" | awk '{print $4}')
    awk -v b="$io_bytes" -v t="$tokens" -v bw="$bw" -v c="$dense" -v s="$stream_ms" -v m="$mmap_ms" 'BEGIN {
        io = b / t / (bw * 1048576) * 1000
        printf "device: %.0f MiB/s at 1 MiB reads (iobench, QD 32); dense compute in RAM: %.1f ms/token\n", bw, c
        printf "stream: %.1f MiB read from the device per token -> model %.1f + %.1f = %.1f ms/token; measured %.1f (%+.0f%%)\n",
            b / t / 1048576, io, c, io + c, s, 100 * (s / (io + c) - 1)
        if (m > 0) printf "stream is %.2fx faster than mmap\n", m / s
    }'
fi
