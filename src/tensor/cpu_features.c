/* cpu_features.c - cpuid and XGETBV, read once. */
#include "cpu_features.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void probe(lf_cpu_features *f) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const bool osxsave = c & bit_OSXSAVE, avx = c & bit_AVX;
    const bool fma = c & bit_FMA, f16c = c & bit_F16C;
    if (!osxsave || !avx) return;
    const uint64_t xcr0 = xgetbv0();
    const bool os_ymm = (xcr0 & 0x6) == 0x6;    /* SSE and AVX state */
    const bool os_zmm = (xcr0 & 0xE6) == 0xE6;  /* and opmask, ZMM0-15 upper halves, ZMM16-31 */
    if (!os_ymm) return;
    unsigned a7 = 0, b7 = 0, c7 = 0, d7 = 0, a71 = 0, b71 = 0, c71 = 0, d71 = 0;
    __get_cpuid_count(7, 0, &a7, &b7, &c7, &d7);
    if (a7 >= 1) __get_cpuid_count(7, 1, &a71, &b71, &c71, &d71);
    f->avx2 = b7 & bit_AVX2;
    f->fma = fma;
    f->f16c = f16c;
    f->avx_vnni = a71 & (1u << 4);
    if (os_zmm) {
        f->avx512f = b7 & bit_AVX512F;
        f->avx512bw = b7 & bit_AVX512BW;
        f->avx512vl = b7 & bit_AVX512VL;
        f->avx512_vnni = c7 & (1u << 11);
        f->avx512_bf16 = a71 & (1u << 5);
    }
    unsigned a0, vendor[3];
    if (__get_cpuid(0, &a0, &vendor[0], &vendor[2], &vendor[1])) {
        const unsigned family = ((a >> 8) & 0xF) == 0xF ? 0xF + ((a >> 20) & 0xFF) : (a >> 8) & 0xF;
        f->amd_family = !memcmp(vendor, "AuthenticAMD", 12) ? family : 0;
        f->avx512_split = f->amd_family == 0x19 && f->avx512f;
    }
}
#else
static void probe(lf_cpu_features *f) { (void)f; }
#endif

static lf_cpu_features features;
static char names[160];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void) {
    probe(&features);
    const struct { bool on; const char *name; } all[] = {
        {features.avx2, "avx2"}, {features.fma, "fma"}, {features.f16c, "f16c"}, {features.avx_vnni, "avx-vnni"},
        {features.avx512f, "avx512f"}, {features.avx512bw, "avx512bw"}, {features.avx512vl, "avx512vl"},
        {features.avx512_vnni, "avx512-vnni"}, {features.avx512_bf16, "avx512-bf16"}};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        if (!all[i].on) continue;
        if (names[0]) strcat(names, " ");
        strcat(names, all[i].name);
    }
    if (!names[0]) strcpy(names, "none of avx2/avx512");
}

const lf_cpu_features *lf__cpu_features_get(void) {
    pthread_once(&once, init);
    return &features;
}

const char *lf__cpu_features_string(void) {
    pthread_once(&once, init);
    return names;
}
