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
    uint32_t n_embd, n_ff, n_layer;
    bool gated;
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
} conv;

lf_convert_params lf_convert_default_params(void) {
    return (lf_convert_params){.bundle_type = LF_BUNDLE_KEEP, .compression = LF_COMPRESS_NONE};
}

static bool is_ffn_weight(lf_gguf_str name) {
    const char *suffixes[] = {".ffn_gate.weight", ".ffn_up.weight", ".ffn_down.weight"};
    if (name.len < 4 || memcmp(name.ptr, "blk.", 4) != 0) return false;
    for (size_t i = 0; i < 3; i++) {
        const size_t n = strlen(suffixes[i]);
        if (name.len > n && memcmp(name.ptr + name.len - n, suffixes[i], n) == 0) return true;
    }
    return false;
}

static bool is_flash_key(lf_gguf_str key) {
    return (key.len >= 16 && memcmp(key.ptr, "llmflash.bundle.", 16) == 0) ||
           lf_gguf_str_eq(key, LF_KEY_FORMAT) || lf_gguf_str_eq(key, LF_KEY_HEADER_CHECKSUM) ||
           lf_gguf_str_eq(key, LF_KEY_TENSOR_CHECKSUMS) || lf_gguf_str_eq(key, "general.alignment");
}

static lf_status find_ffn(conv *c) {
    c->ffn = calloc(c->n_layer, sizeof *c->ffn);
    if (!c->ffn) return LF_E_NOMEM;
    static const char *parts[3] = {"ffn_gate", "ffn_up", "ffn_down"};
    for (uint32_t l = 0; l < c->n_layer; l++)
        for (int k = 0; k < 3; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%u.%s.weight", l, parts[k]);
            const lf_gguf_tensor *t = lf_gguf_find_tensor(c->in, name);
            if (!t) {
                if (k == 0 && !c->gated) continue;
                return lf_err_set(c->err, LF_E_MODEL, "tensor '%s' is missing", name);
            }
            const uint64_t want_rows = k == 2 ? c->n_embd : c->n_ff, want_cols = k == 2 ? c->n_ff : c->n_embd;
            if (t->n_dims != 2 || t->ne[0] != want_cols || t->ne[1] != want_rows)
                return lf_err_set(c->err, LF_E_MODEL, "tensor '%s' has shape [%" PRIu64 ", %" PRIu64 "], expected [%" PRIu64
                                  ", %" PRIu64 "]", name, t->ne[0], t->ne[1], want_cols, want_rows);
            if (!lf_type_supported((int)t->type))
                return lf_err_set(c->err, LF_E_UNSUPPORTED, "tensor '%s' has type %s, which llmflash cannot convert",
                                  name, lf_type_name((int)t->type));
            c->ffn[l][k] = t;
        }
    return LF_OK;
}

static lf_status read_source(conv *c) {
    const lf_gguf *g = c->in;
    lf_err *err = c->err;
    lf_gguf_str arch, act;
    lf_status st;
    if (lf_flash_detect(g)) return lf_err_set(err, LF_E_INVALID_ARG, "the input is already a flash file");
    if ((st = lf_gguf_get_str(g, "general.architecture", &arch, err))) return st;
    if (!lf_gguf_str_eq(arch, "llama"))
        return lf_err_set(err, LF_E_UNSUPPORTED, "architecture '%.*s' is not supported (only 'llama')",
                          (int)LF_MIN(arch.len, (uint64_t)32), arch.ptr ? arch.ptr : "");
    if ((st = lf_gguf_get_u32(g, "llama.embedding_length", &c->n_embd, err)) ||
        (st = lf_gguf_get_u32(g, "llama.feed_forward_length", &c->n_ff, err)) ||
        (st = lf_gguf_get_u32(g, "llama.block_count", &c->n_layer, err)) ||
        (st = lf_gguf_get_str(g, "llmflash.ffn_activation", &act, err)))
        return st;
    if (!c->n_embd || !c->n_ff || !c->n_layer || c->n_layer > 4096)
        return lf_err_set(err, LF_E_MODEL, "inconsistent hyperparameters");
    c->gated = !lf_gguf_str_eq(act, "relu_plain");
    if ((st = find_ffn(c))) return st;
    /* the bundle type: the source up projection's type for `keep` */
    const int type = c->p->bundle_type == LF_BUNDLE_KEEP ? (int)c->ffn[0][1]->type : c->p->bundle_type;
    if (!lf_type_supported(type))
        return lf_err_set(err, LF_E_UNSUPPORTED, "bundle type %s is not supported", lf_type_name(type));
    const uint64_t row = lf_type_row_bytes((uint32_t)type, c->n_embd);
    if (!row)
        return lf_err_set(err, LF_E_UNSUPPORTED, "bundle type %s needs d_model to be a multiple of %u; this model has %u",
                          lf_type_name(type), lf_type_traits_get((uint32_t)type)->block, c->n_embd);
    lf_bundle_layout *L = &c->layout;
    L->type = (uint32_t)type;
    L->n_rows = c->gated ? 3 : 2;
    L->row_bytes = row;
    L->record_bytes = L->n_rows * row;
    L->compression = c->p->compression;
    L->level = c->p->compression_level;
    L->group = L->compression == LF_COMPRESS_NONE ? 1 : (c->p->group ? c->p->group : 16);
    L->stride = L->compression == LF_COMPRESS_NONE ? lf_bundle_stride(L->record_bytes, c->p->packed) : L->record_bytes;
    if (L->record_bytes > UINT32_MAX / 2 || (uint64_t)L->group * L->record_bytes > (1u << 30))
        return lf_err_set(err, LF_E_INVALID_ARG, "--group %u of %" PRIu64 "-byte records is too large", L->group,
                          L->record_bytes);
    c->n_groups = (c->n_ff + L->group - 1) / L->group;
    return LF_OK;
}

/* Builds the output header. The same sequence of calls with final values
 * gives the same length, since every value is fixed-width. */
static lf_status build_header(conv *c, lf_gguf_writer **out) {
    lf_gguf_writer *w;
    lf_status st = lf_gguf_writer_create(LF_FLASH_ALIGNMENT, &w);
    if (st) return st;
    const lf_gguf *g = c->in;
    for (uint64_t i = 0; i < g->n_kv && !st; i++)
        if (!is_flash_key(g->kv[i].key)) st = lf_gguf_writer_copy_kv(w, &g->kv[i]);
    const lf_bundle_layout *L = &c->layout;
    if (!st) st = lf_gguf_writer_set_u32(w, LF_KEY_FORMAT, LF_FLASH_FORMAT_VERSION);
    if (!st) st = lf_gguf_writer_set_str(w, LF_KEY_LAYOUT, L->n_rows == 3 ? "gate,up,down" : "up,down");
    if (!st) st = lf_gguf_writer_set_u32(w, LF_KEY_TYPE, L->type);
    if (!st) st = lf_gguf_writer_set_u32(w, LF_KEY_ROW_BYTES, (uint32_t)L->row_bytes);
    if (!st) st = lf_gguf_writer_set_u32(w, LF_KEY_RECORD_BYTES, (uint32_t)L->record_bytes);
    if (!st) st = lf_gguf_writer_set_u32(w, LF_KEY_STRIDE, (uint32_t)L->stride);
    if (!st) st = lf_gguf_writer_set_u32(w, LF_KEY_GROUP, L->group);
    if (!st) st = lf_gguf_writer_set_str(w, LF_KEY_COMPRESSION, lf_compression_name(L->compression));
    if (!st) st = lf_gguf_writer_set_i32(w, LF_KEY_LEVEL, L->level);
    if (!st) st = lf_gguf_writer_set_str(w, LF_KEY_CHECKSUM, "xxh64");
    if (!st) st = lf_gguf_writer_set_arr(w, LF_KEY_TABLE_OFFSETS, LF_GGUF_U64, c->table_offsets, c->n_layer);
    if (!st) st = lf_gguf_writer_set_arr(w, LF_KEY_DATA_OFFSETS, LF_GGUF_U64, c->data_offsets, c->n_layer);
    if (!st) st = lf_gguf_writer_set_arr(w, LF_KEY_TENSOR_CHECKSUMS, LF_GGUF_U64, c->checksums, c->n_out_tensors);
    if (!st) st = lf_gguf_writer_set_u64(w, LF_KEY_FILE_SIZE, c->file_size);
    if (!st) st = lf_gguf_writer_set_u64(w, LF_KEY_HEADER_CHECKSUM, c->header_checksum);
    for (uint64_t i = 0; i < g->n_tensors && !st; i++) {
        const lf_gguf_tensor *t = &g->tensors[i];
        if (is_ffn_weight(t->name)) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)LF_MIN(t->name.len, (uint64_t)255), t->name.ptr);
        st = lf_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, NULL);
    }
    for (uint32_t l = 0; l < c->n_layer && !st; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%u.ffn_bundle", l);
        if (L->compression == LF_COMPRESS_NONE) {
            const uint64_t ne[2] = {L->stride, c->n_ff};
            st = lf_gguf_writer_add_tensor(w, name, 24 /* I8 */, 2, ne, NULL);
        } else {
            const uint64_t ne[1] = {c->bundle_bytes[l] ? c->bundle_bytes[l] : 1};
            st = lf_gguf_writer_add_tensor(w, name, 24, 1, ne, NULL);
        }
        if (st) break;
        snprintf(name, sizeof name, "blk.%u.ffn_bundle_index", l);
        const uint64_t ne[1] = {c->n_groups * sizeof(lf_bundle_entry)};
        st = lf_gguf_writer_add_tensor(w, name, 24, 1, ne, NULL);
    }
    if (st) {
        lf_gguf_writer_destroy(w);
        return lf_err_set(c->err, st, "building the output header failed");
    }
    *out = w;
    return LF_OK;
}

/* Output position tracking: tensors are appended at 4096-aligned offsets. */
typedef struct outpos {
    int fd;
    uint64_t pos;        /* absolute */
    uint64_t data_start; /* absolute start of the data section */
} outpos;

static lf_status out_write(outpos *o, const void *p, uint64_t n, lf_err *err) {
    lf_status st = lf_write_all(o->fd, p, (size_t)n, err);
    if (st) return st;
    o->pos += n;
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
        st = lf_pread_all(c->in_fd, buf, (size_t)n, t->file_offset + off, c->err);
        if (!st) {
            XXH64_update(h, buf, (size_t)n);
            st = out_write(o, buf, n, c->err);
        }
    }
    *checksum = XXH64_digest(h);
    XXH64_freeState(h);
    return st;
}

/* Buffers for one layer's conversion. */
typedef struct layer_bufs {
    uint8_t *down;      /* the source down tensor, whole */
    uint8_t *rows;      /* CONVERT_CHUNK source rows of gate or up */
    float *tile;        /* (CONVERT_CHUNK, n_embd) columns of down, transposed */
    float *tmp;         /* (max(n_embd, n_ff)) */
    uint8_t *records;   /* (CONVERT_CHUNK, record_bytes) */
    uint8_t *packed;    /* one group, compressed or padded */
    size_t packed_cap;
} layer_bufs;

/* Writes source rows [r0, r1) of `t` (gate or up) as row `slot` of each record. */
static lf_status fill_rows(conv *c, layer_bufs *b, const lf_gguf_tensor *t, uint64_t r0, uint64_t r1, int slot) {
    const uint64_t src_row = lf_type_row_bytes(t->type, c->n_embd);
    lf_status st = lf_pread_all(c->in_fd, b->rows, (size_t)((r1 - r0) * src_row), t->file_offset + r0 * src_row, c->err);
    if (st) return st;
    for (uint64_t r = r0; r < r1; r++) {
        const uint8_t *src = b->rows + (r - r0) * src_row;
        uint8_t *dst = b->records + (r - r0) * c->layout.record_bytes + (uint64_t)slot * c->layout.row_bytes;
        if (t->type == c->layout.type) {
            memcpy(dst, src, src_row); /* exact: keep the source blocks */
        } else {
            lf_dequantize_row(t->type, src, b->tmp, c->n_embd);
            lf_quantize_row(c->layout.type, b->tmp, dst, c->n_embd);
        }
    }
    return LF_OK;
}

/* Cuts columns [c0, c1) out of the in-memory down tensor into the records. */
static void fill_down(conv *c, layer_bufs *b, const lf_gguf_tensor *t, uint64_t c0, uint64_t c1) {
    const uint64_t src_row = lf_type_row_bytes(t->type, c->n_ff);
    const uint32_t blk = lf_type_traits_get(t->type)->block, bsz = lf_type_traits_get(t->type)->block_size;
    const uint64_t width = c1 - c0;
    for (uint64_t j = 0; j < c->n_embd; j++) {
        lf_dequantize_row(t->type, b->down + j * src_row + c0 / blk * bsz, b->tmp, (int64_t)width);
        for (uint64_t k = 0; k < width; k++) b->tile[k * c->n_embd + j] = b->tmp[k];
    }
    const uint64_t slot = c->layout.n_rows - 1;
    for (uint64_t k = 0; k < width; k++)
        lf_quantize_row(c->layout.type, b->tile + k * c->n_embd,
                        b->records + k * c->layout.record_bytes + slot * c->layout.row_bytes, c->n_embd);
}

static lf_status write_groups(conv *c, outpos *o, layer_bufs *b, uint32_t l, uint64_t c0, uint64_t c1,
                              uint64_t bundle_start) {
    const lf_bundle_layout *L = &c->layout;
    for (uint64_t first = c0; first < c1; first += L->group) {
        const uint64_t count = LF_MIN((uint64_t)L->group, c1 - first);
        const uint8_t *raw = b->records + (first - c0) * L->record_bytes;
        const uint64_t raw_n = count * L->record_bytes;
        lf_bundle_entry *e = &c->index[l][first / L->group];
        e->offset = o->pos - bundle_start;
        e->raw = (uint32_t)raw_n;
        const uint8_t *stored = raw;
        uint64_t stored_n = raw_n;
        if (L->compression != LF_COMPRESS_NONE) {
            stored_n = lf_codec_compress(L->compression, L->level, raw, raw_n, b->packed, b->packed_cap);
            if (!stored_n) return lf_err_set(c->err, LF_E_NOMEM, "compressing layer %u neurons %" PRIu64 " failed", l, first);
            stored = b->packed;
        }
        e->stored = (uint32_t)stored_n;
        e->checksum = lf_checksum64(stored, stored_n);
        lf_status st = out_write(o, stored, stored_n, c->err);
        /* uncompressed: pad the record to its stride (b->packed is all zeros
         * in this mode, it never holds compressed data) */
        if (!st && L->compression == LF_COMPRESS_NONE && L->stride > L->record_bytes)
            st = out_write(o, b->packed, L->stride - L->record_bytes, c->err);
        if (st) return st;
    }
    return LF_OK;
}

static lf_status convert_layer(conv *c, outpos *o, layer_bufs *b, uint32_t l) {
    const lf_gguf_tensor *gate = c->ffn[l][0], *up = c->ffn[l][1], *down = c->ffn[l][2];
    lf_status st = lf_pread_all(c->in_fd, b->down, (size_t)down->nbytes, down->file_offset, c->err);
    if (st) return st;
    const uint64_t start = o->pos;
    c->data_offsets[l] = start;
    /* chunks are a multiple of the group so groups never span chunks */
    const uint64_t chunk = (CONVERT_CHUNK + c->layout.group - 1) / c->layout.group * c->layout.group;
    for (uint64_t c0 = 0; c0 < c->n_ff; c0 += chunk) {
        const uint64_t c1 = LF_MIN(c0 + chunk, (uint64_t)c->n_ff);
        /* records of this chunk are built in up to `chunk` rows at once */
        for (uint64_t s0 = c0; s0 < c1; s0 += CONVERT_CHUNK) {
            const uint64_t s1 = LF_MIN(s0 + CONVERT_CHUNK, c1);
            uint8_t *saved = b->records;
            b->records = saved + (s0 - c0) * c->layout.record_bytes;
            if (gate) st = fill_rows(c, b, gate, s0, s1, 0);
            if (!st) st = fill_rows(c, b, up, s0, s1, c->gated ? 1 : 0);
            if (!st) fill_down(c, b, down, s0, s1);
            b->records = saved;
            if (st) return st;
        }
        if ((st = write_groups(c, o, b, l, c0, c1, start))) return st;
    }
    c->bundle_bytes[l] = o->pos - start;
    return LF_OK;
}

static void layer_bufs_free(layer_bufs *b) {
    free(b->down);
    free(b->rows);
    free(b->tile);
    free(b->tmp);
    free(b->records);
    free(b->packed);
}

static lf_status layer_bufs_alloc(conv *c, layer_bufs *b) {
    uint64_t max_down = 0, max_row = 0;
    for (uint32_t l = 0; l < c->n_layer; l++) {
        max_down = LF_MAX(max_down, c->ffn[l][2]->nbytes);
        for (int k = 0; k < 2; k++)
            if (c->ffn[l][k]) max_row = LF_MAX(max_row, lf_type_row_bytes(c->ffn[l][k]->type, c->n_embd));
    }
    const uint64_t chunk = (CONVERT_CHUNK + c->layout.group - 1) / c->layout.group * c->layout.group;
    b->down = malloc(max_down);
    b->rows = malloc(max_row * CONVERT_CHUNK);
    b->tile = malloc((size_t)CONVERT_CHUNK * c->n_embd * sizeof(float));
    b->tmp = malloc(LF_MAX(c->n_embd, c->n_ff) * sizeof(float));
    b->records = malloc(chunk * c->layout.record_bytes);
    b->packed_cap = LF_MAX(lf_codec_bound(c->layout.compression, c->layout.group * c->layout.record_bytes),
                           (size_t)c->layout.stride);
    b->packed = calloc(1, b->packed_cap); /* zeros: also the padding source */
    if (!b->down || !b->rows || !b->tile || !b->tmp || !b->records || !b->packed)
        return lf_err_set(c->err, LF_E_NOMEM, "conversion buffers (down matrix of %" PRIu64 " bytes)", max_down);
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
        lf_gguf_writer_destroy(w);
        return lf_err_set(c->err, LF_E_IO, "memfd_create: %s", strerror(errno));
    }
    st = lf_gguf_writer_write_header(w, mfd, c->err);
    lf_gguf_writer_destroy(w);
    uint8_t *hdr = NULL;
    struct stat sb;
    if (!st && fstat(mfd, &sb) != 0) st = lf_err_set(c->err, LF_E_IO, "fstat: %s", strerror(errno));
    if (!st && (uint64_t)sb.st_size != header_len)
        st = lf_err_set(c->err, LF_E_IO, "internal: header length changed (%" PRIu64 " vs %" PRIu64 ")",
                        (uint64_t)sb.st_size, header_len);
    if (!st && !(hdr = malloc(header_len))) st = LF_E_NOMEM;
    if (!st) st = lf_pread_all(mfd, hdr, header_len, 0, c->err);
    close(mfd);
    if (st) {
        free(hdr);
        return st;
    }
    uint8_t *value = lf_flash_header_checksum_field(hdr, header_len);
    if (!value) {
        free(hdr);
        return lf_err_set(c->err, LF_E_IO, "internal: header checksum key not found");
    }
    c->header_checksum = lf_checksum64(hdr, header_len);
    memcpy(value, &c->header_checksum, 8);
    ssize_t n = pwrite(fd, hdr, header_len, 0);
    free(hdr);
    if (n != (ssize_t)header_len) return lf_err_set(c->err, LF_E_IO, "rewriting the header: %s", strerror(errno));
    return LF_OK;
}

static bool report(conv *c, uint64_t add) {
    c->done += add;
    return !c->p->progress || c->p->progress(c->p->progress_user, LF_MIN(c->done, c->total), c->total);
}

lf_status lf_convert(const char *in_path, const char *out_path, const lf_convert_params *params,
                     lf_convert_stats *stats, char *errbuf, size_t errcap) {
    lf_err err = {{0}};
    if (!in_path || !out_path) return LF_E_INVALID_ARG;
    const lf_convert_params p = params ? *params : lf_convert_default_params();
    const uint64_t t0 = lf_now_ns();
    conv c = {.err = &err, .p = &p, .in_fd = -1};
    lf_outfile out = {.fd = -1};
    layer_bufs bufs = {0};
    uint8_t *copybuf = NULL;
    lf_gguf_writer *w = NULL;
    lf_status st;
    struct stat in_sb, out_sb;
    c.in_fd = open(in_path, O_RDONLY | O_CLOEXEC);
    if (c.in_fd < 0) {
        st = lf_err_set(&err, LF_E_IO, "open %s: %s", in_path, strerror(errno));
        goto done;
    }
    if (fstat(c.in_fd, &in_sb) != 0 || !S_ISREG(in_sb.st_mode)) {
        st = lf_err_set(&err, LF_E_IO, "%s is not a regular file", in_path);
        goto done;
    }
    if (stat(out_path, &out_sb) == 0 && out_sb.st_dev == in_sb.st_dev && out_sb.st_ino == in_sb.st_ino) {
        st = lf_err_set(&err, LF_E_INVALID_ARG, "output %s is the input file", out_path);
        goto done;
    }
    if ((st = lf_gguf_read_fd(c.in_fd, (uint64_t)in_sb.st_size, &c.in, &err))) goto done;
    if ((st = read_source(&c))) goto done;
    c.n_out_tensors = 0;
    for (uint64_t i = 0; i < c.in->n_tensors; i++) c.n_out_tensors += !is_ffn_weight(c.in->tensors[i].name);
    c.n_out_tensors += 2ull * c.n_layer;
    c.bundle_bytes = calloc(c.n_layer, sizeof *c.bundle_bytes);
    c.table_offsets = calloc(c.n_layer, sizeof *c.table_offsets);
    c.data_offsets = calloc(c.n_layer, sizeof *c.data_offsets);
    c.checksums = calloc(c.n_out_tensors, sizeof *c.checksums);
    c.index = calloc(c.n_layer, sizeof *c.index);
    copybuf = malloc(COPY_CHUNK);
    if (!c.bundle_bytes || !c.table_offsets || !c.data_offsets || !c.checksums || !c.index || !copybuf) {
        st = lf_err_set(&err, LF_E_NOMEM, "conversion tables");
        goto done;
    }
    for (uint32_t l = 0; l < c.n_layer; l++)
        if (!(c.index[l] = calloc(c.n_groups, sizeof(lf_bundle_entry)))) {
            st = lf_err_set(&err, LF_E_NOMEM, "bundle index");
            goto done;
        }
    if ((st = layer_bufs_alloc(&c, &bufs))) goto done;
    if ((st = build_header(&c, &w))) goto done;
    if ((st = lf_outfile_open(&out, out_path, p.force, &err))) goto done;
    if ((st = lf_gguf_writer_write_header(w, out.fd, &err))) goto done;
    /* write_header padded the header to the alignment: data starts here */
    outpos o = {.fd = out.fd, .pos = (uint64_t)lseek(out.fd, 0, SEEK_CUR)};
    o.data_start = o.pos;
    c.total = (uint64_t)in_sb.st_size;
    uint64_t ti = 0;
    for (uint64_t i = 0; i < c.in->n_tensors; i++) {
        const lf_gguf_tensor *t = &c.in->tensors[i];
        if (is_ffn_weight(t->name)) continue;
        if ((st = copy_tensor(&c, &o, t, copybuf, &c.checksums[ti++]))) goto done;
        if ((st = out_pad(&o, LF_FLASH_ALIGNMENT, &err))) goto done;
        if (!report(&c, t->nbytes)) goto interrupted;
    }
    for (uint32_t l = 0; l < c.n_layer; l++) {
        if ((st = convert_layer(&c, &o, &bufs, l))) goto done;
        c.checksums[ti++] = 0; /* bundle data: covered by the group checksums */
        if ((st = out_pad(&o, LF_FLASH_ALIGNMENT, &err))) goto done;
        c.table_offsets[l] = o.pos;
        const uint64_t idx_bytes = c.n_groups * sizeof(lf_bundle_entry);
        c.checksums[ti++] = lf_checksum64(c.index[l], idx_bytes);
        if ((st = out_write(&o, c.index[l], idx_bytes, &err))) goto done;
        if ((st = out_pad(&o, LF_FLASH_ALIGNMENT, &err))) goto done;
        uint64_t src = 0;
        for (int k = 0; k < 3; k++)
            if (c.ffn[l][k]) src += c.ffn[l][k]->nbytes;
        if (!report(&c, src)) goto interrupted;
    }
    /* the header: real sizes, offsets and checksums, in the same bytes */
    lf_gguf_writer_destroy(w);
    w = NULL;
    c.file_size = o.pos;
    if ((st = build_header(&c, &w))) goto done;
    if (lf_gguf_writer_file_size(w) != o.pos) { /* data must be where the header says */
        st = lf_err_set(&err, LF_E_IO, "internal: wrote %" PRIu64 " bytes, header describes %" PRIu64, o.pos,
                        lf_gguf_writer_file_size(w));
        goto done;
    }
    if ((st = finalize_header(&c, out.fd, o.data_start))) goto done;
    if ((st = lf_outfile_commit(&out, &err))) goto done;
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->in_bytes = (uint64_t)in_sb.st_size;
        stats->out_bytes = o.pos;
        for (uint32_t l = 0; l < c.n_layer; l++) {
            stats->ffn_stored_bytes += c.bundle_bytes[l];
            stats->ffn_raw_bytes += (uint64_t)c.n_ff * c.layout.record_bytes;
        }
        stats->seconds = (double)(lf_now_ns() - t0) / 1e9;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        stats->peak_rss_bytes = (uint64_t)ru.ru_maxrss * 1024;
    }
    st = LF_OK;
    goto done;
interrupted:
    st = lf_err_set(&err, LF_E_INTERRUPTED, "conversion interrupted; %s was not written", out_path);
done:
    if (out.fd >= 0) lf_outfile_abort(&out);
    lf_gguf_writer_destroy(w);
    layer_bufs_free(&bufs);
    free(copybuf);
    if (c.index)
        for (uint32_t l = 0; l < c.n_layer; l++) free(c.index[l]);
    free(c.index);
    free(c.bundle_bytes);
    free(c.table_offsets);
    free(c.data_offsets);
    free(c.checksums);
    free(c.ffn);
    lf_gguf_free(c.in);
    if (c.in_fd >= 0) close(c.in_fd);
    if (st) lf_err_copy_out(&err, errbuf, errcap);
    return st;
}
