/* principal.c - parse and format warden://role/<role>/<name> (principal.h).
 *
 * Pure: the bytes come from a certificate's SAN URI, which an attacker with a
 * CA-signed but otherwise odd certificate controls, so everything is checked
 * by length, never by NUL termination. */
#include "principal.h"

#include <stdio.h>
#include <string.h>

static const struct {
    unsigned role;
    const char *name;
} roles[] = {
    {WROLE_ADMIN, "admin"},     {WROLE_OPERATOR, "operator"},
    {WROLE_GATEWAY, "gateway"}, {WROLE_AUDITOR, "auditor"},
    {WROLE_ROLLOUT, "rollout"}, {WROLE_PEER, "peer"},
};
#define N_ROLES (sizeof roles / sizeof roles[0])

/* Longest role name ("operator"); bounds the role segment before lookup. */
#define ROLE_NAME_MAX 8

const char *principal_role_name(unsigned role)
{
    for (size_t i = 0; i < N_ROLES; i++) {
        if (roles[i].role == role) {
            return roles[i].name;
        }
    }
    return "unknown";
}

static int role_lookup(const char *s, size_t len, unsigned *role)
{
    if (len == 0 || len > ROLE_NAME_MAX) {
        return WERR_INVALID;
    }
    for (size_t i = 0; i < N_ROLES; i++) {
        if (strlen(roles[i].name) == len && memcmp(roles[i].name, s, len) == 0) {
            *role = roles[i].role;
            return 0;
        }
    }
    return WERR_INVALID;
}

int principal_role_parse(const char *name, unsigned *role)
{
    if (name == NULL) {
        return WERR_INVALID;
    }
    return role_lookup(name, strlen(name), role);
}

static int name_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
}

int principal_parse_uri(const char *uri, size_t len, struct principal *out,
                        struct werr *e)
{
    static const char prefix[] = PRINCIPAL_URI_PREFIX;
    const size_t plen = sizeof prefix - 1;

    if (uri == NULL || len == 0) {
        return werr_set(e, WERR_INVALID, "principal: empty URI");
    }
    /* The scheme is compared byte for byte: RFC 3986 says schemes are case
     * insensitive, but we issue the certificates and accept one spelling. */
    if (len < plen || memcmp(uri, prefix, plen) != 0) {
        return werr_set(e, WERR_INVALID,
                        "principal: URI does not start with " PRINCIPAL_URI_PREFIX);
    }
    const char *role = uri + plen;
    const char *end = uri + len;
    const char *slash = memchr(role, '/', (size_t)(end - role));
    if (slash == NULL) {
        return werr_set(e, WERR_INVALID, "principal: URI has no name segment");
    }
    unsigned bit = 0;
    if (role_lookup(role, (size_t)(slash - role), &bit) != 0) {
        return werr_set(e, WERR_INVALID, "principal: unknown role \"%.*s\"",
                        (int)((size_t)(slash - role) > ROLE_NAME_MAX
                                  ? ROLE_NAME_MAX
                                  : (size_t)(slash - role)),
                        role);
    }
    const char *name = slash + 1;
    size_t nlen = (size_t)(end - name);
    if (nlen == 0) {
        return werr_set(e, WERR_INVALID, "principal: empty name");
    }
    if (nlen > PRINCIPAL_NAME_MAX) {
        return werr_set(e, WERR_INVALID,
                        "principal: name longer than %d bytes",
                        PRINCIPAL_NAME_MAX);
    }
    for (size_t i = 0; i < nlen; i++) {
        if (!name_char_ok(name[i])) {
            /* Covers '/', '%', NUL, query/fragment and non-ASCII: a name is
             * one plain segment, so it is safe in logs and audit records. */
            return werr_set(e, WERR_INVALID,
                            "principal: byte 0x%02x at name offset %zu is not "
                            "in [A-Za-z0-9._-]",
                            (unsigned)(unsigned char)name[i], i);
        }
    }
    out->role = bit;
    memcpy(out->name, name, nlen);
    out->name[nlen] = '\0';
    return 0;
}

int principal_format_uri(const struct principal *p, char *buf, size_t cap)
{
    const char *rn = principal_role_name(p->role);
    if (strcmp(rn, "unknown") == 0) {
        return WERR_INVALID;
    }
    int n = snprintf(buf, cap, PRINCIPAL_URI_PREFIX "%s/%s", rn, p->name);
    if (n < 0 || (size_t)n >= cap) {
        return WERR_LIMIT;
    }
    return 0;
}
