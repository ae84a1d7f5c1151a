/* sampler.c - repetition penalty, then greedy, or temperature with top-k,
 * top-p and min-p. */
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
    float *penalized;    /* (cap) logits after the repetition penalty */
    uint32_t cap;
    lf_token *recent;    /* (repeat_last_n) ring of accepted tokens */
    uint32_t n_recent, recent_at;
};

lf_sampler_params lf_sampler_default_params(void) {
    return (lf_sampler_params){.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 0, .min_p = 0.0f,
                               .repeat_penalty = 1.0f, .repeat_last_n = 64};
}

lf_status lf_sampler_create(const lf_sampler_params *params, lf_sampler **out) {
    if (!out) return LF_E_INVALID_ARG;
    *out = NULL;
    lf_sampler *s = calloc(1, sizeof *s);
    if (!s) return LF_E_NOMEM;
    s->params = params ? *params : lf_sampler_default_params();
    const lf_sampler_params *q = &s->params;
    if (!isfinite(q->temperature) || !(q->top_p >= 0.0f && q->top_p <= 1.0f) || !(q->min_p >= 0.0f && q->min_p <= 1.0f) ||
        !(q->repeat_penalty >= 0.0f && isfinite(q->repeat_penalty)) || q->repeat_last_n < 0 || q->repeat_last_n > (1 << 20)) {
        free(s);
        return LF_E_INVALID_ARG;
    }
    if (q->repeat_last_n > 0 && q->repeat_penalty != 1.0f && q->repeat_penalty != 0.0f &&
        !(s->recent = malloc((size_t)q->repeat_last_n * sizeof *s->recent))) {
        free(s);
        return LF_E_NOMEM;
    }
    lf__rng_seed(&s->rng, s->params.seed);
    *out = s;
    return LF_OK;
}

void lf_sampler_destroy(lf_sampler *s) {
    if (!s) return;
    free(s->scratch);
    free(s->penalized);
    free(s->recent);
    free(s);
}

void lf_sampler_accept(lf_sampler *s, lf_token token) {
    if (!s || !s->recent) return;
    s->recent[s->recent_at] = token;
    s->recent_at = (s->recent_at + 1) % (uint32_t)s->params.repeat_last_n;
    if (s->n_recent < (uint32_t)s->params.repeat_last_n) s->n_recent++;
}

void lf_sampler_reset(lf_sampler *s) {
    if (!s) return;
    s->n_recent = s->recent_at = 0;
    lf__rng_seed(&s->rng, s->params.seed);
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

static bool grow(lf_sampler *s, uint32_t n) {
    if (s->cap >= n) return true;
    prob_index *pi = realloc(s->scratch, (size_t)n * sizeof *pi);
    if (pi) s->scratch = pi;
    float *pl = realloc(s->penalized, (size_t)n * sizeof *pl);
    if (pl) s->penalized = pl;
    if (!pi || !pl) return false;
    s->cap = n;
    return true;
}

/* llama.cpp's repetition penalty: a recent token's positive logit is divided
 * by the penalty, a negative one multiplied, once however often it recurs. */
static const float *penalize(lf_sampler *s, const float *logits, uint32_t n) {
    if (!s->n_recent) return logits;
    memcpy(s->penalized, logits, (size_t)n * sizeof *logits);
    const float pen = s->params.repeat_penalty;
    for (uint32_t k = 0; k < s->n_recent; k++) {
        const lf_token t = s->recent[k];
        if (t < 0 || (uint32_t)t >= n) continue;
        bool seen = false;
        for (uint32_t j = 0; j < k && !seen; j++) seen = s->recent[j] == t;
        if (seen) continue;
        s->penalized[t] = logits[t] > 0.0f ? logits[t] / pen : logits[t] * pen;
    }
    return s->penalized;
}

lf_token lf_sampler_sample(lf_sampler *s, const float *logits, uint32_t n) {
    if (!s || !logits || n == 0) return -1;
    if (!grow(s, n)) return argmax(logits, n); /* degrade, never fail mid-generation */
    logits = penalize(s, logits, n);
    if (s->params.temperature <= 0.0f) return argmax(logits, n);
    prob_index *pi = s->scratch;
    float max = logits[0];
    for (uint32_t i = 1; i < n; i++) max = fmaxf(max, logits[i]);
    /* min-p as llama.cpp applies it, on the logits: keep a token whose
     * probability is at least min_p times the top one's */
    const float floor = s->params.min_p > 0.0f ? max + logf(s->params.min_p) : -INFINITY;
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (logits[i] < floor) continue;
        pi[m].p = expf((logits[i] - max) / s->params.temperature);
        pi[m].i = (int32_t)i;
        m++;
    }
    qsort(pi, m, sizeof *pi, cmp_desc);
    uint32_t keep = m;
    if (s->params.top_k > 0 && (uint32_t)s->params.top_k < keep) keep = (uint32_t)s->params.top_k;
    double kept = 0.0;
    for (uint32_t i = 0; i < keep; i++) kept += pi[i].p;
    if (s->params.top_p > 0.0f && s->params.top_p < 1.0f) {
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
    const double r = (double)lf__rng_uniform(&s->rng) * kept;
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
