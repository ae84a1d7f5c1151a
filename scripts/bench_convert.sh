#!/usr/bin/env bash
# bench_convert.sh LLMFLASH [MODEL_DIR] - conversion throughput of a 7B Q4_0
# model against `cp` + sync of the same file on the same disk, both from a
# cold page cache (needs root for drop_caches; without it both run warm).
set -euo pipefail
bin=$1
dir=${2:-${LLMFLASH_MODEL_DIR:-/tmp/llmflash-models}}
mkdir -p "$dir"
src=$dir/llama2-7b-q4_0.gguf
[ -f "$src" ] || "$bin" synth --shape llama2-7b --type q4_0 -o "$src"
drop() { sync; [ -w /proc/sys/vm/drop_caches ] && echo 3 >/proc/sys/vm/drop_caches || true; }
now() { date +%s.%N; }
drop
t0=$(now)
/usr/bin/env time -f "%M" -o "$dir/convert.rss" "$bin" convert "$src" "$dir/bench.flash.gguf" --force 2>"$dir/convert.log"
t1=$(now)
drop
t2=$(now)
cp "$src" "$dir/bench.copy" && sync
t3=$(now)
rm -f "$dir/bench.copy" "$dir/bench.flash.gguf"
size=$(stat -c %s "$src")
awk -v c="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" -v p="$(awk -v a="$t2" -v b="$t3" 'BEGIN{print b-a}')" -v s="$size" -v rss="$(cat "$dir/convert.rss")" 'BEGIN {
    printf "input:    %.2f GiB\n", s / 2^30
    printf "convert:  %.2f s, %.0f MB/s, peak RSS %.0f MiB\n", c, s / c / 1e6, rss / 1024
    printf "cp+sync:  %.2f s, %.0f MB/s\n", p, s / p / 1e6
    printf "ratio:    convert takes %.2fx the time of cp+sync (target <= 2)\n", c / p
}'
cat "$dir/convert.log" | tail -2
