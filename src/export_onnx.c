/*
 * export_onnx.c - bp_export_onnx: a network as an ONNX model (opset 13).
 */
#include "internal.h"

bp_status bp_export_onnx(bp_net *net, const char *path, const bp_export_options *opt,
                         bp_error *err)
{
    (void)net, (void)path, (void)opt;
    return bp_fail(err, BP_EUNSUPPORTED, "bp_export_onnx: not built yet");
}
