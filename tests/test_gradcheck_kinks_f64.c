#include "test_gradcheck_kinks.c"
