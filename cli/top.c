/* top.c - `wardenctl top`, the pure half (top.h). */
#include "top.h"

#include <inttypes.h>
#include <string.h>

#include "json.h"

void cli_top_rate(uint64_t cur, uint64_t prev, int has_prev, uint64_t elapsed_ms,
                  char *buf, size_t cap)
{
    if (!has_prev || elapsed_ms == 0 || cur < prev) {
        snprintf(buf, cap, "-");
        return;
    }
    uint64_t d = cur - prev;
    /* tenths per second = d * 10000 / elapsed_ms; saturate rather than wrap
     * (2^64 / 10^4 events between two frames is not a real cluster). */
    uint64_t tenths = d > UINT64_MAX / 10000u ? UINT64_MAX / elapsed_ms
                                              : d * 10000u / elapsed_ms;
    snprintf(buf, cap, "%" PRIu64 ".%" PRIu64, tenths / 10u, tenths % 10u);
}

int cli_top_leader(const struct cli_top_row *rows, size_t n)
{
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].ok && strcmp(rows[i].state, "leader") == 0 &&
            (best < 0 || rows[i].term > rows[best].term)) {
            best = (int)i;
        }
    }
    return best;
}

static void fmt_u64(uint64_t v, char *buf, size_t cap)
{
    snprintf(buf, cap, "%" PRIu64, v);
}

void cli_top_render(FILE *f, const struct cli_top_row *rows,
                    const struct cli_top_row *prev, size_t n, unsigned seq,
                    uint64_t interval_ms)
{
    int li = cli_top_leader(rows, n);
    size_t up = 0;
    for (size_t i = 0; i < n; i++) {
        up += rows[i].ok ? 1u : 0u;
    }
    char iv[CLI_DURATION_FMT_MAX];
    fprintf(f, "warden top: %zu/%zu nodes answering, ", up, n);
    if (li >= 0) {
        fprintf(f, "leader n%" PRIu32 " at %s (term %" PRIu64 ")", rows[li].id,
                rows[li].endpoint, rows[li].term);
    } else {
        fputs("no leader", f);
    }
    fprintf(f, ", every %s, #%u\n", cli_duration_fmt(interval_ms, iv), seq);
    fprintf(f, "%-6s %-21s %-11s %6s %-6s %9s %9s %6s %8s %8s %8s %8s\n", "ID",
            "ENDPOINT", "STATE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG",
            "OFFSET", "PROP/s", "FLUSH/s", "DENIALS");
    for (size_t i = 0; i < n; i++) {
        const struct cli_top_row *r = &rows[i];
        if (!r->ok) {
            fprintf(f, "%-6s %-21s %s\n", "?", r->endpoint, r->error);
            continue;
        }
        char id[16], leader[16], lag[24], off[24], prop[24], flush[24], den[24];
        snprintf(id, sizeof id, "n%" PRIu32, r->id);
        if (r->leader_id != 0) {
            snprintf(leader, sizeof leader, "n%" PRIu32, r->leader_id);
        } else {
            snprintf(leader, sizeof leader, "-");
        }
        if (li >= 0) {
            uint64_t lc = rows[li].commit;
            fmt_u64(lc > r->applied ? lc - r->applied : 0, lag, sizeof lag);
        } else {
            snprintf(lag, sizeof lag, "-");
        }
        if (r->offset_known) {
            snprintf(off, sizeof off, "%+" PRId64 "ms", r->offset_ms);
        } else {
            snprintf(off, sizeof off, "-");
        }
        const struct cli_top_row *p = prev != NULL ? &prev[i] : NULL;
        int has_prev = p != NULL && p->ok && p->at_ms < r->at_ms &&
                       strcmp(p->endpoint, r->endpoint) == 0;
        uint64_t el = has_prev ? r->at_ms - p->at_ms : 0;
        cli_top_rate(r->proposals, has_prev ? p->proposals : 0, has_prev, el, prop,
                     sizeof prop);
        cli_top_rate(r->flushes, has_prev ? p->flushes : 0, has_prev, el, flush,
                     sizeof flush);
        if (r->has_denials) {
            fmt_u64(r->denials, den, sizeof den);
        } else {
            snprintf(den, sizeof den, "-");
        }
        fprintf(f, "%-6s %-21s %-11s %6" PRIu64 " %-6s %9" PRIu64 " %9" PRIu64
                   " %6s %8s %8s %8s %8s\n",
                id, r->endpoint, r->state, r->term, leader, r->commit, r->applied,
                lag, off, prop, flush, den);
    }
}

/* ---- cluster.json ------------------------------------------------------- */

/* End of the JSON object starting at s[i] == '{' (index of its '}'), or
 * len when unterminated. Strings are skipped with their escapes. */
static size_t object_end(const char *s, size_t len, size_t i)
{
    int depth = 0, in_str = 0;
    for (; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = 0;
            }
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0) {
                return i;
            }
        }
    }
    return len;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int cli_top_cluster_json(const char *text, size_t len,
                         char (*out)[CLI_ENDPOINT_LEN_MAX + 1], size_t cap,
                         size_t *n, struct werr *e)
{
    struct cli_json_field top[CLI_JSON_FIELDS_MAX];
    size_t ntop = 0;
    *n = 0;
    if (cli_json_object_parse(text, len, top, CLI_JSON_FIELDS_MAX, &ntop, e) != 0) {
        return WERR_INVALID;
    }
    const struct cli_json_field *nodes = cli_json_find(top, ntop, "nodes");
    if (nodes == NULL || nodes->type != CLI_JSON_ARRAY) {
        return werr_set(e, WERR_INVALID, "cluster.json: no \"nodes\" array");
    }
    const char *s = nodes->raw;
    size_t slen = nodes->raw_len, i = 1; /* past '[' */
    for (;;) {
        while (i < slen && (is_ws(s[i]) || s[i] == ',')) {
            i++;
        }
        if (i >= slen || s[i] == ']') {
            break;
        }
        if (s[i] != '{') {
            return werr_set(e, WERR_INVALID, "cluster.json: a node is not an object");
        }
        size_t end = object_end(s, slen, i);
        if (end >= slen) {
            return werr_set(e, WERR_INVALID, "cluster.json: unterminated node");
        }
        struct cli_json_field fl[CLI_JSON_FIELDS_MAX];
        size_t nf = 0, clen = 0;
        if (cli_json_object_parse(s + i, end - i + 1, fl, CLI_JSON_FIELDS_MAX, &nf, e) !=
            0) {
            return WERR_INVALID;
        }
        const struct cli_json_field *c = cli_json_find(fl, nf, "client");
        if (*n >= cap) {
            return werr_set(e, WERR_LIMIT, "cluster.json: more than %zu nodes", cap);
        }
        if (c == NULL ||
            cli_json_str(c, out[*n], CLI_ENDPOINT_LEN_MAX + 1, &clen) != 0 ||
            cli_endpoint_check(out[*n]) != 0) {
            return werr_set(e, WERR_INVALID,
                            "cluster.json: node %zu has no \"client\": \"HOST:PORT\"",
                            *n + 1);
        }
        (*n)++;
        i = end + 1;
    }
    if (*n == 0) {
        return werr_set(e, WERR_INVALID, "cluster.json: \"nodes\" is empty");
    }
    return 0;
}

/* ---- Prometheus text format ---------------------------------------------- */

static int name_matches(const char *s, size_t len)
{
    static const char pre[] = "warden_", suf[] = "_total";
    if (len < sizeof pre - 1 + sizeof suf - 1 || memcmp(s, pre, sizeof pre - 1) != 0 ||
        memcmp(s + len - (sizeof suf - 1), suf, sizeof suf - 1) != 0) {
        return 0;
    }
    for (size_t i = 0; i + 6 <= len; i++) {
        if (memcmp(s + i, "denial", 6) == 0) {
            return 1;
        }
    }
    return 0;
}

int cli_top_metrics_denials(const char *text, size_t len, uint64_t *sum)
{
    int found = 0;
    uint64_t total = 0;
    size_t i = 0;
    while (i < len) {
        size_t eol = i;
        while (eol < len && text[eol] != '\n') {
            eol++;
        }
        const char *l = text + i;
        size_t ll = eol - i;
        i = eol + 1;
        if (ll == 0 || l[0] == '#') {
            continue;
        }
        /* name, then optional {labels}, then space, value [timestamp]. */
        size_t k = 0;
        while (k < ll && l[k] != '{' && l[k] != ' ') {
            k++;
        }
        if (!name_matches(l, k)) {
            continue;
        }
        if (k < ll && l[k] == '{') {
            int in_str = 0;
            for (; k < ll; k++) {
                if (in_str) {
                    if (l[k] == '\\') {
                        k++;
                    } else if (l[k] == '"') {
                        in_str = 0;
                    }
                } else if (l[k] == '"') {
                    in_str = 1;
                } else if (l[k] == '}') {
                    k++;
                    break;
                }
            }
        }
        while (k < ll && l[k] == ' ') {
            k++;
        }
        /* A counter: digits, maybe with a ".0" exposition suffix. */
        uint64_t v = 0;
        size_t d = 0;
        while (k < ll && l[k] >= '0' && l[k] <= '9' && d < 19) {
            v = v * 10 + (uint64_t)(l[k] - '0');
            k++;
            d++;
        }
        if (d == 0) {
            continue;
        }
        total = total > UINT64_MAX - v ? UINT64_MAX : total + v;
        found = 1;
    }
    if (found) {
        *sum = total;
    }
    return found;
}

int cli_top_url_parse(const char *url, char host[CLI_TOP_HOST_MAX + 1], char port[8],
                      char path[CLI_TOP_PATH_MAX + 1])
{
    static const char scheme[] = "http://";
    if (strncmp(url, scheme, sizeof scheme - 1) != 0) {
        return WERR_INVALID;
    }
    const char *hp = url + sizeof scheme - 1;
    const char *slash = strchr(hp, '/');
    size_t hplen = slash ? (size_t)(slash - hp) : strlen(hp);
    const char *colon = NULL;
    for (size_t i = 0; i < hplen; i++) {
        if (hp[i] == ':') {
            colon = hp + i;
        }
    }
    if (colon == NULL || colon == hp) {
        return WERR_INVALID;
    }
    size_t hlen = (size_t)(colon - hp), plen = hplen - hlen - 1;
    if (hlen > CLI_TOP_HOST_MAX || plen == 0 || plen > 5) {
        return WERR_INVALID;
    }
    unsigned pv = 0;
    for (size_t i = 0; i < plen; i++) {
        if (colon[1 + i] < '0' || colon[1 + i] > '9') {
            return WERR_INVALID;
        }
        pv = pv * 10 + (unsigned)(colon[1 + i] - '0');
    }
    if (pv == 0 || pv > 65535) {
        return WERR_INVALID;
    }
    const char *p = slash ? slash : "/metrics";
    if (strlen(p) > CLI_TOP_PATH_MAX) {
        return WERR_INVALID;
    }
    for (const char *c = p; *c != '\0'; c++) {
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            return WERR_INVALID; /* no header injection through the path */
        }
    }
    memcpy(host, hp, hlen);
    host[hlen] = '\0';
    memcpy(port, colon + 1, plen);
    port[plen] = '\0';
    snprintf(path, CLI_TOP_PATH_MAX + 1, "%s", p);
    return 0;
}

int cli_top_url_list(const char *list, char (*out)[CLI_TOP_PATH_MAX + 1], size_t cap,
                     size_t *n)
{
    *n = 0;
    const char *s = list;
    while (*s != '\0') {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (len == 0 || len > CLI_TOP_PATH_MAX) {
            return WERR_INVALID;
        }
        if (*n >= cap) {
            return WERR_LIMIT;
        }
        memcpy(out[*n], s, len);
        out[*n][len] = '\0';
        char h[CLI_TOP_HOST_MAX + 1], p[8], path[CLI_TOP_PATH_MAX + 1];
        if (cli_top_url_parse(out[*n], h, p, path) != 0) {
            return WERR_INVALID;
        }
        (*n)++;
        s += len;
        if (*s == ',') {
            s++;
            if (*s == '\0') {
                return WERR_INVALID;
            }
        }
    }
    return *n > 0 ? 0 : WERR_INVALID;
}
