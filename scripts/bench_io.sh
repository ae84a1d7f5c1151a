#!/usr/bin/env bash
# bench_io.sh LLMFLASH [FILE] - llmflash iobench against fio on the same
# file, block size and queue depth (16 KiB and 128 KiB, QD 32), for both
# back-ends. The shared disk is noisy, so runs alternate fio / iobench and
# the ratio of medians is reported. FILE defaults to a 5 GiB file it creates.
set -euo pipefail
bin=$1
file=${2:-${LLMFLASH_MODEL_DIR:-/tmp/llmflash-models}/iobench.dat}
reps=${REPS:-3}
secs=${SECS:-4}
mkdir -p "$(dirname "$file")"
if [ ! -f "$file" ]; then
    fio --name=prep --filename="$file" --size=5G --rw=write --bs=1M --direct=1 --output-format=terse >/dev/null
fi
sync
[ -w /proc/sys/vm/drop_caches ] && echo 3 >/proc/sys/vm/drop_caches
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
printf "%-6s %-8s %12s %12s %7s\n" size backend fio_MiB/s ours_MiB/s ratio
for bs in 16K 128K; do
    for backend in uring pread; do
        f_all=""; o_all=""
        for _ in $(seq "$reps"); do
            if [ "$backend" = uring ]; then
                f=$(fio --name=r --filename="$file" --rw=randread --bs="$bs" --iodepth=32 --ioengine=io_uring \
                    --direct=1 --runtime="$secs" --time_based --output-format=terse | awk -F';' '{print $7/1024}')
            else # the pread back-end is a thread pool: fio's psync with 32 jobs
                f=$(fio --name=r --filename="$file" --rw=randread --bs="$bs" --numjobs=32 --ioengine=psync \
                    --direct=1 --runtime="$secs" --time_based --group_reporting --output-format=terse |
                    awk -F';' '{print $7/1024}')
            fi
            o=$("$bin" iobench "$file" --size "$bs" --qd 32 --seconds "$secs" --backend "$backend" |
                awk '/bandwidth/ {print $2}')
            f_all="$f_all $f"; o_all="$o_all $o"
        done
        fm=$(echo "$f_all" | tr ' ' '\n' | grep . | median)
        om=$(echo "$o_all" | tr ' ' '\n' | grep . | median)
        awk -v s="$bs" -v b="$backend" -v f="$fm" -v o="$om" 'BEGIN { printf "%-6s %-8s %12.1f %12.1f %7.2f\n", s, b, f, o, o / f }'
    done
done
