/* cmd_tokenize.c - `llmflash tokenize`: a text's tokens under a model's
 * tokenizer. Works on any GGUF with tokenizer metadata, vocab-only files
 * included, so tokenizers can be checked on their own. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* Reads all of path ("-": stdin) into a malloc'd buffer. */
static char *read_all(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb) {
            free(buf);
            buf = NULL;
        }
        buf = nb;
    }
    const bool bad = ferror(f);
    if (f != stdin) fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* A piece on one line: tab, newline, backslash and other control bytes as
 * C escapes; every other byte (UTF-8 included) as is. */
static void print_escaped(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)p[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7F) printf("\\x%02x", c);
        else putchar(c);
    }
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *file = NULL;
    bool ids = false, no_bos = false, special = false;
    cli_opt opts[] = {
        {"--model", "-m", CLI_STR, &model, "GGUF file with a tokenizer (a model or a vocab-only file; required)", false},
        {"--prompt", "-p", CLI_STR, &prompt, "the text to tokenize", false},
        {"--file", "-f", CLI_STR, &file, "read the text from this file ('-': stdin)", false},
        {"--ids", NULL, CLI_FLAG, &ids, "print only the ids, on one line, separated by spaces", false},
        {"--no-bos", NULL, CLI_FLAG, &no_bos, "never add BOS (by default the model's add_bos_token decides)", false},
        {"--special", NULL, CLI_FLAG, &special, "parse control tokens written in the text (\"<|eot_id|>\"); without it they are plain text", false},
    };
    const size_t n_opts = sizeof opts / sizeof *opts;
    const char *pos[1];
    size_t n_pos;
    bool help;
    if (!cli_parse("tokenize", argc, argv, 2, opts, n_opts, pos, 1, &n_pos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        printf("usage: llmflash tokenize -m MODEL.gguf [-p TEXT | -f FILE] [--ids] [--no-bos] [--special]\n\n"
               "Prints one 'id<TAB>piece' line per token (pieces escaped: \\n, \\t, \\\\, \\xNN;\n"
               "control tokens as stored), or with --ids the ids on one line.\n\noptions:\n");
        cli_print_options(stdout, opts, n_opts);
        return CLI_EXIT_OK;
    }
    if (!model && n_pos == 1) model = pos[0];
    if (!model || (n_pos == 1 && model != pos[0])) {
        fprintf(stderr, "llmflash tokenize: expected -m MODEL.gguf (see llmflash tokenize --help)\n");
        return CLI_EXIT_USAGE;
    }
    if ((prompt != NULL) == (file != NULL)) {
        fprintf(stderr, "llmflash tokenize: give the text with exactly one of -p TEXT and -f FILE\n");
        return CLI_EXIT_USAGE;
    }
    size_t len = 0;
    char *text = NULL;
    if (file) {
        if (!(text = read_all(file, &len))) {
            fprintf(stderr, "llmflash tokenize: cannot read %s\n", file);
            return CLI_EXIT_RUNTIME;
        }
    }
    char err[512];
    lf_vocab *v;
    lf_status st = lf_vocab_open(model, &v, err, sizeof err);
    if (st) {
        fprintf(stderr, "llmflash tokenize: cannot open the tokenizer of %s (%s)%s\n", err, lf_strerror(st), cli_hint(st));
        free(text);
        return CLI_EXIT_RUNTIME;
    }
    const char *src = file ? text : prompt;
    if (!file) len = strlen(prompt);
    const unsigned flags = (!no_bos && lf_vocab_adds_bos(v) ? LF_TOKENIZE_ADD_BOS : 0) | (special ? LF_TOKENIZE_SPECIAL : 0);
    size_t n = 0, cap = len + 16;
    lf_token *toks = malloc(cap * sizeof *toks);
    st = toks ? lf_vocab_tokenize(v, src, len, flags, toks, cap, &n) : LF_E_NOMEM;
    if (st == LF_E_INVALID_ARG && n > cap) { /* never more tokens than bytes plus BOS, but be safe */
        lf_token *nt = realloc(toks, n * sizeof *toks);
        st = nt ? lf_vocab_tokenize(v, src, len, flags, toks = nt, cap = n, &n) : LF_E_NOMEM;
    }
    if (st) {
        fprintf(stderr, "llmflash tokenize: %s\n", lf_strerror(st));
    } else if (ids) {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", toks[i]);
        putchar('\n');
    } else {
        char buf[1024];
        for (size_t i = 0; i < n; i++) {
            uint32_t raw_len;
            const int type = lf_vocab_token_type(v, toks[i]);
            const char *raw = lf_vocab_raw_piece(v, toks[i], &raw_len);
            const int k = type == 3 ? (int)raw_len : lf_vocab_piece(v, toks[i], buf, sizeof buf);
            printf("%d\t", toks[i]);
            print_escaped(type == 3 ? raw : buf, k < 0 ? 0 : type == 3 ? (size_t)k : (size_t)k < sizeof buf ? (size_t)k : sizeof buf);
            putchar('\n');
        }
    }
    free(toks);
    free(text);
    lf_vocab_close(v);
    if (fflush(stdout) != 0) return CLI_EXIT_RUNTIME;
    return st ? CLI_EXIT_RUNTIME : CLI_EXIT_OK;
}
