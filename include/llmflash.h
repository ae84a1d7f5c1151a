/*
 * llmflash.h - the whole public API of llmflash.
 *
 * llmflash runs Llama-family language models stored as GGUF. It is built to
 * stream feed-forward (FFN) neurons from flash when the model does not fit in
 * DRAM ("LLM in a Flash", Alizadeh et al., ACL 2024). This header is the
 * manual: if something is not declared here, it is not API.
 *
 * Conventions
 *  - Every fallible function returns an lf_status. LF_OK is 0, errors are
 *    negative, stable and only ever appended. lf_strerror() names a code.
 *  - Handles are opaque. lf_X_close()/lf_X_destroy() accept NULL.
 *  - A handle keeps a detail message for its last error (lf_model_errmsg,
 *    lf_session_errmsg). Functions that create a handle take an optional
 *    (errbuf, errcap) pair and write the detail there when they fail.
 *  - Whatever the library allocates, the library frees. Caller-provided
 *    output buffers come as (dst, dst_cap) with the needed size reported.
 *  - The library never prints, never exits and keeps no global mutable
 *    state: two models in one process do not interfere. Logging goes through
 *    the callback in the params structs.
 *  - Thread safety: an lf_model may be shared by several sessions and FFN
 *    hooks, each used by one thread at a time; it is read-only after open.
 *    A session, FFN hook or sampler is not thread-safe: one thread at a
 *    time. Functions without a handle, and those that only read a model,
 *    vocabulary or GGUF file, are thread-safe.
 *  - Defaults, unless a function says otherwise: a NULL handle or a NULL
 *    required pointer is LF_E_INVALID_ARG (tests/api_args checks every
 *    function); a getter given NULL returns 0, -1 (tokens), NULL or "";
 *    a failed call leaves its handle as it was, still usable; pointers a
 *    function returns are owned by the handle and valid until it is closed;
 *    pointers the caller passes are borrowed for the call only.
 */
#ifndef LLMFLASH_H
#define LLMFLASH_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the exported API: libllmflash is built with hidden visibility, so
 * only what this header declares is in its dynamic symbol table. */
#if defined(__GNUC__) && !defined(_WIN32)
#define LF_API __attribute__((visibility("default")))
#else
#define LF_API
#endif

/* The library's version: the one place it is written (meson reads it from
 * here for the soname and the pkg-config file). The flash-file format has
 * its own version (llmflash.format in a file's metadata). */
#define LF_VERSION_MAJOR 0
#define LF_VERSION_MINOR 2
#define LF_VERSION_PATCH 0
#define LF_VERSION_NUMBER (LF_VERSION_MAJOR * 10000 + LF_VERSION_MINOR * 100 + LF_VERSION_PATCH)
/* Version of the library that is running, "MAJOR.MINOR.PATCH" (static
 * string), and as LF_VERSION_NUMBER computes it: compare with the macros to
 * check that the header and the library agree. Thread-safe. */
LF_API const char *lf_version(void);
LF_API unsigned lf_version_number(void);

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */
typedef enum lf_status {
    LF_OK = 0,
    LF_E_INVALID_ARG = -1,      /* a NULL or out-of-range argument */
    LF_E_NOMEM = -2,            /* an allocation failed */
    LF_E_IO = -3,               /* open/read/write/fsync failed (errno in detail) */
    LF_E_TRUNCATED = -4,        /* the file ends before a structure it declares */
    LF_E_GGUF_MAGIC = -5,       /* not a GGUF file */
    LF_E_GGUF_VERSION = -6,     /* GGUF version other than 2 or 3 */
    LF_E_GGUF_COUNT = -7,       /* a tensor, key or array count the file cannot hold */
    LF_E_GGUF_VALUE_TYPE = -8,  /* unknown metadata value type */
    LF_E_GGUF_DUPLICATE = -9,   /* a key or tensor name appears twice */
    LF_E_GGUF_SHAPE = -10,      /* bad dimension count, zero or overflowing shape */
    LF_E_GGUF_TENSOR_TYPE = -11,/* unknown tensor type id */
    LF_E_GGUF_ALIGNMENT = -12,  /* bad general.alignment, or misaligned tensor offset */
    LF_E_GGUF_BOUNDS = -13,     /* tensor data extends past the end of the file */
    LF_E_GGUF_OVERLAP = -14,    /* two tensors share bytes */
    LF_E_UNSUPPORTED = -15,     /* valid file, but a type/architecture llmflash cannot run */
    LF_E_MODEL = -16,           /* metadata or tensors inconsistent with the architecture */
    LF_E_CONTEXT_FULL = -17,    /* the session's context length is used up */
    LF_E_EXISTS = -18,          /* output file exists and overwriting was not allowed */
    LF_E_CORRUPT = -19,         /* checksum mismatch */
    LF_E_BUDGET = -20,          /* memory budget too small */
    LF_E_INTERRUPTED = -21,     /* stopped by the caller (progress callback) */
} lf_status;

/* Static, never-NULL name of a status ("LF_E_IO: I/O error", ...). */
LF_API const char *lf_strerror(lf_status status);

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */
/* ------------------------------------------------------------------------ */
typedef enum lf_log_level {
    LF_LOG_ERROR = 0,
    LF_LOG_WARN = 1,
    LF_LOG_INFO = 2,
    LF_LOG_DEBUG = 3,
} lf_log_level;

/* Receives one complete message without trailing newline. May be called from
 * library threads; must be thread-safe if it touches shared state. */
typedef void (*lf_log_fn)(void *user, lf_log_level level, const char *msg);

/* ------------------------------------------------------------------------ */
/* Tensor types (values equal ggml's type ids, as stored in GGUF)            */
/* ------------------------------------------------------------------------ */
typedef enum lf_type {
    LF_TYPE_F32 = 0,
    LF_TYPE_F16 = 1,
    LF_TYPE_Q4_0 = 2,
    LF_TYPE_Q4_1 = 3,
    LF_TYPE_Q5_0 = 6,
    LF_TYPE_Q5_1 = 7,
    LF_TYPE_Q8_0 = 8,
    LF_TYPE_Q4_K = 12,
    LF_TYPE_Q5_K = 13,
    LF_TYPE_Q6_K = 14,
    LF_TYPE_BF16 = 30,
} lf_type;

/* Name of a type as llama.cpp spells it ("Q4_0", "F16"); "?" if unknown. */
LF_API const char *lf_type_name(int type);
/* Parses a type name (case-insensitive). Returns LF_E_INVALID_ARG if unknown
 * or not supported by llmflash. */
LF_API lf_status lf_type_from_name(const char *name, lf_type *out);
/* true when llmflash can load and compute with tensors of this type. */
LF_API bool lf_type_supported(int type);

/* Compression of FFN bundle groups in flash files. */
typedef enum lf_compression {
    LF_COMPRESS_NONE = 0,
    LF_COMPRESS_LZ4 = 1,
    LF_COMPRESS_ZSTD = 2,
} lf_compression;

/* Parses "none", "lz4", "zstd" or "zstd:LEVEL" (LEVEL 1-19; *level is 0 for
 * the codec's default). LF_E_INVALID_ARG if not one of these. */
LF_API lf_status lf_compression_from_name(const char *name, lf_compression *c, int *level);

/* ------------------------------------------------------------------------ */
/* Thread pools                                                              */
/* ------------------------------------------------------------------------ */
/* The compute threads of sessions (and FFN hooks). By default each session
 * starts its own; an engine may instead give sessions one pool of llmflash's
 * to share, or its own pool behind a small function table. */
typedef struct lf_threadpool lf_threadpool;

/* One data-parallel job: part ith of nth, for ith in [0, nth). */
typedef void (*lf_parallel_fn)(void *ctx, int ith, int nth);

/* An engine's own pool, as llmflash calls it. */
typedef struct lf_threadpool_ops {
    /* The number of parts every job is split into (>= 1), constant for the
     * pool's life. */
    int (*n_threads)(void *user);
    /* Calls fn(ctx, i, n) once for every i in [0, n), n = n_threads(user),
     * in parallel as the pool sees fit (the calling thread may take a part),
     * and returns when all have returned. Jobs are short (microseconds to
     * milliseconds, hundreds per token): a pool that sleeps between them
     * costs a wake-up each. It is called from the threads that drive the
     * sessions using the pool: with several such threads, run must accept
     * concurrent calls (or the engine must not share it). */
    void (*run)(void *user, lf_parallel_fn fn, void *ctx);
} lf_threadpool_ops;

/* Creates a pool of n_threads (0: one per core; at most 8 per core:
 * LF_E_INVALID_ARG above) that several sessions may share: jobs from
 * different threads take turns, so sessions sharing it never run more
 * compute threads than it has. Its workers spin about 50 us after a job,
 * then sleep. LF_E_INVALID_ARG (out NULL, n_threads out of range),
 * LF_E_NOMEM (a thread could not start; *out is NULL). Thread-safe. */
LF_API lf_status lf_threadpool_create(int n_threads, lf_threadpool **out);
/* Wraps an engine's pool: ops is copied, user is passed to it and must
 * outlive the wrapper. llmflash starts no thread for it. LF_E_INVALID_ARG
 * (a NULL function, n_threads() outside [1, 8 per core]), LF_E_NOMEM. */
LF_API lf_status lf_threadpool_wrap(const lf_threadpool_ops *ops, void *user, lf_threadpool **out);
/* Stops and frees a pool (NULL is fine). No session or FFN hook may still
 * use it: destroy them first. */
LF_API void lf_threadpool_destroy(lf_threadpool *pool);
/* Parts a job is split into; 0 for NULL. Thread-safe. */
LF_API int lf_threadpool_size(const lf_threadpool *pool);

/* ------------------------------------------------------------------------ */
/* Model                                                                     */
/* ------------------------------------------------------------------------ */
/* How flash reads are issued. */
typedef enum lf_io_backend {
    LF_IO_BACKEND_AUTO = 0,  /* io_uring, else a pread thread pool (with a log line) */
    LF_IO_BACKEND_URING = 1,
    LF_IO_BACKEND_PREAD = 2,
} lf_io_backend;

/* How the FFN reaches DRAM. */
typedef enum lf_mode {
    LF_MODE_AUTO = 0,   /* GGUF: ram when the file fits well within the memory available (the
                           cgroup's limit included), else mmap; flash file: stream */
    LF_MODE_MMAP = 1,   /* map the file and let the page cache decide (llama.cpp's way) */
    LF_MODE_STREAM = 2, /* flash file: resident weights in memory, FFN units through the
                           windowed cache, misses read with O_DIRECT (llmflash's way) */
    LF_MODE_NAIVE = 3,  /* flash file: every FFN unit read from flash for every token */
    LF_MODE_HYBRID = 4, /* flash file: the first part of each layer's FFN resident (as much as the
                           budget holds, up to half), the rest read per token */
    LF_MODE_RAM = 5,    /* plain GGUF: every weight read into memory at open and rearranged for
                           the kernels (interleaved rows, in the same bytes) */
} lf_mode;

/* "stream", "mmap", ...; "?" for a value that is none of them. Static string. */
LF_API const char *lf_mode_name(lf_mode mode);

typedef struct lf_model lf_model;

typedef struct lf_model_params {
    lf_log_fn log;      /* NULL: no logging */
    void *log_user;     /* passed to log */
    int n_threads;      /* compute threads for sessions (0: all cores); more than 8 per core is
                           LF_E_INVALID_ARG (they only thrash) */
    /* Flash files: check what is used against the checksums the file stores
     * (default true). At open: the header and every resident tensor (xxh64,
     * at memory speed). While running: every bundle group as it is read
     * (stream, naive, hybrid), or the first time it is touched (mmap). */
    bool verify_checksums;
    lf_mode mode;
    /* Hard limit on the bytes llmflash holds for this model and all its
     * sessions together: resident weights, KV caches, neuron caches,
     * predictor, I/O buffers, scratch. The model keeps one ledger: it takes
     * its resident part at open, and each session takes its part at
     * creation (lf_session_params.budget_bytes) and gives it back when
     * destroyed. 0: no limit. A budget needs a flash file in stream, naive
     * or hybrid mode: with mmap mode, or a plain GGUF (convert it first),
     * lf_model_open fails with LF_E_INVALID_ARG rather than ignore it. */
    uint64_t dram_budget;
    lf_io_backend io_backend;
    /* FFN activation: LF_ACT_FROM_FILE (default) takes llmflash.ffn_activation
     * when present, else SwiGLU; any other value overrides the file, for
     * ReLU-family models that do not carry the key. */
    int activation;
    /* Ablation (stream, naive, hybrid): read each neuron's gate row, up row
     * and down column as separate reads, never merged with others, as a
     * file that keeps the three matrices apart would have to; measures what
     * the bundled layout saves. Default false. */
    bool unbundled_reads;
    /* Resident weights (ram mode's whole model; attention and the rest in
     * the flash modes) in 2 MiB pages: asks the kernel for transparent huge
     * pages, which it grants when they are enabled (always or madvise) and
     * free. Matrix products stream through the weights, and with 4 KiB
     * pages every page is a TLB miss: dense 7B Q4_0 generation ran 7-8%
     * faster so. The cost is at open, where the first touch of 2 MiB pages
     * can be far slower in a VM (7B on a 2-core VM: 4.9-28 s against
     * 2.0-12 s). Default false; mmap mode maps the file and ignores it. */
    bool huge_pages;
    /* Flash reads kept in flight (stream, naive, hybrid): 0 takes the
     * default, 64 where a layer's FFN is 32 MiB or more (a sparse 7B model's
     * ~40 KiB reads ran 5-20% faster than at 32 on the virtual SSD of the
     * README's figures), else 32.
     * 1 to 1024, else LF_E_INVALID_ARG. The I/O buffers stay the same size:
     * deeper queues get smaller largest reads. */
    uint32_t io_queue_depth;
} lf_model_params;

/* The defaults: no log, all cores, checksums verified, LF_MODE_AUTO, no
 * budget, io_uring where it works, the file's activation, 4 KiB pages. */
LF_API lf_model_params lf_model_default_params(void);

/* Opens a GGUF model. In dense mode the file is mapped read-only; the model
 * keeps it open until lf_model_close(). `params` may be NULL (defaults).
 * Only a regular file or a block device is opened (a FIFO or directory is
 * LF_E_IO at once). A flash file's header and resident tensors are checked
 * against their checksums unless verify_checksums is off (LF_E_CORRUPT).
 * On failure *out is NULL and, when errbuf is not NULL, a message naming the
 * offending field or tensor is written there (NUL-terminated, truncated to
 * errcap). Errors: LF_E_IO, LF_E_TRUNCATED, any LF_E_GGUF_*, LF_E_UNSUPPORTED
 * (architecture or tensor type), LF_E_MODEL, LF_E_NOMEM, LF_E_CORRUPT,
 * LF_E_BUDGET (the resident part does not fit dram_budget) and
 * LF_E_INVALID_ARG (bad params, a budget that cannot be enforced). */
LF_API lf_status lf_model_open(const char *path, const lf_model_params *params,
                        lf_model **out, char *errbuf, size_t errcap);
/* Frees the model, its mapping and loader (NULL is fine). Every session and
 * FFN hook on it must be destroyed first. */
LF_API void lf_model_close(lf_model *model);

/* Detail of the model's last error; "" if none. Valid until the next call on
 * the model. */
LF_API const char *lf_model_errmsg(const lf_model *model);

/* Bytes of the model's dram_budget that no one holds yet: what a new session
 * may take. UINT64_MAX when the model has no budget. Thread-safe. */
LF_API uint64_t lf_model_budget_left(const lf_model *model);

typedef enum lf_activation {
    LF_ACT_FROM_FILE = -1, /* lf_model_params.activation only: what the file says */
    LF_ACT_SILU_GATED = 0, /* down · (silu(gate·x) ⊙ up·x): Llama's SwiGLU */
    LF_ACT_RELU_GATED = 1, /* down · (relu(gate·x) ⊙ up·x): ReluLLaMA, ProSparse */
    LF_ACT_RELU = 2,       /* down · relu(up·x): no gate tensor */
} lf_activation;

/* Which part of the model a tensor belongs to. */
typedef enum lf_tensor_class {
    LF_CLASS_EMBEDDING = 0, /* token_embd, output */
    LF_CLASS_ATTENTION = 1, /* attn_q/k/v/output */
    LF_CLASS_FFN = 2,       /* ffn_gate/up/down: what llmflash streams */
    LF_CLASS_OTHER = 3,     /* norms and anything else */
    LF_CLASS_COUNT = 4,
} lf_tensor_class;

typedef struct lf_model_info {
    char architecture[32];  /* general.architecture: "llama", "qwen2", "qwen3" or "qwen3moe" */
    char name[128];         /* general.name, "" if absent */
    uint32_t gguf_version;
    uint32_t n_vocab;
    uint32_t n_ctx_train;   /* ARCH.context_length */
    uint32_t n_embd;        /* d_model */
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;     /* < n_head means grouped-query attention */
    uint32_t n_ff;          /* FFN neurons per layer; of one expert in a mixture of experts */
    uint32_t n_rot;         /* rotary dimensions per head */
    uint32_t head_dim;      /* dimensions per attention head (ARCH.attention.key_length, else n_embd / n_head) */
    float rope_freq_base;
    float rms_eps;
    lf_activation activation;
    bool tied_output;       /* output projection shares token_embd */
    uint64_t n_params;
    uint64_t file_bytes;
    uint64_t class_bytes[LF_CLASS_COUNT]; /* tensor bytes by lf_tensor_class */
    /* Flash files (written by lf_convert) */
    bool is_flash;
    int bundle_type;        /* lf_type of bundle rows */
    uint32_t bundle_rows;   /* 3: gate, up, down; 2: up, down */
    uint64_t bundle_record_bytes; /* bytes of one neuron's record */
    uint64_t bundle_stride; /* distance between uncompressed records */
    uint32_t bundle_group;  /* neurons per compression/checksum group */
    lf_compression bundle_compression;
    uint64_t streamed_bytes; /* bundle data on disk: what streaming reads */
    uint64_t resident_bytes; /* everything else */
    lf_mode mode;            /* the mode the model runs in (auto resolved) */
    char kernels[32];        /* the kernel path: "scalar", "avx2", "avx2-vnni", "avx512", "avx512-vnni" */
    char cpu_features[160];  /* what the CPU and OS offer the kernels, e.g. "avx2 fma f16c avx512f ..." */
    uint64_t repacked_bytes; /* weights rearranged at open for the kernels (ram and stream modes) */
    /* Mixture-of-experts FFNs (ARCH.expert_count above 1: Mixtral's layout,
     * Qwen3-MoE): n_expert experts of n_ff neurons per layer, n_expert_used
     * of them routed per token (softmax over the router's logits, the top
     * n_expert_used, weights renormalised). 1 and 1 for a dense FFN. */
    uint32_t n_expert, n_expert_used;
} lf_model_info;

/* Fills *info. LF_E_INVALID_ARG for NULL. Thread-safe. */
LF_API lf_status lf_model_get_info(const lf_model *model, lf_model_info *info);

typedef struct lf_tensor_info {
    const char *name;       /* owned by the model, valid until close */
    int type;               /* lf_type value (or ggml id for types we list only) */
    uint32_t n_dims;
    uint64_t ne[4];         /* ne[0] is the contiguous dimension */
    uint64_t bytes;
    uint64_t file_offset;   /* absolute offset of the data in the file */
    lf_tensor_class klass;
} lf_tensor_info;

/* Tensors in the model's file (0 for NULL). Thread-safe. */
LF_API size_t lf_model_tensor_count(const lf_model *model);
/* Describes tensor i (0 <= i < count); LF_E_INVALID_ARG if out of range. */
LF_API lf_status lf_model_tensor_get(const lf_model *model, size_t i, lf_tensor_info *out);

/* Metadata: number of key/value pairs and a printable rendering of pair i.
 * The rendering of long arrays is abbreviated. Writes at most cap bytes
 * including the NUL; returns the key (owned by the model) or NULL. */
LF_API size_t lf_model_meta_count(const lf_model *model);
LF_API const char *lf_model_meta_get(const lf_model *model, size_t i, char *value, size_t cap);

/* Any GGUF file, described without running it: its metadata and tensor
 * table, whatever the architecture (one llmflash cannot run included), with
 * no weight read. Errors of open: LF_E_IO, LF_E_TRUNCATED, any LF_E_GGUF_*,
 * LF_E_NOMEM; errbuf (may be NULL) says why. The handle is read-only: any
 * thread may use it at once. Strings it returns live until close. */
typedef struct lf_gguf_file lf_gguf_file;
LF_API lf_status lf_gguf_file_open(const char *path, lf_gguf_file **out, char *errbuf, size_t errcap);
LF_API void lf_gguf_file_close(lf_gguf_file *file); /* NULL is fine */
/* GGUF version, file size in bytes, metadata pairs (0 for NULL). */
LF_API uint32_t lf_gguf_file_version(const lf_gguf_file *file);
LF_API uint64_t lf_gguf_file_size(const lf_gguf_file *file);
LF_API size_t lf_gguf_file_meta_count(const lf_gguf_file *file);
/* As lf_model_meta_get. */
LF_API const char *lf_gguf_file_meta_get(const lf_gguf_file *file, size_t i, char *value, size_t cap);
LF_API size_t lf_gguf_file_tensor_count(const lf_gguf_file *file); /* 0 for NULL */
/* As lf_model_tensor_get (LF_E_INVALID_ARG for NULL or i out of range); type is ggml's id (lf_type_name gives "?" for
 * types llmflash does not know). */
LF_API lf_status lf_gguf_file_tensor_get(const lf_gguf_file *file, size_t i, lf_tensor_info *out);

/* ------------------------------------------------------------------------ */
/* Tokenizer (from the model's GGUF metadata)                                */
/* ------------------------------------------------------------------------ */
typedef int32_t lf_token;

/* The model's tokenizer in short (lf_model_vocab gives all of it): BOS and
 * EOS ids and the vocabulary size, -1 / 0 for NULL. Thread-safe. */
LF_API lf_token lf_token_bos(const lf_model *model); /* -1 if the model has none */
LF_API lf_token lf_token_eos(const lf_model *model); /* -1 if the model has none */
LF_API uint32_t lf_vocab_size(const lf_model *model);

/* Encodes UTF-8 text (len bytes). With add_bos, BOS comes first. Writes at
 * most cap tokens and sets *n_tokens to the full count: if it exceeds cap the
 * call returns LF_E_INVALID_ARG and the caller retries with a bigger buffer.
 * An empty text gives just BOS (or nothing). */
LF_API lf_status lf_tokenize(const lf_model *model, const char *text, size_t len,
                      bool add_bos, lf_token *tokens, size_t cap, size_t *n_tokens);

/* Text of one token for output: SentencePiece's U+2581 becomes a space, byte
 * tokens <0xNN> become that byte, control tokens (BOS/EOS) are empty. Writes
 * at most cap bytes (not NUL-terminated) and returns the full length, or a
 * negative lf_status for an invalid token. */
LF_API int lf_token_to_piece(const lf_model *model, lf_token token, char *buf, size_t cap);

/* The length of the longest prefix of p[0..n) that does not end inside a
 * UTF-8 character: an incomplete but valid start of one at the end is left
 * out (at most 3 bytes); invalid bytes count as whole. A byte-level BPE
 * token may end inside a character: print pieces up to this length and
 * keep the rest for the next one, as lf_session_generate does. 0 for p
 * NULL. Thread-safe. */
LF_API size_t lf_utf8_complete_prefix(const char *p, size_t n);

/* A tokenizer on its own. Every model has one (lf_model_vocab), and
 * lf_vocab_open reads one from any GGUF file that holds tokenizer metadata,
 * of any architecture, with or without tensors (llama.cpp's vocab-only
 * files). Two algorithms, chosen by tokenizer.ggml.model:
 *   "llama": SentencePiece with byte fallback (Llama 1/2, Mistral, Phi-3);
 *   "gpt2":  byte-level BPE, with the pre-tokenizer that tokenizer.ggml.pre
 *            names: llama-bpe (Llama 3.x), qwen2 (Qwen2/2.5/3), gpt-2,
 *            starcoder, deepseek-llm, or default when the key is absent.
 * A vocab is read-only after open: any thread may use it at once. */
typedef struct lf_vocab lf_vocab;

/* Opens the tokenizer of the GGUF file at path. On failure *out is NULL and
 * errbuf (may be NULL) says why. Errors: LF_E_IO, LF_E_TRUNCATED, any
 * LF_E_GGUF_*, LF_E_UNSUPPORTED (the tokenizer model or pre-tokenizer,
 * named), LF_E_MODEL (missing or inconsistent tokenizer keys), LF_E_NOMEM. */
LF_API lf_status lf_vocab_open(const char *path, lf_vocab **out, char *errbuf, size_t errcap);
/* Frees a vocab from lf_vocab_open (NULL is fine; never a model's). */
LF_API void lf_vocab_close(lf_vocab *vocab);
/* The model's tokenizer, owned by the model and valid until it closes. */
LF_API const lf_vocab *lf_model_vocab(const lf_model *model);

/* Size, BOS, EOS and end-of-turn ids of a vocabulary (0 / -1 for NULL). Thread-safe. */
LF_API uint32_t lf_vocab_n_tokens(const lf_vocab *vocab);
LF_API lf_token lf_vocab_bos(const lf_vocab *vocab); /* -1 if none */
LF_API lf_token lf_vocab_eos(const lf_vocab *vocab); /* -1 if none */
LF_API lf_token lf_vocab_eot(const lf_vocab *vocab); /* end of turn (Llama 3's <|eot_id|>); -1 if none */
/* Whether generation should stop at token: EOS or EOT. */
LF_API bool lf_vocab_is_end(const lf_vocab *vocab, lf_token token);
/* tokenizer.ggml.add_bos_token: whether prompts start with BOS (default:
 * yes for SentencePiece, no for byte-level BPE). */
LF_API bool lf_vocab_adds_bos(const lf_vocab *vocab);

#define LF_TOKENIZE_ADD_BOS 1u /* BOS first (when the vocab has one) */
#define LF_TOKENIZE_SPECIAL 2u /* control tokens written in the text ("<|eot_id|>") become tokens; else plain text */
/* Encodes UTF-8 text (len bytes) with LF_TOKENIZE_* flags, as lf_tokenize
 * does: at most cap tokens written, *n_tokens the full count, and
 * LF_E_INVALID_ARG when that exceeds cap. User-defined tokens in the text
 * are always matched. Invalid UTF-8 is encoded byte by byte, never refused. */
LF_API lf_status lf_vocab_tokenize(const lf_vocab *vocab, const char *text, size_t len, unsigned flags, lf_token *tokens,
                            size_t cap, size_t *n_tokens);
/* The bytes a token stands for (lf_token_to_piece's rules; a byte-level BPE
 * token may hold part of a UTF-8 character, so print whole characters). */
LF_API int lf_vocab_piece(const lf_vocab *vocab, lf_token token, char *buf, size_t cap);
/* The token as stored in the vocabulary (control tokens too, e.g.
 * "<|begin_of_text|>"), not NUL-terminated; NULL for an invalid token. */
LF_API const char *lf_vocab_raw_piece(const lf_vocab *vocab, lf_token token, uint32_t *len);
/* 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte; 0 for an
 * invalid token. */
LF_API int lf_vocab_token_type(const lf_vocab *vocab, lf_token token);

/* ------------------------------------------------------------------------ */
/* Chat formats                                                              */
/* ------------------------------------------------------------------------ */
/* The prompt formats of the instruct models llmflash runs. A GGUF names its
 * format as a Jinja template (tokenizer.chat_template); like llama.cpp,
 * llmflash recognises the family from that text and renders the family's
 * format itself (no Jinja). Renderings, for messages m1..mn:
 *   LF_CHAT_CHATML  (Qwen2/2.5/3): "<|im_start|>ROLE\nCONTENT<|im_end|>\n" each,
 *                   then "<|im_start|>assistant\n";
 *   LF_CHAT_LLAMA3  (Llama 3.x): "<|start_header_id|>ROLE<|end_header_id|>\n\n"
 *                   CONTENT "<|eot_id|>" each (system and user content trimmed),
 *                   then "<|start_header_id|>assistant<|end_header_id|>\n\n";
 *   LF_CHAT_LLAMA2  (Llama 2 chat): "[INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST]"
 *                   "REPLY</s>" then "<s>[INST] USER [/INST]" for later turns;
 *   LF_CHAT_MISTRAL (Mistral v1 style): "[INST] SYSTEM\n\nUSER [/INST]REPLY</s>"
 *                   then "[INST] USER [/INST]";
 *   LF_CHAT_PHI3    (Phi-3): "<|ROLE|>\nCONTENT<|end|>\n" each, then "<|assistant|>\n".
 * The BOS token is not part of the text: tokenize the first turn with BOS
 * when lf_vocab_adds_bos() says so, and parse special tokens
 * (LF_TOKENIZE_SPECIAL). An assistant's content is rendered as given, so
 * that a reply kept in a KV cache as generated is a prefix of the next
 * rendering: the text to evaluate for a new turn is the rendering of the
 * whole conversation minus what was rendered (and generated) before. */
typedef enum lf_chat_format {
    LF_CHAT_CHATML = 0,
    LF_CHAT_LLAMA3 = 1,
    LF_CHAT_LLAMA2 = 2,
    LF_CHAT_MISTRAL = 3,
    LF_CHAT_PHI3 = 4,
} lf_chat_format;

typedef struct lf_chat_message {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content; /* UTF-8, NUL-terminated */
} lf_chat_message;

/* The vocabulary's tokenizer.chat_template, or NULL when it has none. Owned
 * by the vocab. */
LF_API const char *lf_vocab_chat_template(const lf_vocab *vocab);
/* Recognises the family of a Jinja chat template by its markers, in
 * llama.cpp's order: <|im_start|>; <|start_header_id|> with
 * <|end_header_id|>; [INST] (with <<SYS>>: Llama 2, without: Mistral);
 * <|assistant|> with <|end|>. LF_E_UNSUPPORTED when none matches, and
 * LF_E_INVALID_ARG for NULL arguments. Thread-safe. */
LF_API lf_status lf_chat_format_detect(const char *template_text, lf_chat_format *out);
/* "chatml", "llama3", "llama2", "mistral", "phi3" -> the format;
 * LF_E_INVALID_ARG for any other name. */
LF_API lf_status lf_chat_format_from_name(const char *name, lf_chat_format *out);
/* Static name of a format ("?" if out of range), and the list of all. */
LF_API const char *lf_chat_format_name(lf_chat_format format);
LF_API const char *lf_chat_format_names(void);
/* Renders n messages in the format, then, with add_assistant, the opening
 * of the assistant's reply. Writes at most cap bytes (NUL-terminated when
 * it fits) and sets *len to the full length without the NUL:
 * LF_E_INVALID_ARG when that does not fit (retry with cap > *len), or for a
 * role other than system/user/assistant or a NULL content. Thread-safe. */
LF_API lf_status lf_chat_apply(lf_chat_format format, const lf_chat_message *messages, size_t n, bool add_assistant,
                        char *buf, size_t cap, size_t *len);

/* ------------------------------------------------------------------------ */
/* Sampling                                                                  */
/* ------------------------------------------------------------------------ */
typedef struct lf_sampler lf_sampler;

typedef struct lf_sampler_params {
    float temperature;  /* <= 0: greedy (argmax) */
    int32_t top_k;      /* <= 0: off */
    float top_p;        /* in [0, 1]; 0 or 1: off */
    uint64_t seed;
    float min_p;        /* in [0, 1]: drop tokens below min_p x the top probability; 0: off */
    float repeat_penalty; /* 1 or 0: off; > 1 penalises the last repeat_last_n accepted tokens */
    int32_t repeat_last_n;
} lf_sampler_params;

/* temp 0.8, top-k 40, top-p 0.95, min-p 0 (off), repeat penalty 1 (off) over
 * the last 64 tokens, seed 0. */
LF_API lf_sampler_params lf_sampler_default_params(void);
/* LF_E_INVALID_ARG for a parameter outside its range, LF_E_NOMEM. */
LF_API lf_status lf_sampler_create(const lf_sampler_params *params, lf_sampler **out);
LF_API void lf_sampler_destroy(lf_sampler *sampler);
/* Picks a token from n_vocab logits, after the repetition penalty. The
 * logits are not modified. */
LF_API lf_token lf_sampler_sample(lf_sampler *sampler, const float *logits, uint32_t n_vocab);
/* Records a token of the sequence (prompt or generated) for the repetition
 * penalty. lf_session_generate calls it for every token it feeds. */
LF_API void lf_sampler_accept(lf_sampler *sampler, lf_token token);
/* Forgets the recorded tokens and restarts the random stream from the seed. */
LF_API void lf_sampler_reset(lf_sampler *sampler);

/* ------------------------------------------------------------------------ */
/* Sessions: a KV cache and scratch space for one sequence                   */
/* ------------------------------------------------------------------------ */
typedef struct lf_session lf_session;

/* A Chrome trace-event recording (opens in Perfetto or chrome://tracing).
 * A session given one in lf_session_params.trace records, per token
 * (batch) and layer, spans on its "compute" track: "token", "attention",
 * "ffn" and within it "predictor" (choosing units), "io_submit",
 * "io_wait" and "ffn_compute"; on its "io" track one span per read batch,
 * from its first read's issue to its last completion, with args bytes and
 * reads; and the counters "bytes_in_flight" and "cache_bytes" (neuron
 * cache occupancy). Events are held in memory (about 64 bytes each; a
 * 7B-shaped token in stream mode makes a few hundred) and written by
 * lf_trace_write. Recording is thread-safe: any number of sessions may
 * share one trace. With no trace, nothing is recorded and nothing costs. */
typedef struct lf_trace lf_trace;
/* An empty trace, its clock starting now. LF_E_NOMEM, LF_E_INVALID_ARG. */
LF_API lf_status lf_trace_create(lf_trace **out);
/* Frees it (NULL is fine). No session may still hold it. */
LF_API void lf_trace_destroy(lf_trace *trace);
/* Events recorded so far. Thread-safe. */
LF_API uint64_t lf_trace_event_count(lf_trace *trace);
/* Writes the trace as JSON to path, replacing it whole or not at all (the
 * file appears complete or the old one stays). Thread-safe: events
 * recorded while it writes wait. LF_E_IO (errbuf says why),
 * LF_E_INVALID_ARG. */
LF_API lf_status lf_trace_write(lf_trace *trace, const char *path, char *errbuf, size_t errcap);

/* Which FFN neurons a token uses (stream, naive and hybrid modes). */
typedef enum lf_mask_source {
    LF_MASK_ALL = 0,    /* every neuron: dense, streamed through the cache */
    LF_MASK_ORACLE = 1, /* exactly the neurons with a non-zero activation, computed from a
                           resident copy of gate/up: for tests and measurement only */
    LF_MASK_PREDICTOR = 2, /* the neurons a calibrated low-rank predictor expects to fire
                              (lf_calibrate; lf_session_params.predictor_path) */
} lf_mask_source;

/* How the neuron cache is shared between layers. */
typedef enum lf_cache_split {
    LF_SPLIT_EVEN = 0,     /* the same number of slots per layer */
    LF_SPLIT_MEASURED = 1, /* after the first 16 tokens, slots in proportion to the
                              neurons each layer used (sparse layers need fewer) */
} lf_cache_split;

/* Element type of the KV cache. */
typedef enum lf_kv_type {
    LF_KV_F16 = 0, /* half the memory of F32, as llama.cpp's default (the default) */
    LF_KV_F32 = 1,
    /* ggml's Q8_0 (8-bit values, an F16 scale per 32): 34 bytes per 32
     * elements, 53% of F16, for long contexts or tight budgets. The head
     * dimension must be a multiple of 32 (LF_E_INVALID_ARG otherwise).
     * Queries are rounded to 8 bits per 32 values for the key products, as
     * llama.cpp does with a Q8_0 cache, so the text may differ from F16's. */
    LF_KV_Q8_0 = 2,
} lf_kv_type;

typedef struct lf_session_params {
    uint32_t n_ctx;     /* context length in tokens (0: model's, at most 4096) */
    int n_threads;      /* 0: the model's n_threads */
    uint32_t window;    /* stream mode: keep neurons used by the last `window` tokens (default 5);
                           mixtures of experts keep experts until evicted (least recently used) */
    /* Mixtures of experts route with their router whatever `mask` says
     * (LF_MASK_ORACLE and LF_MASK_PREDICTOR are LF_E_UNSUPPORTED there). */
    lf_mask_source mask;
    lf_cache_split split;
    lf_kv_type kv_type; /* default LF_KV_F16 */
    /* Bytes of the model's dram_budget this session takes: its own minimum
     * (KV cache, transient buffers, scratch) plus its neuron cache.
     * 0: everything still left in the ledger. Ignored without a budget. */
    uint64_t budget_bytes;
    /* LF_MASK_PREDICTOR: the predictor file; NULL: the model's path with
     * ".predictor" appended, where lf_calibrate writes it by default */
    const char *predictor_path;
    /* Measurement: run the oracle alongside the mask source and count, per
     * layer, the units it wanted that the source skipped (lf_layer_stats).
     * Costs the oracle's resident copy of gate/up, counted in the budget. */
    bool measure_recall;
    /* LF_MASK_PREDICTOR: guess each layer's units from the layer before's
     * FFN input, so that their reads start while the layer before computes:
     * with the predictor file's lookahead predictors (calibrate with
     * lookahead), counted in the budget when on; with a file without them,
     * each layer's own predictor applied to that earlier input (no further
     * bytes, a lower recall). Off by default: the fitted predictors pay
     * only where the neuron cache has room beyond a token's set; the own
     * ones, taking no DRAM, made a 7B ReLU model's tokens 6-12% faster at
     * half the file (see the README). */
    bool lookahead;
    /* Mixtures of experts (stream mode): with lookahead, layer l + 1's router
     * is applied to layer l's FFN input, and the experts it picks are read
     * while layer l computes (lf_layer_stats.ahead_* count how often it was
     * right). hot_experts: the experts of each layer that the routing
     * statistics (lf_calibrate on a mixture of experts writes them to the
     * model's path + ".routing"; predictor_path names another file) show
     * busiest, this many per layer, read at creation and pinned in the
     * cache; the rest of the cache is least recently used. 0: none. More
     * than the cache's slots per layer is LF_E_BUDGET; no statistics file
     * is LF_E_INVALID_ARG. */
    uint32_t hot_experts;
    /* Tokens evaluated in one pass over the weights when lf_session_eval
     * gets several (a prompt): each weight, and in stream mode each FFN
     * unit any of them needs, is read once per batch and applied to all of
     * them. Scratch grows with it (counted in the budget). 0: 64; at most
     * LF_MAX_BATCH. */
    uint32_t n_batch;
    /* Records where the session's time goes into this trace (lf_trace_create;
     * NULL: off, the default). The session only adds to it; the caller
     * writes and destroys it after the session is destroyed. Several
     * sessions may share one trace: each gets its own tracks. */
    lf_trace *trace;
    /* Compute threads: a pool the session borrows (lf_threadpool_create or
     * _wrap; it must outlive the session), n_threads then ignored. NULL
     * (the default): the session starts its own pool of n_threads. */
    lf_threadpool *threadpool;
    /* Messages of this session (NULL: the model's callback). */
    lf_log_fn log;
    void *log_user;
    /* Checked before every layer of every batch on the evaluating thread;
     * returning true stops lf_session_eval (and generate) with
     * LF_E_INTERRUPTED, as a failed batch: reads in flight are waited for,
     * the batch is not evaluated and may be run again. NULL: never. */
    bool (*abort_cb)(void *user);
    void *abort_user;
} lf_session_params;

#define LF_DEFAULT_BATCH 64
#define LF_MAX_BATCH 4096

/* The defaults: the model's context (at most 4096) and threads, window 5,
 * mask all, even split, F16 KV cache, all the budget left, batches of 64,
 * no trace, pool, log or abort callback. */
LF_API lf_session_params lf_session_default_params(void);
/* The smallest dram_budget with which a model can run one session with
 * these params: the model's own part (resident weights, metadata, the
 * loader's staging) plus the session's (KV cache, transient buffers,
 * scratch, the oracle's copy of gate/up), before any neuron is cached. */
LF_API uint64_t lf_session_min_budget(const lf_model *model, const lf_session_params *params);

/* Creates a session on an open model. The model must outlive the session.
 * In stream, naive and hybrid modes the session takes its part of the
 * model's budget ledger (see lf_model_params.dram_budget): LF_E_BUDGET, with
 * the bytes needed and the bytes left, if it does not fit. Sessions on one
 * model may be created, used and destroyed from different threads; each
 * session is used by one thread at a time. */
LF_API lf_status lf_session_create(lf_model *model, const lf_session_params *params,
                            lf_session **out, char *errbuf, size_t errcap);
/* Waits for the session's reads in flight, gives its budget back and frees
 * it (NULL is fine). A borrowed thread pool or trace is left to its owner. */
LF_API void lf_session_destroy(lf_session *session);
/* Detail of the session's last error; "" if none or for NULL. Valid until
 * the next call on the session. */
LF_API const char *lf_session_errmsg(const lf_session *session);

/* Runs the model on n tokens at the next positions. Afterwards
 * lf_session_logits() holds the logits for the last one.
 *
 * Checked before any work, leaving the session as it was:
 *   LF_E_INVALID_ARG   a token outside the vocabulary;
 *   LF_E_CONTEXT_FULL  the n tokens do not fit in what is left of the context.
 * Failures while evaluating (flash files in stream, naive, hybrid or mmap
 * mode):
 *   LF_E_IO            a read failed (detail: layer, neurons, offset, errno);
 *   LF_E_CORRUPT       data read fails its checksum;
 *   LF_E_TRUNCATED     the file ends before the data;
 *   LF_E_NOMEM         an allocation failed.
 * The n tokens are evaluated in batches of params.n_batch. The first
 * failure stops its batch at once; lf_session_errmsg() gives that failure's
 * detail. The batches before the failed one stay evaluated
 * (lf_session_position() says how many tokens), the failed batch does not,
 * and no logits are available until an eval succeeds. Nothing read by the
 * failed batch is kept as valid, so the session may simply be retried:
 * calling lf_session_eval again with the tokens from lf_session_position()
 * on gives the result of a run without the fault. lf_session_reset() is
 * needed only to start another sequence. */
LF_API lf_status lf_session_eval(lf_session *session, const lf_token *tokens, size_t n);
/* n_vocab logits of the last evaluated token; owned by the session and valid
 * until the next eval or reset. NULL before the first eval. */
LF_API const float *lf_session_logits(const lf_session *session);
/* Tokens evaluated so far (the next position). */
LF_API uint32_t lf_session_position(const lf_session *session);
/* Forgets the sequence; the next eval starts at position 0. NULL is a no-op. */
LF_API void lf_session_reset(lf_session *session);
/* Forgets the tokens from position pos on, keeping the first pos in the KV
 * cache, so that an engine can rewind (a rejected draft, an edited turn):
 * the next eval runs at position pos. Logits are unavailable until then.
 * The neuron cache is kept (it holds weights, not state). LF_E_INVALID_ARG
 * when session is NULL or pos is beyond lf_session_position(); the session
 * is then unchanged. */
LF_API lf_status lf_session_truncate(lf_session *session, uint32_t pos);

/* What a session did, cumulative since creation or the last
 * lf_session_reset_stats() (lf_session_reset does not clear them). Every
 * counter is this session's own, even when other sessions share the model,
 * except peak_rss_bytes, device_read_bytes and major_faults, which the
 * kernel keeps per process. Bytes "read" came from flash; bytes "served"
 * came from the neuron cache. */
#define LF_BUDGET_PARTS 7

/* Counters of one phase: prompt evaluation (lf_session_eval of more than one
 * token, or generate's prompt) or generation (one token at a time). */
typedef struct lf_phase_stats {
    uint64_t tokens;                /* evaluated */
    double ms;                      /* wall time in eval */
    double io_wait_ms;              /* part of it waiting for flash reads */
    uint64_t ffn_bytes_read, ffn_bytes_served;
    uint64_t io_bytes;              /* bytes the loader read from the device for it */
} lf_phase_stats;

typedef struct lf_session_stats {
    uint64_t tokens;                /* evaluated (not the position: reset keeps counting) */
    double compute_ms, io_wait_ms; /* time in the forward pass; part of it waiting for reads */
    double io_span_ms;             /* reads from submission to completion: io_span - io_wait was hidden */
    double mask_ms;                /* part of compute_ms spent choosing units (the predictor's time) */
    uint64_t ffn_bytes_read, ffn_bytes_served;
    uint64_t neurons_loaded, neurons_used, evictions, expirations;
    uint64_t window_union;          /* neurons resident after the last token, all layers */
    uint64_t io_reads;              /* read requests the loader issued for this session */
    uint64_t io_bytes;              /* bytes the loader read from the device for it (padding and gaps included) */
    lf_phase_stats prompt, generation;
    /* mmap mode's traffic is the kernel's: bytes this process read from the
     * device (/proc/self/io read_bytes) and major page faults (getrusage) */
    uint64_t device_read_bytes, major_faults;
    /* budget: resident weights, KV cache, neuron cache, I/O buffers, scratch,
     * predictor/oracle, metadata; bytes of each (the first, the metadata and
     * the loader's staging are the model's, shared by its sessions) */
    uint64_t budget_bytes[LF_BUDGET_PARTS];
    uint64_t budget_total;          /* the model's limit (0: none) */
    uint64_t budget_session;        /* what this session holds of it */
    uint64_t peak_rss_bytes;        /* of the process */
    uint32_t n_layer;
} lf_session_stats;

/* Name of a budget part as the JSON spells it ("resident_weights", ...). */
LF_API const char *lf_budget_part_name(int part);
/* Fills *out. LF_E_INVALID_ARG for NULL. */
LF_API lf_status lf_session_get_stats(const lf_session *s, lf_session_stats *out);
/* Zeroes the session's counters (not the budget figures). */
LF_API void lf_session_reset_stats(lf_session *s);
#define LF_REUSE_BUCKETS 9

typedef struct lf_layer_stats {
    uint64_t bytes_read, bytes_served;
    uint64_t neurons_loaded, neurons_used;
    uint32_t cache_slots;   /* units the layer's cache holds */
    uint32_t resident;      /* units in it now */
    /* with lf_session_params.measure_recall: units the oracle wanted, and
     * those of them the mask source skipped (its false negatives) */
    uint64_t oracle_units, false_negatives;
    /* with measure_recall, the oracle's sets token by token (how sparse,
     * skewed and persistent the layer's activations are): tokens measured,
     * the sum of their set sizes, the sum of the sizes of the union over the
     * last 5 tokens, units not active in the token before, and the share of
     * all activations carried by the most active 20% of units */
    uint64_t oracle_tokens, oracle_token_units, oracle_window_units, oracle_new_units;
    double oracle_hot_share;
    /* with a lookahead predictor (stream mode): units read a layer early,
     * those of them the layer then used, and units it used that were
     * neither cached nor read early (read late, in the layer itself) */
    uint64_t ahead_units, ahead_used, ahead_late;
    /* Reuse distance (stream, naive and hybrid modes): each time a unit is
     * used, the tokens since its last use, in buckets 1, 2, 3-4, 5-8, 9-16,
     * 17-32, 33-64, 65 or more, and (the last) its first use. A window of k
     * tokens serves from DRAM the uses at distance <= k that it kept. */
    uint64_t reuse_hist[LF_REUSE_BUCKETS];
} lf_layer_stats;

/* Counters of one layer (stream, naive and hybrid modes; zeros in the
 * others). LF_E_INVALID_ARG for NULL or a layer out of range. */
LF_API lf_status lf_session_layer_stats(const lf_session *s, uint32_t layer, lf_layer_stats *out);
/* Version of the JSON below. Keys are only ever added within a version; a
 * key that is renamed or removed, or changes meaning, bumps it. Version 2:
 * schema_version, model {path, name, architecture, n_params, n_layer, n_embd,
 * n_ff, is_flash, file_bytes}, params {mode, dram_budget, n_ctx, n_threads,
 * window, mask, cache_split, kv_type, verify_checksums, kernels}, tokens,
 * compute_ms, io_wait_ms, mask_ms, tokens_per_s, prompt and generation {tokens, ms,
 * ms_per_token, tokens_per_s, io_wait_ms, ffn_bytes_read, ffn_bytes_served,
 * io_bytes}, io_span_ms, io_hidden_fraction, ffn_bytes_read,
 * ffn_bytes_served, cache_hit_rate, neurons_loaded, neurons_used, evictions,
 * expirations, window_union, io_reads, io_bytes, device_read_bytes,
 * major_faults, budget {limit, session, and each lf_budget_part_name},
 * peak_rss_bytes, layers [{layer, bytes_read, bytes_served, neurons_loaded,
 * neurons_used, cache_slots, resident, oracle_units, false_negatives,
 * oracle_tokens, oracle_token_units, oracle_window_units, oracle_new_units,
 * oracle_hot_share, ahead_units, ahead_used, ahead_late, recall (1 - the
 * false negatives' share of the oracle's units; null unless measure_recall),
 * reuse_hist (lf_layer_stats.reuse_hist)}], lookahead {units, used, late,
 * recall, precision}, loader {reads, bytes_read, size_hist_log2 (reads by
 * floor(log2 bytes)), latency_hist_log2_us} (the loader is the model's, so
 * these count every session's reads). Sizes in bytes, times in ms. The whole
 * schema, with every key's type, is docs/stats-schema.json; layers is empty
 * in ram and mmap modes. */
#define LF_STATS_SCHEMA_VERSION 2

/* The stats as JSON into buf (cap bytes, NUL-terminated); returns the full
 * length (retry with a bigger buffer if it is >= cap). buf NULL measures
 * only. 0 for a NULL session. */
LF_API size_t lf_session_stats_json(const lf_session *s, char *buf, size_t cap);

/* Called with each generated piece of text; return false to stop. */
typedef bool (*lf_piece_fn)(void *user, const char *piece, size_t len);

#define LF_PREDICT_UNTIL_DONE UINT32_MAX /* n_predict: until EOS or the context is full */

typedef struct lf_generate_params {
    uint32_t n_predict;  /* tokens to generate, or LF_PREDICT_UNTIL_DONE (default 128) */
    bool ignore_eos;     /* never pick EOS: generate all n_predict tokens (default false) */
    lf_piece_fn on_piece; /* receives each generated token's text; NULL: none */
    void *user;          /* passed to on_piece */
} lf_generate_params;

/* The defaults: 128 tokens, stop at EOS, no callback. */
LF_API lf_generate_params lf_generate_default_params(void);

typedef struct lf_generate_stats {
    uint32_t n_prompt;      /* prompt tokens evaluated, BOS included */
    uint32_t n_generated;   /* tokens sampled */
    uint32_t n_evaluated;   /* generated tokens fed back through the model (the last one is not) */
    double prompt_ms;       /* time spent evaluating the prompt */
    double generate_ms;     /* time spent evaluating generated tokens and sampling */
    bool stopped_at_eos;
    bool stopped_at_ctx;    /* the context filled up before n_predict tokens */
} lf_generate_stats;

/* Tokenizes prompt (with BOS), evaluates it, then samples up to n_predict
 * tokens, stopping early at EOS or when on_piece returns false. An empty
 * prompt starts from BOS alone, and the first piece's leading space is
 * dropped, as SentencePiece does at the start of a text. The session and
 * the sampler are reset first; every prompt and generated token is passed
 * to lf_sampler_accept. A prompt that does not fit in the context fails up
 * front with LF_E_CONTEXT_FULL; a generation that reaches the end of the
 * context stops there and returns LF_OK with stats->stopped_at_ctx set.
 * Other errors are lf_session_eval's. params and stats may be NULL. */
LF_API lf_status lf_session_generate(lf_session *session, lf_sampler *sampler, const char *prompt,
                              const lf_generate_params *params, lf_generate_stats *stats);

/* ------------------------------------------------------------------------ */
/* The FFN hook: llmflash's streamed FFN inside an engine's forward pass      */
/* ------------------------------------------------------------------------ */
/* An engine that runs attention itself can still take its FFNs from a flash
 * file through llmflash's mask source (predictor), windowed neuron cache
 * and loader. Per layer it passes the FFN's input, the residual stream
 * after the layer's ffn_norm (n tokens of n_embd floats), and gets the
 * FFN's output, which it adds to its residual stream itself:
 *
 *     for each layer l:  attention(l) ...;  rmsnorm(x, ffn_norm[l], xn);
 *                        lf_ffn_forward(ffn, l, xn, n, y);  x += y;
 *
 * A pass over the layers is one batch of n tokens: it begins when a layer
 * at or below the last one computed is asked for (layer 0 of the next
 * token), so the window counts tokens without the engine saying so. Every
 * call of one pass must give the same n.
 *
 * Units: the engine reads and caches FFN "units": single neurons in an
 * uncompressed flash file, groups of lf_ffn_group_size() neurons in a
 * compressed one. A mask hook names units.
 *
 * Threading and lifetime: an lf_ffn is used by one thread at a time (like a
 * session), computes on its own or a borrowed thread pool, and its own I/O
 * thread reads. The model must outlive it; several hooks and sessions may
 * share one model and its budget. */
typedef struct lf_ffn lf_ffn;

/* An engine's own choice of units (its own predictor, a router). */
typedef struct lf_ffn_mask_hook {
    /* false: the units do not depend on the layer's input, and select may
     * be called with x NULL (from lf_ffn_prefetch without x) */
    bool needs_input;
    /* Writes the units layer `layer` needs for the n tokens x (n, n_embd) to
     * units, in strictly ascending order, each below lf_ffn_units(); returns
     * how many (at most lf_ffn_units()). Called on the thread that calls
     * lf_ffn_prefetch/forward. A set out of order or range makes that call
     * fail with LF_E_INVALID_ARG. */
    uint32_t (*select)(void *user, uint32_t layer, const float *x, size_t n, uint32_t *units);
    void *user;
} lf_ffn_mask_hook;

typedef struct lf_ffn_params {
    uint32_t window;        /* stream mode: keep units used by the last `window` tokens (0: 5) */
    lf_mask_source mask;    /* all, oracle or predictor, as in lf_session_params */
    const char *predictor_path; /* LF_MASK_PREDICTOR: the file (NULL: the model's path + ".predictor") */
    bool lookahead;         /* LF_MASK_PREDICTOR: the file's lookahead predictors */
    lf_cache_split split;
    /* Set: the engine's units instead of mask (copied; user must outlive the hook). */
    const lf_ffn_mask_hook *mask_hook;
    uint32_t max_batch;     /* tokens per pass, at most (0: 1; at most LF_MAX_BATCH) */
    /* Bytes of the model's dram_budget it takes: its buffers plus its neuron
     * cache (0: all that is left). Ignored without a budget. */
    uint64_t budget_bytes;
    int n_threads;          /* 0: the model's */
    lf_threadpool *threadpool; /* borrowed (must outlive the hook); NULL: its own of n_threads */
    lf_log_fn log;          /* NULL: the model's */
    void *log_user;
    lf_trace *trace;        /* records its spans and reads (NULL: off) */
} lf_ffn_params;

/* The defaults: window 5, mask all, even split, batches of 1 token, all the
 * budget left, the model's threads and log, no trace. */
LF_API lf_ffn_params lf_ffn_default_params(void);
/* Creates an FFN hook on a flash model opened in stream, naive, hybrid or
 * mmap mode (a plain GGUF has no streamed FFN: LF_E_INVALID_ARG), taking its
 * part of the model's budget ledger. Errors: LF_E_INVALID_ARG (NULL model or
 * out, bad params), LF_E_BUDGET (it does not fit what is left, with the
 * bytes needed), LF_E_NOMEM, and the read errors of what it keeps resident
 * (hybrid's pinned part, the oracle's copy, the predictor file). On a
 * mixture of experts a unit is an expert and the model's router chooses
 * them and weights each token's share (the layer's output is its routed
 * experts' weighted sum, as lf_session computes it); a mask_hook, the
 * oracle and the predictor are LF_E_UNSUPPORTED there. On failure
 * *out is NULL and errbuf (may be NULL) says why. Thread-safe with respect
 * to other hooks and sessions on the model. */
LF_API lf_status lf_ffn_create(lf_model *model, const lf_ffn_params *params, lf_ffn **out, char *errbuf,
                               size_t errcap);
/* Waits for its reads in flight, gives its budget back and frees it. NULL is a no-op. */
LF_API void lf_ffn_destroy(lf_ffn *ffn);
/* Detail of its last error; "" if none (or for NULL). Valid until the next call on it. */
LF_API const char *lf_ffn_errmsg(const lf_ffn *ffn);
/* Units per layer (0 for NULL). */
LF_API uint32_t lf_ffn_units(const lf_ffn *ffn);
/* Neurons per unit: 1 in an uncompressed flash file (0 for NULL). */
LF_API uint32_t lf_ffn_group_size(const lf_ffn *ffn);
/* Starts layer `layer`'s prediction and reads for the n tokens x (n, n_embd)
 * without waiting for them, so that they overlap the engine's attention. x
 * may be NULL before the layer's input is known: that is enough for a mask
 * source that does not need it (LF_MASK_ALL, a hook without needs_input)
 * and a no-op otherwise. Idempotent per layer and pass. Errors:
 * LF_E_INVALID_ARG (NULL ffn, layer out of range, n 0 or above max_batch
 * or unlike the pass's), the read errors as in lf_ffn_forward. */
LF_API lf_status lf_ffn_prefetch(lf_ffn *ffn, uint32_t layer, const float *x, size_t n);
/* Writes layer `layer`'s FFN output for the n tokens x (n, n_embd) into y
 * (n, n_embd; the caller's, not aliasing x), prefetching first if needed.
 * Errors: LF_E_INVALID_ARG (as for prefetch, x or y NULL, a mask hook's
 * bad set), LF_E_IO, LF_E_CORRUPT (a checksum), LF_E_TRUNCATED, LF_E_NOMEM.
 * After a failure y is undefined, every read in flight has been waited for
 * and no unit whose read was not confirmed stays cached: the call may be
 * retried. */
LF_API lf_status lf_ffn_forward(lf_ffn *ffn, uint32_t layer, const float *x, size_t n, float *y);
/* Its counters, as a session's (compute_ms is the time in lf_ffn_forward and
 * prefetch; the KV-cache and attention parts are 0). LF_E_INVALID_ARG for NULL. */
LF_API lf_status lf_ffn_get_stats(const lf_ffn *ffn, lf_session_stats *out);
/* Counters of one layer. LF_E_INVALID_ARG for NULL or a layer out of range. */
LF_API lf_status lf_ffn_layer_stats(const lf_ffn *ffn, uint32_t layer, lf_layer_stats *out);

/* ------------------------------------------------------------------------ */
/* Synthetic models: llama-architecture GGUF files with seeded random weights */
/* ------------------------------------------------------------------------ */
typedef struct lf_synth_params {
    uint32_t n_embd, n_layer, n_ff, n_head, n_head_kv, n_vocab, n_ctx;
    lf_type type;               /* type of the 2-D weight matrices */
    /* llama.cpp's Q4_K_M mix instead of one type (type is then ignored):
     * Q4_K, with Q6_K for the output and for attn_v and ffn_down in the
     * first and last eighth of the layers and every third layer between */
    bool q4_k_m;
    lf_activation activation;
    uint64_t seed;
    const char *tokenizer_from; /* GGUF whose tokenizer to copy; NULL: built-in byte-level */
    /* The architecture: "llama" (NULL), "qwen2" (Q/K/V biases) or "qwen3"
     * (per-head Q/K norms); each writes its own keys and tensors. Biases and
     * Q/K norm weights are random (norms near 1), so a test sees them. */
    const char *arch;
    uint32_t head_dim;          /* per attention head; 0: n_embd / n_head (Qwen3 uses 128 for any width) */
    float rope_freq_base;       /* 0: the architecture's (llama 10000, Qwen 1e6) */
    bool rope_freqs;            /* llama: Llama 3.1's rope scaling as a rope_freqs.weight tensor (factor 8 over 8192) */
    bool tied;                  /* no output.weight: the output projection is token_embd's */
    bool force;                 /* overwrite an existing output file */
    /* Realistic activations (0: plain random weights, about half of the FFN
     * active and nothing shared between tokens). sparsity: the mean share
     * of FFN neurons inactive per token (ReLU: the gate is <= 0; SiLU: the
     * gate is mostly negative, so the SwiGLU ground truth at this sparsity
     * finds them). hot: the share of activations the busiest 20% of
     * neurons carry (0: 0.2 + 0.6 * sparsity, or 90% of the way to the most
     * the sparsity allows; PowerInfer measured about 0.8). temporal: the union of the sets of 5 consecutive tokens over
     * one token's set (0: the recent tokens make up 90% of the stream's
     * varying part; OPT shows about 2). Out-of-reach combinations are
     * refused with the range that is reachable. */
    double sparsity, hot, temporal;
    /* Progress: called after each tensor with bytes written so far and total.
     * Return false to stop (the call then fails with LF_E_INTERRUPTED). */
    bool (*progress)(void *user, uint64_t done, uint64_t total);
    void *progress_user;
    /* A mixture of experts (n_expert above 1; 0 or 1: a dense FFN): every
     * layer has n_expert experts of n_ff neurons and a router
     * (ffn_gate_inp), n_expert_used of them routed per token, in Mixtral's
     * tensor layout (llama) or Qwen3-MoE's (arch "qwen3moe"). routing_skew
     * (0: no expert favoured): the embeddings share a component, and expert
     * e's router row gets a bias on it worth about -skew * ln(rank + 1) of
     * logit, its rank a permutation of the experts in each layer, so
     * routing probabilities fall off as (rank + 1)^-skew (Zipf-like; less
     * so in deep layers) and a hot-expert cache has something to find. */
    uint32_t n_expert, n_expert_used;
    double routing_skew;
} lf_synth_params;

/* Defaults: the "tiny" shape, Q8_0, SiLU, seed 1. */
LF_API lf_synth_params lf_synth_default_params(void);
/* Fills the shape fields from a preset: "tiny" (dim 256, 4 layers),
 * "small" (dim 1024, 8 layers), "llama2-7b" (dim 4096, 32 layers, FFN 11008,
 * 32 heads, vocab 32000), "llama2-13b". "llama3.1-8b", "llama3.2-1b",
 * "qwen2.5-7b", "qwen2.5-0.5b", "qwen3-8b" and "qwen3-0.6b" set the
 * architecture, head size, rope and tying of those models too, and
 * "tiny-llama3", "tiny-qwen2" and "tiny-qwen3" the same features at
 * test size. Mixtures of experts: "mixtral-8x7b" (llama, 8 experts of
 * 14336, top 2), "qwen3-30b-a3b" (qwen3moe, 128 experts of 768, top 8,
 * routing_skew 0.5) and "tiny-mixtral" and "tiny-qwen3moe" at test size (vocab 512: give tokenizer_from a real vocabulary to match the
 * models'). The sparse presets set the
 * activation and the activity knobs too: "llama2-7b-relu" (gated ReLU,
 * sparsity 0.95, hot 0.8, temporal 2.0: ReluLLaMA/OPT-like) and
 * "llama2-7b-silu" (SwiGLU, sparsity 0.3: the largest at which the
 * stories260K predictor loses under 1% perplexity), and "tiny-relu" and
 * "tiny-silu" of the tiny shape. LF_E_INVALID_ARG if unknown. */
LF_API lf_status lf_synth_shape_preset(const char *name, lf_synth_params *params);
/* Names of the presets, comma-separated, static string. */
LF_API const char *lf_synth_shape_names(void);
/* Bytes the file will have (0 for NULL). Thread-safe. */
LF_API uint64_t lf_synth_file_bytes(const lf_synth_params *params);
/* What a forward pass of a model with params.sparsity set will show, as
 * lf_layer_stats measures it with measure_recall over tokens drawn at
 * random: the oracle's density, the hot share, the 5-token union over one
 * token's set, the share of neurons new since the token before; and the
 * share of the stream's varying part that the recent tokens make up. */
typedef struct lf_synth_activity {
    double density, hot_share, union5, new_share, context_share;
} lf_synth_activity;
/* Predicts them without writing anything (seconds on one core).
 * LF_E_INVALID_ARG for NULL, no sparsity set, or knobs out of reach
 * (errbuf gives the reachable range). Thread-safe. */
LF_API lf_status lf_synth_predict_activity(const lf_synth_params *params, lf_synth_activity *out, char *errbuf,
                                    size_t errcap);
/* Writes the model to path, tensor by tensor, holding at most a few rows in
 * memory. The file appears complete or not at all: it is written under a
 * temporary name and renamed after fsync. Errors: LF_E_EXISTS, LF_E_IO
 * (disk full included), LF_E_INVALID_ARG, LF_E_INTERRUPTED, and the open
 * errors of tokenizer_from. */
LF_API lf_status lf_synth_write(const char *path, const lf_synth_params *params,
                         char *errbuf, size_t errcap);

/* ------------------------------------------------------------------------ */
/* Flash files: converting GGUF to the bundled layout, and verifying it      */
/* ------------------------------------------------------------------------ */
#define LF_BUNDLE_KEEP (-1)

typedef struct lf_convert_params {
    int bundle_type;            /* an lf_type, or LF_BUNDLE_KEEP: the source FFN's type */
    lf_compression compression;
    int compression_level;      /* 0: the codec's default (zstd 3, lz4 fast) */
    uint32_t group;             /* neurons per compressed group (0: 16); 1 when uncompressed */
    bool packed;                /* no padding between uncompressed records */
    bool force;                 /* overwrite an existing regular file (nothing else is replaced) */
    /* FFN activation: LF_ACT_FROM_FILE (default) keeps the source's
     * llmflash.ffn_activation (SwiGLU when absent); any other value is
     * recorded in the flash file, for ReLU models that lack the key. */
    int activation;
    /* Called after each tensor; return false to stop (LF_E_INTERRUPTED). */
    bool (*progress)(void *user, uint64_t done, uint64_t total);
    void *progress_user;
} lf_convert_params;

typedef struct lf_convert_stats {
    uint64_t in_bytes, out_bytes;
    uint64_t ffn_raw_bytes;     /* bundle records before compression, unpadded */
    uint64_t ffn_stored_bytes;  /* bundle bytes written, padding included */
    double seconds;
    uint64_t peak_rss_bytes;    /* of the process, at the end */
} lf_convert_stats;

LF_API lf_convert_params lf_convert_default_params(void); /* keep, no compression */
/* Converts a GGUF (any architecture lf_model_open runs) into a flash file at out_path. The output appears
 * complete or not at all; the input is only read. stats may be NULL.
 * Errors: LF_E_EXISTS, LF_E_IO (disk full included), LF_E_UNSUPPORTED (bundle
 * type not possible for this d_model, tensor type), any open error of the
 * input, LF_E_INTERRUPTED. */
LF_API lf_status lf_convert(const char *in_path, const char *out_path, const lf_convert_params *params,
                     lf_convert_stats *stats, char *errbuf, size_t errcap);

/* Checks a flash file: header checksum, every tensor's checksum, every
 * bundle group. On LF_E_CORRUPT, errbuf names the first bad part (layer and
 * neuron range for a bundle group). *groups_checked may be NULL. */
LF_API lf_status lf_verify(const char *path, uint64_t *groups_checked, char *errbuf, size_t errcap);

/* ------------------------------------------------------------------------ */
/* Calibration: sparsity predictors fitted to a flash model                   */
/* ------------------------------------------------------------------------ */
/* One layer's held-out quality, as calibrate reports it. */
typedef struct lf_calibrate_layer {
    uint32_t layer, n_layer;
    double recall, precision, predicted_density, true_density;
    /* with lookahead, from layer 1 on: the lookahead predictor's (layer
     * l's units from layer l-1's FFN input), against the same truth */
    double ahead_recall, ahead_precision, ahead_density;
    double seconds;         /* fitting the layer took */
    lf_type weights;        /* the predictor's weights as stored and run: LF_TYPE_F16 or LF_TYPE_Q8_0 */
} lf_calibrate_layer;

/* The weights a predictor is stored and run in. Q8_0 takes 53% of F16's
 * bytes, which under a budget go to the neuron cache; it needs d_model and
 * the rank in multiples of 32. Every threshold is set on the weights as
 * they run, so the target recall holds for either. */
typedef enum lf_predictor_weights {
    LF_PREDICTOR_F16 = 0,
    LF_PREDICTOR_Q8_0 = 1,
    /* per layer: Q8_0 unless the units it predicts beyond F16's per token
     * (on the threshold split) outnumber the bundle records the bytes it
     * saves would cache (then F16), and F16 where the shape does not fit
     * Q8_0 */
    LF_PREDICTOR_AUTO = 2,
} lf_predictor_weights;

typedef struct lf_calibrate_params {
    uint32_t tokens;        /* calibration tokens taken from the text (0: 4096); a fifth is held out */
    uint32_t rank;          /* predictor rank per layer (0: 128, at most d_model) */
    uint32_t rank_last;     /* 0: every layer at `rank`; else ranks grow linearly from `rank` at
                               layer 0 to this at the last layer (the paper: 128, up to 1024 late) */
    double recall;          /* target recall on the held-out tokens (0: 0.99) */
    float sparsity;         /* SwiGLU models: the ground truth keeps neurons with |activation| >= tau_l,
                               tau_l chosen for this FFN sparsity (0: 0.5); ReLU models: unused */
    uint32_t epochs;        /* fitting passes (0: 20) */
    lf_predictor_weights weights; /* F16 (the default), Q8_0 or auto (see lf_predictor_weights) */
    bool force;             /* overwrite an existing output file (regular files only) */
    /* Lookahead: also fit, for every layer l >= 1, a predictor of its units
     * from layer l-1's FFN input, so that stream mode starts layer l's
     * reads while layer l-1 computes (and the in-layer predictor reads only
     * what it missed). Its rank: lookahead_rank (0: rank). Its threshold
     * aims at lookahead_recall (0: 0.9): what it misses is read in the
     * layer itself, and what it reads in vain costs bandwidth, so it aims
     * lower than the in-layer predictor. */
    bool lookahead;
    uint32_t lookahead_rank;
    double lookahead_recall;
    /* Co-activation placement: also write a copy of the model to this path
     * with each layer's records reordered so that neurons that fire
     * together (and the hottest) sit side by side, and the loader reads a
     * token's neurons in fewer, larger reads. The output is the same sum in
     * another order. The predictor is written for both: for the model at
     * model_path + ".predictor", and for the copy at out_path (NULL:
     * reorder_path + ".predictor"). Uncompressed flash files only. NULL: no
     * placement. */
    const char *reorder_path;
    /* Called after each layer with its held-out quality; may be NULL. */
    void (*on_layer)(void *user, const lf_calibrate_layer *q);
    /* Called while the model runs over the text, with tokens done and in
     * all; return false to stop (LF_E_INTERRUPTED). May be NULL. */
    bool (*progress)(void *user, uint64_t done, uint64_t total);
    void *user;
} lf_calibrate_params;

typedef struct lf_calibrate_stats {
    uint64_t tokens, held_out;  /* samples fitted on, and held out for the threshold and the report */
    double recall, precision;   /* over every layer's held-out samples */
    double predicted_density, true_density;
    double ahead_recall, ahead_precision; /* the lookahead's, over layers 1 on (0 without) */
    uint64_t predictor_bytes;   /* what the predictor's weights add to a session's budget */
    uint32_t n_layer, q8_0_layers; /* layers, and those whose predictor is stored as Q8_0 (the others: F16) */
    double seconds;
    lf_activation activation;   /* the model's: SwiGLU predictors need a quality check (see the README) */
    /* A mixture of experts: routing statistics were written instead of a
     * predictor (tokens counts the tokens routed), and the share of each
     * layer's routings its busiest eighth of experts took, averaged. */
    bool routing;
    double routing_hot_share;
} lf_calibrate_stats;

/* The defaults: 4096 tokens, rank 128, recall 0.99, SwiGLU sparsity 0.5,
 * 20 epochs, no lookahead or placement. */
LF_API lf_calibrate_params lf_calibrate_default_params(void);
/* Runs the flash model at model_path over text (len bytes of UTF-8), and
 * fits one low-rank predictor per layer: initialised from a truncated SVD of
 * the layer's gate (up for plain ReLU), fitted by weighted cross-entropy on
 * the FFN inputs seen, its threshold set on held-out tokens for the target
 * recall. Activations are collected one layer at a time through temporary
 * files, so memory holds one layer's samples. Writes the predictor to
 * out_path (NULL: model_path + ".predictor", where sessions look for it;
 * with reorder_path, that of the placed copy), complete or not at all.
 * A mixture of experts needs no predictor (its router is exact): calibrate
 * counts the tokens each layer routes to each expert instead and writes
 * these routing statistics (NULL: model_path + ".routing"), from which
 * sessions pin hot experts (lf_session_params.hot_experts); lookahead and
 * reorder_path are LF_E_UNSUPPORTED there. Errors: the model's open errors, LF_E_INVALID_ARG
 * (not a flash file, a text too short, bad params), LF_E_EXISTS, LF_E_IO,
 * LF_E_NOMEM. */
LF_API lf_status lf_calibrate(const char *model_path, const char *text, size_t len, const char *out_path,
                       const lf_calibrate_params *params, lf_calibrate_stats *stats, char *errbuf, size_t errcap);

/* ------------------------------------------------------------------------ */
/* Measurement helpers                                                        */
/* ------------------------------------------------------------------------ */
/* Random reads shaped like bundle loads, to characterise a device the way
 * the paper's Figure 2b does. */
typedef struct lf_iobench_params {
    uint64_t read_size;      /* bytes per read, a multiple of 4096 (default 16 KiB) */
    uint32_t queue_depth;    /* reads in flight (default 32) */
    double seconds;          /* run this long (default 3) */
    bool coalesce;           /* merge neighbouring reads (default false) */
    lf_io_backend backend;
    uint64_t seed;
} lf_iobench_params;

typedef struct lf_iobench_result {
    double seconds;
    uint64_t reads;          /* read system calls or SQEs completed */
    uint64_t bytes;          /* bytes read from the device */
    double mib_per_s, iops;
    double lat_p50_us, lat_p90_us, lat_p99_us; /* per read */
    double mean_queue_depth; /* reads in flight, averaged over the time any was */
    char backend[16];        /* "io_uring" or "pread" */
    bool direct;             /* O_DIRECT was used (false: page cache may inflate results) */
} lf_iobench_result;

/* The defaults: 16 KiB reads, queue depth 32, 3 seconds, no coalescing,
 * the automatic back-end, seed 1. */
LF_API lf_iobench_params lf_iobench_default_params(void);
/* Reads random aligned ranges of the file at path for params->seconds.
 * Errors: LF_E_IO, LF_E_INVALID_ARG (size not a multiple of 4096, file
 * smaller than one read). */
LF_API lf_status lf_iobench(const char *path, const lf_iobench_params *params, lf_iobench_result *out, char *errbuf,
                     size_t errcap);
/* Sustained DRAM read bandwidth in bytes per second, measured by n_threads
 * threads (0: all cores) summing a freshly touched buffer of `bytes` bytes
 * (at least 64 MiB is used). It is the speed limit of single-token
 * generation. Returns 0 if the buffer cannot be allocated, bytes is more
 * than the memory available, or n_threads is above 8 per core. */
LF_API double lf_memory_read_bandwidth(int n_threads, uint64_t bytes);

#ifdef __cplusplus
}
#endif
#endif /* LLMFLASH_H */
