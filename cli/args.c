#include "args.h"

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
    "  device rotate-nonce ID             issue a key-rotation nonce\n"
    "  device rotate-key ID --private-key-file PEM [--key-alg A]\n"
    "        [--public-key-hex HEX | --public-key-file PEM] [--idempotency-key K]\n"
    "                                     nonce, proof of possession, rotate\n"
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
    F_PAYLOAD_FILE, F_KEY_ID, F_REASON, F_PRIV_FILE, F_BATCH_SIZE,
};

int cli_cmd_offline(enum cli_cmd cmd)
{
    return cmd == CLI_CMD_AUDIT_VERIFY || cmd == CLI_CMD_VERIFY_COMMAND;
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
     M_CISSUE)
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
    {"public-key-hex", F_PK_HEX, 1, M_ENROLL | M_REENROLL | M_ROTKEY},
    {"public-key-file", F_PK_FILE, 1, M_ENROLL | M_REENROLL | M_ROTKEY},
    {"attestation-digest", F_ATTEST, 1, M_ENROLL | M_REENROLL},
    {"model", F_MODEL, 1, M_ENROLL},
    {"firmware", F_FIRMWARE, 1, M_ENROLL | M_LIST},
    {"gateway", F_GATEWAY, 1, M_ENROLL | M_LIST},
    {"label", F_LABEL, 1, M_ENROLL | M_LIST},
    {"idempotency-key", F_IDEM, 1, M_KEYED},
    {"serializable", F_SERIALIZABLE, 0, M_GET | M_LIST},
    {"state", F_STATE, 1, M_LIST},
    {"page-size", F_PAGE_SIZE, 1, M_LIST},
    {"page-token", F_PAGE_TOKEN, 1, M_LIST},
    {"all", F_ALL, 0, M_LIST},
    {"spare-only", F_SPARE_ONLY, 0, M_CADD},
    {"verbose", F_VERBOSE, 0, 0},
    {"from", F_FROM, 1,
     M(CLI_CMD_AUDIT_READ) | M(CLI_CMD_AUDIT_TAIL) | M(CLI_CMD_AUDIT_EXPORT)},
    {"to", F_TO, 1, M(CLI_CMD_AUDIT_EXPORT)},
    {"max", F_MAX, 1, M(CLI_CMD_AUDIT_READ) | M(CLI_CMD_AUDIT_TAIL)},
    {"envelope-hex", F_ENV_HEX, 1, M_VCMD},
    {"envelope-file", F_ENV_FILE, 1, M_VCMD},
    {"signature-hex", F_SIG_HEX, 1, M_VCMD | M_TLM},
    {"pubkey-hex", F_CPK_HEX, 1, M_VCMD},
    {"pubkey-file", F_CPK_FILE, 1, M_VCMD},
    {"device", F_DEVICE, 1, M_VCMD},
    {"key-epoch", F_KEY_EPOCH, 1, M_VCMD | M_TLM},
    {"last-seq", F_LAST_SEQ, 1, M_VCMD},
    {"counter", F_COUNTER, 1, M_TLM},
    {"payload-hex", F_PAYLOAD_HEX, 1, M_TLM | M_CISSUE},
    {"payload-file", F_PAYLOAD_FILE, 1, M_TLM | M_CISSUE},
    {"key-id", F_KEY_ID, 1,
     M(CLI_CMD_CONTROL_KEY_GET) | M(CLI_CMD_CONTROL_KEY_ROTATE)},
    {"reason", F_REASON, 1, M(CLI_CMD_DEVICE_STATE)},
    {"private-key-file", F_PRIV_FILE, 1, M_ROTKEY | M_TLM},
    {"batch-size", F_BATCH_SIZE, 1, M(CLI_CMD_DEVICE_ENROLL_BATCH)},
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
        return 0;
    case F_PRIV_FILE:
        a->private_key_file = v;
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
    }
    return werr_set(e, WERR_INTERNAL, "unhandled flag");
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

static int finish_cmd(struct cli_args *a, struct werr *e)
{
    switch (a->cmd) {
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
        return 0;
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
        "want enroll, get, list, state, reenroll, rebind, rotate-nonce, "
        "rotate-key or enroll-batch";
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
    if (a->n_endpoints == 0) {
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
