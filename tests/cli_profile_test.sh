#!/usr/bin/env bash
# cli_profile_test.sh - profiling output: Chrome traces from run, bench,
# perplexity and chat, checked as Perfetto reads them (tests/check_trace.py).
#   usage: cli_profile_test.sh LLMFLASH SHARED_DIR
source "$(dirname "$0")/cli_lib.sh" "$@"
here=$(dirname "$0")
flash=$tmp/r80.flash.gguf
"$bin" convert "$models/stories260K-relu80.gguf" "$flash" >/dev/null 2>&1 || { echo "not ok - convert"; exit 1; }
spans="token attention ffn predictor io_submit io_wait ffn_compute read bytes_in_flight cache_bytes"

# run under a budget that holds part of the FFN: every kind of span and counter
"$bin" run -m "$flash" -p "Once upon a time" -n 24 --temp 0 --dram-budget 3M --trace "$tmp/run.json" \
    >"$tmp/out" 2>"$tmp/err"
check "run --trace exits 0" test $? -eq 0
check "run's trace is well formed, spans nest, every span kind is there" \
    /usr/bin/python3 "$here/check_trace.py" "$tmp/run.json" $spans batch
# the text is the same with and without a trace
"$bin" run -m "$flash" -p "Once upon a time" -n 24 --temp 0 --dram-budget 3M >"$tmp/plain" 2>/dev/null
check "a trace does not change the output" cmp -s "$tmp/out" "$tmp/plain"
# one span per layer and token: 5 layers, 24 tokens evaluated (a prompt batch, 23 generated)
n_attn=$(/usr/bin/python3 -c "import json,sys; print(sum(e['name']=='attention' for e in json.load(open(sys.argv[1]))['traceEvents']))" "$tmp/run.json")
check "one attention span per layer and evaluation (got $n_attn, want 5 x 24)" test "$n_attn" -eq 120

"$bin" bench -m "$flash" -n 8 --no-membw --trace "$tmp/bench.json" >/dev/null 2>"$tmp/err"
check "bench --trace" /usr/bin/python3 "$here/check_trace.py" "$tmp/bench.json" token attention ffn ffn_compute
"$bin" perplexity -m "$flash" -f "$shared/data/tinystories-valid-excerpt.txt" --chunk 64 --max-chunks 2 \
    --trace "$tmp/ppl.json" >/dev/null 2>"$tmp/err"
check "perplexity --trace" /usr/bin/python3 "$here/check_trace.py" "$tmp/ppl.json" token attention ffn
printf 'Hi\n' | "$bin" chat -m "$flash" --chat-template llama2 -n 4 --trace "$tmp/chat.json" >/dev/null 2>"$tmp/err"
check "chat --trace" /usr/bin/python3 "$here/check_trace.py" "$tmp/chat.json" attention ffn

# --stats JSON in every mode validates against the documented schema
schema=$here/../docs/stats-schema.json
"$bin" run -m "$flash" -p "Once upon a time" -n 16 --temp 0 --dram-budget 3M --measure-recall \
    --stats "$tmp/stream.json" >/dev/null 2>&1
"$bin" run -m "$flash" -p "Once" -n 8 --mode mmap --stats "$tmp/mmap.json" >/dev/null 2>&1
"$bin" run -m "$models/stories260K.gguf" -p "Once" -n 8 --stats "$tmp/ram.json" >/dev/null 2>&1
"$bin" perplexity -m "$flash" -f "$shared/data/tinystories-valid-excerpt.txt" --chunk 64 --max-chunks 1 \
    --stats "$tmp/pplstats.json" >/dev/null 2>&1
check "stats of stream, mmap, ram and perplexity runs validate against docs/stats-schema.json" \
    "$here/check_stats.py" "$schema" "$tmp/stream.json" "$tmp/mmap.json" "$tmp/ram.json" "$tmp/pplstats.json"
/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); del d['layers'][0]['reuse_hist']; d['cache_hit_rate']=2
json.dump(d, open(sys.argv[2], 'w'))" "$tmp/stream.json" "$tmp/broken.json"
"$here/check_stats.py" "$schema" "$tmp/broken.json" >"$tmp/out" 2>&1
check "the schema check fails a file missing a key or out of range" \
    bash -c "[ $? -ne 0 ] && grep -q reuse_hist '$tmp/out' && grep -q cache_hit_rate '$tmp/out'"
# every use of a unit lands in one reuse bucket; measured recall is the oracle's count
check "reuse histograms count every use, recall is reported with --measure-recall" /usr/bin/python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
for l in d['layers']:
    assert sum(l['reuse_hist']) == l['neurons_used'], l
    assert l['recall'] is not None and 0.99 <= l['recall'] <= 1.0, l
assert json.load(open(sys.argv[2]))['layers'] == []
" "$tmp/stream.json" "$tmp/ram.json"

# a trace that cannot be written fails the command, and leaves nothing
"$bin" run -m "$flash" -p "Once" -n 4 --trace "$tmp/no/such/dir/t.json" >/dev/null 2>"$tmp/err"
rc=$?
check "an unwritable trace path is exit 1 with a message" bash -c "[ $rc -eq 1 ] && grep -q 'cannot write the trace' '$tmp/err'"
# a failed run writes no trace
"$bin" run -m "$tmp/missing.gguf" -p "Once" --trace "$tmp/failed.json" >/dev/null 2>&1
check "a run that fails writes no trace" test ! -e "$tmp/failed.json"
finish
