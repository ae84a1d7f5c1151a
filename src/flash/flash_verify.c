/* flash_verify.c - `llmflash verify`: every checksum of a flash file. */
#include "flash_format.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

lf_status lf__flash_verify_header(int fd, const lf_gguf *g, lf_err *err) {
    uint8_t *hdr = malloc(g->data_offset);
    if (!hdr) return LF_E_NOMEM;
    lf_status st = lf__pread_all(fd, hdr, g->data_offset, 0, err);
    if (!st) {
        uint8_t *field = lf__flash_header_checksum_field(hdr, g->data_offset);
        if (!field) {
            st = lf__err_set(err, LF_E_CORRUPT, "header has no %s", LF_KEY_HEADER_CHECKSUM);
        } else {
            const uint64_t want = lf__load_u64(field);
            memset(field, 0, 8);
            if (lf__checksum64(hdr, g->data_offset) != want)
                st = lf__err_set(err, LF_E_CORRUPT, "header (first %" PRIu64 " bytes) fails its checksum", g->data_offset);
        }
    }
    free(hdr);
    return st;
}

/* The per-tensor checksum array, checked for its type and length; NULL
 * (with the reason in err) if it is not usable. */
static const lf_gguf_kv *tensor_checksums(const lf_gguf *g, lf_err *err) {
    const lf_gguf_kv *sums = lf__gguf_find(g, LF_KEY_TENSOR_CHECKSUMS);
    if (!sums || sums->type != LF_GGUF_ARRAY || sums->arr_type != LF_GGUF_U64 || sums->arr_n != g->n_tensors) {
        lf__err_set(err, LF_E_CORRUPT, "%s is missing or has the wrong length", LF_KEY_TENSOR_CHECKSUMS);
        return NULL;
    }
    return sums;
}

lf_status lf__flash_verify_tensor(const lf_gguf *g, uint64_t i, const void *data, lf_err *err) {
    const lf_gguf_kv *sums = tensor_checksums(g, err);
    if (!sums) return LF_E_CORRUPT;
    const uint64_t want = lf__load_u64(sums->data + 8 * i);
    const lf_gguf_tensor *t = &g->tensors[i];
    if (want != 0 && lf__checksum64(data, t->nbytes) != want)
        return lf__err_set(err, LF_E_CORRUPT, "tensor '%.*s' fails its checksum: the file is corrupt",
                           (int)LF_MIN(t->name.len, (uint64_t)128), t->name.ptr);
    return LF_OK;
}

/* Tensor i read from fd through buf (chunk bytes) into h, against want. */
static lf_status check_tensor_fd(int fd, const lf_gguf *g, uint64_t i, uint64_t want, uint8_t *buf, size_t chunk,
                                 XXH64_state_t *h, lf_err *err) {
    const lf_gguf_tensor *t = &g->tensors[i];
    lf_status st = LF_OK;
    XXH64_reset(h, 0);
    for (uint64_t off = 0; off < t->nbytes && !st; off += chunk) {
        const size_t n = (size_t)LF_MIN((uint64_t)chunk, t->nbytes - off);
        st = lf__pread_all(fd, buf, n, t->file_offset + off, err);
        if (!st) XXH64_update(h, buf, n);
    }
    if (!st && XXH64_digest(h) != want)
        st = lf__err_set(err, LF_E_CORRUPT, "tensor '%.*s' fails its checksum: the file is corrupt",
                         (int)LF_MIN(t->name.len, (uint64_t)128), t->name.ptr);
    return st;
}

static lf_status check_tensors(int fd, const lf_gguf *g, lf_err *err) {
    const lf_gguf_kv *sums = tensor_checksums(g, err);
    if (!sums) return LF_E_CORRUPT;
    const size_t chunk = 4u << 20;
    uint8_t *buf = malloc(chunk);
    XXH64_state_t *h = XXH64_createState();
    lf_status st = buf && h ? LF_OK : LF_E_NOMEM;
    for (uint64_t i = 0; i < g->n_tensors && !st; i++) {
        const uint64_t want = lf__load_u64(sums->data + 8 * i);
        if (want == 0) continue; /* bundle data: checked group by group */
        st = check_tensor_fd(fd, g, i, want, buf, chunk, h, err);
    }
    XXH64_freeState(h);
    free(buf);
    return st;
}

lf_status lf__flash_verify_tensor_in_file(int fd, const lf_gguf *g, uint64_t i, lf_err *err) {
    const lf_gguf_kv *sums = tensor_checksums(g, err);
    if (!sums) return LF_E_CORRUPT;
    const uint64_t want = lf__load_u64(sums->data + 8 * i);
    if (want == 0) return LF_OK;
    const size_t chunk = 1u << 20;
    uint8_t *buf = malloc(chunk);
    XXH64_state_t *h = XXH64_createState();
    const lf_status st = buf && h ? check_tensor_fd(fd, g, i, want, buf, chunk, h, err)
                                  : lf__err_set(err, LF_E_NOMEM, "checking a tensor");
    XXH64_freeState(h);
    free(buf);
    return st;
}

static lf_status check_groups(int fd, const lf_flash *f, uint64_t *checked, lf_err *err) {
    uint64_t max_stored = 0, max_raw = 0;
    for (uint32_t l = 0; l < f->n_layer; l++)
        for (uint64_t g = 0; g < f->layers[l].n_groups; g++) {
            max_stored = LF_MAX(max_stored, (uint64_t)f->layers[l].index[g].stored);
            max_raw = LF_MAX(max_raw, (uint64_t)f->layers[l].index[g].raw);
        }
    uint8_t *stored = malloc(max_stored ? max_stored : 1), *raw = malloc(max_raw ? max_raw : 1);
    lf_status st = stored && raw ? LF_OK : LF_E_NOMEM;
    for (uint32_t l = 0; l < f->n_layer && !st; l++) {
        const lf_flash_layer *L = &f->layers[l];
        for (uint64_t g = 0; g < L->n_groups && !st; g++) {
            st = lf__pread_all(fd, stored, L->index[g].stored, L->data_offset + L->index[g].offset, err);
            if (!st) st = lf__flash_decode_group(f, l, g, stored, raw, true, err);
            if (!st) (*checked)++;
        }
    }
    free(stored);
    free(raw);
    return st;
}

lf_status lf_verify(const char *path, uint64_t *groups_checked, char *errbuf, size_t errcap) {
    lf_err err = {{0}};
    uint64_t checked = 0;
    lf_gguf *g = NULL;
    lf_flash *f = NULL;
    lf_status st;
    int fd = -1;
    uint64_t size = 0;
    if ((st = lf__open_input(path, 0, &fd, &size, &err))) goto out;
    if ((st = lf__gguf_read_fd(fd, size, &g, &err))) goto out;
    if (!lf__flash_detect(g)) {
        st = lf__err_set(&err, LF_E_INVALID_ARG, "%s is not a flash file (no %s); convert it first", path, LF_KEY_FORMAT);
        goto out;
    }
    if ((st = lf__flash_check_size(g, &err))) goto out;
    if ((st = lf__flash_verify_header(fd, g, &err))) goto out;
    if ((st = check_tensors(fd, g, &err))) goto out;
    if ((st = lf__flash_open(g, fd, &f, &err))) goto out;
    st = check_groups(fd, f, &checked, &err);
out:
    if (groups_checked) *groups_checked = checked;
    lf__flash_free(f);
    lf__gguf_free(g);
    if (fd >= 0) close(fd);
    if (st) lf__err_copy_out(&err, errbuf, errcap);
    return st;
}
