/* test_gguf.c - GGUF reader and writer: valid files, every kind of corrupt
 * file the reader must name, truncation at every length, atomic output. */
#include <criterion/criterion.h>

#include "../src/gguf/gguf.h"
#include "../src/tensor/quant_types.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* A small but complete file built with the writer: every scalar type, a
 * string, a string array, a nested array and three tensors. */
typedef struct blob {
    uint8_t *data;
    size_t size;
} blob;

static blob read_back(int fd) {
    struct stat sb;
    fstat(fd, &sb);
    blob b = {malloc((size_t)sb.st_size), (size_t)sb.st_size};
    cr_assert(pread(fd, b.data, b.size, 0) == (ssize_t)b.size);
    return b;
}

static blob make_file(void) {
    lf_gguf_writer *w;
    cr_assert_eq(lf__gguf_writer_create(32, &w), LF_OK);
    lf__gguf_writer_set_str(w, "general.architecture", "llama");
    lf__gguf_writer_set_u32(w, "test.u32", 7);
    lf__gguf_writer_set_i32(w, "test.i32", -3);
    lf__gguf_writer_set_u64(w, "test.u64", 1ull << 40);
    lf__gguf_writer_set_f32(w, "test.f32", 0.5f);
    lf__gguf_writer_set_bool(w, "test.bool", true);
    const lf_gguf_str strs[] = {{"a", 1}, {"bc", 2}, {"", 0}};
    lf__gguf_writer_set_arr_str(w, "test.strs", strs, 3);
    const int16_t nums[] = {1, -2, 3};
    lf__gguf_writer_set_arr(w, "test.i16s", LF_GGUF_I16, nums, 3);
    const uint64_t ne_a[2] = {64, 3}, ne_b[1] = {32}, ne_c[2] = {256, 2};
    cr_assert_eq(lf__gguf_writer_add_tensor(w, "a", LF_TYPE_F32, 2, ne_a, NULL), LF_OK);
    cr_assert_eq(lf__gguf_writer_add_tensor(w, "b", LF_TYPE_Q8_0, 1, ne_b, NULL), LF_OK);
    cr_assert_eq(lf__gguf_writer_add_tensor(w, "c", LF_TYPE_Q4_K, 2, ne_c, NULL), LF_OK);
    char path[] = "/tmp/lf_test_gguf_XXXXXX";
    const int fd = mkstemp(path);
    cr_assert(fd >= 0);
    unlink(path);
    lf_err err = {{0}};
    cr_assert_eq(lf__gguf_writer_write_header(w, fd, &err), LF_OK);
    uint8_t buf[64 * 3 * 4];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)i;
    cr_assert_eq(lf__gguf_writer_write_data(w, fd, buf, 64 * 3 * 4, &err), LF_OK);
    cr_assert_eq(lf__gguf_writer_write_data(w, fd, buf, 34, &err), LF_OK);
    /* a tensor written in two pieces */
    cr_assert_eq(lf__gguf_writer_write_data(w, fd, buf, 100, &err), LF_OK);
    cr_assert_eq(lf__gguf_writer_write_data(w, fd, buf, 288 - 100, &err), LF_OK);
    cr_assert_eq(lf__gguf_writer_finish(w, &err), LF_OK);
    const uint64_t expect = lf__gguf_writer_file_size(w);
    lf__gguf_writer_destroy(w);
    blob b = read_back(fd);
    close(fd);
    cr_assert_eq(b.size, expect);
    return b;
}

static lf_status parse(const blob *b, lf_err *err) {
    lf_gguf *g = NULL;
    const lf_status st = lf__gguf_read_mem(b->data, b->size, &g, err);
    if (st == LF_OK) cr_assert_not_null(g);
    else cr_assert_null(g);
    lf__gguf_free(g);
    return st;
}

/* Offset of the first occurrence of a byte string. */
static size_t find(const blob *b, const void *needle, size_t n) {
    for (size_t i = 0; i + n <= b->size; i++)
        if (memcmp(b->data + i, needle, n) == 0) return i;
    cr_assert_fail("pattern not found");
    return 0;
}

/* Offset of tensor `name`'s info (just after its name). */
static size_t tensor_info(const blob *b, const char *name) {
    uint8_t pat[16];
    const uint64_t len = strlen(name);
    memcpy(pat, &len, 8);
    memcpy(pat + 8, name, len);
    /* the last match: tensor infos come after the metadata */
    size_t at = 0;
    bool found = false;
    for (size_t i = 0; i + 8 + len <= b->size; i++)
        if (memcmp(b->data + i, pat, 8 + len) == 0) {
            at = i;
            found = true;
        }
    cr_assert(found);
    return at + 8 + len;
}

Test(gguf, parses_valid_file) {
    blob b = make_file();
    lf_gguf *g;
    lf_err err = {{0}};
    cr_assert_eq(lf__gguf_read_mem(b.data, b.size, &g, &err), LF_OK, "%s", err.msg);
    cr_assert_eq(g->version, 3);
    cr_assert_eq(g->n_tensors, 3);
    uint32_t u;
    cr_assert_eq(lf__gguf_get_u32(g, "test.u32", &u, &err), LF_OK);
    cr_assert_eq(u, 7);
    float f;
    cr_assert_eq(lf__gguf_get_f32_or(g, "test.f32", 0, &f, &err), LF_OK);
    cr_assert_float_eq(f, 0.5f, 0);
    bool bo;
    cr_assert_eq(lf__gguf_get_bool_or(g, "test.bool", false, &bo, &err), LF_OK);
    cr_assert(bo);
    cr_assert_eq(lf__gguf_get_u32(g, "test.i32", &u, &err), LF_E_MODEL, "negative value must not read as u32");
    cr_assert_eq(lf__gguf_get_u32(g, "missing", &u, &err), LF_E_MODEL);
    const lf_gguf_kv *kv = lf__gguf_find(g, "test.strs");
    cr_assert_not_null(kv);
    uint64_t pos = 0;
    lf_gguf_str s;
    cr_assert(lf__gguf_arr_next_str(kv, &pos, &s) && s.len == 1 && s.ptr[0] == 'a');
    cr_assert(lf__gguf_arr_next_str(kv, &pos, &s) && s.len == 2 && memcmp(s.ptr, "bc", 2) == 0);
    cr_assert(lf__gguf_arr_next_str(kv, &pos, &s) && s.len == 0);
    cr_assert(!lf__gguf_arr_next_str(kv, &pos, &s));
    kv = lf__gguf_find(g, "test.i16s");
    cr_assert_float_eq(lf__gguf_arr_get_num(kv, 1), -2.0, 0);
    const lf_gguf_tensor *t = lf__gguf_find_tensor(g, "c");
    cr_assert_not_null(t);
    cr_assert_eq(t->type, LF_TYPE_Q4_K);
    cr_assert_eq(t->nbytes, 2 * 144);
    cr_assert_eq(t->file_offset % 32, 0);
    const lf_gguf_tensor *a = lf__gguf_find_tensor(g, "a");
    cr_assert_eq(b.data[a->file_offset + 5], 5, "tensor data lands at the declared offset");
    char text[256];
    lf__gguf_kv_format(lf__gguf_find(g, "test.strs"), text, sizeof text);
    cr_assert_str_eq(text, "[string x 3] \"a\", \"bc\", \"\"");
    lf__gguf_free(g);
    free(b.data);
}

Test(gguf, nested_arrays_are_parsed_and_copied) {
    /* hand-built: key "n" = array of 2 arrays of u8 */
    lf_gguf_writer *w;
    lf__gguf_writer_create(32, &w);
    lf__gguf_writer_set_u32(w, "x", 1);
    char path[] = "/tmp/lf_test_nested_XXXXXX";
    const int fd = mkstemp(path);
    unlink(path);
    lf_err err = {{0}};
    lf__gguf_writer_write_header(w, fd, &err);
    lf__gguf_writer_destroy(w);
    blob b = read_back(fd);
    close(fd);
    /* append a nested array kv by hand and bump the kv count */
    uint8_t extra[64];
    size_t k = 0;
    const uint64_t klen = 1, n_outer = 2, n_inner = 3;
    const uint32_t t_arr = LF_GGUF_ARRAY, t_u8 = LF_GGUF_U8;
    memcpy(extra + k, &klen, 8), k += 8;
    extra[k++] = 'n';
    memcpy(extra + k, &t_arr, 4), k += 4;
    memcpy(extra + k, &t_arr, 4), k += 4;
    memcpy(extra + k, &n_outer, 8), k += 8;
    for (int i = 0; i < 2; i++) {
        memcpy(extra + k, &t_u8, 4), k += 4;
        memcpy(extra + k, &n_inner, 8), k += 8;
        extra[k++] = 1, extra[k++] = 2, extra[k++] = 3;
    }
    uint8_t *nb = malloc(b.size + k);
    /* header 24 bytes, then kv "x" (8+1+4+4 = 17 bytes), then our kv */
    memcpy(nb, b.data, 24 + 17);
    memcpy(nb + 24 + 17, extra, k);
    const uint64_t n_kv = 2;
    memcpy(nb + 16, &n_kv, 8);
    lf_gguf *g;
    cr_assert_eq(lf__gguf_read_mem(nb, 24 + 17 + k, &g, &err), LF_OK, "%s", err.msg);
    const lf_gguf_kv *kv = lf__gguf_find(g, "n");
    cr_assert_not_null(kv);
    cr_assert_eq(kv->arr_type, LF_GGUF_ARRAY);
    cr_assert_eq(kv->arr_n, 2);
    /* the writer copies it verbatim */
    lf_gguf_writer *w2;
    lf__gguf_writer_create(32, &w2);
    cr_assert_eq(lf__gguf_writer_copy_kv(w2, kv), LF_OK);
    char path2[] = "/tmp/lf_test_nested2_XXXXXX";
    const int fd2 = mkstemp(path2);
    unlink(path2);
    lf__gguf_writer_write_header(w2, fd2, &err);
    lf__gguf_writer_destroy(w2);
    blob b2 = read_back(fd2);
    close(fd2);
    lf_gguf *g2;
    cr_assert_eq(lf__gguf_read_mem(b2.data, b2.size, &g2, &err), LF_OK, "%s", err.msg);
    const lf_gguf_kv *kv2 = lf__gguf_find(g2, "n");
    cr_assert_eq(kv2->data_len, kv->data_len);
    cr_assert_eq(memcmp(kv2->data, kv->data, kv->data_len), 0);
    lf__gguf_free(g);
    lf__gguf_free(g2);
    free(nb);
    free(b.data);
    free(b2.data);
}

Test(gguf, bad_magic) {
    blob b = make_file();
    b.data[0] = 'X';
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_MAGIC);
    cr_assert(strstr(err.msg, "magic"), "%s", err.msg);
    free(b.data);
}

Test(gguf, unsupported_version) {
    blob b = make_file();
    const uint32_t v = 9;
    memcpy(b.data + 4, &v, 4);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_VERSION);
    cr_assert(strstr(err.msg, "version 9"), "%s", err.msg);
    free(b.data);
}

Test(gguf, absurd_tensor_count) {
    blob b = make_file();
    const uint64_t n = 1ull << 40;
    memcpy(b.data + 8, &n, 8);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_COUNT);
    cr_assert(strstr(err.msg, "tensor_count"), "%s", err.msg);
    free(b.data);
}

Test(gguf, absurd_kv_count) {
    blob b = make_file();
    const uint64_t n = ~0ull;
    memcpy(b.data + 16, &n, 8);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_COUNT);
    cr_assert(strstr(err.msg, "metadata_kv_count"), "%s", err.msg);
    free(b.data);
}

Test(gguf, absurd_array_count) {
    blob b = make_file();
    /* "test.i16s" array: type u32 (9), elem type (3), count */
    const size_t at = find(&b, "test.i16s", 9) + 9 + 4 + 4;
    const uint64_t n = 1ull << 50;
    memcpy(b.data + at, &n, 8);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_COUNT);
    cr_assert(strstr(err.msg, "test.i16s"), "%s", err.msg);
    free(b.data);
}

Test(gguf, string_length_past_eof) {
    blob b = make_file();
    const size_t at = find(&b, "llama", 5) - 8;
    const uint64_t n = 1ull << 33;
    memcpy(b.data + at, &n, 8);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_TRUNCATED);
    cr_assert(strstr(err.msg, "general.architecture"), "%s", err.msg);
    free(b.data);
}

Test(gguf, unknown_value_type) {
    blob b = make_file();
    const size_t at = find(&b, "test.u32", 8) + 8;
    const uint32_t t = 99;
    memcpy(b.data + at, &t, 4);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_VALUE_TYPE);
    cr_assert(strstr(err.msg, "test.u32"), "%s", err.msg);
    free(b.data);
}

Test(gguf, duplicate_key) {
    blob b = make_file();
    const size_t at = find(&b, "test.i32", 8);
    memcpy(b.data + at, "test.u32", 8);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_DUPLICATE);
    cr_assert(strstr(err.msg, "test.u32"), "%s", err.msg);
    free(b.data);
}

Test(gguf, duplicate_tensor_name) {
    blob b = make_file();
    const size_t at = tensor_info(&b, "b") - 1;
    b.data[at] = 'a';
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_DUPLICATE);
    cr_assert(strstr(err.msg, "tensor 'a'"), "%s", err.msg);
    free(b.data);
}

Test(gguf, too_many_dimensions) {
    blob b = make_file();
    const uint32_t nd = 7;
    memcpy(b.data + tensor_info(&b, "a"), &nd, 4);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_SHAPE);
    cr_assert(strstr(err.msg, "'a'"), "%s", err.msg);
    free(b.data);
}

Test(gguf, zero_dimension) {
    blob b = make_file();
    const uint64_t zero = 0;
    memcpy(b.data + tensor_info(&b, "a") + 4 + 8, &zero, 8);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_SHAPE);
    free(b.data);
}

Test(gguf, overflowing_shape) {
    blob b = make_file();
    const uint64_t big = 1ull << 40;
    const size_t at = tensor_info(&b, "a") + 4;
    memcpy(b.data + at, &big, 8);
    memcpy(b.data + at + 8, &big, 8);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_SHAPE);
    cr_assert(strstr(err.msg, "overflow"), "%s", err.msg);
    free(b.data);
}

Test(gguf, byte_size_that_would_wrap_is_rejected) {
    /* [2^31, 2^31] F32: 2^62 elements pass the element-count check, but
     * 2^62 x 4 bytes wraps a 64-bit size to 0 */
    blob b = make_file();
    const uint64_t d = 1ull << 31;
    const size_t at = tensor_info(&b, "a") + 4;
    memcpy(b.data + at, &d, 8);
    memcpy(b.data + at + 8, &d, 8);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_SHAPE);
    cr_assert(strstr(err.msg, "overflow a 64-bit byte size"), "%s", err.msg);
    free(b.data);
}

Test(gguf, io_error_is_not_a_bad_magic) {
    /* a descriptor that cannot be read (opened for writing only): EBADF on
     * the very first read must come back as an I/O error */
    char path[] = "/tmp/lf_test_gguf_io_XXXXXX";
    const int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, "GGUF\3\0\0\0", 8), 8);
    const int wfd = open(path, O_WRONLY);
    unlink(path);
    lf_gguf *g;
    lf_err err = {{0}};
    cr_assert_eq(lf__gguf_read_fd(wfd, 8, &g, &err), LF_E_IO, "%s", err.msg);
    cr_assert(strstr(err.msg, "read header"), "%s", err.msg);
    close(wfd);
    close(fd);
}

Test(gguf, row_not_multiple_of_block) {
    blob b = make_file();
    const uint64_t odd = 48; /* Q8_0 blocks are 32 */
    memcpy(b.data + tensor_info(&b, "b") + 4, &odd, 8);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_SHAPE);
    cr_assert(strstr(err.msg, "Q8_0"), "%s", err.msg);
    free(b.data);
}

Test(gguf, unknown_tensor_type) {
    blob b = make_file();
    const uint32_t t = 77;
    memcpy(b.data + tensor_info(&b, "b") + 4 + 8, &t, 4);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_TENSOR_TYPE);
    cr_assert(strstr(err.msg, "'b'") && strstr(err.msg, "77"), "%s", err.msg);
    free(b.data);
}

Test(gguf, misaligned_tensor) {
    blob b = make_file();
    const size_t at = tensor_info(&b, "b") + 4 + 8 + 4;
    uint64_t off;
    memcpy(&off, b.data + at, 8);
    off += 4;
    memcpy(b.data + at, &off, 8);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_ALIGNMENT);
    cr_assert(strstr(err.msg, "'b'"), "%s", err.msg);
    free(b.data);
}

Test(gguf, bad_alignment_value) {
    lf_gguf_writer *w;
    lf__gguf_writer_create(32, &w);
    lf__gguf_writer_set_u32(w, "general.alignment", 48);
    char path[] = "/tmp/lf_test_align_XXXXXX";
    const int fd = mkstemp(path);
    unlink(path);
    lf_err err = {{0}};
    lf__gguf_writer_write_header(w, fd, &err);
    lf__gguf_writer_destroy(w);
    blob b = read_back(fd);
    close(fd);
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_ALIGNMENT);
    cr_assert(strstr(err.msg, "48"), "%s", err.msg);
    free(b.data);
}

Test(gguf, tensor_past_eof) {
    blob b = make_file();
    const size_t at = tensor_info(&b, "c") + 4 + 16 + 4;
    const uint64_t off = 1ull << 20;
    memcpy(b.data + at, &off, 8);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_BOUNDS);
    cr_assert(strstr(err.msg, "'c'"), "%s", err.msg);
    free(b.data);
}

Test(gguf, overlapping_tensors) {
    blob b = make_file();
    /* point tensor b at tensor a's data */
    const size_t at = tensor_info(&b, "b") + 4 + 8 + 4;
    const uint64_t zero = 0;
    memcpy(b.data + at, &zero, 8);
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_OVERLAP);
    cr_assert(strstr(err.msg, "'a'") && strstr(err.msg, "'b'"), "%s", err.msg);
    free(b.data);
}

Test(gguf, bad_bool) {
    blob b = make_file();
    const size_t at = find(&b, "test.bool", 9) + 9 + 4;
    b.data[at] = 5;
    lf_err err = {{0}};
    cr_assert_eq(parse(&b, &err), LF_E_GGUF_VALUE_TYPE);
    free(b.data);
}

Test(gguf, every_truncation_is_an_error) {
    blob b = make_file();
    for (size_t n = 0; n < b.size; n++) {
        blob t = {b.data, n};
        lf_err err = {{0}};
        const lf_status st = parse(&t, &err);
        cr_assert_neq(st, LF_OK, "prefix of %zu bytes parsed", n);
        cr_assert(st == LF_E_TRUNCATED || st == LF_E_GGUF_MAGIC || st == LF_E_GGUF_COUNT || st == LF_E_GGUF_BOUNDS,
                  "prefix %zu: %s", n, lf_strerror(st));
        cr_assert(err.msg[0], "prefix %zu: no detail", n);
    }
    free(b.data);
}

Test(gguf, random_byte_flips_never_crash) {
    blob b = make_file();
    uint8_t *copy = malloc(b.size);
    lf_rng rng;
    lf__rng_seed(&rng, 42);
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, b.data, b.size);
        const int flips = 1 + (int)(lf__rng_next(&rng) % 4);
        for (int f = 0; f < flips; f++) copy[lf__rng_next(&rng) % b.size] ^= (uint8_t)(1 + lf__rng_next(&rng) % 255);
        blob t = {copy, b.size};
        lf_err err = {{0}};
        lf_gguf *g = NULL;
        const lf_status st = lf__gguf_read_mem(t.data, t.size, &g, &err);
        if (st) cr_assert(err.msg[0], "error %s without detail", lf_strerror(st));
        lf__gguf_free(g);
    }
    free(copy);
    free(b.data);
}

Test(gguf, read_file_errors) {
    lf_gguf *g;
    lf_err err = {{0}};
    cr_assert_eq(lf__gguf_read_file("/nonexistent/x.gguf", &g, &err), LF_E_IO);
    cr_assert(strstr(err.msg, "/nonexistent/x.gguf"), "%s", err.msg);
    cr_assert_eq(lf__gguf_read_file("/tmp", &g, &err), LF_E_IO);
    cr_assert(strstr(err.msg, "directory"), "%s", err.msg);
    char fifo[64];
    snprintf(fifo, sizeof fifo, "/tmp/lf_test_gguf_fifo_%d", (int)getpid());
    unlink(fifo);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    /* returns at once (no writer needed) with the reason */
    cr_assert_eq(lf__gguf_read_file(fifo, &g, &err), LF_E_IO);
    cr_assert(strstr(err.msg, "FIFO"), "%s", err.msg);
    unlink(fifo);
}

Test(gguf, outfile_is_atomic) {
    char dir[] = "/tmp/lf_test_out_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    lf_outfile f;
    lf_err err = {{0}};
    cr_assert_eq(lf__outfile_open(&f, path, false, &err), LF_OK, "%s", err.msg);
    cr_assert_eq(lf__write_all(f.fd, "hello", 5, &err), LF_OK);
    cr_assert_neq(access(path, F_OK), 0, "nothing at the path before commit");
    lf__outfile_abort(&f);
    cr_assert_neq(access(path, F_OK), 0, "nothing at the path after abort");
    cr_assert_eq(lf__outfile_open(&f, path, false, &err), LF_OK);
    lf__write_all(f.fd, "hello", 5, &err);
    cr_assert_eq(lf__outfile_commit(&f, &err), LF_OK, "%s", err.msg);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_size, 5);
    cr_assert_eq(lf__outfile_open(&f, path, false, &err), LF_E_EXISTS);
    cr_assert_eq(lf__outfile_open(&f, path, true, &err), LF_OK);
    lf__write_all(f.fd, "hi", 2, &err);
    cr_assert_eq(lf__outfile_commit(&f, &err), LF_OK, "%s", err.msg);
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_size, 2, "--force replaced the file");
    unlink(path);
    cr_assert_eq(rmdir(dir), 0, "no temporary file left behind");
}
