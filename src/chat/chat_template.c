/* chat_template.c - the chat formats of the model families llmflash runs.
 *
 * GGUF files carry their chat template as Jinja (tokenizer.chat_template).
 * Like llama.cpp, llmflash does not run Jinja: it recognises the family by
 * the template's marker strings and renders that family's format in C. */
#include "llmflash.h"
#include "../tokenizer/tokenizer_internal.h"

#include <ctype.h>
#include <string.h>

static const char *const k_names[] = {"chatml", "llama3", "llama2", "mistral", "phi3"};

const char *lf_chat_format_name(lf_chat_format f) {
    return (unsigned)f < sizeof k_names / sizeof *k_names ? k_names[f] : "?";
}

const char *lf_chat_format_names(void) { return "chatml, llama3, llama2, mistral, phi3"; }

lf_status lf_chat_format_from_name(const char *name, lf_chat_format *out) {
    for (size_t i = 0; name && out && i < sizeof k_names / sizeof *k_names; i++)
        if (strcmp(name, k_names[i]) == 0) {
            *out = (lf_chat_format)i;
            return LF_OK;
        }
    return LF_E_INVALID_ARG;
}

lf_status lf_chat_format_detect(const char *tmpl, lf_chat_format *out) {
    if (!tmpl || !out) return LF_E_INVALID_ARG;
#define HAS(s) (strstr(tmpl, s) != NULL)
    if (HAS("<|im_start|>")) *out = LF_CHAT_CHATML;
    else if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) *out = LF_CHAT_LLAMA3;
    else if (HAS("[INST]")) *out = HAS("<<SYS>>") ? LF_CHAT_LLAMA2 : LF_CHAT_MISTRAL;
    else if (HAS("<|assistant|>") && HAS("<|end|>")) *out = LF_CHAT_PHI3;
    else return LF_E_UNSUPPORTED;
#undef HAS
    return LF_OK;
}

const char *lf_vocab_chat_template(const lf_vocab *v) { return v ? v->chat_template : NULL; }

/* Appends to a buffer that counts what it could not hold. */
typedef struct out_buf {
    char *p;
    size_t cap, len;
} out_buf;

static void put(out_buf *o, const char *s, size_t n) {
    if (o->len < o->cap) memcpy(o->p + o->len, s, LF_MIN(n, o->cap - o->len));
    o->len += n;
}
static void puts_(out_buf *o, const char *s) { put(o, s, strlen(s)); }

/* Whitespace trimmed at both ends, as the templates' `| trim` and `.strip()`. */
static void put_trimmed(out_buf *o, const char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    put(o, s, n);
}

typedef enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_BAD } role;

static role role_of(const char *r) {
    return !r ? ROLE_BAD : !strcmp(r, "system") ? ROLE_SYSTEM : !strcmp(r, "user") ? ROLE_USER
         : !strcmp(r, "assistant") ? ROLE_ASSISTANT : ROLE_BAD;
}

/* Llama 2 and Mistral: [INST] turns. The system prompt goes inside the first
 * turn (Llama 2 in <<SYS>> markers; Mistral, which has none, before the
 * user's text), an assistant reply closes its turn with </s>, and Llama 2
 * opens later turns with <s>. */
static void render_inst(out_buf *o, lf_chat_format f, const lf_chat_message *m, size_t n) {
    bool in_turn = false, first = true;
    for (size_t i = 0; i < n; i++) {
        const role r = role_of(m[i].role);
        if (!in_turn) {
            puts_(o, !first && f == LF_CHAT_LLAMA2 ? "<s>[INST] " : "[INST] ");
            in_turn = true;
            first = false;
        }
        if (r == ROLE_SYSTEM) {
            if (f == LF_CHAT_LLAMA2) puts_(o, "<<SYS>>\n");
            put_trimmed(o, m[i].content);
            puts_(o, f == LF_CHAT_LLAMA2 ? "\n<</SYS>>\n\n" : "\n\n");
        } else if (r == ROLE_USER) {
            put_trimmed(o, m[i].content);
            puts_(o, " [/INST]");
        } else {
            puts_(o, m[i].content);
            puts_(o, "</s>");
            in_turn = false;
        }
    }
}

lf_status lf_chat_apply(lf_chat_format f, const lf_chat_message *msgs, size_t n, bool add_assistant, char *buf,
                        size_t cap, size_t *len) {
    if ((n && !msgs) || (cap && !buf) || !len || (unsigned)f >= sizeof k_names / sizeof *k_names) return LF_E_INVALID_ARG;
    for (size_t i = 0; i < n; i++)
        if (role_of(msgs[i].role) == ROLE_BAD || !msgs[i].content) return LF_E_INVALID_ARG;
    out_buf o = {buf, cap, 0};
    switch (f) {
    case LF_CHAT_CHATML:
        for (size_t i = 0; i < n; i++) {
            puts_(&o, "<|im_start|>");
            puts_(&o, msgs[i].role);
            puts_(&o, "\n");
            puts_(&o, msgs[i].content);
            puts_(&o, "<|im_end|>\n");
        }
        if (add_assistant) puts_(&o, "<|im_start|>assistant\n");
        break;
    case LF_CHAT_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            puts_(&o, "<|start_header_id|>");
            puts_(&o, msgs[i].role);
            puts_(&o, "<|end_header_id|>\n\n");
            if (role_of(msgs[i].role) == ROLE_ASSISTANT) puts_(&o, msgs[i].content);
            else put_trimmed(&o, msgs[i].content);
            puts_(&o, "<|eot_id|>");
        }
        if (add_assistant) puts_(&o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case LF_CHAT_LLAMA2:
    case LF_CHAT_MISTRAL:
        render_inst(&o, f, msgs, n);
        break;
    case LF_CHAT_PHI3:
        for (size_t i = 0; i < n; i++) {
            puts_(&o, "<|");
            puts_(&o, msgs[i].role);
            puts_(&o, "|>\n");
            puts_(&o, msgs[i].content);
            puts_(&o, "<|end|>\n");
        }
        if (add_assistant) puts_(&o, "<|assistant|>\n");
        break;
    }
    if (o.len < cap) buf[o.len] = '\0';
    *len = o.len;
    return o.len < cap ? LF_OK : LF_E_INVALID_ARG;
}
