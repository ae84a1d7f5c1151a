/* codec.h - bundle compression and checksums. Depends only on src/common. */
#ifndef LF_CODEC_H
#define LF_CODEC_H

#include "../src/common/lf_common.h"

const char *lf__compression_name(lf_compression c);

/* Worst-case compressed size of n bytes. */
size_t lf__codec_bound(lf_compression c, size_t n);
/* Compresses src into dst (cap from lf__codec_bound); returns the size or 0
 * on failure. */
size_t lf__codec_compress(lf_compression c, int level, const void *src, size_t n, void *dst, size_t cap);
/* Decompresses exactly raw bytes; LF_E_CORRUPT if the frame is bad or its
 * size differs. */
lf_status lf__codec_decompress(lf_compression c, const void *src, size_t n, void *dst, size_t raw, lf_err *err);

/* xxHash64 (seed 0) of n bytes. */
uint64_t lf__checksum64(const void *data, size_t n);

#endif
