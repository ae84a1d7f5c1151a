/* sampler.c - greedy, temperature, top-k and top-p sampling. */
#include "../common/lf_common.h"

#include <math.h>
#include <stdlib.h>

typedef struct prob_index {
    float p;
    int32_t i;
} prob_index;

struct lf_sampler {
    lf_sampler_params params;
    lf_rng rng;
    prob_index *scratch; /* (cap) candidates, grown to the vocabulary size */
    uint32_t cap;
};

lf_sampler_params lf_sampler_default_params(void) {
    return (lf_sampler_params){.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 0};
}

lf_status lf_sampler_create(const lf_sampler_params *params, lf_sampler **out) {
    if (!out) return LF_E_INVALID_ARG;
    *out = NULL;
    lf_sampler *s = calloc(1, sizeof *s);
    if (!s) return LF_E_NOMEM;
    s->params = params ? *params : lf_sampler_default_params();
    if (isnan(s->params.temperature) || isnan(s->params.top_p)) {
        free(s);
        return LF_E_INVALID_ARG;
    }
    lf_rng_seed(&s->rng, s->params.seed);
    *out = s;
    return LF_OK;
}

void lf_sampler_destroy(lf_sampler *s) {
    if (!s) return;
    free(s->scratch);
    free(s);
}

static lf_token argmax(const float *logits, uint32_t n) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return (lf_token)best;
}


static int cmp_desc(const void *a, const void *b) {
    const prob_index *x = a, *y = b;
    return x->p < y->p ? 1 : x->p > y->p ? -1 : (x->i > y->i) - (x->i < y->i);
}

lf_token lf_sampler_sample(lf_sampler *s, const float *logits, uint32_t n) {
    if (!s || !logits || n == 0) return -1;
    if (s->params.temperature <= 0.0f) return argmax(logits, n);
    if (s->cap < n) {
        prob_index *grown = realloc(s->scratch, (size_t)n * sizeof *grown);
        if (!grown) return argmax(logits, n); /* degrade, never fail mid-generation */
        s->scratch = grown;
        s->cap = n;
    }
    prob_index *pi = s->scratch;
    float max = logits[0];
    for (uint32_t i = 1; i < n; i++) max = fmaxf(max, logits[i]);
    for (uint32_t i = 0; i < n; i++) {
        pi[i].p = expf((logits[i] - max) / s->params.temperature);
        pi[i].i = (int32_t)i;
    }
    qsort(pi, n, sizeof *pi, cmp_desc);
    uint32_t keep = n;
    if (s->params.top_k > 0 && (uint32_t)s->params.top_k < keep) keep = (uint32_t)s->params.top_k;
    double kept = 0.0;
    for (uint32_t i = 0; i < keep; i++) kept += pi[i].p;
    if (s->params.top_p < 1.0f) {
        double cum = 0.0;
        for (uint32_t i = 0; i < keep; i++) {
            cum += pi[i].p;
            if (cum >= s->params.top_p * kept) {
                keep = i + 1;
                kept = cum;
                break;
            }
        }
    }
    const double r = (double)lf_rng_uniform(&s->rng) * kept;
    double cum = 0.0;
    lf_token tok = pi[keep - 1].i;
    for (uint32_t i = 0; i < keep; i++) {
        cum += pi[i].p;
        if (r < cum) {
            tok = pi[i].i;
            break;
        }
    }
    return tok;
}
