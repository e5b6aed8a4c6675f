#include "test_gradcheck.c"
