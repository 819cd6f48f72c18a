/* cmd_rollout.c - wardenctl rollout ...: warden.v1.Rollouts (issue 6,
 * docs/rollouts.md), plus the offline manifest writer. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../domain/rollout.h"
#include "../grpc/grpc.h"
#include "cmd.h"
#include "cmd_int.h"
#include "fmt_ops.h"
#include "manifest.h"
#include "offline.h"
#include "pubkey.h"
#include "sign.h"
#include "warden/v1/rollout.pb-c.h"

#define SVC "/warden.v1.Rollouts/"

static Warden__V1__ReadConsistency consistency(const struct cli_args *a)
{
    return a->serializable
               ? WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_SERIALIZABLE
               : WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_LINEARIZABLE;
}

/* ---- release keys ------------------------------------------------------------ */

static int cmd_key_register(const struct cli_args *a, struct cli_client *c,
                            FILE *out, FILE *err)
{
    uint8_t key[CLI_PUBKEY_MAX];
    size_t key_len = a->public_key_len;
    memcpy(key, a->public_key, key_len);
    if (a->public_key_file != NULL) {
        struct werr e;
        if (cli_pubkey_from_file(a->public_key_file, CLI_KEY_ALG_ED25519, key,
                                 sizeof key, &key_len, &e) != 0) {
            return cli__report(err, GRPC_STATUS_INVALID_ARGUMENT, e.msg);
        }
    }
    Warden__V1__RegisterReleaseKeyRequest req =
        WARDEN__V1__REGISTER_RELEASE_KEY_REQUEST__INIT;
    req.key_id = (char *)a->key_id;
    req.public_key.data = key;
    req.public_key.len = key_len;
    req.idempotency_key = cli__idem(a);
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, cli__mut_class(a), SVC "RegisterReleaseKey", &req.base,
                       &warden__v1__register_release_key_response__descriptor, &m,
                       NULL, err);
    if (rc == 0) {
        Warden__V1__RegisterReleaseKeyResponse *r = (void *)m;
        if (r->key != NULL) {
            cli_fmt_release_key(out, r->key, a->json);
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

static int cmd_key_revoke(const struct cli_args *a, struct cli_client *c,
                          FILE *out, FILE *err)
{
    Warden__V1__RevokeReleaseKeyRequest req = WARDEN__V1__REVOKE_RELEASE_KEY_REQUEST__INIT;
    req.key_id = (char *)a->key_id;
    req.reason = (char *)a->reason;
    req.idempotency_key = cli__idem(a);
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, cli__mut_class(a), SVC "RevokeReleaseKey", &req.base,
                       &warden__v1__revoke_release_key_response__descriptor, &m,
                       NULL, err);
    if (rc == 0) {
        Warden__V1__RevokeReleaseKeyResponse *r = (void *)m;
        if (r->key != NULL) {
            cli_fmt_release_key(out, r->key, a->json);
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

/* ---- releases ------------------------------------------------------------------ */

/* A signed manifest ready to send: the bytes from --manifest-file, checked
 * with the domain's strict decoder (so a wrong file fails here, not as a
 * signature the server cannot match), and the signature from
 * --signature-hex or made here with --private-key-file (Ed25519 over
 * exactly the manifest bytes, docs/rollouts.md). */
struct signed_manifest {
    uint8_t bytes[RO_MANIFEST_MAX];
    size_t len;
    uint8_t sig[CLI_SIG_MAX];
    size_t sig_len;
};

static int load_signed_manifest(const struct cli_args *a, struct signed_manifest *sm,
                                FILE *err)
{
    struct werr e;
    static struct ro_manifest m;
    if (cli_file_read(a->manifest_file, sm->bytes, sizeof sm->bytes, &sm->len,
                      &e) != 0) {
        return cli__report(err, GRPC_STATUS_INVALID_ARGUMENT, e.msg);
    }
    if (ro_manifest_decode(sm->bytes, sm->len, &m, &e) != 0) {
        char msg[WERR_MSG_MAX + CLI_PATH_MAX + 8];
        snprintf(msg, sizeof msg, "%s: %s", a->manifest_file, e.msg);
        return cli__report(err, GRPC_STATUS_INVALID_ARGUMENT, msg);
    }
    if (a->signature_hex != NULL) {
        if (cli_hex_decode(a->signature_hex, sm->sig, sizeof sm->sig, &sm->sig_len) !=
                0 ||
            sm->sig_len != RO_SIG_LEN) {
            return cli__report(err, GRPC_STATUS_INVALID_ARGUMENT,
                               "--signature-hex: an Ed25519 signature is 64 bytes");
        }
        return 0;
    }
    struct cli_privkey *k = NULL;
    if (cli_privkey_from_file(a->private_key_file, &k, &e) != 0) {
        return cli__report(err, GRPC_STATUS_INVALID_ARGUMENT, e.msg);
    }
    int rc = 0;
    if (cli_privkey_alg(k) != CLI_KEY_ALG_ED25519) {
        rc = cli__report(err, GRPC_STATUS_INVALID_ARGUMENT,
                         "--private-key-file: release keys are Ed25519");
    } else if (cli_privkey_sign(k, sm->bytes, sm->len, sm->sig, sizeof sm->sig,
                                &sm->sig_len, &e) != 0) {
        rc = cli__report(err, GRPC_STATUS_INTERNAL, e.msg);
    }
    cli_privkey_free(k);
    return rc;
}

static void release_req(const struct cli_args *a, struct signed_manifest *sm,
                        uint64_t rollback_of, Warden__V1__CreateReleaseRequest *req)
{
    warden__v1__create_release_request__init(req);
    req->manifest.data = sm->bytes;
    req->manifest.len = sm->len;
    req->key_id = (char *)a->key_id;
    req->signature.data = sm->sig;
    req->signature.len = sm->sig_len;
    req->rollback_of = rollback_of;
    req->reason = (char *)(a->reason ? a->reason : "");
    req->idempotency_key = "";
}

static int cmd_release_create(const struct cli_args *a, struct cli_client *c,
                              FILE *out, FILE *err)
{
    static struct signed_manifest sm;
    int rc = load_signed_manifest(a, &sm, err);
    if (rc != 0) {
        return rc;
    }
    Warden__V1__CreateReleaseRequest req;
    release_req(a, &sm, a->rollback_of, &req);
    req.idempotency_key = cli__idem(a);
    ProtobufCMessage *m = NULL;
    rc = cli__call(a, c, cli__mut_class(a), SVC "CreateRelease", &req.base,
                   &warden__v1__create_release_response__descriptor, &m, NULL, err);
    if (rc == 0) {
        Warden__V1__CreateReleaseResponse *r = (void *)m;
        if (r->release != NULL) {
            cli_fmt_release(out, r->release, a->json);
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

static int cmd_release_get(const struct cli_args *a, struct cli_client *c,
                           FILE *out, FILE *err)
{
    Warden__V1__GetReleaseRequest req = WARDEN__V1__GET_RELEASE_REQUEST__INIT;
    req.release_id = a->object_id;
    req.consistency = consistency(a);
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, CLI_RETRY_READ, SVC "GetRelease", &req.base,
                       &warden__v1__get_release_response__descriptor, &m, NULL, err);
    if (rc == 0) {
        Warden__V1__GetReleaseResponse *r = (void *)m;
        if (r->release != NULL) {
            cli_fmt_release(out, r->release, a->json);
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

int cli__cmd_manifest(const struct cli_args *a, FILE *out, FILE *err)
{
    static struct ro_manifest m;
    static uint8_t buf[RO_MANIFEST_MAX];
    struct werr e;
    if (cli_manifest_build(a->version, a->counter, a->artifact_sha256_hex,
                           a->artifact_size, a->models, a->n_models, &m, &e) != 0) {
        fprintf(err, "wardenctl: %s\n", e.msg);
        return CLI_EXIT_USAGE;
    }
    size_t n = cli_manifest_encode(&m, buf, sizeof buf);
    if (n == 0) {
        fprintf(err, "wardenctl: the manifest encoder refused these values\n");
        return CLI_EXIT_USAGE;
    }
    /* Binary bytes to a terminal help nobody and may drive it. */
    if (out == stdout && isatty(fileno(stdout))) {
        fprintf(err, "wardenctl: the manifest is binary; redirect stdout to a "
                "file (> FILE)\n");
        return CLI_EXIT_USAGE;
    }
    if (fwrite(buf, 1, n, out) != n || fflush(out) != 0) {
        fprintf(err, "wardenctl: cannot write the manifest\n");
        return 2;
    }
    return 0;
}

/* ---- rollouts ------------------------------------------------------------------ */

static int print_rollout_resp(int rc, ProtobufCMessage *m, const struct cli_args *a,
                              FILE *out)
{
    if (rc == 0) {
        cli_fmt_rollout_resp(out, (void *)m, a->json);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

static int cmd_create(const struct cli_args *a, struct cli_client *c, FILE *out,
                      FILE *err)
{
    Warden__V1__CreateRolloutRequest req = WARDEN__V1__CREATE_ROLLOUT_REQUEST__INIT;
    Warden__V1__RolloutSelector sel = WARDEN__V1__ROLLOUT_SELECTOR__INIT;
    Warden__V1__Label l[CLI_SELECTOR_MAX], *lp[CLI_SELECTOR_MAX];
    Warden__V1__RolloutStage st[CLI_STAGES_MAX], *sp[CLI_STAGES_MAX];
    for (size_t i = 0; i < a->n_selector; i++) {
        warden__v1__label__init(&l[i]);
        l[i].key = (char *)a->selector[i].key;
        l[i].value = (char *)a->selector[i].value;
        lp[i] = &l[i];
    }
    sel.labels = lp;
    sel.n_labels = a->n_selector;
    sel.hardware_model = (char *)(a->model ? a->model : "");
    sel.gateway_id = (char *)(a->gateway ? a->gateway : "");
    /* Every stage gets the same gates; defaults are the safe ones of
     * docs/cli.md: one report, 100% success, any failure aborts. */
    for (size_t i = 0; i < a->n_stages; i++) {
        warden__v1__rollout_stage__init(&st[i]);
        st[i].name = (char *)a->stages[i].name;
        st[i].percent_bp = a->stages[i].percent_bp;
        st[i].max_devices = a->stages[i].max_devices;
        st[i].min_reported = a->min_reported ? a->min_reported : 1;
        st[i].success_ratio_bp = a->has_success ? a->success_bp : CLI_BP;
        st[i].failure_ratio_bp = a->has_failure ? a->failure_bp : 0;
        st[i].per_device_timeout_ms = a->device_timeout_ms;
        st[i].bake_ms = a->bake_ms;
        st[i].auto_advance = !a->manual;
        sp[i] = &st[i];
    }
    req.release_id = a->release_id;
    req.selector = &sel;
    req.stages = sp;
    req.n_stages = a->n_stages;
    req.name = (char *)(a->name ? a->name : "");
    req.idempotency_key = cli__idem(a);
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, cli__mut_class(a), SVC "CreateRollout", &req.base,
                       &warden__v1__rollout_response__descriptor, &m, NULL, err);
    return print_rollout_resp(rc, m, a, out);
}

static int get_rollout(const struct cli_args *a, struct cli_client *c,
                       Warden__V1__GetRolloutResponse **out, FILE *err)
{
    Warden__V1__GetRolloutRequest req = WARDEN__V1__GET_ROLLOUT_REQUEST__INIT;
    req.rollout_id = a->object_id;
    req.consistency = consistency(a);
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, CLI_RETRY_READ, SVC "GetRollout", &req.base,
                       &warden__v1__get_rollout_response__descriptor, &m, NULL, err);
    *out = (void *)m;
    if (rc == 0 && (*out)->rollout == NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
        *out = NULL;
        return cli__report(err, GRPC_STATUS_INTERNAL, "response without a rollout");
    }
    return rc;
}

static int cmd_status(const struct cli_args *a, struct cli_client *c, FILE *out,
                      FILE *err)
{
    Warden__V1__GetRolloutResponse *r = NULL;
    int rc = get_rollout(a, c, &r, err);
    if (rc == 0) {
        cli_fmt_rollout_status(out, r, a->json);
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    return rc;
}

static int cmd_abort(const struct cli_args *a, struct cli_client *c, FILE *out,
                     FILE *err)
{
    Warden__V1__AbortRolloutRequest req = WARDEN__V1__ABORT_ROLLOUT_REQUEST__INIT;
    Warden__V1__CreateReleaseRequest rb;
    static struct signed_manifest sm;
    req.rollout_id = a->object_id;
    req.reason = (char *)a->reason;
    req.idempotency_key = cli__idem(a);
    if (a->rollback) {
        /* The rollback release must name the aborted rollout's release. */
        Warden__V1__GetRolloutResponse *g = NULL;
        int rc = get_rollout(a, c, &g, err);
        if (rc != 0) {
            return rc;
        }
        uint64_t of = g->rollout->release_id;
        protobuf_c_message_free_unpacked(&g->base, NULL);
        rc = load_signed_manifest(a, &sm, err);
        if (rc != 0) {
            return rc;
        }
        release_req(a, &sm, of, &rb);
        req.rollback = &rb;
    }
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, cli__mut_class(a), SVC "AbortRollout", &req.base,
                       &warden__v1__rollout_response__descriptor, &m, NULL, err);
    return print_rollout_resp(rc, m, a, out);
}

/* Start, Pause, Resume and Advance share a shape: id, reason, key. */
static int cmd_transition(const struct cli_args *a, struct cli_client *c,
                          FILE *out, FILE *err)
{
    char *reason = (char *)(a->reason ? a->reason : "");
    ProtobufCMessage *m = NULL;
    int rc;
    const ProtobufCMessageDescriptor *d = &warden__v1__rollout_response__descriptor;
    switch (a->cmd) {
    case CLI_CMD_ROLLOUT_START: {
        Warden__V1__StartRolloutRequest req = WARDEN__V1__START_ROLLOUT_REQUEST__INIT;
        req.rollout_id = a->object_id;
        req.reason = reason;
        req.idempotency_key = cli__idem(a);
        rc = cli__call(a, c, cli__mut_class(a), SVC "StartRollout", &req.base, d, &m,
                       NULL, err);
        break;
    }
    case CLI_CMD_ROLLOUT_PAUSE: {
        Warden__V1__PauseRolloutRequest req = WARDEN__V1__PAUSE_ROLLOUT_REQUEST__INIT;
        req.rollout_id = a->object_id;
        req.reason = reason;
        req.idempotency_key = cli__idem(a);
        rc = cli__call(a, c, cli__mut_class(a), SVC "PauseRollout", &req.base, d, &m,
                       NULL, err);
        break;
    }
    case CLI_CMD_ROLLOUT_RESUME: {
        Warden__V1__ResumeRolloutRequest req = WARDEN__V1__RESUME_ROLLOUT_REQUEST__INIT;
        req.rollout_id = a->object_id;
        req.reason = reason;
        req.idempotency_key = cli__idem(a);
        rc = cli__call(a, c, cli__mut_class(a), SVC "ResumeRollout", &req.base, d,
                       &m, NULL, err);
        break;
    }
    default: {
        Warden__V1__AdvanceRolloutRequest req =
            WARDEN__V1__ADVANCE_ROLLOUT_REQUEST__INIT;
        req.rollout_id = a->object_id;
        req.reason = reason;
        req.force = a->force;
        req.idempotency_key = cli__idem(a);
        rc = cli__call(a, c, cli__mut_class(a), SVC "AdvanceRollout", &req.base, d,
                       &m, NULL, err);
        break;
    }
    }
    return print_rollout_resp(rc, m, a, out);
}

/* ---- devices ------------------------------------------------------------------- */

static int cmd_desired(const struct cli_args *a, struct cli_client *c, FILE *out,
                       FILE *err)
{
    Warden__V1__GetDesiredStateRequest req = WARDEN__V1__GET_DESIRED_STATE_REQUEST__INIT;
    req.device_id = (char *)a->device_id;
    req.idempotency_key = cli__idem(a);
    ProtobufCMessage *m = NULL;
    /* A write (it may record an assignment and takes a control sequence). */
    int rc = cli__call(a, c, cli__mut_class(a), SVC "GetDesiredState", &req.base,
                       &warden__v1__get_desired_state_response__descriptor, &m, NULL,
                       err);
    if (rc == 0) {
        cli_fmt_desired(out, (void *)m, a->json);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

/* As a device's update agent would: sign the report message of
 * docs/rollouts.md with the device key. For tests and tools. */
static int cmd_report(const struct cli_args *a, struct cli_client *c, FILE *out,
                      FILE *err)
{
    static uint8_t msg[RO_REPORT_MSG_MAX];
    uint8_t sig[CLI_SIG_MAX];
    size_t sig_len = 0;
    const char *detail = a->detail ? a->detail : "";
    struct werr e;
    if (a->signature_hex != NULL) {
        (void)cli_hex_decode(a->signature_hex, sig, sizeof sig, &sig_len);
    } else {
        size_t mlen = ro_report_message(a->device_id, a->key_epoch, a->counter,
                                        a->rollout_ref, a->release_counter,
                                        (uint32_t)a->phase, detail, msg, sizeof msg);
        if (mlen == 0) {
            return cli__report(err, GRPC_STATUS_INVALID_ARGUMENT,
                               "device ID or --detail too long");
        }
        struct cli_privkey *k = NULL;
        if (cli_privkey_from_file(a->private_key_file, &k, &e) != 0 ||
            cli_privkey_sign(k, msg, mlen, sig, sizeof sig, &sig_len, &e) != 0) {
            cli_privkey_free(k);
            return cli__report(err, GRPC_STATUS_INVALID_ARGUMENT, e.msg);
        }
        cli_privkey_free(k);
    }
    Warden__V1__ReportUpdateStatusRequest req =
        WARDEN__V1__REPORT_UPDATE_STATUS_REQUEST__INIT;
    req.device_id = (char *)a->device_id;
    req.key_epoch = a->key_epoch;
    req.counter = a->counter;
    req.rollout_id = a->rollout_ref;
    req.release_counter = a->release_counter;
    req.phase = (Warden__V1__UpdatePhase)a->phase;
    req.detail = (char *)detail;
    req.signature.data = sig;
    req.signature.len = sig_len;
    ProtobufCMessage *m = NULL;
    /* Not retried after an ambiguous failure: the same counter again would
     * answer REPLAY and hide the first verdict (like telemetry submit). */
    int rc = cli__call(a, c, CLI_RETRY_UNKEYED, SVC "ReportUpdateStatus", &req.base,
                       &warden__v1__report_update_status_response__descriptor, &m,
                       NULL, err);
    if (rc == 0) {
        cli_fmt_report(out, (void *)m, a->json);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

int cli__cmd_rollout(const struct cli_args *a, struct cli_client *c, FILE *out,
                     FILE *err)
{
    switch (a->cmd) {
    case CLI_CMD_ROLLOUT_KEY_REGISTER:
        return cmd_key_register(a, c, out, err);
    case CLI_CMD_ROLLOUT_KEY_REVOKE:
        return cmd_key_revoke(a, c, out, err);
    case CLI_CMD_ROLLOUT_RELEASE_CREATE:
        return cmd_release_create(a, c, out, err);
    case CLI_CMD_ROLLOUT_RELEASE_GET:
        return cmd_release_get(a, c, out, err);
    case CLI_CMD_ROLLOUT_CREATE:
        return cmd_create(a, c, out, err);
    case CLI_CMD_ROLLOUT_START:
    case CLI_CMD_ROLLOUT_PAUSE:
    case CLI_CMD_ROLLOUT_RESUME:
    case CLI_CMD_ROLLOUT_ADVANCE:
        return cmd_transition(a, c, out, err);
    case CLI_CMD_ROLLOUT_ABORT:
        return cmd_abort(a, c, out, err);
    case CLI_CMD_ROLLOUT_STATUS:
        return cmd_status(a, c, out, err);
    case CLI_CMD_ROLLOUT_DESIRED:
        return cmd_desired(a, c, out, err);
    case CLI_CMD_ROLLOUT_REPORT:
        return cmd_report(a, c, out, err);
    default:
        return cli__report(err, GRPC_STATUS_INTERNAL, "no such rollout command");
    }
}
