/* generate.c - the smallest complete program on llmflash's public API: greedy
 * text from a model, as the library's manual (llmflash.h) describes it.
 *
 *   generate MODEL [PROMPT] [N]     N tokens (default 200) after PROMPT ("")
 *
 * Any GGUF llmflash runs works: a plain one is read into RAM or mapped, a
 * flash file (llmflash convert) streams its FFN from flash. Exit 1 on any
 * error, with llmflash's message. */
#include <llmflash.h>

#include <stdio.h>
#include <stdlib.h>

static bool print_piece(void *user, const char *piece, size_t len) {
    (void)user;
    return fwrite(piece, 1, len, stdout) == len;
}

static int fail(const char *what, lf_status st, const char *detail) {
    fprintf(stderr, "generate: %s: %s (%s)\n", what, detail, lf_strerror(st));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: generate MODEL [PROMPT] [N]\n");
        return 2;
    }
    if (LF_VERSION_NUMBER / 100 != lf_version_number() / 100) {
        fprintf(stderr, "generate: built for llmflash %d.%d, running %s\n", LF_VERSION_MAJOR, LF_VERSION_MINOR,
                lf_version());
        return 1;
    }
    const char *prompt = argc > 2 ? argv[2] : "";
    const int n_predict = argc > 3 ? atoi(argv[3]) : 200;
    char err[512];

    lf_model *model;
    lf_status st = lf_model_open(argv[1], NULL, &model, err, sizeof err);
    if (st) return fail("cannot open the model", st, err);

    lf_session *session;
    st = lf_session_create(model, NULL, &session, err, sizeof err);
    if (st) {
        lf_model_close(model);
        return fail("cannot create a session", st, err);
    }

    lf_sampler_params sp = lf_sampler_default_params();
    sp.temperature = 0.0f; /* greedy: the same text every run */
    lf_sampler *sampler = NULL;
    st = lf_sampler_create(&sp, &sampler);
    if (!st) {
        lf_generate_params gp = lf_generate_default_params();
        gp.n_predict = (uint32_t)n_predict;
        gp.on_piece = print_piece;
        st = lf_session_generate(session, sampler, prompt, &gp, NULL);
    }
    const int rc = st ? fail("generation failed", st, lf_session_errmsg(session)) : 0;

    lf_sampler_destroy(sampler);
    lf_session_destroy(session);
    lf_model_close(model);
    return fflush(stdout) == 0 ? rc : 1;
}
