/* predictor_file.c - saving and loading a model's predictors (see predictor_file.h). */
#include "predictor_file.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define KIND_KEY "llmflash.predictor.kind"
#define VERSION_KEY "llmflash.predictor.format_version"
#define CHECKSUM_KEY "llmflash.predictor.model_checksum"

#define FORMAT_VERSION 2

void lf__predictor_set_free(lf_predictor_set *ps) {
    for (uint32_t l = 0; ps->layers && l < ps->n_layer; l++) lf__layer_predictor_free(&ps->layers[l]);
    for (uint32_t l = 0; ps->ahead && l < ps->n_layer; l++) lf__layer_predictor_free(&ps->ahead[l]);
    free(ps->layers);
    free(ps->ahead);
    free(ps->taus);
    memset(ps, 0, sizeof *ps);
}

uint64_t lf__predictor_set_bytes(const lf_predictor_set *ps) {
    uint64_t b = 0;
    for (uint32_t l = 0; l < ps->n_layer; l++)
        b += lf__layer_predictor_bytes(&ps->layers[l]) + (ps->ahead ? lf__layer_predictor_bytes(&ps->ahead[l]) : 0);
    return b + ps->n_layer * sizeof(float);
}

char *lf__predictor_path(const char *model_path, const char *given) {
    return lf__sidecar_path(model_path, given, ".predictor");
}

static uint64_t model_checksum(const lf_model *m) {
    uint64_t v = 0;
    lf__gguf_get_u64_or(m->gguf, LF_KEY_HEADER_CHECKSUM, 0, &v, NULL);
    return v;
}

/* The low-rank predictors of one layer, with their tensor names' stems. */
typedef struct part {
    const char *stem;
    const lf_lowrank_run *p;
} part;

static uint32_t layer_parts(const lf_predictor_set *ps, uint32_t l, part *out) {
    uint32_t n = 0;
    out[n++] = (part){"pred", &ps->layers[l].gate};
    if (ps->pair) out[n++] = (part){"pred_up", &ps->layers[l].up};
    if (ps->ahead && l > 0) {
        out[n++] = (part){"ahead", &ps->ahead[l].gate};
        if (ps->pair) out[n++] = (part){"ahead_up", &ps->ahead[l].up};
    }
    return n;
}

lf_status lf__predictor_save(const lf_predictor_set *ps, const lf_model *m, const char *path, bool force, lf_err *err) {
    lf_gguf_writer *w = NULL;
    lf_outfile out = {.fd = -1};
    lf_status st = lf__gguf_writer_create(32, &w);
    if (st) return lf__err_set(err, st, "predictor file header");
    const uint32_t L = ps->n_layer;
    float *thr = calloc(2 * (size_t)L, sizeof *thr), *ahead_thr = thr + L;
    uint32_t rank = 0, *ranks = malloc(L * sizeof *ranks);
    if (!thr || !ranks) {
        st = lf__err_set(err, LF_E_NOMEM, "thresholds");
        goto out;
    }
    for (uint32_t l = 0; l < L; l++) {
        thr[l] = ps->layers[l].threshold;
        ahead_thr[l] = ps->ahead ? ps->ahead[l].threshold : 0.0f;
    }
    const uint32_t ahead_rank = ps->ahead && L > 1 ? ps->ahead[1].gate.rank : 0;
    for (uint32_t l = 0; l < L; l++) rank = LF_MAX(rank, ranks[l] = ps->layers[l].gate.rank);
    if ((st = lf__gguf_writer_set_str(w, "general.architecture", "llmflash-predictor")) ||
        (st = lf__gguf_writer_set_u32(w, VERSION_KEY, FORMAT_VERSION)) ||
        (st = lf__gguf_writer_set_str(w, KIND_KEY, ps->pair ? "lowrank-gate-up" : "lowrank")) ||
        (st = lf__gguf_writer_set_u64(w, CHECKSUM_KEY, model_checksum(m))) ||
        (st = lf__gguf_writer_set_u32(w, "llmflash.predictor.n_layer", L)) ||
        (st = lf__gguf_writer_set_u32(w, "llmflash.predictor.n_embd", m->info.n_embd)) ||
        (st = lf__gguf_writer_set_u32(w, "llmflash.predictor.n_ff", m->info.n_ff)) ||
        (st = lf__gguf_writer_set_u32(w, "llmflash.predictor.rank", rank)) ||
        (st = lf__gguf_writer_set_arr(w, "llmflash.predictor.ranks", LF_GGUF_U32, ranks, L)) ||
        (st = lf__gguf_writer_set_arr(w, "llmflash.predictor.thresholds", LF_GGUF_F32, thr, L)) ||
        (st = lf__gguf_writer_set_arr(w, "llmflash.predictor.taus", LF_GGUF_F32, ps->taus, L)) ||
        (st = lf__gguf_writer_set_u32(w, "llmflash.predictor.lookahead_rank", ahead_rank)) ||
        (ahead_rank && (st = lf__gguf_writer_set_arr(w, "llmflash.predictor.lookahead_thresholds", LF_GGUF_F32, ahead_thr, L)))) {
        lf__err_set(err, st, "predictor metadata");
        goto out;
    }
    part parts[4];
    for (uint32_t l = 0; l < L && !st; l++) {
        const uint32_t n = layer_parts(ps, l, parts);
        for (uint32_t k = 0; k < n && !st; k++) {
            const lf_lowrank_run *p = parts[k].p;
            char name[64];
            const uint64_t ne_a[2] = {p->n_in, p->rank}, ne_b[2] = {p->rank, p->n_out}, ne_c[1] = {p->n_out};
            snprintf(name, sizeof name, "blk.%u.%s_a", l, parts[k].stem);
            st = lf__gguf_writer_add_tensor(w, name, p->type, 2, ne_a, NULL);
            snprintf(name, sizeof name, "blk.%u.%s_b", l, parts[k].stem);
            if (!st) st = lf__gguf_writer_add_tensor(w, name, p->type, 2, ne_b, NULL);
            snprintf(name, sizeof name, "blk.%u.%s_bias", l, parts[k].stem);
            if (!st) st = lf__gguf_writer_add_tensor(w, name, LF_TYPE_F32, 1, ne_c, NULL);
        }
    }
    if (st) {
        lf__err_set(err, st, "predictor tensors");
        goto out;
    }
    if ((st = lf__outfile_open(&out, path, force, err)) || (st = lf__gguf_writer_write_header(w, out.fd, err))) goto out;
    for (uint32_t l = 0; l < L && !st; l++) {
        const uint32_t n = layer_parts(ps, l, parts);
        for (uint32_t k = 0; k < n && !st; k++) {
            const lf_lowrank_run *p = parts[k].p;
            st = lf__gguf_writer_write_data(w, out.fd, p->A, lf__lowrank_run_a_bytes(p->type, p->n_in, p->rank), err);
            if (!st) st = lf__gguf_writer_write_data(w, out.fd, p->B, lf__lowrank_run_b_bytes(p->type, p->n_out, p->rank), err);
            if (!st) st = lf__gguf_writer_write_data(w, out.fd, p->b, (uint64_t)p->n_out * sizeof *p->b, err);
        }
    }
    if (!st) st = lf__gguf_writer_finish(w, err);
    if (!st) st = lf__outfile_commit(&out, err);
out:
    if (out.fd >= 0) lf__outfile_abort(&out);
    free(thr);
    free(ranks);
    lf__gguf_writer_destroy(w);
    return st;
}

/* Tensor `name` of the predictor file, checked for its type and shape, read into dst. */
static lf_status read_tensor(const lf_gguf *g, int fd, const char *name, uint32_t type, uint64_t ne0, uint64_t ne1,
                             void *dst, lf_err *err) {
    const lf_gguf_tensor *t = lf__gguf_find_tensor(g, name);
    if (!t || t->type != type || t->ne[0] != ne0 || t->ne[1] != ne1)
        return lf__err_set(err, LF_E_MODEL, "predictor tensor '%s' is missing or not %s [%" PRIu64 ", %" PRIu64 "]", name,
                           lf_type_name((int)type), ne0, ne1);
    return lf__pread_all(fd, dst, t->nbytes, t->file_offset, err);
}

/* One low-rank predictor: its A and B of one type, F16 or Q8_0 (for a shape that fits it). */
static lf_status read_part(const lf_gguf *g, int fd, uint32_t l, const char *stem, uint32_t n_in, uint32_t n_out,
                           uint32_t rank, lf_lowrank_run *p, lf_err *err) {
    char name[64];
    snprintf(name, sizeof name, "blk.%u.%s_a", l, stem);
    const lf_gguf_tensor *a = lf__gguf_find_tensor(g, name);
    const uint32_t type = a ? a->type : LF_TYPE_F16;
    if (type != LF_TYPE_F16 && type != LF_TYPE_Q8_0)
        return lf__err_set(err, LF_E_MODEL, "predictor tensor '%s' is %s: F16 or Q8_0 expected", name,
                           lf_type_name((int)type));
    lf_status st = lf__lowrank_run_alloc(p, type, n_in, n_out, rank);
    if (st == LF_E_UNSUPPORTED)
        return lf__err_set(err, LF_E_MODEL, "predictor of layer %u: Q8_0 needs n_embd and rank (%u) in multiples of 32",
                           l, rank);
    if (st) return lf__err_set(err, st, "predictor of layer %u", l);
    if ((st = read_tensor(g, fd, name, type, n_in, rank, p->A, err))) return st;
    snprintf(name, sizeof name, "blk.%u.%s_b", l, stem);
    if ((st = read_tensor(g, fd, name, type, rank, n_out, p->B, err))) return st;
    snprintf(name, sizeof name, "blk.%u.%s_bias", l, stem);
    return read_tensor(g, fd, name, LF_TYPE_F32, n_out, 1, p->b, err);
}

/* A per-layer f32 array of the file: n_layer finite numbers (infinity allowed: nothing fires). */
static lf_status read_layer_floats(const lf_gguf *g, const char *key, uint32_t n_layer, const char *path, float *out,
                                   lf_err *err) {
    const lf_gguf_kv *kv = lf__gguf_find(g, key);
    if (!kv || kv->type != LF_GGUF_ARRAY || kv->arr_type != LF_GGUF_F32 || kv->arr_n != n_layer)
        return lf__err_set(err, LF_E_MODEL, "%s: %s missing or of the wrong length", path, key);
    for (uint32_t l = 0; l < n_layer; l++) {
        const double v = lf__gguf_arr_get_num(kv, l);
        if (isnan(v)) return lf__err_set(err, LF_E_MODEL, "%s: %s of layer %u is not a number", path, key, l);
        out[l] = (float)v;
    }
    return LF_OK;
}

lf_status lf__predictor_load(const char *path, const lf_model *m, bool with_lookahead, lf_predictor_set *ps, lf_err *err) {
    memset(ps, 0, sizeof *ps);
    int fd;
    uint64_t size;
    lf_status st = lf__open_input(path, 0, &fd, &size, err);
    if (st) return st;
    lf_gguf *g = NULL;
    float *thr = NULL;
    if ((st = lf__gguf_read_fd(fd, size, &g, err))) goto out;
    lf_gguf_str kind;
    uint32_t version, n_layer, n_embd, n_ff, rank, ahead_rank;
    uint64_t sum;
    if ((st = lf__gguf_get_str(g, KIND_KEY, &kind, err)) || (st = lf__gguf_get_u32(g, VERSION_KEY, &version, err)))
        goto out;
    const bool pair = lf__gguf_str_eq(kind, "lowrank-gate-up");
    if ((!lf__gguf_str_eq(kind, "lowrank") && !pair) || version != FORMAT_VERSION) {
        st = lf__err_set(err, LF_E_UNSUPPORTED, "%s: predictor kind or format version %u not supported (this build reads %u: "
                         "calibrate again)", path, version, FORMAT_VERSION);
        goto out;
    }
    if ((st = lf__gguf_get_u64_or(g, CHECKSUM_KEY, 0, &sum, err)) ||
        (st = lf__gguf_get_u32(g, "llmflash.predictor.n_layer", &n_layer, err)) ||
        (st = lf__gguf_get_u32(g, "llmflash.predictor.n_embd", &n_embd, err)) ||
        (st = lf__gguf_get_u32(g, "llmflash.predictor.n_ff", &n_ff, err)) ||
        (st = lf__gguf_get_u32(g, "llmflash.predictor.rank", &rank, err)) ||
        (st = lf__gguf_get_u32(g, "llmflash.predictor.lookahead_rank", &ahead_rank, err)))
        goto out;
    if (n_layer != m->info.n_layer || n_embd != m->info.n_embd || n_ff != m->info.n_ff || rank == 0 || rank > n_embd ||
        ahead_rank > n_embd || sum != model_checksum(m)) {
        st = lf__err_set(err, LF_E_MODEL, "%s was calibrated for another model (or another conversion of it): "
                         "calibrate this one again", path);
        goto out;
    }
    if (!with_lookahead) ahead_rank = 0;
    ps->n_layer = n_layer;
    ps->pair = pair;
    ps->layers = calloc(n_layer, sizeof *ps->layers);
    ps->taus = malloc(n_layer * sizeof *ps->taus);
    thr = malloc(n_layer * sizeof *thr);
    if (ahead_rank) ps->ahead = calloc(n_layer, sizeof *ps->ahead);
    if (!ps->layers || !ps->taus || !thr || (ahead_rank && !ps->ahead)) {
        st = lf__err_set(err, LF_E_NOMEM, "predictor of %u layers", n_layer);
        goto out;
    }
    if ((st = read_layer_floats(g, "llmflash.predictor.taus", n_layer, path, ps->taus, err)) ||
        (st = read_layer_floats(g, "llmflash.predictor.thresholds", n_layer, path, thr, err)))
        goto out;
    for (uint32_t l = 0; l < n_layer; l++) {
        ps->layers[l].threshold = thr[l];
        if (!isfinite(ps->taus[l])) ps->taus[l] = 0.0f;
    }
    if (ahead_rank && (st = read_layer_floats(g, "llmflash.predictor.lookahead_thresholds", n_layer, path, thr, err)))
        goto out;
    /* per-layer ranks; absent: every layer at `rank` */
    const lf_gguf_kv *ranks = lf__gguf_find(g, "llmflash.predictor.ranks");
    if (ranks && (ranks->type != LF_GGUF_ARRAY || ranks->arr_type != LF_GGUF_U32 || ranks->arr_n != n_layer)) {
        st = lf__err_set(err, LF_E_MODEL, "%s: llmflash.predictor.ranks is not one u32 per layer", path);
        goto out;
    }
    for (uint32_t l = 0; ranks && l < n_layer; l++) {
        const double r = lf__gguf_arr_get_num(ranks, l);
        if (!(r >= 1 && r <= rank)) {
            st = lf__err_set(err, LF_E_MODEL, "%s: layer %u's rank %g is not in 1..%u", path, l, r, rank);
            goto out;
        }
    }
    for (uint32_t l = 0; ps->ahead && l < n_layer; l++) ps->ahead[l].threshold = thr[l];
    for (uint32_t l = 0; l < n_layer && !st; l++) {
        lf_layer_predictor *p = &ps->layers[l], *a = ps->ahead ? &ps->ahead[l] : NULL;
        const uint32_t r = ranks ? (uint32_t)lf__gguf_arr_get_num(ranks, l) : rank;
        st = read_part(g, fd, l, "pred", n_embd, n_ff, r, &p->gate, err);
        if (!st && pair) st = read_part(g, fd, l, "pred_up", n_embd, n_ff, r, &p->up, err);
        if (!st && a && l > 0) st = read_part(g, fd, l, "ahead", n_embd, n_ff, ahead_rank, &a->gate, err);
        if (!st && a && l > 0 && pair) st = read_part(g, fd, l, "ahead_up", n_embd, n_ff, ahead_rank, &a->up, err);
    }
out:
    if (st) lf__predictor_set_free(ps);
    free(thr);
    lf__gguf_free(g);
    close(fd);
    return st;
}

uint64_t lf__predictor_mask_scratch(uint32_t n_in, uint32_t n_ff, uint32_t rank) {
    const uint64_t q8a = sizeof(lf_block_q8a) / sizeof(float); /* floats per block */
    return 2ull * rank + n_ff + (n_in / LF_QK + 2ull * ((rank + LF_QK - 1) / LF_QK)) * q8a;
}

/* Whether tensor `name` is a predictor weight a load with(out) the lookahead reads. */
static bool loaded_weight(const char *name, size_t len, bool with_lookahead) {
    if (len < 4 || strncmp(name, "blk.", 4) != 0) return false;
    const char *stem = memchr(name + 4, '.', len - 4);
    if (!stem) return false;
    stem++;
    const size_t n = len - (size_t)(stem - name);
    const bool pred = n >= 5 && strncmp(stem, "pred", 4) == 0, ahead = n >= 6 && strncmp(stem, "ahead", 5) == 0;
    return pred || (ahead && with_lookahead);
}

uint64_t lf__predictor_file_bytes(const char *path, const lf_model *m, bool with_lookahead) {
    lf_gguf *g;
    lf_err ignored = {{0}};
    if (lf__gguf_read_file(path, &g, &ignored)) return 0;
    uint32_t rank = 0, ahead_rank = 0;
    lf__gguf_get_u32_or(g, "llmflash.predictor.rank", 0, &rank, &ignored);
    lf__gguf_get_u32_or(g, "llmflash.predictor.lookahead_rank", 0, &ahead_rank, &ignored);
    if (!with_lookahead) ahead_rank = 0;
    /* the weights as stored (F16 or Q8_0, each layer at its rank) are the weights loaded */
    uint64_t weights = 0;
    for (uint64_t t = 0; t < g->n_tensors; t++)
        if (loaded_weight(g->tensors[t].name.ptr, g->tensors[t].name.len, with_lookahead)) weights += g->tensors[t].nbytes;
    lf__gguf_free(g);
    const uint32_t ff = m->info.n_ff;
    return weights + m->info.n_layer * sizeof(float) +
           (lf__predictor_mask_scratch(m->info.n_embd, ff, LF_MAX(rank, ahead_rank)) + ff) * sizeof(float) +
           m->flash->layers[0].n_groups;
}
