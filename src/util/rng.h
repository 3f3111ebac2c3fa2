/* A small seeded PRNG (xoshiro256**), for jitter, sampling and test data.
 * One rng_t per thread; nothing here is shared. */
#ifndef FEEDLINE_RNG_H
#define FEEDLINE_RNG_H

#include <stdint.h>

typedef struct rng { uint64_t s[4]; } rng_t;

void rng_seed(rng_t *r, uint64_t seed);
uint64_t rng_next(rng_t *r);
/* Uniform in [0, n); n > 0. */
uint64_t rng_below(rng_t *r, uint64_t n);
/* Uniform in [0, 1). */
double rng_double(rng_t *r);

#endif
