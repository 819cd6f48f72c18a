/* Tests for cli/fmt.c: exact table, device and JSON output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/fmt.h"
#include "unit.h"

/* Capture what fn writes into a string (open_memstream, POSIX 2008). */
static char *out_buf;
static size_t out_len;
static FILE *out_open(void)
{
    free(out_buf);
    out_buf = NULL;
    return open_memstream(&out_buf, &out_len);
}

static Warden__V1__Label lab[3];
static Warden__V1__Label *labp[3];
static uint8_t key[3] = {0x01, 0xab, 0xff};

static void mkdev(Warden__V1__Device *d, const char *id, int state, int nlab)
{
    warden__v1__device__init(d);
    d->device_id = (char *)id;
    d->state = (Warden__V1__DeviceState)state;
    d->key_algorithm = WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ED25519;
    d->public_key.data = key;
    d->public_key.len = sizeof key;
    d->gateway_id = "gw-1";
    d->firmware_version = "";
    d->hardware_model = "plc";
    d->key_epoch = 1;
    d->identity_epoch = 2;
    d->created_index = 7;
    d->updated_index = 8;
    d->created_time_ms = 1700000000000ull;
    d->updated_time_ms = 18446744073709551615ull;
    d->enrolled_by = "dev-admin";
    for (int i = 0; i < 3; i++) {
        warden__v1__label__init(&lab[i]);
        labp[i] = &lab[i];
    }
    lab[0].key = "site";
    lab[0].value = "plant-1";
    lab[1].key = "line";
    lab[1].value = "7";
    d->n_labels = (size_t)nlab;
    d->labels = labp;
}

TEST(table_aligned)
{
    Warden__V1__Device d1, d2;
    mkdev(&d1, "sensor-0001", 1, 2);
    mkdev(&d2, "s2", 2, 0);
    Warden__V1__Device *devs[] = {&d1, &d2};
    FILE *f = out_open();
    cli_fmt_devices(f, devs, 2, "", 0);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "DEVICE_ID    STATE        KEY_ALG  GATEWAY  FIRMWARE  MODEL  LABELS\n"
                 "sensor-0001  PROVISIONED  ED25519  gw-1     -         plc    site=plant-1,line=7\n"
                 "s2           ACTIVE       ED25519  gw-1     -         plc    -\n");
}

TEST(table_empty_with_token_and_escapes)
{
    FILE *f = out_open();
    cli_fmt_devices(f, NULL, 0, "tok-1", 0);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "DEVICE_ID  STATE  KEY_ALG  GATEWAY  FIRMWARE  MODEL  LABELS\n"
                 "(more: --page-token tok-1, or --all)\n");

    /* Terminal escapes from the server become '?'; UTF-8 counts as one
     * column per character. */
    Warden__V1__Device d;
    mkdev(&d, "\x1b[31mred", 3, 0);
    d.gateway_id = "g\xc3\xa9";
    Warden__V1__Device *devs[] = {&d};
    f = out_open();
    cli_fmt_devices(f, devs, 1, NULL, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "DEVICE_ID  STATE        KEY_ALG  GATEWAY  FIRMWARE  MODEL  LABELS\n"
                 "?[31mred   QUARANTINED  ED25519  g\xc3\xa9       -         plc    -\n");
}

TEST(table_cell_truncated)
{
    char id[CLI_CELL_MAX + 10];
    memset(id, 'x', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    Warden__V1__Device d;
    mkdev(&d, id, 1, 0);
    Warden__V1__Device *devs[] = {&d};
    FILE *f = out_open();
    cli_fmt_devices(f, devs, 1, NULL, 0);
    fclose(f);
    char want[CLI_CELL_MAX + 4];
    memset(want, 'x', CLI_CELL_MAX);
    memcpy(want + CLI_CELL_MAX, "...", 4);
    CHECK(strstr(out_buf, want) != NULL);
    CHECK(strstr(out_buf, "xxxx....") == NULL);
}

TEST(device_human)
{
    Warden__V1__Device d;
    mkdev(&d, "dev-1", 2, 1);
    FILE *f = out_open();
    cli_fmt_device(f, &d, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "device_id           dev-1\n"
                 "state               ACTIVE\n"
                 "key_algorithm       ED25519\n"
                 "public_key          01abff\n"
                 "key_fingerprint     -\n"
                 "key_epoch           1\n"
                 "attestation_digest  -\n"
                 "hardware_model      plc\n"
                 "firmware_version    -\n"
                 "gateway_id          gw-1\n"
                 "labels              site=plant-1\n"
                 "identity_epoch      2\n"
                 "created_index       7\n"
                 "updated_index       8\n"
                 "created_time_ms     1700000000000\n"
                 "updated_time_ms     18446744073709551615\n"
                 "enrolled_by         dev-admin\n");
}

TEST(device_json)
{
    Warden__V1__Device d;
    mkdev(&d, "dev-\"1\"\\\n", 4, 2);
    d.key_algorithm = WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ECDSA_P256;
    FILE *f = out_open();
    cli_fmt_device(f, &d, 1);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "{\"device_id\":\"dev-\\\"1\\\"\\\\\\n\",\"state\":\"DEVICE_STATE_REVOKED\","
                 "\"key_algorithm\":\"KEY_ALGORITHM_ECDSA_P256\",\"public_key\":\"01abff\","
                 "\"key_fingerprint\":\"\",\"key_epoch\":1,\"attestation_digest\":\"\","
                 "\"hardware_model\":\"plc\",\"firmware_version\":\"\",\"gateway_id\":\"gw-1\","
                 "\"labels\":[{\"key\":\"site\",\"value\":\"plant-1\"},{\"key\":\"line\",\"value\":\"7\"}],"
                 "\"identity_epoch\":2,\"created_index\":7,\"updated_index\":8,"
                 "\"created_time_ms\":1700000000000,\"updated_time_ms\":18446744073709551615,"
                 "\"enrolled_by\":\"dev-admin\"}\n");
}

TEST(list_json)
{
    Warden__V1__Device d;
    mkdev(&d, "a", 1, 0);
    Warden__V1__Device *devs[] = {&d, &d};
    FILE *f = out_open();
    cli_fmt_devices(f, devs, 2, "next", 1);
    fclose(f);
    CHECK(strncmp(out_buf, "{\"devices\":[{\"device_id\":\"a\",", 28) == 0);
    CHECK(strstr(out_buf, "\"enrolled_by\":\"dev-admin\"},{\"device_id\":\"a\"") != NULL);
    CHECK(strstr(out_buf, "],\"next_page_token\":\"next\"}\n") != NULL);
    f = out_open();
    cli_fmt_devices(f, NULL, 0, "", 1);
    fclose(f);
    CHECK_EQ_STR(out_buf, "{\"devices\":[],\"next_page_token\":\"\"}\n");
}

TEST(json_string_escapes)
{
    static const struct {
        const char *in;
        size_t len;
        const char *want;
    } cases[] = {
        {"plain", 5, "\"plain\""},
        {"\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\""},
        {"\t\r\b\f", 4, "\"\\t\\r\\b\\f\""},
        {"a\0b", 3, "\"a\\u0000b\""},
        {"\xc3\xa9", 2, "\"\xc3\xa9\""},                 /* valid UTF-8 kept */
        {"\xf0\x9f\x98\x80", 4, "\"\xf0\x9f\x98\x80\""}, /* 4-byte kept */
        {"\xff", 1, "\"\\ufffd\""},                      /* invalid byte */
        {"\xc0\xaf", 2, "\"\\ufffd\\ufffd\""},           /* overlong */
        {"\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""},/* surrogate */
        {"\xe2\x82", 2, "\"\\ufffd\\ufffd\""},           /* truncated */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = out_open();
        cli_json_string(f, cases[i].in, cases[i].len);
        fclose(f);
        CHECK_EQ_STR(out_buf, cases[i].want);
    }
}

TEST(health_and_errors)
{
    FILE *f = out_open();
    cli_fmt_health(f, 1, 0);
    cli_fmt_health(f, 2, 1);
    cli_fmt_health(f, 99, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf, "SERVING\n{\"status\":\"NOT_SERVING\"}\nUNKNOWN\n");
    f = out_open();
    cli_fmt_error(f, 5, "device \"x\" not found");
    cli_fmt_error(f, 14, "");
    cli_fmt_error(f, 7, "bad\x1b]0;title\x07");
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "wardenctl: NOT_FOUND: device \"x\" not found\n"
                 "wardenctl: UNAVAILABLE\n"
                 "wardenctl: PERMISSION_DENIED: bad?]0;title?\n");
}

TEST(enum_names)
{
    CHECK_EQ_STR(cli_state_name(2, 0), "ACTIVE");
    CHECK_EQ_STR(cli_state_name(2, 1), "DEVICE_STATE_ACTIVE");
    CHECK_EQ_STR(cli_key_alg_name(2, 0), "ECDSA_P256");
    CHECK_EQ_STR(cli_state_name(42, 0), "UNKNOWN(42)");
}

static Warden__V1__Member mem[3];
static Warden__V1__Member *memp[3];

static void mkmembers(int progress)
{
    static const char *const peer[] = {"127.0.0.11:7001", "127.0.0.12:7001",
                                       "127.0.0.14:7001"};
    static const char *const client[] = {"127.0.0.11:7443", "127.0.0.12:7443",
                                         "127.0.0.14:7443"};
    static const int role[] = {1, 1, 3};
    for (int i = 0; i < 3; i++) {
        warden__v1__member__init(&mem[i]);
        mem[i].id = (uint32_t)(i == 2 ? 4 : i + 1);
        mem[i].peer_address = (char *)peer[i];
        mem[i].client_address = (char *)client[i];
        mem[i].role = (Warden__V1__MemberRole)role[i];
        mem[i].has_progress = progress;
        mem[i].match_index = progress ? (uint64_t)(120 - 20 * i) : 0;
        memp[i] = &mem[i];
    }
}

static void mkstatus(Warden__V1__ClusterStatusResponse *s)
{
    warden__v1__cluster_status_response__init(s);
    s->id = 2;
    s->state = "follower";
    s->term = 5;
    s->leader_id = 1;
    s->leader_address = "127.0.0.11:7443";
    s->commit_index = 120;
    s->applied_index = 119;
    s->fsm_applied_index = 118;
    s->last_index = 121;
    s->snapshot_index = 100;
    s->snapshot_term = 4;
    s->cluster_time_ms = 1700000000123ull;
    s->wall_offset_known = 1;
    s->wall_offset_ms = -12;
    s->proposals = 7;
    s->flushes = 3;
    s->restores = 1;
    s->restores_skipped = 2;
    s->snapshots = 4;
    s->tls_refused = 9;
    s->n_members = 3;
    s->members = memp;
}

TEST(cluster_status_human)
{
    Warden__V1__ClusterStatusResponse s;
    mkmembers(0);
    mkstatus(&s);
    FILE *f = out_open();
    cli_fmt_cluster_status(f, &s, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "id                  2\n"
                 "state               follower\n"
                 "leader              1 at 127.0.0.11:7443\n"
                 "term                5\n"
                 "commit_index        120\n"
                 "applied_index       119\n"
                 "fsm_applied_index   118\n"
                 "last_index          121\n"
                 "snapshot            index 100, term 4\n"
                 "cluster_time        1700000000123 ms\n"
                 "wall_offset         -12 ms\n"
                 "proposals           7\n"
                 "flushes             3\n"
                 "snapshots           4\n"
                 "restores            1\n"
                 "restores_skipped    2\n"
                 "tls_refused         9\n"
                 "\n"
                 "ID  ROLE   PEER             CLIENT           MATCH_INDEX\n"
                 "1   VOTER  127.0.0.11:7001  127.0.0.11:7443  -\n"
                 "2   VOTER  127.0.0.12:7001  127.0.0.12:7443  -\n"
                 "4   SPARE  127.0.0.14:7001  127.0.0.14:7443  -\n");

    /* A fresh node: no leader, no snapshot, no cluster time, no offset;
     * the leader's view has progress. Server text cannot drive the
     * terminal. */
    mkmembers(1);
    mkstatus(&s);
    s.state = "candidate\x1b[2J";
    s.leader_id = 0;
    s.leader_address = "";
    s.snapshot_index = 0;
    s.snapshot_term = 0;
    s.cluster_time_ms = 0;
    s.wall_offset_known = 0;
    s.n_members = 2;
    f = out_open();
    cli_fmt_cluster_status(f, &s, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "id                  2\n"
                 "state               candidate?[2J\n"
                 "leader              -\n"
                 "term                5\n"
                 "commit_index        120\n"
                 "applied_index       119\n"
                 "fsm_applied_index   118\n"
                 "last_index          121\n"
                 "snapshot            -\n"
                 "cluster_time        0 ms\n"
                 "wall_offset         unknown\n"
                 "proposals           7\n"
                 "flushes             3\n"
                 "snapshots           4\n"
                 "restores            1\n"
                 "restores_skipped    2\n"
                 "tls_refused         9\n"
                 "\n"
                 "ID  ROLE   PEER             CLIENT           MATCH_INDEX\n"
                 "1   VOTER  127.0.0.11:7001  127.0.0.11:7443  120\n"
                 "2   VOTER  127.0.0.12:7001  127.0.0.12:7443  100\n");
}

TEST(cluster_status_json)
{
    Warden__V1__ClusterStatusResponse s;
    mkmembers(1);
    mkstatus(&s);
    s.n_members = 2;
    mem[1].role = (Warden__V1__MemberRole)9; /* from a newer server */
    FILE *f = out_open();
    cli_fmt_cluster_status(f, &s, 1);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "{\"id\":2,\"state\":\"follower\",\"term\":5,\"leader_id\":1,"
                 "\"leader_address\":\"127.0.0.11:7443\",\"commit_index\":120,"
                 "\"applied_index\":119,\"fsm_applied_index\":118,"
                 "\"last_index\":121,\"snapshot_index\":100,\"snapshot_term\":4,"
                 "\"cluster_time_ms\":1700000000123,\"wall_offset_known\":true,"
                 "\"wall_offset_ms\":-12,\"proposals\":7,\"flushes\":3,"
                 "\"restores\":1,\"restores_skipped\":2,\"snapshots\":4,"
                 "\"tls_refused\":9,\"members\":["
                 "{\"id\":1,\"peer_address\":\"127.0.0.11:7001\","
                 "\"client_address\":\"127.0.0.11:7443\","
                 "\"role\":\"MEMBER_ROLE_VOTER\",\"has_progress\":true,"
                 "\"match_index\":120},"
                 "{\"id\":2,\"peer_address\":\"127.0.0.12:7001\","
                 "\"client_address\":\"127.0.0.12:7443\","
                 "\"role\":\"UNKNOWN(9)\",\"has_progress\":true,"
                 "\"match_index\":100}]}\n");
}

TEST(members_and_transfer)
{
    mkmembers(0);
    FILE *f = out_open();
    cli_fmt_members(f, memp, 3, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "ID  ROLE   PEER             CLIENT           MATCH_INDEX\n"
                 "1   VOTER  127.0.0.11:7001  127.0.0.11:7443  -\n"
                 "2   VOTER  127.0.0.12:7001  127.0.0.12:7443  -\n"
                 "4   SPARE  127.0.0.14:7001  127.0.0.14:7443  -\n");
    f = out_open();
    cli_fmt_members(f, memp + 2, 1, 1);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "{\"members\":[{\"id\":4,\"peer_address\":\"127.0.0.14:7001\","
                 "\"client_address\":\"127.0.0.14:7443\","
                 "\"role\":\"MEMBER_ROLE_SPARE\",\"has_progress\":false,"
                 "\"match_index\":0}]}\n");
    f = out_open();
    cli_fmt_members(f, NULL, 0, 1);
    fclose(f);
    CHECK_EQ_STR(out_buf, "{\"members\":[]}\n");

    f = out_open();
    cli_fmt_transfer(f, 3, 0);
    cli_fmt_transfer(f, 0, 0);
    cli_fmt_transfer(f, 3, 1);
    fclose(f);
    CHECK_EQ_STR(out_buf, "leader_id           3\n"
                          "leader_id           -\n"
                          "{\"leader_id\":3}\n");
    CHECK_EQ_STR(cli_member_role_name(2, 0), "STANDBY");
    CHECK_EQ_STR(cli_member_role_name(2, 1), "MEMBER_ROLE_STANDBY");
}

int main(void)
{
    RUN(table_aligned);
    RUN(table_empty_with_token_and_escapes);
    RUN(table_cell_truncated);
    RUN(device_human);
    RUN(device_json);
    RUN(list_json);
    RUN(json_string_escapes);
    RUN(health_and_errors);
    RUN(enum_names);
    RUN(cluster_status_human);
    RUN(cluster_status_json);
    RUN(members_and_transfer);
    free(out_buf);
    return unit_done();
}
