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
    python3 "$here/check_trace.py" "$tmp/run.json" $spans batch
# the text is the same with and without a trace
"$bin" run -m "$flash" -p "Once upon a time" -n 24 --temp 0 --dram-budget 3M >"$tmp/plain" 2>/dev/null
check "a trace does not change the output" cmp -s "$tmp/out" "$tmp/plain"
# one span per layer and token: 5 layers, 24 tokens evaluated (a prompt batch, 23 generated)
n_attn=$(python3 -c "import json,sys; print(sum(e['name']=='attention' for e in json.load(open(sys.argv[1]))['traceEvents']))" "$tmp/run.json")
check "one attention span per layer and evaluation (got $n_attn, want 5 x 24)" test "$n_attn" -eq 120

"$bin" bench -m "$flash" -n 8 --no-membw --trace "$tmp/bench.json" >/dev/null 2>"$tmp/err"
check "bench --trace" python3 "$here/check_trace.py" "$tmp/bench.json" token attention ffn ffn_compute
"$bin" perplexity -m "$flash" -f "$shared/data/tinystories-valid-excerpt.txt" --chunk 64 --max-chunks 2 \
    --trace "$tmp/ppl.json" >/dev/null 2>"$tmp/err"
check "perplexity --trace" python3 "$here/check_trace.py" "$tmp/ppl.json" token attention ffn
printf 'Hi\n' | "$bin" chat -m "$flash" --chat-template llama2 -n 4 --trace "$tmp/chat.json" >/dev/null 2>"$tmp/err"
check "chat --trace" python3 "$here/check_trace.py" "$tmp/chat.json" attention ffn

# a trace that cannot be written fails the command, and leaves nothing
"$bin" run -m "$flash" -p "Once" -n 4 --trace "$tmp/no/such/dir/t.json" >/dev/null 2>"$tmp/err"
rc=$?
check "an unwritable trace path is exit 1 with a message" bash -c "[ $rc -eq 1 ] && grep -q 'cannot write the trace' '$tmp/err'"
# a failed run writes no trace
"$bin" run -m "$tmp/missing.gguf" -p "Once" --trace "$tmp/failed.json" >/dev/null 2>&1
check "a run that fails writes no trace" test ! -e "$tmp/failed.json"
finish
