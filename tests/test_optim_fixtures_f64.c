/* test_optim_fixtures_f64.c - the PyTorch fixture test (see
 * test_optim_fixtures.c) linked against the double-precision build
 * (BP_DOUBLE), where every weight must match torch's float64 run to 1e-9. */
#include "test_optim_fixtures.c"
