#include "args.h"

#include "manifest.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char cli_usage_text[] =
    "usage: wardenctl [global flags] COMMAND [flags]\n"
    "\n"
    "Commands:\n"
    "  health [--service NAME]            grpc.health.v1.Health/Check\n"
    "  device enroll --id ID --key-alg ed25519|p256\n"
    "        (--public-key-hex HEX | --public-key-file PEM)\n"
    "        [--attestation-digest HEX] [--model M] [--firmware V]\n"
    "        [--gateway G] [--label k=v]... [--idempotency-key K]\n"
    "  device get ID [--serializable]\n"
    "  device list [--state S] [--gateway G] [--firmware V] [--label k=v]\n"
    "        [--page-size N] [--page-token T] [--all] [--serializable]\n"
    "  cluster status                     the answering node's Raft view\n"
    "  cluster add ID PEER_ADDR CLIENT_ADDR [--spare-only]\n"
    "  cluster remove ID\n"
    "  cluster transfer [ID]              leadership to ID (or raft's pick)\n"
    "  device state ID STATE [--reason R] [--idempotency-key K]\n"
    "  device reenroll ID --key-alg A (--public-key-hex HEX | --public-key-file PEM)\n"
    "        [--attestation-digest HEX] [--idempotency-key K]       (admin)\n"
    "  device rebind ID GATEWAY [--idempotency-key K]\n"
    "  device labels ID [k=v]... [--expected-version N] [--idempotency-key K]\n"
    "                                     replace the labels (none: clear);\n"
    "                                     N = the device's updated_index\n"
    "  device rotate-nonce ID             issue a key-rotation nonce\n"
    "  device rotate-key ID --private-key-file NEW_PEM --current-key-file PEM\n"
    "        [--key-alg A] [--public-key-hex HEX | --public-key-file PEM]\n"
    "        [--idempotency-key K]        nonce, both keys sign, rotate\n"
    "  device enroll-batch FILE [--batch-size N] [--idempotency-key K]\n"
    "                                     JSON lines -> EnrollDevices\n"
    "  telemetry submit DEVICE --key-epoch N --counter C\n"
    "        (--payload-hex HEX | --payload-file F)\n"
    "        (--private-key-file PEM | --signature-hex HEX)\n"
    "  control issue DEVICE (--payload-hex HEX | --payload-file F)\n"
    "        [--idempotency-key K]\n"
    "  control key [get] [--key-id ID]    the command public key\n"
    "  control key rotate --key-id ID     (admin)\n"
    "  audit head                         latest seq and hash\n"
    "  audit read [--from N] [--max M]    one page of entries\n"
    "  audit tail [--from N] [--max M]    stream entries until Ctrl-C\n"
    "  audit export [--from N] [--to M] FILE   self-describing export\n"
    "  audit verify FILE                  offline: 0 intact, 1 broken chain,\n"
    "                                     2 malformed file\n"
    "  verify-command (--envelope-hex HEX | --envelope-file F) --signature-hex HEX\n"
    "        (--pubkey-hex HEX | --pubkey-file PEM) --device ID --key-epoch N\n"
    "        --last-seq N                 offline: 0 accepted, 1 rejected\n"
    "  access policy get | set --purpose P [--approvals M] [--reviewer-roles r,..]\n"
    "        [--max-duration D] [--max-uses N] [--pending-ttl D]\n"
    "        [--lock-view-max-lag K] [--revlog-retention N]              (admin)\n"
    "  access request (--device ID... | --selector k=v...) --purpose P --reason R\n"
    "        (--protocol P [--port N]... | --command-class C) --duration D\n"
    "        [--max-sessions N]\n"
    "  access approve|deny REQ [--comment C]\n"
    "  access check --principal NAME --device ID (--protocol P --port N |\n"
    "        --command-class C) --revision R [--idempotency-key K]   (gateway;\n"
    "                                     prints ALLOW or DENY REASON, exit 0)\n"
    "  access revoke GRANT --reason R\n"
    "  access grants [--device ID] [--principal P] [--state S] [--page-size N]\n"
    "        [--page-token T] [--all]\n"
    "  access lock (--device ID | --principal P | --gateway G | --selector k=v... |\n"
    "        --all) --reason R [--expires D]\n"
    "  access unlock LOCK [--reason R]\n"
    "  access watch --from-revision R [--gateway G] [--max N]   stream until Ctrl-C\n"
    "  rollout key register ID (--public-key-hex HEX | --public-key-file PEM)\n"
    "  rollout key revoke ID --reason R\n"
    "  rollout release manifest --version V --counter N --artifact-sha256 HEX\n"
    "        --artifact-size N --model M... > FILE   offline: canonical bytes\n"
    "  rollout release create --manifest-file F --key-id K\n"
    "        (--signature-hex HEX | --private-key-file PEM)\n"
    "        [--rollback-of ID --reason R]\n"
    "  rollout release get ID\n"
    "  rollout create --release ID --stage [NAME=]P%|N ... [--selector k=v]...\n"
    "        [--model M] [--gateway G] [--min-reported N] [--success-ratio R]\n"
    "        [--failure-ratio R] [--device-timeout D] [--bake D] [--manual]\n"
    "        [--name N]\n"
    "  rollout start|pause|resume|advance ID [--reason R]   (advance: [--force])\n"
    "  rollout abort ID --reason R [--rollback --manifest-file F --key-id K\n"
    "        (--signature-hex HEX | --private-key-file PEM)]\n"
    "  rollout status ID                  stages, progress bars, gates\n"
    "  rollout desired DEVICE             GetDesiredState (as the gateway)\n"
    "  rollout report DEVICE --key-epoch N --counter C --rollout ID\n"
    "        --release-counter N --phase P [--detail S]\n"
    "        (--private-key-file PEM | --signature-hex HEX)\n"
    "  certs init-ca --out DIR [--cn NAME] [--days N]   offline: new EC P-256 CA\n"
    "  certs issue --ca-dir DIR --role R --name N [--ip IP]... [--dns NAME]...\n"
    "        [--days N] --out PREFIX      offline: PREFIX.pem, PREFIX-key.pem;\n"
    "                                     role peer: name n<ID>, --ip or --dns\n"
    "  top [--interval D] [--iterations N | --once] [--cluster-json FILE]\n"
    "        [--metrics URL[,URL...]]     live Cluster.Status of every endpoint\n"
    "  Durations: 500ms, 30s, 15m, 4h (a bare number is seconds). Ratios: 95%,\n"
    "  0.95 or 9500bp.\n"
    "  help                               this text\n"
    "\n"
    "Global flags:\n"
    "  --endpoint HOST:PORT   server (default " CLI_ENDPOINT_DEFAULT "); repeat or\n"
    "                         comma-separate to try several in order\n"
    "  --ca FILE --cert FILE --key FILE   mutual TLS files (PEM)\n"
    "  --dev-certs DIR --role R           use DIR/ca.pem, DIR/R.pem, DIR/R-key.pem\n"
    "  --json                 print one JSON document instead of tables\n"
    "  --timeout D            per-call deadline: 500ms, 10s, 2m, 1h (default 10s)\n"
    "  --verbose, -v          say on stderr when a call follows the leader or\n"
    "                         is retried\n"
    "\n"
    "A call answered \"not the leader\" is retried at the leader the server\n"
    "names; reads and writes with --idempotency-key are also retried after a\n"
    "timeout or lost connection (bounded retries; docs/cli.md).\n"
    "\n"
    "Exit status:\n"
    "  the gRPC status code of the call: 0 OK, 3 INVALID_ARGUMENT,\n"
    "  4 DEADLINE_EXCEEDED, 5 NOT_FOUND, 6 ALREADY_EXISTS, 7 PERMISSION_DENIED,\n"
    "  8 RESOURCE_EXHAUSTED, 12 UNIMPLEMENTED, 13 INTERNAL,\n"
    "  14 UNAVAILABLE (also connection and TLS failures), ...;\n"
    "  64 for a command-line usage error. `health` exits 14 unless SERVING.\n"
    "  Offline commands (audit verify, verify-command) have their own codes.\n"
    "Errors are printed to stderr as `wardenctl: STATUS_NAME: message`.\n";

int cli_exit_code(int grpc_status)
{
    if (grpc_status < 0 || grpc_status > 16) {
        return 2; /* UNKNOWN */
    }
    return grpc_status;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int cli_hex_decode(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = strlen(s);
    if (n % 2 != 0) {
        return WERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        if (hexval((unsigned char)s[i]) < 0) {
            return WERR_INVALID;
        }
    }
    if (n / 2 > cap) {
        return WERR_LIMIT;
    }
    for (size_t i = 0; i < n / 2; i++) {
        out[i] = (uint8_t)(hexval((unsigned char)s[2 * i]) << 4 |
                           hexval((unsigned char)s[2 * i + 1]));
    }
    *len = n / 2;
    return 0;
}

int cli_hex_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
    static const char digits[] = "0123456789abcdef";
    if (cap < 2 * len + 1) {
        if (cap > 0) {
            out[0] = '\0';
        }
        return WERR_LIMIT;
    }
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * len] = '\0';
    return 0;
}

int cli_label_parse(const char *s, struct cli_label *out, struct werr *e)
{
    const char *eq = strchr(s, '=');
    if (eq == NULL) {
        return werr_set(e, WERR_INVALID, "label \"%s\": want key=value", s);
    }
    size_t klen = (size_t)(eq - s);
    size_t vlen = strlen(eq + 1);
    if (klen == 0) {
        return werr_set(e, WERR_INVALID, "label \"%s\": empty key", s);
    }
    if (klen > CLI_LABEL_KEY_MAX) {
        return werr_set(e, WERR_LIMIT, "label key longer than %d bytes",
                        CLI_LABEL_KEY_MAX);
    }
    if (vlen > CLI_LABEL_VALUE_MAX) {
        return werr_set(e, WERR_LIMIT, "label value longer than %d bytes",
                        CLI_LABEL_VALUE_MAX);
    }
    memcpy(out->key, s, klen);
    out->key[klen] = '\0';
    memcpy(out->value, eq + 1, vlen + 1);
    return 0;
}

int cli_state_parse(const char *s)
{
    static const char *const names[] = {"provisioned", "active", "quarantined",
                                        "revoked"};
    if (strncasecmp(s, "DEVICE_STATE_", 13) == 0) {
        s += 13;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            return (int)i + 1;
        }
    }
    return WERR_INVALID;
}

int cli_key_alg_parse(const char *s, enum cli_key_alg *out)
{
    if (strcasecmp(s, "ed25519") == 0) {
        *out = CLI_KEY_ALG_ED25519;
    } else if (strcasecmp(s, "p256") == 0 || strcasecmp(s, "ecdsa-p256") == 0 ||
               strcasecmp(s, "p-256") == 0) {
        *out = CLI_KEY_ALG_P256;
    } else {
        return WERR_INVALID;
    }
    return 0;
}

int cli_timeout_parse(const char *s, uint64_t *ms)
{
    /* At most 12 digits: enough for CLI_TIMEOUT_MAX_MS in ms, and no
     * overflow in the multiplications below. */
    uint64_t v = 0;
    size_t i = 0;
    for (; isdigit((unsigned char)s[i]); i++) {
        if (i >= 12) {
            return WERR_INVALID;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0) {
        return WERR_INVALID;
    }
    const char *u = s + i;
    uint64_t mult;
    if (*u == '\0' || strcmp(u, "s") == 0) {
        mult = 1000;
    } else if (strcmp(u, "ms") == 0) {
        mult = 1;
    } else if (strcmp(u, "m") == 0) {
        mult = 60 * 1000;
    } else if (strcmp(u, "h") == 0) {
        mult = 3600 * 1000;
    } else {
        return WERR_INVALID;
    }
    if (v == 0 || v > CLI_TIMEOUT_MAX_MS / mult) {
        return WERR_INVALID;
    }
    *ms = v * mult;
    return 0;
}

/* ---- argv ---------------------------------------------------------------- */

enum flag_id {
    F_ENDPOINT, F_CA, F_CERT, F_KEY, F_DEV_CERTS, F_ROLE, F_JSON, F_TIMEOUT,
    F_HELP, F_SERVICE, F_ID, F_KEY_ALG, F_PK_HEX, F_PK_FILE, F_ATTEST,
    F_MODEL, F_FIRMWARE, F_GATEWAY, F_LABEL, F_IDEM, F_SERIALIZABLE, F_STATE,
    F_PAGE_SIZE, F_PAGE_TOKEN, F_ALL, F_SPARE_ONLY, F_VERBOSE,
    F_FROM, F_TO, F_MAX, F_ENV_HEX, F_ENV_FILE, F_SIG_HEX, F_CPK_HEX,
    F_CPK_FILE, F_DEVICE, F_KEY_EPOCH, F_LAST_SEQ, F_COUNTER, F_PAYLOAD_HEX,
    F_PAYLOAD_FILE, F_KEY_ID, F_REASON, F_PRIV_FILE, F_CUR_KEY_FILE,
    F_BATCH_SIZE,
    /* issues 5 and 6 */
    F_SELECTOR, F_PURPOSE, F_APPROVALS, F_REVIEWER_ROLES, F_MAX_DURATION,
    F_MAX_USES, F_PENDING_TTL, F_LOCK_LAG, F_RETENTION, F_PROTOCOL, F_PORT,
    F_COMMAND_CLASS, F_DURATION, F_MAX_SESSIONS, F_COMMENT, F_PRINCIPAL,
    F_REVISION, F_EXPIRES, F_FROM_REVISION, F_VERSION, F_ARTIFACT_SHA,
    F_ARTIFACT_SIZE, F_MANIFEST_FILE, F_ROLLBACK_OF, F_RELEASE, F_STAGE,
    F_MIN_REPORTED, F_SUCCESS_RATIO, F_FAILURE_RATIO, F_DEVICE_TIMEOUT, F_BAKE,
    F_MANUAL, F_NAME, F_ROLLBACK, F_FORCE, F_PHASE, F_DETAIL, F_ROLLOUT,
    F_RELEASE_COUNTER,
    /* issue 9 */
    F_OUT, F_CN, F_CA_DIR, F_DAYS, F_IP, F_DNS, F_INTERVAL, F_ITERATIONS,
    F_ONCE, F_CLUSTER_JSON, F_METRICS,
    /* issue 7 */
    F_EXPECTED_VERSION,
};

int cli_cmd_offline(enum cli_cmd cmd)
{
    return cmd == CLI_CMD_AUDIT_VERIFY || cmd == CLI_CMD_VERIFY_COMMAND ||
           cmd == CLI_CMD_ROLLOUT_RELEASE_MANIFEST || cmd == CLI_CMD_CERTS_INIT_CA ||
           cmd == CLI_CMD_CERTS_ISSUE;
}

/* Which commands accept a command flag; global flags have mask 0. */
#define M(c) ((uint64_t)1 << (c))
#define M_HEALTH M(CLI_CMD_HEALTH)
#define M_ENROLL M(CLI_CMD_DEVICE_ENROLL)
#define M_GET M(CLI_CMD_DEVICE_GET)
#define M_LIST M(CLI_CMD_DEVICE_LIST)
#define M_CADD M(CLI_CMD_CLUSTER_ADD)
#define M_REENROLL M(CLI_CMD_DEVICE_REENROLL)
#define M_ROTKEY M(CLI_CMD_DEVICE_ROTATE_KEY)
#define M_TLM M(CLI_CMD_TELEMETRY_SUBMIT)
#define M_VCMD M(CLI_CMD_VERIFY_COMMAND)
#define M_CISSUE M(CLI_CMD_CONTROL_ISSUE)
/* Mutations that carry an idempotency key. */
#define M_KEYED                                                            \
    (M_ENROLL | M(CLI_CMD_DEVICE_STATE) | M_REENROLL |                     \
     M(CLI_CMD_DEVICE_REBIND) | M_ROTKEY | M(CLI_CMD_DEVICE_ENROLL_BATCH) | \
     M_CISSUE | M(CLI_CMD_DEVICE_LABELS))
/* issue 5 */
#define M_APSET M(CLI_CMD_ACCESS_POLICY_SET)
#define M_AREQ M(CLI_CMD_ACCESS_REQUEST)
#define M_AREVIEW (M(CLI_CMD_ACCESS_APPROVE) | M(CLI_CMD_ACCESS_DENY))
#define M_ACHECK M(CLI_CMD_ACCESS_CHECK)
#define M_AREVOKE M(CLI_CMD_ACCESS_REVOKE)
#define M_AGRANTS M(CLI_CMD_ACCESS_GRANTS)
#define M_ALOCK M(CLI_CMD_ACCESS_LOCK)
#define M_AUNLOCK M(CLI_CMD_ACCESS_UNLOCK)
#define M_AWATCH M(CLI_CMD_ACCESS_WATCH)
#define M_ACC_KEYED                                                       \
    (M_APSET | M_AREQ | M_AREVIEW | M_ACHECK | M_AREVOKE | M_ALOCK | M_AUNLOCK)
/* issue 6 */
#define M_KREG M(CLI_CMD_ROLLOUT_KEY_REGISTER)
#define M_KREV M(CLI_CMD_ROLLOUT_KEY_REVOKE)
#define M_RCREATE M(CLI_CMD_ROLLOUT_RELEASE_CREATE)
#define M_RMANIFEST M(CLI_CMD_ROLLOUT_RELEASE_MANIFEST)
#define M_RGET M(CLI_CMD_ROLLOUT_RELEASE_GET)
#define M_OCREATE M(CLI_CMD_ROLLOUT_CREATE)
#define M_OABORT M(CLI_CMD_ROLLOUT_ABORT)
#define M_OTRANS                                                          \
    (M(CLI_CMD_ROLLOUT_START) | M(CLI_CMD_ROLLOUT_PAUSE) |               \
     M(CLI_CMD_ROLLOUT_RESUME) | M(CLI_CMD_ROLLOUT_ADVANCE) | M_OABORT)
#define M_OSTATUS M(CLI_CMD_ROLLOUT_STATUS)
#define M_ODESIRED M(CLI_CMD_ROLLOUT_DESIRED)
#define M_OREPORT M(CLI_CMD_ROLLOUT_REPORT)
#define M_RO_KEYED (M_KREG | M_KREV | M_RCREATE | M_OCREATE | M_OTRANS | M_ODESIRED)
/* Commands that sign with a key or send a signature as given. */
#define M_SIGNS (M_RCREATE | M_OABORT | M_OREPORT)
/* issue 9 */
#define M_CINIT M(CLI_CMD_CERTS_INIT_CA)
#define M_CERT_ISSUE M(CLI_CMD_CERTS_ISSUE)
#define M_TOP M(CLI_CMD_TOP)
_Static_assert(CLI_CMD_COUNT_ <= 64, "flag masks are 64-bit");

struct flag {
    const char *name;
    enum flag_id id;
    int takes_value;
    uint64_t cmds; /* 0 = global */
};

static const struct flag flags[] = {
    {"endpoint", F_ENDPOINT, 1, 0},
    {"ca", F_CA, 1, 0},
    {"cert", F_CERT, 1, 0},
    {"key", F_KEY, 1, 0},
    {"dev-certs", F_DEV_CERTS, 1, 0},
    {"role", F_ROLE, 1, 0},
    {"json", F_JSON, 0, 0},
    {"timeout", F_TIMEOUT, 1, 0},
    {"help", F_HELP, 0, 0},
    {"service", F_SERVICE, 1, M_HEALTH},
    {"id", F_ID, 1, M_ENROLL},
    {"key-alg", F_KEY_ALG, 1, M_ENROLL | M_REENROLL | M_ROTKEY},
    {"public-key-hex", F_PK_HEX, 1, M_ENROLL | M_REENROLL | M_ROTKEY | M_KREG},
    {"public-key-file", F_PK_FILE, 1, M_ENROLL | M_REENROLL | M_ROTKEY | M_KREG},
    {"attestation-digest", F_ATTEST, 1, M_ENROLL | M_REENROLL},
    {"model", F_MODEL, 1, M_ENROLL | M_RMANIFEST | M_OCREATE},
    {"firmware", F_FIRMWARE, 1, M_ENROLL | M_LIST},
    {"gateway", F_GATEWAY, 1, M_ENROLL | M_LIST | M_ALOCK | M_AWATCH | M_OCREATE},
    {"label", F_LABEL, 1, M_ENROLL | M_LIST},
    {"idempotency-key", F_IDEM, 1, M_KEYED | M_ACC_KEYED | M_RO_KEYED},
    {"serializable", F_SERIALIZABLE, 0, M_GET | M_LIST | M_AGRANTS | M_RGET | M_OSTATUS},
    {"state", F_STATE, 1, M_LIST | M_AGRANTS},
    {"page-size", F_PAGE_SIZE, 1, M_LIST | M_AGRANTS},
    {"page-token", F_PAGE_TOKEN, 1, M_LIST | M_AGRANTS},
    {"all", F_ALL, 0, M_LIST | M_AGRANTS | M_ALOCK},
    {"spare-only", F_SPARE_ONLY, 0, M_CADD},
    {"verbose", F_VERBOSE, 0, 0},
    {"from", F_FROM, 1,
     M(CLI_CMD_AUDIT_READ) | M(CLI_CMD_AUDIT_TAIL) | M(CLI_CMD_AUDIT_EXPORT)},
    {"to", F_TO, 1, M(CLI_CMD_AUDIT_EXPORT)},
    {"max", F_MAX, 1, M(CLI_CMD_AUDIT_READ) | M(CLI_CMD_AUDIT_TAIL) | M_AWATCH},
    {"envelope-hex", F_ENV_HEX, 1, M_VCMD},
    {"envelope-file", F_ENV_FILE, 1, M_VCMD},
    {"signature-hex", F_SIG_HEX, 1, M_VCMD | M_TLM | M_SIGNS},
    {"pubkey-hex", F_CPK_HEX, 1, M_VCMD},
    {"pubkey-file", F_CPK_FILE, 1, M_VCMD},
    {"device", F_DEVICE, 1, M_VCMD | M_AREQ | M_ACHECK | M_AGRANTS | M_ALOCK},
    {"key-epoch", F_KEY_EPOCH, 1, M_VCMD | M_TLM | M_OREPORT},
    {"last-seq", F_LAST_SEQ, 1, M_VCMD},
    {"counter", F_COUNTER, 1, M_TLM | M_RMANIFEST | M_OREPORT},
    {"payload-hex", F_PAYLOAD_HEX, 1, M_TLM | M_CISSUE},
    {"payload-file", F_PAYLOAD_FILE, 1, M_TLM | M_CISSUE},
    {"key-id", F_KEY_ID, 1,
     M(CLI_CMD_CONTROL_KEY_GET) | M(CLI_CMD_CONTROL_KEY_ROTATE) | M_RCREATE |
         M_OABORT},
    {"reason", F_REASON, 1,
     M(CLI_CMD_DEVICE_STATE) | M_AREQ | M_AREVOKE | M_ALOCK | M_AUNLOCK | M_KREV |
         M_RCREATE | M_OTRANS},
    {"private-key-file", F_PRIV_FILE, 1, M_ROTKEY | M_TLM | M_SIGNS},
    {"current-key-file", F_CUR_KEY_FILE, 1, M_ROTKEY},
    {"batch-size", F_BATCH_SIZE, 1, M(CLI_CMD_DEVICE_ENROLL_BATCH)},
    /* issue 5: access */
    {"selector", F_SELECTOR, 1, M_AREQ | M_ALOCK | M_OCREATE},
    {"purpose", F_PURPOSE, 1, M_APSET | M_AREQ},
    {"approvals", F_APPROVALS, 1, M_APSET},
    {"reviewer-roles", F_REVIEWER_ROLES, 1, M_APSET},
    {"max-duration", F_MAX_DURATION, 1, M_APSET},
    {"max-uses", F_MAX_USES, 1, M_APSET},
    {"pending-ttl", F_PENDING_TTL, 1, M_APSET},
    {"lock-view-max-lag", F_LOCK_LAG, 1, M_APSET},
    {"revlog-retention", F_RETENTION, 1, M_APSET},
    {"protocol", F_PROTOCOL, 1, M_AREQ | M_ACHECK},
    {"port", F_PORT, 1, M_AREQ | M_ACHECK},
    {"command-class", F_COMMAND_CLASS, 1, M_AREQ | M_ACHECK},
    {"duration", F_DURATION, 1, M_AREQ},
    {"max-sessions", F_MAX_SESSIONS, 1, M_AREQ},
    {"comment", F_COMMENT, 1, M_AREVIEW},
    {"principal", F_PRINCIPAL, 1, M_ACHECK | M_AGRANTS | M_ALOCK},
    {"revision", F_REVISION, 1, M_ACHECK},
    {"expires", F_EXPIRES, 1, M_ALOCK},
    {"from-revision", F_FROM_REVISION, 1, M_AWATCH},
    /* issue 6: rollouts */
    {"version", F_VERSION, 1, M_RMANIFEST},
    {"artifact-sha256", F_ARTIFACT_SHA, 1, M_RMANIFEST},
    {"artifact-size", F_ARTIFACT_SIZE, 1, M_RMANIFEST},
    {"manifest-file", F_MANIFEST_FILE, 1, M_RCREATE | M_OABORT},
    {"rollback-of", F_ROLLBACK_OF, 1, M_RCREATE},
    {"release", F_RELEASE, 1, M_OCREATE},
    {"stage", F_STAGE, 1, M_OCREATE},
    {"min-reported", F_MIN_REPORTED, 1, M_OCREATE},
    {"success-ratio", F_SUCCESS_RATIO, 1, M_OCREATE},
    {"failure-ratio", F_FAILURE_RATIO, 1, M_OCREATE},
    {"device-timeout", F_DEVICE_TIMEOUT, 1, M_OCREATE},
    {"bake", F_BAKE, 1, M_OCREATE},
    {"manual", F_MANUAL, 0, M_OCREATE},
    {"name", F_NAME, 1, M_OCREATE | M_CERT_ISSUE},
    {"rollback", F_ROLLBACK, 0, M_OABORT},
    {"force", F_FORCE, 0, M(CLI_CMD_ROLLOUT_ADVANCE)},
    {"phase", F_PHASE, 1, M_OREPORT},
    {"detail", F_DETAIL, 1, M_OREPORT},
    {"rollout", F_ROLLOUT, 1, M_OREPORT},
    {"release-counter", F_RELEASE_COUNTER, 1, M_OREPORT},
    /* issue 9: certs and top */
    {"out", F_OUT, 1, M_CINIT | M_CERT_ISSUE},
    {"cn", F_CN, 1, M_CINIT},
    {"ca-dir", F_CA_DIR, 1, M_CERT_ISSUE},
    {"days", F_DAYS, 1, M_CINIT | M_CERT_ISSUE},
    {"ip", F_IP, 1, M_CERT_ISSUE},
    {"dns", F_DNS, 1, M_CERT_ISSUE},
    {"interval", F_INTERVAL, 1, M_TOP},
    {"iterations", F_ITERATIONS, 1, M_TOP},
    {"once", F_ONCE, 0, M_TOP},
    {"cluster-json", F_CLUSTER_JSON, 1, M_TOP},
    {"metrics", F_METRICS, 1, M_TOP},
    /* issue 7 */
    {"expected-version", F_EXPECTED_VERSION, 1, M(CLI_CMD_DEVICE_LABELS)},
};

int cli_u64_parse(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return WERR_INVALID;
        }
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return WERR_INVALID;
        }
        v = v * 10 + d;
    }
    if (i == 0) {
        return WERR_INVALID;
    }
    *out = v;
    return 0;
}

/* Hex of at most max bytes (the value is decoded by the command). */
static int hex_flag(const char *name, const char *v, size_t max,
                    struct werr *e)
{
    size_t n = strlen(v);
    int ok = n > 0 && n % 2 == 0 && n / 2 <= max;
    for (size_t i = 0; ok && i < n; i++) {
        ok = hexval((unsigned char)v[i]) >= 0;
    }
    if (!ok) {
        return werr_set(e, WERR_INVALID, "--%s: want hex of 1..%zu bytes", name,
                        max);
    }
    return 0;
}

static int u64_flag(const char *name, const char *v, uint64_t *out, int *has,
                    struct werr *e)
{
    if (cli_u64_parse(v, out) != 0) {
        return werr_set(e, WERR_INVALID, "--%s \"%s\": want a decimal number",
                        name, v);
    }
    if (has != NULL) {
        *has = 1;
    }
    return 0;
}

struct seen {
    const struct flag *flag;
    const char *value;
};

/* argv holds at most argc flags; we bound argc instead of allocating. */
#define ARGV_MAX 256

int cli_endpoint_check(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CLI_ENDPOINT_LEN_MAX) {
        return WERR_INVALID;
    }
    /* HOST:PORT with a numeric port; [v6]:port is accepted too. */
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0' ||
        strlen(colon + 1) > 5) {
        return WERR_INVALID;
    }
    long port = 0;
    for (const char *p = colon + 1; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return WERR_INVALID;
        }
        port = port * 10 + (*p - '0');
    }
    /* No control bytes or spaces: the string is dialled and printed. */
    for (const char *p = s; p < colon; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            return WERR_INVALID;
        }
    }
    return port >= 1 && port <= 65535 ? 0 : WERR_INVALID;
}

int cli_member_id_parse(const char *s, uint32_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; s[i] != '\0'; i++) {
        /* 10 digits hold UINT32_MAX; more is out of range anyway. */
        if (s[i] < '0' || s[i] > '9' || i >= 10) {
            return WERR_INVALID;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0 || v == 0 || v > UINT32_MAX) {
        return WERR_INVALID;
    }
    *out = (uint32_t)v;
    return 0;
}

static int add_endpoints(struct cli_args *a, const char *list, struct werr *e)
{
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == 0) {
            return werr_set(e, WERR_INVALID, "--endpoint: empty entry in \"%s\"",
                            list);
        }
        if (n > CLI_ENDPOINT_LEN_MAX) {
            return werr_set(e, WERR_INVALID, "--endpoint: longer than %d bytes",
                            CLI_ENDPOINT_LEN_MAX);
        }
        if (a->n_endpoints == CLI_ENDPOINTS_MAX) {
            return werr_set(e, WERR_INVALID, "--endpoint: more than %d endpoints",
                            CLI_ENDPOINTS_MAX);
        }
        char *dst = a->endpoints[a->n_endpoints];
        memcpy(dst, p, n);
        dst[n] = '\0';
        if (cli_endpoint_check(dst) != 0) {
            return werr_set(e, WERR_INVALID,
                            "--endpoint \"%s\": want HOST:PORT", dst);
        }
        a->n_endpoints++;
        if (comma == NULL) {
            return 0;
        }
        p = comma + 1;
    }
}

static int join_path(char *buf, const char *dir, const char *name,
                     const char *suffix, struct werr *e)
{
    int n = snprintf(buf, CLI_PATH_MAX, "%s/%s%s", dir, name, suffix);
    if (n < 0 || n >= CLI_PATH_MAX) {
        return werr_set(e, WERR_INVALID, "--dev-certs: path too long");
    }
    return 0;
}


/* Free text the server audits (reasons, comments, details): at most
 * CLI_TEXT_MAX bytes. */
static int text_flag(const char *name, const char *v, struct werr *e)
{
    if (strlen(v) > CLI_TEXT_MAX) {
        return werr_set(e, WERR_INVALID, "--%s: longer than %d bytes", name,
                        CLI_TEXT_MAX);
    }
    return 0;
}

/* A number lo..hi for a u32 flag. */
static int u32_flag(const char *name, const char *v, uint32_t lo, uint32_t hi,
                    uint32_t *out, struct werr *e)
{
    uint64_t n = 0;
    if (cli_u64_parse(v, &n) != 0 || n < lo || n > hi) {
        return werr_set(e, WERR_INVALID, "--%s \"%s\": want %u..%u", name, v,
                        (unsigned)lo, (unsigned)hi);
    }
    *out = (uint32_t)n;
    return 0;
}

/* A duration lo..hi for a flag, with the bounds in the message. */
static int dur_flag(const char *name, const char *v, uint64_t lo, uint64_t hi,
                    uint64_t *out, struct werr *e)
{
    if (cli_duration_parse(v, lo, hi, out) != 0) {
        char a[CLI_DURATION_FMT_MAX], b[CLI_DURATION_FMT_MAX];
        return werr_set(e, WERR_INVALID,
                        "--%s \"%s\": want a duration %s..%s (ms, s, m or h)", name,
                        v, cli_duration_fmt(lo, a), cli_duration_fmt(hi, b));
    }
    return 0;
}

static int ratio_flag(const char *name, const char *v, uint32_t *bp, int *has,
                      struct werr *e)
{
    if (cli_ratio_parse(v, bp) != 0) {
        return werr_set(e, WERR_INVALID,
                        "--%s \"%s\": want a ratio such as 95%%, 0.95 or 9500bp",
                        name, v);
    }
    *has = 1;
    return 0;
}

/* The flags of the access and rollout commands. */
static int apply_ops_flag(struct cli_args *a, const struct flag *f, const char *v,
                          struct werr *e)
{
    int rc;
    switch (f->id) {
    case F_SELECTOR:
        if (a->n_selector == CLI_SELECTOR_MAX) {
            return werr_set(e, WERR_INVALID, "--selector: more than %d labels",
                            CLI_SELECTOR_MAX);
        }
        if (cli_label_parse(v, &a->selector[a->n_selector], e) != 0) {
            e->code = WERR_INVALID;
            return WERR_INVALID;
        }
        a->n_selector++;
        return 0;
    case F_PURPOSE:
        rc = cli_purpose_parse(v);
        if (rc < 0) {
            return werr_set(e, WERR_INVALID,
                            "--purpose \"%s\": want maintenance, diagnostics, "
                            "incident or update", v);
        }
        a->purpose = rc;
        return 0;
    case F_APPROVALS:
        return u32_flag(f->name, v, 1, CLI_ACC_APPROVALS_MAX, &a->approvals, e);
    case F_REVIEWER_ROLES:
        if (cli_roles_parse(v, &a->reviewer_roles) != 0) {
            return werr_set(e, WERR_INVALID,
                            "--reviewer-roles \"%s\": want a list of admin, "
                            "operator, auditor (comma-separated, no repeats)", v);
        }
        return 0;
    case F_MAX_DURATION:
        return dur_flag(f->name, v, CLI_ACC_DURATION_MIN_MS, CLI_ACC_DURATION_MAX_MS,
                        &a->max_duration_ms, e);
    case F_PENDING_TTL:
        return dur_flag(f->name, v, CLI_ACC_TTL_MIN_MS, CLI_ACC_DURATION_MAX_MS,
                        &a->pending_ttl_ms, e);
    case F_MAX_USES:
        return u32_flag(f->name, v, 1, CLI_ACC_USES_MAX, &a->max_uses, e);
    case F_LOCK_LAG:
        return u64_flag(f->name, v, &a->lock_view_max_lag,
                        &a->has_lock_view_max_lag, e);
    case F_RETENTION:
        return u64_flag(f->name, v, &a->revlog_retention, &a->has_revlog_retention,
                        e);
    case F_PROTOCOL:
        if (a->n_protocols == CLI_ACC_PROTOCOLS_MAX) {
            return werr_set(e, WERR_INVALID, "--protocol: more than %d protocols",
                            CLI_ACC_PROTOCOLS_MAX);
        }
        if (v[0] == '\0') {
            return werr_set(e, WERR_INVALID, "--protocol: empty");
        }
        a->protocols[a->n_protocols++] = v;
        return 0;
    case F_PORT:
        if (a->n_ports == CLI_ACC_PORTS_MAX) {
            return werr_set(e, WERR_INVALID, "--port: more than %d ports",
                            CLI_ACC_PORTS_MAX);
        }
        return u32_flag(f->name, v, 1, 65535, &a->ports[a->n_ports++], e);
    case F_COMMAND_CLASS:
        a->command_class = v;
        return 0;
    case F_DURATION:
        return dur_flag(f->name, v, CLI_ACC_DURATION_MIN_MS, CLI_ACC_DURATION_MAX_MS,
                        &a->duration_ms, e);
    case F_MAX_SESSIONS:
        return u32_flag(f->name, v, 1, CLI_ACC_USES_MAX, &a->max_sessions, e);
    case F_COMMENT:
        a->comment = v;
        return text_flag(f->name, v, e);
    case F_PRINCIPAL:
        if (v[0] == '\0') {
            return werr_set(e, WERR_INVALID, "--principal: empty");
        }
        a->principal = v;
        return 0;
    case F_REVISION:
        return u64_flag(f->name, v, &a->revision, &a->has_revision, e);
    case F_EXPECTED_VERSION:
        return u64_flag(f->name, v, &a->expected_version,
                        &a->has_expected_version, e);
    case F_EXPIRES:
        return dur_flag(f->name, v, 1000, CLI_DURATION_MAX_MS, &a->expires_in_ms, e);
    case F_FROM_REVISION:
        return u64_flag(f->name, v, &a->from_revision, &a->has_from_revision, e);
    case F_VERSION:
        a->version = v;
        return 0;
    case F_ARTIFACT_SHA:
        a->artifact_sha256_hex = v;
        return 0;
    case F_ARTIFACT_SIZE:
        return u64_flag(f->name, v, &a->artifact_size, NULL, e);
    case F_MANIFEST_FILE:
        a->manifest_file = v;
        return 0;
    case F_ROLLBACK_OF:
        if (cli_u64_parse(v, &a->rollback_of) != 0 || a->rollback_of == 0) {
            return werr_set(e, WERR_INVALID, "--rollback-of \"%s\": want a release ID",
                            v);
        }
        return 0;
    case F_RELEASE:
        if (cli_u64_parse(v, &a->release_id) != 0 || a->release_id == 0) {
            return werr_set(e, WERR_INVALID, "--release \"%s\": want a release ID", v);
        }
        return 0;
    case F_STAGE:
        if (a->n_stages == CLI_STAGES_MAX) {
            return werr_set(e, WERR_INVALID, "--stage: more than %d stages",
                            CLI_STAGES_MAX);
        }
        return cli_stage_parse(v, &a->stages[a->n_stages++], e);
    case F_MIN_REPORTED:
        return u32_flag(f->name, v, 0, UINT32_MAX, &a->min_reported, e);
    case F_SUCCESS_RATIO:
        return ratio_flag(f->name, v, &a->success_bp, &a->has_success, e);
    case F_FAILURE_RATIO:
        return ratio_flag(f->name, v, &a->failure_bp, &a->has_failure, e);
    case F_DEVICE_TIMEOUT:
        return dur_flag(f->name, v, 1000, CLI_DURATION_MAX_MS, &a->device_timeout_ms,
                        e);
    case F_BAKE:
        return dur_flag(f->name, v, 0, CLI_DURATION_MAX_MS, &a->bake_ms, e);
    case F_MANUAL:
        a->manual = 1;
        return 0;
    case F_NAME:
        if (strlen(v) > CLI_ROLLOUT_NAME_MAX) {
            return werr_set(e, WERR_INVALID, "--name: longer than %d bytes",
                            CLI_ROLLOUT_NAME_MAX);
        }
        a->name = v;
        return 0;
    case F_ROLLBACK:
        a->rollback = 1;
        return 0;
    case F_FORCE:
        a->force = 1;
        return 0;
    case F_PHASE:
        rc = cli_phase_parse(v);
        if (rc < 0) {
            return werr_set(e, WERR_INVALID,
                            "--phase \"%s\": want downloading, installing, "
                            "succeeded, failed, rolled_back or rejected", v);
        }
        a->phase = rc;
        return 0;
    case F_DETAIL:
        a->detail = v;
        return text_flag(f->name, v, e);
    case F_ROLLOUT:
        if (cli_u64_parse(v, &a->rollout_ref) != 0 || a->rollout_ref == 0) {
            return werr_set(e, WERR_INVALID, "--rollout \"%s\": want a rollout ID", v);
        }
        return 0;
    case F_RELEASE_COUNTER:
        return u64_flag(f->name, v, &a->release_counter, &a->has_release_counter, e);
    case F_OUT:
        a->out = v;
        return 0;
    case F_CN:
        a->cn = v;
        return 0;
    case F_CA_DIR:
        a->ca_dir = v;
        return 0;
    case F_DAYS:
        /* pki/pki.h checks the per-kind maximum (CA or leaf). */
        return u32_flag(f->name, v, 1, 36500, &a->days, e);
    case F_IP:
    case F_DNS: {
        const char **arr = f->id == F_IP ? a->ips : a->dns;
        size_t *n = f->id == F_IP ? &a->n_ips : &a->n_dns;
        if (*n >= CLI_CERT_SAN_MAX) {
            return werr_set(e, WERR_INVALID, "--%s: at most %d", f->name,
                            CLI_CERT_SAN_MAX);
        }
        arr[(*n)++] = v;
        return 0;
    }
    case F_INTERVAL:
        return dur_flag(f->name, v, CLI_TOP_INTERVAL_MIN_MS, CLI_TOP_INTERVAL_MAX_MS,
                        &a->interval_ms, e);
    case F_ITERATIONS:
        return u32_flag(f->name, v, 1, 1000000, &a->iterations, e);
    case F_ONCE:
        a->once = 1;
        return 0;
    case F_CLUSTER_JSON:
        a->cluster_json = v;
        return 0;
    case F_METRICS:
        a->metrics = v;
        return 0;
    default:
        return werr_set(e, WERR_INTERNAL, "unhandled flag --%s", f->name);
    }
}

static int apply_flag(struct cli_args *a, const struct flag *f, const char *v,
                      struct werr *e)
{
    int rc;
    switch (f->id) {
    case F_ENDPOINT:
        return add_endpoints(a, v, e);
    case F_CA:
        a->ca = v;
        return 0;
    case F_CERT:
        a->cert = v;
        return 0;
    case F_KEY:
        a->key = v;
        return 0;
    case F_DEV_CERTS:
        a->dev_certs = v;
        return 0;
    case F_ROLE:
        a->role = v;
        return 0;
    case F_JSON:
        a->json = 1;
        return 0;
    case F_TIMEOUT:
        if (cli_timeout_parse(v, &a->timeout_ms) != 0) {
            return werr_set(e, WERR_INVALID,
                            "--timeout \"%s\": want e.g. 500ms, 10s, 2m, 1h "
                            "(max 24h)", v);
        }
        a->timeout_given = 1;
        return 0;
    case F_HELP:
        a->cmd = CLI_CMD_HELP;
        return 0;
    case F_SERVICE:
        a->service = v;
        return 0;
    case F_ID:
        a->device_id = v;
        return 0;
    case F_KEY_ALG:
        if (cli_key_alg_parse(v, &a->key_alg) != 0) {
            return werr_set(e, WERR_INVALID,
                            "--key-alg \"%s\": want ed25519 or p256", v);
        }
        return 0;
    case F_PK_HEX:
        rc = cli_hex_decode(v, a->public_key, sizeof a->public_key,
                            &a->public_key_len);
        if (rc == WERR_LIMIT) {
            return werr_set(e, WERR_INVALID,
                            "--public-key-hex: longer than %d bytes",
                            CLI_PUBKEY_MAX);
        }
        if (rc != 0 || a->public_key_len == 0) {
            return werr_set(e, WERR_INVALID, "--public-key-hex: not hex");
        }
        return 0;
    case F_PK_FILE:
        a->public_key_file = v;
        return 0;
    case F_ATTEST: {
        size_t n = 0;
        rc = cli_hex_decode(v, a->attestation, sizeof a->attestation, &n);
        if (rc != 0 || n != CLI_DIGEST_LEN) {
            return werr_set(e, WERR_INVALID,
                            "--attestation-digest: want %d bytes of hex (SHA-256)",
                            CLI_DIGEST_LEN);
        }
        a->has_attestation = 1;
        return 0;
    }
    case F_MODEL:
        a->model = v;
        if (a->cmd == CLI_CMD_ROLLOUT_RELEASE_MANIFEST) {
            if (a->n_models == CLI_MODELS_MAX) {
                return werr_set(e, WERR_INVALID, "--model: more than %d models",
                                CLI_MODELS_MAX);
            }
            a->models[a->n_models++] = v;
        }
        return 0;
    case F_FIRMWARE:
        a->firmware = v;
        return 0;
    case F_GATEWAY:
        a->gateway = v;
        return 0;
    case F_LABEL:
        if (a->n_labels == CLI_LABELS_MAX) {
            return werr_set(e, WERR_INVALID, "--label: more than %d labels",
                            CLI_LABELS_MAX);
        }
        rc = cli_label_parse(v, &a->labels[a->n_labels], e);
        if (rc != 0) {
            e->code = WERR_INVALID;
            return WERR_INVALID;
        }
        a->n_labels++;
        return 0;
    case F_IDEM:
        a->idempotency_key = v;
        return 0;
    case F_SERIALIZABLE:
        a->serializable = 1;
        return 0;
    case F_STATE:
        if (a->cmd == CLI_CMD_ACCESS_GRANTS) {
            rc = cli_grant_state_parse(v);
            if (rc < 0) {
                return werr_set(e, WERR_INVALID,
                                "--state \"%s\": want active, expired, exhausted "
                                "or revoked", v);
            }
            a->grant_state = rc;
            return 0;
        }
        rc = cli_state_parse(v);
        if (rc < 0) {
            return werr_set(e, WERR_INVALID,
                            "--state \"%s\": want provisioned, active, "
                            "quarantined or revoked", v);
        }
        a->state = rc;
        return 0;
    case F_PAGE_SIZE: {
        char *end = NULL;
        errno = 0;
        unsigned long n = strtoul(v, &end, 10);
        if (!isdigit((unsigned char)v[0]) || *end != '\0' || errno != 0 ||
            n < 1 || n > CLI_PAGE_SIZE_MAX) {
            return werr_set(e, WERR_INVALID, "--page-size \"%s\": want 1..%u",
                            v, CLI_PAGE_SIZE_MAX);
        }
        a->page_size = (uint32_t)n;
        return 0;
    }
    case F_PAGE_TOKEN:
        a->page_token = v;
        return 0;
    case F_ALL:
        a->all = 1;
        return 0;
    case F_SPARE_ONLY:
        a->spare_only = 1;
        return 0;
    case F_VERBOSE:
        a->verbose = 1;
        return 0;
    case F_FROM:
        return u64_flag(f->name, v, &a->from_seq, &a->has_from, e);
    case F_TO:
        return u64_flag(f->name, v, &a->to_seq, &a->has_to, e);
    case F_MAX:
        if (u64_flag(f->name, v, &a->max, NULL, e) != 0 || a->max == 0) {
            return werr_set(e, WERR_INVALID, "--max \"%s\": want 1 or more", v);
        }
        return 0;
    case F_ENV_HEX:
        a->envelope_hex = v;
        return hex_flag(f->name, v, CLI_HEX_ARG_MAX, e);
    case F_ENV_FILE:
        a->envelope_file = v;
        return 0;
    case F_SIG_HEX:
        a->signature_hex = v;
        return hex_flag(f->name, v, CLI_SIG_HEX_MAX, e);
    case F_CPK_HEX:
        a->pubkey_hex = v;
        return hex_flag(f->name, v, CLI_PUBKEY_MAX, e);
    case F_CPK_FILE:
        a->pubkey_file = v;
        return 0;
    case F_DEVICE:
        a->expect_device = v;
        if (a->cmd != CLI_CMD_VERIFY_COMMAND) {
            if (v[0] == '\0') {
                return werr_set(e, WERR_INVALID, "--device: empty device ID");
            }
            if (a->n_devices == CLI_ACC_DEVICES_MAX) {
                return werr_set(e, WERR_INVALID, "--device: more than %d devices",
                                CLI_ACC_DEVICES_MAX);
            }
            a->devices[a->n_devices++] = v;
        }
        return 0;
    case F_KEY_EPOCH:
        return u64_flag(f->name, v, &a->key_epoch, &a->has_key_epoch, e);
    case F_LAST_SEQ:
        return u64_flag(f->name, v, &a->last_seq, &a->has_last_seq, e);
    case F_COUNTER:
        return u64_flag(f->name, v, &a->counter, &a->has_counter, e);
    case F_PAYLOAD_HEX:
        a->payload_hex = v;
        /* An empty payload is allowed as "" (no bytes). */
        return v[0] == '\0' ? 0 : hex_flag(f->name, v, CLI_HEX_ARG_MAX, e);
    case F_PAYLOAD_FILE:
        a->payload_file = v;
        return 0;
    case F_KEY_ID:
        a->key_id = v;
        return 0;
    case F_REASON:
        a->reason = v;
        return text_flag(f->name, v, e);
    case F_PRIV_FILE:
        a->private_key_file = v;
        return 0;
    case F_CUR_KEY_FILE:
        a->current_key_file = v;
        return 0;
    case F_BATCH_SIZE: {
        uint64_t n = 0;
        if (cli_u64_parse(v, &n) != 0 || n < 1 || n > CLI_BATCH_MAX) {
            return werr_set(e, WERR_INVALID, "--batch-size \"%s\": want 1..%u",
                            v, CLI_BATCH_MAX);
        }
        a->batch_size = (uint32_t)n;
        return 0;
    }
    default:
        return apply_ops_flag(a, f, v, e);
    }
}

static const struct flag *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (strlen(flags[i].name) == len && memcmp(flags[i].name, name, len) == 0) {
            return &flags[i];
        }
    }
    return NULL;
}

static int finish_tls(struct cli_args *a, struct werr *e)
{
    if ((a->dev_certs == NULL) != (a->role == NULL)) {
        return werr_set(e, WERR_INVALID, "--dev-certs and --role go together");
    }
    if (a->dev_certs != NULL) {
        /* Explicit --ca/--cert/--key win over the derived paths. */
        if (a->ca == NULL) {
            if (join_path(a->ca_buf, a->dev_certs, "ca", ".pem", e) != 0) {
                return WERR_INVALID;
            }
            a->ca = a->ca_buf;
        }
        if (a->cert == NULL) {
            if (join_path(a->cert_buf, a->dev_certs, a->role, ".pem", e) != 0) {
                return WERR_INVALID;
            }
            a->cert = a->cert_buf;
        }
        if (a->key == NULL) {
            if (join_path(a->key_buf, a->dev_certs, a->role, "-key.pem", e) != 0) {
                return WERR_INVALID;
            }
            a->key = a->key_buf;
        }
    }
    if (a->ca == NULL || a->cert == NULL || a->key == NULL) {
        return werr_set(e, WERR_INVALID,
                        "need --ca, --cert and --key, or --dev-certs DIR --role R");
    }
    return 0;
}


/* Exactly one of --signature-hex and --private-key-file (what signs). */
static int one_signer(const struct cli_args *a, const char *what, struct werr *e)
{
    if ((a->signature_hex != NULL) == (a->private_key_file != NULL)) {
        return werr_set(e, WERR_INVALID,
                        "%s: give exactly one of --signature-hex and "
                        "--private-key-file", what);
    }
    return 0;
}

static int need_reason(const struct cli_args *a, const char *what, struct werr *e)
{
    if (a->reason == NULL || a->reason[0] == '\0') {
        return werr_set(e, WERR_INVALID, "%s: --reason is required", what);
    }
    return 0;
}

/* Validation of the access and rollout commands, after every flag. */
static int finish_ops(struct cli_args *a, struct werr *e)
{
    switch (a->cmd) {
    case CLI_CMD_ACCESS_POLICY_SET: {
        int rule = a->approvals || a->reviewer_roles || a->max_duration_ms ||
                   a->max_uses || a->pending_ttl_ms;
        if (rule && a->purpose == 0) {
            return werr_set(e, WERR_INVALID,
                            "access policy set: --purpose says which rule to change");
        }
        if (!rule && !a->has_lock_view_max_lag && !a->has_revlog_retention) {
            return werr_set(e, WERR_INVALID,
                            "access policy set: nothing to change (--purpose P with "
                            "--approvals, --reviewer-roles, --max-duration, "
                            "--max-uses or --pending-ttl; --lock-view-max-lag; "
                            "--revlog-retention)");
        }
        if (a->purpose != 0 && !rule) {
            return werr_set(e, WERR_INVALID,
                            "access policy set: --purpose without a value to change");
        }
        return 0;
    }
    case CLI_CMD_ACCESS_REQUEST:
        if ((a->n_devices > 0) == (a->n_selector > 0)) {
            return werr_set(e, WERR_INVALID,
                            "access request: give --device ID (repeatable) or "
                            "--selector k=v, not both");
        }
        if (a->n_selector > CLI_ACC_SELECTOR_MAX) {
            return werr_set(e, WERR_INVALID,
                            "access request: at most %d --selector labels",
                            CLI_ACC_SELECTOR_MAX);
        }
        if (a->purpose == 0) {
            return werr_set(e, WERR_INVALID, "access request: --purpose is required");
        }
        if (a->reason == NULL || a->reason[0] == '\0') {
            return werr_set(e, WERR_INVALID, "access request: --reason is required");
        }
        if (a->n_protocols == 0 && a->command_class == NULL) {
            return werr_set(e, WERR_INVALID,
                            "access request: give the scope: --protocol P "
                            "[--port N]... or --command-class C");
        }
        if (a->n_ports > 0 && a->n_protocols == 0) {
            return werr_set(e, WERR_INVALID,
                            "access request: --port needs a --protocol");
        }
        if (a->duration_ms == 0) {
            return werr_set(e, WERR_INVALID, "access request: --duration is required");
        }
        return 0;
    case CLI_CMD_ACCESS_CHECK:
        if (a->principal == NULL || a->n_devices != 1) {
            return werr_set(e, WERR_INVALID,
                            "access check: --principal NAME and one --device ID "
                            "are required");
        }
        if (a->command_class != NULL
                ? (a->n_protocols != 0 || a->n_ports != 0)
                : (a->n_protocols != 1 || a->n_ports != 1)) {
            return werr_set(e, WERR_INVALID,
                            "access check: give --protocol P --port N, or "
                            "--command-class C");
        }
        if (!a->has_revision) {
            return werr_set(e, WERR_INVALID,
                            "access check: --revision R (the gateway's revocation "
                            "view) is required");
        }
        return 0;
    case CLI_CMD_ACCESS_REVOKE:
        return need_reason(a, "access revoke", e);
    case CLI_CMD_ACCESS_GRANTS:
        if (a->n_devices > 1) {
            return werr_set(e, WERR_INVALID, "access grants: at most one --device");
        }
        return 0;
    case CLI_CMD_ACCESS_LOCK: {
        int n = (a->n_devices > 0) + (a->principal != NULL) + (a->gateway != NULL) +
                (a->n_selector > 0) + (a->all != 0);
        if (n != 1 || a->n_devices > 1) {
            return werr_set(e, WERR_INVALID,
                            "access lock: give exactly one target: --device ID, "
                            "--principal P, --gateway G, --selector k=v... or --all");
        }
        if (a->n_selector > CLI_ACC_SELECTOR_MAX) {
            return werr_set(e, WERR_INVALID, "access lock: at most %d --selector labels",
                            CLI_ACC_SELECTOR_MAX);
        }
        return need_reason(a, "access lock", e);
    }
    case CLI_CMD_ACCESS_WATCH:
        if (!a->has_from_revision) {
            return werr_set(e, WERR_INVALID,
                            "access watch: --from-revision R is required (0: from "
                            "the oldest kept event)");
        }
        return 0;
    case CLI_CMD_ROLLOUT_KEY_REGISTER:
        a->key_alg = CLI_KEY_ALG_ED25519; /* release keys are Ed25519 */
        if ((a->public_key_len > 0) == (a->public_key_file != NULL)) {
            return werr_set(e, WERR_INVALID,
                            "rollout key register: give exactly one of "
                            "--public-key-hex and --public-key-file");
        }
        if (a->public_key_len > 0 && a->public_key_len != 32) {
            return werr_set(e, WERR_INVALID,
                            "rollout key register: an Ed25519 public key is 32 "
                            "bytes, got %zu", a->public_key_len);
        }
        return 0;
    case CLI_CMD_ROLLOUT_KEY_REVOKE:
        return need_reason(a, "rollout key revoke", e);
    case CLI_CMD_ROLLOUT_RELEASE_CREATE:
        if (a->manifest_file == NULL || a->key_id == NULL) {
            return werr_set(e, WERR_INVALID,
                            "rollout release create: --manifest-file and --key-id "
                            "are required");
        }
        if (a->rollback_of != 0 && (a->reason == NULL || a->reason[0] == '\0')) {
            return werr_set(e, WERR_INVALID,
                            "rollout release create: --rollback-of needs --reason");
        }
        return one_signer(a, "rollout release create", e);
    case CLI_CMD_ROLLOUT_RELEASE_MANIFEST: {
        static struct ro_manifest m;
        if (!a->has_counter) {
            return werr_set(e, WERR_INVALID,
                            "rollout release manifest: --counter is required");
        }
        return cli_manifest_build(a->version, a->counter, a->artifact_sha256_hex,
                                  a->artifact_size, a->models, a->n_models, &m, e);
    }
    case CLI_CMD_ROLLOUT_CREATE: {
        if (a->release_id == 0 || a->n_stages == 0) {
            return werr_set(e, WERR_INVALID,
                            "rollout create: --release ID and at least one --stage "
                            "are required");
        }
        uint32_t prev = 0;
        for (size_t i = 0; i < a->n_stages; i++) {
            uint32_t p = a->stages[i].percent_bp ? a->stages[i].percent_bp : CLI_BP;
            if (p < prev) {
                return werr_set(e, WERR_INVALID,
                                "rollout create: stage %zu covers less than stage "
                                "%zu (shares are cumulative)", i, i - 1);
            }
            prev = p;
        }
        return 0;
    }
    case CLI_CMD_ROLLOUT_ABORT:
        if (need_reason(a, "rollout abort", e) != 0) {
            return WERR_INVALID;
        }
        if (a->rollback) {
            if (a->manifest_file == NULL || a->key_id == NULL) {
                return werr_set(e, WERR_INVALID,
                                "rollout abort --rollback: the rollback release "
                                "needs --manifest-file and --key-id");
            }
            return one_signer(a, "rollout abort --rollback", e);
        }
        if (a->manifest_file || a->key_id || a->signature_hex || a->private_key_file) {
            return werr_set(e, WERR_INVALID,
                            "rollout abort: --manifest-file, --key-id and the "
                            "signature go with --rollback");
        }
        return 0;
    case CLI_CMD_ROLLOUT_REPORT:
        if (!a->has_key_epoch || !a->has_counter || a->rollout_ref == 0 ||
            !a->has_release_counter || a->phase == 0) {
            return werr_set(e, WERR_INVALID,
                            "rollout report: --key-epoch, --counter, --rollout, "
                            "--release-counter and --phase are required");
        }
        return one_signer(a, "rollout report", e);
    default:
        return 0;
    }
}

static int finish_cmd(struct cli_args *a, struct werr *e)
{
    switch (a->cmd) {
    case CLI_CMD_CERTS_INIT_CA:
        if (a->out == NULL || a->out[0] == '\0') {
            return werr_set(e, WERR_INVALID, "certs init-ca: --out DIR is required");
        }
        return 0;
    case CLI_CMD_CERTS_ISSUE:
        if (a->ca_dir == NULL || a->role == NULL || a->name == NULL ||
            a->out == NULL || a->ca_dir[0] == '\0' || a->out[0] == '\0') {
            return werr_set(e, WERR_INVALID,
                            "certs issue: --ca-dir, --role, --name and --out are "
                            "required");
        }
        return 0;
    case CLI_CMD_TOP:
        if (a->once && a->iterations > 1) {
            return werr_set(e, WERR_INVALID, "top: --once and --iterations N conflict");
        }
        if (a->once) {
            a->iterations = 1;
        }
        if (a->interval_ms == 0) {
            a->interval_ms = CLI_TOP_INTERVAL_DEFAULT_MS;
        }
        if (a->cluster_json != NULL && a->n_endpoints > 0) {
            return werr_set(e, WERR_INVALID,
                            "top: give --endpoint or --cluster-json, not both");
        }
        return 0;
    case CLI_CMD_DEVICE_ENROLL:
        if (a->device_id == NULL || a->device_id[0] == '\0') {
            return werr_set(e, WERR_INVALID, "device enroll: --id is required");
        }
        if (a->key_alg == CLI_KEY_ALG_NONE) {
            return werr_set(e, WERR_INVALID, "device enroll: --key-alg is required");
        }
        if ((a->public_key_len > 0) == (a->public_key_file != NULL)) {
            return werr_set(e, WERR_INVALID,
                            "device enroll: give exactly one of "
                            "--public-key-hex and --public-key-file");
        }
        if (a->key_alg == CLI_KEY_ALG_ED25519 && a->public_key_len > 0 &&
            a->public_key_len != 32) {
            return werr_set(e, WERR_INVALID,
                            "device enroll: an ed25519 public key is 32 bytes, "
                            "got %zu", a->public_key_len);
        }
        return 0;
    case CLI_CMD_DEVICE_REENROLL:
        if (a->key_alg == CLI_KEY_ALG_NONE) {
            return werr_set(e, WERR_INVALID, "device reenroll: --key-alg is required");
        }
        if ((a->public_key_len > 0) == (a->public_key_file != NULL)) {
            return werr_set(e, WERR_INVALID,
                            "device reenroll: give exactly one of "
                            "--public-key-hex and --public-key-file");
        }
        return 0;
    case CLI_CMD_DEVICE_ROTATE_KEY:
        if (a->private_key_file == NULL) {
            return werr_set(e, WERR_INVALID,
                            "device rotate-key: --private-key-file is required "
                            "(the new key signs the proof of possession)");
        }
        if (a->current_key_file == NULL) {
            return werr_set(e, WERR_INVALID,
                            "device rotate-key: --current-key-file is required "
                            "(the device's current key consents to the rotation)");
        }
        if (a->public_key_len > 0 && a->public_key_file != NULL) {
            return werr_set(e, WERR_INVALID,
                            "device rotate-key: at most one of --public-key-hex "
                            "and --public-key-file");
        }
        if (a->public_key_file != NULL && a->key_alg == CLI_KEY_ALG_NONE) {
            return werr_set(e, WERR_INVALID,
                            "device rotate-key: --public-key-file needs --key-alg");
        }
        return 0;
    case CLI_CMD_TELEMETRY_SUBMIT:
        if (!a->has_key_epoch || !a->has_counter) {
            return werr_set(e, WERR_INVALID,
                            "telemetry submit: --key-epoch and --counter are "
                            "required");
        }
        if ((a->payload_hex != NULL) == (a->payload_file != NULL)) {
            return werr_set(e, WERR_INVALID,
                            "telemetry submit: give exactly one of --payload-hex "
                            "and --payload-file");
        }
        if ((a->private_key_file != NULL) == (a->signature_hex != NULL)) {
            return werr_set(e, WERR_INVALID,
                            "telemetry submit: give exactly one of "
                            "--private-key-file and --signature-hex");
        }
        return 0;
    case CLI_CMD_CONTROL_ISSUE:
        if ((a->payload_hex != NULL) == (a->payload_file != NULL)) {
            return werr_set(e, WERR_INVALID,
                            "control issue: give exactly one of --payload-hex "
                            "and --payload-file");
        }
        return 0;
    case CLI_CMD_CONTROL_KEY_ROTATE:
        if (a->key_id == NULL || a->key_id[0] == '\0') {
            return werr_set(e, WERR_INVALID, "control key rotate: --key-id is required");
        }
        return 0;
    case CLI_CMD_AUDIT_READ:
    case CLI_CMD_AUDIT_TAIL:
    case CLI_CMD_AUDIT_EXPORT:
        if (a->has_from && a->from_seq == 0) {
            return werr_set(e, WERR_INVALID, "--from: seqs start at 1");
        }
        if (a->has_to && a->to_seq < (a->has_from ? a->from_seq : 1)) {
            return werr_set(e, WERR_INVALID, "--to is before --from");
        }
        return 0;
    case CLI_CMD_VERIFY_COMMAND:
        if ((a->envelope_hex != NULL) == (a->envelope_file != NULL)) {
            return werr_set(e, WERR_INVALID,
                            "verify-command: give exactly one of --envelope-hex "
                            "and --envelope-file");
        }
        if ((a->pubkey_hex != NULL) == (a->pubkey_file != NULL)) {
            return werr_set(e, WERR_INVALID,
                            "verify-command: give exactly one of --pubkey-hex "
                            "and --pubkey-file");
        }
        if (a->signature_hex == NULL || a->expect_device == NULL ||
            !a->has_key_epoch || !a->has_last_seq) {
            return werr_set(e, WERR_INVALID,
                            "verify-command: --signature-hex, --device, "
                            "--key-epoch and --last-seq are required");
        }
        return 0;
    case CLI_CMD_DEVICE_LIST:
        if (a->n_labels > 1) {
            return werr_set(e, WERR_INVALID,
                            "device list: at most one --label filter");
        }
        return 0;
    default:
        return finish_ops(a, e);
    }
}

static int parse_id(const char *what, const char *s, uint32_t *out,
                    struct werr *e)
{
    if (cli_member_id_parse(s, out) != 0) {
        return werr_set(e, WERR_INVALID,
                        "%s: member ID \"%s\": want 1..4294967295", what, s);
    }
    return 0;
}

/* cluster status | add ID PEER CLIENT | remove ID | transfer [ID] */
static int parse_cluster(struct cli_args *a, const char *const *pos,
                         size_t npos, size_t *used, struct werr *e)
{
    if (npos < 2) {
        return werr_set(e, WERR_INVALID,
                        "cluster: want status, add, remove or transfer");
    }
    const char *sub = pos[1];
    if (strcmp(sub, "status") == 0) {
        a->cmd = CLI_CMD_CLUSTER_STATUS;
        *used = 2;
    } else if (strcmp(sub, "add") == 0) {
        a->cmd = CLI_CMD_CLUSTER_ADD;
        if (npos < 5) {
            return werr_set(e, WERR_INVALID,
                            "cluster add: want ID PEER_ADDR CLIENT_ADDR");
        }
        if (parse_id("cluster add", pos[2], &a->member_id, e) != 0) {
            return WERR_INVALID;
        }
        if (cli_endpoint_check(pos[3]) != 0) {
            return werr_set(e, WERR_INVALID,
                            "cluster add: PEER_ADDR \"%s\": want HOST:PORT",
                            pos[3]);
        }
        if (cli_endpoint_check(pos[4]) != 0) {
            return werr_set(e, WERR_INVALID,
                            "cluster add: CLIENT_ADDR \"%s\": want HOST:PORT",
                            pos[4]);
        }
        a->peer_address = pos[3];
        a->client_address = pos[4];
        *used = 5;
    } else if (strcmp(sub, "remove") == 0) {
        a->cmd = CLI_CMD_CLUSTER_REMOVE;
        if (npos < 3) {
            return werr_set(e, WERR_INVALID, "cluster remove: missing member ID");
        }
        if (parse_id("cluster remove", pos[2], &a->member_id, e) != 0) {
            return WERR_INVALID;
        }
        *used = 3;
    } else if (strcmp(sub, "transfer") == 0) {
        a->cmd = CLI_CMD_CLUSTER_TRANSFER;
        *used = 2;
        if (npos >= 3) {
            if (parse_id("cluster transfer", pos[2], &a->member_id, e) != 0) {
                return WERR_INVALID;
            }
            *used = 3;
        }
    } else {
        return werr_set(e, WERR_INVALID,
                        "cluster: unknown subcommand \"%s\" (want status, add, "
                        "remove or transfer)", sub);
    }
    return 0;
}

/* A required non-empty positional, or a usage error naming it. */
static int need_pos(const char *const *pos, size_t npos, size_t i,
                    const char *what, const char *name, const char **out,
                    struct werr *e)
{
    if (npos <= i || pos[i][0] == '\0') {
        return werr_set(e, WERR_INVALID, "%s: missing %s", what, name);
    }
    *out = pos[i];
    return 0;
}

/* device enroll | get ID | list | state ID STATE | reenroll ID | rebind ID GW
 * | rotate-nonce ID | rotate-key ID | enroll-batch FILE */
static int parse_device(struct cli_args *a, const char *const *pos,
                        size_t npos, size_t *used, struct werr *e)
{
    static const char want[] =
        "want enroll, get, list, state, reenroll, rebind, labels, "
        "rotate-nonce, rotate-key or enroll-batch";
    if (npos < 2) {
        return werr_set(e, WERR_INVALID, "device: %s", want);
    }
    const char *sub = pos[1];
    if (strcmp(sub, "enroll") == 0) {
        a->cmd = CLI_CMD_DEVICE_ENROLL;
        *used = 2;
        return 0;
    }
    if (strcmp(sub, "list") == 0) {
        a->cmd = CLI_CMD_DEVICE_LIST;
        *used = 2;
        return 0;
    }
    if (strcmp(sub, "enroll-batch") == 0) {
        a->cmd = CLI_CMD_DEVICE_ENROLL_BATCH;
        *used = 3;
        return need_pos(pos, npos, 2, "device enroll-batch", "FILE", &a->file, e);
    }
    static const struct {
        const char *name;
        enum cli_cmd cmd;
    } by_id[] = {
        {"get", CLI_CMD_DEVICE_GET},
        {"state", CLI_CMD_DEVICE_STATE},
        {"reenroll", CLI_CMD_DEVICE_REENROLL},
        {"rebind", CLI_CMD_DEVICE_REBIND},
        {"labels", CLI_CMD_DEVICE_LABELS},
        {"rotate-nonce", CLI_CMD_DEVICE_ROTATE_NONCE},
        {"rotate-key", CLI_CMD_DEVICE_ROTATE_KEY},
    };
    size_t i = 0;
    for (; i < sizeof by_id / sizeof by_id[0]; i++) {
        if (strcmp(sub, by_id[i].name) == 0) {
            break;
        }
    }
    if (i == sizeof by_id / sizeof by_id[0]) {
        return werr_set(e, WERR_INVALID, "device: unknown subcommand \"%s\" (%s)",
                        sub, want);
    }
    a->cmd = by_id[i].cmd;
    char what[32];
    snprintf(what, sizeof what, "device %s", sub);
    if (need_pos(pos, npos, 2, what, "device ID", &a->device_id, e) != 0) {
        return WERR_INVALID;
    }
    *used = 3;
    if (a->cmd == CLI_CMD_DEVICE_STATE) {
        const char *st = NULL;
        if (need_pos(pos, npos, 3, what, "STATE", &st, e) != 0) {
            return WERR_INVALID;
        }
        int v = cli_state_parse(st);
        if (v < 0) {
            return werr_set(e, WERR_INVALID,
                            "device state: STATE \"%s\": want provisioned, "
                            "active, quarantined or revoked", st);
        }
        a->state = v;
        *used = 4;
    } else if (a->cmd == CLI_CMD_DEVICE_REBIND) {
        if (need_pos(pos, npos, 3, what, "GATEWAY", &a->gateway, e) != 0) {
            return WERR_INVALID;
        }
        *used = 4;
    } else if (a->cmd == CLI_CMD_DEVICE_LABELS) {
        /* Every remaining positional is a k=v label: the whole new set. */
        for (size_t k = 3; k < npos; k++) {
            if (a->n_labels == CLI_LABELS_MAX) {
                return werr_set(e, WERR_INVALID,
                                "device labels: more than %d labels",
                                CLI_LABELS_MAX);
            }
            if (cli_label_parse(pos[k], &a->labels[a->n_labels], e) != 0) {
                e->code = WERR_INVALID;
                return WERR_INVALID;
            }
            a->n_labels++;
        }
        *used = npos;
    }
    return 0;
}

/* audit head | read | tail | export FILE | verify FILE */
static int parse_audit(struct cli_args *a, const char *const *pos, size_t npos,
                       size_t *used, struct werr *e)
{
    const char *sub = npos >= 2 ? pos[1] : "";
    *used = 2;
    if (strcmp(sub, "head") == 0) {
        a->cmd = CLI_CMD_AUDIT_HEAD;
    } else if (strcmp(sub, "read") == 0) {
        a->cmd = CLI_CMD_AUDIT_READ;
    } else if (strcmp(sub, "tail") == 0) {
        a->cmd = CLI_CMD_AUDIT_TAIL;
    } else if (strcmp(sub, "export") == 0) {
        a->cmd = CLI_CMD_AUDIT_EXPORT;
        *used = 3;
        return need_pos(pos, npos, 2, "audit export", "FILE", &a->file, e);
    } else if (strcmp(sub, "verify") == 0) {
        a->cmd = CLI_CMD_AUDIT_VERIFY;
        *used = 3;
        return need_pos(pos, npos, 2, "audit verify", "FILE", &a->file, e);
    } else {
        return werr_set(e, WERR_INVALID,
                        "audit: want head, read, tail, export or verify");
    }
    return 0;
}

/* control issue DEVICE | key [get] | key rotate */
static int parse_control(struct cli_args *a, const char *const *pos,
                         size_t npos, size_t *used, struct werr *e)
{
    const char *sub = npos >= 2 ? pos[1] : "";
    if (strcmp(sub, "issue") == 0) {
        a->cmd = CLI_CMD_CONTROL_ISSUE;
        *used = 3;
        return need_pos(pos, npos, 2, "control issue", "DEVICE", &a->device_id, e);
    }
    if (strcmp(sub, "key") == 0) {
        const char *op = npos >= 3 ? pos[2] : "get";
        *used = npos >= 3 ? 3 : 2;
        if (strcmp(op, "get") == 0) {
            a->cmd = CLI_CMD_CONTROL_KEY_GET;
            return 0;
        }
        if (strcmp(op, "rotate") == 0) {
            a->cmd = CLI_CMD_CONTROL_KEY_ROTATE;
            return 0;
        }
        return werr_set(e, WERR_INVALID, "control key: want get or rotate");
    }
    return werr_set(e, WERR_INVALID, "control: want issue or key");
}


/* access policy get|set | request | approve REQ | deny REQ | check | revoke
 * GRANT | grants | lock | unlock LOCK | watch */
static int parse_access(struct cli_args *a, const char *const *pos, size_t npos,
                        size_t *used, struct werr *e)
{
    static const char want[] =
        "want policy, request, approve, deny, check, revoke, grants, lock, "
        "unlock or watch";
    const char *sub = npos >= 2 ? pos[1] : "";
    *used = 2;
    if (strcmp(sub, "policy") == 0) {
        const char *op = npos >= 3 ? pos[2] : "";
        *used = 3;
        if (strcmp(op, "get") == 0) {
            a->cmd = CLI_CMD_ACCESS_POLICY_GET;
        } else if (strcmp(op, "set") == 0) {
            a->cmd = CLI_CMD_ACCESS_POLICY_SET;
        } else {
            return werr_set(e, WERR_INVALID, "access policy: want get or set");
        }
        return 0;
    }
    static const struct {
        const char *name;
        enum cli_cmd cmd;
        const char *id; /* positional id, or NULL */
    } subs[] = {
        {"request", CLI_CMD_ACCESS_REQUEST, NULL},
        {"approve", CLI_CMD_ACCESS_APPROVE, "request ID"},
        {"deny", CLI_CMD_ACCESS_DENY, "request ID"},
        {"check", CLI_CMD_ACCESS_CHECK, NULL},
        {"revoke", CLI_CMD_ACCESS_REVOKE, "grant ID"},
        {"grants", CLI_CMD_ACCESS_GRANTS, NULL},
        {"lock", CLI_CMD_ACCESS_LOCK, NULL},
        {"unlock", CLI_CMD_ACCESS_UNLOCK, "lock ID"},
        {"watch", CLI_CMD_ACCESS_WATCH, NULL},
    };
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        if (strcmp(sub, subs[i].name) == 0) {
            a->cmd = subs[i].cmd;
            if (subs[i].id == NULL) {
                return 0;
            }
            char what[32];
            snprintf(what, sizeof what, "access %s", sub);
            *used = 3;
            return need_pos(pos, npos, 2, what, subs[i].id, &a->target, e);
        }
    }
    if (sub[0] == '\0') {
        return werr_set(e, WERR_INVALID, "access: %s", want);
    }
    return werr_set(e, WERR_INVALID, "access: unknown subcommand \"%s\" (%s)", sub,
                    want);
}

/* A rollout or release id: decimal >= 1 (ids are log indexes). */
static int parse_object_id(const char *what, const char *const *pos, size_t npos,
                           size_t i, uint64_t *out, struct werr *e)
{
    const char *s = NULL;
    if (need_pos(pos, npos, i, what, "ID", &s, e) != 0) {
        return WERR_INVALID;
    }
    if (cli_u64_parse(s, out) != 0 || *out == 0) {
        return werr_set(e, WERR_INVALID, "%s: ID \"%s\": want a number >= 1", what,
                        s);
    }
    return 0;
}

/* rollout key register|revoke ID | release create|manifest|get ID | create
 * | start|pause|resume|advance|abort|status ID | desired|report DEVICE */
static int parse_rollout(struct cli_args *a, const char *const *pos, size_t npos,
                         size_t *used, struct werr *e)
{
    static const char want[] =
        "want key, release, create, start, pause, resume, advance, abort, "
        "status, desired or report";
    const char *sub = npos >= 2 ? pos[1] : "";
    const char *op = npos >= 3 ? pos[2] : "";
    *used = 2;
    if (strcmp(sub, "key") == 0) {
        if (strcmp(op, "register") == 0) {
            a->cmd = CLI_CMD_ROLLOUT_KEY_REGISTER;
        } else if (strcmp(op, "revoke") == 0) {
            a->cmd = CLI_CMD_ROLLOUT_KEY_REVOKE;
        } else {
            return werr_set(e, WERR_INVALID, "rollout key: want register or revoke");
        }
        *used = 4;
        return need_pos(pos, npos, 3, "rollout key", "key ID", &a->key_id, e);
    }
    if (strcmp(sub, "release") == 0) {
        *used = 3;
        if (strcmp(op, "create") == 0) {
            a->cmd = CLI_CMD_ROLLOUT_RELEASE_CREATE;
            return 0;
        }
        if (strcmp(op, "manifest") == 0) {
            a->cmd = CLI_CMD_ROLLOUT_RELEASE_MANIFEST;
            return 0;
        }
        if (strcmp(op, "get") == 0) {
            a->cmd = CLI_CMD_ROLLOUT_RELEASE_GET;
            *used = 4;
            return parse_object_id("rollout release get", pos, npos, 3,
                                   &a->object_id, e);
        }
        return werr_set(e, WERR_INVALID,
                        "rollout release: want create, manifest or get");
    }
    if (strcmp(sub, "create") == 0) {
        a->cmd = CLI_CMD_ROLLOUT_CREATE;
        return 0;
    }
    static const struct {
        const char *name;
        enum cli_cmd cmd;
    } by_id[] = {
        {"start", CLI_CMD_ROLLOUT_START},   {"pause", CLI_CMD_ROLLOUT_PAUSE},
        {"resume", CLI_CMD_ROLLOUT_RESUME}, {"advance", CLI_CMD_ROLLOUT_ADVANCE},
        {"abort", CLI_CMD_ROLLOUT_ABORT},   {"status", CLI_CMD_ROLLOUT_STATUS},
    };
    char what[32];
    snprintf(what, sizeof what, "rollout %s", sub);
    for (size_t i = 0; i < sizeof by_id / sizeof by_id[0]; i++) {
        if (strcmp(sub, by_id[i].name) == 0) {
            a->cmd = by_id[i].cmd;
            *used = 3;
            return parse_object_id(what, pos, npos, 2, &a->object_id, e);
        }
    }
    if (strcmp(sub, "desired") == 0 || strcmp(sub, "report") == 0) {
        a->cmd = sub[0] == 'd' ? CLI_CMD_ROLLOUT_DESIRED : CLI_CMD_ROLLOUT_REPORT;
        *used = 3;
        return need_pos(pos, npos, 2, what, "DEVICE", &a->device_id, e);
    }
    if (sub[0] == '\0') {
        return werr_set(e, WERR_INVALID, "rollout: %s", want);
    }
    return werr_set(e, WERR_INVALID, "rollout: unknown subcommand \"%s\" (%s)", sub,
                    want);
}

int cli_args_parse(int argc, char **argv, struct cli_args *a, struct werr *e)
{
    memset(a, 0, sizeof *a);
    a->timeout_ms = CLI_TIMEOUT_DEFAULT_MS;
    a->service = "";
    werr_clear(e);

    if (argc > ARGV_MAX) {
        return werr_set(e, WERR_INVALID, "more than %d arguments", ARGV_MAX);
    }
    const char *pos[ARGV_MAX];
    size_t npos = 0;
    struct seen seen[ARGV_MAX];
    size_t nseen = 0;
    int only_pos = 0;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (only_pos || arg[0] != '-' || arg[1] == '\0') {
            pos[npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(arg, "-h") == 0) {
            a->cmd = CLI_CMD_HELP;
            return 0;
        }
        if (strcmp(arg, "-v") == 0) {
            a->verbose = 1;
            continue;
        }
        if (arg[1] != '-') {
            return werr_set(e, WERR_INVALID, "unknown flag \"%s\"", arg);
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct flag *f = find_flag(name, nlen);
        if (f == NULL) {
            return werr_set(e, WERR_INVALID, "unknown flag \"%s\"", arg);
        }
        const char *value = NULL;
        if (f->takes_value) {
            if (eq != NULL) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                return werr_set(e, WERR_INVALID, "--%s needs a value", f->name);
            }
        } else if (eq != NULL) {
            return werr_set(e, WERR_INVALID, "--%s takes no value", f->name);
        }
        if (f->id == F_HELP) {
            a->cmd = CLI_CMD_HELP;
            return 0;
        }
        seen[nseen].flag = f;
        seen[nseen].value = value;
        nseen++;
    }

    /* The command, from the positionals. */
    size_t used = 0;
    if (npos == 0) {
        return werr_set(e, WERR_INVALID, "no command given (try --help)");
    }
    if (strcmp(pos[0], "help") == 0) {
        a->cmd = CLI_CMD_HELP;
        return 0;
    } else if (strcmp(pos[0], "version") == 0) {
        a->cmd = CLI_CMD_VERSION;
        return 0;
    } else if (strcmp(pos[0], "health") == 0) {
        a->cmd = CLI_CMD_HEALTH;
        used = 1;
    } else if (strcmp(pos[0], "device") == 0) {
        if (parse_device(a, pos, npos, &used, e) != 0) {
            return WERR_INVALID;
        }
    } else if (strcmp(pos[0], "audit") == 0) {
        if (parse_audit(a, pos, npos, &used, e) != 0) {
            return WERR_INVALID;
        }
    } else if (strcmp(pos[0], "control") == 0) {
        if (parse_control(a, pos, npos, &used, e) != 0) {
            return WERR_INVALID;
        }
    } else if (strcmp(pos[0], "telemetry") == 0) {
        if (npos < 2 || strcmp(pos[1], "submit") != 0) {
            return werr_set(e, WERR_INVALID, "telemetry: want submit DEVICE");
        }
        if (npos < 3 || pos[2][0] == '\0') {
            return werr_set(e, WERR_INVALID, "telemetry submit: missing DEVICE");
        }
        a->cmd = CLI_CMD_TELEMETRY_SUBMIT;
        a->device_id = pos[2];
        used = 3;
    } else if (strcmp(pos[0], "verify-command") == 0) {
        a->cmd = CLI_CMD_VERIFY_COMMAND;
        used = 1;
    } else if (strcmp(pos[0], "cluster") == 0) {
        if (parse_cluster(a, pos, npos, &used, e) != 0) {
            return WERR_INVALID;
        }
    } else if (strcmp(pos[0], "access") == 0) {
        if (parse_access(a, pos, npos, &used, e) != 0) {
            return WERR_INVALID;
        }
    } else if (strcmp(pos[0], "rollout") == 0) {
        if (parse_rollout(a, pos, npos, &used, e) != 0) {
            return WERR_INVALID;
        }
    } else if (strcmp(pos[0], "certs") == 0) {
        const char *sub = npos > 1 ? pos[1] : "";
        if (strcmp(sub, "init-ca") == 0) {
            a->cmd = CLI_CMD_CERTS_INIT_CA;
        } else if (strcmp(sub, "issue") == 0) {
            a->cmd = CLI_CMD_CERTS_ISSUE;
        } else {
            return werr_set(e, WERR_INVALID, "certs: want init-ca or issue");
        }
        used = 2;
    } else if (strcmp(pos[0], "top") == 0) {
        a->cmd = CLI_CMD_TOP;
        used = 1;
    } else {
        return werr_set(e, WERR_INVALID, "unknown command \"%s\" (try --help)",
                        pos[0]);
    }
    if (npos > used) {
        return werr_set(e, WERR_INVALID, "unexpected argument \"%s\"", pos[used]);
    }

    for (size_t i = 0; i < nseen; i++) {
        const struct flag *f = seen[i].flag;
        if (f->cmds != 0 && (f->cmds & M(a->cmd)) == 0) {
            return werr_set(e, WERR_INVALID,
                            "--%s does not apply to this command", f->name);
        }
        if (apply_flag(a, f, seen[i].value, e) != 0) {
            return WERR_INVALID;
        }
    }
    /* top --cluster-json takes its endpoints from the file. */
    if (a->n_endpoints == 0 && !(a->cmd == CLI_CMD_TOP && a->cluster_json != NULL)) {
        if (add_endpoints(a, CLI_ENDPOINT_DEFAULT, e) != 0) {
            return WERR_INVALID;
        }
    }
    if (finish_cmd(a, e) != 0 ||
        (!cli_cmd_offline(a->cmd) && finish_tls(a, e) != 0)) {
        return WERR_INVALID;
    }
    return 0;
}
