#!/usr/bin/env bash
# simulate_xval.sh LLMFLASH FLASH_FILE OUT_DIR - checks `llmflash simulate`
# across devices: it predicts a run on one device from a run recorded on
# another, and compares with the run measured there.
#
# The second device is this machine's disk slowed by a cgroup v1 blkio
# throttle (RATE bytes/s of reads, default 300 MiB/s), so both are at hand
# and the prediction is not fed the run it predicts. For each of the modes
# naive, hybrid and stream (MODES), under a DRAM budget of BUDGET (default
# half the file), it records a run on each device (page cache dropped,
# alternating), writes each device's file with `iobench --device-json`, and
# simulates each run on the other device. Prints one table; needs root (the
# throttle, drop_caches).
#
# Environment: RATE (default 314572800), MODES ("naive hybrid stream"),
# TOKENS (16 generated tokens), BUDGET (bytes; default half the file).
set -euo pipefail
bin=$1
flash=$2
out=$3
rate=${RATE:-314572800}
modes=${MODES:-naive hybrid stream}
tokens=${TOKENS:-16}
[ "$(id -u)" -eq 0 ] || { echo "simulate_xval: needs root (blkio throttle, drop_caches)" >&2; exit 2; }
[ -d /sys/fs/cgroup/blkio ] || { echo "simulate_xval: no cgroup v1 blkio controller at /sys/fs/cgroup/blkio" >&2; exit 2; }
[ -f "$flash" ] || { echo "simulate_xval: $flash: no such file" >&2; exit 2; }
mkdir -p "$out"
budget=${BUDGET:-$(($(stat -c %s "$flash") / 2))}

# the whole disk under the file's filesystem: the throttle works per disk
src=$(findmnt -n -o SOURCE --target "$flash")
disk=$(lsblk -no PKNAME "$src" 2>/dev/null | head -1)
[ -n "$disk" ] || disk=$(basename "$src")
majmin=$(lsblk -dno MAJ:MIN "/dev/$disk" | tr -d ' ')
cg=/sys/fs/cgroup/blkio/llmflash-xval-$$
mkdir "$cg"
trap 'rmdir "$cg" 2>/dev/null || true' EXIT
echo "$majmin $rate" > "$cg/blkio.throttle.read_bps_device"
echo "disk /dev/$disk ($majmin), slow device: reads throttled to $((rate / 1048576)) MiB/s; budget $budget bytes"

# runs COMMAND on the slow device: inside the throttled cgroup
slow() { bash -c 'echo $$ > "$0/cgroup.procs"; exec "$@"' "$cg" "$@"; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

"$bin" iobench "$flash" --device-json "$out/fast.json" --name "this disk" >/dev/null
slow "$bin" iobench "$flash" --device-json "$out/slow.json" --name "this disk at $((rate / 1048576)) MiB/s" >/dev/null

for mode in $modes; do
    for dev in fast slow; do
        drop
        cmd=("$bin" run -m "$flash" --mode "$mode" --dram-budget "$budget" -p "Once upon a time" -n "$tokens"
             --temp 0 --stats "$out/$mode-$dev.json")
        if [ "$dev" = slow ]; then slow "${cmd[@]}" >/dev/null 2>&1; else "${cmd[@]}" >/dev/null 2>&1; fi
    done
done

ms_of() { python3 -c 'import json,sys; g=json.load(open(sys.argv[1]))["generation"]; print("%.1f" % (g["ms"] / g["tokens"]))' "$1"; }
predict() { "$bin" simulate --stats "$1" --device "$2" --recorded-on "$3" | sed -n 's/^predicted: *\([0-9.]*\) ms.*/\1/p'; }
err() { python3 -c 'import sys; p, m = float(sys.argv[1]), float(sys.argv[2]); print("%+.0f%%" % (100 * (p - m) / m))' "$1" "$2"; }

echo
echo "| mode | measured fast ms/token | measured slow | slow predicted from fast | error | fast predicted from slow | error |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for mode in $modes; do
    f=$(ms_of "$out/$mode-fast.json") s=$(ms_of "$out/$mode-slow.json")
    ps=$(predict "$out/$mode-fast.json" "$out/slow.json" "$out/fast.json")
    pf=$(predict "$out/$mode-slow.json" "$out/fast.json" "$out/slow.json")
    echo "| $mode | $f | $s | $ps | $(err "$ps" "$s") | $pf | $(err "$pf" "$f") |"
done
