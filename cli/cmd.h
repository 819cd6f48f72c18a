/* cmd.h - wardenctl's commands: build the request from parsed arguments,
 * make the call through cli/client.h, print the result through cli/fmt.h.
 *
 * Each cli_cmd_* returns the gRPC status that decides the exit code
 * (cli_exit_code()); errors are printed to err as
 * "wardenctl: STATUS_NAME: message". Output goes to out. */
#ifndef WARDEN_CLI_CMD_H
#define WARDEN_CLI_CMD_H

#include <stdio.h>

#include "args.h"
#include "client.h"

/* Pages device list --all follows before it stops: with the server's max
 * page size (1000) that is 100,000 devices, beyond which a paged query or a
 * filter is the better tool. Stopping exits RESOURCE_EXHAUSTED after
 * printing what was read and the token to continue from. */
#define CLI_LIST_MAX_PAGES 100u

/* Run the command in a (already parsed). */
int cli_cmd_run(const struct cli_args *a, FILE *out, FILE *err);

#endif
