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

void lf_predictor_set_free(lf_predictor_set *ps) {
    for (uint32_t l = 0; ps->layers && l < ps->n_layer; l++) lf_lowrank_free(&ps->layers[l]);
    for (uint32_t l = 0; ps->up && l < ps->n_layer; l++) lf_lowrank_free(&ps->up[l]);
    free(ps->layers);
    free(ps->up);
    free(ps->taus);
    memset(ps, 0, sizeof *ps);
}

uint64_t lf_predictor_set_bytes(const lf_predictor_set *ps) {
    uint64_t b = 0;
    for (uint32_t l = 0; l < ps->n_layer; l++)
        b += lf_lowrank_bytes(ps->layers[l].n_in, ps->layers[l].n_out, ps->layers[l].rank) * (ps->up ? 2 : 1);
    return b + ps->n_layer * sizeof(float);
}

char *lf_predictor_path(const char *model_path, const char *given) {
    if (given) return strdup(given);
    const size_t n = strlen(model_path) + sizeof ".predictor";
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s.predictor", model_path);
    return p;
}

static uint64_t model_checksum(const lf_model *m) {
    uint64_t v = 0;
    lf_gguf_get_u64_or(m->gguf, LF_KEY_HEADER_CHECKSUM, 0, &v, NULL);
    return v;
}

lf_status lf_predictor_save(const lf_predictor_set *ps, const lf_model *m, const char *path, bool force, lf_err *err) {
    lf_gguf_writer *w = NULL;
    lf_outfile out = {.fd = -1};
    lf_status st = lf_gguf_writer_create(32, &w);
    if (st) return lf_err_set(err, st, "predictor file header");
    float *thr = malloc(ps->n_layer * sizeof *thr);
    if (!thr) {
        st = lf_err_set(err, LF_E_NOMEM, "thresholds");
        goto out;
    }
    for (uint32_t l = 0; l < ps->n_layer; l++) thr[l] = ps->layers[l].threshold;
    const uint32_t rank = ps->layers[0].rank;
    if ((st = lf_gguf_writer_set_str(w, "general.architecture", "llmflash-predictor")) ||
        (st = lf_gguf_writer_set_u32(w, VERSION_KEY, 1)) || (st = lf_gguf_writer_set_str(w, KIND_KEY, ps->up ? "lowrank-gate-up" : "lowrank")) ||
        (st = lf_gguf_writer_set_u64(w, CHECKSUM_KEY, model_checksum(m))) ||
        (st = lf_gguf_writer_set_u32(w, "llmflash.predictor.n_layer", ps->n_layer)) ||
        (st = lf_gguf_writer_set_u32(w, "llmflash.predictor.n_embd", m->info.n_embd)) ||
        (st = lf_gguf_writer_set_u32(w, "llmflash.predictor.n_ff", m->info.n_ff)) ||
        (st = lf_gguf_writer_set_u32(w, "llmflash.predictor.rank", rank)) ||
        (st = lf_gguf_writer_set_arr(w, "llmflash.predictor.thresholds", LF_GGUF_F32, thr, ps->n_layer)) ||
        (st = lf_gguf_writer_set_arr(w, "llmflash.predictor.taus", LF_GGUF_F32, ps->taus, ps->n_layer))) {
        lf_err_set(err, st, "predictor metadata");
        goto out;
    }
    for (uint32_t l = 0; l < ps->n_layer && !st; l++) {
        char name[64];
        const uint64_t ne_a[2] = {m->info.n_embd, rank}, ne_b[2] = {rank, m->info.n_ff}, ne_c[1] = {m->info.n_ff};
        snprintf(name, sizeof name, "blk.%u.pred_a", l);
        st = lf_gguf_writer_add_tensor(w, name, LF_TYPE_F32, 2, ne_a, NULL);
        snprintf(name, sizeof name, "blk.%u.pred_b", l);
        if (!st) st = lf_gguf_writer_add_tensor(w, name, LF_TYPE_F32, 2, ne_b, NULL);
        snprintf(name, sizeof name, "blk.%u.pred_bias", l);
        if (!st) st = lf_gguf_writer_add_tensor(w, name, LF_TYPE_F32, 1, ne_c, NULL);
        if (!ps->up) continue;
        snprintf(name, sizeof name, "blk.%u.pred_up_a", l);
        if (!st) st = lf_gguf_writer_add_tensor(w, name, LF_TYPE_F32, 2, ne_a, NULL);
        snprintf(name, sizeof name, "blk.%u.pred_up_b", l);
        if (!st) st = lf_gguf_writer_add_tensor(w, name, LF_TYPE_F32, 2, ne_b, NULL);
        snprintf(name, sizeof name, "blk.%u.pred_up_bias", l);
        if (!st) st = lf_gguf_writer_add_tensor(w, name, LF_TYPE_F32, 1, ne_c, NULL);
    }
    if (st) {
        lf_err_set(err, st, "predictor tensors");
        goto out;
    }
    if ((st = lf_outfile_open(&out, path, force, err)) || (st = lf_gguf_writer_write_header(w, out.fd, err))) goto out;
    for (uint32_t l = 0; l < ps->n_layer && !st; l++)
        for (int k = 0; k < (ps->up ? 2 : 1) && !st; k++) {
            const lf_lowrank *p = k ? &ps->up[l] : &ps->layers[l];
            st = lf_gguf_writer_write_data(w, out.fd, p->A, (uint64_t)p->rank * p->n_in * sizeof(float), err);
            if (!st) st = lf_gguf_writer_write_data(w, out.fd, p->B, (uint64_t)p->n_out * p->rank * sizeof(float), err);
            if (!st) st = lf_gguf_writer_write_data(w, out.fd, p->b, (uint64_t)p->n_out * sizeof(float), err);
        }
    if (!st) st = lf_gguf_writer_finish(w, err);
    if (!st) st = lf_outfile_commit(&out, err);
out:
    if (out.fd >= 0) lf_outfile_abort(&out);
    free(thr);
    lf_gguf_writer_destroy(w);
    return st;
}

/* Tensor `name` of the predictor file, checked for its shape, read into dst. */
static lf_status read_tensor(const lf_gguf *g, int fd, const char *name, uint64_t ne0, uint64_t ne1, float *dst,
                             lf_err *err) {
    const lf_gguf_tensor *t = lf_gguf_find_tensor(g, name);
    if (!t || t->type != LF_TYPE_F32 || t->ne[0] != ne0 || t->ne[1] != ne1)
        return lf_err_set(err, LF_E_MODEL, "predictor tensor '%s' is missing or not F32 [%" PRIu64 ", %" PRIu64 "]", name,
                          ne0, ne1);
    return lf_pread_all(fd, dst, t->nbytes, t->file_offset, err);
}

lf_status lf_predictor_load(const char *path, const lf_model *m, lf_predictor_set *ps, lf_err *err) {
    memset(ps, 0, sizeof *ps);
    int fd;
    uint64_t size;
    lf_status st = lf_open_input(path, 0, &fd, &size, err);
    if (st) return st;
    lf_gguf *g = NULL;
    if ((st = lf_gguf_read_fd(fd, size, &g, err))) goto out;
    lf_gguf_str kind;
    uint32_t version, n_layer, n_embd, n_ff, rank;
    uint64_t sum;
    if ((st = lf_gguf_get_str(g, KIND_KEY, &kind, err)) || (st = lf_gguf_get_u32(g, VERSION_KEY, &version, err)) ||
        (st = lf_gguf_get_u64_or(g, CHECKSUM_KEY, 0, &sum, err)) ||
        (st = lf_gguf_get_u32(g, "llmflash.predictor.n_layer", &n_layer, err)) ||
        (st = lf_gguf_get_u32(g, "llmflash.predictor.n_embd", &n_embd, err)) ||
        (st = lf_gguf_get_u32(g, "llmflash.predictor.n_ff", &n_ff, err)) ||
        (st = lf_gguf_get_u32(g, "llmflash.predictor.rank", &rank, err)))
        goto out;
    const bool pair = lf_gguf_str_eq(kind, "lowrank-gate-up");
    if ((!lf_gguf_str_eq(kind, "lowrank") && !pair) || version != 1) {
        st = lf_err_set(err, LF_E_UNSUPPORTED, "%s: predictor kind or version not supported", path);
        goto out;
    }
    if (n_layer != m->info.n_layer || n_embd != m->info.n_embd || n_ff != m->info.n_ff || rank == 0 || rank > n_embd ||
        sum != model_checksum(m)) {
        st = lf_err_set(err, LF_E_MODEL, "%s was calibrated for another model (or another conversion of it): "
                        "calibrate this one again", path);
        goto out;
    }
    const lf_gguf_kv *thr = lf_gguf_find(g, "llmflash.predictor.thresholds");
    const lf_gguf_kv *tau = lf_gguf_find(g, "llmflash.predictor.taus");
    if (!thr || !tau || thr->type != LF_GGUF_ARRAY || tau->type != LF_GGUF_ARRAY || thr->arr_type != LF_GGUF_F32 ||
        tau->arr_type != LF_GGUF_F32 || thr->arr_n != n_layer || tau->arr_n != n_layer) {
        st = lf_err_set(err, LF_E_MODEL, "%s: thresholds or taus missing or of the wrong length", path);
        goto out;
    }
    ps->n_layer = n_layer;
    ps->layers = calloc(n_layer, sizeof *ps->layers);
    ps->taus = malloc(n_layer * sizeof *ps->taus);
    if (pair) ps->up = calloc(n_layer, sizeof *ps->up);
    if (!ps->layers || !ps->taus || (pair && !ps->up)) {
        st = lf_err_set(err, LF_E_NOMEM, "predictor of %u layers", n_layer);
        goto out;
    }
    for (uint32_t l = 0; l < n_layer && !st; l++) {
        lf_lowrank *p = &ps->layers[l];
        if ((st = lf_lowrank_alloc(p, n_embd, n_ff, rank))) {
            lf_err_set(err, st, "predictor of layer %u", l);
            break;
        }
        const double t = lf_gguf_arr_get_num(thr, l), ta = lf_gguf_arr_get_num(tau, l);
        if (!(t >= -FLT_MAX && t <= FLT_MAX) && !isinf(t)) {
            st = lf_err_set(err, LF_E_MODEL, "%s: threshold of layer %u is not a number", path, l);
            break;
        }
        p->threshold = (float)t;
        ps->taus[l] = isfinite(ta) ? (float)ta : 0.0f;
        char name[64];
        snprintf(name, sizeof name, "blk.%u.pred_a", l);
        if ((st = read_tensor(g, fd, name, n_embd, rank, p->A, err))) break;
        snprintf(name, sizeof name, "blk.%u.pred_b", l);
        if ((st = read_tensor(g, fd, name, rank, n_ff, p->B, err))) break;
        snprintf(name, sizeof name, "blk.%u.pred_bias", l);
        if ((st = read_tensor(g, fd, name, n_ff, 1, p->b, err))) break;
        if (!pair) continue;
        lf_lowrank *u = &ps->up[l];
        if ((st = lf_lowrank_alloc(u, n_embd, n_ff, rank))) {
            lf_err_set(err, st, "up predictor of layer %u", l);
            break;
        }
        snprintf(name, sizeof name, "blk.%u.pred_up_a", l);
        if ((st = read_tensor(g, fd, name, n_embd, rank, u->A, err))) break;
        snprintf(name, sizeof name, "blk.%u.pred_up_b", l);
        if ((st = read_tensor(g, fd, name, rank, n_ff, u->B, err))) break;
        snprintf(name, sizeof name, "blk.%u.pred_up_bias", l);
        if ((st = read_tensor(g, fd, name, n_ff, 1, u->b, err))) break;
    }
out:
    if (st) lf_predictor_set_free(ps);
    lf_gguf_free(g);
    close(fd);
    return st;
}

uint64_t lf_predictor_file_bytes(const char *path, const lf_model *m) {
    lf_gguf *g;
    lf_err ignored = {{0}};
    if (lf_gguf_read_file(path, &g, &ignored)) return 0;
    uint32_t rank = 0;
    lf_gguf_str kind = {0};
    lf_gguf_get_u32_or(g, "llmflash.predictor.rank", 0, &rank, &ignored);
    lf_gguf_get_str(g, KIND_KEY, &kind, &ignored);
    const bool pair = lf_gguf_str_eq(kind, "lowrank-gate-up"); /* two predictors per layer */
    lf_gguf_free(g);
    return (uint64_t)m->info.n_layer *
               (lf_lowrank_bytes(m->info.n_embd, m->info.n_ff, rank) * (pair ? 2 : 1) + sizeof(float)) +
           2 * (rank + 2ull * m->info.n_ff) * sizeof(float) + m->flash->layers[0].n_groups;
}
