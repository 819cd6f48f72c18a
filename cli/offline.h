/* offline.h - wardenctl commands that never talk to a server:
 * `audit verify FILE` and `verify-command`. They need no TLS files and
 * exit with their own codes (docs/cli.md):
 *
 *   audit verify    0 intact, 1 broken chain, 2 malformed or unreadable file
 *   verify-command  0 accepted, 1 rejected (bad signature, wrong device,
 *                   stale epoch, replay, malformed envelope),
 *                   2 unreadable --envelope-file / --pubkey-file
 *   both            64 (EX_USAGE) for a bad flag value */
#ifndef WARDEN_CLI_OFFLINE_H
#define WARDEN_CLI_OFFLINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/err.h"
#include "args.h"

#define CLI_OFFLINE_REJECTED 1
#define CLI_OFFLINE_BADFILE 2

/* Run a->cmd (cli_cmd_offline() must be true). Returns the exit code. */
int cli_offline_run(const struct cli_args *a, FILE *out, FILE *err);

/* Read a whole file of at most cap bytes into buf. 0 with *len set,
 * WERR_IO (cannot open/read) or WERR_LIMIT (larger than cap). */
int cli_file_read(const char *path, uint8_t *buf, size_t cap, size_t *len,
                  struct werr *e);

#endif
