/* test_consensus_smoke.c - proves the raft 0.22.1 build links and runs:
 * a single-node raft_uv cluster (stock plaintext raft_uv_tcp transport on
 * 127.0.0.1) in a temporary directory bootstraps, elects itself, applies one
 * entry through the FSM and closes with no leaked libuv handles.
 *
 * Every wait is bounded by a uv timer (SMOKE_DEADLINE_MS); the loop never
 * blocks on an outside event. */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "consensus_testutil.h"
#include "unit.h"

/* Whole-test bound: election of a single voter plus one fsync'd append takes
 * milliseconds; 10 s only trips on a real hang. */
#define SMOKE_DEADLINE_MS 10000
/* How often the driver polls raft for leadership. */
#define SMOKE_POLL_MS 10
/* Payload of the one applied entry. raft_uv rejects entry buffers whose
 * length is not a multiple of 8 ("entry buffers must be 8-byte aligned"), so
 * the payload is zero-padded to SMOKE_PAYLOAD_LEN; real commands will carry
 * their own length prefix. */
#define SMOKE_PAYLOAD "warden-smoke-entry"
#define SMOKE_PAYLOAD_LEN 24

enum smoke_phase { PHASE_ELECTING, PHASE_APPLYING, PHASE_CLOSING, PHASE_DONE };

struct smoke {
    uv_loop_t loop;
    uv_timer_t deadline;
    uv_timer_t poll;
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft raft;
    struct raft_apply apply_req;
    enum smoke_phase phase;
    int timed_out;
    int apply_status;          /* status passed to the apply callback */
    int apply_cb_fired;
    unsigned fsm_applies;      /* times the FSM apply callback ran */
    raft_index fsm_index;      /* raft_last_applied + 1 at FSM apply time */
    raft_index apply_index;    /* req->index reported by raft */
    char fsm_payload[64];
    size_t fsm_payload_len;
    int raft_closed;
    int handles_closed;
};

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
    struct smoke *s = fsm->data;
    s->fsm_applies++;
    /* Raft §5.3: entries are applied in log order; the one being applied is
     * the one after the last applied. */
    s->fsm_index = raft_last_applied(&s->raft) + 1;
    s->fsm_payload_len = buf->len;
    if (buf->len < sizeof s->fsm_payload) {
        memcpy(s->fsm_payload, buf->base, buf->len);
        s->fsm_payload[buf->len] = '\0';
    }
    *result = NULL;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
    (void)fsm;
    (void)bufs;
    (void)n_bufs;
    return RAFT_INVALID; /* threshold is never reached in this test */
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    (void)fsm;
    (void)buf;
    return RAFT_INVALID;
}

static void handle_close_cb(uv_handle_t *h)
{
    struct smoke *s = h->loop->data;
    s->handles_closed++;
}

static void on_raft_closed(struct raft *r)
{
    struct smoke *s = r->data;
    s->raft_closed = 1;
    raft_uv_close(&s->io);
    raft_uv_tcp_close(&s->transport);
    uv_close((uv_handle_t *)&s->deadline, handle_close_cb);
    uv_close((uv_handle_t *)&s->poll, handle_close_cb);
    s->phase = PHASE_DONE;
}

static void begin_close(struct smoke *s)
{
    if (s->phase >= PHASE_CLOSING)
        return;
    s->phase = PHASE_CLOSING;
    uv_timer_stop(&s->poll);
    uv_timer_stop(&s->deadline);
    raft_close(&s->raft, on_raft_closed);
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct smoke *s = req->data;
    (void)result;
    s->apply_cb_fired = 1;
    s->apply_status = status;
    s->apply_index = req->index;
    begin_close(s);
}

static void deadline_cb(uv_timer_t *t)
{
    struct smoke *s = t->loop->data;
    fprintf(stderr, "smoke: deadline of %d ms hit in phase %d\n",
            SMOKE_DEADLINE_MS, (int)s->phase);
    s->timed_out = 1;
    begin_close(s);
}

static void poll_cb(uv_timer_t *t)
{
    struct smoke *s = t->loop->data;
    struct raft_buffer buf;
    int rv;

    if (s->phase != PHASE_ELECTING || raft_state(&s->raft) != RAFT_LEADER)
        return;
    uv_timer_stop(&s->poll);
    s->phase = PHASE_APPLYING;
    /* raft_apply takes ownership of buf.base on success: raft_malloc. */
    buf.len = SMOKE_PAYLOAD_LEN;
    buf.base = raft_calloc(1, buf.len);
    if (buf.base == NULL) {
        begin_close(s);
        return;
    }
    memcpy(buf.base, SMOKE_PAYLOAD, strlen(SMOKE_PAYLOAD));
    s->apply_req.data = s;
    rv = raft_apply(&s->raft, &s->apply_req, &buf, 1, apply_cb);
    if (rv != 0) {
        /* Not freed: on this error path raft 0.22.1 has already released
         * the entry buffer (observed double free), despite the header. */
        fprintf(stderr, "smoke: raft_apply: %s (%s)\n", raft_strerror(rv),
                raft_errmsg(&s->raft));
        s->apply_status = rv;
        begin_close(s);
    }
}

TEST(single_node_apply)
{
    static struct smoke s; /* large; keep it off the stack */
    struct raft_configuration conf;
    char dir[] = "/tmp/warden-smoke-XXXXXX";
    char address[32];
    int port, rv;

    memset(&s, 0, sizeof s);
    CHECK(mkdtemp(dir) != NULL);
    port = ctu_free_port();
    CHECK(port > 0);
    snprintf(address, sizeof address, "127.0.0.1:%d", port);

    CHECK_EQ_INT(uv_loop_init(&s.loop), 0);
    s.loop.data = &s;
    CHECK_EQ_INT(uv_timer_init(&s.loop, &s.deadline), 0);
    CHECK_EQ_INT(uv_timer_init(&s.loop, &s.poll), 0);

    s.transport.version = 1;
    CHECK_EQ_INT(raft_uv_tcp_init(&s.transport, &s.loop), 0);
    CHECK_EQ_INT(raft_uv_init(&s.io, &s.loop, dir, &s.transport), 0);
    /* A corrupt log must be a loud error, never silently repaired (issue 3). */
    raft_uv_set_auto_recovery(&s.io, false);

    s.fsm.version = 1;
    s.fsm.data = &s;
    s.fsm.apply = fsm_apply;
    s.fsm.snapshot = fsm_snapshot;
    s.fsm.restore = fsm_restore;
    rv = raft_init(&s.raft, &s.io, &s.fsm, 1, address);
    if (rv != 0)
        fprintf(stderr, "raft_init: %s\n", raft_errmsg(&s.raft));
    CHECK_EQ_INT(rv, 0);
    s.raft.data = &s;

    raft_configuration_init(&conf);
    CHECK_EQ_INT(raft_configuration_add(&conf, 1, address, RAFT_VOTER), 0);
    rv = raft_bootstrap(&s.raft, &conf);
    raft_configuration_close(&conf);
    CHECK_EQ_INT(rv, 0);
    rv = raft_start(&s.raft);
    if (rv != 0)
        fprintf(stderr, "raft_start: %s\n", raft_errmsg(&s.raft));
    CHECK_EQ_INT(rv, 0);

    CHECK_EQ_INT(uv_timer_start(&s.deadline, deadline_cb, SMOKE_DEADLINE_MS, 0), 0);
    CHECK_EQ_INT(uv_timer_start(&s.poll, poll_cb, SMOKE_POLL_MS, SMOKE_POLL_MS), 0);

    uv_run(&s.loop, UV_RUN_DEFAULT);

    CHECK_EQ_INT(s.phase, PHASE_DONE);
    CHECK(s.raft_closed);
    CHECK_EQ_INT(s.handles_closed, 2);
    /* Every handle is closed: a leak makes uv_loop_close return UV_EBUSY. */
    CHECK_EQ_INT(uv_loop_close(&s.loop), 0);
    ctu_rm_rf(dir);

    CHECK(!s.timed_out);
    CHECK(s.apply_cb_fired);
    CHECK_EQ_INT(s.apply_status, 0);
    CHECK_EQ_INT(s.fsm_applies, 1);
    CHECK_EQ_INT(s.fsm_payload_len, SMOKE_PAYLOAD_LEN);
    CHECK_EQ_STR(s.fsm_payload, SMOKE_PAYLOAD);
    /* Index 1 is the bootstrap configuration; the command is index 2. */
    CHECK_EQ_INT(s.fsm_index, 2);
    CHECK_EQ_INT(s.apply_index, s.fsm_index);
}

int main(void)
{
    RUN(single_node_apply);
    return unit_done();
}
