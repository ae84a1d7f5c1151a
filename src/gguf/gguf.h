/* gguf.h - bounds-checked GGUF v2/v3 reader and a streaming writer.
 *
 * The reader copies the header (metadata and tensor infos) into memory it
 * owns, reading the file with pread in growing chunks, so that it never maps
 * or reads tensor data: callers decide how to reach the data (mmap in dense
 * mode, O_DIRECT reads when streaming). Every count, size and offset is
 * checked in 64-bit against the real file size before use. */
#ifndef LF_GGUF_H
#define LF_GGUF_H

#include "../common/lf_common.h"

#include <stdbool.h>
#include <stdio.h>

enum lf_gguf_vtype {
    LF_GGUF_U8 = 0, LF_GGUF_I8 = 1, LF_GGUF_U16 = 2, LF_GGUF_I16 = 3,
    LF_GGUF_U32 = 4, LF_GGUF_I32 = 5, LF_GGUF_F32 = 6, LF_GGUF_BOOL = 7,
    LF_GGUF_STRING = 8, LF_GGUF_ARRAY = 9, LF_GGUF_U64 = 10, LF_GGUF_I64 = 11,
    LF_GGUF_F64 = 12, LF_GGUF_VTYPE_COUNT = 13,
};

#define LF_GGUF_DEFAULT_ALIGNMENT 32
#define LF_GGUF_MAX_DIMS 4

typedef struct lf_gguf_str {
    const char *ptr; /* not NUL-terminated; points into the reader's header copy */
    uint64_t len;
} lf_gguf_str;

typedef struct lf_gguf_kv {
    lf_gguf_str key;
    uint32_t type;        /* enum lf_gguf_vtype */
    uint32_t arr_type;    /* element type when type == ARRAY */
    uint64_t arr_n;       /* element count when type == ARRAY */
    const uint8_t *data;  /* the raw value (after the type/array header) */
    uint64_t data_len;    /* bytes of the raw value */
} lf_gguf_kv;

typedef struct lf_gguf_tensor {
    lf_gguf_str name;
    uint32_t n_dims;
    uint64_t ne[LF_GGUF_MAX_DIMS]; /* unused dims are 1 */
    uint32_t type;
    uint64_t offset;      /* relative to the data section */
    uint64_t nbytes;
    uint64_t file_offset; /* absolute */
} lf_gguf_tensor;

typedef struct lf_gguf {
    uint32_t version;
    uint64_t file_size;
    uint64_t n_kv;
    lf_gguf_kv *kv;
    uint64_t n_tensors;
    lf_gguf_tensor *tensors;
    uint32_t alignment;
    uint64_t data_offset; /* absolute offset of the data section */
    uint8_t *header;      /* owned copy of the file's first header_len bytes */
    uint64_t header_len;
} lf_gguf;

/* Parses the GGUF open on fd (file_size bytes). */
lf_status lf__gguf_read_fd(int fd, uint64_t file_size, lf_gguf **out, lf_err *err);
/* Parses a GGUF held in memory (tests, fuzzing). The buffer is copied. */
lf_status lf__gguf_read_mem(const void *data, size_t size, lf_gguf **out, lf_err *err);
/* Opens and parses path. */
lf_status lf__gguf_read_file(const char *path, lf_gguf **out, lf_err *err);
void lf__gguf_free(lf_gguf *g);

/* Lookup: returns NULL if absent. */
const lf_gguf_kv *lf__gguf_find(const lf_gguf *g, const char *key);
const lf_gguf_tensor *lf__gguf_find_tensor(const lf_gguf *g, const char *name);
int64_t lf__gguf_tensor_index(const lf_gguf *g, const char *name);

/* Typed getters. They accept any integer type whose value fits; a key of the
 * wrong kind is LF_E_MODEL with a message naming it. A missing key is
 * LF_E_MODEL unless the *_or variant supplies a default. */
lf_status lf__gguf_get_u32(const lf_gguf *g, const char *key, uint32_t *out, lf_err *err);
lf_status lf__gguf_get_u32_or(const lf_gguf *g, const char *key, uint32_t dflt, uint32_t *out, lf_err *err);
lf_status lf__gguf_get_u64_or(const lf_gguf *g, const char *key, uint64_t dflt, uint64_t *out, lf_err *err);
lf_status lf__gguf_get_f32_or(const lf_gguf *g, const char *key, float dflt, float *out, lf_err *err);
lf_status lf__gguf_get_bool_or(const lf_gguf *g, const char *key, bool dflt, bool *out, lf_err *err);
/* String value; *out is NULL when absent and no error. */
lf_status lf__gguf_get_str(const lf_gguf *g, const char *key, lf_gguf_str *out, lf_err *err);
bool lf__gguf_str_eq(lf_gguf_str s, const char *c);

/* Size in bytes of one scalar of the given value type, 0 for string/array. */
size_t lf__gguf_vtype_size(uint32_t type);
const char *lf__gguf_vtype_name(uint32_t type);
/* Iterates the strings of a string array: *pos starts at 0. */
bool lf__gguf_arr_next_str(const lf_gguf_kv *kv, uint64_t *pos, lf_gguf_str *out);
/* Element i of a numeric array, converted. */
double lf__gguf_arr_get_num(const lf_gguf_kv *kv, uint64_t i);
/* Renders a value for display (arrays abbreviated). */
void lf__gguf_kv_format(const lf_gguf_kv *kv, char *buf, size_t cap);

/* ---- writer ------------------------------------------------------------ */
/* Collects metadata and tensor infos, then writes the header, then accepts
 * tensor data in declaration order, padding each to the alignment. */
typedef struct lf_gguf_writer lf_gguf_writer;

lf_status lf__gguf_writer_create(uint32_t alignment, lf_gguf_writer **out);
void lf__gguf_writer_destroy(lf_gguf_writer *w);
lf_status lf__gguf_writer_set_u32(lf_gguf_writer *w, const char *key, uint32_t v);
lf_status lf__gguf_writer_set_i32(lf_gguf_writer *w, const char *key, int32_t v);
lf_status lf__gguf_writer_set_u64(lf_gguf_writer *w, const char *key, uint64_t v);
lf_status lf__gguf_writer_set_f32(lf_gguf_writer *w, const char *key, float v);
lf_status lf__gguf_writer_set_bool(lf_gguf_writer *w, const char *key, bool v);
lf_status lf__gguf_writer_set_str(lf_gguf_writer *w, const char *key, const char *v);
/* Array of scalars (elem_type not STRING/ARRAY): n elements of raw LE data. */
lf_status lf__gguf_writer_set_arr(lf_gguf_writer *w, const char *key, uint32_t elem_type,
                                  const void *data, uint64_t n);
lf_status lf__gguf_writer_set_arr_str(lf_gguf_writer *w, const char *key,
                                      const lf_gguf_str *strs, uint64_t n);
/* Copies a key/value pair verbatim from a parsed file (any type, nested too). */
lf_status lf__gguf_writer_copy_kv(lf_gguf_writer *w, const lf_gguf_kv *kv);
/* Declares a tensor; returns its data size via *nbytes (may be NULL). */
lf_status lf__gguf_writer_add_tensor(lf_gguf_writer *w, const char *name, uint32_t type,
                                     uint32_t n_dims, const uint64_t *ne, uint64_t *nbytes);
/* Total file size once everything is written. */
uint64_t lf__gguf_writer_file_size(const lf_gguf_writer *w);
/* Writes header, metadata and tensor infos to fd (at its current offset 0). */
lf_status lf__gguf_writer_write_header(lf_gguf_writer *w, int fd, lf_err *err);
/* Appends bytes of tensor data; a tensor may be written in several calls.
 * Padding is inserted automatically when a tensor is complete. */
lf_status lf__gguf_writer_write_data(lf_gguf_writer *w, int fd, const void *data, uint64_t n, lf_err *err);
/* Checks every declared byte was written. */
lf_status lf__gguf_writer_finish(lf_gguf_writer *w, lf_err *err);

/* Writes all of buf at the current offset of fd, retrying short writes. */
lf_status lf__write_all(int fd, const void *buf, size_t n, lf_err *err);

/* ---- atomic output files ----------------------------------------------- */
/* A file that appears at its final path complete or not at all: an unnamed
 * O_TMPFILE in the target directory (or a hidden temp name where the
 * filesystem lacks O_TMPFILE), linked into place after fsync. */
typedef struct lf_outfile {
    int fd;
    char *path;
    char *tmp_path; /* NULL when O_TMPFILE is used */
    bool force;
} lf_outfile;

lf_status lf__outfile_open(lf_outfile *f, const char *path, bool force, lf_err *err);
lf_status lf__outfile_commit(lf_outfile *f, lf_err *err);
void lf__outfile_abort(lf_outfile *f);

#endif
