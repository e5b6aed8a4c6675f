/* util.c - status names, error formatting, allocation, random numbers. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *bp_version(void) { return BP_VERSION_STRING; }

const char *bp_status_name(bp_status s)
{
    switch (s) {
    case BP_OK: return "BP_OK";
    case BP_ENOMEM: return "BP_ENOMEM";
    case BP_EINVAL: return "BP_EINVAL";
    case BP_ESHAPE: return "BP_ESHAPE";
    case BP_ESPEC: return "BP_ESPEC";
    case BP_EIO: return "BP_EIO";
    case BP_EFORMAT: return "BP_EFORMAT";
    case BP_ENONFINITE: return "BP_ENONFINITE";
    case BP_ESTOPPED: return "BP_ESTOPPED";
    case BP_EUNSUPPORTED: return "BP_EUNSUPPORTED";
    case BP_ECOMM: return "BP_ECOMM";
    }
    return "BP_E?";
}

bp_status bp_fail(bp_error *err, bp_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

void *bp_alloc_array(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size) return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *bp_alloc_aligned(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size) return NULL;
    size_t bytes = count * size;
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0) bytes = 64;
    void *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

char *bp_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* xoshiro256** (Blackman & Vigna), seeded through splitmix64. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void bp_rng_seed(bp_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t bp_rng_next(bp_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double bp_rng_uniform(bp_rng *r) { return (double)(bp_rng_next(r) >> 11) * 0x1.0p-53; }

double bp_rng_normal(bp_rng *r)
{
    double u1 = bp_rng_uniform(r), u2 = bp_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t bp_rng_below(bp_rng *r, uint64_t n)
{
    /* Lemire's rejection keeps the result unbiased. */
    uint64_t limit = -n % n;
    for (;;) {
        uint64_t x = bp_rng_next(r);
        if (x >= limit) return x % n;
    }
}
