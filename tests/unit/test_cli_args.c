/* Tests for cli/args.c: argv parsing, hex, labels, timeouts, exit codes. */
#include <stdint.h>
#include <string.h>

#include "cli/args.h"
#include "unit.h"

static struct cli_args a;
static struct werr e;

/* Parse a list of arguments (argv[0] is added). */
static int parse_list(const char *const *list)
{
    static char *argv[64];
    int n = 0;
    argv[n++] = "wardenctl";
    while (*list != NULL && n < 63) {
        argv[n++] = (char *)*list++;
    }
    argv[n] = NULL;
    return cli_args_parse(n, argv, &a, &e);
}
#define PARSE(...) parse_list((const char *const[]){__VA_ARGS__, NULL})

#define DEV "--dev-certs", "/d", "--role", "admin"

TEST(health_defaults)
{
    CHECK_EQ_INT(PARSE(DEV, "health"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_HEALTH);
    CHECK_EQ_INT(a.n_endpoints, 1);
    CHECK_EQ_STR(a.endpoints[0], "127.0.0.1:7443");
    CHECK_EQ_STR(a.ca, "/d/ca.pem");
    CHECK_EQ_STR(a.cert, "/d/admin.pem");
    CHECK_EQ_STR(a.key, "/d/admin-key.pem");
    CHECK_EQ_INT(a.timeout_ms, 10000);
    CHECK_EQ_STR(a.service, "");
    CHECK_EQ_INT(a.json, 0);
}

TEST(global_flags_anywhere_and_equals_form)
{
    CHECK_EQ_INT(PARSE("health", "--json", "--service=warden.v1.Inventory",
                       "--endpoint", "10.0.0.1:1,10.0.0.2:2", "--timeout",
                       "500ms", DEV, "--ca", "/x/ca.pem"),
                 0);
    CHECK_EQ_INT(a.json, 1);
    CHECK_EQ_STR(a.service, "warden.v1.Inventory");
    CHECK_EQ_INT(a.n_endpoints, 2);
    CHECK_EQ_STR(a.endpoints[1], "10.0.0.2:2");
    CHECK_EQ_INT(a.timeout_ms, 500);
    CHECK_EQ_STR(a.ca, "/x/ca.pem"); /* explicit wins over --dev-certs */
    CHECK_EQ_STR(a.cert, "/d/admin.pem");
}

TEST(tls_required)
{
    CHECK_EQ_INT(PARSE("health"), WERR_INVALID);
    CHECK(strstr(e.msg, "--dev-certs") != NULL);
    CHECK_EQ_INT(PARSE("--dev-certs", "/d", "health"), WERR_INVALID);
    CHECK_EQ_INT(PARSE("--ca", "a", "--cert", "b", "--key", "c", "health"), 0);
}

TEST(help_needs_no_tls)
{
    CHECK_EQ_INT(PARSE("--help"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_HELP);
    CHECK_EQ_INT(PARSE("help"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_HELP);
    CHECK_EQ_INT(PARSE("device", "get", "-h"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_HELP);
}

TEST(usage_errors)
{
    char *none[] = {"wardenctl", NULL};
    CHECK_EQ_INT(cli_args_parse(1, none, &a, &e), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "frobnicate"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "health", "--no-such-flag"), WERR_INVALID);
    CHECK(strstr(e.msg, "--no-such-flag") != NULL);
    CHECK_EQ_INT(PARSE(DEV, "device", "get"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "zap"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "get", "a", "b"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "health", "--timeout"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "health", "--json=1"), WERR_INVALID);
    /* A command flag on the wrong command. */
    CHECK_EQ_INT(PARSE(DEV, "health", "--all"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "get", "x", "--page-size", "3"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "--endpoint", "nohost", "health"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "--endpoint", "h:0", "health"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "--endpoint", "h:99999", "health"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "--endpoint", "a:1,,b:2", "health"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "--endpoint", "a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9",
                       "health"),
                 WERR_INVALID);
}

TEST(enroll)
{
    CHECK_EQ_INT(PARSE(DEV, "device", "enroll", "--id", "dev-1", "--key-alg",
                       "ed25519", "--public-key-hex",
                       "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff",
                       "--label", "site=plant-1", "--label", "line=", "--gateway",
                       "gw", "--idempotency-key", "k1", "--attestation-digest",
                       "0000000000000000000000000000000000000000000000000000000000000001"),
                 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_DEVICE_ENROLL);
    CHECK_EQ_STR(a.device_id, "dev-1");
    CHECK_EQ_INT(a.key_alg, CLI_KEY_ALG_ED25519);
    CHECK_EQ_INT(a.public_key_len, 32);
    CHECK_EQ_INT(a.public_key[10], 0xAA);
    CHECK_EQ_INT(a.n_labels, 2);
    CHECK_EQ_STR(a.labels[0].key, "site");
    CHECK_EQ_STR(a.labels[0].value, "plant-1");
    CHECK_EQ_STR(a.labels[1].value, "");
    CHECK_EQ_INT(a.has_attestation, 1);
    CHECK_EQ_INT(a.attestation[31], 1);
    CHECK_EQ_STR(a.idempotency_key, "k1");
}

TEST(enroll_errors)
{
    /* Missing id, alg, key; both key forms; wrong length; bad digest. */
    CHECK_EQ_INT(PARSE(DEV, "device", "enroll", "--key-alg", "p256",
                       "--public-key-hex", "00"),
                 WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "enroll", "--id", "x", "--public-key-hex", "00"),
                 WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "enroll", "--id", "x", "--key-alg", "p256"),
                 WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "enroll", "--id", "x", "--key-alg", "p256",
                       "--public-key-hex", "00", "--public-key-file", "f.pem"),
                 WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "enroll", "--id", "x", "--key-alg", "ed25519",
                       "--public-key-hex", "0011"),
                 WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "enroll", "--id", "x", "--key-alg", "rsa",
                       "--public-key-hex", "00"),
                 WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "enroll", "--id", "x", "--key-alg", "p256",
                       "--public-key-hex", "zz"),
                 WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "enroll", "--id", "x", "--key-alg", "p256",
                       "--public-key-hex", "abc"),
                 WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "enroll", "--id", "x", "--key-alg", "p256",
                       "--public-key-hex", "00", "--attestation-digest", "0011"),
                 WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "enroll", "--id", "x", "--key-alg", "p256",
                       "--public-key-hex", "00", "--label", "=v"),
                 WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "enroll", "--id", "x", "--key-alg", "p256",
                       "--public-key-file", "f.pem"),
                 0);
    CHECK_EQ_STR(a.public_key_file, "f.pem");
    CHECK_EQ_INT(a.key_alg, CLI_KEY_ALG_P256);
}

TEST(label_limit)
{
    char *argv[8 + 2 * (CLI_LABELS_MAX + 1) + 8];
    int n = 0;
    argv[n++] = "wardenctl";
    char *fixed[] = {DEV, "device", "enroll", "--id", "x", "--key-alg", "p256",
                     "--public-key-hex", "00"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        argv[n++] = fixed[i];
    }
    int base = n;
    for (int i = 0; i < CLI_LABELS_MAX; i++) {
        argv[n++] = "--label";
        argv[n++] = "k=v";
    }
    argv[n] = NULL;
    CHECK_EQ_INT(cli_args_parse(n, argv, &a, &e), 0);
    CHECK_EQ_INT(a.n_labels, CLI_LABELS_MAX);
    argv[n++] = "--label";
    argv[n++] = "k=v";
    argv[n] = NULL;
    CHECK_EQ_INT(cli_args_parse(n, argv, &a, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "labels") != NULL);
    (void)base;
}

TEST(get_and_list)
{
    CHECK_EQ_INT(PARSE(DEV, "device", "get", "dev-9", "--serializable"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_DEVICE_GET);
    CHECK_EQ_STR(a.device_id, "dev-9");
    CHECK_EQ_INT(a.serializable, 1);

    CHECK_EQ_INT(PARSE(DEV, "device", "list", "--state", "active", "--gateway", "g",
                       "--firmware", "1.0", "--label", "a=b", "--page-size", "1000",
                       "--page-token", "t", "--all"),
                 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_DEVICE_LIST);
    CHECK_EQ_INT(a.state, 2);
    CHECK_EQ_INT(a.page_size, 1000);
    CHECK_EQ_STR(a.page_token, "t");
    CHECK_EQ_INT(a.all, 1);
    CHECK_EQ_INT(a.n_labels, 1);

    CHECK_EQ_INT(PARSE(DEV, "device", "list", "--page-size", "1001"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "list", "--page-size", "0"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "list", "--page-size", "-1"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "list", "--page-size", "many"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "list", "--state", "sleepy"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "device", "list", "--label", "a=1", "--label", "b=2"),
                 WERR_INVALID);
}

TEST(hex)
{
    uint8_t out[4];
    size_t n = 99;
    CHECK_EQ_INT(cli_hex_decode("", out, sizeof out, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(cli_hex_decode("0aFf", out, sizeof out, &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(out[0], 0x0a);
    CHECK_EQ_INT(out[1], 0xff);
    CHECK_EQ_INT(cli_hex_decode("0g", out, sizeof out, &n), WERR_INVALID);
    CHECK_EQ_INT(cli_hex_decode("abc", out, sizeof out, &n), WERR_INVALID);
    CHECK_EQ_INT(cli_hex_decode("0x00", out, sizeof out, &n), WERR_INVALID);
    CHECK_EQ_INT(cli_hex_decode("0011223344", out, sizeof out, &n), WERR_LIMIT);
    char s[5];
    CHECK_EQ_INT(cli_hex_encode(out, 2, s, sizeof s), 0);
    CHECK_EQ_STR(s, "0aff");
    CHECK_EQ_INT(cli_hex_encode(out, 3, s, sizeof s), WERR_LIMIT);
}

TEST(labels)
{
    struct cli_label l;
    CHECK_EQ_INT(cli_label_parse("k=v=w", &l, &e), 0);
    CHECK_EQ_STR(l.key, "k");
    CHECK_EQ_STR(l.value, "v=w");
    CHECK_EQ_INT(cli_label_parse("k=", &l, &e), 0);
    CHECK_EQ_STR(l.value, "");
    CHECK_EQ_INT(cli_label_parse("k", &l, &e), WERR_INVALID);
    CHECK_EQ_INT(cli_label_parse("=v", &l, &e), WERR_INVALID);
    char big[CLI_LABEL_KEY_MAX + 4];
    memset(big, 'k', sizeof big);
    big[CLI_LABEL_KEY_MAX + 1] = '=';
    big[CLI_LABEL_KEY_MAX + 2] = 'v';
    big[CLI_LABEL_KEY_MAX + 3] = '\0';
    CHECK_EQ_INT(cli_label_parse(big, &l, &e), WERR_LIMIT);
    big[CLI_LABEL_KEY_MAX] = '=';
    CHECK_EQ_INT(cli_label_parse(big, &l, &e), 0); /* exactly at the max */
    CHECK_EQ_INT(strlen(l.key), CLI_LABEL_KEY_MAX);
}

TEST(timeout)
{
    uint64_t ms = 0;
    CHECK_EQ_INT(cli_timeout_parse("10", &ms), 0);
    CHECK_EQ_INT(ms, 10000);
    CHECK_EQ_INT(cli_timeout_parse("250ms", &ms), 0);
    CHECK_EQ_INT(ms, 250);
    CHECK_EQ_INT(cli_timeout_parse("2m", &ms), 0);
    CHECK_EQ_INT(ms, 120000);
    CHECK_EQ_INT(cli_timeout_parse("24h", &ms), 0);
    CHECK_EQ_INT(ms, CLI_TIMEOUT_MAX_MS);
    CHECK_EQ_INT(cli_timeout_parse("25h", &ms), WERR_INVALID);
    CHECK_EQ_INT(cli_timeout_parse("0s", &ms), WERR_INVALID);
    CHECK_EQ_INT(cli_timeout_parse("s", &ms), WERR_INVALID);
    CHECK_EQ_INT(cli_timeout_parse("5d", &ms), WERR_INVALID);
    CHECK_EQ_INT(cli_timeout_parse("99999999999999999999", &ms), WERR_INVALID);
}

TEST(state_and_alg_names)
{
    CHECK_EQ_INT(cli_state_parse("provisioned"), 1);
    CHECK_EQ_INT(cli_state_parse("DEVICE_STATE_REVOKED"), 4);
    CHECK_EQ_INT(cli_state_parse("Quarantined"), 3);
    CHECK_EQ_INT(cli_state_parse("unspecified"), WERR_INVALID);
    enum cli_key_alg k;
    CHECK_EQ_INT(cli_key_alg_parse("P256", &k), 0);
    CHECK_EQ_INT(k, CLI_KEY_ALG_P256);
    CHECK_EQ_INT(cli_key_alg_parse("rsa", &k), WERR_INVALID);
}

TEST(exit_codes)
{
    CHECK_EQ_INT(cli_exit_code(0), 0);
    CHECK_EQ_INT(cli_exit_code(5), 5);
    CHECK_EQ_INT(cli_exit_code(7), 7);
    CHECK_EQ_INT(cli_exit_code(14), 14);
    CHECK_EQ_INT(cli_exit_code(16), 16);
    CHECK_EQ_INT(cli_exit_code(17), 2);
    CHECK_EQ_INT(cli_exit_code(-1), 2);
    CHECK_EQ_INT(CLI_EXIT_USAGE, 64);
    /* The usage text documents the codes it promises. */
    CHECK(strstr(cli_usage_text, "64") != NULL);
    CHECK(strstr(cli_usage_text, "14 UNAVAILABLE") != NULL);
}

TEST(cluster_commands)
{
    CHECK_EQ_INT(PARSE(DEV, "cluster", "status", "--json"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_CLUSTER_STATUS);
    CHECK_EQ_INT(a.json, 1);

    CHECK_EQ_INT(PARSE(DEV, "cluster", "add", "4", "127.0.0.14:7001",
                       "127.0.0.14:7443", "--spare-only"),
                 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_CLUSTER_ADD);
    CHECK_EQ_INT(a.member_id, 4);
    CHECK_EQ_STR(a.peer_address, "127.0.0.14:7001");
    CHECK_EQ_STR(a.client_address, "127.0.0.14:7443");
    CHECK_EQ_INT(a.spare_only, 1);
    CHECK_EQ_INT(PARSE(DEV, "cluster", "add", "4294967295", "h:1", "h:2"), 0);
    CHECK_EQ_INT(a.member_id, 4294967295u);
    CHECK_EQ_INT(a.spare_only, 0);

    CHECK_EQ_INT(PARSE(DEV, "cluster", "remove", "2"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_CLUSTER_REMOVE);
    CHECK_EQ_INT(a.member_id, 2);

    CHECK_EQ_INT(PARSE(DEV, "cluster", "transfer"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_CLUSTER_TRANSFER);
    CHECK_EQ_INT(a.member_id, 0);
    CHECK_EQ_INT(PARSE(DEV, "-v", "cluster", "transfer", "3"), 0);
    CHECK_EQ_INT(a.member_id, 3);
    CHECK_EQ_INT(a.verbose, 1);
    CHECK_EQ_INT(PARSE(DEV, "cluster", "status", "--verbose"), 0);
    CHECK_EQ_INT(a.verbose, 1);
}

TEST(cluster_errors)
{
    CHECK_EQ_INT(PARSE(DEV, "cluster"), WERR_INVALID);
    CHECK_EQ_STR(e.msg, "cluster: want status, add, remove or transfer");
    CHECK_EQ_INT(PARSE(DEV, "cluster", "join"), WERR_INVALID);
    CHECK_EQ_STR(e.msg, "cluster: unknown subcommand \"join\" (want status, add, "
                        "remove or transfer)");
    CHECK_EQ_INT(PARSE(DEV, "cluster", "add", "4", "h:1"), WERR_INVALID);
    CHECK_EQ_STR(e.msg, "cluster add: want ID PEER_ADDR CLIENT_ADDR");
    CHECK_EQ_INT(PARSE(DEV, "cluster", "add", "0", "h:1", "h:2"), WERR_INVALID);
    CHECK_EQ_STR(e.msg, "cluster add: member ID \"0\": want 1..4294967295");
    CHECK_EQ_INT(PARSE(DEV, "cluster", "add", "4294967296", "h:1", "h:2"),
                 WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "cluster", "add", "12345678901", "h:1", "h:2"),
                 WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "cluster", "add", "x4", "h:1", "h:2"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "cluster", "add", "4", "h", "h:2"), WERR_INVALID);
    CHECK_EQ_STR(e.msg, "cluster add: PEER_ADDR \"h\": want HOST:PORT");
    CHECK_EQ_INT(PARSE(DEV, "cluster", "add", "4", "h:1", "h:99999"), WERR_INVALID);
    CHECK_EQ_STR(e.msg, "cluster add: CLIENT_ADDR \"h:99999\": want HOST:PORT");
    CHECK_EQ_INT(PARSE(DEV, "cluster", "add", "4", "h:1", "h:2", "extra"),
                 WERR_INVALID);
    CHECK_EQ_STR(e.msg, "unexpected argument \"extra\"");
    CHECK_EQ_INT(PARSE(DEV, "cluster", "remove"), WERR_INVALID);
    CHECK_EQ_STR(e.msg, "cluster remove: missing member ID");
    CHECK_EQ_INT(PARSE(DEV, "cluster", "remove", "-1"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "cluster", "transfer", "0"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "cluster", "transfer", "1", "2"), WERR_INVALID);
    /* Flags belong to their command. */
    CHECK_EQ_INT(PARSE(DEV, "cluster", "remove", "2", "--spare-only"),
                 WERR_INVALID);
    CHECK_EQ_STR(e.msg, "--spare-only does not apply to this command");
    CHECK_EQ_INT(PARSE(DEV, "cluster", "status", "--serializable"), WERR_INVALID);
    CHECK_EQ_INT(PARSE(DEV, "cluster", "add", "4", "h:1", "h:2",
                       "--idempotency-key", "k"),
                 WERR_INVALID);
    /* TLS is still required. */
    CHECK_EQ_INT(PARSE("cluster", "status"), WERR_INVALID);
}

TEST(endpoint_and_member_id_checks)
{
    CHECK_EQ_INT(cli_endpoint_check("127.0.0.1:7443"), 0);
    CHECK_EQ_INT(cli_endpoint_check("[::1]:7443"), 0);
    CHECK_EQ_INT(cli_endpoint_check("node-1.plant.example:1"), 0);
    CHECK_EQ_INT(cli_endpoint_check("h:65535"), 0);
    CHECK_EQ_INT(cli_endpoint_check(""), WERR_INVALID);
    CHECK_EQ_INT(cli_endpoint_check("h:65536"), WERR_INVALID);
    CHECK_EQ_INT(cli_endpoint_check("h:000080"), WERR_INVALID);
    CHECK_EQ_INT(cli_endpoint_check("h:+80"), WERR_INVALID);
    CHECK_EQ_INT(cli_endpoint_check("h:-1"), WERR_INVALID);
    CHECK_EQ_INT(cli_endpoint_check("h\n:80"), WERR_INVALID);
    char big[CLI_ENDPOINT_LEN_MAX + 8];
    memset(big, 'a', sizeof big);
    memcpy(big + CLI_ENDPOINT_LEN_MAX - 4, ":443", 5);
    CHECK_EQ_INT(cli_endpoint_check(big), 0); /* exactly the maximum */
    memset(big, 'a', sizeof big);
    memcpy(big + CLI_ENDPOINT_LEN_MAX - 3, ":443", 5);
    CHECK_EQ_INT(cli_endpoint_check(big), WERR_INVALID);

    uint32_t id = 0;
    CHECK_EQ_INT(cli_member_id_parse("1", &id), 0);
    CHECK_EQ_INT(id, 1);
    CHECK_EQ_INT(cli_member_id_parse("4294967295", &id), 0);
    CHECK_EQ_INT(id, 4294967295u);
    CHECK_EQ_INT(cli_member_id_parse("0", &id), WERR_INVALID);
    CHECK_EQ_INT(cli_member_id_parse("", &id), WERR_INVALID);
    CHECK_EQ_INT(cli_member_id_parse("1 ", &id), WERR_INVALID);
    CHECK_EQ_INT(cli_member_id_parse("0x10", &id), WERR_INVALID);
}

TEST(issue4_commands)
{
    CHECK_EQ_INT(PARSE(DEV, "device", "state", "plc-1", "QUARANTINED", "--reason",
                       "smoke", "--idempotency-key", "k"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_DEVICE_STATE);
    CHECK_EQ_STR(a.device_id, "plc-1");
    CHECK_EQ_INT(a.state, 3);
    CHECK_EQ_STR(a.reason, "smoke");
    CHECK(PARSE(DEV, "device", "state", "plc-1", "sleepy") != 0);
    CHECK(PARSE(DEV, "device", "state", "plc-1") != 0);

    CHECK_EQ_INT(PARSE(DEV, "device", "rebind", "plc-1", "gw-2"), 0);
    CHECK_EQ_STR(a.gateway, "gw-2");
    CHECK_EQ_INT(PARSE(DEV, "device", "rotate-nonce", "plc-1"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_DEVICE_ROTATE_NONCE);
    CHECK(PARSE(DEV, "device", "rotate-key", "plc-1") != 0); /* no key file */
    /* both keys sign: the new one alone is refused (docs/freshness.md) */
    CHECK(PARSE(DEV, "device", "rotate-key", "plc-1", "--private-key-file",
                "k.pem") != 0);
    CHECK(PARSE(DEV, "device", "rotate-key", "plc-1", "--current-key-file",
                "old.pem") != 0);
    CHECK_EQ_INT(PARSE(DEV, "device", "rotate-key", "plc-1", "--private-key-file",
                       "k.pem", "--current-key-file", "old.pem"), 0);
    CHECK_EQ_STR(a.private_key_file, "k.pem");
    CHECK_EQ_STR(a.current_key_file, "old.pem");
    CHECK(PARSE(DEV, "device", "rotate-nonce", "plc-1", "--current-key-file",
                "old.pem") != 0);
    CHECK(PARSE(DEV, "device", "reenroll", "plc-1", "--key-alg", "ed25519") != 0);
    CHECK_EQ_INT(PARSE(DEV, "device", "enroll-batch", "f.jsonl", "--batch-size",
                       "10"), 0);
    CHECK_EQ_INT(a.batch_size, 10);
    CHECK(PARSE(DEV, "device", "enroll-batch", "f.jsonl", "--batch-size", "257") != 0);

    CHECK_EQ_INT(PARSE(DEV, "audit", "read", "--from", "5", "--max", "7"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_AUDIT_READ);
    CHECK_EQ_INT(a.from_seq, 5);
    CHECK_EQ_INT(a.max, 7);
    CHECK(PARSE(DEV, "audit", "read", "--from", "0") != 0);
    CHECK(PARSE(DEV, "audit", "export", "--from", "5", "--to", "4", "f") != 0);
    CHECK(PARSE(DEV, "audit", "export") != 0);
    CHECK(PARSE(DEV, "audit", "head", "--to", "3") != 0); /* not for head */
    CHECK_EQ_INT(PARSE(DEV, "audit", "tail", "--timeout", "2s"), 0);
    CHECK(a.timeout_given);

    /* Offline: no TLS flags needed. */
    CHECK_EQ_INT(PARSE("audit", "verify", "f"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_AUDIT_VERIFY);
    CHECK(cli_cmd_offline(a.cmd));
    CHECK(PARSE("audit", "head") != 0); /* online: needs them */
    CHECK(PARSE("verify-command", "--envelope-hex", "00", "--signature-hex", "00",
                "--pubkey-hex", "00", "--device", "d", "--key-epoch", "1") != 0);
    CHECK_EQ_INT(PARSE("verify-command", "--envelope-hex", "00", "--signature-hex",
                       "00", "--pubkey-hex", "00", "--device", "d", "--key-epoch",
                       "1", "--last-seq", "0"), 0);
    CHECK(PARSE("verify-command", "--envelope-hex", "0g", "--signature-hex", "00",
                "--pubkey-hex", "00", "--device", "d", "--key-epoch", "1",
                "--last-seq", "0") != 0);

    CHECK_EQ_INT(PARSE(DEV, "control", "key"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_CONTROL_KEY_GET);
    CHECK(PARSE(DEV, "control", "key", "rotate") != 0);
    CHECK_EQ_INT(PARSE(DEV, "control", "key", "rotate", "--key-id", "k2"), 0);
    CHECK(PARSE(DEV, "control", "issue", "plc-1") != 0); /* no payload */
    CHECK_EQ_INT(PARSE(DEV, "control", "issue", "plc-1", "--payload-hex", "01ff"), 0);
    CHECK_EQ_INT(PARSE(DEV, "telemetry", "submit", "plc-1", "--key-epoch", "1",
                       "--counter", "9", "--payload-hex", "", "--signature-hex",
                       "00"), 0);
    CHECK(PARSE(DEV, "telemetry", "submit", "plc-1", "--key-epoch", "1",
                "--counter", "9", "--payload-hex", "00") != 0); /* no signer */
    uint64_t v;
    CHECK_EQ_INT(cli_u64_parse("18446744073709551615", &v), 0);
    CHECK(v == UINT64_MAX);
    CHECK(cli_u64_parse("18446744073709551616", &v) != 0);
    CHECK(cli_u64_parse("-1", &v) != 0);
}

int main(void)
{
    RUN(issue4_commands);
    RUN(health_defaults);
    RUN(global_flags_anywhere_and_equals_form);
    RUN(tls_required);
    RUN(help_needs_no_tls);
    RUN(usage_errors);
    RUN(enroll);
    RUN(enroll_errors);
    RUN(label_limit);
    RUN(get_and_list);
    RUN(hex);
    RUN(labels);
    RUN(timeout);
    RUN(state_and_alg_names);
    RUN(exit_codes);
    RUN(cluster_commands);
    RUN(cluster_errors);
    RUN(endpoint_and_member_id_checks);
    return unit_done();
}
