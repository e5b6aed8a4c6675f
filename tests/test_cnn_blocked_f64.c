/* The double build: no oneDNN primitives, so no slot and every layer plain
 * (see test_cnn_blocked.c). */
#include "test_cnn_blocked.c"
