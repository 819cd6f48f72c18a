/* Tests for cli/args.c, issue 5 and 6 commands: every new command parses,
 * and each documented usage error is one. */
#include <stdint.h>
#include <string.h>

#include "cli/args.h"
#include "common/principal.h"
#include "unit.h"

static struct cli_args a;
static struct werr e;

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
#define PARSE(...) parse_list((const char *const[]){"--dev-certs", "/d", "--role", \
                                                    "admin", __VA_ARGS__, NULL})
#define FAILS_WITH(text, ...)                                  \
    do {                                                       \
        CHECK_EQ_INT(PARSE(__VA_ARGS__), WERR_INVALID);        \
        if (strstr(e.msg, text) == NULL) {                     \
            fprintf(stderr, "message: %s\n", e.msg);           \
        }                                                      \
        CHECK(strstr(e.msg, text) != NULL);                    \
    } while (0)

TEST(access_policy)
{
    CHECK_EQ_INT(PARSE("access", "policy", "get"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ACCESS_POLICY_GET);
    CHECK_EQ_INT(PARSE("access", "policy", "set", "--purpose", "incident",
                       "--approvals", "2", "--reviewer-roles", "admin,auditor",
                       "--max-duration", "90m", "--max-uses", "3",
                       "--pending-ttl", "10m"),
                 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ACCESS_POLICY_SET);
    CHECK_EQ_INT(a.purpose, 3);
    CHECK_EQ_INT(a.approvals, 2);
    CHECK_EQ_INT(a.reviewer_roles, WROLE_ADMIN | WROLE_AUDITOR);
    CHECK_EQ_INT(a.max_duration_ms, 5400000);
    CHECK_EQ_INT(a.max_uses, 3);
    CHECK_EQ_INT(a.pending_ttl_ms, 600000);
    CHECK_EQ_INT(PARSE("access", "policy", "set", "--lock-view-max-lag", "8"), 0);
    CHECK_EQ_INT(a.lock_view_max_lag, 8);
    FAILS_WITH("want get or set", "access", "policy");
    FAILS_WITH("--purpose says which rule", "access", "policy", "set",
               "--approvals", "2");
    FAILS_WITH("nothing to change", "access", "policy", "set");
    FAILS_WITH("--approvals \"9\": want 1..8", "access", "policy", "set",
               "--purpose", "incident", "--approvals", "9");
    FAILS_WITH("--max-duration \"8d\": want a duration 1s..168h", "access",
               "policy", "set", "--purpose", "incident", "--max-duration", "8d");
    FAILS_WITH("--max-duration \"169h\"", "access", "policy", "set", "--purpose",
               "incident", "--max-duration", "169h");
    FAILS_WITH("--pending-ttl \"59s\": want a duration 1m..168h", "access",
               "policy", "set", "--purpose", "incident", "--pending-ttl", "59s");
    FAILS_WITH("--max-uses \"1001\": want 1..1000", "access", "policy", "set",
               "--purpose", "incident", "--max-uses", "1001");
    FAILS_WITH("--reviewer-roles \"gateway\"", "access", "policy", "set",
               "--purpose", "incident", "--reviewer-roles", "gateway");
    FAILS_WITH("--purpose \"fun\"", "access", "policy", "set", "--purpose", "fun",
               "--approvals", "1");
}

TEST(access_request)
{
    CHECK_EQ_INT(PARSE("access", "request", "--device", "plc-1", "--device", "plc-2",
                       "--purpose", "maintenance", "--reason", "swap the PSU",
                       "--protocol", "ssh", "--port", "22", "--protocol", "https",
                       "--port", "443", "--duration", "2h", "--max-sessions", "4",
                       "--idempotency-key", "k1"),
                 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ACCESS_REQUEST);
    CHECK_EQ_INT(a.n_devices, 2);
    CHECK_EQ_STR(a.devices[1], "plc-2");
    CHECK_EQ_INT(a.purpose, 1);
    CHECK_EQ_STR(a.reason, "swap the PSU");
    CHECK_EQ_INT(a.n_protocols, 2);
    CHECK_EQ_INT(a.n_ports, 2);
    CHECK_EQ_INT(a.ports[1], 443);
    CHECK_EQ_INT(a.duration_ms, 7200000);
    CHECK_EQ_INT(a.max_sessions, 4);
    CHECK_EQ_STR(a.idempotency_key, "k1");
    CHECK_EQ_INT(PARSE("access", "request", "--selector", "site=p1", "--purpose",
                       "incident", "--reason", "r", "--command-class", "reboot",
                       "--duration", "5m"),
                 0);
    CHECK_EQ_INT(a.n_selector, 1);
    CHECK_EQ_STR(a.selector[0].value, "p1");
    CHECK_EQ_STR(a.command_class, "reboot");
    FAILS_WITH("not both", "access", "request", "--device", "d", "--selector", "a=b",
               "--purpose", "incident", "--reason", "r", "--protocol", "ssh",
               "--duration", "5m");
    FAILS_WITH("not both", "access", "request", "--purpose", "incident", "--reason",
               "r", "--protocol", "ssh", "--duration", "5m");
    FAILS_WITH("--purpose is required", "access", "request", "--device", "d",
               "--reason", "r", "--protocol", "ssh", "--duration", "5m");
    FAILS_WITH("--reason is required", "access", "request", "--device", "d",
               "--purpose", "incident", "--protocol", "ssh", "--duration", "5m");
    FAILS_WITH("give the scope", "access", "request", "--device", "d", "--purpose",
               "incident", "--reason", "r", "--duration", "5m");
    FAILS_WITH("--port needs a --protocol", "access", "request", "--device", "d",
               "--purpose", "incident", "--reason", "r", "--command-class", "c",
               "--port", "22", "--duration", "5m");
    FAILS_WITH("--duration is required", "access", "request", "--device", "d",
               "--purpose", "incident", "--reason", "r", "--protocol", "ssh");
    FAILS_WITH("--port \"0\": want 1..65535", "access", "request", "--port", "0");
    FAILS_WITH("at most 4 --selector", "access", "request", "--selector", "a=1",
               "--selector", "b=1", "--selector", "c=1", "--selector", "d=1",
               "--selector", "e=1", "--purpose", "incident", "--reason", "r",
               "--protocol", "ssh", "--duration", "5m");
    static char big[CLI_TEXT_MAX + 2];
    memset(big, 'x', sizeof big - 1);
    FAILS_WITH("--reason: longer than 256 bytes", "access", "request", "--reason", big);
}

TEST(access_review_check_revoke)
{
    CHECK_EQ_INT(PARSE("access", "approve", "req-12", "--comment", "ok"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ACCESS_APPROVE);
    CHECK_EQ_STR(a.target, "req-12");
    CHECK_EQ_STR(a.comment, "ok");
    CHECK_EQ_INT(PARSE("access", "deny", "req-12"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ACCESS_DENY);
    FAILS_WITH("access approve: missing request ID", "access", "approve");
    FAILS_WITH("--comment does not apply", "access", "revoke", "g", "--comment", "x");
    CHECK_EQ_INT(PARSE("access", "check", "--principal", "alice", "--device", "plc-1",
                       "--protocol", "ssh", "--port", "22", "--revision", "7",
                       "--idempotency-key", "s1"),
                 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ACCESS_CHECK);
    CHECK_EQ_STR(a.principal, "alice");
    CHECK_EQ_INT(a.revision, 7);
    CHECK_EQ_INT(PARSE("access", "check", "--principal", "alice", "--device", "plc-1",
                       "--command-class", "read-logs", "--revision", "0"),
                 0);
    FAILS_WITH("--principal NAME and one --device", "access", "check", "--device",
               "d", "--protocol", "ssh", "--port", "22", "--revision", "0");
    FAILS_WITH("--principal NAME and one --device", "access", "check", "--principal",
               "p", "--device", "d", "--device", "e", "--protocol", "ssh", "--port",
               "22", "--revision", "0");
    FAILS_WITH("give --protocol P --port N, or", "access", "check", "--principal",
               "p", "--device", "d", "--protocol", "ssh", "--revision", "0");
    FAILS_WITH("give --protocol P --port N, or", "access", "check", "--principal",
               "p", "--device", "d", "--protocol", "ssh", "--port", "22",
               "--command-class", "c", "--revision", "0");
    FAILS_WITH("--revision R", "access", "check", "--principal", "p", "--device",
               "d", "--protocol", "ssh", "--port", "22");
    CHECK_EQ_INT(PARSE("access", "revoke", "grt-9", "--reason", "done"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ACCESS_REVOKE);
    CHECK_EQ_STR(a.target, "grt-9");
    FAILS_WITH("access revoke: --reason is required", "access", "revoke", "grt-9");
}

TEST(access_grants_lock_watch)
{
    CHECK_EQ_INT(PARSE("access", "grants", "--device", "d", "--principal", "p",
                       "--state", "active", "--page-size", "50", "--all"),
                 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ACCESS_GRANTS);
    CHECK_EQ_INT(a.grant_state, 1);
    CHECK_EQ_INT(a.page_size, 50);
    CHECK_EQ_INT(a.all, 1);
    FAILS_WITH("--state \"provisioned\": want active, expired", "access", "grants",
               "--state", "provisioned");
    CHECK_EQ_INT(PARSE("access", "lock", "--gateway", "gw-1", "--reason", "r",
                       "--expires", "30m"),
                 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ACCESS_LOCK);
    CHECK_EQ_STR(a.gateway, "gw-1");
    CHECK_EQ_INT(a.expires_in_ms, 1800000);
    CHECK_EQ_INT(PARSE("access", "lock", "--all", "--reason", "r"), 0);
    CHECK_EQ_INT(PARSE("access", "lock", "--selector", "site=p1", "--reason", "r"), 0);
    FAILS_WITH("exactly one target", "access", "lock", "--reason", "r");
    FAILS_WITH("exactly one target", "access", "lock", "--all", "--device", "d",
               "--reason", "r");
    FAILS_WITH("access lock: --reason is required", "access", "lock", "--principal",
               "p");
    FAILS_WITH("--expires \"0s\"", "access", "lock", "--all", "--reason", "r",
               "--expires", "0s");
    CHECK_EQ_INT(PARSE("access", "unlock", "lck-3"), 0);
    CHECK_EQ_STR(a.target, "lck-3");
    CHECK_EQ_INT(PARSE("access", "watch", "--from-revision", "0", "--gateway", "g",
                       "--max", "5"),
                 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ACCESS_WATCH);
    CHECK_EQ_INT(a.has_from_revision, 1);
    CHECK_EQ_INT(a.max, 5);
    FAILS_WITH("--from-revision R is required", "access", "watch");
    FAILS_WITH("access: unknown subcommand \"frob\"", "access", "frob");
}

TEST(rollout_keys_releases)
{
    static const char *pk =
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    CHECK_EQ_INT(PARSE("rollout", "key", "register", "rk1", "--public-key-hex", pk), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ROLLOUT_KEY_REGISTER);
    CHECK_EQ_STR(a.key_id, "rk1");
    CHECK_EQ_INT(a.public_key_len, 32);
    CHECK_EQ_INT(a.key_alg, CLI_KEY_ALG_ED25519);
    FAILS_WITH("Ed25519 public key is 32 bytes", "rollout", "key", "register", "rk1",
               "--public-key-hex", "0011");
    FAILS_WITH("give exactly one of --public-key-hex", "rollout", "key", "register",
               "rk1");
    FAILS_WITH("rollout key: missing key ID", "rollout", "key", "revoke");
    FAILS_WITH("rollout key revoke: --reason is required", "rollout", "key",
               "revoke", "rk1");
    CHECK_EQ_INT(PARSE("rollout", "release", "create", "--manifest-file", "m",
                       "--key-id", "rk1", "--private-key-file", "k.pem",
                       "--rollback-of", "17", "--reason", "bad 2.1"),
                 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ROLLOUT_RELEASE_CREATE);
    CHECK_EQ_INT(a.rollback_of, 17);
    FAILS_WITH("--rollback-of needs --reason", "rollout", "release", "create",
               "--manifest-file", "m", "--key-id", "rk1", "--private-key-file", "k",
               "--rollback-of", "17");
    FAILS_WITH("exactly one of --signature-hex and --private-key-file", "rollout",
               "release", "create", "--manifest-file", "m", "--key-id", "rk1");
    FAILS_WITH("--manifest-file and --key-id", "rollout", "release", "create",
               "--private-key-file", "k");
    CHECK_EQ_INT(PARSE("rollout", "release", "get", "17", "--serializable"), 0);
    CHECK_EQ_INT(a.object_id, 17);
    FAILS_WITH("ID \"x\": want a number >= 1", "rollout", "release", "get", "x");
    FAILS_WITH("ID \"0\": want a number >= 1", "rollout", "status", "0");
}

TEST(rollout_manifest_offline)
{
    /* Offline: no TLS files needed. */
    const char *argv_[] = {"wardenctl", "rollout", "release", "manifest", "--version",
                           "2.1", "--counter", "3", "--artifact-sha256",
                           "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                           "--artifact-size", "10", "--model", "b", "--model", "a",
                           NULL};
    CHECK_EQ_INT(cli_args_parse(16, (char **)argv_, &a, &e), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ROLLOUT_RELEASE_MANIFEST);
    CHECK_EQ_INT(a.n_models, 2);
    CHECK(cli_cmd_offline(a.cmd));
    FAILS_WITH("--counter is required", "rollout", "release", "manifest", "--version",
               "1");
    FAILS_WITH("--artifact-sha256: want 32 bytes", "rollout", "release", "manifest",
               "--version", "1", "--counter", "1", "--artifact-sha256", "00",
               "--artifact-size", "1", "--model", "m");
}

TEST(rollout_create_and_transitions)
{
    CHECK_EQ_INT(PARSE("rollout", "create", "--release", "17", "--stage", "canary=1%",
                       "--stage", "10%", "--stage", "50%", "--stage", "100%",
                       "--selector", "site=p1", "--model", "plc-x", "--gateway", "gw",
                       "--min-reported", "5", "--success-ratio", "0.95",
                       "--failure-ratio", "2%", "--device-timeout", "2h", "--bake",
                       "10m", "--manual", "--name", "fw-2.1"),
                 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ROLLOUT_CREATE);
    CHECK_EQ_INT(a.release_id, 17);
    CHECK_EQ_INT(a.n_stages, 4);
    CHECK_EQ_STR(a.stages[0].name, "canary");
    CHECK_EQ_INT(a.stages[0].percent_bp, 100);
    CHECK_EQ_INT(a.stages[3].percent_bp, 10000);
    CHECK_EQ_INT(a.min_reported, 5);
    CHECK_EQ_INT(a.success_bp, 9500);
    CHECK_EQ_INT(a.failure_bp, 200);
    CHECK_EQ_INT(a.device_timeout_ms, 7200000);
    CHECK_EQ_INT(a.bake_ms, 600000);
    CHECK_EQ_INT(a.manual, 1);
    CHECK_EQ_STR(a.model, "plc-x");
    FAILS_WITH("--release ID and at least one --stage", "rollout", "create",
               "--release", "1");
    FAILS_WITH("stage 1 covers less than stage 0", "rollout", "create", "--release",
               "1", "--stage", "10%", "--stage", "1%");
    FAILS_WITH("stage 1 covers less than stage 0", "rollout", "create", "--release",
               "1", "--stage", "5", "--stage", "50%"); /* a count stage spans 100% */
    FAILS_WITH("more than 8 stages", "rollout", "create", "--stage", "1%", "--stage",
               "1%", "--stage", "1%", "--stage", "1%", "--stage", "1%", "--stage",
               "1%", "--stage", "1%", "--stage", "1%", "--stage", "1%");
    FAILS_WITH("--success-ratio \"95\"", "rollout", "create", "--success-ratio", "95");
    FAILS_WITH("--timeout \"1d\"", "rollout", "create", "--timeout", "1d");
    CHECK_EQ_INT(PARSE("rollout", "start", "42", "--reason", "go"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ROLLOUT_START);
    CHECK_EQ_INT(a.object_id, 42);
    CHECK_EQ_INT(PARSE("rollout", "pause", "42"), 0);
    CHECK_EQ_INT(PARSE("rollout", "resume", "42"), 0);
    CHECK_EQ_INT(PARSE("rollout", "advance", "42", "--force"), 0);
    CHECK_EQ_INT(a.force, 1);
    FAILS_WITH("--force does not apply", "rollout", "start", "42", "--force");
    CHECK_EQ_INT(PARSE("rollout", "abort", "42", "--reason", "bad"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ROLLOUT_ABORT);
    CHECK_EQ_INT(PARSE("rollout", "abort", "42", "--reason", "bad", "--rollback",
                       "--manifest-file", "m", "--key-id", "rk1", "--signature-hex",
                       "00"),
                 0);
    CHECK_EQ_INT(a.rollback, 1);
    FAILS_WITH("rollout abort: --reason is required", "rollout", "abort", "42");
    FAILS_WITH("needs --manifest-file and --key-id", "rollout", "abort", "42",
               "--reason", "r", "--rollback");
    FAILS_WITH("go with --rollback", "rollout", "abort", "42", "--reason", "r",
               "--manifest-file", "m");
    CHECK_EQ_INT(PARSE("rollout", "status", "42", "--json"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ROLLOUT_STATUS);
    CHECK_EQ_INT(a.json, 1);
    FAILS_WITH("rollout status: missing ID", "rollout", "status");
    FAILS_WITH("rollout: unknown subcommand \"go\"", "rollout", "go");
}

TEST(rollout_devices)
{
    CHECK_EQ_INT(PARSE("rollout", "desired", "plc-1"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ROLLOUT_DESIRED);
    CHECK_EQ_STR(a.device_id, "plc-1");
    CHECK_EQ_INT(PARSE("rollout", "report", "plc-1", "--key-epoch", "1", "--counter",
                       "9", "--rollout", "42", "--release-counter", "210", "--phase",
                       "succeeded", "--detail", "boot ok", "--private-key-file",
                       "k.pem"),
                 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_ROLLOUT_REPORT);
    CHECK_EQ_INT(a.rollout_ref, 42);
    CHECK_EQ_INT(a.release_counter, 210);
    CHECK_EQ_INT(a.phase, 3);
    CHECK_EQ_STR(a.detail, "boot ok");
    FAILS_WITH("--key-epoch, --counter, --rollout, --release-counter and --phase",
               "rollout", "report", "plc-1", "--private-key-file", "k");
    FAILS_WITH("--phase \"timed_out\"", "rollout", "report", "plc-1", "--phase",
               "timed_out");
    FAILS_WITH("exactly one of --signature-hex and --private-key-file", "rollout",
               "report", "plc-1", "--key-epoch", "1", "--counter", "9", "--rollout",
               "42", "--release-counter", "210", "--phase", "failed");
    FAILS_WITH("rollout report: missing DEVICE", "rollout", "report");
}

int main(void)
{
    RUN(access_policy);
    RUN(access_request);
    RUN(access_review_check_revoke);
    RUN(access_grants_lock_watch);
    RUN(rollout_keys_releases);
    RUN(rollout_manifest_offline);
    RUN(rollout_create_and_transitions);
    RUN(rollout_devices);
    return unit_done();
}
