/* test_chat.c - chat formats: recognised from real models' templates,
 * rendered exactly, and the incremental-turn property the chat relies on. */
#include <criterion/criterion.h>

#include "llmflash.h"
#include "test_support.h"

#include <string.h>

static lf_chat_format detect_file(const char *rel) {
    char err[256];
    lf_vocab *v;
    cr_assert_eq(lf_vocab_open(shared_path(rel), &v, err, sizeof err), LF_OK, "%s", err);
    const char *t = lf_vocab_chat_template(v);
    cr_assert_not_null(t, "%s has no chat template", rel);
    lf_chat_format f;
    cr_assert_eq(lf_chat_format_detect(t, &f), LF_OK, "%s", rel);
    lf_vocab_close(v);
    return f;
}

Test(chat, real_templates_are_recognised) {
    require_shared();
    cr_assert_eq(detect_file("vocab/ggml-vocab-qwen3.gguf"), LF_CHAT_CHATML);
    cr_assert_eq(detect_file("vocab/ggml-vocab-llama3.gguf"), LF_CHAT_LLAMA3);
    cr_assert_eq(detect_file("vocab/ggml-vocab-phi-3.gguf"), LF_CHAT_PHI3);
    char err[256];
    lf_vocab *v;
    cr_assert_eq(lf_vocab_open(shared_path("vocab/ggml-vocab-llama-spm.gguf"), &v, err, sizeof err), LF_OK);
    cr_assert_null(lf_vocab_chat_template(v));
    lf_vocab_close(v);
}

Test(chat, families_by_marker_and_name) {
    lf_chat_format f;
    cr_assert_eq(lf_chat_format_detect("{{ bos_token }}[INST] <<SYS>>{{ m }}", &f), LF_OK);
    cr_assert_eq(f, LF_CHAT_LLAMA2);
    cr_assert_eq(lf_chat_format_detect("{{ bos_token }}{% for m in messages %}[INST] {{ m }} [/INST]", &f), LF_OK);
    cr_assert_eq(f, LF_CHAT_MISTRAL);
    cr_assert_eq(lf_chat_format_detect("{% for m in messages %}<start_of_turn>{{ m }}", &f), LF_E_UNSUPPORTED);
    cr_assert_eq(lf_chat_format_detect(NULL, &f), LF_E_INVALID_ARG);
    for (int i = 0; i <= LF_CHAT_PHI3; i++) {
        cr_assert_eq(lf_chat_format_from_name(lf_chat_format_name((lf_chat_format)i), &f), LF_OK);
        cr_assert_eq((int)f, i);
        cr_assert_not_null(strstr(lf_chat_format_names(), lf_chat_format_name((lf_chat_format)i)));
    }
    cr_assert_eq(lf_chat_format_from_name("vicuna", &f), LF_E_INVALID_ARG);
}

static const char *render(lf_chat_format f, const lf_chat_message *m, size_t n, bool add) {
    static char buf[1024];
    size_t len;
    cr_assert_eq(lf_chat_apply(f, m, n, add, buf, sizeof buf, &len), LF_OK);
    cr_assert_eq(len, strlen(buf));
    return buf;
}

Test(chat, renderings_are_the_families_formats) {
    const lf_chat_message m[] = {{"system", " Be brief. "}, {"user", "Hi\n"}, {"assistant", " Hello."}, {"user", "Again"}};
    cr_assert_str_eq(render(LF_CHAT_CHATML, m, 4, true),
                     "<|im_start|>system\n Be brief. <|im_end|>\n<|im_start|>user\nHi\n<|im_end|>\n"
                     "<|im_start|>assistant\n Hello.<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n");
    cr_assert_str_eq(render(LF_CHAT_LLAMA3, m, 4, true),
                     "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                     "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n Hello.<|eot_id|>"
                     "<|start_header_id|>user<|end_header_id|>\n\nAgain<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n");
    cr_assert_str_eq(render(LF_CHAT_LLAMA2, m, 4, true),
                     "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello.</s><s>[INST] Again [/INST]");
    cr_assert_str_eq(render(LF_CHAT_MISTRAL, m, 4, true), "[INST] Be brief.\n\nHi [/INST] Hello.</s>[INST] Again [/INST]");
    cr_assert_str_eq(render(LF_CHAT_PHI3, m, 4, true),
                     "<|system|>\n Be brief. <|end|>\n<|user|>\nHi\n<|end|>\n<|assistant|>\n Hello.<|end|>\n"
                     "<|user|>\nAgain<|end|>\n<|assistant|>\n");
    cr_assert_str_eq(render(LF_CHAT_CHATML, m, 2, false),
                     "<|im_start|>system\n Be brief. <|im_end|>\n<|im_start|>user\nHi\n<|im_end|>\n");
}

/* What chat relies on: the rendering of turns 1..k plus the reply as
 * generated is a prefix of the rendering of turns 1..k+1. */
Test(chat, a_reply_as_generated_is_a_prefix_of_the_next_rendering) {
    const lf_chat_message m[] = {{"system", "S"}, {"user", " u1 "}, {"assistant", " r1 \n"}, {"user", "u2"}};
    for (int f = 0; f <= LF_CHAT_PHI3; f++) {
        char a[512], b[512];
        size_t la, lb;
        cr_assert_eq(lf_chat_apply((lf_chat_format)f, m, 2, true, a, sizeof a, &la), LF_OK);
        cr_assert_eq(lf_chat_apply((lf_chat_format)f, m, 4, true, b, sizeof b, &lb), LF_OK);
        cr_assert_lt(la + strlen(m[2].content), lb);
        cr_assert_eq(memcmp(a, b, la), 0, "%s: turn 1 is not a prefix", lf_chat_format_name((lf_chat_format)f));
        cr_assert_eq(memcmp(b + la, m[2].content, strlen(m[2].content)), 0, "%s: the reply is not kept as given",
                     lf_chat_format_name((lf_chat_format)f));
    }
}

Test(chat, sizes_and_bad_arguments) {
    const lf_chat_message m[] = {{"user", "Hi"}};
    size_t len = 0;
    char small[8];
    cr_assert_eq(lf_chat_apply(LF_CHAT_CHATML, m, 1, true, small, sizeof small, &len), LF_E_INVALID_ARG);
    cr_assert_eq(len, strlen("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    cr_assert_eq(lf_chat_apply(LF_CHAT_CHATML, m, 1, true, NULL, 0, &len), LF_E_INVALID_ARG);
    cr_assert_eq(len, strlen("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    const lf_chat_message bad[] = {{"tool", "x"}};
    char buf[256];
    cr_assert_eq(lf_chat_apply(LF_CHAT_CHATML, bad, 1, true, buf, sizeof buf, &len), LF_E_INVALID_ARG);
    cr_assert_eq(lf_chat_apply((lf_chat_format)99, m, 1, true, buf, sizeof buf, &len), LF_E_INVALID_ARG);
}
