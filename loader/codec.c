/* codec.c - lz4/zstd framing of bundle groups and xxHash64 checksums. */
#include "codec.h"

#include <lz4.h>
#include <lz4hc.h>
#include <stdlib.h>
#include <xxhash.h>
#include <zstd.h>

const char *lf__compression_name(lf_compression c) {
    switch (c) {
    case LF_COMPRESS_NONE: return "none";
    case LF_COMPRESS_LZ4: return "lz4";
    case LF_COMPRESS_ZSTD: return "zstd";
    }
    return "?";
}

lf_status lf_compression_from_name(const char *s, lf_compression *c, int *level) {
    if (!s || !c || !level) return LF_E_INVALID_ARG;
    *level = 0;
    if (strcmp(s, "none") == 0) *c = LF_COMPRESS_NONE;
    else if (strcmp(s, "lz4") == 0) *c = LF_COMPRESS_LZ4;
    else if (strcmp(s, "zstd") == 0) *c = LF_COMPRESS_ZSTD;
    else if (strncmp(s, "zstd:", 5) == 0) {
        char *end;
        const long l = strtol(s + 5, &end, 10);
        if (*end || end == s + 5 || l < 1 || l > 19) return LF_E_INVALID_ARG;
        *c = LF_COMPRESS_ZSTD;
        *level = (int)l;
    } else return LF_E_INVALID_ARG;
    return LF_OK;
}

size_t lf__codec_bound(lf_compression c, size_t n) {
    switch (c) {
    case LF_COMPRESS_LZ4: return (size_t)LZ4_compressBound((int)n);
    case LF_COMPRESS_ZSTD: return ZSTD_compressBound(n);
    default: return n;
    }
}

size_t lf__codec_compress(lf_compression c, int level, const void *src, size_t n, void *dst, size_t cap) {
    switch (c) {
    case LF_COMPRESS_NONE:
        if (cap < n) return 0;
        memcpy(dst, src, n);
        return n;
    case LF_COMPRESS_LZ4: {
        if (n > (size_t)LZ4_MAX_INPUT_SIZE) return 0;
        const int r = level > 0 ? LZ4_compress_HC(src, dst, (int)n, (int)cap, level)
                                : LZ4_compress_default(src, dst, (int)n, (int)cap);
        return r > 0 ? (size_t)r : 0;
    }
    case LF_COMPRESS_ZSTD: {
        const size_t r = ZSTD_compress(dst, cap, src, n, level > 0 ? level : 3);
        return ZSTD_isError(r) ? 0 : r;
    }
    }
    return 0;
}

lf_status lf__codec_decompress(lf_compression c, const void *src, size_t n, void *dst, size_t raw, lf_err *err) {
    switch (c) {
    case LF_COMPRESS_NONE:
        if (n != raw) return lf__err_set(err, LF_E_CORRUPT, "stored %zu bytes, expected %zu", n, raw);
        memcpy(dst, src, n);
        return LF_OK;
    case LF_COMPRESS_LZ4: {
        if (n > (size_t)LZ4_MAX_INPUT_SIZE || raw > (size_t)LZ4_MAX_INPUT_SIZE)
            return lf__err_set(err, LF_E_CORRUPT, "lz4 frame too large");
        const int r = LZ4_decompress_safe(src, dst, (int)n, (int)raw);
        if (r < 0 || (size_t)r != raw)
            return lf__err_set(err, LF_E_CORRUPT, "lz4 frame decodes to %d bytes, expected %zu", r, raw);
        return LF_OK;
    }
    case LF_COMPRESS_ZSTD: {
        const size_t r = ZSTD_decompress(dst, raw, src, n);
        if (ZSTD_isError(r) || r != raw)
            return lf__err_set(err, LF_E_CORRUPT, "zstd frame: %s", ZSTD_isError(r) ? ZSTD_getErrorName(r) : "wrong size");
        return LF_OK;
    }
    }
    return lf__err_set(err, LF_E_CORRUPT, "unknown compression %d", (int)c);
}

uint64_t lf__checksum64(const void *data, size_t n) { return (uint64_t)XXH64(data, n, 0); }
