/* cluster_cfg.c - --peers and address parsing (cluster_cfg.h). Pure. */
#include "cluster_cfg.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

int cluster_id_parse(const char *s, unsigned *id, struct werr *e)
{
    char *end = NULL;
    errno = 0;
    if (s == NULL || s[0] < '0' || s[0] > '9') {
        return werr_set(e, WERR_CONFIG, "node id \"%s\": want 1..%u",
                        s ? s : "", (unsigned)UINT32_MAX);
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0 || v > UINT32_MAX) {
        return werr_set(e, WERR_CONFIG, "node id \"%s\": want 1..%u", s,
                        (unsigned)UINT32_MAX);
    }
    *id = (unsigned)v;
    return 0;
}

int cluster_hostport_parse(const char *s, int allow_zero, char *host,
                           size_t host_cap, unsigned *port, struct werr *e)
{
    char h[INET_ADDRSTRLEN];
    const char *colon = s != NULL ? strrchr(s, ':') : NULL;
    if (colon == NULL || colon == s) {
        return werr_set(e, WERR_CONFIG, "address \"%s\": want a.b.c.d:PORT",
                        s ? s : "");
    }
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof h || hl >= host_cap) {
        return werr_set(e, WERR_CONFIG, "address \"%s\": bad IPv4 host", s);
    }
    memcpy(h, s, hl);
    h[hl] = '\0';
    struct in_addr ia;
    if (inet_pton(AF_INET, h, &ia) != 1) {
        return werr_set(e, WERR_CONFIG,
                        "address \"%s\": \"%s\" is not an IPv4 literal", s, h);
    }
    const char *p = colon + 1;
    char *end = NULL;
    errno = 0;
    if (*p < '0' || *p > '9') {
        return werr_set(e, WERR_CONFIG, "address \"%s\": bad port", s);
    }
    unsigned long v = strtoul(p, &end, 10);
    if (errno != 0 || *end != '\0' || v > 65535 || (v == 0 && !allow_zero)) {
        return werr_set(e, WERR_CONFIG, "address \"%s\": port must be %s..65535",
                        s, allow_zero ? "0" : "1");
    }
    memcpy(host, h, hl + 1);
    *port = (unsigned)v;
    return 0;
}

int cluster_addr_shift(const char *hostport, int delta, char *out, size_t cap,
                       struct werr *e)
{
    char host[INET_ADDRSTRLEN];
    unsigned port = 0;
    int rc = cluster_hostport_parse(hostport, 0, host, sizeof host, &port, e);
    if (rc != 0) {
        return rc;
    }
    long np = (long)port + delta;
    if (np < 1 || np > 65535) {
        return werr_set(e, WERR_CONFIG, "address %s: port %+d is out of range",
                        hostport, delta);
    }
    int k = snprintf(out, cap, "%s:%ld", host, np);
    if (k < 0 || (size_t)k >= cap) {
        return werr_set(e, WERR_CONFIG, "address %s: too long", hostport);
    }
    return 0;
}

const struct wnode_peer *cluster_peers_find(const struct wnode_peer *peers,
                                            unsigned n, unsigned id)
{
    for (unsigned i = 0; i < n; i++) {
        if (peers[i].id == id) {
            return &peers[i];
        }
    }
    return NULL;
}

/* One "ID=PEER[/CLIENT]" entry, NUL-terminated in item. */
static int parse_entry(char *item, struct wnode_peer *p, struct werr *e)
{
    char host[INET_ADDRSTRLEN];
    unsigned port = 0;
    char *eq = strchr(item, '=');
    if (eq == NULL) {
        return werr_set(e, WERR_CONFIG, "--peers entry \"%s\": want ID=PEER[/CLIENT]",
                        item);
    }
    *eq = '\0';
    int rc = cluster_id_parse(item, &p->id, e);
    if (rc != 0) {
        return werr_wrap(e, "--peers");
    }
    char *addr = eq + 1;
    char *slash = strchr(addr, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
    if ((rc = cluster_hostport_parse(addr, 0, host, sizeof host, &port, e)) != 0) {
        return werr_wrap(e, "--peers %u", p->id);
    }
    snprintf(p->peer_addr, sizeof p->peer_addr, "%s:%u", host, port);
    if (slash != NULL) {
        if ((rc = cluster_hostport_parse(slash + 1, 0, host, sizeof host, &port,
                                         e)) != 0) {
            return werr_wrap(e, "--peers %u client", p->id);
        }
        snprintf(p->client_addr, sizeof p->client_addr, "%s:%u", host, port);
    } else if ((rc = cluster_addr_shift(p->peer_addr, -1, p->client_addr,
                                        sizeof p->client_addr, e)) != 0) {
        return werr_wrap(e, "--peers %u", p->id);
    }
    return 0;
}

int cluster_peers_parse(const char *s, struct wnode_peer *out, unsigned cap,
                        unsigned *n, struct werr *e)
{
    char buf[CLUSTER_PEERS_ARG_MAX];
    *n = 0;
    if (s == NULL || s[0] == '\0') {
        return werr_set(e, WERR_CONFIG, "--peers: empty");
    }
    if (strlen(s) >= sizeof buf) {
        return werr_set(e, WERR_CONFIG, "--peers: longer than %d bytes",
                        CLUSTER_PEERS_ARG_MAX - 1);
    }
    if (cap > WNODE_MEMBERS_MAX) {
        cap = WNODE_MEMBERS_MAX;
    }
    strcpy(buf, s);
    /* strtok_r would silently skip empty items ("1=a,,2=b"); walk by hand
     * so every comma separates exactly one entry. */
    char *item = buf;
    for (;;) {
        char *comma = strchr(item, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        if (item[0] == '\0') {
            return werr_set(e, WERR_CONFIG, "--peers: empty entry");
        }
        if (*n >= cap) {
            return werr_set(e, WERR_CONFIG, "--peers: more than %u entries", cap);
        }
        struct wnode_peer *p = &out[*n];
        memset(p, 0, sizeof *p);
        int rc = parse_entry(item, p, e);
        if (rc != 0) {
            return rc;
        }
        for (unsigned i = 0; i < *n; i++) {
            if (out[i].id == p->id) {
                return werr_set(e, WERR_CONFIG, "--peers: id %u listed twice", p->id);
            }
            if (strcmp(out[i].peer_addr, p->peer_addr) == 0) {
                return werr_set(e, WERR_CONFIG,
                                "--peers: ids %u and %u share peer address %s",
                                out[i].id, p->id, p->peer_addr);
            }
        }
        (*n)++;
        if (comma == NULL) {
            break;
        }
        item = comma + 1;
    }
    return 0;
}
