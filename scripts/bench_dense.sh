#!/usr/bin/env bash
# bench_dense.sh LLMFLASH [LLAMA_BENCH] - dense speed of 7B-shaped models held
# in RAM: generation (ms/token) and prompt evaluation (tokens/s), against the
# DRAM-bandwidth limit measured in the same run and, given the path to a
# llama.cpp llama-bench, against llama.cpp on the same file. The two engines
# alternate, ROUNDS rounds each, and the medians are compared.
#
# Environment: MODEL_DIR (default /tmp/llmflash-models; models are
# synthesized once), TYPES (default "q4_0 q4_k_m q8_0"), ROUNDS (3), TG (16
# generated tokens), PP (512 prompt tokens; 0 skips the prompt), THREADS (all
# cores), LF_FLAGS (more flags for llmflash bench, e.g. --huge-pages).
set -euo pipefail
bin=$1
llama_bench=${2:-}
dir=${MODEL_DIR:-${LLMFLASH_MODEL_DIR:-/tmp/llmflash-models}}
types=${TYPES:-q4_0 q4_k_m q8_0}
rounds=${ROUNDS:-3}
tg=${TG:-16}
pp=${PP:-512}
threads=${THREADS:-$(nproc)}
mkdir -p "$dir"
[ -z "$llama_bench" ] || [ -x "$llama_bench" ] || { echo "bench_dense: $llama_bench is not executable" >&2; exit 2; }

median() { python3 -c 'import sys; v=sorted(float(x) for x in sys.argv[1:]); print(v[len(v)//2] if v else "nan")' "$@"; }

# llama.cpp's tokens/s in one llama-bench run of one test (ARGS: -p/-n), or its failure
llama_rate() {
    local csv
    csv=$("$llama_bench" -m "$model" -t "$threads" -r 1 -o csv "$@" 2>/dev/null) || return $?
    echo "$csv" | python3 -c 'import csv,sys
for r in csv.DictReader(sys.stdin): print(r["avg_ts"])'
}

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $threads threads"
for type in $types; do
    model=$dir/llama2-7b-$type.gguf
    T=$(echo "$type" | tr a-z A-Z)
    [ -f "$model" ] || "$bin" synth --shape llama2-7b --type "$T" -q -o "$model"
    cat "$model" >/dev/null # in the page cache: this measures compute, not the disk
    "$bin" bench -m "$model" -n 4 -t "$threads" ${LF_FLAGS:-} | grep -E "kernels|DRAM|bandwidth limit" | sed "s/^/[$type] /"
    lf_tg=() lf_pp=() lc_tg=() lc_pp=()
    for r in $(seq "$rounds"); do
        out=$("$bin" bench -m "$model" -n "$tg" -p "$pp" -t "$threads" --no-membw ${LF_FLAGS:-})
        lf_tg+=("$(echo "$out" | sed -n 's/^generation: *\([0-9.]*\) ms.*/\1/p')")
        [ "$pp" -eq 0 ] || lf_pp+=("$(echo "$out" | sed -n 's/^prompt:.*(\([0-9.]*\) tokens\/s.*/\1/p')")
        if [ -n "$llama_bench" ]; then
            # generation and prompt in separate runs, so that one failing
            # (llama.cpp's AMX prompt kernels die of SIGILL on some VMs)
            # still leaves the other
            if ts=$(llama_rate -p 0 -n "$tg"); then
                lc_tg+=("$(python3 -c "print(1000.0 / $ts)")")
            else
                echo "[$type] llama-bench generation failed (exit $?)" >&2
            fi
            if [ "$pp" -ne 0 ]; then
                if ts=$(llama_rate -p "$pp" -n 0); then lc_pp+=("$ts"); else echo "[$type] llama-bench prompt failed (exit $?)" >&2; fi
            fi
        fi
    done
    a=$(median "${lf_tg[@]}")
    echo "[$type] llmflash generation: $a ms/token (rounds: ${lf_tg[*]})"
    [ "$pp" -eq 0 ] || echo "[$type] llmflash prompt:     $(median "${lf_pp[@]}") tokens/s (rounds: ${lf_pp[*]})"
    if [ -n "$llama_bench" ]; then
        if [ ${#lc_tg[@]} -gt 0 ]; then
            b=$(median "${lc_tg[@]}")
            echo "[$type] llama.cpp generation: $b ms/token (rounds: ${lc_tg[*]})"
            python3 -c "print('[$type] generation: llmflash/llama.cpp time ratio %.2f' % ($a / $b))"
        else
            echo "[$type] llama.cpp generation: every run failed"
        fi
        if [ "$pp" -ne 0 ]; then
            if [ ${#lc_pp[@]} -gt 0 ]; then
                c=$(median "${lf_pp[@]}") d=$(median "${lc_pp[@]}")
                echo "[$type] llama.cpp prompt:     $d tokens/s (rounds: ${lc_pp[*]})"
                python3 -c "print('[$type] prompt: llmflash/llama.cpp throughput ratio %.2f' % ($c / $d))"
            else
                echo "[$type] llama.cpp prompt: every run failed"
            fi
        fi
    fi
done
