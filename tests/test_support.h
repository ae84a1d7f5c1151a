/* test_support.h - helpers shared by the test executables. */
#ifndef LF_TEST_SUPPORT_H
#define LF_TEST_SUPPORT_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Path of a file under ../shared (set by meson as LF_SHARED_DIR). */
static inline const char *shared_path(const char *rel) {
    static char buf[4][1024];
    static int k;
    const char *dir = getenv("LF_SHARED_DIR");
    char *out = buf[k++ % 4];
    snprintf(out, 1024, "%s/%s", dir ? dir : "../shared", rel);
    return out;
}

/* Reads a whole file; NULL if missing. Caller frees. */
static inline char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n] = '\0';
    if (len) *len = (size_t)n;
    fclose(f);
    return b;
}

/* Collects generated text: pass collect_piece and a text_buf to
 * lf_session_generate. */
typedef struct text_buf {
    char data[8192];
    size_t len;
} text_buf;

static inline bool collect_piece(void *user, const char *piece, size_t len) {
    text_buf *t = user;
    if (t->len + len >= sizeof t->data) return false;
    memcpy(t->data + t->len, piece, len);
    t->len += len;
    t->data[t->len] = '\0';
    return true;
}

/* lf_session_generate of n tokens into out. */
#ifdef LLMFLASH_H
static inline lf_status generate_text(lf_session *s, lf_sampler *g, const char *prompt, uint32_t n, text_buf *out,
                                      lf_generate_stats *stats) {
    lf_generate_params gp = lf_generate_default_params();
    gp.n_predict = n;
    gp.on_piece = collect_piece;
    gp.user = out;
    return lf_session_generate(s, g, prompt, &gp, stats);
}
#endif

#endif
