#!/usr/bin/env bash
# cli_chat_test.sh - `llmflash chat`: a scripted two-turn conversation through
# stdin, for each chat format, with the real vocabularies of ../shared/vocab.
# The tokens the chat evaluates must be the tokens of the format's rendering,
# written out by hand below (not produced by the code under test), turn by
# turn, with the replies kept in the KV cache between turns.
#   usage: cli_chat_test.sh LLMFLASH SHARED_DIR
source "$(dirname "$0")/cli_lib.sh" "$@"
vocab=$shared/vocab

# model NAME PRESET VOCAB: a small random model with a real tokenizer
model() {
    "$bin" synth --shape "$2" --layers 1 --dim 64 --ffn 192 --heads 4 --kv-heads 2 --type F32 \
        --tokenizer-from "$vocab/$3" -q -f -o "$tmp/$1.gguf" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
}
model qwen tiny-qwen3 ggml-vocab-qwen3.gguf
model llama3 tiny-llama3 ggml-vocab-llama3.gguf
model spm tiny ggml-vocab-llama-spm.gguf
model phi3 tiny ggml-vocab-phi-3.gguf

# ids M TEXT [--no-bos]: the tokens of TEXT, special tokens parsed
ids() { "$bin" tokenize -m "$tmp/$1.gguf" -p "$2" --ids --special ${3:-}; }
count() { wc -w <<<"$1" | tr -d ' '; }

# two_turns NAME MODEL PART1 PART2 [chat options]: PART1 is the rendering of
# the first turn (BOS as the vocabulary adds it), PART2 what the second adds
two_turns() {
    local name=$1 m=$2 p1=$3 p2=$4
    shift 4
    printf 'Hi there\n\nAnd again\n' | "$bin" chat -m "$tmp/$m.gguf" -n 6 --temp 0 --system "Be brief." \
        --dump-tokens "$tmp/dump" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ $rc -ne 0 ]; then bad "$name: chat exited $rc"; cat "$tmp/err"; return; fi
    local want1 want2 got1 got2 r1 r2 pos
    want1=$(ids "$m" "$p1")
    want2=$(ids "$m" "$p2" --no-bos)
    got1=$(sed -n 1p "$tmp/dump" | sed 's/^prompt //')
    r1=$(sed -n 2p "$tmp/dump" | sed 's/^reply *//')
    got2=$(sed -n 4p "$tmp/dump" | sed 's/^prompt //')
    r2=$(sed -n 5p "$tmp/dump" | sed 's/^reply *//')
    pos=$(sed -n 6p "$tmp/dump" | sed 's/^position //')
    check "$name: the first turn evaluates the rendering of system + user" test "$got1" = "$want1"
    check "$name: the second turn evaluates only what it adds" test "$got2" = "$want2"
    check "$name: the conversation stays in the KV cache" \
        test "$pos" = $(($(count "$want1") + $(count "$r1") + $(count "$want2") + $(count "$r2")))
    check "$name: each reply ends with a newline on stdout" test "$(wc -l <"$tmp/out")" -ge 2
}

two_turns "chatml (Qwen3's template recognised)" qwen \
    $'<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n' \
    $'<|im_end|>\n<|im_start|>user\nAnd again<|im_end|>\n<|im_start|>assistant\n'
two_turns "llama3 (Llama 3's template recognised)" llama3 \
    $'<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n' \
    $'<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnd again<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'
two_turns "llama2 (--chat-template)" spm \
    $'[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST]' \
    $'</s><s>[INST] And again [/INST]' --chat-template llama2
two_turns "mistral (--chat-template)" spm \
    $'[INST] Be brief.\n\nHi there [/INST]' \
    $'</s>[INST] And again [/INST]' --chat-template mistral
two_turns "phi3 (Phi-3's template recognised)" phi3 \
    $'<|system|>\nBe brief.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\n' \
    $'<|end|>\n<|user|>\nAnd again<|end|>\n<|assistant|>\n'

# no template in the file, an unknown name, a context the conversation fills
printf 'Hi\n' | "$bin" chat -m "$tmp/spm.gguf" -n 2 >"$tmp/out" 2>"$tmp/err"
rc=$?
check "a model without a chat template is refused, naming --chat-template" \
    bash -c "[ $rc -eq 1 ] && grep -q -- '--chat-template' '$tmp/err' && grep -q tokenizer.chat_template '$tmp/err'"
expect_exit "an unknown --chat-template name" 2 "$bin" chat -m "$tmp/qwen.gguf" --chat-template vicuna
printf 'Hi there, tell me a long story\nmore\n' | "$bin" chat -m "$tmp/qwen.gguf" --ctx 24 -n -1 --temp 0 >"$tmp/out" 2>"$tmp/err"
rc=$?
check "a full context ends the chat with a warning and exit 0" \
    bash -c "[ $rc -eq 0 ] && grep -q 'fills the context' '$tmp/err'"
finish
