/* x8_kquants.h - 256-bit kernels for Q4_K, Q5_K and Q6_K weights in the x8 layout
 * (repack.h), shared by the AVX2 and AVX-512 files: each includes it after
 * defining dot4_u8s8 (maddubs, AVX-VNNI or AVX512-VNNI) and x8_gemm.h.
 *
 * One lane per row, as for Q4_0: a sub-block's 32 values of the 8 rows are
 * 8 chunk registers; each token's 32 activation bytes are 8 broadcasts. The
 * sub-block scales of the 8 rows come from one 8-byte load each. */
#ifndef LF_X8_KQUANTS_H
#define LF_X8_KQUANTS_H

static inline __m256i bytes8_u32(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)); }
static inline __m256i bytes8_i32(const uint8_t *p) { return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)); }
static inline __m256i bcast4_k(const int8_t *p) { return _mm256_set1_epi32((int)lf__load_u32(p)); }

/* The per-lane sum of the 4-byte dot products of chunks w[0..n) with the
 * activation words y[4m..4m+3]: VNNI's dpbusd, or else maddubs pairs added
 * as int16 (exact while n * 2 * max(w) * 128 < 32768: n <= 8 for 4-bit
 * values, 4 for 5-bit, 2 for 6-bit) and widened once. */
static inline __attribute__((always_inline)) __m256i chunk_dots(const __m256i *w, const int8_t *y, int n) {
#ifdef LF_VNNI
    __m256i s = _mm256_setzero_si256();
    for (int m = 0; m < n; m++) s = dot4_u8s8(s, w[m], bcast4_k(y + 4 * m));
    return s;
#else
    __m256i s16 = _mm256_maddubs_epi16(w[0], bcast4_k(y));
    for (int m = 1; m < n; m++) s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(w[m], bcast4_k(y + 4 * m)));
    return _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
#endif
}

/* Sub-block s's scales and mins of the 8 rows, times the super-block's d
 * and dmin (the 6-bit packing of ggml's k4 scales, read 8 rows at once from
 * the byte-major scale bytes B). */
static inline void q4_K_sub_scales(const uint8_t *B, int s, __m256 d, __m256 dmin, __m256 *dsc, __m256 *dmn) {
    const __m256i m6 = _mm256_set1_epi32(63), l4 = _mm256_set1_epi32(0x0F);
    __m256i sc, mn;
    if (s < 4) {
        sc = _mm256_and_si256(bytes8_u32(B + 8 * s), m6);
        mn = _mm256_and_si256(bytes8_u32(B + 8 * (s + 4)), m6);
    } else {
        const __m256i lo = bytes8_u32(B + 8 * (s + 4));
        sc = _mm256_or_si256(_mm256_and_si256(lo, l4), _mm256_slli_epi32(_mm256_srli_epi32(bytes8_u32(B + 8 * (s - 4)), 6), 4));
        mn = _mm256_or_si256(_mm256_srli_epi32(lo, 4), _mm256_slli_epi32(_mm256_srli_epi32(bytes8_u32(B + 8 * s), 6), 4));
    }
    *dsc = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc));
    *dmn = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(mn));
}

#define X8_Q4K_BYTES (LF_X8 * sizeof(lf_block_q4_K))
#define X8_Q6K_BYTES (LF_X8 * sizeof(lf_block_q6_K))
/* In a Q6_K group block, half h's high bits (8 chunks of 32 bytes), then
 * its low nibbles (16 chunks: chunks 8j.. serve the blocks gg = j and j + 2
 * of the half): laid out in reading order, one half after the other, as
 * a core's prefetchers need (an earlier layout with all the low nibbles
 * before all the high bits streamed 7B rows at a third of Q4_K's rate). */
#define Q6X8_QH(h) (144 + 768 * (h))
#define Q6X8_QL(h, j) (400 + 768 * (h) + 256 * (j))

#define X8_Q5K_BYTES (LF_X8 * sizeof(lf_block_q5_K))

/* Q4_K and Q5_K groups: `bytes` per group block, the packed values at qs_at,
 * and for Q5_K the fifth bits at qh_at (0: none), chunk m of the 8 rows'
 * qh at qh_at + 32m: bit s of each byte belongs to sub-block s. */
static inline __attribute__((always_inline)) void x8_k4_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                              float *y, uint64_t ys, int64_t nsb, uint64_t bytes,
                                                              int qs_at, int qh_at) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256 acc[X8_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, g += bytes) {
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)g));
        const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(g + 16)));
        const uint8_t *B = g + 32; /* scale byte k of the 8 rows at B + 8k */
        for (int s = 0; s < 8; s++) {
            __m256 dsc, dmn;
            q4_K_sub_scales(B, s, d, dmin, &dsc, &dmn);
            /* sub-block s: the low (even s) or high nibbles of chunks 8(s/2)..+7 */
            const uint8_t *q = g + qs_at + 32 * 8 * (s / 2);
            __m256i w[8];
            for (int m = 0; m < 8; m++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(q + 32 * m));
                w[m] = _mm256_and_si256(s & 1 ? _mm256_srli_epi16(v, 4) : v, m4);
                if (qh_at) {
                    const __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(g + qh_at + 32 * m));
                    const __m256i bit = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(s)), one);
                    w[m] = _mm256_or_si256(w[m], _mm256_slli_epi16(bit, 4));
                }
            }
            for (int t = 0; t < nt; t++) {
                const lf_block_q8a *yb = tok_blocks(x, xs, t) + 8 * i + s;
                /* 5-bit values (Q5_K) take int16 sums of 4 chunks at most */
                const __m256i is = qh_at ? _mm256_add_epi32(chunk_dots(w, yb->qs, 4), chunk_dots(w + 4, yb->qs + 16, 4))
                                         : chunk_dots(w, yb->qs, 8);
                const __m256 dy = _mm256_set1_ps(yb->d);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_mul_ps(dsc, dy), acc[t]);
                acc[t] = _mm256_fnmadd_ps(dmn, _mm256_set1_ps(yb->d * (float)(yb->sum[0] + yb->sum[1])), acc[t]);
            }
        }
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + (uint64_t)t * ys, acc[t]);
}

static inline __attribute__((always_inline)) void x8_q4_K_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                float *y, uint64_t ys, int64_t nsb) {
    x8_k4_tile(g, x, xs, nt, y, ys, nsb, X8_Q4K_BYTES, 128, 0);
}
static inline __attribute__((always_inline)) void x8_q5_K_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                float *y, uint64_t ys, int64_t nsb) {
    x8_k4_tile(g, x, xs, nt, y, ys, nsb, X8_Q5K_BYTES, 384, 128);
}

static inline __attribute__((always_inline)) void x8_q6_K_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                float *y, uint64_t ys, int64_t nsb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m256 acc[X8_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, g += X8_Q6K_BYTES) {
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)g));
        for (int b = 0; b < 8; b++) { /* activation block b: half h, group gg of 32 */
            const int h = b / 4, gg = b % 4;
            const uint8_t *ql = g + Q6X8_QL(h, gg & 1), *qh = g + Q6X8_QH(h);
            const __m128i sl = _mm_cvtsi32_si128(4 * (gg >> 1)), sh = _mm_cvtsi32_si128(2 * gg);
            __m256i w[8];
            for (int m = 0; m < 8; m++) {
                const __m256i lo = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(ql + 32 * m)), sl), m4);
                const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(qh + 32 * m)), sh), m2);
                w[m] = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
            }
            const __m256i sc0 = bytes8_i32(g + 16 + 8 * (8 * h + 2 * gg)), sc1 = bytes8_i32(g + 16 + 8 * (8 * h + 2 * gg + 1));
            for (int t = 0; t < nt; t++) {
                const lf_block_q8a *yb = tok_blocks(x, xs, t) + 8 * i + b;
                /* 6-bit values: int16 sums of 2 chunks at most */
                __m256i i0 = _mm256_add_epi32(chunk_dots(w, yb->qs, 2), chunk_dots(w + 2, yb->qs + 8, 2));
                __m256i i1 = _mm256_add_epi32(chunk_dots(w + 4, yb->qs + 16, 2), chunk_dots(w + 6, yb->qs + 24, 2));
                /* each half's sum minus the -32 offset, times its scale */
                i0 = _mm256_sub_epi32(i0, _mm256_set1_epi32(32 * yb->sum[0]));
                i1 = _mm256_sub_epi32(i1, _mm256_set1_epi32(32 * yb->sum[1]));
                const __m256i it = _mm256_add_epi32(_mm256_mullo_epi32(i0, sc0), _mm256_mullo_epi32(i1, sc1));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(it), _mm256_mul_ps(d, _mm256_set1_ps(yb->d)), acc[t]);
            }
        }
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + (uint64_t)t * ys, acc[t]);
}

X8_GEMM(gemm_x8_q4_K, x8_q4_K_tile, 256)
X8_GEMM(gemm_x8_q5_K, x8_q5_K_tile, 256)
X8_GEMM(gemm_x8_q6_K, x8_q6_K_tile, 256)

#endif
