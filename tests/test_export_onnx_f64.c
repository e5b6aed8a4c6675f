/*
 * test_export_onnx_f64.c - bp_export_onnx in the double build: ONNX models
 * hold float32, so it returns BP_EUNSUPPORTED and writes nothing (after
 * the argument checks, which are the float build's: BP_EINVAL for NULL).
 */
#include "backprop.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
    char dir[] = "/tmp/bp_onnx64_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    bp_net *net = NULL;
    bp_error err = {0};
    CHECK(bp_net_create(&net, 3, "dense(4) relu dense(2)", 1, &err) == BP_OK, "create: %s",
          err.message);
    bp_export_options opt;
    memset(&opt, 0, sizeof opt);
    CHECK(bp_export_onnx(NULL, path, &opt, &err) == BP_EINVAL, "NULL net: BP_EINVAL");
    bp_status s = bp_export_onnx(net, path, &opt, &err);
    struct stat sb;
    CHECK(s == BP_EUNSUPPORTED && strstr(err.message, "float32") && stat(path, &sb) != 0,
          "double build: %s (%s), nothing written", bp_status_name(s), err.message);
    bp_net_free(net);
    rmdir(dir);
    return check_done("test_export_onnx_f64");
}
