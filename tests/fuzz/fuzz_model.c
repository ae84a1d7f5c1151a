/* fuzz_model.c - libFuzzer target: a whole model from fuzzed GGUF bytes.
 * The hyperparameters and the tokenizer are built from the bytes (the GGUF
 * reader alone could not find the byte-piece crash); a model that opens is
 * tokenized, every piece is rendered, and one token is evaluated. Every
 * input must open or fail with a status and a message. */
#include "fuzz_support.h"

#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lf_model_params mp = lf_model_default_params();
    mp.n_threads = 1;
    mp.mode = LF_MODE_MMAP;
    int fd;
    lf_model *m = lf_fuzz_open(data, size, &mp, &fd);
    if (!m) return 0;
    static const char text[] = "Once upon a time, \xe6\x97\xa5\xe6\x9c\xac <0x41> \xff\xfe end";
    lf_token toks[256];
    size_t n = 0;
    char piece[512];
    if (lf_tokenize(m, text, sizeof text - 1, true, toks, 256, &n) == LF_OK)
        for (size_t i = 0; i < n; i++)
            if ((uint32_t)toks[i] >= lf_vocab_size(m) || lf_token_to_piece(m, toks[i], piece, sizeof piece) < 0)
                abort(); /* encode gives only valid tokens */
    for (uint32_t t = 0; t < lf_vocab_size(m) && t < 4096; t++) (void)lf_token_to_piece(m, (lf_token)t, piece, sizeof piece);
    lf_fuzz_eval(m, 1);
    lf_model_close(m);
    close(fd);
    return 0;
}
