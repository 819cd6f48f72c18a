/* fsm.c - open, apply and encode for warden's replicated state machine
 * (contract: fsm.h; layout: fsm_int.h; idempotency: fsm_idem.c; snapshot
 * and restore: fsm_snap.c).
 *
 * Apply, per committed entry (issue 3, "Commands and the state machine"):
 *   1. index <= applied index: skipped, nothing read or written (Raft
 *      re-applies entries after the last snapshot on every restart).
 *   2. Decode. An entry that does not decode is a result (WERR_INVALID),
 *      not an error: it was committed, every node sees the same bytes and
 *      reaches the same verdict, and refusing it would wedge the cluster on
 *      that index forever. The applied index advances past it.
 *   3. One write txn: cluster time = max(previous, proposed); idempotency
 *      lookup; the op; the idempotency record; bounded pruning; the applied
 *      index and cluster time. One commit, one fsync: effects and index land
 *      together or not at all (docs/storage.md, "Crash semantics").
 *   4. If the op fails as a command (validation, ALREADY_EXISTS, ...), that
 *      txn is aborted - whatever the op wrote is gone - and a second txn
 *      records only the index, the time and the failed result. A crash
 *      between the two leaves the index unchanged, so the entry is applied
 *      again on restart and fails the same way: still exactly once.
 * Store failures (I/O, full, corrupt, out of memory) are returned
 * negative: they depend on this node, not on the log, so recording them as
 * the command's result would make nodes diverge. The node must stop.
 *
 * Nothing here reads a clock, a random source or the network: time and the
 * index come from the entry (dom.h). */
#include "fsm_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

/* fsm.meta keys. */
#define META_SCHEMA "schema"
#define META_APPLIED "applied_index"
#define META_TIME "cluster_time"

/* Length prefix of an entry (fsm.h). */
#define ENTRY_HDR 4u

void wfsm__put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xffu);
        v >>= 8;
    }
}

uint64_t wfsm__get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

void wfsm_result_free(struct wfsm_result *r)
{
    if (r == NULL) {
        return;
    }
    free(r->resp);
    r->resp = NULL;
    r->resp_len = 0;
}

/* ---- state: store, dbs, inventory, meta ---------------------------------*/

static int meta_get_u64(struct wfsm *f, struct store_txn *t, const char *key,
                        uint64_t *out, struct werr *e)
{
    struct store_val v;
    int rc = store_get(t, f->dbi_meta, key, strlen(key), &v, e);
    if (rc == WERR_NOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rc) {
        return rc;
    }
    if (v.len != 8) {
        return werr_set(e, WERR_CORRUPT, "fsm.meta %s: %zu bytes, want 8",
                        key, v.len);
    }
    *out = wfsm__get_be64(v.data);
    return 0;
}

static int meta_put_u64(struct wfsm *f, struct store_txn *t, const char *key,
                        uint64_t v, struct werr *e)
{
    uint8_t b[8];
    wfsm__put_be64(b, v);
    return store_put(t, f->dbi_meta, key, strlen(key), b, sizeof b, 0, e);
}

/* Write the schema version on first use; refuse one we do not know, rather
 * than misread a newer build's records. */
static int meta_schema(struct wfsm *f, struct werr *e)
{
    struct store_txn *t;
    int rc = store_txn_begin(f->s, 1, &t, e);
    if (rc) {
        return rc;
    }
    struct store_val v;
    rc = store_get(t, f->dbi_meta, META_SCHEMA, strlen(META_SCHEMA), &v, e);
    if (rc == WERR_NOTFOUND) {
        uint8_t b[4];
        put_be32(b, WFSM_SCHEMA_VERSION);
        rc = store_put(t, f->dbi_meta, META_SCHEMA, strlen(META_SCHEMA), b,
                       sizeof b, 0, e);
        if (rc) {
            store_txn_abort(t);
            return rc;
        }
        return store_txn_commit(t, e);
    }
    if (rc) {
        store_txn_abort(t);
        return rc;
    }
    if (v.len != 4) {
        store_txn_abort(t);
        return werr_set(e, WERR_CORRUPT, "fsm.meta schema: %zu bytes", v.len);
    }
    uint32_t ver = get_be32(v.data);
    store_txn_abort(t);
    if (ver != WFSM_SCHEMA_VERSION) {
        return werr_set(e, WERR_UNSUPPORTED,
                        "fsm schema version %u, this build knows %u", ver,
                        WFSM_SCHEMA_VERSION);
    }
    return 0;
}

static int meta_load(struct wfsm *f, struct werr *e)
{
    struct store_txn *t;
    int rc = store_txn_begin(f->s, 0, &t, e);
    if (rc) {
        return rc;
    }
    rc = meta_get_u64(f, t, META_APPLIED, &f->applied, e);
    if (rc == 0) {
        rc = meta_get_u64(f, t, META_TIME, &f->ctime, e);
    }
    store_txn_abort(t);
    return rc;
}

int wfsm__state_open(struct wfsm *f, struct werr *e)
{
    struct store_config cfg = {.path = f->dir, .map_size = f->map_size};
    int rc = store_open(&f->s, &cfg, e);
    if (rc) {
        f->s = NULL;
        return rc;
    }
    if ((rc = store_dbi(f->s, "fsm.meta", &f->dbi_meta, e)) != 0 ||
        (rc = store_dbi(f->s, "fsm.idem", &f->dbi_idem, e)) != 0 ||
        (rc = store_dbi(f->s, "fsm.idem_by_index", &f->dbi_idem_idx, e)) != 0 ||
        (rc = meta_schema(f, e)) != 0 || (rc = meta_load(f, e)) != 0) {
        goto err_close_store;
    }
    rc = inv_open(&f->inv, f->s, e);
    if (rc) {
        goto err_close_store;
    }
    return 0;

err_close_store:
    store_close(f->s);
    f->s = NULL;
    f->inv = NULL;
    return rc;
}

void wfsm__state_close(struct wfsm *f)
{
    inv_close(f->inv);
    store_close(f->s);
    f->inv = NULL;
    f->s = NULL;
}

int wfsm_open(struct wfsm **out, const char *db_dir, size_t map_size,
              struct werr *e)
{
    if (db_dir == NULL || db_dir[0] == '\0') {
        return werr_set(e, WERR_INVALID, "wfsm_open: no db_dir");
    }
    size_t n = strlen(db_dir);
    if (n + WFSM_SUFFIX_MAX + sizeof "/data.mdb" > WFSM_PATH_MAX) {
        return werr_set(e, WERR_INVALID, "wfsm_open: db_dir longer than %d",
                        (int)(WFSM_PATH_MAX - WFSM_SUFFIX_MAX - 10));
    }
    struct wfsm *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return werr_set(e, WERR_NOMEM, "wfsm_open: allocating");
    }
    memcpy(f->dir, db_dir, n + 1);
    /* Strip trailing slashes: "<db_dir>.old" must be a sibling, not a
     * child. */
    while (n > 1 && f->dir[n - 1] == '/') {
        f->dir[--n] = '\0';
    }
    const char *slash = strrchr(f->dir, '/');
    if (slash == NULL) {
        strcpy(f->parent, ".");
    } else if (slash == f->dir) {
        strcpy(f->parent, "/");
    } else {
        memcpy(f->parent, f->dir, (size_t)(slash - f->dir));
        f->parent[slash - f->dir] = '\0';
    }
    f->map_size = map_size ? map_size : STORE_MAP_SIZE_DEFAULT;
    f->idem_window = WFSM_IDEM_WINDOW;

    int rc = wfsm__recover(f, e);
    if (rc == 0) {
        rc = wfsm__state_open(f, e);
    }
    if (rc) {
        free(f);
        return werr_wrap(e, "wfsm_open %s", db_dir);
    }
    *out = f;
    return 0;
}

void wfsm_close(struct wfsm *f)
{
    if (f == NULL) {
        return;
    }
    wfsm__state_close(f);
    free(f);
}

struct store *wfsm_store(struct wfsm *f)
{
    return f->s;
}

struct inv *wfsm_inv(struct wfsm *f)
{
    return f->inv;
}

uint64_t wfsm_applied_index(const struct wfsm *f)
{
    return f->applied;
}

uint64_t wfsm_cluster_time(const struct wfsm *f)
{
    return f->ctime;
}

void wfsm_set_idem_window(struct wfsm *f, uint64_t entries)
{
    f->idem_window = entries ? entries : 1;
}

uint64_t wfsm_idem_window(const struct wfsm *f)
{
    return f->idem_window;
}

void wfsm_test_fail_op_at(struct wfsm *f, uint64_t index)
{
    f->fail_op_at = index;
}

/* ---- encode / decode ----------------------------------------------------*/

int wfsm_cmd_encode(const Warden__V1__Command *cmd, uint8_t **buf,
                    size_t *len, struct werr *e)
{
    if (cmd == NULL) {
        return werr_set(e, WERR_INVALID, "wfsm_cmd_encode: no command");
    }
    size_t n = warden__v1__command__get_packed_size(cmd);
    if (n > WFSM_CMD_MAX - ENTRY_HDR) {
        return werr_set(e, WERR_LIMIT,
                        "wfsm_cmd_encode: command is %zu bytes, limit %zu", n,
                        WFSM_CMD_MAX - ENTRY_HDR);
    }
    size_t total = (ENTRY_HDR + n + WFSM_ENTRY_ALIGN - 1) /
                   WFSM_ENTRY_ALIGN * WFSM_ENTRY_ALIGN;
    uint8_t *b = calloc(1, total); /* calloc: the padding is zero */
    if (b == NULL) {
        return werr_set(e, WERR_NOMEM, "wfsm_cmd_encode: %zu bytes", total);
    }
    put_be32(b, (uint32_t)n);
    warden__v1__command__pack(cmd, b + ENTRY_HDR);
    *buf = b;
    *len = total;
    return 0;
}

/* protobuf-c returns NULL both for bad input and for a failed allocation.
 * The first is the command's verdict (the same on every node); the second
 * is this node's problem and must not become a result. This allocator
 * tells them apart. */
struct track_alloc {
    ProtobufCAllocator a;
    int failed;
};

static void *track_alloc_cb(void *data, size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        ((struct track_alloc *)data)->failed = 1;
    }
    return p;
}

static void track_free_cb(void *data, void *p)
{
    (void)data;
    free(p);
}

static void track_init(struct track_alloc *ta)
{
    ta->a.alloc = track_alloc_cb;
    ta->a.free = track_free_cb;
    ta->a.allocator_data = ta;
    ta->failed = 0;
}

/* Decode an entry. Returns 0 with *out set, WERR_INVALID with `why` set
 * (malformed: a result), or a negative node error in e. */
static int cmd_decode(const uint8_t *b, size_t len, struct track_alloc *ta,
                      Warden__V1__Command **out, char *why, size_t why_cap,
                      struct werr *e)
{
    *out = NULL;
    if (b == NULL || len < ENTRY_HDR) {
        snprintf(why, why_cap, "entry of %zu bytes has no length prefix", len);
        return WERR_INVALID;
    }
    if (len > WFSM_CMD_MAX) {
        snprintf(why, why_cap, "entry of %zu bytes exceeds WFSM_CMD_MAX %zu",
                 len, WFSM_CMD_MAX);
        return WERR_INVALID;
    }
    size_t n = get_be32(b);
    size_t want = (ENTRY_HDR + n + WFSM_ENTRY_ALIGN - 1) / WFSM_ENTRY_ALIGN *
                  WFSM_ENTRY_ALIGN;
    if (n > len - ENTRY_HDR || want != len) {
        snprintf(why, why_cap,
                 "entry of %zu bytes does not fit length prefix %zu", len, n);
        return WERR_INVALID;
    }
    for (size_t i = ENTRY_HDR + n; i < len; i++) {
        if (b[i] != 0) {
            snprintf(why, why_cap, "non-zero padding at byte %zu", i);
            return WERR_INVALID;
        }
    }
    Warden__V1__Command *c = warden__v1__command__unpack(&ta->a, n, b + ENTRY_HDR);
    if (c == NULL) {
        if (ta->failed) {
            return werr_set(e, WERR_NOMEM, "decoding a %zu-byte command", n);
        }
        snprintf(why, why_cap, "command of %zu bytes does not decode", n);
        return WERR_INVALID;
    }
    *out = c;
    return 0;
}

/* ---- apply --------------------------------------------------------------*/

/* Failures that depend on this node (its disk, memory, build), not on the
 * log: they must stop the node rather than become a command's result. */
static int node_fatal(int code)
{
    switch (code) {
    case WERR_NOMEM:
    case WERR_IO:
    case WERR_CORRUPT:
    case WERR_FULL:
    case WERR_BUSY:
    case WERR_INTERNAL:
    case WERR_ABORTED:
    case WERR_UNSUPPORTED:
        return 1;
    default:
        return 0;
    }
}

/* The command's own failure: set res and say so. */
static int cmd_fail(struct wfsm_result *res, const struct werr *oe)
{
    res->code = oe->code;
    snprintf(res->msg, sizeof res->msg, "%s", oe->msg);
    wfsm_result_free(res);
    return 1;
}

#define OP_FAILED 1 /* op_run: the command failed; res says how */

static int op_enroll(struct wfsm *f, struct store_txn *t,
                     const struct dom_ctx *ctx,
                     const Warden__V1__EnrollDeviceRequest *req,
                     struct wfsm_result *res, struct werr *e)
{
    struct werr oe = {0};
    Warden__V1__Device *dev = NULL;
    int rc = inv_enroll(f->inv, t, ctx, req, &dev, &oe);
    if (rc) {
        if (node_fatal(rc)) {
            *e = oe;
            return rc;
        }
        return cmd_fail(res, &oe);
    }
    Warden__V1__EnrollDeviceResponse r = WARDEN__V1__ENROLL_DEVICE_RESPONSE__INIT;
    r.device = dev;
    size_t n = warden__v1__enroll_device_response__get_packed_size(&r);
    res->resp = malloc(n ? n : 1);
    if (res->resp == NULL) {
        inv_device_free(dev);
        return werr_set(e, WERR_NOMEM, "packing EnrollDeviceResponse");
    }
    res->resp_len = warden__v1__enroll_device_response__pack(&r, res->resp);
    inv_device_free(dev);
    return 0;
}

/* Run the command's op in t. 0: done (res->resp may be set); OP_FAILED: the
 * command failed (res->code/msg), t holds writes that must be dropped;
 * negative: node failure. */
static int op_run(struct wfsm *f, struct store_txn *t, uint64_t index,
                  uint64_t ctime, const Warden__V1__Command *cmd,
                  struct wfsm_result *res, struct werr *e)
{
    struct principal who = {.role = cmd->principal_role};
    snprintf(who.name, sizeof who.name, "%s", cmd->principal_name);
    struct dom_ctx ctx = {.index = index, .time_ms = ctime, .who = &who};
    int rc;
    switch (cmd->op_case) {
    case WARDEN__V1__COMMAND__OP_TICK:
        rc = 0;
        break;
    case WARDEN__V1__COMMAND__OP_ENROLL_DEVICE:
        rc = op_enroll(f, t, &ctx, cmd->enroll_device, res, e);
        break;
    case WARDEN__V1__COMMAND__OP__NOT_SET:
    default:
        if (cmd->base.n_unknown_fields > 0) {
            /* A newer build's op. Applying it as a no-op here while newer
             * nodes apply it would fork the state; stopping is the safe
             * answer (upgrade this node). */
            return werr_set(e, WERR_UNSUPPORTED,
                            "entry %llu carries an op this build does not "
                            "know (%u unknown fields)",
                            (unsigned long long)index,
                            (unsigned)cmd->base.n_unknown_fields);
        }
        res->code = WERR_INVALID;
        snprintf(res->msg, sizeof res->msg, "command has no op");
        return 0; /* nothing written: no need to drop t */
    }
    if (rc == 0 && f->fail_op_at == index) {
        struct werr oe;
        werr_set(&oe, WERR_PRECOND, "injected failure after the op (test)");
        return cmd_fail(res, &oe);
    }
    return rc;
}

/* Check the principal and key sizes; build the fsm.idem key. Returns 0 (no
 * key, *klen = 0), 1 (key built) or sets res to WERR_INVALID and returns
 * -1. */
static int idem_key_of(const Warden__V1__Command *cmd, uint8_t *k,
                       size_t *klen, struct wfsm_result *res)
{
    *klen = 0;
    if (strlen(cmd->principal_name) > PRINCIPAL_NAME_MAX) {
        res->code = WERR_INVALID;
        snprintf(res->msg, sizeof res->msg,
                 "principal_name longer than %d bytes", PRINCIPAL_NAME_MAX);
        return -1;
    }
    if (cmd->idempotency_key[0] == '\0') {
        return 0;
    }
    *klen = wfsm__idem_key(cmd->principal_name, cmd->idempotency_key, k);
    if (*klen == 0) {
        res->code = WERR_INVALID;
        snprintf(res->msg, sizeof res->msg,
                 "idempotency_key longer than %d bytes",
                 INV_IDEMPOTENCY_KEY_MAX);
        return -1;
    }
    return 1;
}

/* One attempt at applying `cmd` (NULL: malformed, res already says so) at
 * `index` in one write txn. run_op = 0 is the second attempt after the op
 * failed: record the failure in res, nothing else. Returns 0 (committed),
 * OP_FAILED (nothing committed; retry with run_op = 0) or negative. */
static int apply_txn(struct wfsm *f, uint64_t index,
                     const Warden__V1__Command *cmd, int run_op,
                     struct wfsm_result *res, struct werr *e)
{
    struct store_txn *t;
    int rc = store_txn_begin(f->s, 1, &t, e);
    if (rc) {
        return rc;
    }
    uint64_t ctime = f->ctime;
    uint8_t k[WFSM_IDEM_KEY_MAX];
    size_t klen = 0;
    if (cmd != NULL) {
        /* Cluster time never goes backwards (issue 3). */
        if (cmd->cluster_time_ms > ctime) {
            ctime = cmd->cluster_time_ms;
        }
        /* On the second attempt the key was valid (the op ran), so this
         * only rebuilds k and leaves res alone. */
        int has_key = idem_key_of(cmd, k, &klen, res);
        if (run_op && has_key > 0) {
            rc = wfsm__idem_lookup(f, t, index, k, klen, res, e);
            if (rc < 0) {
                goto err_abort;
            }
        }
        if (run_op && has_key >= 0 && !res->replayed) {
            rc = op_run(f, t, index, ctime, cmd, res, e);
            if (rc != 0) {
                store_txn_abort(t);
                return rc; /* OP_FAILED or negative */
            }
        }
        if (klen > 0 && !res->replayed) {
            rc = wfsm__idem_record(f, t, index, k, klen, res, e);
            if (rc) {
                goto err_abort;
            }
        }
    }
    if ((rc = wfsm__idem_prune(f, t, index, e)) != 0 ||
        (rc = meta_put_u64(f, t, META_APPLIED, index, e)) != 0 ||
        (rc = meta_put_u64(f, t, META_TIME, ctime, e)) != 0) {
        goto err_abort;
    }
    rc = store_txn_commit(t, e);
    if (rc) {
        return rc;
    }
    f->applied = index;
    f->ctime = ctime;
    return 0;

err_abort:
    store_txn_abort(t);
    return rc;
}

int wfsm_apply(struct wfsm *f, uint64_t index, const void *buf, size_t len,
               struct wfsm_result *res, struct werr *e)
{
    struct werr e_local;
    if (e == NULL) {
        e = &e_local; /* e is optional (err.h); we copy into it below */
    }
    memset(res, 0, sizeof *res);
    if (f->s == NULL) {
        return werr_set(e, WERR_PRECOND,
                        "wfsm_apply: fsm unusable after a failed restore");
    }
    if (index <= f->applied) {
        res->skipped = 1;
        return 0;
    }
    struct track_alloc ta;
    track_init(&ta);
    Warden__V1__Command *cmd = NULL;
    char why[WERR_MSG_MAX];
    int rc = cmd_decode(buf, len, &ta, &cmd, why, sizeof why, e);
    if (rc == WERR_INVALID) {
        char idx[24];
        snprintf(idx, sizeof idx, "%llu", (unsigned long long)index);
        wlog(WLOG_ERROR, "fsm: committed entry is malformed; skipped",
             "index", idx, "error", why, NULL);
        res->code = WERR_INVALID;
        snprintf(res->msg, sizeof res->msg, "malformed entry %s: %.200s", idx,
                 why);
    } else if (rc) {
        return werr_wrap(e, "wfsm_apply %llu", (unsigned long long)index);
    }

    rc = apply_txn(f, index, cmd, 1, res, e);
    if (rc == OP_FAILED) {
        /* Drop the op's writes; keep its verdict, the index and the time. */
        rc = apply_txn(f, index, cmd, 0, res, e);
    }
    if (cmd != NULL) {
        warden__v1__command__free_unpacked(cmd, &ta.a);
    }
    if (rc) {
        wfsm_result_free(res);
        return werr_wrap(e, "wfsm_apply %llu", (unsigned long long)index);
    }
    return 0;
}
