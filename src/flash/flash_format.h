/* flash_format.h - the llmflash flash layout: a GGUF v3 file whose FFN is
 * stored as per-layer neuron bundles.
 *
 * Record of neuron i (the paper's row-column bundling):
 *     gate[i, :]  (gated FFNs only)   row_bytes
 *     up[i, :]                        row_bytes
 *     down[:, i]                      row_bytes
 * each a row of d_model values in the bundle type, so one read brings all a
 * neuron needs. record_bytes = (2|3) * row_bytes.
 *
 * Uncompressed, records sit at a fixed stride inside the layer's bundle
 * tensor. The stride is the padding trade-off:
 *   - record_bytes <= 4096: the next power of two, so that no record
 *     straddles a 4 KiB page and a neuron is always one page read
 *     (waste < 50%, only for tiny models);
 *   - otherwise the next multiple of 4096, so each neuron is exactly
 *     ceil(record_bytes / 4096) aligned pages, readable with O_DIRECT straight
 *     into a cache slot. Packing them instead would make an isolated neuron
 *     span one extra page half the time, and would need a staging copy.
 *     The cost is disk space and bytes of dense sequential reads: 18.5% for
 *     7B Q4_0/Q4_K (6912 -> 8192), 25% for 7B Q8_0 (13056 -> 16384), 0% for
 *     7B F16 (24576).
 *   `--align none` packs records at stride = record_bytes instead.
 * Compressed, each group of `group` consecutive neurons is compressed as one
 * frame of their unpadded records; frames are packed back to back.
 *
 * Mixtures of experts: a layer's neurons are its experts' neurons, expert
 * by expert (neuron j of expert e is neuron e * n_ff + j), and each expert
 * is one group, so one read brings a routed expert in. Uncompressed, an
 * expert's records are packed and experts sit at a stride of their own,
 * rounded to 4096 bytes as above (lf__bundle_stride of the expert's bytes).
 *
 * Every group (of 1 neuron when uncompressed, of an expert's neurons in a
 * mixture of experts) has an index entry with its offset inside the bundle
 * tensor, stored size, raw size and the xxHash64 of its stored bytes. */
#ifndef LF_FLASH_FORMAT_H
#define LF_FLASH_FORMAT_H

#include "../../loader/codec.h"
#include "../gguf/gguf.h"

#define LF_FLASH_FORMAT_VERSION 1
#define LF_FLASH_ALIGNMENT 4096

/* One index entry, stored little-endian in blk.N.ffn_bundle_index. */
typedef struct lf_bundle_entry {
    uint64_t offset;   /* of the group inside the layer's bundle tensor */
    uint32_t stored;   /* bytes on disk */
    uint32_t raw;      /* bytes after decompression (records, unpadded) */
    uint64_t checksum; /* xxHash64 of the stored bytes, seed 0 */
} lf_bundle_entry;
_Static_assert(sizeof(lf_bundle_entry) == 24, "index entry layout");

/* Parameters of a file's bundles, read from its llmflash.* metadata. */
typedef struct lf_bundle_layout {
    uint32_t type;         /* lf_type of the rows */
    uint32_t n_rows;       /* 3 (gate, up, down) or 2 (up, down) */
    uint64_t row_bytes;
    uint64_t record_bytes; /* n_rows * row_bytes */
    uint64_t stride;       /* uncompressed: distance between groups (a group of 1 is a neuron) */
    uint32_t group;        /* neurons per group: an expert's when the FFN is a mixture of experts */
    lf_compression compression;
    int32_t level;
} lf_bundle_layout;

/* Stride of uncompressed records for a record size (see above). */
static inline uint64_t lf__bundle_stride(uint64_t record_bytes, bool packed) {
    if (packed) return record_bytes;
    if (record_bytes <= LF_FLASH_ALIGNMENT) {
        uint64_t s = 1;
        while (s < record_bytes) s *= 2;
        return s;
    }
    return lf__align_up(record_bytes, LF_FLASH_ALIGNMENT);
}

/* Metadata keys. */
#define LF_KEY_FORMAT "llmflash.format_version"
#define LF_KEY_LAYOUT "llmflash.bundle.layout"
#define LF_KEY_TYPE "llmflash.bundle.type"
#define LF_KEY_ROW_BYTES "llmflash.bundle.row_bytes"
#define LF_KEY_RECORD_BYTES "llmflash.bundle.record_bytes"
#define LF_KEY_STRIDE "llmflash.bundle.stride"
#define LF_KEY_GROUP "llmflash.bundle.group"
#define LF_KEY_COMPRESSION "llmflash.bundle.compression"
#define LF_KEY_LEVEL "llmflash.bundle.compression_level"
#define LF_KEY_CHECKSUM "llmflash.bundle.checksum"
#define LF_KEY_TABLE_OFFSETS "llmflash.bundle.table_offsets"
#define LF_KEY_DATA_OFFSETS "llmflash.bundle.data_offsets"
#define LF_KEY_HEADER_CHECKSUM "llmflash.header_checksum"
#define LF_KEY_FILE_SIZE "llmflash.file_size" /* the complete file, to detect truncated padding */
#define LF_KEY_TENSOR_CHECKSUMS "llmflash.tensor_checksums"
/* Co-activation placement: u32 (n_layer * n_ff), the source neuron at each
 * position of each layer (absent: the source order). */
#define LF_KEY_NEURON_ORDER "llmflash.bundle.neuron_order"

/* Per-layer view of a flash file's bundles. */
typedef struct lf_flash_layer {
    uint64_t data_offset;   /* absolute offset of blk.N.ffn_bundle */
    uint64_t data_bytes;
    uint64_t n_groups;
    lf_bundle_entry *index; /* (n_groups), validated against data_bytes */
} lf_flash_layer;

typedef struct lf_flash {
    lf_bundle_layout layout;
    uint32_t n_layer, n_embd;
    uint32_t n_ff;          /* neurons per layer: every expert's, expert by expert */
    uint32_t n_expert;      /* 1: a dense FFN; more: each group is one expert */
    lf_flash_layer *layers;
} lf_flash;

/* Whether a parsed GGUF is a flash file (has llmflash.format_version). */
bool lf__flash_detect(const lf_gguf *g);
/* LF_E_TRUNCATED unless the file has exactly the size its header records. */
lf_status lf__flash_check_size(const lf_gguf *g, lf_err *err);
/* Reads the layout and every layer's index (verifying the index tensors'
 * checksums). fd is the open file. */
lf_status lf__flash_open(const lf_gguf *g, int fd, lf_flash **out, lf_err *err);
void lf__flash_free(lf_flash *f);
/* Neurons [first, first+count) of group g. */
void lf__flash_group_neurons(const lf_flash *f, uint64_t g, uint64_t *first, uint64_t *count);
/* Checks and decodes one group's stored bytes into `raw` (its records,
 * unpadded, record_bytes each). verify: check the checksum first. */
lf_status lf__flash_decode_group(const lf_flash *f, uint32_t layer, uint64_t g, const void *stored, void *raw,
                                 bool verify, lf_err *err);
/* Reads a whole layer into dst (n_ff records of record_bytes, unpadded). */
lf_status lf__flash_read_layer(const lf_flash *f, int fd, uint32_t layer, void *dst, bool verify, lf_err *err);

/* The 8 value bytes of llmflash.header_checksum inside a rendered header
 * (its key/value entry: u64 length, key, u32 type, u64 value), or NULL. */
uint8_t *lf__flash_header_checksum_field(uint8_t *hdr, uint64_t len);

/* The header (every byte before the tensor data) against
 * llmflash.header_checksum: LF_E_CORRUPT, or the read's error. */
lf_status lf__flash_verify_header(int fd, const lf_gguf *g, lf_err *err);
/* Tensor i's bytes at data against llmflash.tensor_checksums (bundle data,
 * whose entry is 0, is checked group by group instead): LF_E_CORRUPT. */
lf_status lf__flash_verify_tensor(const lf_gguf *g, uint64_t i, const void *data, lf_err *err);
/* The same for a tensor that stays in the file, read from fd a MiB at a time. */
lf_status lf__flash_verify_tensor_in_file(int fd, const lf_gguf *g, uint64_t i, lf_err *err);

/* Co-activation placement: writes to out_path the uncompressed flash file
 * at in_path with each layer's records reordered, perm[l][q] being the
 * input neuron placed at position q of layer l. The sum an FFN computes is
 * the same in any order; the file records the order composed with the
 * input's own (LF_KEY_NEURON_ORDER). Complete or not at all.
 * LF_E_UNSUPPORTED for compressed files; LF_E_INVALID_ARG for a perm that
 * is not a permutation. */
lf_status lf__flash_reorder(const char *in_path, const char *out_path, const uint32_t *const *perm, bool force,
                            lf_err *err);

/* pread of exactly n bytes, retrying short reads; LF_E_IO/LF_E_TRUNCATED. */
lf_status lf__pread_all(int fd, void *buf, size_t n, uint64_t off, lf_err *err);

#endif
