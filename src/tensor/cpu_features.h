/* cpu_features.h - what the CPU and the OS let kernels use, read once from
 * cpuid and XGETBV: an instruction set counts only when the OS also saves
 * the registers it needs (XCR0), as AVX-512's opmask and upper registers. */
#ifndef LF_CPU_FEATURES_H
#define LF_CPU_FEATURES_H

#include <stdbool.h>

typedef struct lf_cpu_features {
    bool avx2, fma, f16c, avx_vnni;                      /* with the OS saving YMM state */
    bool avx512f, avx512bw, avx512vl, avx512_vnni, avx512_bf16; /* with the OS saving ZMM and opmask state */
    /* AVX-512 run as two 256-bit halves, as AMD's Zen 4 does (family 19h;
     * the Zen 3 parts of that family have no AVX-512): kernels whose best
     * shape differs from Intel's choose by it */
    bool avx512_split;
    unsigned amd_family; /* AMD's cpuid family (0x19 Zen 3/4, 0x1A Zen 5), 0 on other vendors */
} lf_cpu_features;

const lf_cpu_features *lf__cpu_features_get(void);
/* "avx2 fma f16c avx512f ..." for reports; the names the CPU has. */
const char *lf__cpu_features_string(void);

#endif
