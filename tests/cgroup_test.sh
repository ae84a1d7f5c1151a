#!/usr/bin/env bash
# cgroup_test.sh LLMFLASH - a streamed run under a cgroup memory limit equal
# to its --dram-budget plus the documented fixed overhead completes without
# being OOM-killed, and its peak RSS stays within budget + overhead. Exits 77
# (skipped) where cgroups are not writable.
set -u
bin=$1
multi=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
overhead=$((24 << 20)) # code, libc, thread stacks, allocator slack: see README
[ -w /sys/fs/cgroup/memory ] || { echo "cgroup memory controller not writable: skipped"; exit 77; }
tmp=$(mktemp -d /var/tmp/lf_cgroup.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$bin" synth --dim 1024 --layers 8 --ffn 4096 --heads 16 --vocab 1000 --type f16 -o "$tmp/m.gguf" -q || exit 1
"$bin" convert "$tmp/m.gguf" "$tmp/m.flash.gguf" 2>/dev/null || exit 1
size=$(stat -c %s "$tmp/m.flash.gguf")
budget=$((size * 6 / 10))
pass=0
fail=0
for mode in stream naive hybrid; do
    b=$budget
    [ "$mode" = hybrid ] && b=$((size * 7 / 10)) # half the FFN pinned needs more
    bash "$root/scripts/cgroup_run.sh" $((b + overhead)) "$bin" run -m "$tmp/m.flash.gguf" -p "hello" -n 24 \
        --temp 0 --mode "$mode" --dram-budget "$b" --ctx 64 --stats "$tmp/$mode.json" >/dev/null 2>"$tmp/$mode.err"
    rc=$?
    peak_rss=$(awk -F': ' '/peak_rss_bytes/ {gsub(/,/, "", $2); print $2}' "$tmp/$mode.json" 2>/dev/null)
    echo "# $mode: budget $b, exit $rc, peak RSS ${peak_rss:-?}, $(grep cgroup: "$tmp/$mode.err")"
    if [ "$rc" -eq 0 ] && [ -n "$peak_rss" ] && [ "$peak_rss" -le $((b + overhead)) ]; then
        pass=$((pass + 1)); echo "ok - $mode completes under the cap and within budget + overhead"
    else
        fail=$((fail + 1)); echo "not ok - $mode (exit $rc)"; tail -3 "$tmp/$mode.err"
    fi
done
# two and three sessions on one model share its budget: one ledger, so the
# group capped at budget + overhead is never overrun
for n in 2 3; do
    [ -n "$multi" ] || break
    bash "$root/scripts/cgroup_run.sh" $((budget + overhead)) "$multi" "$tmp/m.flash.gguf" "$budget" $n 16 \
        >"$tmp/multi$n.out" 2>"$tmp/multi$n.err"
    rc=$?
    echo "# $n sessions: exit $rc, $(cat "$tmp/multi$n.out"), $(grep cgroup: "$tmp/multi$n.err")"
    peak=$(sed -n 's/.*peak RSS \([0-9]*\) bytes.*/\1/p' "$tmp/multi$n.out")
    if [ "$rc" -eq 0 ] && grep -q "oom_kills 0" "$tmp/multi$n.err" && [ -n "$peak" ] && [ "$peak" -le $((budget + overhead)) ]; then
        pass=$((pass + 1)); echo "ok - $n sessions in one budget complete under the cap, same text"
    else
        fail=$((fail + 1)); echo "not ok - $n sessions (exit $rc)"; tail -3 "$tmp/multi$n.err"
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
