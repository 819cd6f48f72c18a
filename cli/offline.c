#include "offline.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../domain/ctl_envelope.h"
#include "auditfile.h"
#include "fmt.h"
#include "pubkey.h"

int cli_file_read(const char *path, uint8_t *buf, size_t cap, size_t *len,
                  struct werr *e)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return werr_set(e, WERR_IO, "%s: %s", path, strerror(errno));
    }
    size_t n = fread(buf, 1, cap, f);
    int extra = n == cap && fgetc(f) != EOF; /* one byte past cap: too big */
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        return werr_set(e, WERR_IO, "%s: read error", path);
    }
    if (extra) {
        return werr_set(e, WERR_LIMIT, "%s: larger than %zu bytes", path, cap);
    }
    *len = n;
    return 0;
}

static void hex_line(FILE *f, const char *k, const uint8_t *b, size_t n)
{
    fprintf(f, "%-20s", k);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%02x", b[i]);
    }
    fputc('\n', f);
}

static void json_hexv(FILE *f, const uint8_t *b, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%02x", b[i]);
    }
    fputc('"', f);
}

/* ---- audit verify ------------------------------------------------------------ */

static int audit_verify(const struct cli_args *a, FILE *out, FILE *err)
{
    static const uint8_t zeros[AUDIT_HASH_LEN];
    FILE *in = fopen(a->file, "rb");
    if (in == NULL) {
        fprintf(err, "wardenctl: audit verify: %s: %s\n", a->file, strerror(errno));
        return CLI_AUDIT_MALFORMED;
    }
    static struct cli_audit_report rep;
    int v = cli_audit_verify_file(in, &rep);
    int rerr = ferror(in);
    fclose(in);
    if (rerr) {
        fprintf(err, "wardenctl: audit verify: %s: read error\n", a->file);
        return CLI_AUDIT_MALFORMED;
    }
    const char *name = v == CLI_AUDIT_INTACT   ? "intact"
                       : v == CLI_AUDIT_BROKEN ? "broken"
                                               : "malformed";
    int genesis = rep.entries > 0 && rep.first_seq == 1;
    if (a->json) {
        fprintf(out, "{\"result\":\"%s\",\"entries_verified\":%" PRIu64, name,
                rep.entries);
        if (rep.hdr_ok) {
            fprintf(out, ",\"from_seq\":%" PRIu64 ",\"to_seq\":%" PRIu64
                    ",\"head_seq\":%" PRIu64 ",\"head_checked\":%s",
                    rep.hdr.from_seq, rep.hdr.to_seq, rep.hdr.head_seq,
                    rep.head_checked ? "true" : "false");
        }
        if (rep.entries > 0) {
            fputs(",\"first_prev_hash\":", out);
            json_hexv(out, rep.first_prev, AUDIT_HASH_LEN);
            fprintf(out, ",\"first_prev_hash_trusted\":%s,\"last_seq\":%" PRIu64
                    ",\"last_hash\":", genesis ? "false" : "true", rep.last_seq);
            json_hexv(out, rep.last_hash, AUDIT_HASH_LEN);
        }
        if (v != CLI_AUDIT_INTACT) {
            fprintf(out, ",\"line\":%" PRIu64 ",\"check\":\"%s\"", rep.bad_line,
                    rep.check);
            if (v == CLI_AUDIT_BROKEN) {
                fprintf(out, ",\"bad_seq\":%" PRIu64, rep.bad_seq);
            }
            fputs(",\"reason\":", out);
            cli_json_string(out, rep.msg, strlen(rep.msg));
        }
        fputs("}\n", out);
        return v;
    }
    if (v == CLI_AUDIT_MALFORMED) {
        fprintf(err, "wardenctl: audit verify: %s: malformed export (line %" PRIu64
                "): %s\n", a->file, rep.bad_line, rep.msg);
        return v;
    }
    if (v == CLI_AUDIT_BROKEN) {
        fprintf(out, "BROKEN at seq %" PRIu64 " (line %" PRIu64 "), check %s: %s\n",
                rep.bad_seq, rep.bad_line, rep.check, rep.msg);
        if (rep.entries > 0) {
            fprintf(out, "%-20s%" PRIu64 " entries before it (seq %" PRIu64
                    "..%" PRIu64 ")\n", "verified", rep.entries, rep.first_seq,
                    rep.last_seq);
        }
        return v;
    }
    if (rep.entries == 0) {
        fprintf(out, "intact: empty range (no entries)\n");
        return v;
    }
    fprintf(out, "intact: %" PRIu64 " entries, seq %" PRIu64 "..%" PRIu64 "\n",
            rep.entries, rep.first_seq, rep.last_seq);
    hex_line(out, "first_prev_hash", rep.first_prev, AUDIT_HASH_LEN);
    if (genesis) {
        fprintf(out, "%-20s%s\n", "", memcmp(rep.first_prev, zeros, AUDIT_HASH_LEN)
                                          ? "?" : "(genesis: 32 zero bytes)");
    } else {
        fprintf(out, "%-20s(taken as given: the range starts at seq %" PRIu64
                "; compare it with entry %" PRIu64 "'s hash from a trusted "
                "source)\n", "", rep.first_seq, rep.first_seq - 1);
    }
    hex_line(out, "last_hash", rep.last_hash, AUDIT_HASH_LEN);
    if (rep.head_checked) {
        fprintf(out, "%-20sseq %" PRIu64 " at export: matches\n", "head",
                rep.hdr.head_seq);
    } else {
        fprintf(out, "%-20sseq %" PRIu64 " at export: outside this range, not "
                "checked\n", "head", rep.hdr.head_seq);
    }
    return v;
}

/* ---- verify-command ----------------------------------------------------------- */

static int usage_err(FILE *err, const char *msg)
{
    fprintf(err, "wardenctl: verify-command: %s\n", msg);
    return CLI_EXIT_USAGE;
}

static int verify_command(const struct cli_args *a, FILE *out, FILE *err)
{
    static uint8_t env[CTL_ENVELOPE_MAX];
    uint8_t sig[CLI_SIG_HEX_MAX], pk[CLI_PUBKEY_MAX];
    size_t env_len = 0, sig_len = 0, pk_len = 0;
    struct werr e = {0};
    if (a->envelope_hex != NULL) {
        if (cli_hex_decode(a->envelope_hex, env, sizeof env, &env_len) != 0) {
            return usage_err(err, "--envelope-hex: not hex, or longer than an "
                                  "envelope can be");
        }
    } else if (cli_file_read(a->envelope_file, env, sizeof env, &env_len, &e) != 0) {
        fprintf(err, "wardenctl: verify-command: %s\n", e.msg);
        return CLI_OFFLINE_BADFILE;
    }
    if (cli_hex_decode(a->signature_hex, sig, sizeof sig, &sig_len) != 0) {
        return usage_err(err, "--signature-hex: not hex");
    }
    if (a->pubkey_hex != NULL) {
        if (cli_hex_decode(a->pubkey_hex, pk, sizeof pk, &pk_len) != 0 ||
            pk_len != CTL_PUBKEY_LEN) {
            return usage_err(err, "--pubkey-hex: want the 32-byte Ed25519 "
                                  "command public key");
        }
    } else if (cli_pubkey_from_file(a->pubkey_file, CLI_KEY_ALG_ED25519, pk,
                                    sizeof pk, &pk_len, &e) != 0 ||
               pk_len != CTL_PUBKEY_LEN) {
        fprintf(err, "wardenctl: verify-command: %s\n",
                e.msg[0] ? e.msg : "--pubkey-file: not an Ed25519 public key");
        return CLI_OFFLINE_BADFILE;
    }
    struct ctl_envelope ce;
    memset(&ce, 0, sizeof ce);
    int v = ctl_verify(env, env_len, sig, sig_len, pk, a->expect_device,
                       a->key_epoch, a->last_seq, &ce, &e);
    static const char *const verdicts[] = {"OK", "MALFORMED", "BAD_SIGNATURE",
                                           "WRONG_DEVICE", "STALE_EPOCH",
                                           "REPLAY"};
    const char *vname = v >= 0 && v <= CTL_REPLAY ? verdicts[v] : "UNKNOWN";
    if (v != CTL_OK) {
        if (a->json) {
            fprintf(out, "{\"accepted\":false,\"verdict\":\"%s\",\"reason\":", vname);
            cli_json_string(out, e.msg, strlen(e.msg));
            fputs("}\n", out);
        } else {
            fprintf(out, "REJECTED  %s: %s\n", vname, e.msg[0] ? e.msg : ctl_verdict_name(v));
        }
        return CLI_OFFLINE_REJECTED;
    }
    if (a->json) {
        fputs("{\"accepted\":true,\"verdict\":\"OK\",\"device_id\":", out);
        cli_json_string(out, ce.device_id, strlen(ce.device_id));
        fputs(",\"key_id\":", out);
        cli_json_string(out, ce.key_id, strlen(ce.key_id));
        fprintf(out, ",\"key_epoch\":%" PRIu64 ",\"seq\":%" PRIu64
                ",\"cluster_time_ms\":%" PRIu64 ",\"payload\":",
                ce.key_epoch, ce.seq, ce.time_ms);
        json_hexv(out, ce.payload, ce.payload_len);
        fputs("}\n", out);
        return 0;
    }
    fprintf(out, "ACCEPTED  (record seq %" PRIu64 " as the last seen)\n", ce.seq);
    fprintf(out, "%-20s", "device_id");
    cli_json_string(out, ce.device_id, strlen(ce.device_id));
    fprintf(out, "\n%-20s", "key_id");
    cli_json_string(out, ce.key_id, strlen(ce.key_id));
    fprintf(out, "\n%-20s%" PRIu64 "\n%-20s%" PRIu64 "\n%-20s%" PRIu64 "\n",
            "key_epoch", ce.key_epoch, "seq", ce.seq, "cluster_time_ms",
            ce.time_ms);
    hex_line(out, "payload", ce.payload, ce.payload_len);
    return 0;
}

int cli_offline_run(const struct cli_args *a, FILE *out, FILE *err)
{
    switch (a->cmd) {
    case CLI_CMD_AUDIT_VERIFY:
        return audit_verify(a, out, err);
    case CLI_CMD_VERIFY_COMMAND:
        return verify_command(a, out, err);
    default:
        fprintf(err, "wardenctl: not an offline command\n");
        return CLI_EXIT_USAGE;
    }
}
