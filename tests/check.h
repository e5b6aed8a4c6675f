/* check.h - a tiny assertion helper for the test binaries.
 * CHECK(cond, fmt, ...) records a failure with file:line and a message and
 * carries on; check_done() prints "N passed, N failed" and returns the exit
 * status (non-zero if anything failed). */
#ifndef BP_CHECK_H
#define BP_CHECK_H

#include <stdio.h>

extern int check_passed, check_failed;
void check_record(int ok, const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
int check_done(const char *name);

#define CHECK(cond, ...) check_record(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
/* Compare doubles with a relative tolerance (absolute below 1). */
#define CHECK_CLOSE(a, b, tol, what)                                               \
    do {                                                                           \
        double ca_ = (a), cb_ = (b);                                               \
        double cd_ = ca_ > cb_ ? ca_ - cb_ : cb_ - ca_;                            \
        double cs_ = (cb_ < 0 ? -cb_ : cb_);                                       \
        if (cs_ < 1) cs_ = 1;                                                      \
        CHECK(cd_ <= (tol) * cs_, "%s: %.9g vs %.9g (tol %g)", what, ca_, cb_,    \
              (double)(tol));                                                      \
    } while (0)

#endif
