/* top.h - `wardenctl top`: the pure half. Rows of Cluster.Status samples in,
 * exact text out; parsers for the inputs top reads (cluster.json, a
 * Prometheus text page, a metrics URL). No sockets, no clock: the command
 * (cli/cmd_top.c) samples, stamps each row with its monotonic time, and
 * hands the previous frame in for rates.
 *
 * Frame layout (docs/cli.md, `top`): one header line, one column line, one
 * line per endpoint in the order given. Columns:
 *   ID STATE TERM LEADER COMMIT APPLIED LAG OFFSET PROP/s FLUSH/s DENIALS
 * LAG is the leader's commit index minus this node's applied index (the
 * leader being the row that says "leader" with the highest term); OFFSET is
 * the node's wall clock minus the leader's; PROP/s and FLUSH/s are the
 * change of the proposal and group-commit counters since the previous frame,
 * per second, with one decimal; DENIALS is the sum of the authorization
 * denial counters of the node's /metrics page. A value we cannot know is
 * "-" (first frame for rates, a counter that went backwards after a
 * restart, no leader, no metrics). */
#ifndef WARDEN_CLI_TOP_H
#define WARDEN_CLI_TOP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/err.h"
#include "args.h"

/* Error text kept per unreachable row (one terminal line). */
#define CLI_TOP_ERROR_MAX 127
/* A metrics page larger than this is refused: the page is a few hundred
 * lines; a megabyte means the URL points somewhere else. */
#define CLI_TOP_METRICS_MAX ((size_t)1 << 20)
/* cluster.json larger than this is refused (it lists at most a handful of
 * nodes). */
#define CLI_TOP_CLUSTER_JSON_MAX ((size_t)64 << 10)
/* Parts of a metrics URL. */
#define CLI_TOP_HOST_MAX 255
#define CLI_TOP_PATH_MAX 255

struct cli_top_row {
    char endpoint[CLI_ENDPOINT_LEN_MAX + 1];
    int ok;                              /* Status answered */
    char error[CLI_TOP_ERROR_MAX + 1];   /* when !ok: "UNAVAILABLE: ..." */
    uint32_t id;
    char state[16];
    uint64_t term;
    uint32_t leader_id;
    uint64_t commit, applied;
    int offset_known;
    int64_t offset_ms;
    uint64_t proposals, flushes;
    int has_denials;
    uint64_t denials;
    uint64_t at_ms;                      /* monotonic time of the sample */
};

/* Per-second rate of a counter as "%u.%u" (one decimal, truncated), or "-"
 * when unknowable: no previous sample (has_prev 0), elapsed_ms 0, or cur <
 * prev (the node restarted). buf holds at least 24 bytes. */
void cli_top_rate(uint64_t cur, uint64_t prev, int has_prev, uint64_t elapsed_ms,
                  char *buf, size_t cap);

/* Index of the leader row (state "leader", ok, highest term), or -1. */
int cli_top_leader(const struct cli_top_row *rows, size_t n);

/* Write one frame: rows[0..n) now, prev (NULL on the first frame) the
 * previous frame of the same endpoints in the same order. seq is the frame
 * number (1-based), interval_ms the refresh period. No ANSI codes: the
 * caller clears the screen before it when refreshing in place. */
void cli_top_render(FILE *f, const struct cli_top_row *rows,
                    const struct cli_top_row *prev, size_t n, unsigned seq,
                    uint64_t interval_ms);

/* The ANSI sequence that homes the cursor and clears the screen. */
#define CLI_TOP_CLEAR "\033[H\033[2J"

/* The client endpoints of a local-cluster.sh cluster.json
 * ({"nodes": [{"client": "HOST:PORT", ...}, ...], ...}), in file order.
 * Returns 0 with *n >= 1, WERR_INVALID (not that shape, bad endpoint) or
 * WERR_LIMIT (more than cap nodes). */
int cli_top_cluster_json(const char *text, size_t len,
                         char (*out)[CLI_ENDPOINT_LEN_MAX + 1], size_t cap,
                         size_t *n, struct werr *e);

/* Sum of every sample in a Prometheus text page (len bytes) whose metric
 * name starts with "warden_" and contains "denial" and ends with "_total"
 * (authorization denial counters, whatever their labels). Comments and
 * other metrics are skipped; a sample value must be a non-negative integer
 * (a counter). Returns 1 when at least one sample matched (*sum set), 0
 * when none did. */
int cli_top_metrics_denials(const char *text, size_t len, uint64_t *sum);

/* Split "http://HOST:PORT[/PATH]" (PATH defaults to /metrics). Only plain
 * http: the metrics listener is loopback by default and has no TLS.
 * Returns 0 or WERR_INVALID. */
int cli_top_url_parse(const char *url, char host[CLI_TOP_HOST_MAX + 1],
                      char port[8], char path[CLI_TOP_PATH_MAX + 1]);

/* Split a comma-separated list of URLs (borrowed; each copied) into out.
 * Returns 0, WERR_INVALID or WERR_LIMIT. */
int cli_top_url_list(const char *list, char (*out)[CLI_TOP_PATH_MAX + 1], size_t cap,
                     size_t *n);

#endif
