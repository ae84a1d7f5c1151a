/* fuzz_model.c - libFuzzer target: a whole model from fuzzed GGUF bytes.
 * The hyperparameters and the tokenizer are built from the bytes (the GGUF
 * reader alone could not find the byte-piece crash); a model that opens is
 * tokenized, every piece is rendered, and one token is evaluated. Every
 * input must open or fail with a status and a message. */
#include "llmflash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int lf_fuzz_file(const uint8_t *data, size_t size, char *path, size_t cap);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64], err[512] = "";
    const int fd = lf_fuzz_file(data, size, path, sizeof path);
    lf_model_params mp = lf_model_default_params();
    mp.n_threads = 1;
    mp.mode = LF_MODE_MMAP;
    lf_model *m = NULL;
    const lf_status st = lf_model_open(path, &mp, &m, err, sizeof err);
    if (st != LF_OK) {
        if (!err[0] && st != LF_E_NOMEM) abort(); /* every error says why */
        close(fd);
        return 0;
    }
    static const char text[] = "Once upon a time, \xe6\x97\xa5\xe6\x9c\xac <0x41> \xff\xfe end";
    lf_token toks[256];
    size_t n = 0;
    if (lf_tokenize(m, text, sizeof text - 1, true, toks, 256, &n) == LF_OK) {
        char piece[512];
        for (size_t i = 0; i < n; i++)
            if ((uint32_t)toks[i] >= lf_vocab_size(m) || lf_token_to_piece(m, toks[i], piece, sizeof piece) < 0)
                abort(); /* encode gives only valid tokens */
    }
    char piece[64];
    for (uint32_t t = 0; t < lf_vocab_size(m) && t < 4096; t++) (void)lf_token_to_piece(m, (lf_token)t, piece, sizeof piece);
    lf_model_info in;
    lf_model_get_info(m, &in);
    /* evaluation of small models only, to keep the fuzzer fast */
    if ((uint64_t)in.n_embd * in.n_layer * (in.n_ff + in.n_embd) < (1u << 22)) {
        lf_session_params sp = lf_session_default_params();
        sp.n_ctx = 4;
        lf_session *s;
        if (lf_session_create(m, &sp, &s, err, sizeof err) == LF_OK) {
            const lf_token t = lf_token_bos(m) >= 0 ? lf_token_bos(m) : 0;
            if (lf_session_eval(s, &t, 1) == LF_OK && !lf_session_logits(s)) abort();
            lf_session_destroy(s);
        }
    }
    lf_model_close(m);
    close(fd);
    return 0;
}
