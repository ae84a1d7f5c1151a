#!/usr/bin/env bash
# bench_pairs.sh LLMFLASH FLASH_FILE [PAIRS] - mmap and stream alternately,
# each with the page cache dropped and in a cgroup capped at 50% of the file,
# so every stream run has an mmap run beside it on the same noisy disk.
# Prints each pair's ratio and the median.
set -uo pipefail
bin=$1
flash=$2
pairs=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
cap=$(($(stat -c %s "$flash") / 2))
overhead=$((24 << 20))
run() {
    sync
    [ -w /proc/sys/vm/drop_caches ] && echo 3 >/proc/sys/vm/drop_caches
    bash "$root/scripts/cgroup_run.sh" "$cap" "$bin" run -m "$flash" -p "Once upon a time" -n 6 --temp 0 --ctx 64 "$@" \
        2>&1 >/dev/null | grep -o 'generated [0-9]* tokens, [0-9.]* ms/token' | awk '{print $4}'
}
ratios=""
for i in $(seq "$pairs"); do
    m=$(run --mode mmap)
    s=$(run --mode stream --dram-budget $((cap - overhead)))
    r=$(awk -v m="$m" -v s="$s" 'BEGIN { printf "%.2f", m / s }')
    echo "pair $i: mmap $m ms/token, stream $s ms/token, stream is ${r}x faster"
    ratios="$ratios $r"
done
echo "$ratios" | tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print "median ratio: " a[int((NR+1)/2)] "x"}'
