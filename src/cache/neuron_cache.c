/* neuron_cache.c - slab, index, swap-delete, window expiry, LRU eviction. */
#include "neuron_cache.h"

#include <stdlib.h>

uint64_t lf__ncache_bytes(uint32_t n_units, uint32_t capacity, uint64_t slot_bytes) {
    return (uint64_t)capacity * (slot_bytes + sizeof(int32_t) + sizeof(uint64_t) + 1) +
           (uint64_t)n_units * sizeof(int32_t);
}

lf_status lf__ncache_init(lf_ncache *c, uint32_t n_units, uint32_t capacity, uint64_t slot_bytes) {
    memset(c, 0, sizeof *c);
    if (capacity > n_units) capacity = n_units;
    c->n_units = n_units;
    c->capacity = capacity;
    c->slot_bytes = slot_bytes;
    /* slots of whole pages are page-aligned: reads land in them directly */
    c->slab = capacity ? lf__alloc_aligned((uint64_t)capacity * slot_bytes, slot_bytes % 4096 ? 64 : 4096) : NULL;
    c->slot_of = malloc((n_units ? n_units : 1) * sizeof *c->slot_of);
    c->unit_of = malloc((capacity ? capacity : 1) * sizeof *c->unit_of);
    c->last_used = malloc((capacity ? capacity : 1) * sizeof *c->last_used);
    c->pinned = calloc(capacity ? capacity : 1, 1);
    if ((capacity && !c->slab) || !c->slot_of || !c->unit_of || !c->last_used || !c->pinned) {
        lf__ncache_free(c);
        return LF_E_NOMEM;
    }
    for (uint32_t i = 0; i < n_units; i++) c->slot_of[i] = -1;
    return LF_OK;
}

void lf__ncache_free(lf_ncache *c) {
    lf__free_aligned(c->slab);
    free(c->slot_of);
    free(c->unit_of);
    free(c->last_used);
    free(c->pinned);
    memset(c, 0, sizeof *c);
}

/* Deletes live slot s by moving the last live slot into it. */
static void delete_slot(lf_ncache *c, int32_t s) {
    const int32_t last = (int32_t)c->n_live - 1;
    c->slot_of[c->unit_of[s]] = -1;
    if (s != last) {
        memcpy(lf__ncache_slot(c, s), lf__ncache_slot(c, last), c->slot_bytes);
        c->unit_of[s] = c->unit_of[last];
        c->last_used[s] = c->last_used[last];
        c->pinned[s] = c->pinned[last];
        c->slot_of[c->unit_of[s]] = s;
    }
    c->n_live--;
}

uint32_t lf__ncache_expire(lf_ncache *c, uint64_t token, uint32_t window) {
    uint32_t dropped = 0;
    /* walk backwards: a moved-in slot has already been looked at */
    for (int32_t s = (int32_t)c->n_live - 1; s >= 0; s--) {
        if (c->pinned[s] || c->last_used[s] + window > token) continue;
        delete_slot(c, s);
        dropped++;
    }
    c->expirations += dropped;
    return dropped;
}

/* Gives slot s (live, or the next free one) to unit. */
static void place(lf_ncache *c, int32_t s, uint32_t unit, uint64_t token) {
    c->unit_of[s] = (int32_t)unit;
    c->slot_of[unit] = s;
    c->last_used[s] = token;
    c->pinned[s] = 0;
}

/* Evicts the unit in live slot s, whose slot the caller gives to another:
 * no bytes move, so the other slots' reads in flight are undisturbed. */
static void evict_in_place(lf_ncache *c, int32_t s) {
    c->slot_of[c->unit_of[s]] = -1;
    c->evictions++;
}

int32_t lf__ncache_insert(lf_ncache *c, uint32_t unit, uint64_t token) {
    if (c->capacity == 0 || c->slot_of[unit] >= 0) return -1;
    if (c->n_live < c->capacity) {
        const int32_t s = (int32_t)c->n_live++;
        place(c, s, unit, token);
        return s;
    }
    int32_t victim = -1;
    for (uint32_t s = 0; s < c->n_live; s++) {
        if (c->pinned[s] || c->last_used[s] >= token) continue;
        if (victim < 0 || c->last_used[s] < c->last_used[victim]) victim = (int32_t)s;
    }
    if (victim < 0) return -1;
    evict_in_place(c, victim);
    place(c, victim, unit, token);
    return victim;
}

typedef struct lru_key {
    uint64_t last_used;
    int32_t unit;
} lru_key;

static int lru_cmp(const void *a, const void *b) {
    const lru_key *x = a, *y = b;
    return x->last_used < y->last_used ? -1 : x->last_used > y->last_used ? 1 : (x->unit > y->unit) - (x->unit < y->unit);
}

uint32_t lf__ncache_insert_many(lf_ncache *c, const uint32_t *units, uint32_t n, uint64_t token, int32_t *slots_out,
                                int32_t *scratch) {
    if (c->capacity == 0 || n == 0) return 0;
    const uint32_t free_slots = c->capacity - c->n_live;
    uint32_t want = 0; /* units that take an evicted unit's slot */
    if (n > free_slots) {
        /* evictable: not pinned and not used by this token; oldest first */
        lru_key *keys = (lru_key *)(void *)scratch; /* scratch: capacity * 3 int32s */
        uint32_t k = 0;
        for (uint32_t s = 0; s < c->n_live; s++)
            if (!c->pinned[s] && c->last_used[s] < token) keys[k++] = (lru_key){c->last_used[s], c->unit_of[s]};
        want = LF_MIN(n - free_slots, k);
        if (want < k) qsort(keys, k, sizeof *keys, lru_cmp);
        /* the victims' slots go to the first units as they are: nothing is
         * copied (a slot is the size of a bundle record) */
        for (uint32_t i = 0; i < want; i++) {
            const int32_t s = c->slot_of[keys[i].unit];
            evict_in_place(c, s);
            place(c, s, units[i], token);
            slots_out[i] = s;
        }
    }
    const uint32_t m = want + LF_MIN(n - want, free_slots);
    for (uint32_t i = want; i < m; i++) {
        const int32_t s = (int32_t)c->n_live++;
        place(c, s, units[i], token);
        slots_out[i] = s;
    }
    return m;
}

void lf__ncache_unpin(lf_ncache *c, int32_t slot) {
    if (c->pinned[slot]) c->n_pinned--;
    c->pinned[slot] = 0;
}

void lf__ncache_remove(lf_ncache *c, uint32_t unit) {
    const int32_t s = c->slot_of[unit];
    if (s >= 0) {
        if (c->pinned[s]) c->n_pinned--;
        delete_slot(c, s);
    }
}

void lf__ncache_pin(lf_ncache *c, int32_t slot) {
    if (!c->pinned[slot]) c->n_pinned++;
    c->pinned[slot] = 1;
}

bool lf__ncache_check(const lf_ncache *c) {
    if (c->n_live > c->capacity) return false;
    uint32_t resident = 0, pinned = 0;
    for (uint32_t u = 0; u < c->n_units; u++) {
        const int32_t s = c->slot_of[u];
        if (s < 0) continue;
        if ((uint32_t)s >= c->n_live || c->unit_of[s] != (int32_t)u) return false;
        resident++;
    }
    for (uint32_t s = 0; s < c->n_live; s++) {
        if (c->unit_of[s] < 0 || (uint32_t)c->unit_of[s] >= c->n_units) return false;
        if (c->slot_of[c->unit_of[s]] != (int32_t)s) return false;
        pinned += c->pinned[s];
    }
    return resident == c->n_live && pinned == c->n_pinned;
}
