/* count_allocs.h - a malloc interposer for the tests that show a step
 * allocates nothing (test_noalloc.c, test_conv_kernels.c). Include it in
 * one test file only (it defines malloc and its kin).
 *
 * It forwards malloc, calloc, realloc, aligned_alloc and posix_memalign to
 * glibc's __libc_* functions and, while `counting` is set, attributes each
 * call by its return address (dladdr) to the object that made it: the
 * library under test is linked statically into the test executable, so
 * calls from the executable are libbackprop's (`allocations`); calls made
 * inside shared libraries (oneDNN, OpenMP) are counted apart (`foreign`)
 * and printed by the tests, not hidden. count_allocs_start() finds the
 * executable and checks, as a CHECK, that a malloc made from it is seen.
 * Not for AddressSanitizer builds, which own malloc. */
#ifndef BP_COUNT_ALLOCS_H
#define BP_COUNT_ALLOCS_H

#include <dlfcn.h>
#include <stdlib.h>

#include "check.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static volatile int counting;
static volatile long allocations; /* made by this executable (libbackprop) */
static volatile long foreign;     /* made inside shared libraries */
static void *self_base;

static void count(void *caller)
{
    Dl_info info;
    if (dladdr(caller, &info) && info.dli_fbase == self_base) allocations++;
    else foreign++;
}

void *malloc(size_t n)
{
    if (counting) count(__builtin_return_address(0));
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    if (counting) count(__builtin_return_address(0));
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    if (counting) count(__builtin_return_address(0));
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t al, size_t n)
{
    if (counting) count(__builtin_return_address(0));
    return __libc_memalign(al, n);
}
int posix_memalign(void **p, size_t al, size_t n)
{
    if (counting) count(__builtin_return_address(0));
    *p = __libc_memalign(al, n);
    return *p ? 0 : 12;
}

/* Find this executable (any of its functions: `self`), and check that the
 * counter sees a malloc made from here; counts start at 0 afterwards. */
static void count_allocs_start(void *self)
{
    Dl_info info;
    CHECK(dladdr(self, &info) != 0, "dladdr finds this executable");
    self_base = info.dli_fbase;
    counting = 1;
    void *probe = malloc(16);
    counting = 0;
    free(probe);
    CHECK(allocations == 1, "interposer counts this executable's malloc (%ld)", allocations);
    allocations = foreign = 0;
}

#endif
