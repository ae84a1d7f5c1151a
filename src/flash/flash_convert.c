/* flash_convert.c - GGUF -> flash layout, streaming.
 *
 * Resident tensors are copied as they are. Each layer's FFN becomes one
 * bundle tensor of neuron records (see flash_format.h) and an index tensor.
 * Memory stays bounded: one layer's down matrix (to cut columns out of it)
 * plus a chunk of rows, far below the model size.
 *
 * Compressed sizes are unknown until written, so the header is written
 * twice: first with placeholder sizes (every field is fixed-width, so its
 * length cannot change), then rewritten in place at the end. */
#include "flash_format.h"
#include "../tensor/kernels.h"
#include "../arch/arch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* Neurons cut out of the down matrix per pass: a (n_embd x 256) float tile. */
#define CONVERT_CHUNK 256
/* Bytes per read/write when copying resident tensors. */
#define COPY_CHUNK (4u << 20)

typedef enum tensor_role { ROLE_RESIDENT, ROLE_FFN_SOURCE } tensor_role;

typedef struct conv {
    lf_err *err;
    const lf_convert_params *p;
    int in_fd;
    lf_gguf *in;
    uint32_t n_embd, n_layer;
    uint32_t n_ff;            /* neurons per layer: every expert's */
    uint32_t n_expert, n_ff_expert; /* 1 and n_ff for a dense FFN */
    bool gated;
    const char *act_override; /* llmflash.ffn_activation to record, or NULL: the source's */
    lf_bundle_layout layout;
    /* per layer, filled while writing */
    uint64_t *bundle_bytes;  /* (n_layer) */
    uint64_t *table_offsets; /* (n_layer) absolute */
    uint64_t *data_offsets;  /* (n_layer) absolute */
    lf_bundle_entry **index; /* (n_layer, n_groups) */
    uint64_t n_groups;
    uint64_t *checksums;     /* (n_out_tensors) */
    uint64_t n_out_tensors;
    uint64_t header_checksum;
    uint64_t file_size;      /* 0 until the data is written */
    /* source FFN tensors per layer: gate, up, down */
    const lf_gguf_tensor *(*ffn)[3];
    /* progress */
    uint64_t done, total;
    /* reorder: the input's records by new position, and the composed order
     * to record (position -> source neuron), (n_layer * n_ff) */
    const uint32_t *const *perm;
    uint32_t *order;
} conv;

lf_convert_params lf_convert_default_params(void) {
    return (lf_convert_params){.bundle_type = LF_BUNDLE_KEEP, .compression = LF_COMPRESS_NONE,
                               .activation = LF_ACT_FROM_FILE};
}

static bool is_ffn_weight(lf_gguf_str name) {
    const char *suffixes[] = {".ffn_gate.weight", ".ffn_up.weight", ".ffn_down.weight", ".ffn_gate_exps.weight",
                              ".ffn_up_exps.weight", ".ffn_down_exps.weight"};
    if (name.len < 4 || memcmp(name.ptr, "blk.", 4) != 0) return false;
    for (size_t i = 0; i < LF_ARRAY_LEN(suffixes); i++) {
        const size_t n = strlen(suffixes[i]);
        if (name.len > n && memcmp(name.ptr + name.len - n, suffixes[i], n) == 0) return true;
    }
    return false;
}

static bool is_flash_key(lf_gguf_str key) {
    return (key.len >= 16 && memcmp(key.ptr, "llmflash.bundle.", 16) == 0) ||
           lf__gguf_str_eq(key, LF_KEY_FORMAT) || lf__gguf_str_eq(key, LF_KEY_HEADER_CHECKSUM) ||
           lf__gguf_str_eq(key, LF_KEY_TENSOR_CHECKSUMS) || lf__gguf_str_eq(key, LF_KEY_FILE_SIZE) ||
           lf__gguf_str_eq(key, "general.alignment");
}

/* A flash file's own tensors (blk.N.ffn_bundle and blk.N.ffn_bundle_index). */
static bool is_bundle_tensor(lf_gguf_str name) {
    static const char suffix[] = ".ffn_bundle", suffix_index[] = ".ffn_bundle_index";
    const size_t a = sizeof suffix - 1, b = sizeof suffix_index - 1;
    return name.len > 4 && memcmp(name.ptr, "blk.", 4) == 0 &&
           ((name.len > a && memcmp(name.ptr + name.len - a, suffix, a) == 0) ||
            (name.len > b && memcmp(name.ptr + name.len - b, suffix_index, b) == 0));
}

/* A tensor of the output's resident part (copied as it is). */
static bool is_resident(lf_gguf_str name) { return !is_ffn_weight(name) && !is_bundle_tensor(name); }

static lf_status find_ffn(conv *c) {
    c->ffn = calloc(c->n_layer, sizeof *c->ffn);
    if (!c->ffn) return LF_E_NOMEM;
    static const char *parts[3] = {"ffn_gate", "ffn_up", "ffn_down"};
    const bool moe = c->n_expert > 1;
    for (uint32_t l = 0; l < c->n_layer; l++)
        for (int k = 0; k < 3; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%u.%s%s.weight", l, parts[k], moe ? "_exps" : "");
            const lf_gguf_tensor *t = lf__gguf_find_tensor(c->in, name);
            if (!t) {
                if (k == 0 && !c->gated) continue;
                return lf__err_set(c->err, LF_E_MODEL, "tensor '%s' is missing", name);
            }
            /* an expert's matrices stacked along ne[2] */
            const uint64_t ff = c->n_ff_expert, want_rows = k == 2 ? c->n_embd : ff, want_cols = k == 2 ? ff : c->n_embd;
            if (t->n_dims != (moe ? 3u : 2u) || t->ne[0] != want_cols || t->ne[1] != want_rows || t->ne[2] != c->n_expert)
                return lf__err_set(c->err, LF_E_MODEL, "tensor '%s' has shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64 "], "
                                   "expected [%" PRIu64 ", %" PRIu64 ", %u]", name, t->ne[0], t->ne[1], t->ne[2], want_cols,
                                   want_rows, c->n_expert);
            if (!lf_type_supported((int)t->type))
                return lf__err_set(c->err, LF_E_UNSUPPORTED, "tensor '%s' has type %s, which llmflash cannot convert",
                                   name, lf_type_name((int)t->type));
            c->ffn[l][k] = t;
        }
    return LF_OK;
}

static lf_status read_source(conv *c) {
    const lf_gguf *g = c->in;
    lf_err *err = c->err;
    lf_gguf_str act;
    lf_status st;
    if (lf__flash_detect(g)) return lf__err_set(err, LF_E_INVALID_ARG, "the input is already a flash file");
    lf_ffn_shape shape;
    if ((st = lf__arch_ffn_shape(g, &shape, err)) || (st = lf__gguf_get_str(g, "llmflash.ffn_activation", &act, err)))
        return st;
    c->n_embd = shape.n_embd;
    c->n_layer = shape.n_layer;
    c->n_expert = shape.n_expert;
    c->n_ff_expert = shape.n_ff;
    c->n_ff = shape.n_ff * shape.n_expert;
    if (!c->n_embd || !c->n_ff || !c->n_layer || c->n_layer > 4096)
        return lf__err_set(err, LF_E_MODEL, "inconsistent hyperparameters");
    static const char *const act_names[] = {"silu", "relu", "relu_plain"};
    if (c->p->activation != LF_ACT_FROM_FILE) {
        if (c->p->activation < LF_ACT_SILU_GATED || c->p->activation > LF_ACT_RELU)
            return lf__err_set(err, LF_E_INVALID_ARG, "activation %d is not an lf_activation", c->p->activation);
        c->act_override = act_names[c->p->activation];
        c->gated = c->p->activation != LF_ACT_RELU;
    } else {
        c->gated = !lf__gguf_str_eq(act, "relu_plain");
    }
    if ((st = find_ffn(c))) return st;
    /* the bundle type: the source up projection's type for `keep` */
    const int type = c->p->bundle_type == LF_BUNDLE_KEEP ? (int)c->ffn[0][1]->type : c->p->bundle_type;
    if (!lf_type_supported(type))
        return lf__err_set(err, LF_E_UNSUPPORTED, "bundle type %s is not supported", lf_type_name(type));
    const uint64_t row = lf__type_row_bytes((uint32_t)type, c->n_embd);
    if (!row)
        return lf__err_set(err, LF_E_UNSUPPORTED, "bundle type %s needs d_model to be a multiple of %u; this model has %u",
                           lf_type_name(type), lf__type_traits_get((uint32_t)type)->block, c->n_embd);
    lf_bundle_layout *L = &c->layout;
    L->type = (uint32_t)type;
    L->n_rows = c->gated ? 3 : 2;
    L->row_bytes = row;
    L->record_bytes = L->n_rows * row;
    L->compression = c->p->compression;
    L->level = c->p->compression_level;
    /* an expert is one group: read, cached and evicted whole */
    if (c->n_expert > 1 && c->p->group && c->p->group != c->n_ff_expert)
        return lf__err_set(err, LF_E_INVALID_ARG, "a mixture of experts is grouped by expert (%u neurons), not by %u",
                           c->n_ff_expert, c->p->group);
    L->group = c->n_expert > 1 ? c->n_ff_expert : L->compression == LF_COMPRESS_NONE ? 1 : (c->p->group ? c->p->group : 16);
    L->stride = L->compression == LF_COMPRESS_NONE ? lf__bundle_stride(L->group * L->record_bytes, c->p->packed)
                                                   : L->record_bytes;
    if (L->record_bytes > UINT32_MAX / 2 || (uint64_t)L->group * L->record_bytes > (1u << 30))
        return lf__err_set(err, LF_E_INVALID_ARG, "a group of %u %" PRIu64 "-byte records is too large", L->group,
                           L->record_bytes);
    c->n_groups = (c->n_ff + L->group - 1) / L->group;
    return LF_OK;
}

/* Builds the output header. The same sequence of calls with final values
 * gives the same length, since every value is fixed-width. */
static lf_status build_header(conv *c, lf_gguf_writer **out) {
    lf_gguf_writer *w;
    lf_status st = lf__gguf_writer_create(LF_FLASH_ALIGNMENT, &w);
    if (st) return st;
    const lf_gguf *g = c->in;
    for (uint64_t i = 0; i < g->n_kv && !st; i++)
        if (!is_flash_key(g->kv[i].key) && !(c->act_override && lf__gguf_str_eq(g->kv[i].key, "llmflash.ffn_activation")))
            st = lf__gguf_writer_copy_kv(w, &g->kv[i]);
    /* an activation given at conversion is recorded, so the flash file runs
     * right without the flag */
    if (!st && c->act_override) st = lf__gguf_writer_set_str(w, "llmflash.ffn_activation", c->act_override);
    const lf_bundle_layout *L = &c->layout;
    if (!st) st = lf__gguf_writer_set_u32(w, LF_KEY_FORMAT, LF_FLASH_FORMAT_VERSION);
    if (!st) st = lf__gguf_writer_set_str(w, LF_KEY_LAYOUT, L->n_rows == 3 ? "gate,up,down" : "up,down");
    if (!st) st = lf__gguf_writer_set_u32(w, LF_KEY_TYPE, L->type);
    if (!st) st = lf__gguf_writer_set_u32(w, LF_KEY_ROW_BYTES, (uint32_t)L->row_bytes);
    if (!st) st = lf__gguf_writer_set_u32(w, LF_KEY_RECORD_BYTES, (uint32_t)L->record_bytes);
    if (!st) st = lf__gguf_writer_set_u32(w, LF_KEY_STRIDE, (uint32_t)L->stride);
    if (!st) st = lf__gguf_writer_set_u32(w, LF_KEY_GROUP, L->group);
    if (!st) st = lf__gguf_writer_set_str(w, LF_KEY_COMPRESSION, lf__compression_name(L->compression));
    if (!st) st = lf__gguf_writer_set_i32(w, LF_KEY_LEVEL, L->level);
    if (!st) st = lf__gguf_writer_set_str(w, LF_KEY_CHECKSUM, "xxh64");
    if (!st) st = lf__gguf_writer_set_arr(w, LF_KEY_TABLE_OFFSETS, LF_GGUF_U64, c->table_offsets, c->n_layer);
    if (!st) st = lf__gguf_writer_set_arr(w, LF_KEY_DATA_OFFSETS, LF_GGUF_U64, c->data_offsets, c->n_layer);
    if (!st) st = lf__gguf_writer_set_arr(w, LF_KEY_TENSOR_CHECKSUMS, LF_GGUF_U64, c->checksums, c->n_out_tensors);
    if (!st) st = lf__gguf_writer_set_u64(w, LF_KEY_FILE_SIZE, c->file_size);
    if (!st) st = lf__gguf_writer_set_u64(w, LF_KEY_HEADER_CHECKSUM, c->header_checksum);
    if (!st && c->order)
        st = lf__gguf_writer_set_arr(w, LF_KEY_NEURON_ORDER, LF_GGUF_U32, c->order, (uint64_t)c->n_layer * c->n_ff);
    for (uint64_t i = 0; i < g->n_tensors && !st; i++) {
        const lf_gguf_tensor *t = &g->tensors[i];
        if (!is_resident(t->name)) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)LF_MIN(t->name.len, (uint64_t)255), t->name.ptr);
        st = lf__gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, NULL);
    }
    for (uint32_t l = 0; l < c->n_layer && !st; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%u.ffn_bundle", l);
        if (L->compression == LF_COMPRESS_NONE) {
            const uint64_t ne[2] = {L->stride, c->n_groups};
            st = lf__gguf_writer_add_tensor(w, name, 24 /* I8 */, 2, ne, NULL);
        } else {
            const uint64_t ne[1] = {c->bundle_bytes[l] ? c->bundle_bytes[l] : 1};
            st = lf__gguf_writer_add_tensor(w, name, 24, 1, ne, NULL);
        }
        if (st) break;
        snprintf(name, sizeof name, "blk.%u.ffn_bundle_index", l);
        const uint64_t ne[1] = {c->n_groups * sizeof(lf_bundle_entry)};
        st = lf__gguf_writer_add_tensor(w, name, 24, 1, ne, NULL);
    }
    if (st) {
        lf__gguf_writer_destroy(w);
        return lf__err_set(c->err, st, "building the output header failed");
    }
    *out = w;
    return LF_OK;
}

/* Output: everything after the header goes through one page-aligned buffer
 * written in large pieces, with O_DIRECT where the filesystem allows it, so
 * the conversion neither copies every byte into the page cache nor leaves
 * gigabytes of dirty pages behind. Tensors are padded to 4096 bytes, so the
 * file - and every flush - ends on a page boundary. */
#define OUT_BUF (8u << 20)

typedef struct outpos {
    int fd;
    uint64_t pos;        /* absolute position of the next byte accepted */
    uint64_t data_start; /* absolute start of the data section */
    uint8_t *buf;        /* (OUT_BUF) */
    size_t fill;
    bool direct;
} outpos;

static lf_status out_flush(outpos *o, lf_err *err) {
    if (!o->fill) return LF_OK;
    for (;;) {
        const ssize_t r = write(o->fd, o->buf, o->fill);
        if (r == (ssize_t)o->fill) break;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EINVAL && o->direct) { /* O_DIRECT refused after all: buffered */
            fcntl(o->fd, F_SETFL, fcntl(o->fd, F_GETFL) & ~O_DIRECT);
            o->direct = false;
            continue;
        }
        if (r >= 0) { /* short write: finish it buffered */
            if (o->direct) {
                fcntl(o->fd, F_SETFL, fcntl(o->fd, F_GETFL) & ~O_DIRECT);
                o->direct = false;
            }
            lf_status st = lf__write_all(o->fd, o->buf + r, o->fill - (size_t)r, err);
            if (st) return st;
            break;
        }
        return lf__err_set(err, LF_E_IO, "write: %s", strerror(errno));
    }
    o->fill = 0;
    return LF_OK;
}

static lf_status out_write(outpos *o, const void *p, uint64_t n, lf_err *err) {
    const uint8_t *src = p;
    while (n > 0) {
        const size_t k = (size_t)LF_MIN(n, (uint64_t)(OUT_BUF - o->fill));
        memcpy(o->buf + o->fill, src, k);
        o->fill += k;
        o->pos += k;
        src += k;
        n -= k;
        if (o->fill == OUT_BUF) {
            lf_status st = out_flush(o, err);
            if (st) return st;
        }
    }
    return LF_OK;
}

static lf_status out_pad(outpos *o, uint64_t align, lf_err *err) {
    static const uint8_t zeros[LF_FLASH_ALIGNMENT];
    while (o->pos % align) {
        const uint64_t k = LF_MIN(align - o->pos % align, (uint64_t)sizeof zeros);
        lf_status st = out_write(o, zeros, k, err);
        if (st) return st;
    }
    return LF_OK;
}

static lf_status copy_tensor(conv *c, outpos *o, const lf_gguf_tensor *t, uint8_t *buf, uint64_t *checksum) {
    XXH64_state_t *h = XXH64_createState();
    if (!h) return LF_E_NOMEM;
    XXH64_reset(h, 0);
    lf_status st = LF_OK;
    for (uint64_t off = 0; off < t->nbytes && !st; off += COPY_CHUNK) {
        const uint64_t n = LF_MIN((uint64_t)COPY_CHUNK, t->nbytes - off);
        st = lf__pread_all(c->in_fd, buf, (size_t)n, t->file_offset + off, c->err);
        if (!st) {
            XXH64_update(h, buf, (size_t)n);
            st = out_write(o, buf, n, c->err);
        }
    }
    *checksum = XXH64_digest(h);
    XXH64_freeState(h);
    return st;
}

/* Rows of down dequantized per transposition block. */
#define TRANSPOSE_ROWS 64

/* Buffers for one layer's conversion. */
typedef struct layer_bufs {
    lf_pool *pool;
    int nth;
    uint8_t *down;      /* the source down tensor, whole */
    uint8_t *gate_rows; /* CONVERT_CHUNK source rows of gate */
    uint8_t *up_rows;   /* CONVERT_CHUNK source rows of up */
    float *tile;        /* (CONVERT_CHUNK, n_embd): columns of down, one per neuron */
    float *scratch;     /* (nth, TRANSPOSE_ROWS * CONVERT_CHUNK + n_embd) per thread */
    uint8_t *records;   /* (chunk, record_bytes), chunk a multiple of the group */
    uint8_t *packed;    /* (groups per chunk, packed_cap) compressed groups */
    size_t packed_cap;
    uint8_t *zeros;     /* (stride) padding */
} layer_bufs;

typedef struct chunk_job {
    conv *c;
    layer_bufs *b;
    const lf_gguf_tensor *gate, *up, *down;
    uint64_t s0, s1;        /* neurons of this pass */
    uint8_t *records;       /* record of neuron s0 */
    uint64_t g0, g1;        /* groups to compress */
    uint64_t chunk_first;   /* first neuron of the chunk (records[0]) */
    uint32_t layer;
    uint64_t failed;        /* compression failure seen (set by any thread) */
} chunk_job;

/* Converts one source row (gate or up) into a record slot. */
static void convert_row(const conv *c, const uint8_t *src, uint32_t src_type, uint8_t *dst, float *tmp) {
    if (src_type == c->layout.type) {
        memcpy(dst, src, lf__type_row_bytes(src_type, c->n_embd)); /* exact: the source blocks */
    } else {
        lf__dequantize_row(src_type, src, tmp, c->n_embd);
        lf__quantize_row(c->layout.type, tmp, dst, c->n_embd);
    }
}

/* Phase 1: gate/up rows of the pass (split by neuron), and the down columns
 * dequantized and transposed into the tile (split by rows of down, blocked
 * so writes stay in cache). */
static void chunk_phase1(void *ctx, int ith, int nth) {
    chunk_job *j = ctx;
    const conv *c = j->c;
    layer_bufs *b = j->b;
    const uint64_t d = c->n_embd, width = j->s1 - j->s0, rec = c->layout.record_bytes;
    float *tblock = b->scratch + (uint64_t)ith * (TRANSPOSE_ROWS * CONVERT_CHUNK + d);
    float *tmp = tblock + TRANSPOSE_ROWS * CONVERT_CHUNK;
    uint64_t r0, r1;
    lf__split_range(width, ith, nth, 8, &r0, &r1);
    for (uint64_t r = r0; r < r1; r++) {
        uint8_t *dst = j->records + r * rec;
        if (j->gate)
            convert_row(c, b->gate_rows + r * lf__type_row_bytes(j->gate->type, d), j->gate->type, dst, tmp);
        convert_row(c, b->up_rows + r * lf__type_row_bytes(j->up->type, d), j->up->type,
                    dst + (c->gated ? c->layout.row_bytes : 0), tmp);
    }
    const uint32_t blk = lf__type_traits_get(j->down->type)->block, bsz = lf__type_traits_get(j->down->type)->block_size;
    /* the pass lies inside one expert (convert_layer cuts it there): its
     * down matrix, and the pass's first column in it */
    const uint64_t src_row = lf__type_row_bytes(j->down->type, c->n_ff_expert), e = j->s0 / c->n_ff_expert,
                   col0 = j->s0 % c->n_ff_expert;
    const uint8_t *down = j->b->down + e * d * src_row;
    uint64_t d0, d1;
    lf__split_range(d, ith, nth, TRANSPOSE_ROWS, &d0, &d1);
    for (uint64_t jb = d0; jb < d1; jb += TRANSPOSE_ROWS) {
        const uint64_t rows = LF_MIN((uint64_t)TRANSPOSE_ROWS, d1 - jb);
        for (uint64_t q = 0; q < rows; q++)
            lf__dequantize_row(j->down->type, down + (jb + q) * src_row + col0 / blk * bsz, tblock + q * width,
                               (int64_t)width);
        for (uint64_t k = 0; k < width; k++) {
            float *col = b->tile + k * d + jb;
            for (uint64_t q = 0; q < rows; q++) col[q] = tblock[q * width + k];
        }
    }
}

/* Phase 2: quantize each tile column into its record's down slot. */
static void chunk_phase2(void *ctx, int ith, int nth) {
    chunk_job *j = ctx;
    const conv *c = j->c;
    uint64_t k0, k1;
    lf__split_range(j->s1 - j->s0, ith, nth, 8, &k0, &k1);
    const uint64_t slot = (uint64_t)(c->layout.n_rows - 1) * c->layout.row_bytes;
    for (uint64_t k = k0; k < k1; k++)
        lf__quantize_row(c->layout.type, j->b->tile + k * c->n_embd, j->records + k * c->layout.record_bytes + slot,
                         c->n_embd);
}

/* Phase 3: checksum (and compress) the chunk's groups. */
static void chunk_phase3(void *ctx, int ith, int nth) {
    chunk_job *j = ctx;
    const conv *c = j->c;
    const lf_bundle_layout *L = &c->layout;
    uint64_t a, z;
    lf__split_range(j->g1 - j->g0, ith, nth, 1, &a, &z);
    for (uint64_t gi = j->g0 + a; gi < j->g0 + z; gi++) {
        uint64_t first, count;
        first = gi * L->group;
        count = LF_MIN((uint64_t)L->group, (uint64_t)c->n_ff - first);
        const uint8_t *raw = j->b->records + (first - j->chunk_first) * L->record_bytes;
        lf_bundle_entry *e = &c->index[j->layer][gi];
        e->raw = (uint32_t)(count * L->record_bytes);
        if (L->compression == LF_COMPRESS_NONE) {
            e->stored = e->raw;
            e->checksum = lf__checksum64(raw, e->raw);
            continue;
        }
        uint8_t *out = j->b->packed + (gi - j->g0) * j->b->packed_cap;
        const size_t n = lf__codec_compress(L->compression, L->level, raw, e->raw, out, j->b->packed_cap);
        if (!n) __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        e->stored = (uint32_t)n;
        e->checksum = lf__checksum64(out, n);
    }
}

static lf_status write_chunk_groups(conv *c, outpos *o, layer_bufs *b, const chunk_job *j, uint64_t bundle_start) {
    const lf_bundle_layout *L = &c->layout;
    for (uint64_t gi = j->g0; gi < j->g1; gi++) {
        lf_bundle_entry *e = &c->index[j->layer][gi];
        e->offset = o->pos - bundle_start;
        const uint8_t *stored = L->compression == LF_COMPRESS_NONE
                                    ? b->records + (gi * L->group - j->chunk_first) * L->record_bytes
                                    : b->packed + (gi - j->g0) * b->packed_cap;
        lf_status st = out_write(o, stored, e->stored, c->err);
        if (!st && L->compression == LF_COMPRESS_NONE && L->stride > e->stored)
            st = out_write(o, b->zeros, L->stride - e->stored, c->err);
        if (st) return st;
    }
    return LF_OK;
}

static lf_status convert_layer(conv *c, outpos *o, layer_bufs *b, uint32_t l) {
    const lf_gguf_tensor *gate = c->ffn[l][0], *up = c->ffn[l][1], *down = c->ffn[l][2];
    lf_status st = lf__pread_all(c->in_fd, b->down, (size_t)down->nbytes, down->file_offset, c->err);
    if (st) return st;
    const uint64_t start = o->pos, d = c->n_embd;
    c->data_offsets[l] = start;
    /* chunks are a multiple of the group so groups never span chunks */
    const uint64_t chunk = (CONVERT_CHUNK + c->layout.group - 1) / c->layout.group * c->layout.group;
    for (uint64_t c0 = 0; c0 < c->n_ff; c0 += chunk) {
        const uint64_t c1 = LF_MIN(c0 + chunk, (uint64_t)c->n_ff);
        chunk_job job = {.c = c, .b = b, .gate = gate, .up = up, .down = down, .layer = l, .chunk_first = c0};
        for (uint64_t s0 = c0, s1; s0 < c1; s0 = s1) {
            /* a pass never crosses into the next expert's down matrix */
            s1 = LF_MIN(LF_MIN(s0 + CONVERT_CHUNK, c1), (s0 / c->n_ff_expert + 1) * c->n_ff_expert);
            if (gate) {
                const uint64_t rb = lf__type_row_bytes(gate->type, d);
                if ((st = lf__pread_all(c->in_fd, b->gate_rows, (size_t)((s1 - s0) * rb), gate->file_offset + s0 * rb, c->err)))
                    return st;
            }
            const uint64_t rb = lf__type_row_bytes(up->type, d);
            if ((st = lf__pread_all(c->in_fd, b->up_rows, (size_t)((s1 - s0) * rb), up->file_offset + s0 * rb, c->err)))
                return st;
            job.s0 = s0;
            job.s1 = s1;
            job.records = b->records + (s0 - c0) * c->layout.record_bytes;
            lf__pool_run(b->pool, chunk_phase1, &job);
            lf__pool_run(b->pool, chunk_phase2, &job);
        }
        job.g0 = c0 / c->layout.group;
        job.g1 = (c1 + c->layout.group - 1) / c->layout.group;
        lf__pool_run(b->pool, chunk_phase3, &job);
        if (job.failed) return lf__err_set(c->err, LF_E_NOMEM, "compressing layer %u failed", l);
        if ((st = write_chunk_groups(c, o, b, &job, start))) return st;
    }
    c->bundle_bytes[l] = o->pos - start;
    return LF_OK;
}

static void layer_bufs_free(layer_bufs *b) {
    lf__pool_destroy(b->pool);
    free(b->down);
    free(b->gate_rows);
    free(b->up_rows);
    free(b->tile);
    free(b->scratch);
    free(b->records);
    free(b->packed);
    free(b->zeros);
}

static lf_status layer_bufs_alloc(conv *c, layer_bufs *b) {
    uint64_t max_down = 0, max_row = 0;
    for (uint32_t l = 0; l < c->n_layer; l++) {
        max_down = LF_MAX(max_down, c->ffn[l][2]->nbytes);
        for (int k = 0; k < 2; k++)
            if (c->ffn[l][k]) max_row = LF_MAX(max_row, lf__type_row_bytes(c->ffn[l][k]->type, c->n_embd));
    }
    const uint64_t chunk = (CONVERT_CHUNK + c->layout.group - 1) / c->layout.group * c->layout.group;
    if (lf__pool_create(lf__cpu_count(), &b->pool)) return LF_E_NOMEM;
    b->nth = lf__pool_size(b->pool);
    b->down = malloc(max_down);
    b->gate_rows = malloc(max_row * CONVERT_CHUNK);
    b->up_rows = malloc(max_row * CONVERT_CHUNK);
    b->tile = malloc((size_t)CONVERT_CHUNK * c->n_embd * sizeof(float));
    b->scratch = malloc((size_t)b->nth * (TRANSPOSE_ROWS * CONVERT_CHUNK + c->n_embd) * sizeof(float));
    b->records = malloc(chunk * c->layout.record_bytes);
    b->packed_cap = lf__codec_bound(c->layout.compression, c->layout.group * c->layout.record_bytes);
    b->packed = c->layout.compression == LF_COMPRESS_NONE ? malloc(1) : malloc(chunk / c->layout.group * b->packed_cap);
    b->zeros = calloc(1, c->layout.stride);
    if (!b->down || !b->gate_rows || !b->up_rows || !b->tile || !b->scratch || !b->records || !b->packed || !b->zeros)
        return lf__err_set(c->err, LF_E_NOMEM, "conversion buffers (down matrix of %" PRIu64 " bytes)", max_down);
    return LF_OK;
}

/* Header checksum: xxHash64 of the header bytes with its own value zeroed. */
static lf_status finalize_header(conv *c, int fd, uint64_t header_len) {
    lf_gguf_writer *w;
    c->header_checksum = 0;
    lf_status st = build_header(c, &w);
    if (st) return st;
    /* render to memory through a pipe-free path: a temporary memfd */
    const int mfd = memfd_create("llmflash-header", MFD_CLOEXEC);
    if (mfd < 0) {
        lf__gguf_writer_destroy(w);
        return lf__err_set(c->err, LF_E_IO, "memfd_create: %s", strerror(errno));
    }
    st = lf__gguf_writer_write_header(w, mfd, c->err);
    lf__gguf_writer_destroy(w);
    uint8_t *hdr = NULL;
    struct stat sb;
    if (!st && fstat(mfd, &sb) != 0) st = lf__err_set(c->err, LF_E_IO, "fstat: %s", strerror(errno));
    if (!st && (uint64_t)sb.st_size != header_len)
        st = lf__err_set(c->err, LF_E_IO, "internal: header length changed (%" PRIu64 " vs %" PRIu64 ")",
                         (uint64_t)sb.st_size, header_len);
    if (!st && !(hdr = malloc(header_len))) st = LF_E_NOMEM;
    if (!st) st = lf__pread_all(mfd, hdr, header_len, 0, c->err);
    close(mfd);
    if (st) {
        free(hdr);
        return st;
    }
    uint8_t *value = lf__flash_header_checksum_field(hdr, header_len);
    if (!value) {
        free(hdr);
        return lf__err_set(c->err, LF_E_IO, "internal: header checksum key not found");
    }
    c->header_checksum = lf__checksum64(hdr, header_len);
    memcpy(value, &c->header_checksum, 8);
    ssize_t n = pwrite(fd, hdr, header_len, 0);
    free(hdr);
    if (n != (ssize_t)header_len) return lf__err_set(c->err, LF_E_IO, "rewriting the header: %s", strerror(errno));
    return LF_OK;
}

static bool report(conv *c, uint64_t add) {
    c->done += add;
    return !c->p->progress || c->p->progress(c->p->progress_user, LF_MIN(c->done, c->total), c->total);
}

/* ---- the output's tables and framing, shared by convert and reorder ------ */

/* The per-layer tables and the index of c->n_groups entries per layer. */
static lf_status alloc_tables(conv *c) {
    c->n_out_tensors = 2ull * c->n_layer;
    for (uint64_t i = 0; i < c->in->n_tensors; i++) c->n_out_tensors += is_resident(c->in->tensors[i].name);
    c->bundle_bytes = calloc(c->n_layer, sizeof *c->bundle_bytes);
    c->table_offsets = calloc(c->n_layer, sizeof *c->table_offsets);
    c->data_offsets = calloc(c->n_layer, sizeof *c->data_offsets);
    c->checksums = calloc(c->n_out_tensors, sizeof *c->checksums);
    c->index = calloc(c->n_layer, sizeof *c->index);
    if (!c->bundle_bytes || !c->table_offsets || !c->data_offsets || !c->checksums || !c->index)
        return lf__err_set(c->err, LF_E_NOMEM, "output tables");
    for (uint32_t l = 0; l < c->n_layer; l++)
        if (!(c->index[l] = calloc(c->n_groups, sizeof(lf_bundle_entry))))
            return lf__err_set(c->err, LF_E_NOMEM, "bundle index");
    return LF_OK;
}

static void free_tables(conv *c) {
    if (c->index)
        for (uint32_t l = 0; l < c->n_layer; l++) free(c->index[l]);
    free(c->index);
    free(c->bundle_bytes);
    free(c->table_offsets);
    free(c->data_offsets);
    free(c->checksums);
}

/* Opens out_path and writes the header w describes; o then takes the data,
 * which starts where write_header padded the header to the alignment. */
static lf_status open_output(conv *c, lf_gguf_writer *w, const char *out_path, bool force, lf_outfile *out, outpos *o) {
    lf_status st = lf__outfile_open(out, out_path, force, c->err);
    if (!st) st = lf__gguf_writer_write_header(w, out->fd, c->err);
    if (st) return st;
    o->fd = out->fd;
    o->pos = (uint64_t)lseek(out->fd, 0, SEEK_CUR);
    o->data_start = o->pos;
    if (!(o->buf = lf__alloc_aligned(OUT_BUF, LF_FLASH_ALIGNMENT))) return lf__err_set(c->err, LF_E_NOMEM, "output buffer");
    o->direct = fcntl(out->fd, F_SETFL, fcntl(out->fd, F_GETFL) | O_DIRECT) == 0;
    return LF_OK;
}

/* After layer l's bundle data: its index tensor, both padded, and their
 * checksums at *ti (the bundle data's is 0: its groups carry their own). */
static lf_status write_layer_index(conv *c, outpos *o, uint32_t l, uint64_t *ti) {
    c->checksums[(*ti)++] = 0;
    lf_status st = out_pad(o, LF_FLASH_ALIGNMENT, c->err);
    if (st) return st;
    c->table_offsets[l] = o->pos;
    const uint64_t idx_bytes = c->n_groups * sizeof(lf_bundle_entry);
    c->checksums[(*ti)++] = lf__checksum64(c->index[l], idx_bytes);
    if ((st = out_write(o, c->index[l], idx_bytes, c->err))) return st;
    return out_pad(o, LF_FLASH_ALIGNMENT, c->err);
}

/* The header again, with the real sizes, offsets and checksums in the same
 * bytes, then the file committed under its name. *w is replaced. */
static lf_status finish_output(conv *c, outpos *o, lf_outfile *out, lf_gguf_writer **w) {
    lf_status st = out_flush(o, c->err);
    if (st) return st;
    if (o->direct) fcntl(out->fd, F_SETFL, fcntl(out->fd, F_GETFL) & ~O_DIRECT);
    lf__gguf_writer_destroy(*w);
    *w = NULL;
    c->file_size = o->pos;
    if ((st = build_header(c, w))) return st;
    if (lf__gguf_writer_file_size(*w) != o->pos) /* data must be where the header says */
        return lf__err_set(c->err, LF_E_IO, "internal: wrote %" PRIu64 " bytes, header describes %" PRIu64, o->pos,
                           lf__gguf_writer_file_size(*w));
    if ((st = finalize_header(c, out->fd, o->data_start))) return st;
    return lf__outfile_commit(out, c->err);
}

lf_status lf_convert(const char *in_path, const char *out_path, const lf_convert_params *params,
                     lf_convert_stats *stats, char *errbuf, size_t errcap) {
    lf_err err = {{0}};
    if (!in_path || !out_path) return LF_E_INVALID_ARG;
    const lf_convert_params p = params ? *params : lf_convert_default_params();
    const uint64_t t0 = lf__now_ns();
    conv c = {.err = &err, .p = &p, .in_fd = -1};
    lf_outfile out = {.fd = -1};
    layer_bufs bufs = {0};
    outpos o = {.fd = -1};
    uint8_t *copybuf = NULL;
    lf_gguf_writer *w = NULL;
    lf_status st;
    struct stat in_sb, out_sb;
    if ((st = lf__open_input(in_path, 0, &c.in_fd, NULL, &err))) goto done;
    if (fstat(c.in_fd, &in_sb) != 0 || !S_ISREG(in_sb.st_mode)) {
        st = lf__err_set(&err, LF_E_IO, "%s is not a regular file", in_path);
        goto done;
    }
    if (stat(out_path, &out_sb) == 0 && out_sb.st_dev == in_sb.st_dev && out_sb.st_ino == in_sb.st_ino) {
        st = lf__err_set(&err, LF_E_INVALID_ARG, "output %s is the input file", out_path);
        goto done;
    }
    if ((st = lf__gguf_read_fd(c.in_fd, (uint64_t)in_sb.st_size, &c.in, &err))) goto done;
    if ((st = read_source(&c)) || (st = alloc_tables(&c))) goto done;
    if (!(copybuf = malloc(COPY_CHUNK))) {
        st = lf__err_set(&err, LF_E_NOMEM, "copy buffer");
        goto done;
    }
    if ((st = layer_bufs_alloc(&c, &bufs))) goto done;
    if ((st = build_header(&c, &w)) || (st = open_output(&c, w, out_path, p.force, &out, &o))) goto done;
    c.total = (uint64_t)in_sb.st_size;
    uint64_t ti = 0;
    for (uint64_t i = 0; i < c.in->n_tensors; i++) {
        const lf_gguf_tensor *t = &c.in->tensors[i];
        if (!is_resident(t->name)) continue;
        if ((st = copy_tensor(&c, &o, t, copybuf, &c.checksums[ti++]))) goto done;
        if ((st = out_pad(&o, LF_FLASH_ALIGNMENT, &err))) goto done;
        if (!report(&c, t->nbytes)) goto interrupted;
    }
    for (uint32_t l = 0; l < c.n_layer; l++) {
        if ((st = convert_layer(&c, &o, &bufs, l)) || (st = write_layer_index(&c, &o, l, &ti))) goto done;
        uint64_t src = 0;
        for (int k = 0; k < 3; k++)
            if (c.ffn[l][k]) src += c.ffn[l][k]->nbytes;
        if (!report(&c, src)) goto interrupted;
    }
    if ((st = finish_output(&c, &o, &out, &w))) goto done;
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->in_bytes = (uint64_t)in_sb.st_size;
        stats->out_bytes = o.pos;
        for (uint32_t l = 0; l < c.n_layer; l++) {
            stats->ffn_stored_bytes += c.bundle_bytes[l];
            stats->ffn_raw_bytes += (uint64_t)c.n_ff * c.layout.record_bytes;
        }
        stats->seconds = (double)(lf__now_ns() - t0) / 1e9;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        stats->peak_rss_bytes = (uint64_t)ru.ru_maxrss * 1024;
    }
    st = LF_OK;
    goto done;
interrupted:
    st = lf__err_set(&err, LF_E_INTERRUPTED, "conversion interrupted; %s was not written", out_path);
done:
    lf__free_aligned(o.buf);
    if (out.fd >= 0) lf__outfile_abort(&out);
    lf__gguf_writer_destroy(w);
    layer_bufs_free(&bufs);
    free(copybuf);
    free_tables(&c);
    free(c.ffn);
    lf__gguf_free(c.in);
    if (c.in_fd >= 0) close(c.in_fd);
    if (st) lf__err_copy_out(&err, errbuf, errcap);
    return st;
}

/* ---- co-activation placement: an uncompressed flash file, records reordered */

lf_status lf__flash_reorder(const char *in_path, const char *out_path, const uint32_t *const *perm, bool force,
                            lf_err *err) {
    const lf_convert_params p = lf_convert_default_params();
    conv c = {.err = err, .p = &p, .in_fd = -1, .perm = perm};
    lf_flash *fl = NULL;
    lf_outfile out = {.fd = -1};
    outpos o = {.fd = -1};
    uint8_t *copybuf = NULL, *layer = NULL, *seen = NULL;
    lf_gguf_writer *w = NULL;
    uint64_t size;
    lf_status st;
    if ((st = lf__open_input(in_path, 0, &c.in_fd, &size, err))) goto done;
    if ((st = lf__gguf_read_fd(c.in_fd, size, &c.in, err))) goto done;
    if (!lf__flash_detect(c.in)) {
        st = lf__err_set(err, LF_E_INVALID_ARG, "%s is not a flash file", in_path);
        goto done;
    }
    if ((st = lf__flash_open(c.in, c.in_fd, &fl, err))) goto done;
    if (fl->layout.compression != LF_COMPRESS_NONE || fl->n_expert > 1) {
        st = lf__err_set(err, LF_E_UNSUPPORTED, "placement reorders single neurons: %s %s", in_path,
                         fl->n_expert > 1 ? "is a mixture of experts, read expert by expert"
                                          : "is compressed in groups (convert it without compression)");
        goto done;
    }
    c.n_embd = fl->n_embd;
    c.n_ff = c.n_ff_expert = fl->n_ff;
    c.n_expert = 1;
    c.n_layer = fl->n_layer;
    c.layout = fl->layout;
    c.n_groups = fl->n_ff;
    /* the order to record: the input's own (if it was placed before), composed */
    const lf_gguf_kv *old = lf__gguf_find(c.in, LF_KEY_NEURON_ORDER);
    const uint64_t n_all = (uint64_t)c.n_layer * c.n_ff;
    c.order = malloc(n_all * sizeof *c.order);
    seen = malloc(c.n_ff);
    if (!c.order || !seen) {
        st = lf__err_set(err, LF_E_NOMEM, "neuron order");
        goto done;
    }
    for (uint32_t l = 0; l < c.n_layer; l++) {
        memset(seen, 0, c.n_ff);
        for (uint32_t q = 0; q < c.n_ff; q++) {
            const uint32_t src = perm[l][q];
            if (src >= c.n_ff || seen[src]) {
                st = lf__err_set(err, LF_E_INVALID_ARG, "layer %u's order is not a permutation of its %u neurons", l,
                                 c.n_ff);
                goto done;
            }
            seen[src] = 1;
            const uint64_t at = (uint64_t)l * c.n_ff + src;
            c.order[(uint64_t)l * c.n_ff + q] =
                old && old->arr_n == n_all ? (uint32_t)lf__gguf_arr_get_num(old, at) : src;
        }
    }
    if ((st = alloc_tables(&c))) goto done;
    copybuf = malloc(COPY_CHUNK);
    layer = malloc((size_t)c.n_ff * c.layout.stride);
    if (!copybuf || !layer) {
        st = lf__err_set(err, LF_E_NOMEM, "reorder buffers");
        goto done;
    }
    if ((st = build_header(&c, &w)) || (st = open_output(&c, w, out_path, force, &out, &o))) goto done;
    uint64_t ti = 0;
    for (uint64_t i = 0; i < c.in->n_tensors; i++) {
        const lf_gguf_tensor *t = &c.in->tensors[i];
        if (!is_resident(t->name)) continue;
        if ((st = copy_tensor(&c, &o, t, copybuf, &c.checksums[ti++]))) goto done;
        if ((st = out_pad(&o, LF_FLASH_ALIGNMENT, err))) goto done;
    }
    const uint64_t stride = c.layout.stride;
    for (uint32_t l = 0; l < c.n_layer; l++) {
        const lf_flash_layer *F = &fl->layers[l];
        /* records are stride apart from the tensor's start (entry i at i * stride) */
        if ((st = lf__pread_all(c.in_fd, layer, (size_t)c.n_ff * stride, F->data_offset, err))) goto done;
        c.data_offsets[l] = o.pos;
        for (uint32_t q = 0; q < c.n_ff; q++) {
            const lf_bundle_entry *e = &F->index[perm[l][q]];
            if (e->offset != (uint64_t)perm[l][q] * stride) {
                st = lf__err_set(err, LF_E_CORRUPT, "layer %u: neuron %u's record is not at its stride", l, perm[l][q]);
                goto done;
            }
            c.index[l][q] = (lf_bundle_entry){(uint64_t)q * stride, e->stored, e->raw, e->checksum};
            if ((st = out_write(&o, layer + e->offset, stride, err))) goto done;
        }
        c.bundle_bytes[l] = o.pos - c.data_offsets[l];
        if ((st = write_layer_index(&c, &o, l, &ti))) goto done;
    }
    st = finish_output(&c, &o, &out, &w);
done:
    lf__free_aligned(o.buf);
    if (out.fd >= 0) lf__outfile_abort(&out);
    lf__gguf_writer_destroy(w);
    free(copybuf);
    free(layer);
    free(seen);
    free_tables(&c);
    free(c.order);
    lf__flash_free(fl);
    lf__gguf_free(c.in);
    if (c.in_fd >= 0) close(c.in_fd);
    return st;
}
