/* gguf_file.c - the public description of any GGUF file (llmflash.h,
 * lf_gguf_file_*): metadata and the tensor table, whatever the architecture,
 * with no weights read. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>

struct lf_gguf_file {
    lf_gguf *g;
    char **keys, **names; /* NUL-terminated copies of the header's strings */
};

void lf_gguf_file_close(lf_gguf_file *f) {
    if (!f) return;
    if (f->keys)
        for (uint64_t i = 0; i < f->g->n_kv; i++) free(f->keys[i]);
    if (f->names)
        for (uint64_t i = 0; i < f->g->n_tensors; i++) free(f->names[i]);
    free(f->keys);
    free(f->names);
    lf__gguf_free(f->g);
    free(f);
}

lf_status lf_gguf_file_open(const char *path, lf_gguf_file **out, char *errbuf, size_t errcap) {
    if (out) *out = NULL;
    if (!path || !out) return LF_E_INVALID_ARG;
    lf_err err = {{0}};
    lf_gguf_file *f = calloc(1, sizeof *f);
    if (!f) return LF_E_NOMEM;
    lf_status st = lf__gguf_read_file(path, &f->g, &err);
    if (st == LF_OK) {
        f->keys = calloc(f->g->n_kv + 1, sizeof *f->keys);
        f->names = calloc(f->g->n_tensors + 1, sizeof *f->names);
        st = f->keys && f->names ? LF_OK : LF_E_NOMEM;
        for (uint64_t i = 0; st == LF_OK && i < f->g->n_kv; i++)
            if (!(f->keys[i] = lf__gguf_str_dup(f->g->kv[i].key))) st = LF_E_NOMEM;
        for (uint64_t i = 0; st == LF_OK && i < f->g->n_tensors; i++)
            if (!(f->names[i] = lf__gguf_str_dup(f->g->tensors[i].name))) st = LF_E_NOMEM;
    }
    if (st) {
        if (errbuf && errcap) snprintf(errbuf, errcap, "%s: %s", path, err.msg[0] ? err.msg : lf_strerror(st));
        if (f->g) lf_gguf_file_close(f);
        else free(f);
        return st;
    }
    *out = f;
    return LF_OK;
}

uint32_t lf_gguf_file_version(const lf_gguf_file *f) { return f ? f->g->version : 0; }
uint64_t lf_gguf_file_size(const lf_gguf_file *f) { return f ? f->g->file_size : 0; }
size_t lf_gguf_file_meta_count(const lf_gguf_file *f) { return f ? (size_t)f->g->n_kv : 0; }

const char *lf_gguf_file_meta_get(const lf_gguf_file *f, size_t i, char *value, size_t cap) {
    if (!f || i >= f->g->n_kv) return NULL;
    if (value && cap) lf__gguf_kv_format(&f->g->kv[i], value, cap);
    return f->keys[i];
}

size_t lf_gguf_file_tensor_count(const lf_gguf_file *f) { return f ? (size_t)f->g->n_tensors : 0; }

lf_status lf_gguf_file_tensor_get(const lf_gguf_file *f, size_t i, lf_tensor_info *out) {
    if (!f || !out || i >= f->g->n_tensors) return LF_E_INVALID_ARG;
    lf__tensor_info_fill(&f->g->tensors[i], f->names[i], out);
    return LF_OK;
}
