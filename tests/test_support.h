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

/* Whether ../shared (or LF_SHARED_DIR) is there. */
static inline bool shared_present(void) {
    FILE *f = fopen(shared_path("models/stories260K.gguf"), "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* For tests that need ../shared: skips cleanly where it is absent (a clone
 * elsewhere), but fails when LF_REQUIRE_SHARED is set, as in CI, where a
 * skip would hide a test that did not run. */
#ifdef CRITERION_H_
#define require_shared()                                                                                           \
    do {                                                                                                           \
        if (!shared_present()) {                                                                                   \
            if (getenv("LF_REQUIRE_SHARED")) cr_assert_fail("%s is absent but LF_REQUIRE_SHARED is set", shared_path("")); \
            cr_skip_test("needs the real models in %s, which is absent", shared_path(""));                       \
        }                                                                                                          \
    } while (0)

/* main() for a test executable whose every test needs ../shared: where it
 * is absent the whole executable is skipped (meson's exit 77) with the
 * reason, unless LF_REQUIRE_SHARED makes that a failure. */
#define LF_TEST_MAIN_NEEDS_SHARED                                                                                   \
    int main(int argc, char *argv[]) {                                                                            \
        if (!shared_present()) {                                                                                  \
            if (getenv("LF_REQUIRE_SHARED")) {                                                                    \
                fprintf(stderr, "FAIL: %s is absent but LF_REQUIRE_SHARED is set\n", shared_path(""));            \
                return 1;                                                                                         \
            }                                                                                                     \
            printf("skipped: these tests need the real models in %s, which is absent (set LF_SHARED_DIR)\n",     \
                   shared_path(""));                                                                              \
            return 77;                                                                                            \
        }                                                                                                         \
        struct criterion_test_set *tests = criterion_initialize();                                                \
        int result = 0;                                                                                           \
        if (criterion_handle_args(argc, argv, true)) result = !criterion_run_all_tests(tests);               \
        criterion_finalize(tests);                                                                                \
        return result;                                                                                            \
    }
#endif

/* Whether this process may use io_uring: containers often forbid it with
 * seccomp, and then its tests skip while the pread fallback is tested.
 * LF_TEST_NO_URING=1 pretends it is forbidden, to test the skip itself. */
#include <liburing.h>
static inline bool uring_usable(void) {
    if (getenv("LF_TEST_NO_URING")) return false;
    struct io_uring ring;
    if (io_uring_queue_init(2, &ring, 0) < 0) return false;
    io_uring_queue_exit(&ring);
    return true;
}
#ifdef CRITERION_H_
#define require_uring()                                                                                  \
    do {                                                                                                 \
        if (!uring_usable()) cr_skip_test("io_uring is not available here (seccomp?): pread is tested"); \
    } while (0)
#endif

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

/* Greedy decoding of n tokens from BOS into out, each failed eval retried
 * up to `retries` times (failures counts them; a failed eval leaves no
 * logits: LF_E_INVALID_ARG if one does). */
static inline lf_status greedy(lf_model *m, lf_session *s, int n, int retries, text_buf *out, int *failures) {
    lf_token tok = lf_token_bos(m);
    out->len = 0;
    out->data[0] = '\0';
    *failures = 0;
    bool first = true;
    for (int i = 0; i < n; i++) {
        lf_status st;
        int tries = 0;
        while ((st = lf_session_eval(s, &tok, 1)) != LF_OK) {
            (*failures)++;
            if (lf_session_logits(s)) return LF_E_INVALID_ARG; /* logits after a failed eval */
            if (++tries > retries) return st;
        }
        const float *lg = lf_session_logits(s);
        lf_token best = 0;
        for (uint32_t v = 1; v < lf_vocab_size(m); v++)
            if (lg[v] > lg[best]) best = (lf_token)v;
        tok = best;
        char piece[64];
        const int len = lf_token_to_piece(m, tok, piece, sizeof piece);
        const char *p = piece;
        int l = len;
        if (first && l > 0 && p[0] == ' ') p++, l--;
        first = false;
        if (l > 0) collect_piece(out, p, (size_t)l);
    }
    return LF_OK;
}

#endif
