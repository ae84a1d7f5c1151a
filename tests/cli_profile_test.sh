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
"$bin" run -m "$flash" -p "Once upon a time" -n 16 --temp 0 --dram-budget 3500K --measure-recall \
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

# the device file, the bench suite end to end on a small sparse model, and every plot
"$bin" iobench "$flash" --device-json "$tmp/dev.json" --seconds 0.05 --name "this machine" >/dev/null 2>"$tmp/err"
check "iobench --device-json writes a device file of 48 measurements (8 sizes x 6 depths)" /usr/bin/python3 -c "
import json, sys; d = json.load(open(sys.argv[1])); assert len(d['reads']) == 48 and d['dram_read_gb_s'] > 0, d" "$tmp/dev.json"
sq=$tmp/sq.gguf
"$bin" synth --dim 512 --layers 4 --ffn 4096 --heads 8 --act relu --sparsity 0.9 --type q8_0 \
    --tokenizer-from "$models/stories260K.gguf" -q -f -o "$sq" >/dev/null 2>&1 &&
    "$bin" convert "$sq" "$tmp/sq.flash.gguf" >/dev/null 2>&1 &&
    "$bin" calibrate -m "$tmp/sq.flash.gguf" -f "$shared/data/tinystories-valid-excerpt.txt" --tokens 300 -q >/dev/null 2>&1
check "a small sparse model to bench (synth, convert, calibrate)" test -f "$tmp/sq.flash.gguf.predictor"
# a budget of the whole file: this model's fixed parts (I/O buffers sized for 7B layers) need over half of it.
# Under a sanitizer the shadow memory is in no budget, so no cgroup there (the cgroup suite is skipped too).
cgroup=()
ldd "$bin" 2>/dev/null | grep -q 'lib[at]san' && cgroup=(--no-cgroup)
"$here/../scripts/bench" "$bin" "$tmp/sq.flash.gguf" --cap 1.0 --tokens 6 --repeat 2 --windows 1,5 --budgets 0.9,1.0 "${cgroup[@]}" \
    --device "$tmp/dev.json" --json "$tmp/suite.json" >"$tmp/table" 2>"$tmp/err"
check "scripts/bench runs the suite, prints its table and writes JSON" bash -c "grep -q '+bundling' '$tmp/table' && test -s '$tmp/suite.json'"
check "every ablation and sweep row ran twice, with ms/token, bytes, hit rate and a lower bound" /usr/bin/python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
names = [r['name'] for r in d['rows']]
for want in ['mmap', 'naive', 'hybrid', '+predictor', '+window', '+bundling', '+lookahead', 'window 1', 'window 5', 'budget 0.90', 'budget 1.00']:
    assert want in names, (want, names)
for r in d['rows']:
    assert not r['error'] and len(r['runs']) == 2 and r['ms_per_token'] > 0, r
    if r['name'] != 'mmap':
        assert 0 <= r['cache_hit_rate'] <= 1 and r['lower_bound_ms'] > 0 and r['flash_bytes_per_token'] > 0, r
        # the bound counts the device's bytes: the units read plus the gaps their merged reads span
        assert r['device_bytes_per_token'] >= r['flash_bytes_per_token'], r
w = {r['window']: r['cache_hit_rate'] for r in d['rows'] if r['group'] == 'window'}
assert w[5] >= w[1], w  # a longer window keeps more of what the next token needs
" "$tmp/suite.json"
# --device measure: the device measured before each round, each run bounded by its own round's figures
"$here/../scripts/bench" "$bin" "$tmp/sq.flash.gguf" --cap 1.0 --tokens 4 --repeat 2 --no-sweeps "${cgroup[@]}" \
    --device measure --device-seconds 0.02 --json "$tmp/suite-measured.json" >/dev/null 2>"$tmp/err"
check "scripts/bench --device measure: one device file per round, and a bound for every streamed row" /usr/bin/python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
assert d['device'] == 'measured before each round' and len(d['devices']) == 2, d.get('devices')
assert all(len(dev['reads']) == 48 for dev in d['devices'])
for r in d['rows']:
    assert not r['error'], r
    if r['name'] != 'mmap':
        assert r['lower_bound_ms'] > 0 and len(r['runs']) == 2, r
" "$tmp/suite-measured.json"
check "scripts/bench --device measure refuses a non-positive --device-seconds, and names it" bash -c \
    "! '$here/../scripts/bench' '$bin' '$tmp/sq.flash.gguf' --device measure --device-seconds 0 >/dev/null 2>'$tmp/err' &&
     grep -q -- '--device-seconds must be positive' '$tmp/err'"
check "scripts/bench names a device file it cannot read" bash -c \
    "! '$here/../scripts/bench' '$bin' '$tmp/sq.flash.gguf' --device '$tmp/no-such-device.json' >/dev/null 2>'$tmp/err' &&
     grep -q 'cannot read the device file .*no-such-device.json' '$tmp/err' && ! grep -q Traceback '$tmp/err'"
echo '{"name": "x"}' >"$tmp/not-a-device.json"
check "scripts/bench refuses a JSON file that is not a device file" bash -c \
    "! '$here/../scripts/bench' '$bin' '$tmp/sq.flash.gguf' --device '$tmp/not-a-device.json' >/dev/null 2>'$tmp/err' &&
     grep -q 'is not a device file' '$tmp/err'"
# a mixture of experts: its own rows (the router's experts, the hot set, the next router's lookahead)
mq=$tmp/mq.gguf
"$bin" synth --shape tiny-qwen3moe --dim 512 --layers 4 --ffn 256 --experts 32 --experts-used 4 --routing-skew 1.5 \
    -q -f -o "$mq" >/dev/null 2>&1 &&
    "$bin" convert "$mq" "$tmp/mq.flash.gguf" >/dev/null 2>&1 &&
    "$bin" calibrate -m "$tmp/mq.flash.gguf" -f "$shared/data/tinystories-valid-excerpt.txt" --tokens 200 -q >/dev/null 2>&1
check "a small mixture of experts to bench (synth, convert, calibrate's routing statistics)" \
    test -f "$tmp/mq.flash.gguf.routing"
"$here/../scripts/bench" "$bin" "$tmp/mq.flash.gguf" --cap 0.9 --tokens 6 --repeat 1 --budgets 1.0 "${cgroup[@]}" \
    --device "$tmp/dev.json" --json "$tmp/moe.json" >"$tmp/table" 2>"$tmp/err"
check "scripts/bench on a mixture of experts: mmap, LRU, lookahead, hot set and the budget rows" /usr/bin/python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
names = [r['name'] for r in d['rows']]
for want in ['mmap', 'stream (LRU)', '+lookahead', '+hot+lookahead', 'budget 1.00']:
    assert want in names, (want, names)
assert any(n.startswith('+hot ') for n in names), names
for r in d['rows']:
    assert not r['error'] and r['ms_per_token'] > 0, r
    if r['name'] != 'mmap':
        assert 0 <= r['cache_hit_rate'] <= 1 and r['flash_bytes_per_token'] >= 0, r
" "$tmp/moe.json"
for kind in ablation cache; do
    "$here/../scripts/plot" $kind "$tmp/suite.json" -o "$tmp/$kind.png" 2>"$tmp/err"
    check "scripts/plot $kind writes a PNG" bash -c "head -c 8 '$tmp/$kind.png' | od -An -c | grep -q 'P   N   G'"
done
"$here/../scripts/plot" layers "$tmp/stream.json" -o "$tmp/layers.png" 2>"$tmp/err"
check "scripts/plot layers writes a PNG" bash -c "head -c 8 '$tmp/layers.png' | od -An -c | grep -q 'P   N   G'"
"$here/../scripts/plot" iobench "$tmp/dev.json" -o "$tmp/io.png" 2>"$tmp/err"
check "scripts/plot iobench writes a PNG" bash -c "head -c 8 '$tmp/io.png' | od -An -c | grep -q 'P   N   G'"
"$here/../scripts/plot" timeline "$tmp/run.json" -o "$tmp/tl.png" 2>"$tmp/err"
check "scripts/plot timeline writes a PNG" bash -c "head -c 8 '$tmp/tl.png' | od -An -c | grep -q 'P   N   G'"
"$here/../scripts/plot" layers "$tmp/ram.json" -o "$tmp/none.png" >/dev/null 2>&1
check "a plot of stats without layers fails and writes nothing" bash -c "[ $? -ne 0 ] && [ ! -e '$tmp/none.png' ]"

# simulate: a run recorded here, predicted for this device and for others
"$bin" run -m "$tmp/sq.flash.gguf" -p "Once upon a time" -n 12 --temp 0 --dram-budget 34M --stats "$tmp/rec.json" \
    >/dev/null 2>&1
/usr/bin/python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
for k, f in (('fast', 100.0), ('slow', 0.01)):
    e = dict(d, name=k, reads=[dict(r, mib_s=r['mib_s'] * f) for r in d['reads']])
    json.dump(e, open(sys.argv[2] + '/' + k + '.json', 'w'))
" "$tmp/dev.json" "$tmp"
for dev in dev fast slow; do
    "$bin" simulate --stats "$tmp/rec.json" --device "$tmp/$dev.json" --recorded-on "$tmp/dev.json" \
        --json "$tmp/sim_$dev.json" >"$tmp/sim_$dev.txt" 2>&1
done
check "simulate predicts for this device, a faster and a slower one, and names the bottleneck" /usr/bin/python3 -c "
import json, sys
rec = json.load(open(sys.argv[1]))['generation']
here, fast, slow = (json.load(open(sys.argv[2] + '/sim_' + k + '.json')) for k in ('dev', 'fast', 'slow'))
measured = rec['ms_per_token']
# here: never above the measured time (what the run waited for beyond the
# device's bandwidth is what the model cannot explain)
assert here['predicted_ms_per_token'] <= measured * 1.0001, (here, measured)
assert fast['predicted_ms_per_token'] <= here['predicted_ms_per_token'] and fast['bottleneck'] == 'compute', fast
# a hundredth of the bandwidth: a hundred times the reads' time (against this
# device's prediction, not the measured run, whose wait on a busy shared disk
# the device file does not explain)
assert abs(slow['io_ms'] - 100 * here['io_ms']) <= 1e-6 * slow['io_ms'], (slow, here)
assert slow['predicted_ms_per_token'] > 10 * here['predicted_ms_per_token'] and slow['bottleneck'] == 'io', slow
assert abs(slow['predicted_ms_per_token'] - (slow['compute_ms'] + slow['io_ms'] - slow['hidden_ms'])) < 1e-6
" "$tmp/rec.json" "$tmp"
check "simulate prints the prediction and the bottleneck" grep -q "bottleneck: flash reads" "$tmp/sim_slow.txt"
"$bin" run -m "$flash" --mode mmap -p "Once" -n 4 --stats "$tmp/mm.json" >/dev/null 2>&1
expect_exit "simulate refuses an mmap run, naming why" 1 "$bin" simulate --stats "$tmp/mm.json" --device "$tmp/dev.json"
expect_exit "simulate refuses a stats file as a device file" 1 "$bin" simulate --stats "$tmp/rec.json" --device "$tmp/rec.json"
expect_exit "simulate without --device" 2 "$bin" simulate --stats "$tmp/rec.json"

# a trace that cannot be written fails the command, and leaves nothing
"$bin" run -m "$flash" -p "Once" -n 4 --trace "$tmp/no/such/dir/t.json" >/dev/null 2>"$tmp/err"
rc=$?
check "an unwritable trace path is exit 1 with a message" bash -c "[ $rc -eq 1 ] && grep -q 'cannot write the trace' '$tmp/err'"
# a failed run writes no trace
"$bin" run -m "$tmp/missing.gguf" -p "Once" --trace "$tmp/failed.json" >/dev/null 2>&1
check "a run that fails writes no trace" test ! -e "$tmp/failed.json"
finish
