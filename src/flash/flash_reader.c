/* flash_reader.c - reading a flash file's bundle layout, index and groups. */
#include "flash_format.h"
#include "../tensor/quant_types.h"
#include "../arch/arch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

lf_status lf__pread_all(int fd, void *buf, size_t n, uint64_t off, lf_err *err) {
    uint8_t *p = buf;
    while (n > 0) {
        const ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return lf__err_set(err, LF_E_IO, "read of %zu bytes at offset %" PRIu64 ": %s", n, off, strerror(errno));
        }
        if (r == 0) return lf__err_set(err, LF_E_TRUNCATED, "file ends before offset %" PRIu64, off);
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return LF_OK;
}

uint8_t *lf__flash_header_checksum_field(uint8_t *hdr, uint64_t len) {
    uint8_t pat[8 + sizeof LF_KEY_HEADER_CHECKSUM - 1 + 4];
    const uint64_t klen = sizeof LF_KEY_HEADER_CHECKSUM - 1;
    const uint32_t type = LF_GGUF_U64;
    memcpy(pat, &klen, 8);
    memcpy(pat + 8, LF_KEY_HEADER_CHECKSUM, klen);
    memcpy(pat + 8 + klen, &type, 4);
    uint8_t *at = memmem(hdr, len, pat, sizeof pat);
    return at && (uint64_t)(at - hdr) + sizeof pat + 8 <= len ? at + sizeof pat : NULL;
}

bool lf__flash_detect(const lf_gguf *g) { return lf__gguf_find(g, LF_KEY_FORMAT) != NULL; }

void lf__flash_free(lf_flash *f) {
    if (!f) return;
    if (f->layers)
        for (uint32_t l = 0; l < f->n_layer; l++) free(f->layers[l].index);
    free(f->layers);
    free(f);
}

static lf_status read_layout(const lf_gguf *g, lf_flash *f, lf_err *err) {
    lf_bundle_layout *L = &f->layout;
    uint32_t version, row_bytes, record_bytes, stride, level = 0;
    lf_gguf_str layout, comp, sum;
    lf_status st;
    if ((st = lf__gguf_get_u32(g, LF_KEY_FORMAT, &version, err))) return st;
    if (version != LF_FLASH_FORMAT_VERSION)
        return lf__err_set(err, LF_E_UNSUPPORTED, "flash format version %u (this llmflash reads %d)", version,
                           LF_FLASH_FORMAT_VERSION);
    lf_ffn_shape shape;
    if ((st = lf__arch_ffn_shape(g, &shape, err)) ||
        (st = lf__gguf_get_u32(g, LF_KEY_TYPE, &L->type, err)) ||
        (st = lf__gguf_get_u32(g, LF_KEY_ROW_BYTES, &row_bytes, err)) ||
        (st = lf__gguf_get_u32(g, LF_KEY_RECORD_BYTES, &record_bytes, err)) ||
        (st = lf__gguf_get_u32(g, LF_KEY_STRIDE, &stride, err)) ||
        (st = lf__gguf_get_u32(g, LF_KEY_GROUP, &L->group, err)) ||
        (st = lf__gguf_get_u32_or(g, LF_KEY_LEVEL, 0, &level, err)) ||
        (st = lf__gguf_get_str(g, LF_KEY_LAYOUT, &layout, err)) ||
        (st = lf__gguf_get_str(g, LF_KEY_COMPRESSION, &comp, err)) ||
        (st = lf__gguf_get_str(g, LF_KEY_CHECKSUM, &sum, err)))
        return st;
    if (lf__gguf_str_eq(layout, "gate,up,down")) L->n_rows = 3;
    else if (lf__gguf_str_eq(layout, "up,down")) L->n_rows = 2;
    else return lf__err_set(err, LF_E_UNSUPPORTED, "%s is neither 'gate,up,down' nor 'up,down'", LF_KEY_LAYOUT);
    if (lf__gguf_str_eq(comp, "none")) L->compression = LF_COMPRESS_NONE;
    else if (lf__gguf_str_eq(comp, "lz4")) L->compression = LF_COMPRESS_LZ4;
    else if (lf__gguf_str_eq(comp, "zstd")) L->compression = LF_COMPRESS_ZSTD;
    else return lf__err_set(err, LF_E_UNSUPPORTED, "%s is not none, lz4 or zstd", LF_KEY_COMPRESSION);
    if (!lf__gguf_str_eq(sum, "xxh64"))
        return lf__err_set(err, LF_E_UNSUPPORTED, "%s is not xxh64", LF_KEY_CHECKSUM);
    if (!lf_type_supported((int)L->type))
        return lf__err_set(err, LF_E_UNSUPPORTED, "bundle type %s is not supported", lf_type_name((int)L->type));
    f->n_embd = shape.n_embd;
    f->n_layer = shape.n_layer;
    f->n_expert = shape.n_expert;
    f->n_ff = shape.n_ff * shape.n_expert;
    L->level = (int32_t)level;
    L->row_bytes = row_bytes;
    L->record_bytes = record_bytes;
    L->stride = stride;
    if (f->n_embd == 0 || f->n_ff == 0 || f->n_layer == 0 || L->group == 0 ||
        lf__type_row_bytes(L->type, f->n_embd) != row_bytes || record_bytes != L->n_rows * row_bytes ||
        stride < record_bytes || (L->compression == LF_COMPRESS_NONE && f->n_expert == 1 && L->group != 1) ||
        (f->n_expert > 1 && L->group != shape.n_ff) ||
        (L->compression == LF_COMPRESS_NONE && stride < (uint64_t)L->group * record_bytes) ||
        (uint64_t)L->group * record_bytes > (1u << 30))
        return lf__err_set(err, LF_E_MODEL, "inconsistent bundle layout: row %u, record %u, stride %u, group %u bytes",
                           row_bytes, record_bytes, stride, L->group);
    return LF_OK;
}

lf_status lf__flash_check_size(const lf_gguf *g, lf_err *err) {
    uint64_t want;
    lf_status st = lf__gguf_get_u64_or(g, LF_KEY_FILE_SIZE, 0, &want, err);
    if (st) return st;
    if (want != g->file_size)
        return lf__err_set(err, want > g->file_size ? LF_E_TRUNCATED : LF_E_CORRUPT,
                           "the file has %" PRIu64 " bytes but its header records %" PRIu64, g->file_size, want);
    return LF_OK;
}

void lf__flash_group_neurons(const lf_flash *f, uint64_t g, uint64_t *first, uint64_t *count) {
    *first = g * f->layout.group;
    *count = LF_MIN((uint64_t)f->layout.group, (uint64_t)f->n_ff - *first);
}

lf_status lf__flash_open(const lf_gguf *g, int fd, lf_flash **out, lf_err *err) {
    *out = NULL;
    lf_flash *f = calloc(1, sizeof *f);
    if (!f) return LF_E_NOMEM;
    lf_status st = lf__flash_check_size(g, err);
    if (!st) st = read_layout(g, f, err);
    if (st) goto fail;
    f->layers = calloc(f->n_layer, sizeof *f->layers);
    if (!f->layers) {
        st = LF_E_NOMEM;
        goto fail;
    }
    const uint64_t n_groups = ((uint64_t)f->n_ff + f->layout.group - 1) / f->layout.group;
    const lf_gguf_kv *sums = lf__gguf_find(g, LF_KEY_TENSOR_CHECKSUMS);
    for (uint32_t l = 0; l < f->n_layer; l++) {
        lf_flash_layer *L = &f->layers[l];
        char name[64];
        snprintf(name, sizeof name, "blk.%u.ffn_bundle", l);
        const lf_gguf_tensor *data = lf__gguf_find_tensor(g, name);
        snprintf(name, sizeof name, "blk.%u.ffn_bundle_index", l);
        const int64_t idx_i = lf__gguf_tensor_index(g, name);
        if (!data || idx_i < 0) {
            st = lf__err_set(err, LF_E_MODEL, "layer %u has no bundle tensor or bundle index", l);
            goto fail;
        }
        const lf_gguf_tensor *idx = &g->tensors[idx_i];
        if (idx->nbytes != n_groups * sizeof(lf_bundle_entry)) {
            st = lf__err_set(err, LF_E_MODEL, "bundle index of layer %u has %" PRIu64 " bytes, expected %" PRIu64, l,
                             idx->nbytes, n_groups * sizeof(lf_bundle_entry));
            goto fail;
        }
        L->data_offset = data->file_offset;
        L->data_bytes = data->nbytes;
        L->n_groups = n_groups;
        L->index = malloc(idx->nbytes);
        if (!L->index) {
            st = LF_E_NOMEM;
            goto fail;
        }
        if ((st = lf__pread_all(fd, L->index, idx->nbytes, idx->file_offset, err))) goto fail;
        if (sums && sums->type == LF_GGUF_ARRAY && sums->arr_type == LF_GGUF_U64 && sums->arr_n == g->n_tensors &&
            lf__checksum64(L->index, idx->nbytes) != lf__load_u64(sums->data + 8 * (uint64_t)idx_i)) {
            st = lf__err_set(err, LF_E_CORRUPT, "bundle index of layer %u fails its checksum", l);
            goto fail;
        }
        for (uint64_t gi = 0; gi < n_groups; gi++) {
            const lf_bundle_entry *e = &L->index[gi];
            uint64_t first, count;
            lf__flash_group_neurons(f, gi, &first, &count);
            if (e->raw != count * f->layout.record_bytes || e->stored == 0 || e->offset > L->data_bytes ||
                e->stored > L->data_bytes - e->offset ||
                (f->layout.compression == LF_COMPRESS_NONE && (e->stored != e->raw || e->offset != gi * f->layout.stride))) {
                st = lf__err_set(err, LF_E_CORRUPT, "bundle index entry of layer %u, neurons %" PRIu64 "-%" PRIu64
                                 " is out of bounds", l, first, first + count - 1);
                goto fail;
            }
        }
    }
    *out = f;
    return LF_OK;
fail:
    lf__flash_free(f);
    return st;
}

lf_status lf__flash_decode_group(const lf_flash *f, uint32_t layer, uint64_t g, const void *stored, void *raw,
                                 bool verify, lf_err *err) {
    const lf_bundle_entry *e = &f->layers[layer].index[g];
    uint64_t first, count;
    lf__flash_group_neurons(f, g, &first, &count);
    if (verify && lf__checksum64(stored, e->stored) != e->checksum)
        return lf__err_set(err, LF_E_CORRUPT, "bundle group of layer %u, neurons %" PRIu64 "-%" PRIu64
                           " at offset %" PRIu64 " fails its checksum", layer, first, first + count - 1,
                           f->layers[layer].data_offset + e->offset);
    lf_err inner = {{0}};
    const lf_status st = lf__codec_decompress(f->layout.compression, stored, e->stored, raw, e->raw, &inner);
    if (st)
        return lf__err_set(err, st, "bundle group of layer %u, neurons %" PRIu64 "-%" PRIu64 ": %s", layer, first,
                           first + count - 1, inner.msg);
    return LF_OK;
}

lf_status lf__flash_read_layer(const lf_flash *f, int fd, uint32_t layer, void *dst, bool verify, lf_err *err) {
    const lf_flash_layer *L = &f->layers[layer];
    uint64_t max_stored = 0;
    for (uint64_t g = 0; g < L->n_groups; g++) max_stored = LF_MAX(max_stored, (uint64_t)L->index[g].stored);
    uint8_t *buf = malloc(max_stored);
    if (!buf) return lf__err_set(err, LF_E_NOMEM, "bundle read buffer of %" PRIu64 " bytes", max_stored);
    lf_status st = LF_OK;
    for (uint64_t g = 0; g < L->n_groups && !st; g++) {
        const lf_bundle_entry *e = &L->index[g];
        uint64_t first, count;
        lf__flash_group_neurons(f, g, &first, &count);
        st = lf__pread_all(fd, buf, e->stored, L->data_offset + e->offset, err);
        if (!st)
            st = lf__flash_decode_group(f, layer, g, buf, (uint8_t *)dst + first * f->layout.record_bytes, verify, err);
    }
    free(buf);
    return st;
}
