/* neuron_cache.h - the windowed cache of one layer's FFN units, as in the
 * paper's memory management: a preallocated slab of `capacity` slots, a
 * unit-to-slot index, expiry by moving the last live slot into the hole,
 * insertion into an evicted unit's slot or by appending. No allocation after
 * creation.
 *
 * A unit is used by a token when it is in that token's mask. The window
 * keeps the union of units used by the last `window` tokens; older units are
 * dropped. When the union outgrows the slab, the least recently used units
 * that the current token does not need are evicted. Pinned units (a hot
 * set, or hybrid mode's resident half) are never evicted. Units are called
 * neurons here, but an expert slab is a unit just the same. */
#ifndef LF_NEURON_CACHE_H
#define LF_NEURON_CACHE_H

#include "../common/lf_common.h"

typedef struct lf_ncache {
    uint32_t n_units;     /* units in the layer (n_ff) */
    uint32_t capacity;    /* slots */
    uint64_t slot_bytes;
    uint8_t *slab;        /* (capacity, slot_bytes) */
    int32_t *slot_of;     /* (n_units) slot or -1 */
    int32_t *unit_of;     /* (capacity) unit in each live slot */
    uint64_t *last_used;  /* (capacity) token that last used the slot's unit */
    uint8_t *pinned;      /* (capacity) */
    uint32_t n_live;      /* slots [0, n_live) are live */
    uint32_t n_pinned;
    uint64_t evictions;   /* over the cache's life */
    uint64_t expirations; /* units dropped by the window */
} lf_ncache;

/* Bytes lf__ncache_init will allocate. */
uint64_t lf__ncache_bytes(uint32_t n_units, uint32_t capacity, uint64_t slot_bytes);
lf_status lf__ncache_init(lf_ncache *c, uint32_t n_units, uint32_t capacity, uint64_t slot_bytes);
void lf__ncache_free(lf_ncache *c);

static inline uint8_t *lf__ncache_slot(const lf_ncache *c, int32_t slot) {
    return c->slab + (uint64_t)slot * c->slot_bytes;
}
static inline int32_t lf__ncache_find(const lf_ncache *c, uint32_t unit) { return c->slot_of[unit]; }

/* Marks a resident unit as used by `token`. */
static inline void lf__ncache_touch(lf_ncache *c, int32_t slot, uint64_t token) { c->last_used[slot] = token; }

/* Drops units not used by any of the tokens (token - window, token]; pinned
 * units stay. Returns how many were dropped. */
uint32_t lf__ncache_expire(lf_ncache *c, uint64_t token, uint32_t window);

/* Takes a slot for `unit` (not resident), evicting the least recently used
 * unit last used before `token` if the slab is full (its slot, in place).
 * Returns the slot, or -1
 * when every slot holds a unit that `token` uses or a pinned unit. The slot's
 * bytes are the caller's to fill. */
int32_t lf__ncache_insert(lf_ncache *c, uint32_t unit, uint64_t token);

/* Inserts units[0..n) (none resident) for `token`: evicts as many least
 * recently used units not used by `token` as needed, in one pass, giving
 * their slots to the first units in place, then appends. No live slot
 * moves, so reads in flight into other slots stay valid (the evicted ones
 * must not have any: pin them). Returns how many of units[] got a slot (a
 * prefix of the list); their slots are slots_out[0..ret). Scratch holds
 * 4 * capacity int32s. */
uint32_t lf__ncache_insert_many(lf_ncache *c, const uint32_t *units, uint32_t n, uint64_t token, int32_t *slots_out,
                                int32_t *scratch);

/* Removes a resident unit (its slot is reused). */
void lf__ncache_remove(lf_ncache *c, uint32_t unit);

/* Pins a resident unit; unpin lets it be evicted again. */
void lf__ncache_pin(lf_ncache *c, int32_t slot);
void lf__ncache_unpin(lf_ncache *c, int32_t slot);

/* Checks every invariant (for tests): returns false on the first violation. */
bool lf__ncache_check(const lf_ncache *c);

#endif
