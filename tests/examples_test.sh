#!/usr/bin/env bash
# examples_test.sh GENERATE ENGINE_HOOK LLMFLASH SHARED_DIR - the examples
# (built by meson from the public header and libllmflash alone) reproduce the
# golden greedy text: generate on the plain GGUF and on a flash file, the
# engine-hook example (its own attention, llmflash's FFN through lf_ffn_forward)
# on the flash file; and each reports a missing model as an error.
set -u
generate=$1
hook=$2
bin=$3
shared=$4
source "$(dirname "$0")/tap_lib.sh"
"$generate" "$tmp/missing.gguf" >/dev/null 2>"$tmp/err"
check "generate: a missing model is exit 1 with a message" test $? -eq 1 -a -s "$tmp/err"
"$hook" "$tmp/missing.gguf" >/dev/null 2>"$tmp/err"
check "engine_hook: a missing model is exit 1 with a message" test $? -eq 1 -a -s "$tmp/err"
models=$shared/models
if [ ! -f "$models/stories260K.gguf" ]; then
    if [ -n "${LF_REQUIRE_SHARED:-}" ]; then bad "$models is absent but LF_REQUIRE_SHARED is set"; fi
    echo "# skipped the golden runs: $models is absent"
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ] && exit 77
    exit 1
fi
golden=$models/stories260K.greedy200.txt
"$generate" "$models/stories260K.gguf" >"$tmp/g.txt" 2>"$tmp/err"
check "generate on stories260K prints the golden text" cmp -s "$tmp/g.txt" "$golden"
"$generate" "$models/stories260K.gguf" "Once upon a time" 20 >"$tmp/p.txt" 2>"$tmp/err"
check "generate with a prompt continues it as the golden text does" \
    bash -c "{ printf 'Once upon a time'; cat '$tmp/p.txt'; } >'$tmp/pf.txt'; head -c \$(stat -c %s '$tmp/pf.txt') '$golden' | cmp -s - '$tmp/pf.txt'"
"$bin" convert "$models/stories260K.gguf" "$tmp/f.gguf" >/dev/null 2>&1
"$generate" "$tmp/f.gguf" >"$tmp/gf.txt" 2>"$tmp/err"
check "generate on its flash file (stream mode) prints it too" cmp -s "$tmp/gf.txt" "$golden"
"$hook" "$tmp/f.gguf" >"$tmp/h.txt" 2>"$tmp/err"
check "engine_hook (own attention, lf_ffn_forward) reproduces the golden text" cmp -s "$tmp/h.txt" "$golden"
# under a budget whose neuron cache holds part of the FFN: the hook streams, the text stays
budget=$(( $("$bin" inspect "$tmp/f.gguf" | sed -n 's/^resident: *\([0-9.]*\) KiB.*/\1/p' | cut -d. -f1) * 1024 + (1200 << 10) ))
"$hook" "$tmp/f.gguf" 200 "$budget" >"$tmp/hb.txt" 2>"$tmp/err"
check "engine_hook under a DRAM budget of $budget bytes reproduces it too" cmp -s "$tmp/hb.txt" "$golden"
check "  and its FFN came partly from flash, partly from the cache" \
    grep -qE "FFN [1-9][0-9.]* KiB/token read from flash, [1-9][0-9.]* KiB/token from the cache" "$tmp/err"
"$hook" "$models/stories260K.gguf" >/dev/null 2>"$tmp/err"
check "engine_hook on a plain GGUF fails: there is no streamed FFN" test $? -eq 1
check "  and says so" grep -q "plain GGUF" "$tmp/err"
finish
