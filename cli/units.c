#include "units.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../common/principal.h"
#include "warden/v1/access.pb-c.h"
#include "warden/v1/rollout.pb-c.h"

/* Digits in a number we accept: 13 hold CLI_DURATION_MAX_MS (2.6e9 ms) in
 * milliseconds; more is out of range anyway, and v stays far below 2^64. */
#define NUM_DIGITS_MAX 13

/* Leading decimal digits of s (at most NUM_DIGITS_MAX) into *v; returns how
 * many there were, 0 for none or too many. */
static size_t digits(const char *s, uint64_t *v)
{
    size_t i = 0;
    *v = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (i == NUM_DIGITS_MAX) {
            return 0;
        }
        *v = *v * 10 + (uint64_t)(s[i] - '0');
    }
    return i;
}

int cli_duration_parse(const char *s, uint64_t min_ms, uint64_t max_ms,
                       uint64_t *ms)
{
    uint64_t v;
    size_t n = digits(s, &v);
    if (n == 0) {
        return WERR_INVALID;
    }
    const char *u = s + n;
    uint64_t mult;
    if (*u == '\0' || strcmp(u, "s") == 0) {
        mult = 1000;
    } else if (strcmp(u, "ms") == 0) {
        mult = 1;
    } else if (strcmp(u, "m") == 0) {
        mult = 60ull * 1000;
    } else if (strcmp(u, "h") == 0) {
        mult = 3600ull * 1000;
    } else {
        return WERR_INVALID;
    }
    if (max_ms > CLI_DURATION_MAX_MS) {
        max_ms = CLI_DURATION_MAX_MS;
    }
    if (v > CLI_DURATION_MAX_MS / mult) { /* before multiplying: no overflow */
        return WERR_INVALID;
    }
    uint64_t r = v * mult;
    if (r < min_ms || r > max_ms) {
        return WERR_INVALID;
    }
    *ms = r;
    return 0;
}

const char *cli_duration_fmt(uint64_t ms, char *buf)
{
    static const struct {
        uint64_t ms;
        const char *unit;
    } units[] = {{3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
    size_t off = 0;
    if (ms == 0) {
        snprintf(buf, CLI_DURATION_FMT_MAX, "0ms");
        return buf;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        uint64_t q = ms / units[i].ms;
        ms %= units[i].ms;
        if (q > 0 && off < CLI_DURATION_FMT_MAX) {
            int n = snprintf(buf + off, CLI_DURATION_FMT_MAX - off, "%" PRIu64 "%s",
                             q, units[i].unit);
            off += n > 0 ? (size_t)n : 0;
        }
    }
    return buf;
}

/* "I[.F]" with at most max_frac fraction digits, scaled by 10^max_frac.
 * *end is the first byte after the number. */
static int fixed(const char *s, unsigned max_frac, uint64_t *out, const char **end)
{
    uint64_t ip;
    size_t n = digits(s, &ip);
    if (n == 0 || n > 6) {
        return WERR_INVALID;
    }
    const char *p = s + n;
    uint64_t fp = 0;
    unsigned nf = 0;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (nf == max_frac) {
                return WERR_INVALID;
            }
            fp = fp * 10 + (uint64_t)(*p - '0');
            nf++;
            p++;
        }
        if (nf == 0) {
            return WERR_INVALID;
        }
    }
    for (; nf < max_frac; nf++) {
        fp *= 10;
    }
    uint64_t scale = 1;
    for (unsigned i = 0; i < max_frac; i++) {
        scale *= 10;
    }
    *out = ip * scale + fp;
    *end = p;
    return 0;
}

int cli_ratio_parse(const char *s, uint32_t *bp)
{
    uint64_t v;
    const char *end;
    size_t n = strlen(s);
    if (n > 2 && strcmp(s + n - 2, "bp") == 0) {
        if (digits(s, &v) != n - 2) {
            return WERR_INVALID;
        }
    } else if (n > 1 && s[n - 1] == '%') {
        /* percent with two decimals: 1 unit = 1 bp */
        if (fixed(s, 2, &v, &end) != 0 || end != s + n - 1) {
            return WERR_INVALID;
        }
    } else {
        /* a fraction with four decimals: 1 unit = 1 bp */
        if (fixed(s, 4, &v, &end) != 0 || *end != '\0') {
            return WERR_INVALID;
        }
    }
    if (v > CLI_BP) {
        return WERR_INVALID;
    }
    *bp = (uint32_t)v;
    return 0;
}

const char *cli_bp_fmt(uint32_t bp, char *buf)
{
    unsigned ip = bp / 100u, fp = bp % 100u;
    if (fp == 0) {
        snprintf(buf, CLI_BP_FMT_MAX, "%u%%", ip);
    } else if (fp % 10u == 0) {
        snprintf(buf, CLI_BP_FMT_MAX, "%u.%u%%", ip, fp / 10u);
    } else {
        snprintf(buf, CLI_BP_FMT_MAX, "%u.%02u%%", ip, fp);
    }
    return buf;
}

static int name_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int cli_stage_parse(const char *s, struct cli_stage *out, struct werr *e)
{
    memset(out, 0, sizeof *out);
    const char *share = s;
    const char *eq = strchr(s, '=');
    if (eq != NULL) {
        size_t nl = (size_t)(eq - s);
        if (nl == 0 || nl > CLI_STAGE_NAME_MAX) {
            return werr_set(e, WERR_INVALID,
                            "--stage \"%s\": NAME must be 1..%d bytes", s,
                            CLI_STAGE_NAME_MAX);
        }
        for (size_t i = 0; i < nl; i++) {
            if (!name_char_ok(s[i])) {
                return werr_set(e, WERR_INVALID,
                                "--stage \"%s\": NAME may hold [A-Za-z0-9._-]", s);
            }
        }
        memcpy(out->name, s, nl);
        out->name[nl] = '\0';
        share = eq + 1;
    }
    size_t n = strlen(share);
    uint64_t v;
    const char *end;
    if (n > 1 && share[n - 1] == '%') {
        if (fixed(share, 2, &v, &end) != 0 || end != share + n - 1 || v == 0 ||
            v > CLI_BP) {
            return werr_set(e, WERR_INVALID,
                            "--stage \"%s\": want a share 0.01%%..100%% or a "
                            "device count", s);
        }
        out->percent_bp = (uint32_t)v;
        return 0;
    }
    if (digits(share, &v) != n || n == 0 || v == 0 || v > UINT32_MAX) {
        return werr_set(e, WERR_INVALID,
                        "--stage \"%s\": want a share 0.01%%..100%% or a device "
                        "count", s);
    }
    out->max_devices = (uint32_t)v;
    return 0;
}

static const struct {
    uint32_t role;
    const char *name;
} reviewer_roles[] = {
    {WROLE_ADMIN, "admin"},
    {WROLE_OPERATOR, "operator"},
    {WROLE_AUDITOR, "auditor"},
};
#define N_REVIEWER_ROLES (sizeof reviewer_roles / sizeof reviewer_roles[0])

int cli_roles_parse(const char *s, uint32_t *mask)
{
    uint32_t m = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        size_t i = 0;
        for (; i < N_REVIEWER_ROLES; i++) {
            if (strlen(reviewer_roles[i].name) == n &&
                strncasecmp(p, reviewer_roles[i].name, n) == 0) {
                break;
            }
        }
        if (i == N_REVIEWER_ROLES || (m & reviewer_roles[i].role) != 0) {
            return WERR_INVALID;
        }
        m |= reviewer_roles[i].role;
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    *mask = m;
    return 0;
}

const char *cli_roles_fmt(uint32_t mask, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_REVIEWER_ROLES; i++) {
        if ((mask & reviewer_roles[i].role) != 0 && off < cap) {
            int n = snprintf(buf + off, cap - off, "%s%s", off ? "," : "",
                             reviewer_roles[i].name);
            off += n > 0 ? (size_t)n : 0;
        }
    }
    uint32_t other = mask & ~(uint32_t)(WROLE_ADMIN | WROLE_OPERATOR | WROLE_AUDITOR);
    if (other != 0 && off < cap) {
        snprintf(buf + off, cap - off, "%s0x%x", off ? "," : "", (unsigned)other);
    }
    if (buf[0] == '\0') {
        snprintf(buf, cap, "-");
    }
    return buf;
}

/* A value of d named s: the full name ("ACCESS_PURPOSE_INCIDENT") or the
 * name without prefix ("incident"), any case; '-' matches '_'. Value 0
 * (UNSPECIFIED) and `skip` are never returned. */
static int enum_parse(const ProtobufCEnumDescriptor *d, const char *prefix,
                      const char *s, int skip)
{
    char norm[64];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof norm) {
        return WERR_INVALID;
    }
    for (size_t i = 0; i <= n; i++) {
        norm[i] = s[i] == '-' ? '_' : s[i];
    }
    size_t pl = strlen(prefix);
    const char *shortn = strncasecmp(norm, prefix, pl) == 0 ? norm + pl : norm;
    for (unsigned i = 0; i < d->n_values; i++) {
        const ProtobufCEnumValue *v = &d->values[i];
        if (v->value == 0 || v->value == skip) {
            continue;
        }
        if (strcasecmp(v->name + pl, shortn) == 0) {
            return v->value;
        }
    }
    return WERR_INVALID;
}

int cli_purpose_parse(const char *s)
{
    return enum_parse(&warden__v1__access_purpose__descriptor, "ACCESS_PURPOSE_",
                      s, 0);
}

int cli_grant_state_parse(const char *s)
{
    return enum_parse(&warden__v1__access_grant_state__descriptor,
                      "ACCESS_GRANT_STATE_", s, 0);
}

int cli_phase_parse(const char *s)
{
    /* TIMED_OUT is warden's own verdict; a device never reports it. */
    return enum_parse(&warden__v1__update_phase__descriptor, "UPDATE_PHASE_", s,
                      WARDEN__V1__UPDATE_PHASE__UPDATE_PHASE_TIMED_OUT);
}

const char *cli_progress_bar(uint64_t done, uint64_t total, char *buf)
{
    size_t off = 0;
    buf[off++] = '[';
    uint64_t cells = 0;
    if (total > 0) {
        if (done > total) {
            done = total;
        }
        /* Floor, so a bar is full only when everything is done; done and
         * total are device counts, far below 2^64 / CLI_BAR_WIDTH. */
        cells = done * CLI_BAR_WIDTH / total;
    }
    for (unsigned i = 0; i < CLI_BAR_WIDTH; i++) {
        buf[off++] = i < cells ? '#' : '.';
    }
    buf[off++] = ']';
    if (total == 0) {
        snprintf(buf + off, CLI_BAR_BUF - off, " -");
    } else {
        snprintf(buf + off, CLI_BAR_BUF - off, " %u%%",
                 (unsigned)(done * 100u / total));
    }
    return buf;
}
