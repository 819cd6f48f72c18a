#include "cmd.h"
#include "cmd_int.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../grpc/grpc.h"
#include "fmt.h"
#include "follow.h"
#include "grpc/health/v1/health.pb-c.h"
#include "../domain/audit_chain.h"
#include "../domain/ctl_envelope.h"
#include "../domain/devkey.h"
#include "auditfile.h"
#include "json.h"
#include "offline.h"
#include "sign.h"
#include "warden/v1/audit.pb-c.h"
#include "warden/v1/control.pb-c.h"
#include "warden/v1/telemetry.pb-c.h"
#include "pubkey.h"
#include "warden/v1/inventory.pb-c.h"

static int report(FILE *err, int code, const char *msg)
{
    cli_fmt_error(err, code, msg);
    return code;
}

static int status_report(FILE *err, const struct cli_status *st)
{
    if (st->leader[0] != '\0') {
        char msg[sizeof st->msg + sizeof st->leader + 32];
        if (st->leader_id != 0) {
            snprintf(msg, sizeof msg, "%s (leader: %u at %s)", st->msg,
                     (unsigned)st->leader_id, st->leader);
        } else {
            snprintf(msg, sizeof msg, "%s (leader: %s)", st->msg, st->leader);
        }
        return report(err, st->code, msg);
    }
    return report(err, st->code, st->msg);
}

/* Sleep for a retry backoff (bounded by CLI_FOLLOW_BACKOFF_MAX_MS). */
static void pause_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000u,
                          .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* One unary call with leader following and failover (cli/follow.h): at
 * most 1 + CLI_FOLLOW_HOPS_MAX + CLI_FOLLOW_WAITS_MAX attempts. The error
 * printed is the last attempt's, with the reason the loop stopped when that
 * helps. */
#define stream_spec cli__stream_spec

static int attempt(struct cli_client *c, const char *path,
                   const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *desc,
                   ProtobufCMessage **resp, const struct stream_spec *ss,
                   struct cli_status *st)
{
    if (ss != NULL) {
        return cli_client_stream(c, path, req, ss->cb, ss->user, ss->timeout_ms,
                                 ss->stop, st);
    }
    return cli_client_call(c, path, req, desc, resp, st);
}

static int call_ex(const struct cli_args *a, struct cli_client *c,
                   enum cli_retry_class cls, const char *path,
                   const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *desc,
                   ProtobufCMessage **resp, const struct stream_spec *ss,
                   FILE *err)
{
    struct cli_status st;
    struct cli_follow_out d;
    char dead[CLI_FOLLOW_DEAD_MAX][CLI_ENDPOINT_LEN_MAX + 1];
    size_t n_dead = 0;
    unsigned hops = 0, waits = 0, retries = 0;
    int rc = attempt(c, path, req, desc, resp, ss, &st);
    while (rc != 0) {
        /* A stream that already delivered entries is not restarted: they
         * are printed, and a retry would print them again. */
        if (ss != NULL && *ss->n_received > 0) {
            return status_report(err, &st);
        }
        /* A specific endpoint that did not connect is down for this call. */
        if (st.delivery == CLI_DELIVERY_NOT_SENT && st.endpoint[0] != '\0' &&
            n_dead < CLI_FOLLOW_DEAD_MAX) {
            snprintf(dead[n_dead++], sizeof dead[0], "%s", st.endpoint);
        }
        struct cli_follow_in in = {
            .code = st.code,
            .delivery = st.delivery,
            .leader = st.leader,
            .endpoint = st.endpoint,
            .cls = cls,
            .hops = hops,
            .waits = waits,
            .endpoints = a->endpoints,
            .n_endpoints = a->n_endpoints,
            .dead = dead,
            .n_dead = n_dead,
        };
        cli_follow_decide(&in, &d);
        if (d.action == CLI_FOLLOW_STOP) {
            if (d.exhausted || d.unsafe) {
                size_t len = strlen(st.msg);
                snprintf(st.msg + len, sizeof st.msg - len, "%s(%s%s)",
                         len ? " " : "", d.why,
                         d.exhausted ? " after retries" : "");
            }
            return status_report(err, &st);
        }
        hops += d.hop ? 1u : 0u;
        waits += d.delay_ms ? 1u : 0u;
        retries++;
        if (a->verbose) {
            fprintf(err, "wardenctl: %s: %s from %s: %s; retry %u at %s", path,
                    grpc_status_name(st.code),
                    st.endpoint[0] ? st.endpoint : "(endpoints)", d.why,
                    retries, d.endpoint);
            if (d.delay_ms) {
                fprintf(err, " after %u ms", d.delay_ms);
            }
            fputc('\n', err);
        }
        if (d.delay_ms) {
            pause_ms(d.delay_ms);
        }
        rc = cli_client_reconnect(c, d.endpoint, &st);
        if (rc == 0) {
            rc = attempt(c, path, req, desc, resp, ss, &st);
        }
    }
    return 0;
}

int cli__report(FILE *err, int code, const char *msg)
{
    return report(err, code, msg);
}

int cli__call(const struct cli_args *a, struct cli_client *c,
              enum cli_retry_class cls, const char *path,
              const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
              ProtobufCMessage **resp, const struct cli__stream_spec *ss,
              FILE *err)
{
    return call_ex(a, c, cls, path, req, desc, resp, ss, err);
}

/* A message's repeated field `name`: its count and its array. */
static void **repeated_of(const ProtobufCMessage *m, const char *name,
                          size_t *n)
{
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    const char *base = (const char *)m;
    *n = *(const size_t *)(const void *)(base + fd->quantifier_offset);
    return *(void **const *)(const void *)(base + fd->offset);
}

int cli__list_pages(const struct cli_args *a, struct cli_client *c,
                    const char *path, const ProtobufCMessage *req,
                    char **req_token, const ProtobufCMessageDescriptor *desc,
                    const char *items_field, struct cli__pages *p, FILE *err)
{
    memset(p, 0, sizeof *p);
    const ProtobufCFieldDescriptor *tok_fd =
        protobuf_c_message_descriptor_get_field_by_name(desc, "next_page_token");
    const char *token = a->page_token ? a->page_token : "";
    size_t total = 0;
    int rc = 0;
    for (;;) {
        *req_token = (char *)token;
        ProtobufCMessage *m = NULL;
        rc = call_ex(a, c, CLI_RETRY_READ, path, req, desc, &m, NULL, err);
        if (rc != 0) {
            break;
        }
        p->page[p->n_pages++] = m;
        size_t n;
        (void)repeated_of(m, items_field, &n);
        total += n;
        token = *(char *const *)(const void *)((const char *)m +
                                               tok_fd->offset);
        if (!a->all || token[0] == '\0') {
            break;
        }
        if (p->n_pages == CLI_LIST_MAX_PAGES) {
            rc = GRPC_STATUS_RESOURCE_EXHAUSTED;
            p->limited = 1;
            break;
        }
    }
    p->next_token = token;
    if (p->n_pages == 0 || (rc != 0 && !p->limited)) {
        return rc;
    }
    p->items = malloc((total ? total : 1) * sizeof *p->items);
    if (p->items == NULL) {
        return report(err, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < p->n_pages; i++) {
        size_t n;
        void **v = repeated_of(p->page[i], items_field, &n);
        for (size_t k = 0; k < n; k++) {
            p->items[p->n_items++] = v[k];
        }
    }
    return rc;
}

void cli__pages_free(struct cli__pages *p)
{
    free(p->items);
    p->items = NULL;
    for (size_t i = 0; i < p->n_pages; i++) {
        protobuf_c_message_free_unpacked(p->page[i], NULL);
    }
    p->n_pages = 0;
}

static int call(const struct cli_args *a, struct cli_client *c,
                enum cli_retry_class cls, const char *path,
                const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                FILE *err)
{
    return call_ex(a, c, cls, path, req, desc, resp, NULL, err);
}

/* Print the device a call answered with; frees m. */
static int print_device_resp(ProtobufCMessage *m, Warden__V1__Device *d,
                             const struct cli_args *a, FILE *out, FILE *err)
{
    if (d == NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
        return report(err, GRPC_STATUS_INTERNAL, "response without a device");
    }
    cli_fmt_device(out, d, a->json);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

static int cmd_health(const struct cli_args *a, struct cli_client *c, FILE *out,
                      FILE *err)
{
    Grpc__Health__V1__HealthCheckRequest req =
        GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)a->service;
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, CLI_RETRY_READ, "/grpc.health.v1.Health/Check", &req.base,
                  &grpc__health__v1__health_check_response__descriptor, &m, err);
    if (rc != 0) {
        return rc;
    }
    Grpc__Health__V1__HealthCheckResponse *resp = (void *)m;
    int serving = (int)resp->status;
    protobuf_c_message_free_unpacked(m, NULL);
    cli_fmt_health(out, serving, a->json);
    /* A probe must fail when the server says it is not serving. */
    return serving == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               ? 0
               : GRPC_STATUS_UNAVAILABLE;
}

static int cmd_enroll(const struct cli_args *a, struct cli_client *c, FILE *out,
                      FILE *err)
{
    Warden__V1__EnrollDeviceRequest req = WARDEN__V1__ENROLL_DEVICE_REQUEST__INIT;
    uint8_t key[CLI_PUBKEY_MAX];
    size_t key_len = a->public_key_len;
    memcpy(key, a->public_key, key_len);
    if (a->public_key_file != NULL) {
        struct werr e;
        if (cli_pubkey_from_file(a->public_key_file, a->key_alg, key, sizeof key,
                                 &key_len, &e) != 0) {
            return report(err, GRPC_STATUS_INVALID_ARGUMENT, e.msg);
        }
    }
    Warden__V1__Label labels[CLI_LABELS_MAX];
    Warden__V1__Label *lp[CLI_LABELS_MAX];
    for (size_t i = 0; i < a->n_labels; i++) {
        warden__v1__label__init(&labels[i]);
        labels[i].key = (char *)a->labels[i].key;
        labels[i].value = (char *)a->labels[i].value;
        lp[i] = &labels[i];
    }
    req.device_id = (char *)a->device_id;
    req.key_algorithm = (Warden__V1__KeyAlgorithm)a->key_alg;
    req.public_key.data = key;
    req.public_key.len = key_len;
    if (a->has_attestation) {
        req.attestation_digest.data = (uint8_t *)a->attestation;
        req.attestation_digest.len = sizeof a->attestation;
    }
    req.hardware_model = (char *)(a->model ? a->model : "");
    req.firmware_version = (char *)(a->firmware ? a->firmware : "");
    req.gateway_id = (char *)(a->gateway ? a->gateway : "");
    req.idempotency_key = (char *)(a->idempotency_key ? a->idempotency_key : "");
    req.n_labels = a->n_labels;
    req.labels = lp;

    ProtobufCMessage *m = NULL;
    /* With a key the server deduplicates retries (issue 3), so an
     * ambiguous failure may be retried; without one only a definite
     * "not the leader" may. */
    enum cli_retry_class cls = req.idempotency_key[0] != '\0'
                                   ? CLI_RETRY_KEYED
                                   : CLI_RETRY_UNKEYED;
    int rc = call(a, c, cls, "/warden.v1.Inventory/EnrollDevice", &req.base,
                  &warden__v1__enroll_device_response__descriptor, &m, err);
    if (rc != 0) {
        return rc;
    }
    return print_device_resp(
        m, ((Warden__V1__EnrollDeviceResponse *)(void *)m)->device, a, out, err);
}

static int cmd_get(const struct cli_args *a, struct cli_client *c, FILE *out,
                   FILE *err)
{
    Warden__V1__GetDeviceRequest req = WARDEN__V1__GET_DEVICE_REQUEST__INIT;
    req.device_id = (char *)a->device_id;
    req.consistency = a->serializable
                          ? WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_SERIALIZABLE
                          : WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_LINEARIZABLE;
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, CLI_RETRY_READ, "/warden.v1.Inventory/GetDevice", &req.base,
                  &warden__v1__get_device_response__descriptor, &m, err);
    if (rc != 0) {
        return rc;
    }
    return print_device_resp(
        m, ((Warden__V1__GetDeviceResponse *)(void *)m)->device, a, out, err);
}

static int cmd_list(const struct cli_args *a, struct cli_client *c, FILE *out,
                    FILE *err)
{
    Warden__V1__ListDevicesRequest req = WARDEN__V1__LIST_DEVICES_REQUEST__INIT;
    Warden__V1__Label filter = WARDEN__V1__LABEL__INIT;
    req.page_size = a->page_size;
    req.state = (Warden__V1__DeviceState)a->state;
    req.gateway_id = (char *)(a->gateway ? a->gateway : "");
    req.firmware_version = (char *)(a->firmware ? a->firmware : "");
    if (a->n_labels == 1) {
        filter.key = (char *)a->labels[0].key;
        filter.value = (char *)a->labels[0].value;
        req.label = &filter;
    }
    req.consistency = a->serializable
                          ? WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_SERIALIZABLE
                          : WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_LINEARIZABLE;

    struct cli__pages pg;
    int rc = cli__list_pages(a, c, "/warden.v1.Inventory/ListDevices", &req.base,
                             &req.page_token,
                             &warden__v1__list_devices_response__descriptor,
                             "devices", &pg, err);
    if (pg.items != NULL) {
        cli_fmt_devices(out, (Warden__V1__Device **)pg.items, pg.n_items,
                        pg.next_token, a->json);
    }
    if (pg.limited) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "--all stopped after %u pages; continue with --page-token",
                 CLI_LIST_MAX_PAGES);
        report(err, rc, msg);
    }
    cli__pages_free(&pg);
    return rc;
}

static int cmd_cluster_status(const struct cli_args *a, struct cli_client *c,
                              FILE *out, FILE *err)
{
    Warden__V1__ClusterStatusRequest req = WARDEN__V1__CLUSTER_STATUS_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    /* Any node answers from its own view: a follower is not redirected. */
    int rc = call(a, c, CLI_RETRY_READ, "/warden.v1.Cluster/Status", &req.base,
                  &warden__v1__cluster_status_response__descriptor, &m, err);
    if (rc != 0) {
        return rc;
    }
    cli_fmt_cluster_status(out, (void *)m, a->json);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

/* Membership changes carry no idempotency key, so they are retried only
 * on a definite "not the leader" (or when the request never left). */
static int cmd_cluster_add(const struct cli_args *a, struct cli_client *c,
                           FILE *out, FILE *err)
{
    Warden__V1__AddMemberRequest req = WARDEN__V1__ADD_MEMBER_REQUEST__INIT;
    req.id = a->member_id;
    req.peer_address = (char *)a->peer_address;
    req.client_address = (char *)a->client_address;
    req.spare_only = a->spare_only ? 1 : 0;
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, CLI_RETRY_UNKEYED, "/warden.v1.Cluster/AddMember",
                  &req.base, &warden__v1__add_member_response__descriptor, &m,
                  err);
    if (rc != 0) {
        return rc;
    }
    Warden__V1__AddMemberResponse *resp = (void *)m;
    cli_fmt_members(out, resp->members, resp->n_members, a->json);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

static int cmd_cluster_remove(const struct cli_args *a, struct cli_client *c,
                              FILE *out, FILE *err)
{
    Warden__V1__RemoveMemberRequest req = WARDEN__V1__REMOVE_MEMBER_REQUEST__INIT;
    req.id = a->member_id;
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, CLI_RETRY_UNKEYED, "/warden.v1.Cluster/RemoveMember",
                  &req.base, &warden__v1__remove_member_response__descriptor,
                  &m, err);
    if (rc != 0) {
        return rc;
    }
    Warden__V1__RemoveMemberResponse *resp = (void *)m;
    cli_fmt_members(out, resp->members, resp->n_members, a->json);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

static int cmd_cluster_transfer(const struct cli_args *a, struct cli_client *c,
                                FILE *out, FILE *err)
{
    Warden__V1__TransferLeadershipRequest req =
        WARDEN__V1__TRANSFER_LEADERSHIP_REQUEST__INIT;
    req.id = a->member_id; /* 0: raft picks */
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, CLI_RETRY_UNKEYED, "/warden.v1.Cluster/TransferLeadership",
                  &req.base,
                  &warden__v1__transfer_leadership_response__descriptor, &m,
                  err);
    if (rc != 0) {
        return rc;
    }
    Warden__V1__TransferLeadershipResponse *resp = (void *)m;
    cli_fmt_transfer(out, resp->leader_id, a->json);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

/* ---- issue 4: lifecycle, rotation, batches, telemetry, control, audit ------- */

/* Retry class of a mutation: keyed ones may be retried after an ambiguous
 * failure (the server deduplicates), unkeyed ones may not. */
static enum cli_retry_class mut_class(const struct cli_args *a)
{
    return a->idempotency_key && a->idempotency_key[0] ? CLI_RETRY_KEYED
                                                       : CLI_RETRY_UNKEYED;
}

static char *idem(const struct cli_args *a)
{
    return (char *)(a->idempotency_key ? a->idempotency_key : "");
}

enum cli_retry_class cli__mut_class(const struct cli_args *a)
{
    return mut_class(a);
}

char *cli__idem(const struct cli_args *a)
{
    return idem(a);
}

/* --public-key-hex / --public-key-file into key (CLI_PUBKEY_MAX). */
static int load_pubkey(const struct cli_args *a, uint8_t *key, size_t *len,
                       FILE *err)
{
    *len = a->public_key_len;
    memcpy(key, a->public_key, a->public_key_len);
    if (a->public_key_file != NULL) {
        struct werr e;
        if (cli_pubkey_from_file(a->public_key_file, a->key_alg, key,
                                 CLI_PUBKEY_MAX, len, &e) != 0) {
            return report(err, GRPC_STATUS_INVALID_ARGUMENT, e.msg);
        }
    }
    return 0;
}

/* --payload-hex / --payload-file, at most cap bytes, into a malloc'd
 * buffer (*buf, free it). */
static int load_payload(const struct cli_args *a, size_t cap, uint8_t **buf,
                        size_t *len, FILE *err)
{
    *buf = malloc(cap ? cap : 1);
    *len = 0;
    if (*buf == NULL) {
        return report(err, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    struct werr e;
    int rc = 0;
    if (a->payload_hex != NULL) {
        if (cli_hex_decode(a->payload_hex, *buf, cap, len) != 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "--payload-hex: more than %zu bytes", cap);
            rc = report(err, GRPC_STATUS_INVALID_ARGUMENT, msg);
        }
    } else if (cli_file_read(a->payload_file, *buf, cap, len, &e) != 0) {
        rc = report(err, GRPC_STATUS_INVALID_ARGUMENT, e.msg);
    }
    if (rc != 0) {
        free(*buf);
        *buf = NULL;
    }
    return rc;
}

static int cmd_device_state(const struct cli_args *a, struct cli_client *c,
                            FILE *out, FILE *err)
{
    Warden__V1__SetDeviceStateRequest req = WARDEN__V1__SET_DEVICE_STATE_REQUEST__INIT;
    req.device_id = (char *)a->device_id;
    req.state = (Warden__V1__DeviceState)a->state;
    req.reason = (char *)(a->reason ? a->reason : "");
    req.idempotency_key = idem(a);
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, mut_class(a), "/warden.v1.Inventory/SetDeviceState",
                  &req.base, &warden__v1__set_device_state_response__descriptor,
                  &m, err);
    if (rc != 0) {
        return rc;
    }
    return print_device_resp(m, ((Warden__V1__SetDeviceStateResponse *)(void *)m)->device,
                             a, out, err);
}

static int cmd_device_reenroll(const struct cli_args *a, struct cli_client *c,
                               FILE *out, FILE *err)
{
    Warden__V1__ReEnrollDeviceRequest req = WARDEN__V1__RE_ENROLL_DEVICE_REQUEST__INIT;
    uint8_t key[CLI_PUBKEY_MAX];
    size_t key_len;
    if (load_pubkey(a, key, &key_len, err) != 0) {
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    req.device_id = (char *)a->device_id;
    req.key_algorithm = (Warden__V1__KeyAlgorithm)a->key_alg;
    req.public_key.data = key;
    req.public_key.len = key_len;
    if (a->has_attestation) {
        req.attestation_digest.data = (uint8_t *)a->attestation;
        req.attestation_digest.len = sizeof a->attestation;
    }
    req.idempotency_key = idem(a);
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, mut_class(a), "/warden.v1.Inventory/ReEnrollDevice",
                  &req.base, &warden__v1__re_enroll_device_response__descriptor,
                  &m, err);
    if (rc != 0) {
        return rc;
    }
    return print_device_resp(m, ((Warden__V1__ReEnrollDeviceResponse *)(void *)m)->device,
                             a, out, err);
}

static int cmd_device_rebind(const struct cli_args *a, struct cli_client *c,
                             FILE *out, FILE *err)
{
    Warden__V1__RebindDeviceRequest req = WARDEN__V1__REBIND_DEVICE_REQUEST__INIT;
    req.device_id = (char *)a->device_id;
    req.gateway_id = (char *)a->gateway;
    req.idempotency_key = idem(a);
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, mut_class(a), "/warden.v1.Inventory/RebindDevice",
                  &req.base, &warden__v1__rebind_device_response__descriptor, &m,
                  err);
    if (rc != 0) {
        return rc;
    }
    return print_device_resp(m, ((Warden__V1__RebindDeviceResponse *)(void *)m)->device,
                             a, out, err);
}

/* UpdateDeviceLabels (issue 7): the positional k=v set replaces the
 * device's labels; --expected-version makes it a compare-and-set on the
 * device's updated_index (FAILED_PRECONDITION when it moved). */
static int cmd_device_labels(const struct cli_args *a, struct cli_client *c,
                             FILE *out, FILE *err)
{
    Warden__V1__UpdateDeviceLabelsRequest req =
        WARDEN__V1__UPDATE_DEVICE_LABELS_REQUEST__INIT;
    Warden__V1__Label lv[CLI_LABELS_MAX];
    Warden__V1__Label *lp[CLI_LABELS_MAX];
    for (size_t i = 0; i < a->n_labels; i++) {
        warden__v1__label__init(&lv[i]);
        lv[i].key = (char *)a->labels[i].key;
        lv[i].value = (char *)a->labels[i].value;
        lp[i] = &lv[i];
    }
    req.device_id = (char *)a->device_id;
    req.labels = lp;
    req.n_labels = a->n_labels;
    req.expected_updated_index = a->has_expected_version ? a->expected_version : 0;
    req.idempotency_key = idem(a);
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, mut_class(a), "/warden.v1.Inventory/UpdateDeviceLabels",
                  &req.base, &warden__v1__update_device_labels_response__descriptor,
                  &m, err);
    if (rc != 0) {
        return rc;
    }
    return print_device_resp(
        m, ((Warden__V1__UpdateDeviceLabelsResponse *)(void *)m)->device, a, out,
        err);
}

/* IssueRotationNonce. A new nonce replaces the device's outstanding one,
 * so this is a mutation without a key: not retried after an ambiguous
 * failure (asking again is the user's call). */
static int get_nonce(const struct cli_args *a, struct cli_client *c,
                     Warden__V1__IssueRotationNonceResponse **out, FILE *err)
{
    Warden__V1__IssueRotationNonceRequest req =
        WARDEN__V1__ISSUE_ROTATION_NONCE_REQUEST__INIT;
    req.device_id = (char *)a->device_id;
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, CLI_RETRY_UNKEYED, "/warden.v1.Inventory/IssueRotationNonce",
                  &req.base,
                  &warden__v1__issue_rotation_nonce_response__descriptor, &m, err);
    if (rc != 0) {
        return rc;
    }
    *out = (void *)m;
    if ((*out)->nonce.len != CLI_NONCE_LEN) {
        protobuf_c_message_free_unpacked(m, NULL);
        return report(err, GRPC_STATUS_INTERNAL, "nonce is not 32 bytes");
    }
    return 0;
}

static void hexv(FILE *f, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%02x", b[i]);
    }
}

static int cmd_device_rotate_nonce(const struct cli_args *a, struct cli_client *c,
                                   FILE *out, FILE *err)
{
    Warden__V1__IssueRotationNonceResponse *r = NULL;
    int rc = get_nonce(a, c, &r, err);
    if (rc != 0) {
        return rc;
    }
    if (a->json) {
        fputs("{\"nonce\":\"", out);
        hexv(out, r->nonce.data, r->nonce.len);
        fprintf(out, "\",\"issued_index\":%" PRIu64 ",\"expires_index\":%" PRIu64
                ",\"new_key_epoch\":%" PRIu64 "}\n", r->issued_index,
                r->expires_index, r->new_key_epoch);
    } else {
        fprintf(out, "%-20s", "nonce");
        hexv(out, r->nonce.data, r->nonce.len);
        fprintf(out, "\n%-20s%" PRIu64 "\n%-20s%" PRIu64 "\n%-20s%" PRIu64 "\n",
                "issued_index", r->issued_index, "expires_index",
                r->expires_index, "new_key_epoch", r->new_key_epoch);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

/* Fetch a nonce, then sign the rotation message (docs/freshness.md) twice:
 * with the new private key (proof of possession) and with the device's
 * current one (consent), and rotate. The message binds the new public key
 * in canonical form, computed here with the domain's own parser so it is
 * byte-for-byte what the server rebuilds. */
static int cmd_device_rotate_key(const struct cli_args *a, struct cli_client *c,
                                 FILE *out, FILE *err)
{
    struct werr e;
    struct cli_privkey *k = NULL, *cur = NULL;
    if (cli_privkey_from_file(a->private_key_file, &k, &e) != 0) {
        return report(err, GRPC_STATUS_INVALID_ARGUMENT, e.msg);
    }
    int rc = 0;
    if (cli_privkey_from_file(a->current_key_file, &cur, &e) != 0) {
        rc = report(err, GRPC_STATUS_INVALID_ARGUMENT, e.msg);
        goto out_free_key;
    }
    enum cli_key_alg alg = cli_privkey_alg(k);
    uint8_t key[CLI_PUBKEY_MAX], sig[CLI_SIG_MAX], cur_sig[CLI_SIG_MAX],
        msg[CLI_ROTATE_MSG_MAX];
    size_t key_len = 0, sig_len = 0, cur_sig_len = 0;
    if (a->key_alg != CLI_KEY_ALG_NONE && a->key_alg != alg) {
        rc = report(err, GRPC_STATUS_INVALID_ARGUMENT,
                    "--key-alg does not match the private key's algorithm");
        goto out_free_key;
    }
    if (a->public_key_len > 0 || a->public_key_file != NULL) {
        struct cli_args b = *a;
        b.key_alg = alg;
        if (load_pubkey(&b, key, &key_len, err) != 0) {
            rc = GRPC_STATUS_INVALID_ARGUMENT;
            goto out_free_key;
        }
    } else if (cli_privkey_public(k, key, sizeof key, &key_len, &e) != 0) {
        rc = report(err, GRPC_STATUS_INVALID_ARGUMENT, e.msg);
        goto out_free_key;
    }
    struct devkey canon;
    if (devkey_parse((int)alg, key, key_len, &canon, &e) != 0) {
        rc = report(err, GRPC_STATUS_INVALID_ARGUMENT, e.msg);
        goto out_free_key;
    }
    Warden__V1__IssueRotationNonceResponse *nr = NULL;
    rc = get_nonce(a, c, &nr, err);
    if (rc != 0) {
        goto out_free_key;
    }
    size_t mlen = nr->new_key_epoch < 2
                      ? 0
                      : cli_rotate_message(a->device_id, nr->new_key_epoch - 1,
                                           nr->new_key_epoch, canon.canon,
                                           canon.canon_len, nr->nonce.data, msg,
                                           sizeof msg);
    protobuf_c_message_free_unpacked(&nr->base, NULL);
    if (mlen == 0) {
        rc = report(err, GRPC_STATUS_INVALID_ARGUMENT,
                    "device ID too long, or the server sent key epoch 0");
        goto out_free_key;
    }
    if (cli_privkey_sign(k, msg, mlen, sig, sizeof sig, &sig_len, &e) != 0 ||
        cli_privkey_sign(cur, msg, mlen, cur_sig, sizeof cur_sig, &cur_sig_len,
                         &e) != 0) {
        rc = report(err, GRPC_STATUS_INTERNAL, e.msg);
        goto out_free_key;
    }
    Warden__V1__RotateDeviceKeyRequest req = WARDEN__V1__ROTATE_DEVICE_KEY_REQUEST__INIT;
    req.device_id = (char *)a->device_id;
    req.key_algorithm = (Warden__V1__KeyAlgorithm)alg;
    req.public_key.data = key;
    req.public_key.len = key_len;
    req.new_key_signature.data = sig;
    req.new_key_signature.len = sig_len;
    req.current_key_signature.data = cur_sig;
    req.current_key_signature.len = cur_sig_len;
    req.idempotency_key = idem(a);
    ProtobufCMessage *m = NULL;
    rc = call(a, c, mut_class(a), "/warden.v1.Inventory/RotateDeviceKey", &req.base,
              &warden__v1__rotate_device_key_response__descriptor, &m, err);
    if (rc == 0) {
        rc = print_device_resp(m, ((Warden__V1__RotateDeviceKeyResponse *)(void *)m)->device,
                               a, out, err);
    }
out_free_key:
    cli_privkey_free(cur);
    cli_privkey_free(k);
    return rc;
}

/* One line of an enroll-batch file (docs/cli.md). Strings borrow from the
 * item's own buffers. */
struct batch_item {
    Warden__V1__EnrollDeviceRequest req;
    Warden__V1__Label labels[CLI_LABELS_MAX];
    Warden__V1__Label *lp[CLI_LABELS_MAX];
    char id[CLI_DEVICE_ID_MAX + 1];
    char model[CLI_BATCH_STR_MAX + 1], firmware[CLI_BATCH_STR_MAX + 1];
    char gateway[CLI_BATCH_STR_MAX + 1];
    char lk[CLI_LABELS_MAX][CLI_LABEL_KEY_MAX + 1];
    char lv[CLI_LABELS_MAX][CLI_LABEL_VALUE_MAX + 1];
    uint8_t key[CLI_PUBKEY_MAX];
    uint8_t attest[CLI_DIGEST_LEN];
};

static int batch_str(const struct cli_json_field *f, size_t n, const char *k,
                     char *out, size_t max, struct werr *e)
{
    const struct cli_json_field *x = cli_json_find(f, n, k);
    size_t len;
    out[0] = '\0';
    if (x == NULL) {
        return 0;
    }
    if (cli_json_str(x, out, max + 1, &len) != 0) {
        return werr_set(e, WERR_INVALID, "\"%s\": want a string of at most %zu bytes",
                        k, max);
    }
    return 0;
}

static int batch_hex(const struct cli_json_field *f, size_t n, const char *k,
                     uint8_t *out, size_t max, size_t *len, struct werr *e)
{
    const struct cli_json_field *x = cli_json_find(f, n, k);
    static char hex[2 * CLI_PUBKEY_MAX + 2];
    size_t hl;
    *len = 0;
    if (x == NULL) {
        return 0;
    }
    if (cli_json_str(x, hex, sizeof hex, &hl) != 0 ||
        cli_hex_decode(hex, out, max, len) != 0) {
        return werr_set(e, WERR_INVALID, "\"%s\": want hex of at most %zu bytes",
                        k, max);
    }
    return 0;
}

static int cli_batch_parse_line(const char *line, size_t len, struct batch_item *it,
                         struct werr *e)
{
    static const char *const known[] = {"device_id", "key_algorithm", "public_key",
                                        "attestation_digest", "hardware_model",
                                        "firmware_version", "gateway_id", "labels",
                                        NULL};
    static struct cli_json_field f[CLI_JSON_FIELDS_MAX], lf[CLI_JSON_FIELDS_MAX];
    size_t n = 0, ln = 0, klen = 0, alen = 0;
    memset(it, 0, sizeof *it);
    warden__v1__enroll_device_request__init(&it->req);
    if (cli_json_object_parse(line, len, f, CLI_JSON_FIELDS_MAX, &n, e) != 0) {
        return WERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (known[k] != NULL && strcmp(known[k], f[i].key) != 0) {
            k++;
        }
        if (known[k] == NULL) {
            return werr_set(e, WERR_INVALID, "unknown member \"%s\"", f[i].key);
        }
    }
    char alg[32];
    if (batch_str(f, n, "device_id", it->id, CLI_DEVICE_ID_MAX, e) != 0 ||
        batch_str(f, n, "key_algorithm", alg, sizeof alg - 1, e) != 0 ||
        batch_hex(f, n, "public_key", it->key, sizeof it->key, &klen, e) != 0 ||
        batch_hex(f, n, "attestation_digest", it->attest, sizeof it->attest, &alen,
                  e) != 0 ||
        batch_str(f, n, "hardware_model", it->model, CLI_BATCH_STR_MAX, e) != 0 ||
        batch_str(f, n, "firmware_version", it->firmware, CLI_BATCH_STR_MAX, e) != 0 ||
        batch_str(f, n, "gateway_id", it->gateway, CLI_BATCH_STR_MAX, e) != 0) {
        return WERR_INVALID;
    }
    enum cli_key_alg ka;
    const char *an = strncmp(alg, "KEY_ALGORITHM_", 14) == 0 ? alg + 14 : alg;
    if (strcmp(an, "ECDSA_P256") == 0) {
        an = "p256";
    }
    if (it->id[0] == '\0' || klen == 0 || cli_key_alg_parse(an, &ka) != 0) {
        return werr_set(e, WERR_INVALID,
                        "need \"device_id\", \"key_algorithm\" (ed25519|p256) and "
                        "\"public_key\" (hex)");
    }
    if (alen != 0 && alen != CLI_DIGEST_LEN) {
        return werr_set(e, WERR_INVALID, "\"attestation_digest\": want 32 bytes");
    }
    const struct cli_json_field *l = cli_json_find(f, n, "labels");
    if (l != NULL) {
        if (l->type != CLI_JSON_OBJECT ||
            cli_json_object_parse(l->raw, l->raw_len, lf, CLI_JSON_FIELDS_MAX, &ln,
                                  e) != 0 ||
            ln > CLI_LABELS_MAX) {
            return werr_set(e, WERR_INVALID,
                            "\"labels\": want an object of at most %d string values",
                            CLI_LABELS_MAX);
        }
        for (size_t i = 0; i < ln; i++) {
            size_t vl;
            if (strlen(lf[i].key) > CLI_LABEL_KEY_MAX ||
                cli_json_str(&lf[i], it->lv[i], sizeof it->lv[i], &vl) != 0) {
                return werr_set(e, WERR_INVALID, "label \"%s\": bad key or value",
                                lf[i].key);
            }
            snprintf(it->lk[i], sizeof it->lk[i], "%s", lf[i].key);
            warden__v1__label__init(&it->labels[i]);
            it->labels[i].key = it->lk[i];
            it->labels[i].value = it->lv[i];
            it->lp[i] = &it->labels[i];
        }
    }
    it->req.device_id = it->id;
    it->req.key_algorithm = (Warden__V1__KeyAlgorithm)ka;
    it->req.public_key.data = it->key;
    it->req.public_key.len = klen;
    if (alen) {
        it->req.attestation_digest.data = it->attest;
        it->req.attestation_digest.len = alen;
    }
    it->req.hardware_model = it->model;
    it->req.firmware_version = it->firmware;
    it->req.gateway_id = it->gateway;
    it->req.labels = it->lp;
    it->req.n_labels = ln;
    return 0;
}

/* Send one chunk. *done counts devices enrolled so far. */
static int batch_send(const struct cli_args *a, struct cli_client *c,
                      struct batch_item *items, size_t n, unsigned chunk,
                      uint64_t *done, FILE *out, FILE *err)
{
    Warden__V1__EnrollDeviceRequest *rp[CLI_BATCH_MAX];
    for (size_t i = 0; i < n; i++) {
        rp[i] = &items[i].req;
    }
    char key[CLI_BATCH_STR_MAX + 32] = "";
    if (a->idempotency_key != NULL && a->idempotency_key[0] != '\0') {
        /* One key per chunk: a retried chunk is deduplicated, the next
         * chunk is not mistaken for it. */
        snprintf(key, sizeof key, "%s/%u", a->idempotency_key, chunk);
    }
    Warden__V1__EnrollDevicesRequest req = WARDEN__V1__ENROLL_DEVICES_REQUEST__INIT;
    req.devices = rp;
    req.n_devices = n;
    req.idempotency_key = key;
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, key[0] ? CLI_RETRY_KEYED : CLI_RETRY_UNKEYED,
                  "/warden.v1.Inventory/EnrollDevices", &req.base,
                  &warden__v1__enroll_devices_response__descriptor, &m, err);
    if (rc != 0) {
        return rc;
    }
    Warden__V1__EnrollDevicesResponse *r = (void *)m;
    *done += r->n_devices;
    if (!a->json) {
        fprintf(out, "chunk %u: enrolled %zu devices (%" PRIu64 " so far)\n", chunk,
                r->n_devices, *done);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

static int cmd_enroll_batch(const struct cli_args *a, struct cli_client *c,
                            FILE *out, FILE *err)
{
    FILE *in = fopen(a->file, "rb");
    if (in == NULL) {
        char msg[CLI_PATH_MAX + 64];
        snprintf(msg, sizeof msg, "%s: %s", a->file, strerror(errno));
        return report(err, GRPC_STATUS_INVALID_ARGUMENT, msg);
    }
    size_t per = a->batch_size ? a->batch_size : CLI_BATCH_MAX;
    struct batch_item *items = calloc(per, sizeof *items);
    static char line[CLI_BATCH_LINE_MAX + 2];
    if (items == NULL) {
        fclose(in);
        return report(err, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    uint64_t lineno = 0, done = 0;
    size_t n = 0;
    unsigned chunk = 0;
    int rc = 0;
    while (rc == 0) {
        int eof = fgets(line, sizeof line, in) == NULL;
        if (!eof) {
            lineno++;
            size_t len = strlen(line);
            if (len > 0 && line[len - 1] == '\n') {
                line[--len] = '\0';
            } else if (!feof(in)) {
                char msg[96];
                snprintf(msg, sizeof msg, "%s line %" PRIu64 ": longer than %u bytes",
                         a->file, lineno, CLI_BATCH_LINE_MAX);
                rc = report(err, GRPC_STATUS_INVALID_ARGUMENT, msg);
                break;
            }
            if (lineno > CLI_BATCH_LINES_MAX) {
                rc = report(err, GRPC_STATUS_INVALID_ARGUMENT,
                            "more lines than enroll-batch takes (CLI_BATCH_LINES_MAX)");
                break;
            }
            size_t sp = strspn(line, " \t\r");
            if (line[sp] == '\0' || line[sp] == '#') {
                continue; /* blank or comment */
            }
            struct werr e = {0};
            if (cli_batch_parse_line(line, len, &items[n], &e) != 0) {
                char msg[WERR_MSG_MAX + CLI_PATH_MAX + 32];
                snprintf(msg, sizeof msg, "%s line %" PRIu64 ": %s", a->file, lineno,
                         e.msg);
                rc = report(err, GRPC_STATUS_INVALID_ARGUMENT, msg);
                break;
            }
            n++;
        }
        if (n == per || (eof && n > 0)) {
            rc = batch_send(a, c, items, n, chunk++, &done, out, err);
            n = 0;
        }
        if (eof) {
            break;
        }
    }
    fclose(in);
    free(items);
    if (a->json && rc == 0) {
        fprintf(out, "{\"enrolled\":%" PRIu64 ",\"chunks\":%u}\n", done, chunk);
    } else if (rc != 0 && done > 0) {
        fprintf(err, "wardenctl: %" PRIu64 " devices in %u earlier chunk(s) were "
                "enrolled before the failure\n", done, chunk - 1);
    } else if (rc == 0) {
        fprintf(out, "enrolled %" PRIu64 " devices in %u chunk(s)\n", done, chunk);
    }
    return rc;
}

static const char *tlm_result_name(int r)
{
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value(&warden__v1__telemetry_result__descriptor, r);
    return ev ? ev->name : "TELEMETRY_RESULT_UNKNOWN";
}

static int cmd_telemetry_submit(const struct cli_args *a, struct cli_client *c,
                                FILE *out, FILE *err)
{
    uint8_t *payload = NULL, digest[32], sig[CLI_SIG_MAX], msg[CLI_TELEMETRY_MSG_MAX];
    size_t plen = 0, sig_len = 0;
    struct werr e;
    int rc = load_payload(a, CLI_TELEMETRY_PAYLOAD_MAX, &payload, &plen, err);
    if (rc != 0) {
        return rc;
    }
    if (cli_sha256(payload, plen, digest, &e) != 0) {
        rc = report(err, GRPC_STATUS_INTERNAL, e.msg);
        goto out_free;
    }
    if (a->signature_hex != NULL) {
        (void)cli_hex_decode(a->signature_hex, sig, sizeof sig, &sig_len);
    } else {
        struct cli_privkey *k = NULL;
        size_t mlen = cli_telemetry_message(a->device_id, a->key_epoch, a->counter,
                                            digest, msg, sizeof msg);
        if (mlen == 0) {
            rc = report(err, GRPC_STATUS_INVALID_ARGUMENT, "device ID too long");
            goto out_free;
        }
        if (cli_privkey_from_file(a->private_key_file, &k, &e) != 0 ||
            cli_privkey_sign(k, msg, mlen, sig, sizeof sig, &sig_len, &e) != 0) {
            cli_privkey_free(k);
            rc = report(err, GRPC_STATUS_INVALID_ARGUMENT, e.msg);
            goto out_free;
        }
        cli_privkey_free(k);
    }
    Warden__V1__SubmitTelemetryRequest req = WARDEN__V1__SUBMIT_TELEMETRY_REQUEST__INIT;
    req.device_id = (char *)a->device_id;
    req.key_epoch = a->key_epoch;
    req.counter = a->counter;
    req.payload_digest.data = digest;
    req.payload_digest.len = sizeof digest;
    req.signature.data = sig;
    req.signature.len = sig_len;
    req.payload.data = payload;
    req.payload.len = plen;
    ProtobufCMessage *m = NULL;
    /* Not retried after an ambiguous failure: a second submission of the
     * same counter would come back REPLAY and hide the first verdict. */
    rc = call(a, c, CLI_RETRY_UNKEYED, "/warden.v1.Telemetry/Submit", &req.base,
              &warden__v1__submit_telemetry_response__descriptor, &m, err);
    if (rc == 0) {
        Warden__V1__SubmitTelemetryResponse *r = (void *)m;
        if (a->json) {
            fprintf(out, "{\"result\":\"%s\",\"highest_counter\":%" PRIu64 "}\n",
                    tlm_result_name((int)r->result), r->highest_counter);
        } else {
            fprintf(out, "%-20s%s\n%-20s%" PRIu64 "\n", "result",
                    tlm_result_name((int)r->result), "highest_counter",
                    r->highest_counter);
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
out_free:
    free(payload);
    return rc;
}

static void print_envelope(FILE *out, const Warden__V1__IssueCommandResponse *r,
                           int json)
{
    struct ctl_envelope ce;
    struct werr e;
    int ok = ctl_envelope_decode(r->envelope.data, r->envelope.len, &ce, &e) == 0;
    if (json) {
        fputs("{\"envelope\":\"", out);
        hexv(out, r->envelope.data, r->envelope.len);
        fputs("\",\"signature\":\"", out);
        hexv(out, r->signature.data, r->signature.len);
        fputs("\",\"key_id\":", out);
        cli_json_string(out, r->key_id, strlen(r->key_id));
        fprintf(out, ",\"seq\":%" PRIu64 ",\"key_epoch\":%" PRIu64, r->seq,
                r->key_epoch);
        if (ok) {
            fprintf(out, ",\"cluster_time_ms\":%" PRIu64, ce.time_ms);
        }
        fputs("}\n", out);
        return;
    }
    fprintf(out, "%-20s", "envelope");
    hexv(out, r->envelope.data, r->envelope.len);
    fprintf(out, "\n%-20s", "signature");
    hexv(out, r->signature.data, r->signature.len);
    fprintf(out, "\n%-20s", "key_id");
    cli_json_string(out, r->key_id, strlen(r->key_id));
    fprintf(out, "\n%-20s%" PRIu64 "\n%-20s%" PRIu64 "\n", "seq", r->seq,
            "key_epoch", r->key_epoch);
    if (ok) {
        fprintf(out, "%-20s%" PRIu64 "\n%-20s%zu bytes\n", "cluster_time_ms",
                ce.time_ms, "payload", ce.payload_len);
    }
}

static int cmd_control_issue(const struct cli_args *a, struct cli_client *c,
                             FILE *out, FILE *err)
{
    uint8_t *payload = NULL;
    size_t plen = 0;
    int rc = load_payload(a, CTL_PAYLOAD_MAX, &payload, &plen, err);
    if (rc != 0) {
        return rc;
    }
    Warden__V1__IssueCommandRequest req = WARDEN__V1__ISSUE_COMMAND_REQUEST__INIT;
    req.device_id = (char *)a->device_id;
    req.payload.data = payload;
    req.payload.len = plen;
    req.idempotency_key = idem(a);
    ProtobufCMessage *m = NULL;
    rc = call(a, c, mut_class(a), "/warden.v1.Control/IssueCommand", &req.base,
              &warden__v1__issue_command_response__descriptor, &m, err);
    if (rc == 0) {
        print_envelope(out, (void *)m, a->json);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    free(payload);
    return rc;
}

static void print_cmd_key(FILE *out, const char *key_id,
                          const ProtobufCBinaryData *pk, uint64_t created,
                          int current, int has_current, int json)
{
    if (json) {
        fputs("{\"key_id\":", out);
        cli_json_string(out, key_id, strlen(key_id));
        fputs(",\"public_key\":\"", out);
        hexv(out, pk->data, pk->len);
        fprintf(out, "\",\"created_index\":%" PRIu64, created);
        if (has_current) {
            fprintf(out, ",\"current\":%s", current ? "true" : "false");
        }
        fputs("}\n", out);
        return;
    }
    fprintf(out, "%-20s", "key_id");
    cli_json_string(out, key_id, strlen(key_id));
    fprintf(out, "\n%-20s", "public_key");
    hexv(out, pk->data, pk->len);
    fprintf(out, "\n%-20s%" PRIu64 "\n", "created_index", created);
    if (has_current) {
        fprintf(out, "%-20s%s\n", "current", current ? "yes" : "no");
    }
}

static int cmd_control_key_get(const struct cli_args *a, struct cli_client *c,
                               FILE *out, FILE *err)
{
    Warden__V1__GetCommandKeyRequest req = WARDEN__V1__GET_COMMAND_KEY_REQUEST__INIT;
    req.key_id = (char *)(a->key_id ? a->key_id : "");
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, CLI_RETRY_READ, "/warden.v1.Control/GetCommandKey", &req.base,
                  &warden__v1__get_command_key_response__descriptor, &m, err);
    if (rc == 0) {
        Warden__V1__GetCommandKeyResponse *r = (void *)m;
        print_cmd_key(out, r->key_id, &r->public_key, r->created_index, r->current,
                      1, a->json);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

static int cmd_control_key_rotate(const struct cli_args *a, struct cli_client *c,
                                  FILE *out, FILE *err)
{
    Warden__V1__RotateCommandKeyRequest req = WARDEN__V1__ROTATE_COMMAND_KEY_REQUEST__INIT;
    req.key_id = (char *)a->key_id;
    ProtobufCMessage *m = NULL;
    /* Key ids are never reused, so a retried rotation after an ambiguous
     * failure would fail ALREADY_EXISTS at worst; still not retried, to
     * keep the rule simple: no key, no retry. */
    int rc = call(a, c, CLI_RETRY_UNKEYED, "/warden.v1.Control/RotateCommandKey",
                  &req.base, &warden__v1__rotate_command_key_response__descriptor,
                  &m, err);
    if (rc == 0) {
        Warden__V1__RotateCommandKeyResponse *r = (void *)m;
        print_cmd_key(out, r->key_id, &r->public_key, r->created_index, 0, 0,
                      a->json);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

/* ---- audit ------------------------------------------------------------------- */

static int cmd_audit_head(const struct cli_args *a, struct cli_client *c,
                          FILE *out, FILE *err)
{
    Warden__V1__AuditHeadRequest req = WARDEN__V1__AUDIT_HEAD_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, CLI_RETRY_READ, "/warden.v1.Audit/Head", &req.base,
                  &warden__v1__audit_head_response__descriptor, &m, err);
    if (rc != 0) {
        return rc;
    }
    Warden__V1__AuditHeadResponse *r = (void *)m;
    if (a->json) {
        fprintf(out, "{\"seq\":%" PRIu64 ",\"hash\":\"", r->seq);
        hexv(out, r->hash.data, r->hash.len);
        fprintf(out, "\",\"applied_index\":%" PRIu64 "}\n", r->applied_index);
    } else {
        fprintf(out, "%-20s%" PRIu64 "\n%-20s", "seq", r->seq, "hash");
        hexv(out, r->hash.data, r->hash.len);
        fprintf(out, "\n%-20s%" PRIu64 "\n", "applied_index", r->applied_index);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

static int cmd_audit_read(const struct cli_args *a, struct cli_client *c,
                          FILE *out, FILE *err)
{
    Warden__V1__ReadAuditRequest req = WARDEN__V1__READ_AUDIT_REQUEST__INIT;
    req.from_seq = a->has_from ? a->from_seq : 1;
    req.max_entries = a->max > CLI_AUDIT_PAGE_MAX ? CLI_AUDIT_PAGE_MAX
                                                  : (uint32_t)a->max;
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, CLI_RETRY_READ, "/warden.v1.Audit/Read", &req.base,
                  &warden__v1__read_audit_response__descriptor, &m, err);
    if (rc != 0) {
        return rc;
    }
    Warden__V1__ReadAuditResponse *r = (void *)m;
    if (a->json) {
        fputs("{\"entries\":[", out);
    }
    for (size_t i = 0; i < r->n_entries; i++) {
        if (a->json && i > 0) {
            fputc(',', out);
        }
        cli_fmt_audit_entry(out, r->entries[i], a->json);
    }
    if (a->json) {
        fprintf(out, "],\"next_seq\":%" PRIu64 ",\"head_seq\":%" PRIu64 "}\n",
                r->next_seq, r->head_seq);
    } else if (r->next_seq <= r->head_seq) {
        fprintf(out, "(more: --from %" PRIu64 "; head is seq %" PRIu64 ")\n",
                r->next_seq, r->head_seq);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

/* Ctrl-C during `audit tail`: stop the stream, exit 0. */
static volatile sig_atomic_t tail_stop;

static void on_sigint(int sig)
{
    (void)sig;
    tail_stop = 1;
}

struct tail_ctx {
    FILE *out;
    int json;
    uint64_t max;        /* 0: no limit */
    uint64_t n;
    uint64_t next;       /* the seq expected next (gap check) */
    int bad;             /* a message did not decode / out of order */
};

static int tail_cb(void *user, const uint8_t *msg, size_t len)
{
    struct tail_ctx *t = user;
    Warden__V1__AuditEntry *en = warden__v1__audit_entry__unpack(NULL, len, msg);
    if (en == NULL || (t->next != 0 && en->seq != t->next)) {
        if (en != NULL) {
            protobuf_c_message_free_unpacked(&en->base, NULL);
        }
        t->bad = 1;
        return 1;
    }
    cli_fmt_audit_entry(t->out, en, t->json); /* JSON: one line each */
    fflush(t->out); /* a tail is read as it happens */
    t->next = en->seq + 1;
    protobuf_c_message_free_unpacked(&en->base, NULL);
    t->n++;
    return t->max != 0 && t->n >= t->max;
}

static int cmd_audit_tail(const struct cli_args *a, struct cli_client *c,
                          FILE *out, FILE *err)
{
    Warden__V1__TailAuditRequest req = WARDEN__V1__TAIL_AUDIT_REQUEST__INIT;
    req.from_seq = a->has_from ? a->from_seq : 1;
    struct tail_ctx t = {.out = out, .json = a->json, .max = a->max,
                         .next = req.from_seq};
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    tail_stop = 0;
    (void)sigaction(SIGINT, &sa, &old);
    struct stream_spec ss = {
        .cb = tail_cb,
        .user = &t,
        /* A tail runs until stopped: only an explicit --timeout ends it. */
        .timeout_ms = a->timeout_given ? a->timeout_ms : 0,
        .stop = &tail_stop,
        .n_received = &t.n,
    };
    int rc = call_ex(a, c, CLI_RETRY_READ, "/warden.v1.Audit/Tail", &req.base, NULL,
                     NULL, &ss, err);
    (void)sigaction(SIGINT, &old, NULL);
    if (rc == 0 && t.bad) {
        return report(err, GRPC_STATUS_DATA_LOSS,
                      "tail: an entry did not decode or broke the seq order");
    }
    return rc;
}

static int cmd_audit_export(const struct cli_args *a, struct cli_client *c,
                            FILE *out, FILE *err)
{
    /* The head first: it bounds the range and goes in the header. */
    Warden__V1__AuditHeadRequest hreq = WARDEN__V1__AUDIT_HEAD_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    int rc = call(a, c, CLI_RETRY_READ, "/warden.v1.Audit/Head", &hreq.base,
                  &warden__v1__audit_head_response__descriptor, &m, err);
    if (rc != 0) {
        return rc;
    }
    struct cli_audit_header h = {0};
    Warden__V1__AuditHeadResponse *hr = (void *)m;
    h.head_seq = hr->seq;
    if (hr->hash.len == AUDIT_HASH_LEN) {
        memcpy(h.head_hash, hr->hash.data, AUDIT_HASH_LEN);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    h.from_seq = a->has_from ? a->from_seq : 1;
    h.to_seq = a->has_to && a->to_seq < h.head_seq ? a->to_seq : h.head_seq;
    if (a->has_to && a->to_seq > h.head_seq) {
        fprintf(err, "wardenctl: audit export: --to %" PRIu64 " is past the head "
                "(seq %" PRIu64 "); exporting up to the head\n", a->to_seq,
                h.head_seq);
    }
    if (h.to_seq + 1 < h.from_seq) {
        h.to_seq = h.from_seq - 1; /* empty range */
    }
    h.count = h.to_seq + 1 - h.from_seq;

    /* Write to FILE.tmp and rename on success, so a failed export never
     * leaves a file under the real name. */
    char tmp[CLI_PATH_MAX + 8];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", a->file) >= (int)sizeof tmp) {
        return report(err, GRPC_STATUS_INVALID_ARGUMENT, "FILE: path too long");
    }
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        char msg[CLI_PATH_MAX + 64];
        snprintf(msg, sizeof msg, "%s: %s", tmp, strerror(errno));
        return report(err, GRPC_STATUS_INVALID_ARGUMENT, msg);
    }
    (void)cli_audit_write_header(f, &h);
    uint64_t next = h.from_seq, pages = 0;
    static struct audit_rec rec;
    while (rc == 0 && next <= h.to_seq) {
        Warden__V1__ReadAuditRequest req = WARDEN__V1__READ_AUDIT_REQUEST__INIT;
        uint64_t left = h.to_seq - next + 1;
        req.from_seq = next;
        req.max_entries = left > CLI_AUDIT_PAGE_MAX ? CLI_AUDIT_PAGE_MAX
                                                    : (uint32_t)left;
        rc = call(a, c, CLI_RETRY_READ, "/warden.v1.Audit/Read", &req.base,
                  &warden__v1__read_audit_response__descriptor, &m, err);
        if (rc != 0) {
            break;
        }
        Warden__V1__ReadAuditResponse *r = (void *)m;
        pages++;
        if (r->n_entries == 0) {
            rc = report(err, GRPC_STATUS_DATA_LOSS,
                        "the server returned no entries below its head");
        }
        for (size_t i = 0; rc == 0 && i < r->n_entries && next <= h.to_seq; i++) {
            struct werr e;
            if (r->entries[i]->seq != next) {
                char msg[96];
                snprintf(msg, sizeof msg, "expected seq %" PRIu64 ", server sent %"
                         PRIu64, next, r->entries[i]->seq);
                rc = report(err, GRPC_STATUS_DATA_LOSS, msg);
            } else if (audit_rec_from_proto(r->entries[i], &rec, &e) != 0) {
                rc = report(err, GRPC_STATUS_DATA_LOSS, e.msg);
            } else {
                (void)cli_audit_write_entry(f, &rec);
                next++;
            }
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    int werr_io = ferror(f) != 0;
    if (fclose(f) != 0) {
        werr_io = 1;
    }
    if (rc == 0 && werr_io) {
        rc = report(err, GRPC_STATUS_INTERNAL, "cannot write the export file");
    }
    if (rc == 0 && rename(tmp, a->file) != 0) {
        char msg[CLI_PATH_MAX + 64];
        snprintf(msg, sizeof msg, "rename to %s: %s", a->file, strerror(errno));
        rc = report(err, GRPC_STATUS_INTERNAL, msg);
    }
    if (rc != 0) {
        (void)remove(tmp);
        return rc;
    }
    if (a->json) {
        fputs("{\"file\":", out);
        cli_json_string(out, a->file, strlen(a->file));
        fprintf(out, ",\"from_seq\":%" PRIu64 ",\"to_seq\":%" PRIu64
                ",\"count\":%" PRIu64 ",\"head_seq\":%" PRIu64 "}\n",
                h.from_seq, h.to_seq, h.count, h.head_seq);
    } else {
        fprintf(out, "exported %" PRIu64 " entries (seq %" PRIu64 "..%" PRIu64
                ") in %" PRIu64 " page(s); head at export: seq %" PRIu64 "\n",
                h.count, h.from_seq, h.to_seq, pages, h.head_seq);
    }
    return 0;
}

static int cli_cmd_i4_run(const struct cli_args *a, struct cli_client *c,
                          FILE *out, FILE *err)
{
    switch (a->cmd) {
    case CLI_CMD_DEVICE_STATE:
        return cmd_device_state(a, c, out, err);
    case CLI_CMD_DEVICE_REENROLL:
        return cmd_device_reenroll(a, c, out, err);
    case CLI_CMD_DEVICE_REBIND:
        return cmd_device_rebind(a, c, out, err);
    case CLI_CMD_DEVICE_LABELS:
        return cmd_device_labels(a, c, out, err);
    case CLI_CMD_DEVICE_ROTATE_NONCE:
        return cmd_device_rotate_nonce(a, c, out, err);
    case CLI_CMD_DEVICE_ROTATE_KEY:
        return cmd_device_rotate_key(a, c, out, err);
    case CLI_CMD_DEVICE_ENROLL_BATCH:
        return cmd_enroll_batch(a, c, out, err);
    case CLI_CMD_TELEMETRY_SUBMIT:
        return cmd_telemetry_submit(a, c, out, err);
    case CLI_CMD_CONTROL_ISSUE:
        return cmd_control_issue(a, c, out, err);
    case CLI_CMD_CONTROL_KEY_GET:
        return cmd_control_key_get(a, c, out, err);
    case CLI_CMD_CONTROL_KEY_ROTATE:
        return cmd_control_key_rotate(a, c, out, err);
    case CLI_CMD_AUDIT_HEAD:
        return cmd_audit_head(a, c, out, err);
    case CLI_CMD_AUDIT_READ:
        return cmd_audit_read(a, c, out, err);
    case CLI_CMD_AUDIT_TAIL:
        return cmd_audit_tail(a, c, out, err);
    case CLI_CMD_AUDIT_EXPORT:
        return cmd_audit_export(a, c, out, err);
    default:
        return report(err, GRPC_STATUS_INTERNAL, "no such command");
    }
}

int cli_cmd_run(const struct cli_args *a, FILE *out, FILE *err)
{
    if (a->cmd == CLI_CMD_ROLLOUT_RELEASE_MANIFEST) {
        return cli__cmd_manifest(a, out, err);
    }
    if (a->cmd == CLI_CMD_CERTS_INIT_CA || a->cmd == CLI_CMD_CERTS_ISSUE) {
        return cli__cmd_certs(a, out, err);
    }
    if (a->cmd == CLI_CMD_TOP) {
        return cli__cmd_top(a, out, err); /* one client per endpoint */
    }
    if (cli_cmd_offline(a->cmd)) {
        return cli_offline_run(a, out, err);
    }
    struct cli_client_config cfg = {
        .endpoints = a->endpoints,
        .n_endpoints = a->n_endpoints,
        .ca = a->ca,
        .cert = a->cert,
        .key = a->key,
        .timeout_ms = a->timeout_ms,
    };
    struct cli_status st;
    struct cli_client *c = NULL;
    if (cli_client_new(&c, &cfg, &st) != 0) {
        return status_report(err, &st);
    }
    int rc;
    switch (a->cmd) {
    case CLI_CMD_HEALTH:
        rc = cmd_health(a, c, out, err);
        break;
    case CLI_CMD_DEVICE_ENROLL:
        rc = cmd_enroll(a, c, out, err);
        break;
    case CLI_CMD_DEVICE_GET:
        rc = cmd_get(a, c, out, err);
        break;
    case CLI_CMD_DEVICE_LIST:
        rc = cmd_list(a, c, out, err);
        break;
    case CLI_CMD_CLUSTER_STATUS:
        rc = cmd_cluster_status(a, c, out, err);
        break;
    case CLI_CMD_CLUSTER_ADD:
        rc = cmd_cluster_add(a, c, out, err);
        break;
    case CLI_CMD_CLUSTER_REMOVE:
        rc = cmd_cluster_remove(a, c, out, err);
        break;
    case CLI_CMD_CLUSTER_TRANSFER:
        rc = cmd_cluster_transfer(a, c, out, err);
        break;
    default:
        if (a->cmd >= CLI_CMD_ACCESS_POLICY_GET && a->cmd <= CLI_CMD_ACCESS_WATCH) {
            rc = cli__cmd_access(a, c, out, err);
        } else if (a->cmd >= CLI_CMD_ROLLOUT_KEY_REGISTER &&
                   a->cmd <= CLI_CMD_ROLLOUT_REPORT) {
            rc = cli__cmd_rollout(a, c, out, err);
        } else {
            rc = cli_cmd_i4_run(a, c, out, err);
        }
        break;
    }
    cli_client_free(c);
    return rc;
}
