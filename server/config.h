/* config.h - wardend's settings from four sources, in precedence order:
 *   command-line flags > environment (WARDEN_<KEY>) > config file > defaults.
 *
 * One key table serves all four: the file key `max_conns`, the environment
 * variable WARDEN_MAX_CONNS and the flag --max-conns are the same setting,
 * checked by the same parser with the same bounds, so a value that a flag
 * refuses is refused in a file too (docs/configuration.md).
 *
 * File format (strict, like an etcd or Vault config: a typo must not be
 * silently ignored):
 *   - one `key = value` per line; blanks around key and value are trimmed;
 *   - a line whose first non-blank character is '#' is a comment, as is a
 *     blank line; there are no trailing comments (a value may contain '#');
 *   - an unknown key, a key given twice, a bad value, a line without '=',
 *     a line longer than CONFIG_LINE_MAX or a NUL byte is an error naming
 *     FILE:LINE;
 *   - booleans are true/false, yes/no, on/off, 1/0.
 *
 * Pure: the parser reads a buffer and touches nothing else; config_load_file
 * is the only function that does I/O (one bounded read). Strings are copied
 * into struct config, so it owns every value it hands out; node_config's
 * borrowed strings point into it and it must outlive the node. */
#ifndef WARDEN_SERVER_CONFIG_H
#define WARDEN_SERVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"
#include "../common/log.h"
#include "node.h"

/* Largest config file we read: a real one is well under 4 KiB; the cap
 * keeps a wrong path (a log, a device) from being slurped whole. */
#define CONFIG_FILE_MAX ((size_t)64 << 10)
/* Longest line, and so longest value: a --peers list of 16 members is
 * under 1.5 KiB. */
#define CONFIG_LINE_MAX 2048
/* Room for one string value (paths: NODE_PATH_MAX). */
#define CONFIG_VALUE_MAX CONFIG_LINE_MAX
/* Environment variable prefix. */
#define CONFIG_ENV_PREFIX "WARDEN_"

/* Where a setting came from (for the start-up log and the tests). */
enum config_source {
    CONFIG_SRC_DEFAULT = 0,
    CONFIG_SRC_FILE,
    CONFIG_SRC_ENV,
    CONFIG_SRC_FLAG,
};

/* Keys. CONFIG_K_N is the count. Order is the documentation order. */
enum config_key {
    CONFIG_K_DEV,
    CONFIG_K_DATA_DIR,
    CONFIG_K_LISTEN,
    CONFIG_K_NODE_ID,
    CONFIG_K_PEERS,
    CONFIG_K_JOIN,
    CONFIG_K_PEER_LISTEN,
    CONFIG_K_ELECTION_TIMEOUT_MS,
    CONFIG_K_SNAPSHOT_THRESHOLD,
    CONFIG_K_SNAPSHOT_TRAILING,
    CONFIG_K_TLS_CERT,
    CONFIG_K_TLS_KEY,
    CONFIG_K_TLS_CA,
    CONFIG_K_LOG_LEVEL,
    CONFIG_K_MAX_MSG_BYTES,
    CONFIG_K_SHUTDOWN_GRACE_MS,
    CONFIG_K_MAX_CONNS,
    CONFIG_K_HANDSHAKE_TIMEOUT_MS,
    CONFIG_K_IDLE_TIMEOUT_MS,
    CONFIG_K_METRICS_LISTEN,
    CONFIG_K_RATE_LIMIT_RPS,
    CONFIG_K_RATE_LIMIT_BURST,
    CONFIG_K_MAX_INFLIGHT,
    CONFIG_K_MAX_WATCHERS,
    CONFIG_K_N
};

struct config {
    struct node_config node;          /* strings point into str[] */
    enum wlog_level log_level;
    enum config_source src[CONFIG_K_N];
    unsigned char in_file[CONFIG_K_N]; /* duplicate detection per file */
    char str[CONFIG_K_N][CONFIG_VALUE_MAX];
};

/* Defaults (node_config_defaults, log level info). */
void config_init(struct config *c);

/* Key name ("max_conns") and flag name ("max-conns") of k. */
const char *config_key_name(enum config_key k);
/* Look a key up by its file name (underscores) or flag name (dashes).
 * Returns the key or -1. */
int config_key_find(const char *name, size_t len);
/* 1 for keys that take no value on the command line (--dev, --join). */
int config_key_is_bool(enum config_key k);

/* Set k from text, validated with the same bounds as the flag. Copies
 * value. Returns 0 or WERR_CONFIG (e names the key, the value and the
 * expected range; the caller wraps it with where it came from). */
int config_set(struct config *c, enum config_key k, const char *value,
               enum config_source src, struct werr *e);

/* Parse a config file's text (need not be NUL-terminated). name is used in
 * messages ("NAME:LINE: ..."). Stops at the first error: WERR_CONFIG. */
int config_parse_buf(struct config *c, const char *name, const char *buf,
                     size_t len, struct werr *e);
/* Read path (at most CONFIG_FILE_MAX bytes) and parse it. WERR_CONFIG for
 * a missing/unreadable/oversized file or a parse error. */
int config_load_file(struct config *c, const char *path, struct werr *e);

/* Apply WARDEN_<KEY> variables through getenv_fn (getenv in wardend; a
 * table in the tests). An empty variable counts as unset. WERR_CONFIG
 * names the variable. */
typedef const char *(*config_getenv_fn)(const char *name, void *arg);
int config_apply_env(struct config *c, config_getenv_fn getenv_fn, void *arg,
                     struct werr *e);

const char *config_source_name(enum config_source s);

#endif
