/* cmd_chat.c - `llmflash chat`: a conversation with an instruct model.
 *
 * Each line of stdin is a user turn (a terminal gets a "> " prompt). The
 * conversation stays in the session's KV cache: a turn evaluates only the
 * text its rendering adds to what is already there (the closing of the
 * last reply, the user's message, the opening of the next reply). stdout
 * carries exactly the replies, one per line; everything else is stderr. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct chat {
    lf_model *model;
    const lf_vocab *vocab;
    lf_session *sess;
    lf_sampler *sampler;
    lf_chat_format format;
    lf_chat_message *msgs;
    size_t n_msgs, cap_msgs;
    size_t rendered; /* bytes of the conversation's rendering already in the KV cache */
    FILE *dump;      /* --dump-tokens, or NULL */
    int n_predict;   /* per reply; -1: until an end token or the context is full */
} chat;

static bool add_message(chat *c, const char *role, const char *content, size_t len) {
    if (c->n_msgs == c->cap_msgs) {
        const size_t cap = c->cap_msgs ? 2 * c->cap_msgs : 8;
        lf_chat_message *m = realloc(c->msgs, cap * sizeof *m);
        if (!m) return false;
        c->msgs = m;
        c->cap_msgs = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return false;
    memcpy(copy, content, len);
    copy[len] = '\0';
    c->msgs[c->n_msgs++] = (lf_chat_message){role, copy};
    return true;
}

/* The whole conversation rendered (malloc'd), with the reply's opening. */
static char *render(const chat *c, size_t *len) {
    size_t need = 0;
    (void)lf_chat_apply(c->format, c->msgs, c->n_msgs, true, NULL, 0, &need); /* the size */
    char *buf = malloc(need + 1);
    if (buf && lf_chat_apply(c->format, c->msgs, c->n_msgs, true, buf, need + 1, len) != LF_OK) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

static void dump_tokens(const chat *c, const char *what, const lf_token *t, size_t n) {
    if (!c->dump) return;
    fputs(what, c->dump);
    for (size_t i = 0; i < n; i++) fprintf(c->dump, " %d", t[i]);
    fputc('\n', c->dump);
}

/* Tokenizes text (BOS first when asked and the vocab adds one), specials parsed. */
static lf_token *tokenize(const chat *c, const char *text, size_t len, bool first, size_t *n) {
    const unsigned flags = LF_TOKENIZE_SPECIAL | (first && lf_vocab_adds_bos(c->vocab) ? LF_TOKENIZE_ADD_BOS : 0);
    size_t cap = len + 2;
    lf_token *t = malloc(cap * sizeof *t);
    if (!t) return NULL;
    lf_status st = lf_vocab_tokenize(c->vocab, text, len, flags, t, cap, n);
    if (st == LF_E_INVALID_ARG && *n > cap) {
        lf_token *more = realloc(t, *n * sizeof *t);
        if (!more) {
            free(t);
            return NULL;
        }
        t = more;
        cap = *n;
        st = lf_vocab_tokenize(c->vocab, text, len, flags, t, cap, n);
    }
    if (st) {
        free(t);
        return NULL;
    }
    return t;
}

/* Prints the complete UTF-8 characters of held[0..*n) (all of it with
 * all), keeps the rest. */
static void flush_text(char *held, size_t *n, bool all) {
    const size_t whole = all ? *n : lf_utf8_complete_prefix(held, *n);
    fwrite(held, 1, whole, stdout);
    fflush(stdout);
    memmove(held, held + whole, *n - whole);
    *n -= whole;
}

/* One turn: the user's line in, the reply out. 1: go on, 0: the context is
 * full (a warning, not an error), -1: an error (printed). */
static int turn(chat *c, const char *line, size_t line_len) {
    if (!add_message(c, "user", line, line_len)) return fprintf(stderr, "llmflash chat: out of memory\n"), -1;
    size_t len;
    char *text = render(c, &len);
    if (!text) return fprintf(stderr, "llmflash chat: out of memory\n"), -1;
    size_t n;
    const bool first = c->rendered == 0;
    lf_token *toks = tokenize(c, text + c->rendered, len - c->rendered, first, &n);
    free(text);
    if (!toks) return fprintf(stderr, "llmflash chat: cannot tokenize the turn\n"), -1;
    dump_tokens(c, "prompt", toks, n);
    lf_status st = lf_session_eval(c->sess, toks, n);
    for (size_t i = 0; i < n && !st; i++) lf_sampler_accept(c->sampler, toks[i]);
    free(toks);
    if (st == LF_E_CONTEXT_FULL) {
        fprintf(stderr, "llmflash: warning: the conversation fills the context of %u tokens (raise --ctx for more)\n",
                lf_session_position(c->sess));
        return 0;
    }
    if (st) return fprintf(stderr, "llmflash chat: %s (%s)\n", lf_session_errmsg(c->sess), lf_strerror(st)), -1;
    c->rendered = len;

    /* the reply: sampled until an end token, -n tokens, or a full context */
    lf_token *reply = NULL;
    size_t n_reply = 0, cap_reply = 0;
    char *reply_text = NULL, held[16];
    size_t text_len = 0, n_held = 0;
    int rc = 1;
    const uint32_t nv = lf_vocab_size(c->model);
    while (c->n_predict < 0 || n_reply < (size_t)c->n_predict) {
        const lf_token t = lf_sampler_sample(c->sampler, lf_session_logits(c->sess), nv);
        if (lf_vocab_is_end(c->vocab, t)) break;
        lf_sampler_accept(c->sampler, t);
        char piece[256];
        const int pl = lf_vocab_piece(c->vocab, t, piece, sizeof piece);
        if (n_reply == cap_reply) {
            cap_reply = cap_reply ? 2 * cap_reply : 64;
            lf_token *r = realloc(reply, cap_reply * sizeof *r);
            char *rt = realloc(reply_text, cap_reply * sizeof piece);
            if (r) reply = r;
            if (rt) reply_text = rt;
            if (!r || !rt) {
                rc = -1;
                fprintf(stderr, "llmflash chat: out of memory\n");
                break;
            }
        }
        reply[n_reply++] = t;
        if (pl > 0 && (size_t)pl <= sizeof piece) {
            memcpy(reply_text + text_len, piece, (size_t)pl);
            text_len += (size_t)pl;
            for (int k = 0; k < pl; k++) {
                held[n_held++] = piece[k];
                if (n_held == sizeof held) flush_text(held, &n_held, true);
            }
            flush_text(held, &n_held, false);
        }
        st = lf_session_eval(c->sess, &t, 1);
        if (st == LF_E_CONTEXT_FULL) {
            fprintf(stderr, "\nllmflash: warning: the conversation fills the context of %u tokens (raise --ctx for "
                    "more)\n", lf_session_position(c->sess));
            rc = 0;
            break;
        }
        if (st) {
            fprintf(stderr, "\nllmflash chat: %s (%s)\n", lf_session_errmsg(c->sess), lf_strerror(st));
            rc = -1;
            break;
        }
    }
    flush_text(held, &n_held, true);
    fputc('\n', stdout);
    fflush(stdout);
    dump_tokens(c, "reply", reply, n_reply);
    if (c->dump) fprintf(c->dump, "position %u\n", lf_session_position(c->sess)), fflush(c->dump);
    /* the reply, as generated, joins the conversation and its rendering */
    if (rc == 1 && !add_message(c, "assistant", reply_text ? reply_text : "", text_len)) rc = -1;
    c->rendered += text_len;
    free(reply);
    free(reply_text);
    return rc;
}

int cmd_chat(int argc, char **argv) {
    const char *model_path = NULL, *tmpl = NULL, *system = NULL, *dump_path = NULL;
    int n_predict = 512;
    cli_sampling_opts so = cli_sampling_opts_default();
    cli_model_opts mo = cli_model_opts_default();
    cli_opt opts[] = {
        {"--model", "-m", CLI_STR, &model_path, "GGUF model file (required)", false},
        {"--chat-template", NULL, CLI_STR, &tmpl,
         "chat format: chatml, llama3, llama2, mistral or phi3 (default: recognised from the model's template)", false},
        {"--system", "-s", CLI_STR, &system, "a system message that opens the conversation", false},
        {"--n-predict", "-n", CLI_INT, &n_predict, "most tokens per reply; -1: until the end of turn (default 512)", false},
        {"--dump-tokens", NULL, CLI_STR, &dump_path,
         "write every token evaluated to FILE: a 'prompt' and a 'reply' line of ids per turn, then 'position N'", false},
        CLI_SAMPLING_OPTIONS(so),
        CLI_MODEL_OPTIONS(mo),
    };
    const size_t n_opts = sizeof opts / sizeof *opts;
    const char *pos[1];
    size_t n_pos;
    bool help;
    if (!cli_parse("chat", argc, argv, 2, opts, n_opts, pos, 0, &n_pos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        printf("usage: llmflash chat -m MODEL.gguf [--chat-template NAME] [--system TEXT] [options]\n\n"
               "Talks with an instruct model: each line of stdin is a turn, each reply a line of stdout.\n"
               "The conversation stays in the KV cache between turns.\n\noptions:\n");
        cli_print_options(stdout, opts, n_opts);
        return CLI_EXIT_OK;
    }
    if (!model_path) {
        fprintf(stderr, "llmflash chat: -m MODEL is required (see llmflash chat --help)\n");
        return CLI_EXIT_USAGE;
    }
    chat c = {.n_predict = n_predict};
    if (n_predict < -1 || n_predict == 0) {
        fprintf(stderr, "llmflash chat: -n must be positive or -1\n");
        return CLI_EXIT_USAGE;
    }
    if (tmpl && lf_chat_format_from_name(tmpl, &c.format) != LF_OK) {
        fprintf(stderr, "llmflash chat: --chat-template '%s' is not one of %s\n", tmpl, lf_chat_format_names());
        return CLI_EXIT_USAGE;
    }
    mo.budget_seen = cli_opt_seen(opts, n_opts, &mo.budget);
    lf_model_params mp;
    lf_session_params sp;
    lf_sampler_params smp;
    if (!cli_model_params("chat", &mo, &mp) || !cli_session_params("chat", &mo, model_path, &sp) ||
        !cli_sampler_params("chat", opts, n_opts, &so, mo.verbose, &smp))
        return CLI_EXIT_USAGE;
    char err[512];
    int rc = CLI_EXIT_RUNTIME;
    char *line = NULL;
    lf_status st = lf_model_open(model_path, &mp, &c.model, err, sizeof err);
    if (st) {
        fprintf(stderr, "llmflash chat: cannot open %s: %s (%s)%s\n", model_path, err, lf_strerror(st), cli_hint(st));
        cli_trace_finish("chat", sp.trace, mo.trace_path, false);
        return CLI_EXIT_RUNTIME;
    }
    c.vocab = lf_model_vocab(c.model);
    if (!tmpl) {
        const char *jinja = lf_vocab_chat_template(c.vocab);
        if (!jinja) {
            fprintf(stderr, "llmflash chat: %s has no chat template (tokenizer.chat_template): give --chat-template "
                    "NAME (%s)\n", model_path, lf_chat_format_names());
            goto out;
        }
        if (lf_chat_format_detect(jinja, &c.format) != LF_OK) {
            fprintf(stderr, "llmflash chat: the chat template of %s (tokenizer.chat_template) is not one llmflash "
                    "recognises: give --chat-template NAME (%s)\n", model_path, lf_chat_format_names());
            goto out;
        }
    }
    if (mo.verbose) fprintf(stderr, "llmflash: chat format %s\n", lf_chat_format_name(c.format));
    if (dump_path && !(c.dump = fopen(dump_path, "w"))) {
        fprintf(stderr, "llmflash chat: cannot write %s: %s\n", dump_path, strerror(errno));
        goto out;
    }
    if ((st = lf_session_create(c.model, &sp, &c.sess, err, sizeof err))) {
        fprintf(stderr, "llmflash chat: %s (%s)%s\n", err, lf_strerror(st), cli_hint(st));
        goto out;
    }
    if ((st = lf_sampler_create(&smp, &c.sampler))) {
        fprintf(stderr, "llmflash chat: bad sampling parameters (%s)\n", lf_strerror(st));
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    if (system && !add_message(&c, "system", system, strlen(system))) goto out;
    const bool tty = isatty(STDIN_FILENO);
    size_t cap = 0;
    rc = CLI_EXIT_OK;
    for (;;) {
        if (tty) fputs("> ", stderr);
        const ssize_t got = getline(&line, &cap, stdin);
        if (got < 0) break;
        size_t len = (size_t)got;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (len == 0) continue;
        if (memchr(line, '\0', len)) {
            fprintf(stderr, "llmflash chat: a line of input contains a NUL byte\n");
            rc = CLI_EXIT_RUNTIME;
            break;
        }
        const int r = turn(&c, line, len);
        if (r < 0) rc = CLI_EXIT_RUNTIME;
        if (r <= 0) break;
    }
    if (ferror(stdin)) {
        fprintf(stderr, "llmflash chat: reading stdin failed\n");
        rc = CLI_EXIT_RUNTIME;
    }
    if (c.dump && fclose(c.dump) != 0) {
        fprintf(stderr, "llmflash chat: writing %s failed\n", dump_path);
        rc = CLI_EXIT_RUNTIME;
    }
    c.dump = NULL;
out:
    if (c.dump) fclose(c.dump);
    free(line);
    for (size_t i = 0; i < c.n_msgs; i++) free((char *)c.msgs[i].content);
    free(c.msgs);
    lf_sampler_destroy(c.sampler);
    lf_session_destroy(c.sess);
    lf_model_close(c.model);
    if (!cli_trace_finish("chat", sp.trace, mo.trace_path, rc == CLI_EXIT_OK) && rc == CLI_EXIT_OK) rc = CLI_EXIT_RUNTIME;
    return rc;
}
