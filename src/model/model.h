/* model.h - the in-memory model: hyperparameters, weight views, tokenizer.
 *
 * In mmap mode every weight is a view into the read-only mapping of the GGUF
 * file; in the other modes the weights kept in memory are the model's own
 * copies, repacked where the kernels have a faster layout. Norm vectors are converted to float at load (they are tiny and used
 * as float by the forward pass). */
#ifndef LF_MODEL_H
#define LF_MODEL_H

#include "../common/lf_common.h"
#include "../gguf/gguf.h"
#include "../tensor/kernels.h"
#include "../tensor/repack.h"
#include "../../loader/loader.h"
#include "../flash/flash_format.h"
#include "../tokenizer/tokenizer.h"
#include "../arch/arch.h"

#include <pthread.h>

/* A 2-D weight: `rows` rows of `cols` elements, each row_bytes, in one of
 * two layouts: ggml's rows, or (resident weights the kernels have an x8
 * path for) groups of 8 interleaved rows, the same bytes (repack.h). */
typedef struct lf_weight {
    const void *data;
    lf_layout layout;
    uint32_t type;
    uint64_t rows, cols;
    uint64_t row_bytes;
} lf_weight;

typedef struct lf_layer {
    float *attn_norm;   /* (n_embd) */
    lf_weight wq;       /* (n_head*head_dim, n_embd) */
    lf_weight wk;       /* (n_head_kv*head_dim, n_embd) */
    lf_weight wv;       /* (n_head_kv*head_dim, n_embd) */
    lf_weight wo;       /* (n_embd, n_head*head_dim) */
    float *bq, *bk, *bv; /* (q_dim), (kv_dim), (kv_dim): biases after the projections, or NULL (arch->qkv_bias) */
    float *q_norm, *k_norm; /* (head_dim): RMS norm weights of each head, or NULL (arch->qk_norm) */
    float *ffn_norm;    /* (n_embd) */
    /* the FFN; a mixture of experts stacks its n_expert experts' matrices
     * (lf__expert_slice takes one out) and routes with `router` */
    lf_weight gate;     /* (n_expert * n_ff, n_embd); data NULL for non-gated FFNs */
    lf_weight up;       /* (n_expert * n_ff, n_embd) */
    lf_weight down;     /* (n_expert * n_embd, n_ff) */
    lf_weight router;   /* (n_expert, n_embd) ffn_gate_inp, or data NULL for a dense FFN */
    uint8_t *bundle;    /* mmap'ed flash file: the layer's records (stride apart), or NULL */
} lf_layer;

struct lf_model {
    lf_err err;
    lf_logger log;
    int n_threads;
    char *path;
    int fd;
    void *map;          /* read-only mapping of the whole file */
    uint64_t map_size;
    lf_gguf *gguf;
    lf_model_info info;
    const lf_arch *arch;
    uint32_t head_dim;
    float rope_pos_scale; /* positions are multiplied by this: 1 / the linear scaling factor (1: none) */
    float *rope_freqs;    /* (n_rot / 2) Llama 3.1's per-frequency divisors (rope_freqs.weight), or NULL */
    lf_weight tok_embd; /* (n_vocab, n_embd); data NULL when the table stays in the file */
    uint64_t embd_file_offset; /* where it is then (stream, naive, hybrid) */
    float *output_norm; /* (n_embd) */
    lf_weight output;   /* (n_vocab, n_embd); may alias tok_embd */
    lf_layer *layers;   /* (n_layer) */
    lf_tokenizer *tok;
    lf_flash *flash;    /* bundle layout and index when the file is a flash file */
    lf_loader *loader;  /* reads bundles from a flash file */
    lf_mode mode;
    uint64_t dram_budget; /* 0: none */
    lf_io_backend io_backend;
    const uint8_t **tensor_ptr; /* (n_tensors) data of each tensor: in the mapping or in `resident` */
    uint8_t *resident;  /* stream modes: resident tensors, read into memory */
    uint64_t resident_bytes;
    bool unbundled_reads;     /* ablation: see lf_model_params */
    bool huge_pages;          /* resident weights in 2 MiB pages: see lf_model_params */
    uint32_t io_queue_depth;  /* flash reads in flight */
    bool verify_checksums;
    const lf_kernels *kernels;
    lf_pool *load_pool;  /* while opening: the threads that repack weights */
    bool *prepacked;     /* ram mode: (n_tensors) read straight into the x8 layout */
    char **tensor_names; /* NUL-terminated copies, (n_tensors) */
    char **meta_keys;    /* (n_kv) */
    /* the budget ledger, shared by the model and its sessions */
    pthread_mutex_t budget_mu;
    uint64_t budget_fixed; /* the model's own part: resident weights, metadata, loader staging */
    uint64_t budget_used;  /* budget_fixed plus what sessions hold */
    /* mmap mode: bundle groups checked so far, one byte per group of each
     * layer (set once, by whichever session touches it first) */
    uint8_t **group_checked; /* (n_layer) of (n_groups) */
    uint8_t *layer_checked;  /* (n_layer) every group of the layer checked: the per-token test is one load */
};

lf_tensor_class lf__tensor_class_of(const char *name);
/* Expert e's matrix of `rows` rows out of a stacked weight (model.h's
 * lf_layer): a view, in the stack's layout (x8 groups never straddle two
 * experts: bind refuses to repack them otherwise). */
static inline lf_weight lf__expert_slice(const lf_weight *w, uint32_t e, uint64_t rows) {
    lf_weight v = *w;
    v.data = (const uint8_t *)w->data + (uint64_t)e * rows * w->row_bytes;
    v.rows = rows;
    return v;
}
/* A NUL-terminated malloc'd copy of a header string, or NULL. */
char *lf__gguf_str_dup(lf_gguf_str s);
/* The public description of tensor t, named name (a copy that outlives t's header). */
void lf__tensor_info_fill(const lf_gguf_tensor *t, const char *name, lf_tensor_info *out);
/* mmap mode: checks the bundle groups of layer l not checked before against
 * their checksums (no-op with verify_checksums off). LF_E_CORRUPT names
 * the layer and neurons. Thread-safe. */
lf_status lf__model_check_mapped_layer(lf_model *m, uint32_t l, lf_err *err);
/* Bytes the model holds in stream modes besides resident weights. */
uint64_t lf__model_overhead_bytes(const lf_model *m);

/* The budget ledger (model params' dram_budget): takes `want` bytes (0:
 * all that is left) for a holder ("this session") that needs at least own
 * of them; LF_E_BUDGET, saying who needs what, when that does not fit.
 * Thread-safe. */
lf_status lf__model_ledger_take(lf_model *m, const char *who, uint64_t own, uint64_t want, uint64_t *taken, lf_err *err);
void lf__model_ledger_give_back(lf_model *m, uint64_t bytes);

#endif
