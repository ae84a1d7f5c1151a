#!/usr/bin/env bash
# run_fuzz.sh SECONDS [LLMFLASH] - builds the GGUF fuzz target with clang's
# libFuzzer (ASan + UBSan) and runs it for SECONDS on a seed corpus of real
# and synthetic GGUF files. Exits 77 (skipped) when clang cannot build it.
set -euo pipefail
secs=${1:-60}
bin=${2:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! command -v clang >/dev/null; then echo "fuzz: clang not found, skipped"; exit 77; fi
srcs=("$root/tests/fuzz/fuzz_gguf.c" "$root/src/gguf/gguf_reader.c" "$root/src/gguf/gguf_writer.c"
      "$root/src/common/status.c" "$root/src/common/util.c" "$root/src/tensor/quant_types.c")
if ! clang -std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/include" "${srcs[@]}" -o "$work/fuzz_gguf" 2>"$work/build.log"; then
    cat "$work/build.log"
    echo "fuzz: clang could not build a libFuzzer target (install clang and libclang-rt-dev)"
    exit 1
fi
mkdir -p "$work/corpus"
shared=$root/../shared/models
for f in "$shared"/stories260K*.gguf; do [ -f "$f" ] && head -c 65536 "$f" >"$work/corpus/$(basename "$f")"; done
if [ -n "$bin" ]; then
    "$bin" synth --shape tiny --layers 1 --type q4_k -o "$work/s.gguf" -q && head -c 65536 "$work/s.gguf" >"$work/corpus/synth"
fi
# -max_len covers whole headers of the tiny models; rss limit keeps it polite
"$work/fuzz_gguf" -max_total_time="$secs" -max_len=70000 -rss_limit_mb=2048 -print_final_stats=1 \
    "$work/corpus" 2>&1 | tail -15
