#!/usr/bin/env bash
# cli_test.sh LLMFLASH SHARED_DIR - end-to-end tests of the llmflash command:
# golden outputs of the real models, stdout discipline, exit codes.
source "$(dirname "$0")/cli_lib.sh" "$@"

for m in stories260K stories260K-relu80 stories260K-relu64; do
    "$bin" run -m "$models/$m.gguf" -p "" -n 200 --temp 0 >"$tmp/$m.txt" 2>"$tmp/$m.err"
    check "golden $m (byte-identical stdout)" cmp -s "$tmp/$m.txt" "$models/$m.greedy200.txt"
    check "timings of $m on stderr" grep -q "ms/token" "$tmp/$m.err"
done
LLMFLASH_KERNELS=scalar "$bin" run -m "$models/stories260K.gguf" -p "" -n 200 --temp 0 -t 1 >"$tmp/scalar.txt" 2>/dev/null
check "golden with scalar kernels, 1 thread" cmp -s "$tmp/scalar.txt" "$models/stories260K.greedy200.txt"

# stdout is the prompt followed by the generated text
"$bin" run -m "$models/stories260K.gguf" -p "Once upon a time" -n 20 --temp 0 >"$tmp/p.txt" 2>/dev/null
check "stdout starts with the prompt" grep -q "^Once upon a time" "$tmp/p.txt"
check "greedy continuation of the prompt matches the golden text" \
    bash -c "head -c \$(stat -c %s '$tmp/p.txt') '$models/stories260K.greedy200.txt' | cmp -s - '$tmp/p.txt'"
"$bin" run -m "$models/stories260K.gguf" -p "Lily" -n 30 --temp 0.9 --seed 7 >"$tmp/s1.txt" 2>/dev/null
"$bin" run -m "$models/stories260K.gguf" -p "Lily" -n 30 --temp 0.9 --seed 7 >"$tmp/s2.txt" 2>/dev/null
check "sampling with a seed is reproducible" cmp -s "$tmp/s1.txt" "$tmp/s2.txt"

check "--help exits 0" "$bin" --help >/dev/null
check "run --help exits 0" "$bin" run --help >/dev/null
expect_exit "no command is a usage error" 2 "$bin"
expect_exit "unknown command" 2 "$bin" frobnicate
expect_exit "unknown flag" 2 "$bin" run -m "$models/stories260K.gguf" --bogus
expect_exit "missing model flag" 2 "$bin" run -p hi
expect_exit "bad number" 2 "$bin" run -m "$models/stories260K.gguf" -n abc
expect_exit "missing file is a runtime error" 1 "$bin" run -m "$tmp/nope.gguf"
head -c 5000 "$models/stories260K.gguf" >"$tmp/trunc.gguf"
expect_exit "truncated model" 1 "$bin" run -m "$tmp/trunc.gguf"
check "truncation is named" grep -qi "trunc\|past" "$tmp/err"
expect_exit "inspect of a non-GGUF" 1 "$bin" inspect "$0"

"$bin" inspect "$models/stories260K.gguf" >"$tmp/inspect.txt"
check "inspect shows hyperparameters" grep -q "heads: *8 (KV heads 4" "$tmp/inspect.txt"
check "inspect shows the tensor table" grep -q "blk.4.ffn_down.weight *F32 *\[172, 64\]" "$tmp/inspect.txt"
check "inspect shows bytes by class" grep -q "ffn *660480" "$tmp/inspect.txt"

"$bin" synth --shape tiny --type q4_k --layers 2 -o "$tmp/s.gguf" -q
check "synth writes a model that runs" bash -c "'$bin' run -m '$tmp/s.gguf' -p 'hello' -n 8 --temp 0 >/dev/null 2>&1"
expect_exit "synth refuses to overwrite" 1 "$bin" synth --shape tiny -o "$tmp/s.gguf" -q
expect_exit "synth unknown shape" 2 "$bin" synth --shape huge -o "$tmp/x.gguf"
expect_exit "synth unknown type" 2 "$bin" synth --type q3_k -o "$tmp/x.gguf"
check "no file left by failed synth" test ! -e "$tmp/x.gguf"
"$bin" synth --shape small --type f32 -o "$tmp/big.gguf" -q &
pid=$!
sleep 0.3
kill -INT $pid
wait $pid
rc=$?
check "interrupted synth fails" test "$rc" -ne 0
check "interrupted synth leaves no file" test ! -e "$tmp/big.gguf"
check "and no temporary file" bash -c "! ls -A '$tmp' | grep -q '^\.'"

finish
