/*
 * main.c - `backprop`: dispatch to the commands.
 */
#include "cli.h"

#include <string.h>

static int dispatch(int argc, char **argv);

int main(int argc, char **argv)
{
    cli_short_waits(argc, argv);
    int st = dispatch(argc, argv);
    cli_inputs_free();
    return st;
}

static int dispatch(int argc, char **argv)
{
    if (argc < 2)
        return cli_fail(CLI_USAGE, "missing command: train, eval, predict, generate, info, "
                        "gradcheck or export (see 'backprop --help')");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (argc > 2 && strcmp(cmd, "help") == 0) {
            char *args[] = {argv[2], "--help", NULL};
            if (!strcmp(argv[2], "train")) return cmd_train(2, args);
            if (!strcmp(argv[2], "eval")) return cmd_eval(2, args);
            if (!strcmp(argv[2], "predict")) return cmd_predict(2, args);
            if (!strcmp(argv[2], "info")) return cmd_info(2, args);
            if (!strcmp(argv[2], "generate")) return cmd_generate(2, args);
            if (!strcmp(argv[2], "gradcheck")) return cmd_gradcheck(2, args);
            if (!strcmp(argv[2], "export")) return cmd_export(2, args);
        }
        fputs(usage_main, stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V") || !strcmp(cmd, "version")) {
        printf("backprop %s (libbackprop %s)\n", BP_VERSION_STRING, bp_version());
        return CLI_OK;
    }
    /* Commands see argv from their own name on. */
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "predict")) return cmd_predict(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "gradcheck")) return cmd_gradcheck(argc - 1, argv + 1);
    if (!strcmp(cmd, "export")) return cmd_export(argc - 1, argv + 1);
    if (cmd[0] == '-')
        return cli_fail(CLI_USAGE, "unknown option '%s' (see 'backprop --help')", cmd);
    return cli_fail(CLI_USAGE, "unknown command '%s' (commands: train, eval, predict, generate, "
                    "info, gradcheck, export; see 'backprop --help')", cmd);
}
