/* fuzz_support.c - what the fuzz targets share. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Writes the input to an anonymous file and returns "/proc/self/fd/N". */
int lf_fuzz_file(const uint8_t *data, size_t size, char *path, size_t cap);

int lf_fuzz_file(const uint8_t *data, size_t size, char *path, size_t cap) {
    const int fd = memfd_create("lf_fuzz", MFD_CLOEXEC);
    if (fd < 0) abort();
    for (size_t off = 0; off < size;) {
        const ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

