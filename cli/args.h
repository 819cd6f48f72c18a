/* args.h - wardenctl's command line: flags, commands and their validation.
 *
 * Pure: no I/O, no OpenSSL. cli_args_parse() turns argv into a struct
 * cli_args, or says precisely what is wrong (the caller prints it and exits
 * CLI_EXIT_USAGE). Strings in struct cli_args either point into argv
 * (borrowed: valid as long as argv is) or live in the struct's own bounded
 * buffers. Nothing is heap-allocated, so there is nothing to free.
 *
 * Also here: the small pure parsers the commands share (hex, labels, enum
 * names) and the mapping from a gRPC status to the process exit code. */
#ifndef WARDEN_CLI_ARGS_H
#define WARDEN_CLI_ARGS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"

/* ---- exit codes (docs/cli.md) -------------------------------------------
 * The exit code is the gRPC status code (0..16) of the call that decided the
 * outcome; a status outside that range exits UNKNOWN (2). Command-line
 * mistakes exit EX_USAGE from <sysexits.h>, which no gRPC status uses. */
#define CLI_EXIT_USAGE 64
/* Exit code for a gRPC status (0 OK, 5 NOT_FOUND, 14 UNAVAILABLE, ...). */
int cli_exit_code(int grpc_status);

/* ---- limits ---------------------------------------------------------------
 * Each one bounds memory or work driven by user input or a server reply. */
/* Endpoints tried in order for a connection (repeat --endpoint or give a
 * comma-separated list). Small: this is a failover list, not a fleet. */
#define CLI_ENDPOINTS_MAX 8
/* Longest "HOST:PORT" accepted. */
#define CLI_ENDPOINT_LEN_MAX 255
/* --label flags per command; the server bounds labels per device too, this
 * only keeps our fixed-size request arrays bounded. */
#define CLI_LABELS_MAX 32
/* Label key and value lengths (bytes), before the server's own checks. */
#define CLI_LABEL_KEY_MAX 128
#define CLI_LABEL_VALUE_MAX 256
/* Public keys: Ed25519 is 32 bytes, a P-256 DER SPKI 91, a SEC1 point 65.
 * 512 leaves room without letting a typo send megabytes. */
#define CLI_PUBKEY_MAX 512
/* SHA-256: the attestation digest is exactly this long. */
#define CLI_DIGEST_LEN 32
/* Path buffers for the files derived from --dev-certs DIR --role R. */
#define CLI_PATH_MAX 4096
/* --timeout upper bound: one day. Longer is surely a typo, and keeps the
 * millisecond arithmetic far from overflow. */
#define CLI_TIMEOUT_MAX_MS (24ull * 3600 * 1000)
#define CLI_TIMEOUT_DEFAULT_MS 10000ull
#define CLI_ENDPOINT_DEFAULT "127.0.0.1:7443"
/* Longest hex-decoded flag value (--payload-hex, --envelope-hex): the
 * telemetry payload bound (64 KiB); control payloads are 16 KiB. */
#define CLI_HEX_ARG_MAX ((size_t)64 << 10)
/* --signature-hex: Ed25519 64 bytes, ECDSA P-256 DER at most 72. */
#define CLI_SIG_HEX_MAX 80
/* ListDevices page size cap, as documented in inventory.proto. */
#define CLI_PAGE_SIZE_MAX 1000u

enum cli_cmd {
    CLI_CMD_NONE = 0,
    CLI_CMD_HELP,
    CLI_CMD_VERSION,
    CLI_CMD_HEALTH,
    CLI_CMD_DEVICE_ENROLL,
    CLI_CMD_DEVICE_GET,
    CLI_CMD_DEVICE_LIST,
    CLI_CMD_CLUSTER_STATUS,
    CLI_CMD_CLUSTER_ADD,
    CLI_CMD_CLUSTER_REMOVE,
    CLI_CMD_CLUSTER_TRANSFER,
    /* issue 4 */
    CLI_CMD_AUDIT_HEAD,
    CLI_CMD_AUDIT_READ,
    CLI_CMD_AUDIT_TAIL,
    CLI_CMD_AUDIT_EXPORT,
    CLI_CMD_AUDIT_VERIFY,        /* offline */
    CLI_CMD_VERIFY_COMMAND,      /* offline */
    CLI_CMD_CONTROL_ISSUE,
    CLI_CMD_CONTROL_KEY_GET,
    CLI_CMD_CONTROL_KEY_ROTATE,
    CLI_CMD_DEVICE_STATE,
    CLI_CMD_DEVICE_REENROLL,
    CLI_CMD_DEVICE_REBIND,
    CLI_CMD_DEVICE_ROTATE_NONCE,
    CLI_CMD_DEVICE_ROTATE_KEY,
    CLI_CMD_DEVICE_ENROLL_BATCH,
    CLI_CMD_TELEMETRY_SUBMIT,
    /* issue 5: access (docs/access.md) */
    CLI_CMD_ACCESS_POLICY_GET,
    CLI_CMD_ACCESS_POLICY_SET,
    CLI_CMD_ACCESS_REQUEST,
    CLI_CMD_ACCESS_APPROVE,
    CLI_CMD_ACCESS_DENY,
    CLI_CMD_ACCESS_CHECK,
    CLI_CMD_ACCESS_REVOKE,
    CLI_CMD_ACCESS_GRANTS,
    CLI_CMD_ACCESS_LOCK,
    CLI_CMD_ACCESS_UNLOCK,
    CLI_CMD_ACCESS_WATCH,
    /* issue 6: rollouts (docs/rollouts.md) */
    CLI_CMD_ROLLOUT_KEY_REGISTER,
    CLI_CMD_ROLLOUT_KEY_REVOKE,
    CLI_CMD_ROLLOUT_RELEASE_CREATE,
    CLI_CMD_ROLLOUT_RELEASE_MANIFEST, /* offline */
    CLI_CMD_ROLLOUT_RELEASE_GET,
    CLI_CMD_ROLLOUT_CREATE,
    CLI_CMD_ROLLOUT_START,
    CLI_CMD_ROLLOUT_PAUSE,
    CLI_CMD_ROLLOUT_RESUME,
    CLI_CMD_ROLLOUT_ADVANCE,
    CLI_CMD_ROLLOUT_ABORT,
    CLI_CMD_ROLLOUT_STATUS,
    CLI_CMD_ROLLOUT_DESIRED,
    CLI_CMD_ROLLOUT_REPORT,
    /* issue 9: operations (docs/deployment.md) */
    CLI_CMD_CERTS_INIT_CA,       /* offline */
    CLI_CMD_CERTS_ISSUE,         /* offline */
    CLI_CMD_TOP,
    CLI_CMD_DEVICE_LABELS,       /* issue 7: UpdateDeviceLabels */
    CLI_CMD_COUNT_
};

/* Commands that never talk to a server (no TLS files needed); they exit
 * with their own documented codes, not a gRPC status. */
int cli_cmd_offline(enum cli_cmd cmd);

/* EnrollDevices takes at most this many devices per call (the server's
 * bound, docs/audit.md); enroll-batch sends chunks of --batch-size. */
#define CLI_BATCH_MAX 256u

/* Key algorithm as on the wire (warden.v1.KeyAlgorithm). */
enum cli_key_alg {
    CLI_KEY_ALG_NONE = 0,
    CLI_KEY_ALG_ED25519 = 1,
    CLI_KEY_ALG_P256 = 2,
};

struct cli_label {
    char key[CLI_LABEL_KEY_MAX + 1];
    char value[CLI_LABEL_VALUE_MAX + 1];
};

/* ---- access and rollout bounds (the server's own, access.proto and
 * rollout.proto, so a mistake is a usage error before a round trip). */
/* --device targets of one access request. */
#define CLI_ACC_DEVICES_MAX 32
/* --selector labels: access requests and locks take 4 (ANDed), rollouts 8. */
#define CLI_ACC_SELECTOR_MAX 4
#define CLI_SELECTOR_MAX 8
/* --protocol and --port entries of an access scope. */
#define CLI_ACC_PROTOCOLS_MAX 8
#define CLI_ACC_PORTS_MAX 16
/* --stage flags (RO_STAGES_MAX). */
#define CLI_STAGES_MAX 8
/* --model flags of a manifest (RO_MODELS_MAX). */
#define CLI_MODELS_MAX 16
/* Reasons, comments and details: at most this many bytes (the server's
 * bound for every free text it audits). */
#define CLI_TEXT_MAX 256
/* rollout create --name (RO_NAME_MAX). */
#define CLI_ROLLOUT_NAME_MAX 64

/* certs issue: --ip and --dns entries each (pki/pki.h PKI_SAN_*_MAX). */
#define CLI_CERT_SAN_MAX 8
/* top --interval: the floor keeps a forgotten `top` from hammering every
 * node with Status calls; the ceiling only catches typos. */
#define CLI_TOP_INTERVAL_MIN_MS 250ull
#define CLI_TOP_INTERVAL_MAX_MS (3600ull * 1000)
#define CLI_TOP_INTERVAL_DEFAULT_MS 1000ull

#include "units.h"

struct cli_args {
    enum cli_cmd cmd;

    /* connection */
    char endpoints[CLI_ENDPOINTS_MAX][CLI_ENDPOINT_LEN_MAX + 1];
    size_t n_endpoints;            /* >= 1 after a successful parse */
    const char *ca, *cert, *key;   /* final paths (argv or the bufs below) */
    const char *dev_certs, *role;  /* as given */
    char ca_buf[CLI_PATH_MAX], cert_buf[CLI_PATH_MAX], key_buf[CLI_PATH_MAX];
    int json;
    int verbose;                   /* --verbose: retry notes on stderr */
    uint64_t timeout_ms;
    int timeout_given;             /* --timeout was on the command line */

    /* health */
    const char *service;           /* "" = the whole server */

    /* device enroll / get */
    const char *device_id;
    enum cli_key_alg key_alg;
    uint8_t public_key[CLI_PUBKEY_MAX];
    size_t public_key_len;         /* from --public-key-hex */
    const char *public_key_file;   /* PEM; converted by cli_pubkey_from_pem */
    uint8_t attestation[CLI_DIGEST_LEN];
    int has_attestation;
    const char *model, *firmware, *gateway, *idempotency_key;
    struct cli_label labels[CLI_LABELS_MAX];
    size_t n_labels;
    int serializable;

    /* device list */
    int state;                     /* warden.v1.DeviceState; 0 = any */
    uint32_t page_size;            /* 0 = server default */
    const char *page_token;
    int all;
    /* list's --label filter is labels[0] when n_labels == 1 */

    /* cluster add / remove / transfer */
    uint32_t member_id;            /* >= 1; transfer: 0 = raft picks */
    const char *peer_address;      /* add: HOST:PORT of Raft traffic */
    const char *client_address;    /* add: HOST:PORT of the gRPC API */
    int spare_only;                /* add: stay spare, no promotion */

    /* issue 4: audit, control, lifecycle, telemetry. Hex flags are checked
     * for shape here and decoded by the command. */
    uint64_t from_seq, to_seq;     /* --from, --to */
    int has_from, has_to;
    uint64_t max;                  /* --max: entries; 0 = unset */
    const char *file;              /* FILE positional (export, verify, batch) */
    const char *envelope_hex, *envelope_file;
    const char *signature_hex;
    const char *pubkey_hex, *pubkey_file;  /* verify-command: command key */
    const char *expect_device;     /* verify-command --device */
    uint64_t key_epoch;            /* --key-epoch */
    int has_key_epoch;
    uint64_t last_seq;             /* --last-seq */
    int has_last_seq;
    uint64_t counter;              /* telemetry --counter */
    int has_counter;
    const char *payload_hex, *payload_file;
    const char *key_id;            /* control key --key-id */
    const char *reason;            /* device state --reason */
    const char *private_key_file;  /* rotate-key (the new key), telemetry submit */
    const char *current_key_file;  /* rotate-key: the device's current key */
    uint32_t batch_size;           /* enroll-batch; 0 = CLI_BATCH_MAX */

    /* issue 5: access. Positional ids (REQ, GRANT, LOCK) go to target. */
    const char *target;            /* request, grant or lock id */
    const char *devices[CLI_ACC_DEVICES_MAX]; /* --device, repeated */
    size_t n_devices;
    struct cli_label selector[CLI_SELECTOR_MAX]; /* --selector k=v */
    size_t n_selector;
    int purpose;                   /* warden.v1.AccessPurpose; 0 = unset */
    uint32_t approvals;            /* --approvals; 0 = unset */
    uint32_t reviewer_roles;       /* WROLE_* mask; 0 = unset */
    uint64_t max_duration_ms, pending_ttl_ms; /* 0 = unset */
    uint32_t max_uses;             /* 0 = unset */
    uint64_t lock_view_max_lag, revlog_retention;
    int has_lock_view_max_lag, has_revlog_retention;
    const char *protocols[CLI_ACC_PROTOCOLS_MAX];
    size_t n_protocols;
    uint32_t ports[CLI_ACC_PORTS_MAX];
    size_t n_ports;
    const char *command_class;
    uint64_t duration_ms;          /* --duration; 0 = unset */
    uint32_t max_sessions;         /* --max-sessions; 0 = unset */
    const char *comment;
    const char *principal;
    uint64_t revision;             /* check --revision */
    int has_revision;
    /* device labels --expected-version N (0 or absent = unconditional) */
    uint64_t expected_version;
    int has_expected_version;
    int grant_state;               /* grants --state; 0 = any */
    uint64_t expires_in_ms;        /* lock --expires (relative); 0 = none */
    uint64_t from_revision;        /* watch --from-revision */
    int has_from_revision;

    /* issue 6: rollouts. Positional ids go to object_id (rollout or
     * release id) or key_id (release key), device ids to device_id. */
    uint64_t object_id;
    const char *version;           /* manifest --version */
    const char *artifact_sha256_hex;
    uint64_t artifact_size;
    const char *models[CLI_MODELS_MAX]; /* manifest --model, repeated */
    size_t n_models;
    const char *manifest_file;
    uint64_t rollback_of;          /* release create --rollback-of */
    uint64_t release_id;           /* rollout create --release */
    struct cli_stage stages[CLI_STAGES_MAX];
    size_t n_stages;
    uint32_t min_reported;         /* every stage's gates */
    uint32_t success_bp, failure_bp;
    int has_success, has_failure;
    uint64_t device_timeout_ms, bake_ms;
    int manual;                    /* --manual: no auto advance */
    const char *name;              /* rollout create --name */
    int rollback;                  /* abort --rollback */
    int force;                     /* advance --force */
    int phase;                     /* report --phase (UpdatePhase) */
    const char *detail;
    uint64_t rollout_ref;          /* report --rollout */
    uint64_t release_counter;      /* report --release-counter */
    int has_release_counter;

    /* issue 9: certs (offline; `certs issue --role` is stored in role, as
     * a certs command takes no TLS flags) and top. */
    const char *out;               /* init-ca: DIR; issue: PREFIX */
    const char *cn;                /* init-ca --cn */
    const char *ca_dir;            /* issue --ca-dir */
    uint32_t days;                 /* --days; 0 = default */
    const char *ips[CLI_CERT_SAN_MAX];   /* issue --ip, repeated */
    size_t n_ips;
    const char *dns[CLI_CERT_SAN_MAX];   /* issue --dns, repeated */
    size_t n_dns;
    uint64_t interval_ms;          /* top --interval */
    uint32_t iterations;           /* top --iterations; 0 = until Ctrl-C */
    int once;                      /* top --once: one plain frame */
    const char *cluster_json;      /* top --cluster-json FILE */
    const char *metrics;           /* top --metrics URL[,URL...] */
};

/* Parse argv (argv[0] is skipped). Global flags may appear anywhere.
 * Returns 0, or WERR_INVALID with e->msg saying what is wrong (a usage
 * error). On success, a is complete and validated; `help` yields
 * cmd == CLI_CMD_HELP and no TLS configuration is required. */
int cli_args_parse(int argc, char **argv, struct cli_args *a, struct werr *e);

/* Decode hex (upper or lower case, even length, no prefix) into out.
 * Returns 0, or WERR_INVALID for a bad digit or odd length, WERR_LIMIT when
 * the result would exceed cap. *len is set on success. */
int cli_hex_decode(const char *s, uint8_t *out, size_t cap, size_t *len);

/* Encode len bytes as lowercase hex into out (cap bytes, NUL-terminated).
 * Returns 0 or WERR_LIMIT when cap < 2*len+1. */
int cli_hex_encode(const uint8_t *in, size_t len, char *out, size_t cap);

/* Parse "key=value" (split at the first '='; the key must be non-empty, the
 * value may be empty). Returns 0, WERR_INVALID or WERR_LIMIT. */
int cli_label_parse(const char *s, struct cli_label *out, struct werr *e);

/* Device state from "active", "ACTIVE" or "DEVICE_STATE_ACTIVE".
 * Returns the warden.v1.DeviceState value (1..4) or WERR_INVALID. */
int cli_state_parse(const char *s);

/* Key algorithm from "ed25519" or "p256" (also "ecdsa-p256"). */
int cli_key_alg_parse(const char *s, enum cli_key_alg *out);

/* Parse a --timeout value: digits followed by ms, s, m or h (a bare number
 * means seconds). Returns 0 or WERR_INVALID (also for 0 and above
 * CLI_TIMEOUT_MAX_MS). */
int cli_timeout_parse(const char *s, uint64_t *ms);

/* Check "HOST:PORT" (numeric port 1..65535, [v6]:port accepted, at most
 * CLI_ENDPOINT_LEN_MAX bytes). Returns 0 or WERR_INVALID. Also applied to
 * the server's warden-leader hint before following it. */
int cli_endpoint_check(const char *s);

/* Parse a decimal uint64 (digits only, no sign). 0 or WERR_INVALID. */
int cli_u64_parse(const char *s, uint64_t *out);

/* Parse a Raft server id: decimal 1..UINT32_MAX (0 is raft's "none").
 * Returns 0 or WERR_INVALID. */
int cli_member_id_parse(const char *s, uint32_t *out);

/* The full --help text. */
extern const char cli_usage_text[];

#endif
