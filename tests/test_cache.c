/* test_cache.c - the windowed neuron cache over random activation
 * sequences: index/slab consistency after swap-delete, window semantics,
 * LRU eviction under pressure, no survivor moved by an insertion, pins, and
 * no slot leaked. */
#include <criterion/criterion.h>

#include "../src/cache/neuron_cache.h"
#include "../src/model/moe.h"

#include <math.h>
#include <stdlib.h>

#define UNITS 300
#define SLOT 24

/* Every live slot holds the bytes written for its unit. */
static void fill_slot(lf_ncache *c, int32_t slot, uint32_t unit) {
    memset(lf__ncache_slot(c, slot), (int)(unit % 251), SLOT);
    memcpy(lf__ncache_slot(c, slot), &unit, 4);
}

static void check_slab(const lf_ncache *c) {
    for (uint32_t s = 0; s < c->n_live; s++) {
        uint32_t u;
        memcpy(&u, lf__ncache_slot(c, (int32_t)s), 4);
        cr_assert_eq(u, (uint32_t)c->unit_of[s], "slot %u holds unit %u's bytes, index says %d", s, u, c->unit_of[s]);
        cr_assert_eq(lf__ncache_slot(c, (int32_t)s)[SLOT - 1], (uint8_t)(u % 251));
    }
}

/* A mask source for run_sequence. */
typedef enum mask_kind {
    MASK_DRIFT,  /* a drifting hot set plus random units */
    MASK_ROUTED, /* experts: mask_size of them routed per token of a batch of 1 to 4, by skewed random logits */
} mask_kind;

static uint32_t next_mask(mask_kind kind, uint32_t mask_size, uint64_t t, lf_rng *rng, uint8_t *active, uint32_t *mask) {
    uint32_t n = 0;
    if (kind == MASK_ROUTED) {
        const uint32_t batch = 1 + (uint32_t)(lf__rng_next(rng) % 4);
        for (uint32_t b = 0; b < batch; b++) {
            float logits[UNITS], w[UNITS];
            uint32_t experts[UNITS];
            /* expert e's logits spread as (e + 1)^-0.5: low experts win more */
            for (uint32_t e = 0; e < UNITS; e++) logits[e] = (float)(lf__rng_normal(rng) * pow(e + 1.0, -0.5));
            lf__moe_route(logits, UNITS, mask_size, experts, w);
            float sum = 0;
            for (uint32_t k = 0; k < mask_size; k++) {
                cr_assert(k == 0 || logits[experts[k]] <= logits[experts[k - 1]], "routing is not in descending order");
                sum += w[k];
                if (!active[experts[k]]) {
                    active[experts[k]] = 1;
                    mask[n++] = experts[k];
                }
            }
            cr_assert(fabsf(sum - 1.0f) < 1e-5f, "routing weights sum to %g", sum);
        }
        return n;
    }
    for (uint32_t k = 0; k < mask_size; k++) {
        const uint32_t u = k < mask_size / 2 ? (uint32_t)((t / 20 * 7 + k) % UNITS) : (uint32_t)(lf__rng_next(rng) % UNITS);
        if (!active[u]) {
            active[u] = 1;
            mask[n++] = u;
        }
    }
    return n;
}

static void run_masks(mask_kind kind, uint32_t capacity, uint32_t window, uint32_t mask_size, uint64_t seed,
                      uint32_t pins) {
    lf_ncache c;
    cr_assert_eq(lf__ncache_init(&c, UNITS, capacity, SLOT), LF_OK);
    int32_t *slots = malloc(UNITS * sizeof *slots), *scratch = malloc((4 * capacity + 4) * sizeof *scratch);
    uint64_t *last = calloc(UNITS, sizeof *last); /* our own record of last use */
    lf_rng rng;
    lf__rng_seed(&rng, seed);
    /* pin units 0..pins-1 at token 0 */
    for (uint32_t u = 0; u < pins; u++) {
        const int32_t s = lf__ncache_insert(&c, u, 0);
        cr_assert(s >= 0);
        fill_slot(&c, s, u);
        lf__ncache_pin(&c, s);
    }
    for (uint64_t t = 1; t <= 400; t++) {
        lf__ncache_expire(&c, t, window);
        cr_assert(lf__ncache_check(&c));
        /* window: every unpinned resident unit was used within the window */
        for (uint32_t s = 0; s < c.n_live; s++)
            if (!c.pinned[s]) cr_assert(c.last_used[s] + window > t, "unit %d outlived the window", c.unit_of[s]);
        uint8_t active[UNITS] = {0};
        uint32_t mask[UNITS];
        const uint32_t n = next_mask(kind, mask_size, t, &rng, active, mask);
        uint32_t misses[UNITS], nm = 0;
        for (uint32_t k = 0; k < n; k++) {
            const int32_t s = lf__ncache_find(&c, mask[k]);
            if (s >= 0) lf__ncache_touch(&c, s, t);
            else misses[nm++] = mask[k];
            last[mask[k]] = t;
        }
        /* remember who was resident and not needed now, for the LRU check */
        uint8_t before[UNITS] = {0};
        int32_t slot_before[UNITS];
        for (uint32_t u = 0; u < UNITS; u++) slot_before[u] = lf__ncache_find(&c, u);
        for (uint32_t s = 0; s < c.n_live; s++) before[c.unit_of[s]] = 1;
        const uint32_t got = lf__ncache_insert_many(&c, misses, nm, t, slots, scratch);
        /* insertion moves no survivor: a read in flight into its slot stays valid */
        for (uint32_t u = 0; u < UNITS; u++)
            if (before[u] && lf__ncache_find(&c, u) >= 0)
                cr_assert_eq(lf__ncache_find(&c, u), slot_before[u], "token %lu: unit %u moved from slot %d to %d",
                             (unsigned long)t, u, slot_before[u], lf__ncache_find(&c, u));
        for (uint32_t k = 0; k < got; k++) fill_slot(&c, slots[k], misses[k]);
        cr_assert(lf__ncache_check(&c));
        check_slab(&c);
        /* inserted units are resident; the rest found no slot only when the
         * slab is full of pinned or active units */
        for (uint32_t k = 0; k < got; k++) cr_assert(lf__ncache_find(&c, misses[k]) >= 0);
        if (got < nm) {
            cr_assert_eq(c.n_live, c.capacity);
            for (uint32_t s = 0; s < c.n_live; s++) cr_assert(c.pinned[s] || c.last_used[s] == t);
        }
        /* LRU: every evicted unit was used no later than every survivor
         * that this token does not need */
        uint64_t newest_evicted = 0, oldest_kept = UINT64_MAX;
        for (uint32_t u = 0; u < UNITS; u++) {
            if (!before[u] || active[u]) continue;
            const int32_t s = lf__ncache_find(&c, u);
            if (s < 0) newest_evicted = LF_MAX(newest_evicted, last[u]);
            else if (!c.pinned[s]) oldest_kept = LF_MIN(oldest_kept, last[u]);
        }
        cr_assert(newest_evicted <= oldest_kept, "token %lu: evicted a unit used at %lu, kept one used at %lu",
                  (unsigned long)t, (unsigned long)newest_evicted, (unsigned long)oldest_kept);
        /* pins survive everything */
        for (uint32_t u = 0; u < pins; u++) cr_assert(lf__ncache_find(&c, u) >= 0);
    }
    /* no slot leaked: removing everything leaves an empty cache */
    for (uint32_t u = 0; u < UNITS; u++) lf__ncache_remove(&c, u);
    cr_assert_eq(c.n_live, 0);
    cr_assert_eq(c.n_pinned, 0);
    cr_assert(lf__ncache_check(&c));
    free(slots);
    free(scratch);
    free(last);
    lf__ncache_free(&c);
}

static void run_sequence(uint32_t capacity, uint32_t window, uint32_t mask_size, uint64_t seed, uint32_t pins) {
    run_masks(MASK_DRIFT, capacity, window, mask_size, seed, pins);
}

/* An expert cache: no window (experts stay until evicted), a pinned hot
 * set, batches routed top-8 over skewed logits. */
Test(cache, routed_experts_lru_with_a_hot_set) { run_masks(MASK_ROUTED, 48, UINT32_MAX, 8, 5, 6); }
Test(cache, routed_experts_under_pressure) { run_masks(MASK_ROUTED, 12, UINT32_MAX, 8, 6, 0); }

Test(cache, roomy_slab_window_semantics) { run_sequence(UNITS, 5, 40, 1, 0); }
Test(cache, pressure_evicts_lru) { run_sequence(60, 5, 40, 2, 0); }
Test(cache, heavy_pressure_window_one) { run_sequence(25, 1, 60, 3, 0); }
Test(cache, pinned_units_survive) { run_sequence(80, 3, 50, 4, 20); }
/* A pin held across an insertion (the engine's guessed units while their
 * reads are in flight) keeps the unit, and unpinning makes it evictable. */
Test(cache, pin_held_across_an_insertion_then_released) {
    lf_ncache c;
    cr_assert_eq(lf__ncache_init(&c, 10, 2, 8), LF_OK);
    int32_t slots[2], scratch[8];
    const uint32_t old[2] = {1, 2}, now[2] = {3, 4};
    cr_assert_eq(lf__ncache_insert_many(&c, old, 2, 1, slots, scratch), 2);
    lf__ncache_pin(&c, lf__ncache_find(&c, 1));
    cr_assert_eq(lf__ncache_insert_many(&c, now, 2, 2, slots, scratch), 1, "one slot is free of pins");
    cr_assert(lf__ncache_find(&c, 1) >= 0 && lf__ncache_find(&c, 2) < 0 && lf__ncache_find(&c, 3) >= 0);
    lf__ncache_unpin(&c, lf__ncache_find(&c, 1));
    cr_assert_eq(c.n_pinned, 0);
    cr_assert_eq(lf__ncache_insert_many(&c, now + 1, 1, 3, slots, scratch), 1);
    cr_assert(lf__ncache_find(&c, 1) < 0 && lf__ncache_find(&c, 4) >= 0, "unpinned, the older unit was evicted");
    cr_assert(lf__ncache_check(&c));
    lf__ncache_free(&c);
}

Test(cache, zero_capacity_caches_nothing) {
    lf_ncache c;
    cr_assert_eq(lf__ncache_init(&c, 10, 0, 8), LF_OK);
    const uint32_t u[2] = {1, 2};
    int32_t slots[2], scratch[8];
    cr_assert_eq(lf__ncache_insert_many(&c, u, 2, 1, slots, scratch), 0);
    cr_assert_eq(lf__ncache_insert(&c, 3, 1), -1);
    cr_assert(lf__ncache_check(&c));
    lf__ncache_free(&c);
}

Test(cache, sizes) {
    cr_assert_eq(lf__ncache_bytes(100, 10, 64), 10 * (64 + 4 + 8 + 1) + 100 * 4);
    lf_ncache c;
    cr_assert_eq(lf__ncache_init(&c, 10, 50, 8), LF_OK);
    cr_assert_eq(c.capacity, 10, "capacity is capped at the unit count");
    lf__ncache_free(&c);
}
