/* gguf_reader.c - bounds-checked GGUF parser.
 *
 * The header is read into one owned buffer that grows as parsing needs more
 * bytes. Entries record offsets while parsing (the buffer may move) and are
 * turned into pointers once the buffer is final. */
#include "gguf.h"
#include "../tensor/quant_types.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Nesting limit for arrays of arrays: real files use one level. */
#define LF_GGUF_MAX_DEPTH 8

typedef struct cursor {
    int fd;            /* -1 when the whole file is in buf already */
    uint64_t file_size;
    uint8_t *buf;
    uint64_t len;      /* valid bytes in buf */
    uint64_t cap;
    uint64_t pos;
    lf_err *err;
} cursor;

static lf_status cur_need(cursor *c, uint64_t n, const char *what) {
    uint64_t end;
    if (!lf__add_u64(c->pos, n, &end) || end > c->file_size)
        return lf__err_set(c->err, LF_E_TRUNCATED,
                           "%s at offset %" PRIu64 " needs %" PRIu64 " bytes but the file has %" PRIu64,
                           what, c->pos, n, c->file_size);
    if (end <= c->len) return LF_OK;
    if (c->fd < 0) return lf__err_set(c->err, LF_E_TRUNCATED, "%s: buffer ends early", what);
    /* grow geometrically, read what we can */
    uint64_t want = LF_MAX(end, LF_MAX(c->cap * 2, (uint64_t)1 << 20));
    want = LF_MIN(want, c->file_size);
    if (want > c->cap) {
        uint8_t *nb = realloc(c->buf, want);
        if (!nb) return lf__err_set(c->err, LF_E_NOMEM, "header buffer of %" PRIu64 " bytes", want);
        c->buf = nb;
        c->cap = want;
    }
    while (c->len < want) {
        ssize_t r = pread(c->fd, c->buf + c->len, want - c->len, (off_t)c->len);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return lf__err_set(c->err, LF_E_IO, "read header at offset %" PRIu64 ": %s", c->len, strerror(errno));
        }
        if (r == 0)
            return lf__err_set(c->err, LF_E_TRUNCATED, "file shrank while reading the header at %" PRIu64, c->len);
        c->len += (uint64_t)r;
    }
    return LF_OK;
}

static lf_status cur_u32(cursor *c, uint32_t *v, const char *what) {
    lf_status st = cur_need(c, 4, what);
    if (st) return st;
    *v = lf__load_u32(c->buf + c->pos);
    c->pos += 4;
    return LF_OK;
}

static lf_status cur_u64(cursor *c, uint64_t *v, const char *what) {
    lf_status st = cur_need(c, 8, what);
    if (st) return st;
    *v = lf__load_u64(c->buf + c->pos);
    c->pos += 8;
    return LF_OK;
}

/* A string is stored as (len, bytes). Records the offset of the bytes. */
static lf_status cur_str(cursor *c, uint64_t *off, uint64_t *len, const char *what) {
    lf_status st = cur_u64(c, len, what);
    if (st) return st;
    if (*len > c->file_size - c->pos)
        return lf__err_set(c->err, LF_E_TRUNCATED, "%s: string length %" PRIu64 " at offset %" PRIu64
                           " runs past the end of the file", what, *len, c->pos - 8);
    st = cur_need(c, *len, what);
    if (st) return st;
    *off = c->pos;
    c->pos += *len;
    return LF_OK;
}

size_t lf__gguf_vtype_size(uint32_t type) {
    switch (type) {
    case LF_GGUF_U8: case LF_GGUF_I8: case LF_GGUF_BOOL: return 1;
    case LF_GGUF_U16: case LF_GGUF_I16: return 2;
    case LF_GGUF_U32: case LF_GGUF_I32: case LF_GGUF_F32: return 4;
    case LF_GGUF_U64: case LF_GGUF_I64: case LF_GGUF_F64: return 8;
    default: return 0;
    }
}

const char *lf__gguf_vtype_name(uint32_t type) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return type < LF_GGUF_VTYPE_COUNT ? names[type] : "?";
}

/* Skips one value of `type`, validating it; key names the entry. */
static lf_status skip_value(cursor *c, uint32_t type, const char *key, int depth) {
    if (type >= LF_GGUF_VTYPE_COUNT)
        return lf__err_set(c->err, LF_E_GGUF_VALUE_TYPE, "metadata key '%s': unknown value type %u", key, type);
    const size_t sz = lf__gguf_vtype_size(type);
    if (sz) {
        lf_status st = cur_need(c, sz, key);
        if (st) return st;
        if (type == LF_GGUF_BOOL && c->buf[c->pos] > 1)
            return lf__err_set(c->err, LF_E_GGUF_VALUE_TYPE, "metadata key '%s': bool value %u", key, c->buf[c->pos]);
        c->pos += sz;
        return LF_OK;
    }
    if (type == LF_GGUF_STRING) {
        uint64_t off, len;
        return cur_str(c, &off, &len, key);
    }
    /* array */
    if (depth >= LF_GGUF_MAX_DEPTH)
        return lf__err_set(c->err, LF_E_GGUF_VALUE_TYPE, "metadata key '%s': arrays nested deeper than %d",
                           key, LF_GGUF_MAX_DEPTH);
    uint32_t et;
    uint64_t n;
    lf_status st = cur_u32(c, &et, key);
    if (!st) st = cur_u64(c, &n, key);
    if (st) return st;
    if (et >= LF_GGUF_VTYPE_COUNT)
        return lf__err_set(c->err, LF_E_GGUF_VALUE_TYPE, "metadata key '%s': unknown array element type %u", key, et);
    /* every element takes at least 1 byte (scalars) or 8 (strings) or 12 (arrays) */
    const uint64_t min_elem = lf__gguf_vtype_size(et) ? lf__gguf_vtype_size(et) : (et == LF_GGUF_STRING ? 8 : 12);
    if (n > (c->file_size - c->pos) / min_elem)
        return lf__err_set(c->err, LF_E_GGUF_COUNT, "metadata key '%s': array of %" PRIu64
                           " %s elements cannot fit in the %" PRIu64 " bytes left",
                           key, n, lf__gguf_vtype_name(et), c->file_size - c->pos);
    if (lf__gguf_vtype_size(et)) {
        st = cur_need(c, n * min_elem, key);
        if (st) return st;
        if (et == LF_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (c->buf[c->pos + i] > 1)
                    return lf__err_set(c->err, LF_E_GGUF_VALUE_TYPE, "metadata key '%s': bool element %" PRIu64
                                       " has value %u", key, i, c->buf[c->pos + i]);
        c->pos += n * min_elem;
        return LF_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        st = skip_value(c, et, key, depth + 1);
        if (st) return st;
    }
    return LF_OK;
}

typedef struct kv_rec {
    uint64_t key_off, key_len, data_off, data_len, arr_n;
    uint32_t type, arr_type;
} kv_rec;

typedef struct tensor_rec {
    uint64_t name_off, name_len;
} tensor_rec;

static bool str_eq_n(const uint8_t *a, uint64_t alen, const uint8_t *b, uint64_t blen) {
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* Hash set of strings for duplicate detection: open addressing over indices. */
static uint64_t hash_bytes(const uint8_t *p, uint64_t n) {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Returns the index of a duplicate among names[0..n) or -1. */
static int64_t find_duplicate(const uint8_t *buf, const uint64_t *offs, const uint64_t *lens, uint64_t n,
                              size_t stride, lf_status *st) {
    *st = LF_OK;
    if (n < 2) return -1;
    uint64_t cap = 16;
    while (cap < n * 2) cap *= 2;
    int64_t *slots = malloc(cap * sizeof *slots);
    if (!slots) {
        *st = LF_E_NOMEM;
        return -1;
    }
    for (uint64_t i = 0; i < cap; i++) slots[i] = -1;
    int64_t dup = -1;
    for (uint64_t i = 0; i < n && dup < 0; i++) {
        const uint64_t off = *(const uint64_t *)((const char *)offs + i * stride);
        const uint64_t len = *(const uint64_t *)((const char *)lens + i * stride);
        uint64_t h = hash_bytes(buf + off, len) & (cap - 1);
        for (;;) {
            const int64_t j = slots[h];
            if (j < 0) {
                slots[h] = (int64_t)i;
                break;
            }
            const uint64_t joff = *(const uint64_t *)((const char *)offs + (uint64_t)j * stride);
            const uint64_t jlen = *(const uint64_t *)((const char *)lens + (uint64_t)j * stride);
            if (str_eq_n(buf + off, len, buf + joff, jlen)) {
                dup = (int64_t)i;
                break;
            }
            h = (h + 1) & (cap - 1);
        }
    }
    free(slots);
    return dup;
}

typedef struct span {
    uint64_t begin, end;
    uint64_t index;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

static void fmt_name(char *dst, size_t cap, const uint8_t *p, uint64_t len) {
    const size_t n = (size_t)LF_MIN(len, (uint64_t)cap - 1);
    for (size_t i = 0; i < n; i++) dst[i] = (p[i] >= 32 && p[i] < 127) ? (char)p[i] : '?';
    dst[n] = '\0';
}

static lf_status parse(cursor *c, lf_gguf **out) {
    lf_err *err = c->err;
    lf_status st = LF_OK;
    kv_rec *kvs = NULL;
    tensor_rec *trecs = NULL;
    span *spans = NULL;
    lf_gguf *g = calloc(1, sizeof *g);
    if (!g) return LF_E_NOMEM;
    g->file_size = c->file_size;

    /* an I/O error on the first read is an I/O error, not a bad magic */
    if (c->file_size >= 4 && (st = cur_need(c, 4, "magic")) != LF_OK && st != LF_E_TRUNCATED) goto fail;
    if (c->file_size < 4 || st) {
        st = lf__err_set(err, LF_E_GGUF_MAGIC, "file of %" PRIu64 " bytes is too short for the GGUF magic",
                         c->file_size);
        goto fail;
    }
    if (memcmp(c->buf, "GGUF", 4) != 0) {
        st = lf__err_set(err, LF_E_GGUF_MAGIC, "bad magic %02x %02x %02x %02x (expected 'GGUF')",
                         c->buf[0], c->buf[1], c->buf[2], c->buf[3]);
        goto fail;
    }
    c->pos = 4;
    if ((st = cur_u32(c, &g->version, "version"))) goto fail;
    if (g->version != 2 && g->version != 3) {
        st = lf__err_set(err, LF_E_GGUF_VERSION, "GGUF version %u is not supported (only 2 and 3)", g->version);
        goto fail;
    }
    if ((st = cur_u64(c, &g->n_tensors, "tensor_count"))) goto fail;
    if ((st = cur_u64(c, &g->n_kv, "metadata_kv_count"))) goto fail;
    /* a kv takes >= 8+1+4+1 bytes, a tensor info >= 8+1+4+8+4+8 */
    if (g->n_kv > (c->file_size - c->pos) / 14) {
        st = lf__err_set(err, LF_E_GGUF_COUNT, "metadata_kv_count %" PRIu64 " cannot fit in a %" PRIu64 "-byte file",
                         g->n_kv, c->file_size);
        goto fail;
    }
    if (g->n_tensors > (c->file_size - c->pos) / 33) {
        st = lf__err_set(err, LF_E_GGUF_COUNT, "tensor_count %" PRIu64 " cannot fit in a %" PRIu64 "-byte file",
                         g->n_tensors, c->file_size);
        goto fail;
    }
    kvs = calloc(g->n_kv ? g->n_kv : 1, sizeof *kvs);
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    trecs = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *trecs);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!kvs || !g->kv || !trecs || !g->tensors) {
        st = lf__err_set(err, LF_E_NOMEM, "metadata tables");
        goto fail;
    }

    g->alignment = LF_GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        kv_rec *r = &kvs[i];
        char what[64];
        snprintf(what, sizeof what, "key of metadata entry %" PRIu64, i);
        if ((st = cur_str(c, &r->key_off, &r->key_len, what))) goto fail;
        char key[128];
        fmt_name(key, sizeof key, c->buf + r->key_off, r->key_len);
        if ((st = cur_u32(c, &r->type, key))) goto fail;
        if (r->type >= LF_GGUF_VTYPE_COUNT) {
            st = lf__err_set(err, LF_E_GGUF_VALUE_TYPE, "metadata key '%s': unknown value type %u", key, r->type);
            goto fail;
        }
        const uint64_t start = c->pos;
        if (r->type == LF_GGUF_ARRAY) {
            /* peek the array header for quick access */
            if ((st = cur_need(c, 12, key))) goto fail;
            r->arr_type = lf__load_u32(c->buf + c->pos);
            r->arr_n = lf__load_u64(c->buf + c->pos + 4);
        }
        if ((st = skip_value(c, r->type, key, 0))) goto fail;
        r->data_off = start;
        r->data_len = c->pos - start;
        if (r->type == LF_GGUF_ARRAY) {
            r->data_off += 12;
            r->data_len -= 12;
        }
        if (r->key_len == 17 && memcmp(c->buf + r->key_off, "general.alignment", 17) == 0) {
            if (r->type != LF_GGUF_U32) {
                st = lf__err_set(err, LF_E_GGUF_ALIGNMENT, "general.alignment has type %s, expected u32",
                                 lf__gguf_vtype_name(r->type));
                goto fail;
            }
            const uint32_t a = lf__load_u32(c->buf + r->data_off);
            if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 24)) {
                st = lf__err_set(err, LF_E_GGUF_ALIGNMENT, "general.alignment = %u is not a power of two up to 16 MiB", a);
                goto fail;
            }
            g->alignment = a;
        }
    }

    for (uint64_t i = 0; i < g->n_tensors; i++) {
        lf_gguf_tensor *t = &g->tensors[i];
        char what[64], name[128];
        snprintf(what, sizeof what, "name of tensor %" PRIu64, i);
        if ((st = cur_str(c, &trecs[i].name_off, &trecs[i].name_len, what))) goto fail;
        fmt_name(name, sizeof name, c->buf + trecs[i].name_off, trecs[i].name_len);
        if (trecs[i].name_len == 0) {
            st = lf__err_set(err, LF_E_GGUF_SHAPE, "tensor %" PRIu64 " has an empty name", i);
            goto fail;
        }
        if ((st = cur_u32(c, &t->n_dims, name))) goto fail;
        if (t->n_dims == 0 || t->n_dims > LF_GGUF_MAX_DIMS) {
            st = lf__err_set(err, LF_E_GGUF_SHAPE, "tensor '%s' has %u dimensions (1 to %d allowed)", name, t->n_dims,
                             LF_GGUF_MAX_DIMS);
            goto fail;
        }
        uint64_t nelem = 1;
        for (uint32_t d = 0; d < LF_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if ((st = cur_u64(c, &t->ne[d], name))) goto fail;
            if (t->ne[d] == 0 || t->ne[d] > ((uint64_t)1 << 62) || !lf__mul_u64(nelem, t->ne[d], &nelem) ||
                nelem > ((uint64_t)1 << 62)) {
                st = lf__err_set(err, LF_E_GGUF_SHAPE, "tensor '%s': dimension %u = %" PRIu64
                                 " is zero or makes the element count overflow", name, d, t->ne[d]);
                goto fail;
            }
        }
        if ((st = cur_u32(c, &t->type, name))) goto fail;
        const lf_type_traits *tt = lf__type_traits_get(t->type);
        if (!tt) {
            st = lf__err_set(err, LF_E_GGUF_TENSOR_TYPE, "tensor '%s' has unknown type id %u", name, t->type);
            goto fail;
        }
        if (t->ne[0] % tt->block) {
            st = lf__err_set(err, LF_E_GGUF_SHAPE, "tensor '%s': row length %" PRIu64 " is not a multiple of the %s block of %u",
                             name, t->ne[0], tt->name, tt->block);
            goto fail;
        }
        if (!lf__mul_u64(nelem / tt->block, tt->block_size, &t->nbytes)) {
            st = lf__err_set(err, LF_E_GGUF_SHAPE, "tensor '%s': %" PRIu64 " elements of %s overflow a 64-bit byte size",
                             name, nelem, tt->name);
            goto fail;
        }
        if ((st = cur_u64(c, &t->offset, name))) goto fail;
        if (t->offset % g->alignment) {
            st = lf__err_set(err, LF_E_GGUF_ALIGNMENT, "tensor '%s': data offset %" PRIu64 " is not a multiple of the alignment %u",
                             name, t->offset, g->alignment);
            goto fail;
        }
    }
    g->data_offset = lf__align_up(c->pos, g->alignment);
    if (g->data_offset > c->file_size && g->n_tensors > 0) {
        st = lf__err_set(err, LF_E_TRUNCATED, "data section starts at %" PRIu64 " beyond the %" PRIu64 "-byte file",
                         g->data_offset, c->file_size);
        goto fail;
    }

    /* The buffer is final: keep only the parsed header (reads came in 1 MiB
     * pieces) and resolve names and values to pointers. */
    {
        uint8_t *shrunk = realloc(c->buf, c->pos ? c->pos : 1);
        if (shrunk) c->buf = shrunk;
    }
    g->header = c->buf;
    g->header_len = c->pos;
    c->buf = NULL;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        g->kv[i].key.ptr = (const char *)g->header + kvs[i].key_off;
        g->kv[i].key.len = kvs[i].key_len;
        g->kv[i].type = kvs[i].type;
        g->kv[i].arr_type = kvs[i].arr_type;
        g->kv[i].arr_n = kvs[i].arr_n;
        g->kv[i].data = g->header + kvs[i].data_off;
        g->kv[i].data_len = kvs[i].data_len;
    }
    int64_t dup = find_duplicate(g->header, &kvs[0].key_off, &kvs[0].key_len, g->n_kv, sizeof(kv_rec), &st);
    if (st) goto fail;
    if (dup >= 0) {
        char key[128];
        fmt_name(key, sizeof key, g->header + kvs[dup].key_off, kvs[dup].key_len);
        st = lf__err_set(err, LF_E_GGUF_DUPLICATE, "metadata key '%s' appears twice", key);
        goto fail;
    }
    dup = find_duplicate(g->header, &trecs[0].name_off, &trecs[0].name_len, g->n_tensors, sizeof(tensor_rec), &st);
    if (st) goto fail;
    if (dup >= 0) {
        char name[128];
        fmt_name(name, sizeof name, g->header + trecs[dup].name_off, trecs[dup].name_len);
        st = lf__err_set(err, LF_E_GGUF_DUPLICATE, "tensor '%s' appears twice", name);
        goto fail;
    }

    spans = malloc((g->n_tensors ? g->n_tensors : 1) * sizeof *spans);
    if (!spans) {
        st = lf__err_set(err, LF_E_NOMEM, "tensor table");
        goto fail;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        lf_gguf_tensor *t = &g->tensors[i];
        t->name.ptr = (const char *)g->header + trecs[i].name_off;
        t->name.len = trecs[i].name_len;
        uint64_t end;
        if (!lf__add_u64(g->data_offset, t->offset, &t->file_offset) ||
            !lf__add_u64(t->file_offset, t->nbytes, &end) || end > c->file_size) {
            char name[128];
            fmt_name(name, sizeof name, (const uint8_t *)t->name.ptr, t->name.len);
            st = lf__err_set(err, LF_E_GGUF_BOUNDS, "tensor '%s': %" PRIu64 " bytes at data offset %" PRIu64
                             " end past the %" PRIu64 "-byte file", name, t->nbytes, t->offset, c->file_size);
            goto fail;
        }
        spans[i] = (span){t->file_offset, end, i};
    }
    qsort(spans, g->n_tensors, sizeof *spans, span_cmp);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        if (spans[i].begin < spans[i - 1].end) {
            char a[128], b[128];
            const lf_gguf_tensor *ta = &g->tensors[spans[i - 1].index], *tb = &g->tensors[spans[i].index];
            fmt_name(a, sizeof a, (const uint8_t *)ta->name.ptr, ta->name.len);
            fmt_name(b, sizeof b, (const uint8_t *)tb->name.ptr, tb->name.len);
            st = lf__err_set(err, LF_E_GGUF_OVERLAP, "tensors '%s' and '%s' overlap at file offset %" PRIu64, a, b,
                             spans[i].begin);
            goto fail;
        }
    }
    free(spans);
    free(kvs);
    free(trecs);
    *out = g;
    return LF_OK;
fail:
    free(spans);
    free(kvs);
    free(trecs);
    lf__gguf_free(g);
    return st;
}

lf_status lf__gguf_read_fd(int fd, uint64_t file_size, lf_gguf **out, lf_err *err) {
    *out = NULL;
    cursor c = {.fd = fd, .file_size = file_size, .err = err};
    lf_status st = parse(&c, out);
    free(c.buf);
    return st;
}

lf_status lf__gguf_read_mem(const void *data, size_t size, lf_gguf **out, lf_err *err) {
    *out = NULL;
    cursor c = {.fd = -1, .file_size = size, .err = err};
    c.buf = malloc(size ? size : 1);
    if (!c.buf) return lf__err_set(err, LF_E_NOMEM, "copy of a %zu-byte GGUF", size);
    if (size) memcpy(c.buf, data, size);
    c.len = c.cap = size;
    lf_status st = parse(&c, out);
    free(c.buf);
    return st;
}

lf_status lf__gguf_read_file(const char *path, lf_gguf **out, lf_err *err) {
    *out = NULL;
    int fd;
    uint64_t size;
    lf_status st = lf__open_input(path, 0, &fd, &size, err);
    if (st) return st;
    st = lf__gguf_read_fd(fd, size, out, err);
    close(fd);
    return st;
}

void lf__gguf_free(lf_gguf *g) {
    if (!g) return;
    free(g->kv);
    free(g->tensors);
    free(g->header);
    free(g);
}

bool lf__gguf_str_eq(lf_gguf_str s, const char *c) {
    const size_t n = strlen(c);
    return s.ptr && s.len == n && memcmp(s.ptr, c, n) == 0;
}

const lf_gguf_kv *lf__gguf_find(const lf_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (lf__gguf_str_eq(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

int64_t lf__gguf_tensor_index(const lf_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (lf__gguf_str_eq(g->tensors[i].name, name)) return (int64_t)i;
    return -1;
}

const lf_gguf_tensor *lf__gguf_find_tensor(const lf_gguf *g, const char *name) {
    const int64_t i = lf__gguf_tensor_index(g, name);
    return i < 0 ? NULL : &g->tensors[i];
}

/* Reads a scalar integer of any width as int64 (u64 above INT64_MAX fails). */
static bool scalar_as_i64(uint32_t type, const uint8_t *p, int64_t *v) {
    switch (type) {
    case LF_GGUF_U8: *v = p[0]; return true;
    case LF_GGUF_I8: *v = (int8_t)p[0]; return true;
    case LF_GGUF_U16: *v = lf__load_u16(p); return true;
    case LF_GGUF_I16: *v = (int16_t)lf__load_u16(p); return true;
    case LF_GGUF_U32: *v = lf__load_u32(p); return true;
    case LF_GGUF_I32: *v = (int32_t)lf__load_u32(p); return true;
    case LF_GGUF_U64: { uint64_t u = lf__load_u64(p); if (u > INT64_MAX) return false; *v = (int64_t)u; return true; }
    case LF_GGUF_I64: *v = (int64_t)lf__load_u64(p); return true;
    default: return false;
    }
}

static double scalar_as_f64(uint32_t type, const uint8_t *p) {
    int64_t i;
    if (type == LF_GGUF_F32) { float f; memcpy(&f, p, 4); return f; }
    if (type == LF_GGUF_F64) { double d; memcpy(&d, p, 8); return d; }
    if (type == LF_GGUF_BOOL) return p[0];
    if (type == LF_GGUF_U64) return (double)lf__load_u64(p);
    return scalar_as_i64(type, p, &i) ? (double)i : 0.0;
}

lf_status lf__gguf_get_u32_or(const lf_gguf *g, const char *key, uint32_t dflt, uint32_t *out, lf_err *err) {
    const lf_gguf_kv *kv = lf__gguf_find(g, key);
    if (!kv) {
        *out = dflt;
        return LF_OK;
    }
    int64_t v;
    if (!scalar_as_i64(kv->type, kv->data, &v) || v < 0 || v > UINT32_MAX)
        return lf__err_set(err, LF_E_MODEL, "metadata key '%s' (%s) is not an unsigned 32-bit integer", key,
                           lf__gguf_vtype_name(kv->type));
    *out = (uint32_t)v;
    return LF_OK;
}

lf_status lf__gguf_get_u64_or(const lf_gguf *g, const char *key, uint64_t dflt, uint64_t *out, lf_err *err) {
    const lf_gguf_kv *kv = lf__gguf_find(g, key);
    if (!kv) {
        *out = dflt;
        return LF_OK;
    }
    int64_t v;
    if (kv->type == LF_GGUF_U64) {
        *out = lf__load_u64(kv->data);
        return LF_OK;
    }
    if (!scalar_as_i64(kv->type, kv->data, &v) || v < 0)
        return lf__err_set(err, LF_E_MODEL, "metadata key '%s' (%s) is not an unsigned integer", key,
                           lf__gguf_vtype_name(kv->type));
    *out = (uint64_t)v;
    return LF_OK;
}

lf_status lf__gguf_get_u32(const lf_gguf *g, const char *key, uint32_t *out, lf_err *err) {
    if (!lf__gguf_find(g, key)) return lf__err_set(err, LF_E_MODEL, "metadata key '%s' is missing", key);
    return lf__gguf_get_u32_or(g, key, 0, out, err);
}

lf_status lf__gguf_get_f32_or(const lf_gguf *g, const char *key, float dflt, float *out, lf_err *err) {
    const lf_gguf_kv *kv = lf__gguf_find(g, key);
    if (!kv) {
        *out = dflt;
        return LF_OK;
    }
    if (!lf__gguf_vtype_size(kv->type) || kv->type == LF_GGUF_BOOL)
        return lf__err_set(err, LF_E_MODEL, "metadata key '%s' (%s) is not a number", key, lf__gguf_vtype_name(kv->type));
    const double v = scalar_as_f64(kv->type, kv->data);
    /* checked before the cast: a double outside float's range is undefined */
    if (!(v >= -FLT_MAX && v <= FLT_MAX))
        return lf__err_set(err, LF_E_MODEL, "metadata key '%s' = %g is not a finite 32-bit float", key, v);
    *out = (float)v;
    return LF_OK;
}

lf_status lf__gguf_get_bool_or(const lf_gguf *g, const char *key, bool dflt, bool *out, lf_err *err) {
    const lf_gguf_kv *kv = lf__gguf_find(g, key);
    if (!kv) {
        *out = dflt;
        return LF_OK;
    }
    if (kv->type != LF_GGUF_BOOL)
        return lf__err_set(err, LF_E_MODEL, "metadata key '%s' (%s) is not a bool", key, lf__gguf_vtype_name(kv->type));
    *out = kv->data[0] != 0;
    return LF_OK;
}

lf_status lf__gguf_get_str(const lf_gguf *g, const char *key, lf_gguf_str *out, lf_err *err) {
    const lf_gguf_kv *kv = lf__gguf_find(g, key);
    out->ptr = NULL;
    out->len = 0;
    if (!kv) return LF_OK;
    if (kv->type != LF_GGUF_STRING)
        return lf__err_set(err, LF_E_MODEL, "metadata key '%s' (%s) is not a string", key, lf__gguf_vtype_name(kv->type));
    out->len = lf__load_u64(kv->data);
    out->ptr = (const char *)kv->data + 8;
    return LF_OK;
}

/* The parser validated every string, so walking them needs no checks. */
bool lf__gguf_arr_next_str(const lf_gguf_kv *kv, uint64_t *pos, lf_gguf_str *out) {
    if (kv->type != LF_GGUF_ARRAY || kv->arr_type != LF_GGUF_STRING || *pos + 8 > kv->data_len) return false;
    out->len = lf__load_u64(kv->data + *pos);
    out->ptr = (const char *)kv->data + *pos + 8;
    *pos += 8 + out->len;
    return true;
}

double lf__gguf_arr_get_num(const lf_gguf_kv *kv, uint64_t i) {
    const size_t sz = lf__gguf_vtype_size(kv->arr_type);
    if (kv->type != LF_GGUF_ARRAY || !sz || i >= kv->arr_n) return 0.0;
    return scalar_as_f64(kv->arr_type, kv->data + i * sz);
}

static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...) LF_PRINTF(4, 5);
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
    if (*len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0) *len = LF_MIN(*len + (size_t)n, cap - 1);
}

static void format_scalar(uint32_t type, const uint8_t *p, char *buf, size_t cap, size_t *len) {
    int64_t i;
    if (type == LF_GGUF_BOOL) append(buf, cap, len, "%s", p[0] ? "true" : "false");
    else if (type == LF_GGUF_F32 || type == LF_GGUF_F64) append(buf, cap, len, "%g", scalar_as_f64(type, p));
    else if (type == LF_GGUF_U64) append(buf, cap, len, "%" PRIu64, lf__load_u64(p));
    else if (scalar_as_i64(type, p, &i)) append(buf, cap, len, "%" PRId64, i);
}

void lf__gguf_kv_format(const lf_gguf_kv *kv, char *buf, size_t cap) {
    size_t len = 0;
    if (!cap) return;
    buf[0] = '\0';
    if (kv->type == LF_GGUF_STRING) {
        const uint64_t n = lf__load_u64(kv->data);
        append(buf, cap, &len, "\"%.*s%s\"", (int)LF_MIN(n, (uint64_t)200), (const char *)kv->data + 8,
               n > 200 ? "..." : "");
    } else if (kv->type == LF_GGUF_ARRAY) {
        append(buf, cap, &len, "[%s x %" PRIu64 "]", lf__gguf_vtype_name(kv->arr_type), kv->arr_n);
        const uint64_t show = LF_MIN(kv->arr_n, (uint64_t)6);
        const size_t sz = lf__gguf_vtype_size(kv->arr_type);
        uint64_t pos = 0;
        lf_gguf_str s;
        for (uint64_t i = 0; i < show; i++) {
            append(buf, cap, &len, i ? ", " : " ");
            if (sz) format_scalar(kv->arr_type, kv->data + i * sz, buf, cap, &len);
            else if (kv->arr_type == LF_GGUF_STRING && lf__gguf_arr_next_str(kv, &pos, &s))
                append(buf, cap, &len, "\"%.*s\"", (int)LF_MIN(s.len, (uint64_t)40), s.ptr);
            else append(buf, cap, &len, "...");
        }
        if (kv->arr_n > show) append(buf, cap, &len, ", ...");
    } else {
        format_scalar(kv->type, kv->data, buf, cap, &len);
    }
}
