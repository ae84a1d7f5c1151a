#!/usr/bin/env bash
# cgroup_run.sh LIMIT_BYTES CMD... - runs CMD inside a fresh cgroup v1 memory
# group capped at LIMIT_BYTES (page cache included, so an mmap baseline is
# capped too). Prints "cgroup: exit E, peak B bytes, oom_kills K" on stderr
# and exits with CMD's status. Exits 77 when cgroups are not writable.
set -u
limit=$1
shift
root=/sys/fs/cgroup/memory
if [ ! -w "$root" ]; then
    echo "cgroup: $root is not writable: skipped" >&2
    exit 77
fi
cg=$root/llmflash_$$_$RANDOM
mkdir "$cg" || exit 77
trap 'rmdir "$cg" 2>/dev/null' EXIT
echo "$limit" >"$cg/memory.limit_in_bytes"
echo 0 >"$cg/memory.swappiness" 2>/dev/null || true
bash -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' _ "$cg" "$@"
rc=$?
peak=$(cat "$cg/memory.max_usage_in_bytes")
ooms=$(awk '/oom_kill / {print $2}' "$cg/memory.oom_control" 2>/dev/null)
echo "cgroup: exit $rc, peak $peak bytes, oom_kills ${ooms:-0}" >&2
exit $rc
