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

/* Audit.Read page size asked for (the server caps pages at 1000 entries,
 * docs/audit.md); export pages through the range with it. */
#define CLI_AUDIT_PAGE_MAX 1000u
/* enroll-batch input: longest line (a device with 32 maximal labels and a
 * P-256 key in hex fits in ~16 KiB), and most lines read (beyond it, split
 * the file: a person should see progress between files). */
#define CLI_BATCH_LINE_MAX (32u << 10)
#define CLI_BATCH_LINES_MAX 1000000u
/* enroll-batch string fields (model, firmware, gateway): the server checks
 * its own bounds; this only sizes our buffers. */
#define CLI_BATCH_STR_MAX 256
/* telemetry submit payload: FRESH_PAYLOAD_MAX, it goes through Raft. */
#define CLI_TELEMETRY_PAYLOAD_MAX ((size_t)64 << 10)

/* Run the command in a (already parsed). */
int cli_cmd_run(const struct cli_args *a, FILE *out, FILE *err);

#endif
