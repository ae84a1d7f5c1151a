/* fuzz_gguf.c - libFuzzer target for the GGUF reader. Every input must
 * either parse or fail with a status and a detail message; a parsed file's
 * metadata must be safe to walk and render. */
#include "../../src/gguf/gguf.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lf_gguf *g = NULL;
    lf_err err = {{0}};
    const lf_status st = lf__gguf_read_mem(data, size, &g, &err);
    if (st != LF_OK) {
        if (!err.msg[0] && st != LF_E_NOMEM) abort(); /* every error says why */
        return 0;
    }
    char buf[512];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        lf__gguf_kv_format(&g->kv[i], buf, sizeof buf);
        uint64_t pos = 0;
        lf_gguf_str s;
        while (lf__gguf_arr_next_str(&g->kv[i], &pos, &s))
            if (s.ptr + s.len > (const char *)g->header + g->header_len) abort();
        for (uint64_t k = 0; k < g->kv[i].arr_n && k < 64; k++) (void)lf__gguf_arr_get_num(&g->kv[i], k);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].file_offset + g->tensors[i].nbytes > size) abort();
    lf__gguf_free(g);
    return 0;
}
