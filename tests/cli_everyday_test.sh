#!/usr/bin/env bash
# cli_everyday_test.sh LLMFLASH SHARED_DIR - the CLI against hostile files and
# wrong flags (clear errors, never a hang, a crash or exit 0 with a wrong
# answer), and the habits a llama.cpp user brings (-f, -p -, -n -1, seeds,
# context limits, stats).
source "$(dirname "$0")/cli_lib.sh" "$@"
m260=$models/stories260K.gguf
golden=$models/stories260K.greedy200.txt

# --- files that are not models ----------------------------------------------
mkfifo "$tmp/fifo"
for cmd in "run -m" "inspect" "verify" "perplexity -f $shared/data/tinystories-valid-excerpt.txt -m"; do
    expect_exit "$cmd on a FIFO fails at once" 1 timeout 10 "$bin" $cmd "$tmp/fifo"
    check "  and says it is a FIFO" grep -q "FIFO" "$tmp/err"
done
expect_exit "run on a directory" 1 "$bin" run -m "$tmp"
check "  says directory" grep -q "directory" "$tmp/err"
expect_exit "iobench on a directory" 1 "$bin" iobench "$tmp"
check "  says directory" grep -q "directory" "$tmp/err"
cp "$m260" "$tmp/in.gguf"
expect_exit "convert --force does not replace a FIFO" 1 "$bin" convert "$tmp/in.gguf" "$tmp/fifo" --force
check "  the FIFO is still a FIFO" test -p "$tmp/fifo"
ln -s "$tmp/in.gguf" "$tmp/link.gguf"
expect_exit "convert --force does not replace a symlink" 1 "$bin" convert "$m260" "$tmp/link.gguf" --force
check "  the link still points at its file" cmp -s "$tmp/link.gguf" "$m260"

# a byte-fallback piece with a sign: "<0x0D>" becomes "<0x-D>" (same length,
# so the header still parses); it once indexed byte_tokens[-13]
python3 - "$m260" "$tmp/neg.gguf" <<'PY'
import sys
d = open(sys.argv[1], 'rb').read()
assert d.count(b'<0x0D>') == 1
open(sys.argv[2], 'wb').write(d.replace(b'<0x0D>', b'<0x-D>'))
PY
for cmd in run inspect; do
    if [ $cmd = run ]; then "$bin" run -m "$tmp/neg.gguf" -n 8 --temp 0 >"$tmp/out" 2>"$tmp/err"; else "$bin" inspect "$tmp/neg.gguf" >"$tmp/out" 2>"$tmp/err"; fi
    rc=$?
    check "$cmd survives a '<0x-D>' piece (exit $rc, no signal)" test "$rc" -lt 128
done
"$bin" perplexity -m "$tmp/neg.gguf" -f "$shared/data/tinystories-valid-excerpt.txt" --max-chunks 1 -q >/dev/null 2>&1
check "perplexity survives it too" test $? -lt 128

# --- flags ------------------------------------------------------------------
expect_exit "-t 999 is refused" 2 "$bin" run -m "$m260" -t 999 -n 1
check "  with the core count in the message" grep -q "cores" "$tmp/err"
expect_exit "-t 100000 is refused with a real message" 2 "$bin" run -m "$m260" -t 100000 -n 1
check "  the same message" grep -q "out of range" "$tmp/err"
expect_exit "--dram-budget 0.5 rounds to 0: refused" 2 "$bin" run -m "$m260" --dram-budget 0.5 -n 1
check "  says it rounds to 0" grep -q "rounds to 0" "$tmp/err"
expect_exit "a budget on a plain GGUF is refused, not ignored" 1 "$bin" run -m "$m260" --dram-budget 1G -n 1
check "  and says to convert first" grep -q "convert it to a flash file first" "$tmp/err"
long=$(printf 'the cat sat on the mat %.0s' $(seq 40))
start=$(date +%s)
expect_exit "a prompt longer than the context fails up front" 1 "$bin" run -m "$m260" -c 16 -p "$long" -n 4
check "  at once, naming the context" grep -q "context holds 16" "$tmp/err"
check "  and before any evaluation" test $(( $(date +%s) - start )) -lt 10
expect_exit "perplexity of a directory" 1 "$bin" perplexity -m "$m260" -f "$tmp"
: >"$tmp/empty.txt"
expect_exit "perplexity of an empty file" 1 "$bin" perplexity -m "$m260" -f "$tmp/empty.txt"
check "  never prints nan" bash -c "! grep -qi nan '$tmp/out'"
expect_exit "--stats to a path that cannot be written" 1 "$bin" run -m "$m260" -n 4 --temp 0 --stats /nonexistent/dir/s.json
check "  names the path" grep -q "/nonexistent/dir/s.json" "$tmp/err"
"$bin" run -m "$m260" -n 4 --temp 0 --ctx 4096 >/dev/null 2>"$tmp/err"
check "--ctx above the trained context warns" grep -q "longer than the .* the model was trained on" "$tmp/err"
expect_exit "-p and -f together" 2 "$bin" run -m "$m260" -p hi -f "$tmp/empty.txt"
expect_exit "bad --activation" 2 "$bin" run -m "$m260" --activation gelu
expect_exit "bad --cache-type" 2 "$bin" run -m "$m260" --cache-type q4_0
expect_exit "a q8_0 KV cache on heads of 8 values" 1 "$bin" run -m "$m260" -n 4 --cache-type q8_0
check "  says why and what to use" grep -q "multiple of 32.*F16" "$tmp/err"

# --- habits -----------------------------------------------------------------
printf 'Once upon a time' >"$tmp/prompt.txt"
"$bin" run -m "$m260" -f "$tmp/prompt.txt" -n 20 --temp 0 >"$tmp/f.txt" 2>/dev/null
"$bin" run -m "$m260" -p "Once upon a time" -n 20 --temp 0 >"$tmp/p.txt" 2>/dev/null
check "-f FILE gives the same text as -p" cmp -s "$tmp/f.txt" "$tmp/p.txt"
printf 'Once upon a time' | "$bin" run -m "$m260" -p - -n 20 --temp 0 >"$tmp/s.txt" 2>/dev/null
check "-p - reads the prompt from stdin" cmp -s "$tmp/s.txt" "$tmp/p.txt"
"$bin" run -m "$m260" -n -1 -c 64 --temp 0 >"$tmp/all.txt" 2>"$tmp/all.err"
check "-n -1 runs until EOS or the full context, exit 0" test $? -eq 0
check "  and says which" grep -q "stopped at EOS\|context of 64 tokens is full" "$tmp/all.err"
"$bin" run -m "$m260" -n 500 -c 32 --temp 0 --ignore-eos >"$tmp/ctx.txt" 2>"$tmp/ctx.err"
check "a run that fills the context stops cleanly with exit 0" test $? -eq 0
check "  with a warning" grep -q "warning: the context of 32 tokens is full" "$tmp/ctx.err"
check "  after the text the context held" bash -c "head -c \$(stat -c %s '$tmp/ctx.txt') '$golden' | cmp -s - '$tmp/ctx.txt'"
"$bin" run -m "$m260" -n 300 --temp 0 --ignore-eos -c 512 >"$tmp/ie.txt" 2>"$tmp/ie.err"
check "--ignore-eos generates all 300 tokens" grep -q "generated 300 tokens" "$tmp/ie.err"
"$bin" run -m "$m260" -n 8 -v >/dev/null 2>"$tmp/seed.err"
seed=$(sed -n 's/^llmflash: seed \([0-9]*\) (from the clock)$/\1/p' "$tmp/seed.err")
check "-v prints the seed it picked" test -n "$seed"
"$bin" run -m "$m260" -n 30 -p Lily --seed "$seed" >"$tmp/r1.txt" 2>/dev/null
"$bin" run -m "$m260" -n 30 -p Lily --seed "$seed" >"$tmp/r2.txt" 2>/dev/null
check "  and that seed reproduces a run" cmp -s "$tmp/r1.txt" "$tmp/r2.txt"
"$bin" run -m "$m260" -n 1 --temp 0 >/dev/null 2>"$tmp/n1.err"
check "-n 1 reports no made-up generation speed" grep -q "none evaluated after the prompt" "$tmp/n1.err"
check "  and no tokens/s" bash -c "! grep -q 'tokens/s' '$tmp/n1.err'"
if command -v script >/dev/null; then
    script -qec "'$bin' run -m '$m260' -n 5 --temp 0 2>/dev/null" /dev/null >"$tmp/tty.txt"
    check "on a terminal stdout ends with a newline" bash -c "tail -c 2 '$tmp/tty.txt' | grep -q \$'\\n'"
fi
"$bin" run -m "$m260" -n 5 --temp 0 >"$tmp/pipe.txt" 2>/dev/null
check "  but a pipe gets exactly the text" bash -c "[ \"\$(tail -c 1 '$tmp/pipe.txt' | od -An -c | tr -d ' ')\" != '\\n' ]"
"$bin" run -m "$m260" -n 40 --temp 0 --repeat-penalty 1.3 >"$tmp/rp.txt" 2>/dev/null
check "--repeat-penalty changes the greedy text" bash -c "! cmp -s '$tmp/rp.txt' <(head -c \$(stat -c %s '$tmp/rp.txt') '$golden')"
"$bin" run -m "$m260" -n 40 --temp 0.8 --min-p 1 --seed 3 >"$tmp/mp.txt" 2>/dev/null
check "--min-p 1 keeps only the top token: greedy" bash -c "head -c \$(stat -c %s '$tmp/mp.txt') '$golden' | cmp -s - '$tmp/mp.txt'"
for ct in f16 f32; do
    "$bin" run -m "$m260" -n 200 --temp 0 --cache-type $ct >"$tmp/kv.txt" 2>/dev/null
    check "golden text with a $ct KV cache" cmp -s "$tmp/kv.txt" "$golden"
done

# --- activation for ReLU models without our key ------------------------------
relu=$models/stories260K-relu80.gguf
python3 - "$relu" "$tmp/nokey.gguf" <<'PY'
import sys
d = open(sys.argv[1], 'rb').read()
assert d.count(b'llmflash.ffn_activation') == 1
open(sys.argv[2], 'wb').write(d.replace(b'llmflash.ffn_activation', b'llmflash.ffn_activatioX'))
PY
"$bin" run -m "$tmp/nokey.gguf" -n 200 --temp 0 >"$tmp/nk.txt" 2>/dev/null
check "without the key a ReLU model runs as SiLU (not its text)" bash -c "! cmp -s '$tmp/nk.txt' '$models/stories260K-relu80.greedy200.txt'"
"$bin" run -m "$tmp/nokey.gguf" -n 200 --temp 0 --activation relu >"$tmp/nk.txt" 2>/dev/null
check "--activation relu reproduces relu80's golden text" cmp -s "$tmp/nk.txt" "$models/stories260K-relu80.greedy200.txt"
"$bin" convert "$tmp/nokey.gguf" "$tmp/nokey.flash.gguf" --activation relu >/dev/null 2>&1
"$bin" run -m "$tmp/nokey.flash.gguf" -n 200 --temp 0 >"$tmp/nkf.txt" 2>/dev/null
check "convert --activation records it: the flash file runs right without the flag" \
    cmp -s "$tmp/nkf.txt" "$models/stories260K-relu80.greedy200.txt"

# --- stats ------------------------------------------------------------------
"$bin" convert "$m260" "$tmp/fl.gguf" >/dev/null 2>&1
"$bin" run -m "$tmp/fl.gguf" -p "Once upon a time" -n 20 --temp 0 --dram-budget 3M --ctx 256 --stats - >"$tmp/st.out" 2>/dev/null
python3 - "$tmp/st.out" <<'PY' >"$tmp/st.py" 2>&1
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index('\n{') + 1:])
assert j['schema_version'] == 2, j['schema_version']
assert j['model']['n_params'] > 0 and j['params']['mode'] == 'stream' and j['params']['kv_type'] == 'f16'
assert j['prompt']['tokens'] >= 2 and j['generation']['tokens'] == 19, (j['prompt'], j['generation'])
assert j['tokens'] == j['prompt']['tokens'] + j['generation']['tokens']
assert all(' ' not in k for k in j['budget']), j['budget']
def keys(o):
    if isinstance(o, dict):
        for k, v in o.items():
            assert ' ' not in k, k
            keys(v)
    elif isinstance(o, list):
        for v in o: keys(v)
keys(j)
print('ok')
PY
check "--stats - writes schema-versioned JSON to stdout: model, params, prompt/generation split, keys without spaces" \
    grep -q '^ok$' "$tmp/st.py" || cat "$tmp/st.py"
# a model larger than the header reader's first 1 MiB, with its page cache dropped
"$bin" synth --shape tiny --type f32 -o "$tmp/mm.src.gguf" -q
"$bin" convert "$tmp/mm.src.gguf" "$tmp/mm.gguf" >/dev/null 2>&1
python3 -c "import os; fd = os.open('$tmp/mm.gguf', os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)"
"$bin" run -m "$tmp/mm.gguf" --mode mmap -n 4 --temp 0 --no-verify --stats "$tmp/mm.json" >/dev/null 2>&1
python3 -c "import json,sys; j=json.load(open('$tmp/mm.json')); sys.exit(0 if j['device_read_bytes'] > 0 and 'major_faults' in j else 1)"
check "mmap mode reports the bytes read from the device (and major faults) after the page cache is dropped" test $? -eq 0
"$bin" inspect "$tmp/fl.gguf" --no-tensors >"$tmp/ins.txt"
check "inspect of a flash file reports the model's 292800 parameters, not its bundle bytes" grep -q "^parameters: *292800 " "$tmp/ins.txt"
"$bin" perplexity -m "$tmp/fl.gguf" -f "$shared/data/tinystories-valid-excerpt.txt" --max-chunks 2 --mode stream \
    --dram-budget 3M >"$tmp/pp.txt" 2>"$tmp/pp.err"
check "perplexity takes --mode and --dram-budget" grep -q "^perplexity [0-9.]*" "$tmp/pp.txt"
check "  and shows progress" grep -q "chunk 2 of 2" "$tmp/pp.err"
"$bin" bench -m "$tmp/fl.gguf" -n 4 --dram-budget 3M --no-membw >"$tmp/b.txt" 2>&1
check "bench takes --mode and --dram-budget" grep -q "under a DRAM budget" "$tmp/b.txt"

# --- tokenize: any GGUF with a tokenizer, vocab-only files included --------
v3=$shared/vocab/ggml-vocab-llama3.gguf
"$bin" tokenize -m "$v3" -p " Hello world" --ids --no-bos >"$tmp/out" 2>"$tmp/err"
check "tokenize --ids --no-bos on Llama 3's vocab" test "$(cat "$tmp/out")" = "22691 1917"
"$bin" tokenize -m "$v3" -p "Hi" --ids >"$tmp/out" 2>"$tmp/err"
check "  BOS from add_bos_token" test "$(cat "$tmp/out")" = "128000 13347"
"$bin" tokenize -m "$v3" -p $'a\tb' --no-bos >"$tmp/out" 2>"$tmp/err"
check "  one 'id<TAB>piece' line per token, pieces escaped" grep -qxF $'2282\t\\tb' "$tmp/out"
"$bin" tokenize -m "$v3" -p "<|eot_id|>" --ids --no-bos --special >"$tmp/out" 2>"$tmp/err"
check "  --special parses control tokens" test "$(cat "$tmp/out")" = "128009"
"$bin" tokenize -m "$v3" -p "<|eot_id|>" --ids --no-bos >"$tmp/out" 2>"$tmp/err"
check "  without it they are text" test "$(wc -w <"$tmp/out")" -gt 1
printf 'Hello world' >"$tmp/text.txt"
"$bin" tokenize -m "$shared/vocab/ggml-vocab-qwen3.gguf" -f "$tmp/text.txt" --ids >"$tmp/out" 2>"$tmp/err"
check "  -f FILE, and Qwen adds no BOS" test "$(cat "$tmp/out")" = "9707 1879"
expect_exit "tokenize without a text" 2 "$bin" tokenize -m "$v3"
expect_exit "tokenize with -p and -f" 2 "$bin" tokenize -m "$v3" -p x -f "$tmp/text.txt"
expect_exit "tokenize of a file that is not GGUF" 1 "$bin" tokenize -m "$tmp/text.txt" -p x
expect_exit "tokenize of a missing -f file" 1 "$bin" tokenize -m "$v3" -f "$tmp/nope.txt"

# --- inspect describes any GGUF; only the commands that compute refuse -------
"$bin" inspect "$shared/vocab/ggml-vocab-gpt-2.gguf" >"$tmp/out" 2>"$tmp/err"
check "inspect of a GPT-2 vocabulary (another architecture) succeeds" test $? -eq 0
check "  names the architecture and why it cannot run" grep -q 'runs here:.*gpt2' "$tmp/out"
check "  describes its tokenizer" grep -q 'tokenizer: *50257 tokens' "$tmp/out"
check "  lists its metadata" grep -q 'tokenizer.ggml.pre' "$tmp/out"
expect_exit "run on it refuses" 1 "$bin" run -m "$shared/vocab/ggml-vocab-gpt-2.gguf" -p hi -n 1
check "  naming the architecture" grep -q "gpt2" "$tmp/err"

finish
