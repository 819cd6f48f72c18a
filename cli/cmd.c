#include "cmd.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../grpc/grpc.h"
#include "fmt.h"
#include "follow.h"
#include "grpc/health/v1/health.pb-c.h"
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
static int call(const struct cli_args *a, struct cli_client *c,
                enum cli_retry_class cls, const char *path,
                const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                FILE *err)
{
    struct cli_status st;
    struct cli_follow_out d;
    char dead[CLI_FOLLOW_DEAD_MAX][CLI_ENDPOINT_LEN_MAX + 1];
    size_t n_dead = 0;
    unsigned hops = 0, waits = 0, retries = 0;
    int rc = cli_client_call(c, path, req, desc, resp, &st);
    while (rc != 0) {
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
            rc = cli_client_call(c, path, req, desc, resp, &st);
        }
    }
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
    Warden__V1__EnrollDeviceResponse *resp = (void *)m;
    if (resp->device == NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
        return report(err, GRPC_STATUS_INTERNAL, "response without a device");
    }
    cli_fmt_device(out, resp->device, a->json);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
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
    Warden__V1__GetDeviceResponse *resp = (void *)m;
    if (resp->device == NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
        return report(err, GRPC_STATUS_INTERNAL, "response without a device");
    }
    cli_fmt_device(out, resp->device, a->json);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
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

    /* Pages stay alive until printed: the table aligns across all of them.
     * Bounded by CLI_LIST_MAX_PAGES times the response size limit. */
    Warden__V1__ListDevicesResponse *pages[CLI_LIST_MAX_PAGES];
    size_t npages = 0, ndev = 0;
    const char *token = a->page_token ? a->page_token : "";
    int rc = 0, limited = 0;
    for (;;) {
        req.page_token = (char *)token;
        ProtobufCMessage *m = NULL;
        rc = call(a, c, CLI_RETRY_READ, "/warden.v1.Inventory/ListDevices",
                  &req.base,
                  &warden__v1__list_devices_response__descriptor, &m, err);
        if (rc != 0) {
            break;
        }
        pages[npages++] = (void *)m;
        ndev += pages[npages - 1]->n_devices;
        token = pages[npages - 1]->next_page_token;
        if (!a->all || token[0] == '\0') {
            break;
        }
        if (npages == CLI_LIST_MAX_PAGES) {
            rc = GRPC_STATUS_RESOURCE_EXHAUSTED;
            limited = 1;
            break;
        }
    }
    if (npages > 0 && (rc == 0 || limited)) {
        Warden__V1__Device **devs = malloc((ndev ? ndev : 1) * sizeof *devs);
        if (devs == NULL) {
            rc = report(err, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            size_t k = 0;
            for (size_t p = 0; p < npages; p++) {
                for (size_t i = 0; i < pages[p]->n_devices; i++) {
                    devs[k++] = pages[p]->devices[i];
                }
            }
            cli_fmt_devices(out, devs, k, token, a->json);
            free(devs);
        }
        if (limited) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "--all stopped after %u pages; continue with --page-token",
                     CLI_LIST_MAX_PAGES);
            report(err, rc, msg);
        }
    }
    for (size_t p = 0; p < npages; p++) {
        protobuf_c_message_free_unpacked(&pages[p]->base, NULL);
    }
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

int cli_cmd_run(const struct cli_args *a, FILE *out, FILE *err)
{
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
        rc = report(err, GRPC_STATUS_INTERNAL, "no such command");
        break;
    }
    cli_client_free(c);
    return rc;
}
