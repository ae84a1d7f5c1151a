#!/usr/bin/env bash
# run_fuzz.sh SECONDS [LLMFLASH] - builds the libFuzzer targets with clang,
# ASan and UBSan (clang's UBSan checks float-cast-overflow, which gcc's
# skips; any report aborts), and runs each for SECONDS on a seed corpus:
#   fuzz_gguf   the GGUF reader;
#   fuzz_model  a whole model (hyperparameters, tokenizer, one token) from GGUF bytes;
#   fuzz_flash  a flash file opened and evaluated through the streaming engine.
# LLMFLASH builds the synthetic seeds. Exits 1 on a finding or a build failure.
set -euo pipefail
secs=${1:-60}
bin=${2:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
shared=${LF_SHARED_DIR:-$root/../shared}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! command -v clang >/dev/null; then echo "fuzz: clang not found (install clang and libclang-rt-dev)"; exit 1; fi
build=$root/build-fuzz
if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$root" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
        --buildtype=debugoptimized >"$work/setup.log" 2>&1 || { cat "$work/setup.log"; exit 1; }
fi
ninja -C "$build" tests/fuzz_gguf tests/fuzz_model tests/fuzz_flash >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }

mkdir -p "$work/gguf" "$work/flash"
for f in "$shared"/models/stories260K*.gguf; do [ -f "$f" ] && head -c 65536 "$f" >"$work/gguf/$(basename "$f")"; done
for f in "$shared"/vocab/*.gguf; do [ -f "$f" ] && head -c 65536 "$f" >"$work/gguf/$(basename "$f")"; done
if [ -n "$bin" ]; then
    "$bin" synth --shape tiny --layers 1 --type q4_k -o "$work/s.gguf" -q && head -c 65536 "$work/s.gguf" >"$work/gguf/synth"
    # whole tiny models: small enough for -max_len, so the evaluation paths are reached
    "$bin" synth --dim 64 --layers 1 --ffn 64 --heads 4 --vocab 300 --type q8_0 -o "$work/t.gguf" -q
    cp "$work/t.gguf" "$work/gguf/tiny-whole"
    for c in none lz4; do
        "$bin" convert "$work/t.gguf" "$work/t.$c.gguf" --compress $c >/dev/null 2>&1
        for flag in 0 1 2 9; do # checks off/on, mmap, budget
            { printf "\\x$(printf %02x $flag)"; cat "$work/t.$c.gguf"; } >"$work/flash/$c-$flag"
        done
    done
fi
status=0
run() { # target corpus max_len
    local name=$1 corpus=$2 max_len=$3
    echo "fuzz: $name for $secs s"
    if ! UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$build/tests/$name" -max_total_time="$secs" \
        -max_len="$max_len" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 "$corpus" >"$work/$name.log" 2>&1; then
        echo "fuzz: $name FOUND A PROBLEM:"; tail -40 "$work/$name.log"; status=1
    else
        grep -E "^stat::number_of_executed_units|^Done|cov:" "$work/$name.log" | tail -2
    fi
}
run fuzz_gguf "$work/gguf" 70000
run fuzz_model "$work/gguf" 140000
run fuzz_flash "$work/flash" 200000
exit $status
