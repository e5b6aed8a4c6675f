/*
 * export_c.c - bp_export_c: a network as standalone C99 (float and int8).
 */
#include "internal.h"

bp_status bp_export_c(bp_net *net, const char *dir, const bp_export_options *opt,
                      bp_error *err)
{
    (void)net, (void)dir, (void)opt;
    return bp_fail(err, BP_EUNSUPPORTED, "bp_export_c: not built yet");
}
