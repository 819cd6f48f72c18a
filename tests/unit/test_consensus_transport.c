/* test_consensus_transport.c - a 3-node raft cluster in one process and one
 * uv loop over consensus/transport_tls (mutual TLS 1.3 on 127.0.0.1), plus
 * rogue clients that must be refused without disturbing the cluster.
 *
 * Certificates are generated here (EC P-256): a cluster CA, peer certs with
 * SAN URI warden://role/peer/n<id>, and for the negative cases a cert from a
 * foreign CA, a cluster-CA cert with the wrong role, and a valid peer cert
 * whose name does not match the raft id it claims.
 *
 * Every wait is bounded by one uv timer (TEST_DEADLINE_MS). On failure the
 * test prints the phase, each node's state and FSM history. */
#include <dirent.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "consensus/transport_tls.h"
#include "consensus_testutil.h"
#include "unit.h"

#define N_NODES 3
/* Whole-test bound; a healthy run takes about a second. */
#define TEST_DEADLINE_MS 30000
#define POLL_MS 20
/* Entries applied before and after the rogue clients. */
#define N_ENTRIES_FIRST 5
#define N_ENTRIES_TOTAL 6
/* raft 0.22.1 wants entry payloads padded to 8 bytes. */
#define ENTRY_LEN 8
#define FSM_HISTORY_MAX 32
#define N_ROGUES 6
/* Nodes' handshake timeout here; the silent rogue must be dropped by it. */
#define TEST_HANDSHAKE_TIMEOUT_MS 1000

enum phase { PH_ELECT, PH_REPLICATE, PH_ROGUES, PH_FINAL, PH_CLOSING, PH_DONE };

struct node {
    struct world *w;
    raft_id id;
    char address[32];
    char dir[64];
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft raft;
    unsigned n_applied;
    raft_index idx[FSM_HISTORY_MAX];
    char val[FSM_HISTORY_MAX][ENTRY_LEN + 1];
    int closed;
};

enum rogue_kind {
    ROGUE_FOREIGN_CA,   /* cert from another CA */
    ROGUE_NO_CERT,      /* TLS without a client certificate */
    ROGUE_WRONG_ROLE,   /* cluster CA, role admin */
    ROGUE_WRONG_ID,     /* cluster CA, peer n9, claims id 1 */
    ROGUE_PLAINTEXT,    /* raw raft_uv handshake bytes, no TLS */
    ROGUE_SILENT,       /* connects and says nothing */
};

struct rogue {
    struct world *w;
    enum rogue_kind kind;
    struct raft_uv_transport t;
    int t_init;
    struct raft_uv_connect req;
    uv_tcp_t tcp;             /* ROGUE_PLAINTEXT and ROGUE_SILENT */
    uv_connect_t creq;
    uv_write_t wreq;
    uv_stream_t *stream;
    char inject[64];
    int connect_status;
    int got_eof;
    int done;
};

struct world {
    uv_loop_t loop;
    uv_timer_t deadline;
    uv_timer_t poll;
    enum phase phase;
    int timed_out;
    struct node nodes[N_NODES];
    struct raft_apply applies[N_ENTRIES_TOTAL];
    int apply_status[N_ENTRIES_TOTAL];
    unsigned n_proposed, n_apply_cb;
    struct rogue rogues[N_ROGUES];
    unsigned n_rogues_closed;
    unsigned n_nodes_closed;
    unsigned long refused_before, refused_after;
    char certdir[64];
    char readbuf[4096];
};

/* ---- certificates ----------------------------------------------------------- */

static SSL_CTX *ctx_for(struct world *w, const char *ca, const char *base)
{
    char cap[128], cert[128], key[128];
    SSL_CTX *ctx = NULL;
    struct werr e;

    snprintf(cap, sizeof cap, "%s/%s.pem", w->certdir, ca);
    snprintf(cert, sizeof cert, "%s/%s.pem", w->certdir, base);
    snprintf(key, sizeof key, "%s/%s-key.pem", w->certdir, base);
    if (consensus_tls_ctx_new(cap, cert, key, &ctx, &e) != 0) {
        fprintf(stderr, "ctx %s: %s\n", base, e.msg);
        return NULL;
    }
    return ctx;
}

/* Peer ids are bound to certificate names: server id N must present
 * warden://role/peer/nN. */
static int authorize_by_name(void *arg, raft_id id, const struct principal *p)
{
    char want[PRINCIPAL_NAME_MAX + 1];
    (void)arg;
    snprintf(want, sizeof want, "n%llu", id);
    return strcmp(want, p->name) == 0;
}

/* ---- FSM -------------------------------------------------------------------- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
    struct node *n = fsm->data;
    *result = NULL;
    if (n->n_applied >= FSM_HISTORY_MAX || buf->len != ENTRY_LEN)
        return RAFT_INVALID;
    n->idx[n->n_applied] = raft_last_applied(&n->raft) + 1;
    memcpy(n->val[n->n_applied], buf->base, ENTRY_LEN);
    n->val[n->n_applied][ENTRY_LEN] = '\0';
    n->n_applied++;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
    (void)fsm;
    (void)bufs;
    (void)n_bufs;
    return RAFT_INVALID;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    (void)fsm;
    (void)buf;
    return RAFT_INVALID;
}

/* ---- driver ----------------------------------------------------------------- */

static void handle_closed_cb(uv_handle_t *h)
{
    (void)h;
}

static void maybe_done(struct world *w)
{
    if (w->phase != PH_CLOSING || w->n_nodes_closed < N_NODES ||
        w->n_rogues_closed < N_ROGUES)
        return;
    w->phase = PH_DONE;
    uv_close((uv_handle_t *)&w->deadline, handle_closed_cb);
    uv_close((uv_handle_t *)&w->poll, handle_closed_cb);
}

static void node_closed_cb(struct raft *r)
{
    struct node *n = r->data;
    raft_uv_close(&n->io);
    consensus_tls_transport_close(&n->transport);
    n->closed = 1;
    n->w->n_nodes_closed++;
    maybe_done(n->w);
}

static void rogue_transport_closed_cb(struct raft_uv_transport *t)
{
    struct rogue *g = t->data;
    consensus_tls_transport_close(t);
    g->w->n_rogues_closed++;
    maybe_done(g->w);
}

static void rogue_finish(struct rogue *g)
{
    if (g->done)
        return;
    g->done = 1;
    if (g->kind >= ROGUE_PLAINTEXT) {
        g->w->n_rogues_closed++;
        return; /* tcp handle closed by the caller */
    }
    g->t.close(&g->t, rogue_transport_closed_cb);
}

static void begin_close(struct world *w)
{
    if (w->phase >= PH_CLOSING)
        return;
    w->phase = PH_CLOSING;
    uv_timer_stop(&w->poll);
    uv_timer_stop(&w->deadline);
    for (int i = 0; i < N_ROGUES; i++) {
        struct rogue *g = &w->rogues[i];
        if (!g->t_init && g->kind < ROGUE_PLAINTEXT) {
            g->done = 1;
            w->n_rogues_closed++;
        } else if (!g->done) {
            /* Still running at deadline: tear down what we own. */
            if (g->stream != NULL) {
                uv_close((uv_handle_t *)g->stream, (uv_close_cb)raft_free);
                g->stream = NULL;
            }
            if (g->kind >= ROGUE_PLAINTEXT && !uv_is_closing((uv_handle_t *)&g->tcp))
                uv_close((uv_handle_t *)&g->tcp, handle_closed_cb);
            rogue_finish(g);
        }
    }
    for (int i = 0; i < N_NODES; i++)
        raft_close(&w->nodes[i].raft, node_closed_cb);
    maybe_done(w);
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct world *w = req->data;
    (void)result;
    w->apply_status[req - w->applies] = status;
    w->n_apply_cb++;
}

static struct node *leader_of(struct world *w)
{
    for (int i = 0; i < N_NODES; i++)
        if (raft_state(&w->nodes[i].raft) == RAFT_LEADER)
            return &w->nodes[i];
    return NULL;
}

static int propose(struct world *w, struct node *leader)
{
    struct raft_buffer buf;
    unsigned k = w->n_proposed;
    char v[ENTRY_LEN + 1];
    int rv;

    buf.len = ENTRY_LEN;
    buf.base = raft_calloc(1, ENTRY_LEN);
    if (buf.base == NULL)
        return RAFT_NOMEM;
    snprintf(v, sizeof v, "entry%03u", k);
    memcpy(buf.base, v, ENTRY_LEN);
    w->applies[k].data = w;
    rv = raft_apply(&leader->raft, &w->applies[k], &buf, 1, apply_cb);
    if (rv != 0) {
        fprintf(stderr, "raft_apply: %s\n", raft_errmsg(&leader->raft));
        return rv;
    }
    w->n_proposed++;
    return 0;
}

static int all_applied(struct world *w, unsigned n)
{
    for (int i = 0; i < N_NODES; i++)
        if (w->nodes[i].n_applied < n)
            return 0;
    return w->n_apply_cb >= n;
}

static unsigned long refused_total(struct world *w)
{
    unsigned long sum = 0;
    for (int i = 0; i < N_NODES; i++)
        sum += consensus_tls_transport_refused(&w->nodes[i].transport);
    return sum;
}

/* ---- rogues ----------------------------------------------------------------- */

static void rogue_alloc_cb(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
    struct rogue *g = h->data;
    (void)s;
    *buf = uv_buf_init(g->w->readbuf, sizeof g->w->readbuf);
}

static void rogue_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct rogue *g = s->data;
    (void)buf;
    if (nread >= 0)
        return; /* anything the node says back is ignored */
    g->got_eof = 1;
    if (g->kind >= ROGUE_PLAINTEXT) {
        uv_close((uv_handle_t *)&g->tcp, handle_closed_cb);
    } else {
        uv_close((uv_handle_t *)g->stream, (uv_close_cb)raft_free);
        g->stream = NULL;
    }
    rogue_finish(g);
}

static void rogue_write_cb(uv_write_t *w, int status)
{
    (void)w;
    (void)status;
}

/* A forged raft_uv handshake claiming id 1 followed by bytes that would be a
 * message preamble: if anything of this reached raft, it would show up. */
static void rogue_fill_inject(struct rogue *g)
{
    unsigned char *p = (unsigned char *)g->inject;
    const char *addr = "127.0.0.1:1";
    memset(g->inject, 0, sizeof g->inject);
    p[0] = 1;          /* protocol */
    p[8] = 1;          /* server id 1 */
    p[16] = 16;        /* address length */
    memcpy(p + 24, addr, strlen(addr));
    p[40] = 1;         /* message type AppendEntries */
    p[48] = 8;         /* header length */
}

static void rogue_start_io(struct rogue *g, uv_stream_t *s, size_t off,
                           size_t n)
{
    uv_buf_t b = uv_buf_init(g->inject + off, (unsigned)n);
    s->data = g;
    uv_write(&g->wreq, s, &b, 1, rogue_write_cb);
    uv_read_start(s, rogue_alloc_cb, rogue_read_cb);
}

static void rogue_connect_cb(struct raft_uv_connect *req, uv_stream_t *stream,
                             int status)
{
    struct rogue *g = req->data;
    g->connect_status = status;
    if (status != 0) {
        rogue_finish(g); /* refused before TLS completed on our side */
        return;
    }
    /* TLS 1.3: the client side finishes first; the server's verdict on our
     * certificate arrives afterwards as an alert, i.e. EOF here. */
    g->stream = stream;
    rogue_fill_inject(g);
    /* The transport already sent the raft handshake: a message preamble. */
    rogue_start_io(g, stream, 40, 16);
}

static void rogue_tcp_connect_cb(uv_connect_t *req, int status)
{
    struct rogue *g = req->data;
    g->connect_status = status;
    if (status != 0) {
        uv_close((uv_handle_t *)&g->tcp, handle_closed_cb);
        rogue_finish(g);
        return;
    }
    if (g->kind == ROGUE_SILENT) {
        g->tcp.data = g;
        uv_read_start((uv_stream_t *)&g->tcp, rogue_alloc_cb, rogue_read_cb);
        return;
    }
    rogue_fill_inject(g);
    rogue_start_io(g, (uv_stream_t *)&g->tcp, 0, 56);
}

static int rogue_start(struct world *w, struct rogue *g, enum rogue_kind kind,
                       const char *target)
{
    struct consensus_tls_config cfg;
    SSL_CTX *ctx = NULL;
    raft_id claim = 7;
    struct werr e;
    int rv;

    memset(g, 0, sizeof *g);
    g->w = w;
    g->kind = kind;
    if (kind >= ROGUE_PLAINTEXT) {
        struct sockaddr_in sa;
        const char *colon = strrchr(target, ':');
        uv_ip4_addr("127.0.0.1", atoi(colon + 1), &sa);
        uv_tcp_init(&w->loop, &g->tcp);
        g->tcp.data = g;
        g->creq.data = g;
        return uv_tcp_connect(&g->creq, &g->tcp, (const struct sockaddr *)&sa,
                              rogue_tcp_connect_cb);
    }
    switch (kind) {
    case ROGUE_FOREIGN_CA: {
        /* Foreign cert, but trusts the cluster CA so that the *server's*
         * refusal is what is tested. */
        char cap[128];
        ctx = ctx_for(w, "evil-ca", "evil");
        snprintf(cap, sizeof cap, "%s/ca.pem", w->certdir);
        if (ctx != NULL)
            SSL_CTX_load_verify_locations(ctx, cap, NULL);
        claim = 2;
        break;
    }
    case ROGUE_NO_CERT: {
        char cap[128];
        ctx = SSL_CTX_new(TLS_method());
        snprintf(cap, sizeof cap, "%s/ca.pem", w->certdir);
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        SSL_CTX_load_verify_locations(ctx, cap, NULL);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        claim = 2;
        break;
    }
    case ROGUE_WRONG_ROLE:
        ctx = ctx_for(w, "ca", "admin");
        claim = 2;
        break;
    case ROGUE_WRONG_ID:
        ctx = ctx_for(w, "ca", "n9");
        claim = 1; /* n9 may not speak as server 1 */
        break;
    default:
        return -1;
    }
    if (ctx == NULL)
        return -1;
    memset(&cfg, 0, sizeof cfg);
    cfg.ctx = ctx;
    rv = consensus_tls_transport_init(&g->t, &w->loop, &cfg, &e);
    SSL_CTX_free(ctx); /* the transport holds its own reference */
    if (rv != 0)
        return rv;
    g->t.data = g;
    g->t_init = 1;
    if (g->t.init(&g->t, claim, "127.0.0.1:1") != 0)
        return -1;
    g->req.data = g;
    return g->t.connect(&g->t, &g->req, 1, target, rogue_connect_cb);
}

static int rogues_done(struct world *w)
{
    for (int i = 0; i < N_ROGUES; i++)
        if (!w->rogues[i].done)
            return 0;
    return 1;
}

/* ---- the phases --------------------------------------------------------------- */

static void poll_cb(uv_timer_t *t)
{
    struct world *w = t->loop->data;
    struct node *leader;

    switch (w->phase) {
    case PH_ELECT:
        if ((leader = leader_of(w)) == NULL)
            return;
        while (w->n_proposed < N_ENTRIES_FIRST)
            if (propose(w, leader) != 0)
                return; /* leadership lost mid-way: retry next tick */
        w->phase = PH_REPLICATE;
        return;
    case PH_REPLICATE:
        if (!all_applied(w, N_ENTRIES_FIRST))
            return;
        w->refused_before = refused_total(w);
        /* Rogues hit a follower and the leader alike. */
        for (int i = 0; i < N_ROGUES; i++) {
            const char *target = w->nodes[i % N_NODES].address;
            if (rogue_start(w, &w->rogues[i], (enum rogue_kind)i, target) != 0) {
                fprintf(stderr, "rogue %d failed to start\n", i);
                begin_close(w);
                return;
            }
        }
        w->phase = PH_ROGUES;
        return;
    case PH_ROGUES:
        if (!rogues_done(w))
            return;
        w->refused_after = refused_total(w);
        if ((leader = leader_of(w)) == NULL)
            return;
        if (propose(w, leader) != 0)
            return;
        w->phase = PH_FINAL;
        return;
    case PH_FINAL:
        if (all_applied(w, N_ENTRIES_TOTAL))
            begin_close(w);
        return;
    default:
        return;
    }
}

static void deadline_cb(uv_timer_t *t)
{
    struct world *w = t->loop->data;
    fprintf(stderr, "deadline %d ms hit in phase %d\n", TEST_DEADLINE_MS,
            (int)w->phase);
    w->timed_out = 1;
    begin_close(w);
}

/* ---- setup and checks --------------------------------------------------------- */

static void dump(struct world *w)
{
    for (int i = 0; i < N_NODES; i++) {
        struct node *n = &w->nodes[i];
        fprintf(stderr, "node %llu %s applied %u refused %lu:", n->id,
                n->address, n->n_applied,
                n->closed ? 0ul : consensus_tls_transport_refused(&n->transport));
        for (unsigned k = 0; k < n->n_applied; k++)
            fprintf(stderr, " %llu=%s", n->idx[k], n->val[k]);
        fprintf(stderr, "\n");
    }
    for (int i = 0; i < N_ROGUES; i++)
        fprintf(stderr, "rogue %d: connect_status %d eof %d done %d\n", i,
                w->rogues[i].connect_status, w->rogues[i].got_eof,
                w->rogues[i].done);
}

static int node_setup(struct world *w, struct node *n, SSL_CTX *ctx,
                      const struct raft_configuration *conf)
{
    struct consensus_tls_config cfg;
    struct werr e;
    int rv;

    memset(&cfg, 0, sizeof cfg);
    cfg.ctx = ctx;
    cfg.authorize = authorize_by_name;
    cfg.handshake_timeout_ms = TEST_HANDSHAKE_TIMEOUT_MS;
    if (consensus_tls_transport_init(&n->transport, &w->loop, &cfg, &e) != 0) {
        fprintf(stderr, "transport: %s\n", e.msg);
        return -1;
    }
    if ((rv = raft_uv_init(&n->io, &w->loop, n->dir, &n->transport)) != 0) {
        fprintf(stderr, "raft_uv_init: %s\n", raft_strerror(rv));
        return -1;
    }
    raft_uv_set_auto_recovery(&n->io, false);
    raft_uv_set_connect_retry_delay(&n->io, 100);
    n->fsm.version = 1;
    n->fsm.data = n;
    n->fsm.apply = fsm_apply;
    n->fsm.snapshot = fsm_snapshot;
    n->fsm.restore = fsm_restore;
    if ((rv = raft_init(&n->raft, &n->io, &n->fsm, n->id, n->address)) != 0) {
        fprintf(stderr, "raft_init: %s\n", raft_errmsg(&n->raft));
        return -1;
    }
    n->raft.data = n;
    raft_set_election_timeout(&n->raft, 300);
    raft_set_heartbeat_timeout(&n->raft, 50);
    if ((rv = raft_bootstrap(&n->raft, conf)) != 0) {
        fprintf(stderr, "raft_bootstrap: %s\n", raft_errmsg(&n->raft));
        return -1;
    }
    if ((rv = raft_start(&n->raft)) != 0) {
        fprintf(stderr, "raft_start: %s\n", raft_errmsg(&n->raft));
        return -1;
    }
    return 0;
}

TEST(three_nodes_over_mutual_tls)
{
    static struct world w; /* large; off the stack */
    static const char *const peers[] = {"n1", "n2", "n3", "n9", "admin"};
    static const char *const peer_uris[] = {
        "warden://role/peer/n1", "warden://role/peer/n2", "warden://role/peer/n3",
        "warden://role/peer/n9", "warden://role/admin/admin"};
    static const char *const evil[] = {"evil"};
    static const char *const evil_uris[] = {"warden://role/peer/n2"};
    struct raft_configuration conf;
    SSL_CTX *ctxs[N_NODES] = {NULL};
    char base[] = "/tmp/warden-tls-XXXXXX";
    int ok_setup = 1;

    memset(&w, 0, sizeof w);
    CHECK(mkdtemp(base) != NULL);
    snprintf(w.certdir, sizeof w.certdir, "%s", base);
    CHECK_EQ_INT(ctu_make_pki(base, "ca", peers, peer_uris, 5), 0);
    CHECK_EQ_INT(ctu_make_pki(base, "evil-ca", evil, evil_uris, 1), 0);

    CHECK_EQ_INT(uv_loop_init(&w.loop), 0);
    w.loop.data = &w;
    uv_timer_init(&w.loop, &w.deadline);
    uv_timer_init(&w.loop, &w.poll);

    raft_configuration_init(&conf);
    for (int i = 0; i < N_NODES; i++) {
        struct node *n = &w.nodes[i];
        int port = ctu_free_port();
        n->w = &w;
        n->id = (raft_id)(i + 1);
        snprintf(n->address, sizeof n->address, "127.0.0.1:%d", port);
        snprintf(n->dir, sizeof n->dir, "%s/node%d", base, i + 1);
        mkdir(n->dir, 0700);
        CHECK(port > 0);
        CHECK_EQ_INT(raft_configuration_add(&conf, n->id, n->address, RAFT_VOTER), 0);
    }
    for (int i = 0; i < N_NODES && ok_setup; i++) {
        char name[8];
        snprintf(name, sizeof name, "n%d", i + 1);
        ctxs[i] = ctx_for(&w, "ca", name);
        ok_setup = ctxs[i] != NULL && node_setup(&w, &w.nodes[i], ctxs[i], &conf) == 0;
        SSL_CTX_free(ctxs[i]);
    }
    raft_configuration_close(&conf);
    CHECK(ok_setup);

    uv_timer_start(&w.deadline, deadline_cb, TEST_DEADLINE_MS, 0);
    uv_timer_start(&w.poll, poll_cb, POLL_MS, POLL_MS);
    uv_run(&w.loop, UV_RUN_DEFAULT);

    if (w.phase != PH_DONE || w.timed_out)
        dump(&w);
    CHECK_EQ_INT(w.phase, PH_DONE);
    CHECK_EQ_INT(uv_loop_close(&w.loop), 0); /* no leaked handles */
    for (int i = 0; i < N_NODES; i++)
        ctu_rm_rf(w.nodes[i].dir);
    ctu_rm_rf(base);

    CHECK(!w.timed_out);
    /* Every rogue was cut off: the node closed the connection on it (EOF) or
     * its own handshake failed. */
    for (int i = 0; i < N_ROGUES; i++)
        CHECK(w.rogues[i].got_eof || w.rogues[i].connect_status != 0);
    /* ...and each was refused by the node, not merely by itself. */
    CHECK(w.refused_after - w.refused_before >= N_ROGUES);
    /* All three FSMs applied the same entries at the same indexes, and no
     * forged entry slipped in. */
    for (unsigned k = 0; k < N_ENTRIES_TOTAL; k++) {
        char want[ENTRY_LEN + 1];
        snprintf(want, sizeof want, "entry%03u", k);
        CHECK_EQ_INT(w.apply_status[k], 0);
        for (int i = 0; i < N_NODES; i++) {
            CHECK_EQ_STR(w.nodes[i].val[k], want);
            CHECK_EQ_INT(w.nodes[i].idx[k], w.nodes[0].idx[k]);
        }
    }
    for (int i = 0; i < N_NODES; i++)
        CHECK_EQ_INT(w.nodes[i].n_applied, N_ENTRIES_TOTAL);
}

/* ---- outbound source address --------------------------------------------------
 * A node listening on 127.0.0.2 must dial its peers from 127.0.0.2, not from
 * the route's default 127.0.0.1, so per-address firewall rules between
 * nodes on one host match (tests/jepsen partitions). A plain TCP server on
 * 127.0.0.3 records the peer address of the transport's outbound connection
 * and hangs up; the handshake then fails and the transport is closed. */
struct srcw {
    uv_loop_t loop;
    uv_tcp_t server, accepted;
    uv_timer_t deadline;
    struct raft_uv_transport t;
    struct raft_uv_connect req;
    char peer_ip[64];
    int accepted_init, connect_status, connect_fired, t_closed, timed_out;
};

static void src_t_closed_cb(struct raft_uv_transport *t);

static void src_finish(struct srcw *s)
{
    if (s->t_closed)
        return;
    s->t_closed = 1;
    uv_timer_stop(&s->deadline);
    s->t.close(&s->t, src_t_closed_cb);
}

static void src_t_closed_cb(struct raft_uv_transport *t)
{
    struct srcw *s = t->data;
    consensus_tls_transport_close(t);
    uv_close((uv_handle_t *)&s->server, NULL);
    uv_close((uv_handle_t *)&s->deadline, NULL);
    if (s->accepted_init && !uv_is_closing((uv_handle_t *)&s->accepted))
        uv_close((uv_handle_t *)&s->accepted, NULL);
}

static void src_connect_cb(struct raft_uv_connect *req, uv_stream_t *stream,
                           int status)
{
    struct srcw *s = req->data;
    s->connect_fired = 1;
    s->connect_status = status;
    if (status == 0 && stream != NULL)
        uv_close((uv_handle_t *)stream, (uv_close_cb)free);
    src_finish(s);
}

static void src_accept_cb(struct raft_uv_transport *t, raft_id id,
                          const char *address, uv_stream_t *stream)
{
    (void)t;
    (void)id;
    (void)address;
    uv_close((uv_handle_t *)stream, (uv_close_cb)free);
}

static void src_server_cb(uv_stream_t *server, int status)
{
    struct srcw *s = server->data;
    struct sockaddr_storage sa;
    int len = (int)sizeof sa;
    if (status != 0 || s->accepted_init)
        return;
    uv_tcp_init(&s->loop, &s->accepted);
    s->accepted_init = 1;
    if (uv_accept(server, (uv_stream_t *)&s->accepted) == 0 &&
        uv_tcp_getpeername(&s->accepted, (struct sockaddr *)&sa, &len) == 0 &&
        sa.ss_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)&sa, s->peer_ip,
                    sizeof s->peer_ip);
    /* Hang up: the transport's TLS handshake fails and its callback fires. */
    uv_close((uv_handle_t *)&s->accepted, NULL);
}

static void src_deadline_cb(uv_timer_t *tm)
{
    struct srcw *s = tm->data;
    s->timed_out = 1;
    src_finish(s);
}

TEST(outbound_source_is_listen_ip)
{
    static struct srcw s;
    static const char *const peers[] = {"n1"};
    static const char *const peer_uris[] = {"warden://role/peer/n1"};
    static struct world w; /* for ctx_for's certdir only */
    char base[] = "/tmp/warden-tls-src-XXXXXX";
    struct sockaddr_in a;
    struct sockaddr_storage got;
    int len = (int)sizeof got;
    char target[64];
    struct consensus_tls_config cfg;
    struct werr e;
    SSL_CTX *ctx;

    memset(&s, 0, sizeof s);
    memset(&w, 0, sizeof w);
    CHECK(mkdtemp(base) != NULL);
    snprintf(w.certdir, sizeof w.certdir, "%s", base);
    CHECK_EQ_INT(ctu_make_pki(base, "ca", peers, peer_uris, 1), 0);
    CHECK_EQ_INT(uv_loop_init(&s.loop), 0);

    uv_tcp_init(&s.loop, &s.server);
    s.server.data = &s;
    uv_ip4_addr("127.0.0.3", 0, &a);
    CHECK_EQ_INT(uv_tcp_bind(&s.server, (const struct sockaddr *)&a, 0), 0);
    CHECK_EQ_INT(uv_listen((uv_stream_t *)&s.server, 4, src_server_cb), 0);
    CHECK_EQ_INT(uv_tcp_getsockname(&s.server, (struct sockaddr *)&got, &len), 0);
    snprintf(target, sizeof target, "127.0.0.3:%d",
             ntohs(((struct sockaddr_in *)&got)->sin_port));

    ctx = ctx_for(&w, "ca", "n1");
    CHECK(ctx != NULL);
    memset(&cfg, 0, sizeof cfg);
    cfg.ctx = ctx;
    cfg.handshake_timeout_ms = 2000;
    CHECK_EQ_INT(consensus_tls_transport_init(&s.t, &s.loop, &cfg, &e), 0);
    SSL_CTX_free(ctx);
    s.t.data = &s;
    CHECK_EQ_INT(s.t.init(&s.t, 1, "127.0.0.2:0"), 0);
    CHECK_EQ_INT(s.t.listen(&s.t, src_accept_cb), 0);
    s.req.data = &s;
    CHECK_EQ_INT(s.t.connect(&s.t, &s.req, 2, target, src_connect_cb), 0);

    uv_timer_init(&s.loop, &s.deadline);
    s.deadline.data = &s;
    uv_timer_start(&s.deadline, src_deadline_cb, 10000, 0);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&s.loop), 0); /* no leaked handles */
    ctu_rm_rf(base);

    CHECK(!s.timed_out);
    CHECK(s.connect_fired);
    CHECK(s.connect_status != 0); /* the server hung up mid-handshake */
    CHECK_EQ_STR(s.peer_ip, "127.0.0.2");
}

int main(void)
{
    RUN(three_nodes_over_mutual_tls);
    RUN(outbound_source_is_listen_ip);
    return unit_done();
}
