/* access_revlog.c - the revocation log: every grant revocation, lock,
 * unlock and device quarantine/revocation, numbered 1, 2, 3, ... in commit
 * order (contract: access.h; layout: access_int.h).
 *
 * Revisions are assigned inside the apply txn, so their order is the Raft
 * log order on every node, and a gateway that resumes from revision R on
 * any node sees the same events after R. Retention is the policy's
 * revlog_retention (replicated); pruning is bounded per append. */
#include "access_int.h"

#include <stdlib.h>
#include <string.h>

#define META_REV "rev"

int acc_revision(struct access *a, struct store_txn *t, uint64_t *rev,
                 struct werr *e)
{
    struct store_val v;
    int rc = store_get(t, a->meta, META_REV, strlen(META_REV), &v, e);
    if (rc == WERR_NOTFOUND) {
        *rev = 0;
        return 0;
    }
    if (rc) {
        return rc;
    }
    if (v.len != 8) {
        return werr_set(e, WERR_CORRUPT, "acc.meta rev: %zu bytes", v.len);
    }
    *rev = acc__get64(v.data);
    return 0;
}

/* Oldest retained revision, or 0 if the log is empty. */
static int oldest(struct access *a, struct store_txn *t, uint64_t *out,
                  struct werr *e)
{
    struct store_cursor *c;
    *out = 0;
    int rc = store_cursor_open(t, a->rev, &c, e);
    if (rc) {
        return rc;
    }
    struct store_val k, v;
    rc = store_cursor_seek(c, NULL, 0, &k, &v, e);
    if (rc == 0) {
        if (k.len != 8) {
            rc = werr_set(e, WERR_CORRUPT, "acc.rev key of %zu bytes", k.len);
        } else {
            *out = acc__get64(k.data);
        }
    }
    store_cursor_close(c);
    return rc == WERR_NOTFOUND ? 0 : rc;
}

static int prune(struct access *a, struct store_txn *t, uint64_t latest,
                 struct werr *e)
{
    Warden__V1__AccessPolicy *p;
    int rc = acc_policy_get(a, t, &p, e);
    if (rc) {
        return rc;
    }
    uint64_t keep = p->revlog_retention;
    acc_msg_free(p);
    if (latest <= keep) {
        return 0;
    }
    uint64_t first;
    if ((rc = oldest(a, t, &first, e)) != 0) {
        return rc;
    }
    /* Keep revisions latest-keep+1 .. latest. */
    for (unsigned i = 0; i < ACC_REVLOG_PRUNE_MAX && first != 0 &&
                         first + keep <= latest;
         i++, first++) {
        uint8_t k[8];
        acc__be64(k, first);
        rc = store_del(t, a->rev, k, sizeof k, e);
        if (rc && rc != WERR_NOTFOUND) {
            return rc;
        }
    }
    return 0;
}

int acc__rev_append(struct access *a, struct store_txn *t,
                    const struct dom_ctx *ctx, Warden__V1__RevocationEvent *ev,
                    uint64_t *rev_out, struct werr *e)
{
    uint64_t rev = 0;
    int rc = acc_revision(a, t, &rev, e);
    if (rc) {
        return rc;
    }
    rev++;
    ev->revision = rev;
    ev->index = ctx->index;
    ev->time_ms = ctx->time_ms;
    uint8_t b[8];
    acc__be64(b, rev);
    if ((rc = acc__put_msg(t, a->rev, rev, &ev->base, e)) != 0 ||
        (rc = store_put(t, a->meta, META_REV, strlen(META_REV), b, sizeof b, 0,
                        e)) != 0) {
        return rc;
    }
    if (rev_out != NULL) {
        *rev_out = rev;
    }
    return prune(a, t, rev, e);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

void acc__strv_free(char **v, size_t n)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

int acc__gateways_of(struct access *a, struct store_txn *t,
                     char *const *ids, size_t n, char ***out, size_t *n_out,
                     struct werr *e)
{
    char **v = calloc(n + 1, sizeof *v);
    size_t m = 0;
    int rc = 0;
    if (v == NULL) {
        return werr_set(e, WERR_NOMEM, "gateways of %zu devices", n);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        Warden__V1__Device *d = NULL;
        struct werr le = {0};
        int grc = inv_get(a->inv, t, ids[i], &d, &le);
        const char *gw = "*";
        if (grc == 0 && d->gateway_id[0] != '\0') {
            gw = d->gateway_id;
        } else if (grc != 0 && grc != WERR_NOTFOUND && grc != WERR_INVALID) {
            *e = le;
            rc = grc;
            break;
        }
        int dup = 0;
        for (size_t j = 0; j < m && !dup; j++) {
            dup = strcmp(v[j], gw) == 0;
        }
        if (!dup && (v[m] = strdup(gw)) == NULL) {
            rc = werr_set(e, WERR_NOMEM, "gateway name");
        } else if (!dup) {
            m++;
        }
        inv_device_free(d);
    }
    if (rc) {
        acc__strv_free(v, m);
        return rc;
    }
    qsort(v, m, sizeof *v, cmp_str);
    *out = v;
    *n_out = m;
    return 0;
}

void acc_rev_page_free(struct acc_rev_page *p)
{
    for (size_t i = 0; i < p->n; i++) {
        acc_msg_free(p->events[i]);
    }
    free(p->events);
    memset(p, 0, sizeof *p);
}

static int for_gateway(const Warden__V1__RevocationEvent *ev, const char *gw)
{
    if (gw == NULL || gw[0] == '\0') {
        return 1;
    }
    for (size_t i = 0; i < ev->n_gateways; i++) {
        if (strcmp(ev->gateways[i], "*") == 0 || strcmp(ev->gateways[i], gw) == 0) {
            return 1;
        }
    }
    return 0;
}

int acc_revlog_read(struct access *a, struct store_txn *t, const char *gateway,
                    uint64_t after, size_t max, struct acc_rev_page *out,
                    struct werr *e)
{
    memset(out, 0, sizeof *out);
    if (max == 0) {
        max = ACC_REVLOG_READ_DEFAULT;
    }
    if (max > ACC_REVLOG_READ_MAX) {
        max = ACC_REVLOG_READ_MAX;
    }
    uint64_t latest = 0, first = 0;
    int rc = acc_revision(a, t, &latest, e);
    if (rc == 0) {
        rc = oldest(a, t, &first, e);
    }
    if (rc) {
        return rc;
    }
    out->latest = latest;
    out->next = after;
    if (after > latest) {
        return werr_set(e, WERR_UNAVAIL,
                        "revision %llu is ahead of this node's log (latest %llu)",
                        (unsigned long long)after, (unsigned long long)latest);
    }
    if (after == latest) {
        return 0; /* nothing new: a progress answer */
    }
    /* Events after `after` exist; the next one must still be retained. */
    if (first == 0 || after + 1 < first) {
        return werr_set(e, WERR_RANGE,
                        "revision %llu fell behind retention (oldest kept "
                        "%llu, latest %llu): resync",
                        (unsigned long long)after, (unsigned long long)first,
                        (unsigned long long)latest);
    }
    out->events = calloc(max, sizeof *out->events);
    if (out->events == NULL) {
        return werr_set(e, WERR_NOMEM, "revocation page of %zu", max);
    }
    struct store_cursor *c;
    if ((rc = store_cursor_open(t, a->rev, &c, e)) != 0) {
        acc_rev_page_free(out);
        return rc;
    }
    uint8_t k0[8];
    acc__be64(k0, after + 1);
    struct store_val k, v;
    size_t scanned = 0;
    rc = store_cursor_seek(c, k0, sizeof k0, &k, &v, e);
    while (rc == 0 && out->n < max && scanned < ACC_REVLOG_SCAN_MAX) {
        Warden__V1__RevocationEvent *ev =
            warden__v1__revocation_event__unpack(NULL, v.len, v.data);
        if (ev == NULL || k.len != 8 || ev->revision != acc__get64(k.data)) {
            acc_msg_free(ev);
            rc = werr_set(e, WERR_CORRUPT, "revocation event does not decode");
            break;
        }
        scanned++;
        out->next = ev->revision;
        if (for_gateway(ev, gateway)) {
            out->events[out->n++] = ev;
        } else {
            acc_msg_free(ev);
        }
        rc = store_cursor_next(c, &k, &v, e);
    }
    store_cursor_close(c);
    if (rc && rc != WERR_NOTFOUND) {
        acc_rev_page_free(out);
        return rc;
    }
    return 0;
}
