/* synth_sparse.c - weights with a real sparse model's activation statistics
 * (see synth_sparse.h). */
#include "synth_sparse.h"

#include <math.h>
#include <stdlib.h>

#define FREQ_R0 0.02        /* rank offset of the frequency power law */
#define FREQ_MAX 0.98       /* no neuron fires in every token */
#define FREQ_GRID 4096      /* neurons by rank, for solving and predicting */
#define CLUSTER_SIZE 64     /* neurons sharing a co-activation direction */
#define CLUSTER_SHARE 0.5   /* the shared direction's share of a neuron's subspace part */
/* Real residual streams are anisotropic: most of their variance lies in a
 * few hundred directions, which is why a low-rank predictor can work. Here
 * the stream's varying part has EMBED_NOISE of its energy spread over all
 * coordinates and the rest in a SUBSPACE-dimensional subspace (coordinates
 * 1..SUBSPACE), and gate and up rows have ROW_NOISE of their norm outside
 * it: about 1% of the gate's pre-activation variance is out of reach of a
 * predictor of rank above SUBSPACE. */
#define SUBSPACE 96
#define EMBED_NOISE 0.5
#define ROW_NOISE 0.3
#define QUIET_SCALE 0.02f   /* other layers' contributions to the stream, relative */
#define SIM_TOKENS 32768    /* length of the simulated token sequence */
#define PROFILE_MAX 1024    /* distances the steady-state attention covers */
#define CTX_SHARE_MAX 0.98
#define CTX_SHARE_DEFAULT 0.9
#define UNION_WINDOW 5

/* P(Z > k) = p for a standard normal Z. */
static double normal_upper_quantile(double p) {
    double lo = -12.0, hi = 12.0;
    for (int it = 0; it < 80; it++) {
        const double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(mid / sqrt(2.0)) > p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

static double freq_at(const lf_sparse_design *sd, double r) {
    const double f = sd->freq_amp * pow(r + FREQ_R0, -sd->freq_exp);
    return f < FREQ_MAX ? f : FREQ_MAX;
}

/* Sets freq_amp for the mean density at exponent e; returns the share of
 * activations the top 20% carry. */
static double freq_fit(lf_sparse_design *sd, double e) {
    const double density = 1.0 - sd->sparsity;
    sd->freq_exp = e;
    double lo = 0.0, hi = 1.0;
    while (hi < 1e12) { /* bracket */
        sd->freq_amp = hi;
        double mean = 0.0;
        for (int g = 0; g < FREQ_GRID; g++) mean += freq_at(sd, (g + 0.5) / FREQ_GRID);
        if (mean / FREQ_GRID >= density) break;
        lo = hi;
        hi *= 4.0;
    }
    for (int it = 0; it < 60; it++) {
        sd->freq_amp = 0.5 * (lo + hi);
        double mean = 0.0;
        for (int g = 0; g < FREQ_GRID; g++) mean += freq_at(sd, (g + 0.5) / FREQ_GRID);
        if (mean / FREQ_GRID < density) lo = sd->freq_amp;
        else hi = sd->freq_amp;
    }
    double top = 0.0, all = 0.0;
    for (int g = 0; g < FREQ_GRID; g++) {
        const double f = freq_at(sd, (g + 0.5) / FREQ_GRID);
        all += f;
        if (g < FREQ_GRID / 5) top += f;
    }
    return top / all;
}

/* Layer 0's attention weights by distance: softmax of lambda * sum over the
 * low-frequency rotary pairs of cos(distance * theta), at a position far
 * from the start. */
static lf_status make_profile(lf_sparse_design *sd) {
    const uint32_t hd = sd->n_embd / sd->n_head, n_pairs = hd / 2;
    sd->first_pair = n_pairs * 3 / 8;
    const double lambda = 40.0 / (n_pairs - sd->first_pair);
    sd->qk = sqrt(lambda * sqrt((double)hd));
    double *w = malloc(PROFILE_MAX * sizeof *w);
    if (!w) return LF_E_NOMEM;
    double sum = 0.0;
    for (uint32_t dist = 0; dist < PROFILE_MAX; dist++) {
        double s = 0.0;
        for (uint32_t j = sd->first_pair; j < n_pairs; j++)
            s += cos(dist * pow(sd->rope_base, -2.0 * j / hd)) - 1.0;
        w[dist] = exp(lambda * s);
        sum += w[dist];
    }
    uint32_t n = PROFILE_MAX;
    while (n > 1 && w[n - 1] / sum < 1e-7) n--;
    sd->profile = malloc(n * sizeof *sd->profile);
    if (!sd->profile) {
        free(w);
        return LF_E_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++) sd->profile[i] = (float)(w[i] / sum);
    sd->n_profile = n;
    free(w);
    return LF_OK;
}

/* The varying part's filter for a context share: c_0 = 1 + g a_0,
 * c_d = g a_d, g = share / (1 - share). */
static void ctx_filter(const lf_sparse_design *sd, double share, double *c) {
    const double g = share / (1.0 - share);
    for (uint32_t i = 0; i < sd->n_profile; i++) c[i] = g * sd->profile[i];
    c[0] += 1.0;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Index of the first element of sorted v (n) greater than k. */
static size_t upper_bound(const double *v, size_t n, double k) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (v[mid] <= k) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

typedef struct sim {
    double *e1, *e2;    /* (SIM_TOKENS + n_profile) white noise: carried by the context, and not */
    double *z, *m, *c;  /* (SIM_TOKENS) process, its max over the window, the filter */
    double *k;          /* (FREQ_GRID) thresholds by rank */
    double a2, b2;      /* variance of w.v per unit of filter energy (the coordinates the context
                           reaches), and outside the context's reach (GQA: coordinates past the KV width) */
} sim;

/* Simulates w.v_t at a context share; sets the predicted density, union
 * ratio and new share. */
static void simulate(lf_sparse_design *sd, sim *S, double share) {
    const uint32_t P = sd->n_profile;
    ctx_filter(sd, share, S->c);
    double c2 = 0.0;
    for (uint32_t i = 0; i < P; i++) c2 += S->c[i] * S->c[i];
    const double sigma = sqrt(S->a2 * c2 + S->b2);
    for (size_t t = 0; t < SIM_TOKENS; t++) {
        double a = 0.0;
        for (uint32_t i = 0; i < P; i++) a += S->c[i] * S->e1[t + P - 1 - i];
        S->z[t] = (sqrt(S->a2) * a + sqrt(S->b2) * S->e2[t + P - 1]) / sigma;
    }
    const size_t n_win = SIM_TOKENS - UNION_WINDOW + 1;
    for (size_t t = 0; t < n_win; t++) {
        double mx = S->z[t];
        for (int j = 1; j < UNION_WINDOW; j++) mx = S->z[t + j] > mx ? S->z[t + j] : mx;
        S->m[t] = mx;
    }
    /* new at t for threshold k: z[t-1] <= k < z[t]; counted per grid
     * threshold through a difference array over the sorted thresholds */
    double *newc = calloc(FREQ_GRID + 1, sizeof *newc);
    for (size_t t = 1; t < SIM_TOKENS && newc; t++) {
        const double lo = S->z[t - 1], hi = S->z[t];
        if (hi <= lo) continue;
        /* grid g with lo <= k[g] < hi; k ascends with g (rarer neurons
         * have higher thresholds) */
        size_t a = 0, b = FREQ_GRID;
        while (a < b) { /* first g with k[g] >= lo */
            const size_t mid = (a + b) / 2;
            if (S->k[mid] < lo) a = mid + 1;
            else b = mid;
        }
        size_t c = a, d = FREQ_GRID;
        while (c < d) { /* first g with k[g] >= hi */
            const size_t mid = (c + d) / 2;
            if (S->k[mid] < hi) c = mid + 1;
            else d = mid;
        }
        newc[a] += 1.0;
        newc[c] -= 1.0;
    }
    qsort(S->z, SIM_TOKENS, sizeof *S->z, cmp_double);
    qsort(S->m, n_win, sizeof *S->m, cmp_double);
    double p1 = 0.0, pu = 0.0, pn = 0.0, run = 0.0, top = 0.0;
    for (int g = 0; g < FREQ_GRID; g++) {
        const double a = 1.0 - (double)upper_bound(S->z, SIM_TOKENS, S->k[g]) / SIM_TOKENS;
        p1 += a;
        if (g < FREQ_GRID / 5) top += a;
        pu += 1.0 - (double)upper_bound(S->m, n_win, S->k[g]) / n_win;
        if (newc) {
            run += newc[g];
            pn += run / (SIM_TOKENS - 1);
        }
    }
    free(newc);
    sd->pred_density = p1 / FREQ_GRID;
    sd->pred_hot = top / p1;
    sd->pred_union5 = pu / p1;
    sd->pred_new = pn / FREQ_GRID;
}

lf_status lf__sparse_design_solve(lf_sparse_design *sd, lf_err *err) {
    if (!(sd->sparsity > 0.0 && sd->sparsity < 1.0))
        return lf__err_set(err, LF_E_INVALID_ARG, "sparsity must lie between 0 and 1 (got %g)", sd->sparsity);
    double lo = 0.0, hi = 12.0;
    const double reach = freq_fit(sd, hi);
    if (sd->hot == 0.0) { /* 0.8 at sparsity 1, uniform at 0, and within reach */
        sd->hot = 0.2 + 0.6 * sd->sparsity;
        if (sd->hot > 0.2 + 0.9 * (reach - 0.2)) sd->hot = 0.2 + 0.9 * (reach - 0.2);
    }
    if (!(sd->hot >= 0.2 && sd->hot < 1.0))
        return lf__err_set(err, LF_E_INVALID_ARG, "hot must lie in [0.2, 1): the share of activations on 20%% of the neurons");
    if (sd->hot > reach - 1e-3)
        return lf__err_set(err, LF_E_INVALID_ARG, "hot %.3f is out of reach at sparsity %.3f: at most %.3f", sd->hot,
                           sd->sparsity, reach - 1e-3);
    for (int it = 0; it < 60; it++) {
        const double mid = 0.5 * (lo + hi);
        if (freq_fit(sd, mid) < sd->hot) lo = mid;
        else hi = mid;
    }
    freq_fit(sd, 0.5 * (lo + hi));
    lf_status st = make_profile(sd);
    if (st) return lf__err_set(err, st, "attention profile");
    sd->subspace = LF_MIN((uint32_t)SUBSPACE, (sd->n_embd - 1) / 2);
    const uint32_t hd = sd->n_embd / sd->n_head, kv = sd->n_head_kv * hd;
    sim S = {0};
    const uint32_t P = sd->n_profile;
    S.e1 = malloc((SIM_TOKENS + P) * sizeof *S.e1);
    S.e2 = malloc((SIM_TOKENS + P) * sizeof *S.e2);
    S.z = malloc(SIM_TOKENS * sizeof *S.z);
    S.m = malloc(SIM_TOKENS * sizeof *S.m);
    S.c = malloc(P * sizeof *S.c);
    S.k = malloc(FREQ_GRID * sizeof *S.k);
    if (!S.e1 || !S.e2 || !S.z || !S.m || !S.c || !S.k) {
        st = lf__err_set(err, LF_E_NOMEM, "simulating the design");
        goto out;
    }
    /* per-coordinate variances of the embeddings' varying part (norm
     * sqrt(d - 1)) and of a unit row, inside and outside the subspace */
    const double dm1 = sd->n_embd - 1.0, K = sd->subspace;
    const double sK = (1.0 - EMBED_NOISE) * dm1 / K, sN = EMBED_NOISE * dm1 / (dm1 - K);
    const double wK = 1.0 - ROW_NOISE, wN = ROW_NOISE / (dm1 - K);
    S.a2 = wK * sK + wN * sN * ((double)kv - 1.0 - K);
    S.b2 = wN * sN * ((double)sd->n_embd - kv);
    lf_rng rng;
    lf__rng_seed(&rng, 12345);
    for (size_t i = 0; i < SIM_TOKENS + P; i++) {
        S.e1[i] = lf__rng_normal(&rng);
        S.e2[i] = lf__rng_normal(&rng);
    }
    for (int g = 0; g < FREQ_GRID; g++) S.k[g] = normal_upper_quantile(freq_at(sd, (g + 0.5) / FREQ_GRID));
    if (sd->temporal == 0.0) {
        sd->ctx_share = CTX_SHARE_DEFAULT;
    } else {
        simulate(sd, &S, 0.0);
        const double most = sd->pred_union5;
        simulate(sd, &S, CTX_SHARE_MAX);
        const double least = sd->pred_union5;
        if (sd->temporal > most || sd->temporal < least) {
            st = lf__err_set(err, LF_E_INVALID_ARG,
                             "temporal %.2f is out of reach at sparsity %.3f and hot %.3f: the 5-token union can be %.2f to %.2f times one token's set",
                             sd->temporal, sd->sparsity, sd->hot, least, most);
            goto out;
        }
        double a = 0.0, b = CTX_SHARE_MAX;
        for (int it = 0; it < 24; it++) {
            const double mid = 0.5 * (a + b);
            simulate(sd, &S, mid);
            if (sd->pred_union5 > sd->temporal) a = mid;
            else b = mid;
        }
        sd->ctx_share = 0.5 * (a + b);
    }
    simulate(sd, &S, sd->ctx_share);
    /* the weights that realise it */
    const double g = sd->ctx_share / (1.0 - sd->ctx_share), d = sd->n_embd;
    double c2 = 0.0;
    ctx_filter(sd, sd->ctx_share, S.c);
    for (uint32_t i = 0; i < P; i++) c2 += S.c[i] * S.c[i];
    sd->mu = sqrt(d);
    const double r0 = sqrt(d) / sqrt(sd->mu * sd->mu + (d - 1.0));
    sd->x0 = sd->mu * r0;
    sd->ctx_gain = g / r0;
    sd->h0 = sd->mu * (1.0 + g);
    sd->sigma_v = sqrt(S.a2 * c2 + S.b2);
    const double v2 = c2 * (K * sK + ((double)kv - 1.0 - K) * sN) + ((double)sd->n_embd - kv) * sN;
    sd->h_norm = sqrt(sd->h0 * sd->h0 + v2);
out:
    free(S.e1);
    free(S.e2);
    free(S.z);
    free(S.m);
    free(S.c);
    free(S.k);
    return st;
}

void lf__sparse_design_free(lf_sparse_design *sd) {
    free(sd->profile);
    sd->profile = NULL;
}

/* ---- tensors ---------------------------------------------------------------- */

struct lf_sparse_tensor {
    const lf_sparse_design *sd;
    lf_sparse_role role;
    uint64_t rows, cols;
    float sd_random;
    uint32_t *rank;       /* GATE: (rows) frequency rank of each neuron */
    uint32_t *cluster;    /* GATE: (rows) */
    float *dirs;          /* GATE: (n_clusters, subspace) unit directions in the subspace */
};

/* v[a..b) random with norm `norm`. */
static void random_part(lf_rng *rng, float *v, uint64_t a, uint64_t b, double norm) {
    double s = 0.0;
    for (uint64_t i = a; i < b; i++) {
        v[i] = lf__rng_normal(rng);
        s += (double)v[i] * v[i];
    }
    const float k = s > 0.0 ? (float)(norm / sqrt(s)) : 0.0f;
    for (uint64_t i = a; i < b; i++) v[i] *= k;
}

/* A unit vector of n coordinates, coordinate 0 zero: `1 - noise` of its
 * squared norm in the subspace (coordinates 1..K), along dir (K values,
 * unit) for a share `shared` of that part when dir is given, and the rest
 * spread over the other coordinates. */
static void structured_unit(lf_rng *rng, float *v, uint64_t n, uint32_t K, double noise, const float *dir,
                            double shared) {
    v[0] = 0.0f;
    random_part(rng, v, 1, K + 1, 1.0);
    if (dir) {
        const float a = (float)sqrt(shared), b = (float)sqrt(1.0 - shared);
        for (uint32_t i = 0; i < K; i++) v[1 + i] = a * dir[i] + b * v[1 + i];
        double s = 0.0;
        for (uint32_t i = 1; i <= K; i++) s += (double)v[i] * v[i];
        for (uint32_t i = 1; i <= K; i++) v[i] *= (float)(1.0 / sqrt(s));
    }
    for (uint32_t i = 1; i <= K; i++) v[i] *= (float)sqrt(1.0 - noise);
    random_part(rng, v, K + 1, n, sqrt(noise));
}

lf_status lf__sparse_tensor_begin(const lf_sparse_design *sd, lf_sparse_role role, uint64_t rows, uint64_t cols,
                                  float sd_random, lf_rng *rng, lf_sparse_tensor **out) {
    lf_sparse_tensor *t = calloc(1, sizeof *t);
    if (!t) return LF_E_NOMEM;
    *t = (lf_sparse_tensor){sd, role, rows, cols, sd_random, NULL, NULL, NULL};
    if (role == LF_SPARSE_GATE) {
        const uint64_t n_clusters = (rows + CLUSTER_SIZE - 1) / CLUSTER_SIZE;
        t->rank = malloc(rows * sizeof *t->rank);
        t->cluster = malloc(rows * sizeof *t->cluster);
        t->dirs = malloc(n_clusters * sd->subspace * sizeof *t->dirs);
        if (!t->rank || !t->cluster || !t->dirs) {
            lf__sparse_tensor_end(t);
            return LF_E_NOMEM;
        }
        /* hot neurons and clusters scattered over the layer: the file's
         * order says nothing about who fires together */
        for (uint64_t i = 0; i < rows; i++) t->rank[i] = (uint32_t)i, t->cluster[i] = (uint32_t)(i / CLUSTER_SIZE);
        for (uint64_t i = rows; i > 1; i--) {
            const uint64_t j = lf__rng_next(rng) % i;
            const uint32_t a = t->rank[i - 1];
            t->rank[i - 1] = t->rank[j], t->rank[j] = a;
            const uint64_t k = lf__rng_next(rng) % i;
            const uint32_t b = t->cluster[i - 1];
            t->cluster[i - 1] = t->cluster[k], t->cluster[k] = b;
        }
        for (uint64_t c = 0; c < n_clusters; c++)
            random_part(rng, t->dirs + c * sd->subspace, 0, sd->subspace, 1.0);
    }
    *out = t;
    return LF_OK;
}

void lf__sparse_tensor_rows(lf_sparse_tensor *t, uint64_t r0, uint64_t nr, lf_rng *rng, float *rows) {
    const lf_sparse_design *sd = t->sd;
    const uint64_t C = t->cols;
    const uint32_t hd = sd->n_embd / sd->n_head, group = sd->n_head / sd->n_head_kv;
    memset(rows, 0, nr * C * sizeof *rows);
    for (uint64_t k = 0; k < nr; k++) {
        const uint64_t r = r0 + k;
        float *row = rows + k * C;
        switch (t->role) {
        case LF_SPARSE_RANDOM:
        case LF_SPARSE_QUIET: {
            const float s = t->sd_random * (t->role == LF_SPARSE_QUIET ? QUIET_SCALE : 1.0f);
            for (uint64_t i = 0; i < C; i++) row[i] = s * lf__rng_normal(rng);
            break;
        }
        case LF_SPARSE_EMBED:
            structured_unit(rng, row, C, sd->subspace, EMBED_NOISE, NULL, 0.0);
            for (uint64_t i = 1; i < C; i++) row[i] *= (float)sqrt((double)C - 1.0);
            row[0] = (float)sd->mu;
            break;
        case LF_SPARSE_UP:
            structured_unit(rng, row, C, sd->subspace, ROW_NOISE, NULL, 0.0);
            break;
        case LF_SPARSE_Q0:
        case LF_SPARSE_K0: /* a constant query and key in the low-frequency pairs */
            if ((r % hd) % 2 == 0 && (r % hd) / 2 >= sd->first_pair) row[0] = (float)(sd->qk / sd->x0);
            break;
        case LF_SPARSE_V0: /* values: the stream's own coordinates */
            row[r] = 1.0f;
            break;
        case LF_SPARSE_O0: /* every head of a KV group adds its share back where it came from */
            if (r < (uint64_t)sd->n_head_kv * hd)
                for (uint32_t h = (uint32_t)(r / hd) * group; h < (uint32_t)(r / hd + 1) * group; h++)
                    row[(uint64_t)h * hd + r % hd] = (float)(sd->ctx_gain / group);
            break;
        case LF_SPARSE_GATE: {
            structured_unit(rng, row, C, sd->subspace, ROW_NOISE, t->dirs + (uint64_t)t->cluster[r] * sd->subspace,
                            CLUSTER_SHARE);
            const double f = freq_at(sd, (t->rank[r] + 0.5) / t->rows);
            const double kth = normal_upper_quantile(f), bias = kth * sd->sigma_v / sd->h0;
            const double scale = sd->h_norm / (sqrt((double)sd->n_embd) * sd->sigma_v);
            const float wn = (float)scale; /* the row is a unit vector */
            for (uint64_t i = 1; i < C; i++) row[i] *= wn;
            row[0] = (float)(-bias * scale);
            break;
        }
        }
    }
}

void lf__sparse_tensor_end(lf_sparse_tensor *t) {
    if (!t) return;
    free(t->rank);
    free(t->cluster);
    free(t->dirs);
    free(t);
}
