/* pki.h - a production certificate authority for warden clusters:
 * `wardenctl certs init-ca` and `wardenctl certs issue` (docs/deployment.md).
 *
 * Pure OpenSSL plus files; no sockets, no libuv, nothing from server/.
 * (server/devcerts.c generates throwaway dev certificates; this module is
 * the one for real deployments and shares no code with it.)
 *
 * Layout:
 *   CADIR/ca.pem, CADIR/ca-key.pem     EC P-256 self-signed CA
 *                                      (CA:TRUE, pathlen:0), key 0600
 *   PREFIX.pem, PREFIX-key.pem         one leaf, key 0600
 * Keys are ECDSA P-256 in PKCS#8 PEM, signatures SHA-256, serials 128
 * random bits. Nothing is ever overwritten: every output file is written to
 * a temporary file, fsynced, and then hard-linked into place, which fails
 * with EEXIST if the name is taken (so two concurrent runs cannot clobber
 * each other either).
 *
 * Identity (docs/security.md): every leaf carries exactly one SAN URI
 * warden://role/<role>/<name>. Role "peer" is a node: its name is n<ID>
 * (the raft server id, 1..4294967295, no leading zeros), it needs at least
 * one SAN IP or DNS name (what clients verify when they dial it; the peer
 * transport itself checks only the URI), and its EKU is serverAuth+clientAuth because one certificate
 * serves the gRPC port and both directions of the Raft peer transport.
 * Client roles (admin, operator, gateway, auditor, rollout) get clientAuth
 * only and no IP/DNS entries.
 *
 * Errors: 0, or a negative WERR_* with e->msg naming the file or field:
 * WERR_INVALID (bad role, name, IP, DNS name, days), WERR_EXISTS (an output
 * file exists), WERR_IO (with errno text), WERR_TLS (OpenSSL, with its
 * error string), WERR_LIMIT (a path or SAN too long). */
#ifndef WARDEN_PKI_PKI_H
#define WARDEN_PKI_PKI_H

#include <stddef.h>

#include "../common/err.h"

/* Validity bounds. The defaults follow common practice: a long-lived
 * offline CA, one-year leaves rotated well before expiry. The maxima only
 * catch typos (a 100-year leaf is never what someone meant). */
#define PKI_CA_DAYS_DEFAULT 3650u
#define PKI_CA_DAYS_MAX 7300u
#define PKI_LEAF_DAYS_DEFAULT 365u
#define PKI_LEAF_DAYS_MAX 3650u
/* notBefore is backdated so a node whose clock is slightly behind accepts a
 * certificate issued a moment ago. */
#define PKI_BACKDATE_SECS 3600
/* Serial: 128 random bits (RFC 5280 §4.1.2.2 allows up to 20 octets; the
 * CA/B Forum asks for at least 64 bits of CSPRNG output). */
#define PKI_SERIAL_BITS 128
/* SAN entries per certificate. A node has one or two addresses; the bound
 * keeps the SAN extension small and our buffers fixed. */
#define PKI_SAN_IPS_MAX 8
#define PKI_SAN_DNS_MAX 8
/* RFC 1035 §2.3.4: 253 bytes per name, 63 per label. */
#define PKI_DNS_NAME_MAX 253
#define PKI_DNS_LABEL_MAX 63
/* CA common name (bytes). */
#define PKI_CN_MAX 64
/* The formatted subjectAltName value: 8 IPv6 + 8 DNS names + the URI. */
#define PKI_SAN_MAX 4096
/* Longest path built from a directory or prefix. */
#define PKI_PATH_MAX 4096

#define PKI_CA_CN_DEFAULT "warden cluster CA"

/* What to issue. Strings are borrowed for the call. */
struct pki_leaf_spec {
    const char *role;                 /* admin, operator, ..., peer */
    const char *name;                 /* principal name; n<ID> for peer */
    const char *ips[PKI_SAN_IPS_MAX]; /* IPv4 or IPv6 literals */
    size_t n_ips;
    const char *dns[PKI_SAN_DNS_MAX];
    size_t n_dns;
    unsigned days;                    /* 0: PKI_LEAF_DAYS_DEFAULT */
};

/* What was issued, for the command's output. */
struct pki_issued {
    char uri[128];          /* warden://role/<role>/<name> */
    char serial_hex[48];    /* lowercase hex, no prefix */
    char not_after[32];     /* "YYYY-MM-DD HH:MM:SS UTC" */
    char cert_path[PKI_PATH_MAX];
    char key_path[PKI_PATH_MAX];
};

/* Check a spec without touching OpenSSL or files: role, name (principal
 * rules; n<ID> for peer), IPs (inet_pton), DNS names (RFC 1035 letters,
 * digits, hyphens; no leading/trailing hyphen; no wildcard), days, and the
 * rule that only peer certificates carry IP/DNS entries and every peer
 * certificate has an IP or a DNS name. Returns 0 or WERR_INVALID. */
int pki_leaf_check(const struct pki_leaf_spec *s, struct werr *e);

/* The subjectAltName value in OpenSSL's config syntax, e.g.
 * "IP:127.0.0.1,DNS:n1.warden,URI:warden://role/peer/n1" (IPs, then DNS
 * names, then the URI). Checks the spec first. Returns 0, WERR_INVALID or
 * WERR_LIMIT (cap too small). */
int pki_san_format(const struct pki_leaf_spec *s, char *buf, size_t cap,
                   struct werr *e);

/* extendedKeyUsage for a role: "serverAuth,clientAuth" for peer,
 * "clientAuth" otherwise. */
const char *pki_leaf_eku(const char *role);

/* Check a raft node name "n<ID>": 0, or WERR_INVALID. *id (may be NULL)
 * gets the id. */
int pki_node_name_parse(const char *name, unsigned long *id);

/* Create dir (mode 0700; an existing directory is fine) and in it a fresh
 * CA: ca-key.pem (0600) then ca.pem (0644). cn NULL: PKI_CA_CN_DEFAULT;
 * days 0: PKI_CA_DAYS_DEFAULT. Refuses (WERR_EXISTS) when either file is
 * already there: a second CA under the same name would orphan every leaf
 * of the first. */
int pki_ca_init(const char *dir, const char *cn, unsigned days, struct werr *e);

/* Issue a leaf signed by ca_dir's CA into <out_prefix>.pem and
 * <out_prefix>-key.pem (fresh P-256 key). The CA key must match the CA
 * certificate, and the leaf may not outlive the CA (WERR_INVALID: issue a
 * shorter one or renew the CA). Refuses existing outputs (WERR_EXISTS).
 * *out (may be NULL) describes the result. */
int pki_issue(const char *ca_dir, const struct pki_leaf_spec *s,
              const char *out_prefix, struct pki_issued *out, struct werr *e);

#endif
