/* recover.c - offline raft_uv maintenance (recover.h). Each entry point
 * runs a private uv loop: raft_uv needs one for its close and for the
 * snapshot write (a uv_work job), and nothing else may be on it. */
#include "consensus/recover.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

/* raft.h error codes that offline work can see, as warden codes. */
static int rv_to_werr(int rv)
{
    switch (rv) {
    case 0: return 0;
    case RAFT_NOMEM: return WERR_NOMEM;
    case RAFT_CANTBOOTSTRAP: return WERR_PRECOND;
    case RAFT_CORRUPT: return WERR_CORRUPT;
    case RAFT_NOSPACE: return WERR_FULL;
    case RAFT_BADID:
    case RAFT_INVALID:
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS: return WERR_CONFIG;
    default: return WERR_IO;
    }
}

/* One offline raft_uv instance: loop, placeholder transport (never
 * listens or dials: the node is stopped), io. */
struct off {
    uv_loop_t loop;
    struct raft_uv_transport transport;
    struct raft_io io;
    int loop_ok, transport_ok, io_ok;
    char address[WNODE_ADDR_MAX];
};

static int conf_build(struct raft_configuration *conf, unsigned id,
                      const struct wnode_peer *peers, unsigned n,
                      char *self_addr, size_t self_cap, struct werr *e)
{
    int found = 0;
    raft_configuration_init(conf);
    if (n == 0 || n > WNODE_MEMBERS_MAX)
        return werr_set(e, WERR_CONFIG, "%u members (1..%u)", n,
                        WNODE_MEMBERS_MAX);
    for (unsigned i = 0; i < n; i++) {
        char a[WNODE_ADDR_MAX];
        int k = snprintf(a, sizeof a, "%s/%s", peers[i].peer_addr,
                         peers[i].client_addr);
        int rv;
        if (peers[i].id == 0 || k < 0 || (size_t)k >= sizeof a ||
            wnode_addr_split(a, NULL, 0, NULL, 0) != 0) {
            raft_configuration_close(conf);
            return werr_set(e, WERR_CONFIG, "member %u: bad id or address",
                            peers[i].id);
        }
        rv = raft_configuration_add(conf, peers[i].id, a, RAFT_VOTER);
        if (rv != 0) {
            raft_configuration_close(conf);
            return werr_set(e, rv_to_werr(rv), "member %u: %s", peers[i].id,
                            raft_strerror(rv));
        }
        if (peers[i].id == id) {
            snprintf(self_addr, self_cap, "%s", a);
            found = 1;
        }
    }
    if (!found) {
        raft_configuration_close(conf);
        return werr_set(e, WERR_CONFIG, "node %u is not in the new "
                                        "configuration", id);
    }
    return 0;
}

static void off_close_cb(struct raft_io *io)
{
    (void)io;
}

static void off_transport_close_cb(struct raft_uv_transport *t)
{
    (void)t;
}

/* Close in reverse order and run the loop until every handle is gone. */
static void off_close(struct off *o)
{
    if (o->io_ok) {
        o->io.close(&o->io, off_close_cb);
        uv_run(&o->loop, UV_RUN_DEFAULT);
        raft_uv_close(&o->io);
    }
    if (o->transport_ok)
        raft_uv_tcp_close(&o->transport);
    (void)off_transport_close_cb;
    if (o->loop_ok) {
        uv_run(&o->loop, UV_RUN_DEFAULT);
        uv_loop_close(&o->loop);
    }
}

static int off_open(struct off *o, const char *raft_dir, struct werr *e)
{
    int rv;
    memset(o, 0, sizeof *o);
    if (mkdir(raft_dir, 0700) != 0 && errno != EEXIST)
        return werr_set(e, WERR_IO, "mkdir %s: %s", raft_dir, strerror(errno));
    if ((rv = uv_loop_init(&o->loop)) != 0)
        return werr_set(e, WERR_IO, "uv_loop_init: %s", uv_strerror(rv));
    o->loop_ok = 1;
    o->transport.version = 1; /* raft_uv_tcp_init checks it */
    if ((rv = raft_uv_tcp_init(&o->transport, &o->loop)) != 0)
        return werr_set(e, rv_to_werr(rv), "raft_uv_tcp_init: %s",
                        raft_strerror(rv));
    o->transport_ok = 1;
    if ((rv = raft_uv_init(&o->io, &o->loop, raft_dir, &o->transport)) != 0)
        return werr_set(e, rv_to_werr(rv), "raft_uv_init %s: %s", raft_dir,
                        raft_strerror(rv));
    o->io_ok = 1;
    /* Same rule as the node: a corrupt log is an error, never truncated. */
    raft_uv_set_auto_recovery(&o->io, false);
    return 0;
}

/* The fsm is never called offline (raft_init only checks the version). */
static int stub_apply(struct raft_fsm *f, const struct raft_buffer *b,
                      void **res)
{
    (void)f;
    (void)b;
    (void)res;
    return RAFT_IOERR;
}
static int stub_snapshot(struct raft_fsm *f, struct raft_buffer *b[],
                         unsigned *n)
{
    (void)f;
    (void)b;
    (void)n;
    return RAFT_IOERR;
}
static int stub_restore(struct raft_fsm *f, struct raft_buffer *b)
{
    (void)f;
    (void)b;
    return RAFT_IOERR;
}

static void raft_closed_cb(struct raft *r)
{
    (void)r;
}

/* Is there any raft state (metadata or segment) in dir? */
static int dir_has_raft_files(const char *dir)
{
    static const char *const probe[] = {"metadata1", "metadata2"};
    char p[4096];
    struct stat st;
    for (size_t i = 0; i < sizeof probe / sizeof probe[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, probe[i]);
        if (stat(p, &st) == 0)
            return 1;
    }
    return 0;
}

int wrecover_config(const char *raft_dir, unsigned id,
                    const struct wnode_peer *peers, unsigned n_peers,
                    struct werr *e)
{
    struct raft_configuration conf;
    struct raft_fsm fsm;
    static struct raft raft; /* large; one offline run per process */
    struct off o;
    char self[WNODE_ADDR_MAX];
    int rv;

    if (!dir_has_raft_files(raft_dir))
        return werr_set(e, WERR_NOTFOUND, "%s holds no raft log", raft_dir);
    if ((rv = conf_build(&conf, id, peers, n_peers, self, sizeof self, e)) != 0)
        return rv;
    if ((rv = off_open(&o, raft_dir, e)) != 0)
        goto err_close;
    memset(&fsm, 0, sizeof fsm);
    fsm.version = 1;
    fsm.apply = stub_apply;
    fsm.snapshot = stub_snapshot;
    fsm.restore = stub_restore;
    memset(&raft, 0, sizeof raft);
    if ((rv = raft_init(&raft, &o.io, &fsm, id, self)) != 0) {
        rv = werr_set(e, rv_to_werr(rv), "raft_init: %s", raft_errmsg(&raft));
        goto err_close;
    }
    /* raft_init took the io: raft_close closes it. */
    o.io_ok = 0;
    rv = raft_recover(&raft, &conf);
    if (rv != 0)
        rv = werr_set(e, rv_to_werr(rv), "raft_recover: %s (%s)",
                      raft_strerror(rv), raft.io->errmsg);
    raft_close(&raft, raft_closed_cb);
    uv_run(&o.loop, UV_RUN_DEFAULT);
    raft_uv_close(&o.io);
    off_close(&o);
    raft_configuration_close(&conf);
    return rv;

err_close:
    off_close(&o);
    raft_configuration_close(&conf);
    return rv;
}

struct put_wait {
    int done;
    int status;
};

static void put_cb(struct raft_io_snapshot_put *req, int status)
{
    struct put_wait *w = req->data;
    w->done = 1;
    w->status = status;
}

/* io->init + io->load on a pristine dir: start_index 1, no entries. */
static int off_load_pristine(struct off *o, unsigned id, const char *self,
                             const char *raft_dir, struct werr *e)
{
    raft_term term = 0;
    raft_id vote = 0;
    struct raft_snapshot *snap = NULL;
    raft_index start = 0;
    struct raft_entry *entries = NULL;
    size_t n = 0;
    int rv;

    snprintf(o->address, sizeof o->address, "%s", self);
    if ((rv = o->io.init(&o->io, id, o->address)) != 0)
        return werr_set(e, rv_to_werr(rv), "raft_uv init %s: %s", raft_dir,
                        o->io.errmsg);
    if ((rv = o->io.load(&o->io, &term, &vote, &snap, &start, &entries, &n)) != 0)
        return werr_set(e, rv_to_werr(rv), "raft_uv load %s: %s", raft_dir,
                        o->io.errmsg);
    if (snap != NULL || n != 0 || term != 0) {
        /* Not ours to free piecemeal: refuse before touching anything.
         * (Leaks the loaded state; the process exits right after.) */
        return werr_set(e, WERR_PRECOND, "%s is not pristine (term %llu, "
                                         "%zu entries%s)",
                        raft_dir, (unsigned long long)term, n,
                        snap != NULL ? ", a snapshot" : "");
    }
    return 0;
}

int wrecover_install_snapshot(const char *raft_dir, unsigned id,
                              const struct wnode_peer *peers,
                              unsigned n_peers, uint64_t index,
                              const void *data, size_t len, struct werr *e)
{
    struct raft_snapshot snap;
    struct raft_buffer buf;
    struct raft_io_snapshot_put req;
    struct put_wait w = {0, 0};
    struct off o;
    char self[WNODE_ADDR_MAX];
    int rv;

    if (index == 0)
        return werr_set(e, WERR_INVALID, "snapshot index 0");
    if (dir_has_raft_files(raft_dir))
        return werr_set(e, WERR_PRECOND, "%s already holds a raft log",
                        raft_dir);
    memset(&snap, 0, sizeof snap);
    if ((rv = conf_build(&snap.configuration, id, peers, n_peers, self,
                         sizeof self, e)) != 0)
        return rv;
    if ((rv = off_open(&o, raft_dir, e)) != 0)
        goto out;
    if ((rv = off_load_pristine(&o, id, self, raft_dir, e)) != 0)
        goto out;
    /* Term 1 like raft_bootstrap: a fresh cluster's first term. The new
     * leader's entries (index + 1 on) carry later terms, never lower, as
     * Raft §5.3's log matching needs. */
    if ((rv = o.io.set_term(&o.io, 1)) != 0) {
        rv = werr_set(e, rv_to_werr(rv), "set term: %s", o.io.errmsg);
        goto out;
    }
    snap.index = index;
    snap.term = 1;
    snap.configuration_index = index;
    buf.base = (void *)(uintptr_t)data;
    buf.len = len;
    snap.bufs = &buf;
    snap.n_bufs = 1;
    req.data = &w;
    /* trailing 0: raft_uv's "install" mode, the one InstallSnapshot uses:
     * the next append goes to index + 1. */
    if ((rv = o.io.snapshot_put(&o.io, 0, &req, &snap, put_cb)) != 0) {
        rv = werr_set(e, rv_to_werr(rv), "snapshot put: %s", o.io.errmsg);
        goto out;
    }
    while (!w.done && uv_run(&o.loop, UV_RUN_ONCE) != 0)
        ;
    if (!w.done)
        rv = werr_set(e, WERR_INTERNAL, "snapshot put never completed");
    else if (w.status != 0)
        rv = werr_set(e, rv_to_werr(w.status), "snapshot put: %s",
                      raft_strerror(w.status));
out:
    off_close(&o);
    raft_configuration_close(&snap.configuration);
    return rv;
}

int wrecover_bootstrap(const char *raft_dir, unsigned id,
                       const struct wnode_peer *peers, unsigned n_peers,
                       struct werr *e)
{
    struct raft_configuration conf;
    struct off o;
    char self[WNODE_ADDR_MAX];
    int rv;

    if ((rv = conf_build(&conf, id, peers, n_peers, self, sizeof self, e)) != 0)
        return rv;
    if ((rv = off_open(&o, raft_dir, e)) != 0)
        goto out;
    if ((rv = off_load_pristine(&o, id, self, raft_dir, e)) != 0)
        goto out;
    if ((rv = o.io.bootstrap(&o.io, &conf)) != 0)
        rv = werr_set(e, rv_to_werr(rv), "bootstrap: %s", o.io.errmsg);
out:
    off_close(&o);
    raft_configuration_close(&conf);
    return rv;
}
