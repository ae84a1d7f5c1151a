#!/usr/bin/env bash
# bench_compression.sh LLMFLASH [WORK_DIR] - does compressing bundles pay on
# this disk? For F16 and Q4_0 bundles of a real model (stories260K, F32) and
# of a synthetic 1024-wide model, it reports the compression ratio and the
# decode cost (checksum + decompression of every group, page cache warm,
# measured as `llmflash verify` time minus the uncompressed file's), then
# compares the bytes saved with what the disk would take to read them.
# Compression pays when  saved_fraction > disk_MBps / decode_MBps.
set -euo pipefail
bin=$1
dir=${2:-/tmp/llmflash-compress}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir"
real=$root/../shared/models/stories260K.gguf
syn=$dir/small-f16.gguf
[ -f "$syn" ] || "$bin" synth --shape small --type f16 -o "$syn" -q
# random-read bandwidth of this disk at a 128 KiB group size, queue depth 32
disk=${DISK_MBPS:-}
if [ -z "$disk" ] && command -v fio >/dev/null; then
    disk=$(fio --name=r --filename="$dir/fio.dat" --size=2G --rw=randread --bs=128k --iodepth=32 \
        --ioengine=io_uring --direct=1 --runtime=8 --time_based --output-format=terse 2>/dev/null |
        awk -F';' '{printf "%.0f", $7 / 1024 * 1.048576}')
    rm -f "$dir/fio.dat"
fi
disk=${disk:-960}
echo "disk random read, 128 KiB, QD32: ${disk} MB/s"
printf "%-10s %-5s %-5s %10s %10s %13s %12s %s\n" model type codec raw_MB stored_MB stored/raw decode_MBps pays?
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}'; }
for src in "$real" "$syn"; do
    name=$(basename "$src" .gguf)
    for type in f16 q4_0; do
        base=""
        for codec in none lz4 zstd; do
            out=$dir/$name.$type.$codec.gguf
            "$bin" convert "$src" "$out" --bundle-type "$type" --compress "$codec" --force 2>"$dir/conv.log"
            read -r raw stored < <(awk '/FFN bundles/ {print $3, $9}' "$dir/conv.log")
            "$bin" verify "$out" >/dev/null # warm the page cache
            t=$(secs "$bin" verify "$out")
            t=$(awk -v a="$t" -v b="$(secs "$bin" verify "$out")" 'BEGIN{print (a<b)?a:b}')
            if [ "$codec" = none ]; then base=$t; ustored=$stored; fi
            awk -v n="$name" -v ty="$type" -v c="$codec" -v r="$raw" -v s="$stored" -v u="$ustored" -v t="$t" -v b="$base" -v d="$disk" 'BEGIN {
                dec = t - b; mbps = dec > 0 ? r / dec / 1e6 : 0;
                saved = 1 - s / r; # against packed records: padding is a separate choice (--align none)
                verdict = c == "none" ? "(padded)" : (mbps > 0 && saved > d / mbps ? "yes" : "no");
                printf "%-10s %-5s %-5s %10.2f %10.2f %13.3f %12.0f %s\n", substr(n, 1, 10), ty, c, r / 1e6, s / 1e6, s / r, mbps, verdict }'
            [ "$codec" = none ] || rm -f "$out"
        done
        rm -f "$dir/$name.$type.none.gguf"
    done
done
