/* gguf_writer.c - streaming GGUF v3 writer and atomic output files.
 *
 * Metadata and tensor infos are serialised into one growing buffer; tensor
 * data is then appended by the caller in declaration order, so a model far
 * larger than memory can be written piece by piece. */
#include "gguf.h"
#include "../tensor/quant_types.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct wtensor {
    uint64_t nbytes;
} wtensor;

struct lf_gguf_writer {
    uint32_t alignment;
    /* kv section: serialised entries */
    uint8_t *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    /* tensor-info section */
    uint8_t *ti;
    size_t ti_len, ti_cap;
    wtensor *tensors;
    uint64_t n_tensors, tensors_cap;
    uint64_t data_size;   /* bytes of the data section, with padding */
    /* streaming state */
    uint64_t cur_tensor;  /* tensor being written */
    uint64_t cur_written; /* bytes of it written */
    bool header_written;
};

static lf_status buf_put(uint8_t **buf, size_t *len, size_t *cap, const void *src, size_t n) {
    if (*len + n > *cap) {
        size_t nc = *cap ? *cap : 4096;
        while (nc < *len + n) nc *= 2;
        uint8_t *nb = realloc(*buf, nc);
        if (!nb) return LF_E_NOMEM;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, src, n);
    *len += n;
    return LF_OK;
}

#define KV_PUT(w, src, n) buf_put(&(w)->kv, &(w)->kv_len, &(w)->kv_cap, (src), (n))

static lf_status kv_put_u32(lf_gguf_writer *w, uint32_t v) { return KV_PUT(w, &v, 4); }
static lf_status kv_put_u64(lf_gguf_writer *w, uint64_t v) { return KV_PUT(w, &v, 8); }
static lf_status kv_put_str(lf_gguf_writer *w, const char *s, uint64_t n) {
    lf_status st = kv_put_u64(w, n);
    return st ? st : KV_PUT(w, s, n);
}

static lf_status kv_begin(lf_gguf_writer *w, const char *key, uint32_t type) {
    if (!w || !key || w->header_written) return LF_E_INVALID_ARG;
    lf_status st = kv_put_str(w, key, strlen(key));
    if (!st) st = kv_put_u32(w, type);
    if (!st) w->n_kv++;
    return st;
}

lf_status lf__gguf_writer_create(uint32_t alignment, lf_gguf_writer **out) {
    *out = NULL;
    if (alignment == 0 || (alignment & (alignment - 1))) return LF_E_INVALID_ARG;
    lf_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return LF_E_NOMEM;
    w->alignment = alignment;
    *out = w;
    if (alignment != LF_GGUF_DEFAULT_ALIGNMENT) return lf__gguf_writer_set_u32(w, "general.alignment", alignment);
    return LF_OK;
}

void lf__gguf_writer_destroy(lf_gguf_writer *w) {
    if (!w) return;
    free(w->kv);
    free(w->ti);
    free(w->tensors);
    free(w);
}

lf_status lf__gguf_writer_set_u32(lf_gguf_writer *w, const char *key, uint32_t v) {
    lf_status st = kv_begin(w, key, LF_GGUF_U32);
    return st ? st : kv_put_u32(w, v);
}
lf_status lf__gguf_writer_set_i32(lf_gguf_writer *w, const char *key, int32_t v) {
    lf_status st = kv_begin(w, key, LF_GGUF_I32);
    return st ? st : KV_PUT(w, &v, 4);
}
lf_status lf__gguf_writer_set_u64(lf_gguf_writer *w, const char *key, uint64_t v) {
    lf_status st = kv_begin(w, key, LF_GGUF_U64);
    return st ? st : kv_put_u64(w, v);
}
lf_status lf__gguf_writer_set_f32(lf_gguf_writer *w, const char *key, float v) {
    lf_status st = kv_begin(w, key, LF_GGUF_F32);
    return st ? st : KV_PUT(w, &v, 4);
}
lf_status lf__gguf_writer_set_bool(lf_gguf_writer *w, const char *key, bool v) {
    const uint8_t b = v ? 1 : 0;
    lf_status st = kv_begin(w, key, LF_GGUF_BOOL);
    return st ? st : KV_PUT(w, &b, 1);
}
lf_status lf__gguf_writer_set_str(lf_gguf_writer *w, const char *key, const char *v) {
    if (!v) return LF_E_INVALID_ARG;
    lf_status st = kv_begin(w, key, LF_GGUF_STRING);
    return st ? st : kv_put_str(w, v, strlen(v));
}

lf_status lf__gguf_writer_set_arr(lf_gguf_writer *w, const char *key, uint32_t elem_type, const void *data,
                                  uint64_t n) {
    const size_t sz = lf__gguf_vtype_size(elem_type);
    if (!sz || (n && !data)) return LF_E_INVALID_ARG;
    lf_status st = kv_begin(w, key, LF_GGUF_ARRAY);
    if (!st) st = kv_put_u32(w, elem_type);
    if (!st) st = kv_put_u64(w, n);
    if (!st && n) st = KV_PUT(w, data, (size_t)(n * sz));
    return st;
}

lf_status lf__gguf_writer_set_arr_str(lf_gguf_writer *w, const char *key, const lf_gguf_str *strs, uint64_t n) {
    lf_status st = kv_begin(w, key, LF_GGUF_ARRAY);
    if (!st) st = kv_put_u32(w, LF_GGUF_STRING);
    if (!st) st = kv_put_u64(w, n);
    for (uint64_t i = 0; i < n && !st; i++) st = kv_put_str(w, strs[i].ptr, strs[i].len);
    return st;
}

lf_status lf__gguf_writer_copy_kv(lf_gguf_writer *w, const lf_gguf_kv *kv) {
    if (!w || w->header_written) return LF_E_INVALID_ARG;
    lf_status st = kv_put_str(w, kv->key.ptr, kv->key.len);
    if (!st) st = kv_put_u32(w, kv->type);
    if (!st && kv->type == LF_GGUF_ARRAY) {
        st = kv_put_u32(w, kv->arr_type);
        if (!st) st = kv_put_u64(w, kv->arr_n);
    }
    if (!st) st = KV_PUT(w, kv->data, (size_t)kv->data_len);
    if (!st) w->n_kv++;
    return st;
}

lf_status lf__gguf_writer_add_tensor(lf_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                     const uint64_t *ne, uint64_t *nbytes) {
    if (!w || !name || w->header_written || n_dims < 1 || n_dims > LF_GGUF_MAX_DIMS) return LF_E_INVALID_ARG;
    const lf_type_traits *tt = lf__type_traits_get(type);
    if (!tt || ne[0] % tt->block) return LF_E_INVALID_ARG;
    uint64_t nelem = 1;
    for (uint32_t d = 0; d < n_dims; d++)
        if (ne[d] == 0 || !lf__mul_u64(nelem, ne[d], &nelem)) return LF_E_INVALID_ARG;
    const uint64_t size = nelem / tt->block * tt->block_size;
    if (w->n_tensors == w->tensors_cap) {
        const uint64_t nc = w->tensors_cap ? w->tensors_cap * 2 : 64;
        wtensor *nt = realloc(w->tensors, nc * sizeof *nt);
        if (!nt) return LF_E_NOMEM;
        w->tensors = nt;
        w->tensors_cap = nc;
    }
    const uint64_t len = strlen(name);
    lf_status st = buf_put(&w->ti, &w->ti_len, &w->ti_cap, &len, 8);
    if (!st) st = buf_put(&w->ti, &w->ti_len, &w->ti_cap, name, len);
    if (!st) st = buf_put(&w->ti, &w->ti_len, &w->ti_cap, &n_dims, 4);
    for (uint32_t d = 0; d < n_dims && !st; d++) st = buf_put(&w->ti, &w->ti_len, &w->ti_cap, &ne[d], 8);
    if (!st) st = buf_put(&w->ti, &w->ti_len, &w->ti_cap, &type, 4);
    if (!st) st = buf_put(&w->ti, &w->ti_len, &w->ti_cap, &w->data_size, 8);
    if (st) return st;
    w->tensors[w->n_tensors++].nbytes = size;
    w->data_size += lf__align_up(size, w->alignment);
    if (nbytes) *nbytes = size;
    return LF_OK;
}

static uint64_t header_bytes(const lf_gguf_writer *w) {
    return 4 + 4 + 8 + 8 + w->kv_len + w->ti_len;
}

uint64_t lf__gguf_writer_file_size(const lf_gguf_writer *w) {
    return lf__align_up(header_bytes(w), w->alignment) + w->data_size;
}

lf_status lf__write_all(int fd, const void *buf, size_t n, lf_err *err) {
    const uint8_t *p = buf;
    while (n > 0) {
        const ssize_t r = write(fd, p, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            return lf__err_set(err, LF_E_IO, "write: %s", strerror(errno));
        }
        if (r == 0) return lf__err_set(err, LF_E_IO, "write: no progress (disk full?)");
        p += r;
        n -= (size_t)r;
    }
    return LF_OK;
}

static lf_status write_zeros(int fd, uint64_t n, lf_err *err) {
    static const uint8_t zeros[4096];
    while (n > 0) {
        const size_t k = (size_t)LF_MIN(n, (uint64_t)sizeof zeros);
        lf_status st = lf__write_all(fd, zeros, k, err);
        if (st) return st;
        n -= k;
    }
    return LF_OK;
}

lf_status lf__gguf_writer_write_header(lf_gguf_writer *w, int fd, lf_err *err) {
    if (w->header_written) return lf__err_set(err, LF_E_INVALID_ARG, "GGUF header written twice");
    uint8_t head[24];
    memcpy(head, "GGUF", 4);
    const uint32_t version = 3;
    memcpy(head + 4, &version, 4);
    memcpy(head + 8, &w->n_tensors, 8);
    memcpy(head + 16, &w->n_kv, 8);
    lf_status st = lf__write_all(fd, head, sizeof head, err);
    if (!st) st = lf__write_all(fd, w->kv, w->kv_len, err);
    if (!st) st = lf__write_all(fd, w->ti, w->ti_len, err);
    if (!st) st = write_zeros(fd, lf__align_up(header_bytes(w), w->alignment) - header_bytes(w), err);
    if (st) return st;
    w->header_written = true;
    w->cur_tensor = 0;
    w->cur_written = 0;
    return LF_OK;
}

lf_status lf__gguf_writer_write_data(lf_gguf_writer *w, int fd, const void *data, uint64_t n, lf_err *err) {
    const uint8_t *p = data;
    if (!w->header_written) return lf__err_set(err, LF_E_INVALID_ARG, "tensor data before the GGUF header");
    while (n > 0) {
        if (w->cur_tensor >= w->n_tensors)
            return lf__err_set(err, LF_E_INVALID_ARG, "more tensor data than declared");
        const uint64_t want = w->tensors[w->cur_tensor].nbytes - w->cur_written;
        const uint64_t k = LF_MIN(want, n);
        lf_status st = lf__write_all(fd, p, (size_t)k, err);
        if (st) return st;
        p += k;
        n -= k;
        w->cur_written += k;
        if (w->cur_written == w->tensors[w->cur_tensor].nbytes) {
            const uint64_t size = w->tensors[w->cur_tensor].nbytes;
            st = write_zeros(fd, lf__align_up(size, w->alignment) - size, err);
            if (st) return st;
            w->cur_tensor++;
            w->cur_written = 0;
        }
    }
    return LF_OK;
}

lf_status lf__gguf_writer_finish(lf_gguf_writer *w, lf_err *err) {
    if (!w->header_written || w->cur_tensor != w->n_tensors)
        return lf__err_set(err, LF_E_INVALID_ARG, "GGUF incomplete: %" PRIu64 " of %" PRIu64 " tensors written",
                           w->cur_tensor, w->n_tensors);
    return LF_OK;
}

/* ---- atomic output files ----------------------------------------------- */

lf_status lf__outfile_open(lf_outfile *f, const char *path, bool force, lf_err *err) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->force = force;
    struct stat sb;
    if (!force && lstat(path, &sb) == 0)
        return lf__err_set(err, LF_E_EXISTS, "%s exists (overwriting was not asked for)", path);
    /* forced: only a regular file is replaced, never a device, FIFO,
     * directory or symbolic link that happens to have the name */
    if (force && lstat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return lf__err_set(err, LF_E_EXISTS, "%s exists and is not a regular file; it is never replaced", path);
    f->path = strdup(path);
    char *dircopy = strdup(path);
    if (!f->path || !dircopy) {
        free(dircopy);
        lf__outfile_abort(f);
        return lf__err_set(err, LF_E_NOMEM, "path copy");
    }
    const char *dir = dirname(dircopy);
#ifdef O_TMPFILE
    f->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
#endif
    if (f->fd < 0) {
        /* No O_TMPFILE here: a hidden name beside the target. */
        const size_t n = strlen(path) + 32;
        f->tmp_path = malloc(n);
        if (!f->tmp_path) {
            free(dircopy);
            lf__outfile_abort(f);
            return lf__err_set(err, LF_E_NOMEM, "path copy");
        }
        char *pathcopy = strdup(path);
        snprintf(f->tmp_path, n, "%s/.%s.tmp.%ld", dir, pathcopy ? basename(pathcopy) : "out", (long)getpid());
        free(pathcopy);
        f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (f->fd < 0) {
            lf_status st = lf__err_set(err, LF_E_IO, "create %s: %s", f->tmp_path, strerror(errno));
            free(f->tmp_path);
            f->tmp_path = NULL;
            free(dircopy);
            lf__outfile_abort(f);
            return st;
        }
    }
    free(dircopy);
    return LF_OK;
}

lf_status lf__outfile_commit(lf_outfile *f, lf_err *err) {
    lf_status st = LF_OK;
    if (fsync(f->fd) != 0) {
        st = lf__err_set(err, LF_E_IO, "fsync %s: %s", f->path, strerror(errno));
        goto out;
    }
    if (!f->tmp_path) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
        /* linkat cannot replace a file: to overwrite, link under a temporary
         * name and rename that over the target, which is atomic. */
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.lftmp.%ld", f->path, (long)getpid());
        const char *target = f->force ? tmp : f->path;
        if (f->force) unlink(tmp);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, target, AT_SYMLINK_FOLLOW) != 0) {
            st = lf__err_set(err, errno == EEXIST ? LF_E_EXISTS : LF_E_IO, "link %s: %s", f->path, strerror(errno));
            goto out;
        }
        if (f->force && rename(tmp, f->path) != 0) {
            st = lf__err_set(err, LF_E_IO, "rename to %s: %s", f->path, strerror(errno));
            unlink(tmp);
            goto out;
        }
    } else if (rename(f->tmp_path, f->path) != 0) {
        st = lf__err_set(err, LF_E_IO, "rename to %s: %s", f->path, strerror(errno));
        goto out;
    } else {
        free(f->tmp_path);
        f->tmp_path = NULL;
    }
out:
    lf__outfile_abort(f);
    return st;
}

void lf__outfile_abort(lf_outfile *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    if (f->tmp_path) unlink(f->tmp_path);
    free(f->tmp_path);
    free(f->path);
    f->tmp_path = NULL;
    f->path = NULL;
}
