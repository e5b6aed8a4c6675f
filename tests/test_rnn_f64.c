#define BP_DOUBLE_TWIN 1
#include "test_rnn.c"
