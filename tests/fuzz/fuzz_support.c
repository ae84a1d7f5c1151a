/* fuzz_support.c - what the fuzz targets share: fuzzed bytes as a file, a
 * model opened from it, and a short evaluation. */
#include "fuzz_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

lf_model *lf_fuzz_open(const uint8_t *data, size_t size, const lf_model_params *mp, int *fd_out) {
    const int fd = memfd_create("lf_fuzz", MFD_CLOEXEC);
    if (fd < 0) abort();
    for (size_t off = 0; off < size;) {
        const ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    char path[64], err[512] = "";
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    lf_model *m = NULL;
    const lf_status st = lf_model_open(path, mp, &m, err, sizeof err);
    if (st != LF_OK) {
        if (!err[0] && st != LF_E_NOMEM) abort(); /* every error says why */
        close(fd);
        return NULL;
    }
    *fd_out = fd;
    return m;
}

void lf_fuzz_eval(lf_model *m, size_t n) {
    lf_model_info in;
    lf_model_get_info(m, &in);
    /* small models only, to keep the fuzzer fast */
    if ((uint64_t)in.n_embd * in.n_layer * (in.n_ff + in.n_embd) >= (1u << 22)) return;
    lf_session_params sp = lf_session_default_params();
    sp.n_ctx = 4;
    lf_session *s;
    char err[512] = "";
    if (lf_session_create(m, &sp, &s, err, sizeof err) != LF_OK) {
        if (!err[0]) abort();
        return;
    }
    lf_token toks[4] = {lf_token_bos(m) >= 0 ? lf_token_bos(m) : 0, 0, 0, 0};
    const lf_status st = lf_session_eval(s, toks, n < 4 ? n : 4);
    if (st != LF_OK && !lf_session_errmsg(s)[0]) abort();
    if (st == LF_OK && !lf_session_logits(s)) abort();
    lf_session_destroy(s);
}
