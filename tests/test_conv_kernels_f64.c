/* test_conv_kernels_f64.c - test_conv_kernels.c against the double build
 * (BP_DOUBLE): the reference backward against central differences, < 1e-6. */
#include "test_conv_kernels.c"
