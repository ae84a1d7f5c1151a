/* test_sample.c - greedy, temperature, top-k, top-p and seeding. */
#include <criterion/criterion.h>

#include "llmflash.h"

#include <math.h>

static lf_sampler *make(float temp, int k, float p, uint64_t seed) {
    lf_sampler_params sp = {.temperature = temp, .top_k = k, .top_p = p, .seed = seed};
    lf_sampler *s;
    cr_assert_eq(lf_sampler_create(&sp, &s), LF_OK);
    return s;
}

Test(sample, greedy_is_argmax) {
    const float logits[] = {0.1f, 3.0f, -1.0f, 2.9f};
    lf_sampler *s = make(0.0f, 0, 1.0f, 1);
    cr_assert_eq(lf_sampler_sample(s, logits, 4), 1);
    lf_sampler_destroy(s);
    s = make(1.0f, 1, 1.0f, 1); /* top-k 1 is greedy too */
    for (int i = 0; i < 50; i++) cr_assert_eq(lf_sampler_sample(s, logits, 4), 1);
    lf_sampler_destroy(s);
}

Test(sample, follows_the_softmax) {
    const float logits[] = {0.0f, logf(2.0f), logf(3.0f), logf(4.0f)};
    lf_sampler *s = make(1.0f, 0, 1.0f, 42);
    int counts[4] = {0};
    const int n = 40000;
    for (int i = 0; i < n; i++) counts[lf_sampler_sample(s, logits, 4)]++;
    for (int i = 0; i < 4; i++) {
        const double expect = (i + 1) / 10.0;
        cr_assert(fabs(counts[i] / (double)n - expect) < 0.015, "token %d: %g vs %g", i, counts[i] / (double)n, expect);
    }
    lf_sampler_destroy(s);
}

Test(sample, top_k_and_top_p_cut_the_tail) {
    const float logits[] = {0.0f, logf(2.0f), logf(3.0f), logf(4.0f)};
    lf_sampler *s = make(1.0f, 2, 1.0f, 3);
    for (int i = 0; i < 2000; i++) cr_assert(lf_sampler_sample(s, logits, 4) >= 2);
    lf_sampler_destroy(s);
    /* top-p 0.5: tokens 3 (0.4) and 2 (0.3) reach 0.7 >= 0.5 */
    s = make(1.0f, 0, 0.5f, 3);
    for (int i = 0; i < 2000; i++) cr_assert(lf_sampler_sample(s, logits, 4) >= 2);
    lf_sampler_destroy(s);
}

Test(sample, seed_reproduces) {
    float logits[100];
    for (int i = 0; i < 100; i++) logits[i] = sinf((float)i);
    lf_sampler *a = make(1.5f, 0, 1.0f, 99), *b = make(1.5f, 0, 1.0f, 99), *c = make(1.5f, 0, 1.0f, 100);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        const lf_token ta = lf_sampler_sample(a, logits, 100);
        cr_assert_eq(ta, lf_sampler_sample(b, logits, 100));
        differ += ta != lf_sampler_sample(c, logits, 100);
    }
    cr_assert(differ > 50, "another seed gives another sequence");
    lf_sampler_destroy(a);
    lf_sampler_destroy(b);
    lf_sampler_destroy(c);
}

Test(sample, rejects_bad_params) {
    lf_sampler_params sp = lf_sampler_default_params();
    sp.temperature = NAN;
    lf_sampler *s;
    cr_assert_eq(lf_sampler_create(&sp, &s), LF_E_INVALID_ARG);
    cr_assert_eq(lf_sampler_sample(NULL, NULL, 0), -1);
}
