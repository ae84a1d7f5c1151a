/* dispatch.c - which kernel table runs: the fastest the CPU and the OS
 * support, or the family LLMFLASH_KERNELS names. */
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef LF_HAVE_X86_KERNELS
const lf_kernels *lf__kernels_avx2(void) { return NULL; }
const lf_kernels *lf__kernels_avx2_vnni(void) { return NULL; }
const lf_kernels *lf__kernels_avx512(void) { return NULL; }
const lf_kernels *lf__kernels_avx512_vnni(void) { return NULL; }
#endif

int lf__kernels_available(const lf_kernels *out[LF_KERNEL_PATHS]) {
    const lf_kernels *all[LF_KERNEL_PATHS] = {lf__kernels_scalar(), lf__kernels_avx2(), lf__kernels_avx2_vnni(),
                                              lf__kernels_avx512(), lf__kernels_avx512_vnni()};
    int n = 0;
    for (int i = 0; i < LF_KERNEL_PATHS; i++)
        if (all[i]) out[n++] = all[i];
    return n;
}

/* The fastest available table whose name starts with the family's. */
static const lf_kernels *fastest_of(const char *family) {
    const lf_kernels *avail[LF_KERNEL_PATHS];
    const int n = lf__kernels_available(avail);
    const size_t len = strlen(family);
    if (!len) return avail[n - 1];
    for (int i = n - 1; i >= 0; i--)
        if (strncmp(avail[i]->name, family, len) == 0 && (avail[i]->name[len] == '\0' || avail[i]->name[len] == '-'))
            return avail[i];
    return NULL;
}

const lf_kernels *lf__kernels_select(char *why, size_t cap) {
    const char *force = getenv("LLMFLASH_KERNELS");
    if (!force || !*force) return fastest_of("");
    static const char *families[] = {"scalar", "avx2", "avx512"};
    for (size_t i = 0; i < sizeof families / sizeof *families; i++) {
        if (strcmp(force, families[i]) != 0) continue;
        const lf_kernels *k = fastest_of(force);
        if (!k && why) snprintf(why, cap, "LLMFLASH_KERNELS=%s: this CPU (or build) cannot run the %s kernels", force, force);
        return k;
    }
    if (why) snprintf(why, cap, "LLMFLASH_KERNELS=%s is not a kernel family; use scalar, avx2 or avx512", force);
    return NULL;
}
