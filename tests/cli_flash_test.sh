#!/usr/bin/env bash
# cli_flash_test.sh LLMFLASH SHARED_DIR - end-to-end tests of flash files through
# the CLI: convert, verify, streaming modes under a budget, perplexity.
source "$(dirname "$0")/cli_lib.sh" "$@"

# flash files
"$bin" convert "$models/stories260K.gguf" "$tmp/f.gguf" --compress zstd >/dev/null 2>"$tmp/conv.err"
check "convert reports the compression ratio" grep -q "ratio" "$tmp/conv.err"
check "convert reports peak RSS" grep -q "peak RSS" "$tmp/conv.err"
check "convert prints plain progress lines off a terminal" grep -q "^convert: [0-9]*%" "$tmp/conv.err"
"$bin" run -m "$tmp/f.gguf" -p "" -n 200 --temp 0 >"$tmp/f.txt" 2>/dev/null
check "flash file reproduces the golden text" cmp -s "$tmp/f.txt" "$models/stories260K.greedy200.txt"
check "verify passes a good file" "$bin" verify "$tmp/f.gguf"
LLMFLASH_IO=pread "$bin" run -m "$tmp/f.gguf" -p "" -n 200 --temp 0 -v >"$tmp/fp.txt" 2>"$tmp/fp.err"
check "with io_uring unavailable the pread back-end takes over" grep -q "using the pread back-end" "$tmp/fp.err"
check "and the golden text still comes out" cmp -s "$tmp/fp.txt" "$models/stories260K.greedy200.txt"
"$bin" run -m "$tmp/f.gguf" -p "" -n 5 --temp 0 -v 2>"$tmp/fu.err" >/dev/null
if grep -q "io_uring unavailable" "$tmp/fu.err"; then
    echo "# skipped: io_uring is not available here (seccomp?), so the default back-end is pread"
else
    check "io_uring is the default back-end" grep -q "io_uring back-end" "$tmp/fu.err"
fi
"$bin" inspect "$tmp/f.gguf" --no-tensors >"$tmp/fi.txt"
check "inspect shows bytes per neuron" grep -q "bytes/neuron: *768" "$tmp/fi.txt"
check "inspect shows streamed bytes" grep -q "streamed:" "$tmp/fi.txt"
expect_exit "convert refuses to overwrite" 1 "$bin" convert "$models/stories260K.gguf" "$tmp/f.gguf"
expect_exit "convert bad bundle type" 2 "$bin" convert "$models/stories260K.gguf" "$tmp/g.gguf" --bundle-type q5_1
expect_exit "convert bad compression" 2 "$bin" convert "$models/stories260K.gguf" "$tmp/g.gguf" --compress gzip
expect_exit "convert q4_k on d_model 64" 1 "$bin" convert "$models/stories260K.gguf" "$tmp/g.gguf" --bundle-type q4_k
expect_exit "convert of a missing file" 1 "$bin" convert "$tmp/none.gguf" "$tmp/g.gguf"
check "no output from failed conversions" test ! -e "$tmp/g.gguf"
expect_exit "verify of a plain GGUF" 2 "$bin" verify "$models/stories260K.gguf"
cp "$tmp/f.gguf" "$tmp/bad.gguf"
off=$(( $(stat -c %s "$tmp/bad.gguf") - 20000 ))
printf '\xff\xff\xff\xff' | dd of="$tmp/bad.gguf" bs=1 seek=$off conv=notrunc status=none
expect_exit "verify finds a corrupted group" 1 "$bin" verify "$tmp/bad.gguf"
check "and names the layer and neurons" grep -q "layer [0-9]*, neurons [0-9]*-[0-9]*" "$tmp/err"
expect_exit "run refuses the corrupted file" 1 "$bin" run -m "$tmp/bad.gguf" -n 5
head -c $(( $(stat -c %s "$tmp/f.gguf") - 4096 )) "$tmp/f.gguf" >"$tmp/short.gguf"
expect_exit "a truncated flash file fails at open" 1 "$bin" run -m "$tmp/short.gguf" -n 5

# streaming under a budget
"$bin" run -m "$tmp/f.gguf" -p "" -n 200 --temp 0 --mode stream --dram-budget 3M --ctx 256 --window 3 \
    --stats "$tmp/st.json" >"$tmp/st.txt" 2>"$tmp/st.err"
check "stream mode under a budget reproduces the golden text" cmp -s "$tmp/st.txt" "$models/stories260K.greedy200.txt"
check "the traffic summary goes to stderr" grep -q "read from flash, .* served from DRAM" "$tmp/st.err"
check "the budget breakdown goes to stderr" grep -q "budget 3.00 MiB, planned" "$tmp/st.err"
check "--stats writes JSON with per-layer counters" grep -q '"layers"' "$tmp/st.json"
python3 -c "import json,sys; json.load(open('$tmp/st.json'))" 2>/dev/null
check "--stats JSON parses" test $? -eq 0
"$bin" convert "$models/stories260K.gguf" "$tmp/u.gguf" >/dev/null 2>&1
for mode in naive hybrid mmap; do
    "$bin" run -m "$tmp/u.gguf" -p "" -n 200 --temp 0 --mode $mode --ctx 256 >"$tmp/m.txt" 2>/dev/null
    check "$mode mode reproduces the golden text" cmp -s "$tmp/m.txt" "$models/stories260K.greedy200.txt"
done
"$bin" run -m "$tmp/f.gguf" -p "" -n 200 --temp 0 --predictor oracle --dram-budget 3M --ctx 256 >"$tmp/o.txt" 2>/dev/null
check "oracle predictor reproduces the golden text" cmp -s "$tmp/o.txt" "$models/stories260K.greedy200.txt"
expect_exit "a budget below the resident part" 1 "$bin" run -m "$tmp/f.gguf" --dram-budget 300K -n 5
check "says LF_E_BUDGET and what is needed" grep -q "LF_E_BUDGET.*\|needs .* bytes" "$tmp/err"
expect_exit "mmap mode on a compressed flash file" 1 "$bin" run -m "$tmp/f.gguf" --mode mmap -n 5
check "says it needs an uncompressed file" grep -q "uncompressed" "$tmp/err"
expect_exit "stream mode on a plain GGUF" 1 "$bin" run -m "$models/stories260K.gguf" --mode stream -n 5
check "says to convert" grep -q "convert .* first" "$tmp/err"
expect_exit "bad --mode" 2 "$bin" run -m "$tmp/f.gguf" --mode turbo
expect_exit "bad --predictor" 2 "$bin" run -m "$tmp/f.gguf" --predictor magic
expect_exit "bad --dram-budget" 2 "$bin" run -m "$tmp/f.gguf" --dram-budget lots

data=$shared/data/tinystories-valid-excerpt.txt
"$bin" convert "$models/stories260K.gguf" "$tmp/q8.gguf" --bundle-type q8_0 >/dev/null 2>&1
p_src=$("$bin" perplexity -m "$models/stories260K.gguf" -f "$data" -q | awk '/^perplexity/ {print $2}')
p_q8=$("$bin" perplexity -m "$tmp/q8.gguf" -f "$data" -q | awk '/^perplexity/ {print $2}')
echo "# perplexity: F32 source $p_src, q8_0 bundles $p_q8"
check "reference perplexity of stories260K is 6.76" awk -v p="$p_src" 'BEGIN { exit !(p > 6.755 && p < 6.775) }'
check "q8_0 bundles stay within 1% perplexity of the F32 source" awk -v a="$p_src" -v b="$p_q8" 'BEGIN { exit !(b < a * 1.01) }'

# sparsity predictors: calibrate a ReLU model, then run and perplexity find it
"$bin" convert "$models/stories260K-relu80.gguf" "$tmp/r80.gguf" >/dev/null 2>&1
expect_exit "--predictor predictor before calibrating" 1 "$bin" run -m "$tmp/r80.gguf" --predictor predictor -n 4
check "  says to calibrate first" grep -q "calibrate the model first" "$tmp/err"
expect_exit "bad --predictor" 2 "$bin" run -m "$tmp/r80.gguf" --predictor magic -n 4
"$bin" calibrate -m "$tmp/r80.gguf" -f "$data" >"$tmp/cal.out" 2>"$tmp/cal.err"
check "calibrate succeeds" test $? -eq 0
check "  reports per-layer recall and density on held-out tokens" grep -q "^layer   5/5: recall 0\.99" "$tmp/cal.err"
check "  and writes MODEL.predictor" test -s "$tmp/r80.gguf.predictor"
expect_exit "calibrate refuses to overwrite it" 1 "$bin" calibrate -m "$tmp/r80.gguf" -f "$data"
expect_exit "calibrate with a recall above 1" 2 "$bin" calibrate -m "$tmp/r80.gguf" -f "$data" --recall 1.5 -o "$tmp/x.pred"
expect_exit "calibrate of a plain GGUF" 2 "$bin" calibrate -m "$models/stories260K.gguf" -f "$data" -o "$tmp/x.pred"
check "  says to convert it" grep -q "plain GGUF" "$tmp/err"
check "  and writes nothing" test ! -e "$tmp/x.pred"
for p in all auto; do
    "$bin" run -m "$tmp/r80.gguf" -p "" -n 60 --temp 0 --mode naive --predictor $p --stats "$tmp/pr_$p.json" \
        >"$tmp/pr_$p.txt" 2>/dev/null
done
check "run --predictor auto finds the predictor" grep -q '"mask": "predictor"' "$tmp/pr_auto.json"
python3 - "$tmp/pr_all.json" "$tmp/pr_auto.json" <<'PY' >"$tmp/pr.py" 2>&1
import json, sys
a, p = (json.load(open(f)) for f in sys.argv[1:3])
def j_ok(j): return j['schema_version'] == 2
ratio = p['ffn_bytes_read'] / a['ffn_bytes_read']
density = p['neurons_used'] / a['neurons_used']
assert ratio < 0.5 and abs(ratio - density) < 0.02, (ratio, density)
assert p['mask_ms'] > 0 and p['mask_ms'] < p['compute_ms'], 'the predictor time is in the stats'
assert j_ok(a) and j_ok(p)
print('ok', ratio, density)
PY
check "  and reads fewer flash bytes per token than --predictor all, by the density it reports" grep -q "^ok" "$tmp/pr.py"
check "  with the same text as the dense run's first 60 tokens" cmp -s "$tmp/pr_auto.txt" "$tmp/pr_all.txt"
"$bin" run -m "$tmp/r80.gguf" -p "" -n 40 --temp 0 --measure-recall --stats "$tmp/mr.json" >/dev/null 2>&1
python3 - "$tmp/mr.json" <<'PY' >"$tmp/mr.py" 2>&1
import json, sys
j = json.load(open(sys.argv[1]))
want = sum(l['oracle_units'] for l in j['layers'])
missed = sum(l['false_negatives'] for l in j['layers'])
assert want > 0 and 0 <= missed <= want * 0.05, (want, missed)
print('ok', missed, 'of', want)
PY
check "--measure-recall counts per layer the oracle's units the predictor skipped (recall >= 0.95)" grep -q "^ok" "$tmp/mr.py"
"$bin" perplexity -m "$tmp/r80.gguf" -f "$data" --max-chunks 4 -q >"$tmp/ppl.txt"
check "perplexity reports the FFN density the predictor let through" grep -q "^FFN density 0\.[0-4].*(predictor mask)" "$tmp/ppl.txt"

# perplexity's view of the mask and the activations, on the terminal and in --stats
"$bin" perplexity -m "$tmp/r80.gguf" -f "$data" --max-chunks 2 -q --predictor all --measure-recall \
    --stats "$tmp/pq.json" >"$tmp/pq.txt"
check "perplexity --measure-recall prints each layer's oracle density, hot share and 5-token union" \
    bash -c "grep -q '^layer  oracle density  false negatives  hot-20% share  5-token union' '$tmp/pq.txt' && \
             [ \$(grep -c '^ *[0-4]  ' '$tmp/pq.txt') -eq 5 ]"
python3 - "$tmp/pq.json" <<'PY' >"$tmp/pq.py" 2>&1
import json, sys
j = json.load(open(sys.argv[1]))
for l in j['layers']:
    assert l['oracle_tokens'] > 0 and 0 < l['oracle_token_units'] <= l['oracle_window_units'], l
    assert 0.2 <= l['oracle_hot_share'] <= 1.0 and l['false_negatives'] == 0, l
print('ok')
PY
check "  and perplexity --stats writes them per layer (mask all misses nothing)" grep -q "^ok" "$tmp/pq.py"

# calibrate --lookahead and --reorder: the placed copy and both predictors
"$bin" calibrate -m "$tmp/r80.gguf" -f "$data" --tokens 1500 --lookahead --reorder "$tmp/r80p.gguf" --force -q \
    2>"$tmp/cal.err"
check "calibrate --lookahead reports the lookahead's held-out recall" grep -q "^lookahead (layers 2 on): recall 0\.[89]" "$tmp/cal.err"
check "calibrate --reorder writes the placed copy and a predictor for each model" \
    test -s "$tmp/r80p.gguf" -a -s "$tmp/r80p.gguf.predictor" -a -s "$tmp/r80.gguf.predictor"
"$bin" run -m "$tmp/r80p.gguf" -p "" -n 40 --temp 0 >"$tmp/placed.txt" 2>/dev/null
"$bin" run -m "$tmp/r80.gguf" -p "" -n 40 --temp 0 >"$tmp/unplaced.txt" 2>/dev/null
check "  and the placed copy generates the same text" cmp -s "$tmp/placed.txt" "$tmp/unplaced.txt"
expect_exit "calibrate --lookahead-recall without --lookahead is a usage error" 2 \
    "$bin" calibrate -m "$tmp/r80.gguf" -f "$data" --lookahead-recall 0.9 -o "$tmp/never.predictor"
check "  that writes nothing" test ! -e "$tmp/never.predictor"

# synth's realistic activations: the design's prediction, and knobs out of reach refused
"$bin" synth --shape tiny-relu -o "$tmp/tr.gguf" 2>"$tmp/tr.err"
check "synth --shape tiny-relu prints the activity it was built for" grep -q "activity by design.*density 0\.0" "$tmp/tr.err"
expect_exit "synth --temporal out of reach is a usage error with the reachable range" 2 \
    "$bin" synth --shape tiny --sparsity 0.95 --temporal 4.9 -o "$tmp/never.gguf"
check "  that names the range and writes nothing" bash -c "grep -q 'times one token' '$tmp/err' && test ! -e '$tmp/never.gguf'"

# a conversion killed midway leaves nothing behind
# (killed once its progress shows a tenth done: a fixed delay raced a fast machine)
"$bin" synth --shape small --vocab 1000 --layers 12 --type f16 -o "$tmp/mid.gguf" -q
for sig in INT KILL; do
    "$bin" convert "$tmp/mid.gguf" "$tmp/mid.flash.gguf" --compress zstd:5 2>"$tmp/mid.err" &
    pid=$!
    for _ in $(seq 200); do grep -q '^convert: [1-9]' "$tmp/mid.err" 2>/dev/null && break; sleep 0.01; done
    kill -$sig $pid 2>/dev/null
    wait $pid
    rc=$?
    check "convert killed by SIG$sig exits non-zero" test "$rc" -ne 0
    check "convert killed by SIG$sig leaves no output" test ! -e "$tmp/mid.flash.gguf"
    check "convert killed by SIG$sig leaves no temporary file" bash -c "! ls -A '$tmp' | grep -q 'tmp'"
done

finish
