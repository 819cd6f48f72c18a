/* config.c - settings from flags, environment and a config file (config.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admission.h"
#include "cluster_cfg.h"

/* Bounds on numeric settings: keep operators from configuring something the
 * process cannot honour (a 0-byte message cap, a week-long drain). */
#define MAX_MSG_BYTES_MIN ((uint64_t)1024)
#define MAX_MSG_BYTES_MAX ((uint64_t)64 << 20) /* nghttp2 windows and memory */
#define SHUTDOWN_GRACE_MS_MAX 600000u
#define TIMEOUT_MS_MAX 86400000u
#define MAX_CONNS_MAX 65536u
/* Raft election timeout: below 100 ms the 100 ms heartbeat cannot fit;
 * above a minute a dead leader goes unnoticed too long. */
#define ELECTION_MS_MIN 200u
#define ELECTION_MS_MAX 60000u

enum ktype { T_BOOL, T_STR, T_U64, T_ID, T_LOG };

struct kdef {
    const char *name;   /* file key; the flag is the same with '-' */
    enum ktype type;
    uint64_t min, max;  /* T_U64 */
};

static const struct kdef keys[CONFIG_K_N] = {
    [CONFIG_K_DEV] = {"dev", T_BOOL, 0, 0},
    [CONFIG_K_DATA_DIR] = {"data_dir", T_STR, 0, 0},
    [CONFIG_K_LISTEN] = {"listen", T_STR, 0, 0},
    [CONFIG_K_NODE_ID] = {"node_id", T_ID, 0, 0},
    [CONFIG_K_PEERS] = {"peers", T_STR, 0, 0},
    [CONFIG_K_JOIN] = {"join", T_BOOL, 0, 0},
    [CONFIG_K_PEER_LISTEN] = {"peer_listen", T_STR, 0, 0},
    [CONFIG_K_ELECTION_TIMEOUT_MS] = {"election_timeout_ms", T_U64, ELECTION_MS_MIN,
                                      ELECTION_MS_MAX},
    /* Bounds and why: NODE_SNAPSHOT_* in node.h. */
    [CONFIG_K_SNAPSHOT_THRESHOLD] = {"snapshot_threshold", T_U64,
                                     NODE_SNAPSHOT_THRESHOLD_MIN,
                                     NODE_SNAPSHOT_THRESHOLD_MAX},
    [CONFIG_K_SNAPSHOT_TRAILING] = {"snapshot_trailing", T_U64,
                                    NODE_SNAPSHOT_TRAILING_MIN,
                                    NODE_SNAPSHOT_TRAILING_MAX},
    [CONFIG_K_TLS_CERT] = {"tls_cert", T_STR, 0, 0},
    [CONFIG_K_TLS_KEY] = {"tls_key", T_STR, 0, 0},
    [CONFIG_K_TLS_CA] = {"tls_ca", T_STR, 0, 0},
    [CONFIG_K_LOG_LEVEL] = {"log_level", T_LOG, 0, 0},
    [CONFIG_K_MAX_MSG_BYTES] = {"max_msg_bytes", T_U64, MAX_MSG_BYTES_MIN,
                                MAX_MSG_BYTES_MAX},
    [CONFIG_K_SHUTDOWN_GRACE_MS] = {"shutdown_grace_ms", T_U64, 0, SHUTDOWN_GRACE_MS_MAX},
    [CONFIG_K_MAX_CONNS] = {"max_conns", T_U64, 1, MAX_CONNS_MAX},
    [CONFIG_K_HANDSHAKE_TIMEOUT_MS] = {"handshake_timeout_ms", T_U64, 1, TIMEOUT_MS_MAX},
    [CONFIG_K_IDLE_TIMEOUT_MS] = {"idle_timeout_ms", T_U64, 1, TIMEOUT_MS_MAX},
    [CONFIG_K_METRICS_LISTEN] = {"metrics_listen", T_STR, 0, 0},
    [CONFIG_K_RATE_LIMIT_RPS] = {"rate_limit_rps", T_U64, 0, ADMISSION_RATE_MAX},
    [CONFIG_K_RATE_LIMIT_BURST] = {"rate_limit_burst", T_U64, 1, ADMISSION_BURST_MAX},
    [CONFIG_K_MAX_INFLIGHT] = {"max_inflight", T_U64, 1, ADMISSION_INFLIGHT_MAX},
    /* Bounds and memory per watcher: SVC_ACCESS_WATCH_MAX_* in svc.h. */
    [CONFIG_K_MAX_WATCHERS] = {"max_watchers", T_U64, 1, SVC_ACCESS_WATCH_MAX_HARD},
};

void config_init(struct config *c)
{
    memset(c, 0, sizeof *c);
    node_config_defaults(&c->node);
    c->log_level = WLOG_INFO;
}

const char *config_key_name(enum config_key k)
{
    return (unsigned)k < CONFIG_K_N ? keys[k].name : "?";
}

int config_key_is_bool(enum config_key k)
{
    return (unsigned)k < CONFIG_K_N && keys[k].type == T_BOOL;
}

const char *config_source_name(enum config_source s)
{
    switch (s) {
    case CONFIG_SRC_FILE: return "file";
    case CONFIG_SRC_ENV: return "env";
    case CONFIG_SRC_FLAG: return "flag";
    default: return "default";
    }
}

int config_key_find(const char *name, size_t len)
{
    for (int k = 0; k < CONFIG_K_N; k++) {
        const char *kn = keys[k].name;
        if (strlen(kn) != len) {
            continue;
        }
        size_t i = 0;
        for (; i < len; i++) {
            char ch = name[i] == '-' ? '_' : name[i];
            if (ch != kn[i]) {
                break;
            }
        }
        if (i == len) {
            return k;
        }
    }
    return -1;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    if (s[0] < '0' || s[0] > '9') {
        return -1;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

int config_set(struct config *c, enum config_key k, const char *value,
               enum config_source src, struct werr *e)
{
    if ((unsigned)k >= CONFIG_K_N) {
        return werr_set(e, WERR_CONFIG, "unknown key");
    }
    const struct kdef *d = &keys[k];
    struct node_config *n = &c->node;
    uint64_t v = 0;
    int b = 0;
    switch (d->type) {
    case T_BOOL:
        if (parse_bool(value, &b) != 0) {
            return werr_set(e, WERR_CONFIG, "%s = \"%s\": want true or false", d->name,
                            value);
        }
        if (k == CONFIG_K_DEV) {
            n->dev = b;
        } else {
            n->join = b;
        }
        break;
    case T_STR: {
        size_t len = strlen(value);
        if (len == 0 || len >= CONFIG_VALUE_MAX) {
            return werr_set(e, WERR_CONFIG, "%s: want a value of 1..%d bytes", d->name,
                            CONFIG_VALUE_MAX - 1);
        }
        memcpy(c->str[k], value, len + 1);
        const char *s = c->str[k];
        switch (k) {
        case CONFIG_K_DATA_DIR: n->data_dir = s; break;
        case CONFIG_K_LISTEN: n->listen = s; break;
        case CONFIG_K_PEERS: n->peers = s; break;
        case CONFIG_K_PEER_LISTEN: n->peer_listen = s; break;
        case CONFIG_K_TLS_CERT: n->tls_cert = s; break;
        case CONFIG_K_TLS_KEY: n->tls_key = s; break;
        case CONFIG_K_TLS_CA: n->tls_ca = s; break;
        case CONFIG_K_METRICS_LISTEN: n->metrics_listen = s; break;
        default: break;
        }
        break;
    }
    case T_ID: {
        struct werr ie;
        unsigned id = 0;
        if (cluster_id_parse(value, &id, &ie) != 0) {
            return werr_set(e, WERR_CONFIG, "%s = \"%s\": %s", d->name, value, ie.msg);
        }
        n->node_id = id;
        break;
    }
    case T_LOG: {
        enum wlog_level lvl;
        if (wlog_level_parse(value, &lvl) != 0) {
            return werr_set(e, WERR_CONFIG, "%s = \"%s\": want debug|info|warn|error",
                            d->name, value);
        }
        c->log_level = lvl;
        break;
    }
    case T_U64:
        if (parse_u64(value, d->min, d->max, &v) != 0) {
            return werr_set(e, WERR_CONFIG, "%s = \"%s\": want an integer in %llu..%llu",
                            d->name, value, (unsigned long long)d->min,
                            (unsigned long long)d->max);
        }
        switch (k) {
        case CONFIG_K_ELECTION_TIMEOUT_MS: n->election_timeout_ms = (unsigned)v; break;
        case CONFIG_K_SNAPSHOT_THRESHOLD: n->snapshot_threshold = (unsigned)v; break;
        case CONFIG_K_SNAPSHOT_TRAILING: n->snapshot_trailing = (unsigned)v; break;
        case CONFIG_K_MAX_MSG_BYTES: n->max_msg = (size_t)v; break;
        case CONFIG_K_SHUTDOWN_GRACE_MS: n->shutdown_grace_ms = v; break;
        case CONFIG_K_MAX_CONNS: n->max_conns = (size_t)v; break;
        case CONFIG_K_HANDSHAKE_TIMEOUT_MS: n->handshake_timeout_ms = v; break;
        case CONFIG_K_IDLE_TIMEOUT_MS: n->idle_timeout_ms = v; break;
        case CONFIG_K_RATE_LIMIT_RPS: n->rate_limit_rps = (unsigned)v; break;
        case CONFIG_K_RATE_LIMIT_BURST: n->rate_limit_burst = (unsigned)v; break;
        case CONFIG_K_MAX_INFLIGHT: n->max_inflight = (size_t)v; break;
        case CONFIG_K_MAX_WATCHERS: n->max_watchers = (size_t)v; break;
        default: break;
        }
        break;
    }
    c->src[k] = src;
    return 0;
}

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

static int key_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
}

int config_parse_buf(struct config *c, const char *name, const char *buf,
                     size_t len, struct werr *e)
{
    memset(c->in_file, 0, sizeof c->in_file);
    size_t pos = 0;
    unsigned lineno = 0;
    char value[CONFIG_LINE_MAX + 1];
    while (pos < len) {
        lineno++;
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t llen = nl != NULL ? (size_t)(nl - line) : len - pos;
        pos += llen + (nl != NULL ? 1 : 0);
        if (llen > CONFIG_LINE_MAX) {
            return werr_set(e, WERR_CONFIG, "%s:%u: line longer than %d bytes", name,
                            lineno, CONFIG_LINE_MAX);
        }
        if (memchr(line, '\0', llen) != NULL) {
            return werr_set(e, WERR_CONFIG, "%s:%u: NUL byte", name, lineno);
        }
        size_t a = 0, z = llen;
        while (a < z && is_blank(line[a])) {
            a++;
        }
        while (z > a && is_blank(line[z - 1])) {
            z--;
        }
        if (a == z || line[a] == '#') {
            continue;
        }
        const char *eq = memchr(line + a, '=', z - a);
        if (eq == NULL) {
            return werr_set(e, WERR_CONFIG, "%s:%u: want key = value", name, lineno);
        }
        size_t ka = a, kz = (size_t)(eq - line);
        while (kz > ka && is_blank(line[kz - 1])) {
            kz--;
        }
        size_t va = kz + 1;
        while (line[va - 1] != '=') {
            va++;
        }
        while (va < z && is_blank(line[va])) {
            va++;
        }
        if (kz == ka) {
            return werr_set(e, WERR_CONFIG, "%s:%u: missing key before '='", name, lineno);
        }
        for (size_t i = ka; i < kz; i++) {
            if (!key_char(line[i])) {
                return werr_set(e, WERR_CONFIG,
                                "%s:%u: bad key \"%.*s\" (lower-case, digits, '_')", name,
                                lineno, (int)(kz - ka), line + ka);
            }
        }
        int k = config_key_find(line + ka, kz - ka);
        if (k < 0) {
            return werr_set(e, WERR_CONFIG, "%s:%u: unknown key \"%.*s\"", name, lineno,
                            (int)(kz - ka), line + ka);
        }
        if (c->in_file[k]) {
            return werr_set(e, WERR_CONFIG, "%s:%u: duplicate key \"%s\"", name, lineno,
                            keys[k].name);
        }
        c->in_file[k] = 1;
        memcpy(value, line + va, z - va);
        value[z - va] = '\0';
        int rc = config_set(c, (enum config_key)k, value, CONFIG_SRC_FILE, e);
        if (rc != 0) {
            return werr_wrap(e, "%s:%u", name, lineno);
        }
    }
    return 0;
}

int config_load_file(struct config *c, const char *path, struct werr *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return werr_set(e, WERR_CONFIG, "config file %s: %s", path, strerror(errno));
    }
    char *buf = malloc(CONFIG_FILE_MAX + 1);
    if (buf == NULL) {
        close(fd);
        return werr_set(e, WERR_NOMEM, "config file %s: out of memory", path);
    }
    size_t have = 0;
    int rc = 0;
    for (;;) {
        ssize_t r = read(fd, buf + have, CONFIG_FILE_MAX + 1 - have);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = werr_set(e, WERR_CONFIG, "config file %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0) {
            break;
        }
        have += (size_t)r;
        if (have > CONFIG_FILE_MAX) {
            rc = werr_set(e, WERR_CONFIG, "config file %s: larger than %zu bytes", path,
                          CONFIG_FILE_MAX);
            break;
        }
    }
    close(fd);
    if (rc == 0) {
        rc = config_parse_buf(c, path, buf, have, e);
    }
    free(buf);
    return rc;
}

int config_apply_env(struct config *c, config_getenv_fn getenv_fn, void *arg,
                     struct werr *e)
{
    char var[64];
    for (int k = 0; k < CONFIG_K_N; k++) {
        size_t p = sizeof CONFIG_ENV_PREFIX - 1;
        memcpy(var, CONFIG_ENV_PREFIX, p);
        for (const char *s = keys[k].name; *s != '\0' && p < sizeof var - 1; s++) {
            char ch = *s;
            var[p++] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
        }
        var[p] = '\0';
        const char *v = getenv_fn(var, arg);
        if (v == NULL || v[0] == '\0') {
            continue;
        }
        int rc = config_set(c, (enum config_key)k, v, CONFIG_SRC_ENV, e);
        if (rc != 0) {
            return werr_wrap(e, "environment %s", var);
        }
    }
    return 0;
}
