/* principal.h - who is calling: name and role, taken from the client
 * certificate.
 *
 * Encoding (docs/security.md): the certificate carries a SAN URI
 *     warden://role/<role>/<name>
 * where <role> is one of admin, operator, gateway, auditor, rollout, peer and
 * <name> is 1..PRINCIPAL_NAME_MAX bytes of [A-Za-z0-9._-]. A certificate with
 * zero or several such URIs is rejected: exactly one identity per cert.
 *
 * Pure: no OpenSSL here. server/tls.c extracts the SAN URIs and calls
 * principal_parse_uri(). */
#ifndef WARDEN_COMMON_PRINCIPAL_H
#define WARDEN_COMMON_PRINCIPAL_H

#include <stddef.h>

#include "err.h"

/* Longest principal name; bounded so it can be stored inline in audit
 * records and log lines. */
#define PRINCIPAL_NAME_MAX 64

enum wrole {
    WROLE_ADMIN = 1u << 0,
    WROLE_OPERATOR = 1u << 1,
    WROLE_GATEWAY = 1u << 2,
    WROLE_AUDITOR = 1u << 3,
    WROLE_ROLLOUT = 1u << 4,
    WROLE_PEER = 1u << 5,
};
#define WROLE_ALL_CLIENTS \
    (WROLE_ADMIN | WROLE_OPERATOR | WROLE_GATEWAY | WROLE_AUDITOR | WROLE_ROLLOUT)

struct principal {
    unsigned role;                       /* exactly one WROLE_* bit */
    char name[PRINCIPAL_NAME_MAX + 1];   /* NUL-terminated */
};

#define PRINCIPAL_URI_PREFIX "warden://role/"

/* Parse "warden://role/<role>/<name>" (len bytes, need not be NUL-terminated).
 * Returns 0, or WERR_INVALID with a message naming what is wrong. */
int principal_parse_uri(const char *uri, size_t len, struct principal *out,
                        struct werr *e);

/* Format the URI for a principal into buf (cap bytes). Returns 0 or
 * WERR_LIMIT. */
int principal_format_uri(const struct principal *p, char *buf, size_t cap);

/* "admin", "operator", ... for a single role bit; "unknown" otherwise. */
const char *principal_role_name(unsigned role);

/* Parse a role name into its bit. Returns 0 or WERR_INVALID. */
int principal_role_parse(const char *name, unsigned *role);

#endif
