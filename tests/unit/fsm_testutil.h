/* fsm_testutil.h - helpers shared by the state machine tests
 * (test_consensus_fsm_*.c): open a fresh fsm in a temp directory, build a
 * Command, and apply it at the next index the way raft would (encode, then
 * wfsm_apply). Static inline: each test file is its own program and uses
 * only some of them. */
#ifndef WARDEN_TESTS_FSM_TESTUTIL_H
#define WARDEN_TESTS_FSM_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "common/err.h"
#include "consensus/fsm.h"
#include "domain/audit.h"
#include "storage/store.h"

/* What ftu_run() returns when the node, not the command, failed (encode or
 * wfsm_apply returned an error): no WERR_* code has this value. */
#define FTU_NODE_ERROR (-1000)

/* main()'s fixtures: mkdtemp(tmpl) into root (cap bytes), and a fresh
 * Ed25519 public key into pub. 0, or 1 with the failure on stderr. */
static inline int ftu_setup(char *root, size_t cap, const char *tmpl,
                            uint8_t pub[32])
{
    snprintf(root, cap, "%s", tmpl);
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    size_t len = 32;
    if (pk == NULL || EVP_PKEY_get_raw_public_key(pk, pub, &len) != 1) {
        EVP_PKEY_free(pk);
        fprintf(stderr, "keygen failed\n");
        return 1;
    }
    EVP_PKEY_free(pk);
    return 0;
}

/* Open a fresh fsm in <root>/f<*seq> and bump *seq. NULL (with a message
 * on stderr) on failure. */
static inline struct wfsm *ftu_fsm_new(const char *root, unsigned *seq)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/f%u", root, (*seq)++);
    struct werr e = {0};
    struct wfsm *f = NULL;
    if (wfsm_open(&f, dir, 0, &e) != 0) {
        fprintf(stderr, "wfsm_open: %s\n", e.msg);
    }
    return f;
}

/* A Command with no op yet, from `who` (borrowed) in `role`, proposed at
 * cluster time time_ms. */
static inline void ftu_cmd_init(Warden__V1__Command *c, const char *who,
                                unsigned role, uint64_t time_ms)
{
    warden__v1__command__init(c);
    c->cluster_time_ms = time_ms;
    c->principal_name = (char *)who;
    c->principal_role = role;
}

/* Apply c at the next index of f (its applied index + 1). Returns the
 * command's code (0 or WERR_*), or FTU_NODE_ERROR. res may be NULL;
 * otherwise the caller frees it. msg, when not NULL, receives the result's
 * message (msg_cap bytes at most). */
static inline int ftu_run(struct wfsm *f, const Warden__V1__Command *c,
                          struct wfsm_result *res, char *msg, size_t msg_cap)
{
    struct werr e = {0};
    uint8_t *b;
    size_t n;
    struct wfsm_result local;
    struct wfsm_result *r = res ? res : &local;
    if (wfsm_cmd_encode(c, &b, &n, &e) != 0) {
        fprintf(stderr, "encode: %s\n", e.msg);
        return FTU_NODE_ERROR;
    }
    int rc = wfsm_apply(f, wfsm_applied_index(f) + 1, b, n, r, &e);
    free(b);
    if (rc) {
        fprintf(stderr, "apply: %s\n", e.msg);
        return FTU_NODE_ERROR;
    }
    int code = r->code;
    if (msg != NULL && snprintf(msg, msg_cap, "%s", r->msg) < 0) {
        msg[0] = '\0';
    }
    if (res == NULL) {
        wfsm_result_free(&local);
    }
    return code;
}

/* The ledger's newest entry, read in its own read txn. 0, -1 when no txn
 * could begin, or audit_head/audit_get's error. */
static inline int ftu_last_audit(struct wfsm *f, struct audit_rec *r)
{
    struct werr e = {0};
    struct store_txn *t;
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) != 0) {
        return -1;
    }
    uint64_t seq;
    uint8_t h[AUDIT_HASH_LEN];
    int rc = audit_head(wfsm_audit(f), t, &seq, h, &e);
    if (rc == 0) {
        rc = audit_get(wfsm_audit(f), t, seq, r, &e);
    }
    store_txn_abort(t);
    return rc;
}

#endif
