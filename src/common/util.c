/* util.c - aligned allocation, clocks, half floats and the seeded RNG. */
#include "lf_common.h"
#include <stdio.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <math.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void *lf__alloc_aligned(size_t size, size_t align) {
    void *p = NULL;
    if (size == 0) size = align;
    if (size > SIZE_MAX - align) return NULL; /* rounding up would wrap */
    size = (size + align - 1) / align * align;
    if (posix_memalign(&p, align, size) != 0) return NULL;
    return p;
}

void *lf__alloc_weights(size_t size, bool huge_pages) {
    const size_t huge = (size_t)2 << 20;
    if (!huge_pages || size < huge) return lf__alloc_aligned(size, 64);
    void *p = lf__alloc_aligned(size, huge);
    /* a hint: without transparent huge pages the kernel ignores it */
    if (p) (void)madvise(p, (size + huge - 1) / huge * huge, MADV_HUGEPAGE);
    return p;
}

void lf__free_aligned(void *p) { free(p); }

uint64_t lf__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int lf__cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static uint64_t read_u64_file(const char *path) {
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    char word[32] = "";
    if (!f) return 0;
    if (fscanf(f, "%31s", word) == 1 && strcmp(word, "max") != 0) v = strtoull(word, NULL, 10);
    fclose(f);
    return v;
}

/* The memory cgroup's limit minus its usage; UINT64_MAX without a limit. */
static uint64_t cgroup_room(void) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return UINT64_MAX;
    char line[512], path[640];
    uint64_t room = UINT64_MAX;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        uint64_t limit = 0, usage = 0;
        if (strncmp(c1 + 1, "memory:", 7) == 0) { /* v1 */
            snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", c2 + 1);
            limit = read_u64_file(path);
            snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.usage_in_bytes", c2 + 1);
            usage = read_u64_file(path);
        } else if (c2 == c1 + 1) { /* v2: "0::/path" */
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", c2 + 1);
            limit = read_u64_file(path);
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.current", c2 + 1);
            usage = read_u64_file(path);
        }
        if (limit && limit < (1ull << 60)) room = LF_MIN(room, limit > usage ? limit - usage : 0);
    }
    fclose(f);
    return room;
}

uint64_t lf__memory_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    uint64_t avail = 0;
    if (f) {
        char line[128];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) avail = (uint64_t)kb << 10;
        fclose(f);
    }
    return LF_MIN(avail, cgroup_room());
}

/* Branch-light: move exponent and mantissa into place, rebias, and fix up
 * the two special ranges (inf/nan, zero/subnormal) with one test each. */
float lf__fp16_to_fp32(uint16_t h) {
    const uint32_t shifted_exp = 0x7c00u << 13;
    uint32_t u = ((uint32_t)h & 0x7fffu) << 13;
    const uint32_t exp = u & shifted_exp;
    u += (127u - 15u) << 23;
    float f;
    if (exp == shifted_exp) {
        u += (128u - 16u) << 23; /* inf or nan */
        memcpy(&f, &u, 4);
    } else if (exp == 0) {
        u += 1u << 23; /* zero or subnormal: renormalise through the FPU */
        memcpy(&f, &u, 4);
        f -= 6.103515625e-05f; /* 2^-14 */
    } else {
        memcpy(&f, &u, 4);
    }
    uint32_t bits;
    memcpy(&bits, &f, 4);
    bits |= ((uint32_t)h & 0x8000u) << 16;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, as F16C's _cvtss_sh(x, 0) does. */
uint16_t lf__fp32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* below the smallest normal half: subnormal */
        if (absx < 0x33000000u) return (uint16_t)sign; /* < 2^-25 rounds to 0 */
        const uint32_t e = absx >> 23;
        const uint32_t m = (absx & 0x7fffff) | 0x800000;
        const uint32_t shift = 126 - e; /* 14..24 */
        uint32_t half = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((absx >> 23) - 112) << 10 | ((absx >> 13) & 0x3ff);
    const uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

uint16_t lf__fp32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 64); /* quiet nan */
    return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void lf__rng_seed(lf_rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t lf__rng_next(lf_rng *rng) {
    uint64_t *s = rng->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float lf__rng_uniform(lf_rng *rng) { return (float)(lf__rng_next(rng) >> 40) * (1.0f / 16777216.0f); }

/* Irwin-Hall with four uniforms: cheap, bounded (|x| < 3.47), close enough to
 * a normal for random weights, and much faster than Box-Muller. */
float lf__rng_normal(lf_rng *rng) {
    const uint64_t r = lf__rng_next(rng);
    const float s = (float)(r & 0xffff) + (float)((r >> 16) & 0xffff) + (float)((r >> 32) & 0xffff) +
                    (float)(r >> 48);
    return (s / 65536.0f - 2.0f) * 1.7320508f;
}

lf_status lf__open_input(const char *path, int flags, int *fd_out, uint64_t *size, lf_err *err) {
    *fd_out = -1;
    if (!path) return lf__err_set(err, LF_E_INVALID_ARG, "no path (NULL)");
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
     * writer forever; it is cleared again before any read */
    const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | flags);
    if (fd < 0) return lf__err_set(err, LF_E_IO, "open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        const int e = errno;
        close(fd);
        return lf__err_set(err, LF_E_IO, "stat %s: %s", path, strerror(e));
    }
    uint64_t bytes = (uint64_t)sb.st_size;
    if (S_ISBLK(sb.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, &bytes) != 0) bytes = 0;
    } else if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return lf__err_set(err, LF_E_IO, "%s is not a regular file or block device (a %s)", path,
                           S_ISDIR(sb.st_mode) ? "directory" : S_ISFIFO(sb.st_mode) ? "FIFO" :
                           S_ISCHR(sb.st_mode) ? "character device" : S_ISSOCK(sb.st_mode) ? "socket" : "special file");
    }
    const int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        const int e = errno;
        close(fd);
        return lf__err_set(err, LF_E_IO, "fcntl %s: %s", path, strerror(e));
    }
    *fd_out = fd;
    if (size) *size = bytes;
    return LF_OK;
}

char *lf__sidecar_path(const char *model_path, const char *given, const char *suffix) {
    if (given) return strdup(given);
    const size_t n = strlen(model_path) + strlen(suffix) + 1;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s", model_path, suffix);
    return p;
}
