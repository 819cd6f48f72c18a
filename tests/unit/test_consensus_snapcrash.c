/* test_consensus_snapcrash.c - raft 0.22.1's legacy layer with an
 * InstallSnapshot that arrives while the follower is still writing its own
 * snapshot (scripts/patches/raft-0.22.1-pending-install.patch and
 * raft-0.22.1-busy-install-leak.patch).
 *
 * Upstream takeSnapshotCb (src/legacy.c) clears r->legacy.snapshot_pending
 * and then reads it back to start the held install, so it passes NULL to
 * legacyPersistSnapshotStart and the process dies with SIGSEGV (step 4).
 * Fixing only that, the follower's core falls back to its own older
 * snapshot and stalls for the leader's install-snapshot timeout (step 5).
 * The duplicate InstallSnapshots the leader sends meanwhile leak without
 * the second patch (LeakSanitizer, -DWARDEN_SANITIZE=ON).
 *
 * Fully deterministic: raft's fixture (raft/fixture.h) steps three servers
 * on simulated time and disk; nothing here reads a clock or touches a file.
 * WARDEN_RAFT_TRACE=1 prints raft's trace of every step.
 *
 * Script:
 *   1. Server 0 is elected. Entries are applied one at a time until the
 *      follower F (server 2) starts its first snapshot. F's fsm snapshot
 *      callback raises F's simulated disk latency to SLOW_DISK_MS, so that
 *      snapshot stays in flight for that long.
 *   2. F is cut off. The leader commits N_BEHIND entries with server 1 and
 *      compacts its log past everything F holds.
 *   3. F is reconnected. The leader finds F's next entry gone and sends an
 *      InstallSnapshot (Raft §7), which F must hold because it is still
 *      taking its own: r->legacy.snapshot_pending becomes non-NULL.
 *   4. F's own snapshot completes. This is where 0.22.1 crashes. Then F must
 *      restore the leader's snapshot and reach the leader's applied index.
 *   5. F's raft core must still describe the installed snapshot (its trail
 *      says index/term of the leader's snapshot, not of F's own older one),
 *      so the next entries append on top of it at once. A core that went
 *      back to F's own snapshot rejects them, the leader sends the snapshot
 *      again and then waits out its install-snapshot timeout (30 s) before
 *      F is in sync again: that is what CATCH_UP_MS rules out. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>
#include <raft/fixture.h>

#include "unit.h"

#define N_SERVERS 3
#define F_INDEX 2                /* the follower under test */
/* Small so that a handful of entries trigger snapshots on every server. */
#define SNAP_THRESHOLD 8
#define SNAP_TRAILING 2
/* Entries the leader commits while F is cut off: several thresholds, so the
 * leader's log no longer reaches back to F's last entry. */
#define N_BEHIND (4 * SNAP_THRESHOLD)
/* Simulated time F's snapshot write takes. Steps 2 and 3 must fit inside it
 * (they take well under a second of simulated time). */
#define SLOW_DISK_MS 20000
#define FAST_DISK_MS 10
/* Bounds on the script, in simulated ms and entries; they only trip on a
 * real hang. */
#define STEP_MAX_MS 60000
/* Step 5: a few heartbeats (100 ms in the fixture) and round trips; far
 * below the fixture's install-snapshot timeout (30 s). */
#define CATCH_UP_MS 2000
#define N_AFTER 4
#define ARM_ENTRIES_MAX (4 * SNAP_THRESHOLD)
#define APPLIES_MAX (ARM_ENTRIES_MAX + N_BEHIND + N_AFTER)
#define ENTRY_LEN 8              /* raft_uv wants 8-byte multiples; keep it */

struct tfsm {
    unsigned index;              /* fixture server index */
    uint64_t count;              /* entries applied, the whole state */
    unsigned snapshots;
    unsigned restores;
};

static struct raft_fixture F;
static struct tfsm FSMS[N_SERVERS];
static struct raft_fsm RFSMS[N_SERVERS];
static int ARMED;                /* slow down F's next snapshot write */
static struct raft_apply APPLIES[APPLIES_MAX];
static unsigned N_APPLIES;

static int tfsm_apply(struct raft_fsm *rf, const struct raft_buffer *buf,
                      void **result)
{
    struct tfsm *s = rf->data;
    (void)buf;
    s->count++;
    *result = NULL;
    return 0;
}

/* fsm version 1: raft frees the array and each base with raft_free. */
static int tfsm_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[],
                         unsigned *n_bufs)
{
    struct tfsm *s = rf->data;
    *bufs = raft_malloc(sizeof **bufs);
    if (*bufs == NULL)
        return RAFT_NOMEM;
    (*bufs)[0].len = sizeof s->count;
    (*bufs)[0].base = raft_malloc(sizeof s->count);
    if ((*bufs)[0].base == NULL) {
        raft_free(*bufs);
        return RAFT_NOMEM;
    }
    memcpy((*bufs)[0].base, &s->count, sizeof s->count);
    *n_bufs = 1;
    s->snapshots++;
    /* legacyTakeSnapshot calls us synchronously and then io->snapshot_put,
     * which stamps the request with now + disk latency. */
    if (s->index == F_INDEX && ARMED) {
        raft_fixture_set_disk_latency(&F, F_INDEX, SLOW_DISK_MS);
        ARMED = 0;
    }
    return 0;
}

/* On success the fsm owns buf->base (docs/consensus.md). */
static int tfsm_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
    struct tfsm *s = rf->data;
    if (buf->len != sizeof s->count)
        return RAFT_MALFORMED;
    memcpy(&s->count, buf->base, sizeof s->count);
    raft_free(buf->base);
    s->restores++;
    return 0;
}

static int propose(struct raft *leader)
{
    struct raft_buffer buf;
    if (N_APPLIES >= APPLIES_MAX)
        return RAFT_NOMEM;
    buf.len = ENTRY_LEN;
    buf.base = raft_calloc(1, ENTRY_LEN);
    if (buf.base == NULL)
        return RAFT_NOMEM;
    /* raft owns buf.base from here on (copied into its log and freed). */
    return raft_apply(leader, &APPLIES[N_APPLIES++], &buf, 1, NULL);
}

static bool install_pending(struct raft_fixture *f, void *arg)
{
    (void)arg;
    return raft_fixture_get(f, F_INDEX)->legacy.snapshot_pending != NULL;
}

static void set_connected(unsigned i, int on)
{
    unsigned j;
    for (j = 0; j < N_SERVERS; j++) {
        if (j == i)
            continue;
        if (on) {
            raft_fixture_reconnect(&F, i, j);
            raft_fixture_reconnect(&F, j, i);
        } else {
            raft_fixture_disconnect(&F, i, j);
            raft_fixture_disconnect(&F, j, i);
        }
    }
}

TEST(install_during_own_snapshot)
{
    struct raft_configuration conf;
    struct raft *leader, *fr;
    raft_index target, installed;
    raft_term installed_term;
    unsigned i, n;

    CHECK_EQ_INT(raft_fixture_init(&F), 0);
    for (i = 0; i < N_SERVERS; i++) {
        FSMS[i].index = i;
        RFSMS[i].version = 1;
        RFSMS[i].data = &FSMS[i];
        RFSMS[i].apply = tfsm_apply;
        RFSMS[i].snapshot = tfsm_snapshot;
        RFSMS[i].restore = tfsm_restore;
        CHECK_EQ_INT(raft_fixture_grow(&F, &RFSMS[i]), 0);
        raft_set_snapshot_threshold(raft_fixture_get(&F, i), SNAP_THRESHOLD);
        raft_set_snapshot_trailing(raft_fixture_get(&F, i), SNAP_TRAILING);
        /* Raft §9.6: a cut-off F must not bump its term and depose the
         * leader when it comes back; the script wants the same leader. */
        raft_set_pre_vote(raft_fixture_get(&F, i), true);
        /* The fixture traces every step to stderr; the run is deterministic,
         * so rerun with WARDEN_RAFT_TRACE=1 to see the whole history. */
        if (getenv("WARDEN_RAFT_TRACE") == NULL)
            raft_fixture_get(&F, i)->tracer = NULL;
    }
    CHECK_EQ_INT(raft_fixture_configuration(&F, N_SERVERS, &conf), 0);
    CHECK_EQ_INT(raft_fixture_bootstrap(&F, &conf), 0);
    raft_configuration_close(&conf);
    CHECK_EQ_INT(raft_fixture_start(&F), 0);

    raft_fixture_elect(&F, 0);
    leader = raft_fixture_get(&F, 0);
    fr = raft_fixture_get(&F, F_INDEX);
    CHECK_EQ_INT(raft_state(leader), RAFT_LEADER);

    /* 1. Apply one entry at a time until F starts a snapshot. */
    ARMED = 1;
    for (n = 0; FSMS[F_INDEX].snapshots == 0 && n < ARM_ENTRIES_MAX; n++) {
        CHECK_EQ_INT(propose(leader), 0);
        target = raft_last_index(leader);
        CHECK(raft_fixture_step_until_applied(&F, F_INDEX, target,
                                              STEP_MAX_MS));
    }
    CHECK_EQ_INT(FSMS[F_INDEX].snapshots, 1);
    CHECK(fr->legacy.snapshot_taking);

    /* 2. Cut F off; the leader runs ahead and compacts. */
    set_connected(F_INDEX, 0);
    for (n = 0; n < N_BEHIND; n++)
        CHECK_EQ_INT(propose(leader), 0);
    target = raft_last_index(leader);
    CHECK(raft_fixture_step_until_applied(&F, 0, target, STEP_MAX_MS));
    CHECK(raft_fixture_step_until_applied(&F, 1, target, STEP_MAX_MS));
    CHECK(FSMS[0].snapshots >= 2);
    CHECK(fr->legacy.snapshot_taking); /* still inside SLOW_DISK_MS */

    /* 3. Reconnect: the leader must send a snapshot, and F must hold it. */
    set_connected(F_INDEX, 1);
    CHECK(raft_fixture_step_until(&F, install_pending, NULL, STEP_MAX_MS));
    CHECK(fr->legacy.snapshot_taking);
    installed = fr->trail.snapshot.index; /* TrailRestore on receipt */
    installed_term = fr->trail.snapshot.term;
    CHECK(installed > 0 && installed_term > 0);
    fprintf(stderr, "  install held behind F's own snapshot at t=%llu ms\n",
            (unsigned long long)raft_fixture_time(&F));
    raft_fixture_set_disk_latency(&F, F_INDEX, FAST_DISK_MS);

    /* 4. F's own snapshot completes (0.22.1 crashes here), then the held
     * install runs and F catches up. */
    CHECK(raft_fixture_step_until_applied(&F, F_INDEX, target,
                                          2 * SLOW_DISK_MS));
    CHECK(fr->legacy.snapshot_pending == NULL);
    CHECK(FSMS[F_INDEX].restores >= 1);
    CHECK_EQ_INT(FSMS[F_INDEX].count, FSMS[0].count);
    CHECK_EQ_INT(raft_last_applied(fr), raft_last_applied(leader));

    /* 5. F's core still stands on the installed snapshot and takes new
     * entries on top of it without a second install. */
    CHECK_EQ_INT(fr->trail.snapshot.index, installed);
    CHECK_EQ_INT(fr->trail.snapshot.term, installed_term);
    for (n = 0; n < N_AFTER; n++)
        CHECK_EQ_INT(propose(leader), 0);
    target = raft_last_index(leader);
    CHECK(raft_fixture_step_until_applied(&F, F_INDEX, target, CATCH_UP_MS));
    CHECK_EQ_INT(FSMS[F_INDEX].restores, 1);
    CHECK_EQ_INT(FSMS[F_INDEX].count, FSMS[0].count);

    raft_fixture_close(&F);
}

int main(void)
{
    RUN(install_during_own_snapshot);
    return unit_done();
}
