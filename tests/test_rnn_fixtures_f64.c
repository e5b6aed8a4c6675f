/* test_rnn_fixtures_f64.c - the PyTorch recurrent fixture test (see
 * test_rnn_fixtures.c) linked against the double-precision build
 * (BP_DOUBLE, the reference loops), where every element of every final
 * tensor, every loss and every logit must match torch's float64 run to
 * 1e-9. */
#include "test_rnn_fixtures.c"
