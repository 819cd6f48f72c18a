/* wardenctl - the warden command-line client. See docs/cli.md. */
#include <signal.h>
#include <stdio.h>

#include "cli/args.h"
#include "cli/cmd.h"
#include "grpc/grpc.h"

int main(int argc, char **argv)
{
    static struct cli_args args; /* large: bounded buffers, not the stack */
    struct werr e;
    /* A server that hangs up mid-write must give an error, not kill us. */
    signal(SIGPIPE, SIG_IGN);

    if (cli_args_parse(argc, argv, &args, &e) != 0) {
        fprintf(stderr, "wardenctl: %s\n%s", e.msg,
                "Run `wardenctl --help` for usage.\n");
        return CLI_EXIT_USAGE;
    }
    switch (args.cmd) {
    case CLI_CMD_HELP:
        fputs(cli_usage_text, stdout);
        return 0;
    case CLI_CMD_VERSION:
        puts("wardenctl 0.1.0");
        return 0;
    default:
        break;
    }
    int status = cli_cmd_run(&args, stdout, stderr);
    if (cli_cmd_offline(args.cmd)) {
        /* Offline commands return their documented exit code (cli/offline.h). */
        if (fflush(stdout) != 0 && status == 0) {
            fprintf(stderr, "wardenctl: cannot write output\n");
            return 74; /* EX_IOERR */
        }
        return status;
    }
    if (fflush(stdout) != 0 && status == 0) {
        fprintf(stderr, "wardenctl: cannot write output\n");
        return 74; /* EX_IOERR */
    }
    return cli_exit_code(status);
}
