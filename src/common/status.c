/* status.c - status names, error detail and logging. */
#include "lf_common.h"

#include <stdio.h>

#define LF_STR2(x) #x
#define LF_STR(x) LF_STR2(x)
const char *lf_version(void) { return LF_STR(LF_VERSION_MAJOR) "." LF_STR(LF_VERSION_MINOR) "." LF_STR(LF_VERSION_PATCH); }
unsigned lf_version_number(void) { return LF_VERSION_NUMBER; }

const char *lf_strerror(lf_status status) {
    switch (status) {
    case LF_OK: return "LF_OK: success";
    case LF_E_INVALID_ARG: return "LF_E_INVALID_ARG: invalid argument";
    case LF_E_NOMEM: return "LF_E_NOMEM: out of memory";
    case LF_E_IO: return "LF_E_IO: I/O error";
    case LF_E_TRUNCATED: return "LF_E_TRUNCATED: file is truncated";
    case LF_E_GGUF_MAGIC: return "LF_E_GGUF_MAGIC: not a GGUF file";
    case LF_E_GGUF_VERSION: return "LF_E_GGUF_VERSION: unsupported GGUF version";
    case LF_E_GGUF_COUNT: return "LF_E_GGUF_COUNT: count larger than the file can hold";
    case LF_E_GGUF_VALUE_TYPE: return "LF_E_GGUF_VALUE_TYPE: unknown metadata value type";
    case LF_E_GGUF_DUPLICATE: return "LF_E_GGUF_DUPLICATE: duplicate key or tensor name";
    case LF_E_GGUF_SHAPE: return "LF_E_GGUF_SHAPE: invalid tensor shape";
    case LF_E_GGUF_TENSOR_TYPE: return "LF_E_GGUF_TENSOR_TYPE: unknown tensor type";
    case LF_E_GGUF_ALIGNMENT: return "LF_E_GGUF_ALIGNMENT: invalid or violated alignment";
    case LF_E_GGUF_BOUNDS: return "LF_E_GGUF_BOUNDS: tensor data past end of file";
    case LF_E_GGUF_OVERLAP: return "LF_E_GGUF_OVERLAP: tensors overlap";
    case LF_E_UNSUPPORTED: return "LF_E_UNSUPPORTED: unsupported model or tensor type";
    case LF_E_MODEL: return "LF_E_MODEL: model metadata or tensors are inconsistent";
    case LF_E_CONTEXT_FULL: return "LF_E_CONTEXT_FULL: context length exhausted";
    case LF_E_EXISTS: return "LF_E_EXISTS: output file already exists";
    case LF_E_CORRUPT: return "LF_E_CORRUPT: checksum mismatch";
    case LF_E_BUDGET: return "LF_E_BUDGET: memory budget too small";
    case LF_E_INTERRUPTED: return "LF_E_INTERRUPTED: interrupted";
    }
    return "unknown lf_status";
}

lf_status lf__err_set(lf_err *err, lf_status status, const char *fmt, ...) {
    if (err) {
        /* formatted aside first: an argument may be err->msg itself
         * ("writing X: %s", err->msg), and vsnprintf into its own source
         * is undefined */
        char tmp[LF_ERRMSG_CAP];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(tmp, sizeof tmp, fmt, ap);
        va_end(ap);
        memcpy(err->msg, tmp, sizeof tmp);
    }
    return status;
}

void lf__err_clear(lf_err *err) {
    if (err) err->msg[0] = '\0';
}

void lf__err_copy_out(const lf_err *err, char *buf, size_t cap) {
    if (!buf || cap == 0) return;
    snprintf(buf, cap, "%s", err ? err->msg : "");
}

void lf__log(const lf_logger *log, lf_log_level level, const char *fmt, ...) {
    if (!log || !log->fn) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log->fn(log->user, level, msg);
}
