#include "fmt.h"

#include <inttypes.h>
#include <string.h>

#include "../grpc/grpc.h"
#include "../domain/audit_chain.h"
#include "args.h"
#include "auditfile.h"

/* ---- names ------------------------------------------------------------------ */

static const char *enum_name(const ProtobufCEnumDescriptor *d, const char *prefix,
                             int v, int full)
{
    static char unknown[32];
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    if (ev == NULL) {
        snprintf(unknown, sizeof unknown, "UNKNOWN(%d)", v);
        return unknown;
    }
    size_t plen = strlen(prefix);
    if (!full && strncmp(ev->name, prefix, plen) == 0) {
        return ev->name + plen;
    }
    return ev->name;
}

const char *cli_state_name(int state, int full)
{
    return enum_name(&warden__v1__device_state__descriptor, "DEVICE_STATE_",
                     state, full);
}

const char *cli_key_alg_name(int alg, int full)
{
    return enum_name(&warden__v1__key_algorithm__descriptor, "KEY_ALGORITHM_",
                     alg, full);
}

const char *cli_member_role_name(int role, int full)
{
    return enum_name(&warden__v1__member_role__descriptor, "MEMBER_ROLE_", role,
                     full);
}

/* ---- JSON --------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid
 * (RFC 3629 §4: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) {
            lo = 0xA0;
        } else if (c == 0xED) {
            hi = 0x9F;
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) {
            lo = 0x90;
        } else if (c == 0xF4) {
            hi = 0x8F;
        }
    } else {
        return 0;
    }
    if (len < n || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return n;
}

int cli_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_seq(p + i, len - i);
        if (n == 0) {
            return 0;
        }
        i += n;
    }
    return 1;
}

void cli_json_string(FILE *f, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        switch (c) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '\b':
            fputs("\\b", f);
            break;
        case '\f':
            fputs("\\f", f);
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                fprintf(f, "\\u%04x", c);
            } else if (c < 0x80) {
                fputc(c, f);
            } else {
                size_t n = utf8_seq(p + i, len - i);
                if (n == 0) {
                    fputs("\\ufffd", f);
                } else {
                    fwrite(p + i, 1, n, f);
                    i += n;
                    continue;
                }
            }
        }
        i++;
    }
    fputc('"', f);
}

static void json_cstr(FILE *f, const char *s)
{
    cli_json_string(f, s ? s : "", s ? strlen(s) : 0);
}

static void json_hex(FILE *f, const ProtobufCBinaryData *b)
{
    static const char digits[] = "0123456789abcdef";
    fputc('"', f);
    for (size_t i = 0; i < b->len; i++) {
        fputc(digits[b->data[i] >> 4], f);
        fputc(digits[b->data[i] & 0xf], f);
    }
    fputc('"', f);
}

static void json_device(FILE *f, const Warden__V1__Device *d)
{
    fputs("{\"device_id\":", f);
    json_cstr(f, d->device_id);
    fputs(",\"state\":", f);
    json_cstr(f, cli_state_name((int)d->state, 1));
    fputs(",\"key_algorithm\":", f);
    json_cstr(f, cli_key_alg_name((int)d->key_algorithm, 1));
    fputs(",\"public_key\":", f);
    json_hex(f, &d->public_key);
    fputs(",\"key_fingerprint\":", f);
    json_hex(f, &d->key_fingerprint);
    fprintf(f, ",\"key_epoch\":%" PRIu64, d->key_epoch);
    fputs(",\"attestation_digest\":", f);
    json_hex(f, &d->attestation_digest);
    fputs(",\"hardware_model\":", f);
    json_cstr(f, d->hardware_model);
    fputs(",\"firmware_version\":", f);
    json_cstr(f, d->firmware_version);
    fputs(",\"gateway_id\":", f);
    json_cstr(f, d->gateway_id);
    fputs(",\"labels\":[", f);
    for (size_t i = 0; i < d->n_labels; i++) {
        fputs(i ? ",{\"key\":" : "{\"key\":", f);
        json_cstr(f, d->labels[i]->key);
        fputs(",\"value\":", f);
        json_cstr(f, d->labels[i]->value);
        fputc('}', f);
    }
    fprintf(f,
            "],\"identity_epoch\":%" PRIu64 ",\"created_index\":%" PRIu64
            ",\"updated_index\":%" PRIu64 ",\"created_time_ms\":%" PRIu64
            ",\"updated_time_ms\":%" PRIu64 ",\"enrolled_by\":",
            d->identity_epoch, d->created_index, d->updated_index,
            d->created_time_ms, d->updated_time_ms);
    json_cstr(f, d->enrolled_by);
    fputc('}', f);
}

/* ---- human text ------------------------------------------------------------- */

/* Copy s into buf for display: control bytes become '?', and at most
 * max_chars UTF-8 characters are kept (then "..."). Returns the display
 * width in characters. buf must hold 4*max_chars + 4 bytes. */
static size_t display(const char *s, char *buf, size_t max_chars)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t out = 0, chars = 0;
    if (*p == '\0') {
        buf[0] = '-';
        buf[1] = '\0';
        return 1;
    }
    while (*p != '\0') {
        if (chars == max_chars) {
            memcpy(buf + out, "...", 3);
            out += 3;
            chars += 3;
            break;
        }
        size_t n = utf8_seq(p, strnlen((const char *)p, 4));
        if (n == 0 || *p < 0x20 || *p == 0x7f) {
            buf[out++] = '?';
            p++;
        } else {
            memcpy(buf + out, p, n);
            out += n;
            p += n;
        }
        chars++;
    }
    buf[out] = '\0';
    return chars;
}

static void pad(FILE *f, size_t n)
{
    while (n-- > 0) {
        fputc(' ', f);
    }
}

size_t cli__display(const char *s, char *buf, size_t max_chars)
{
    return display(s, buf, max_chars);
}

const char *cli__enum_name(const ProtobufCEnumDescriptor *d, const char *prefix,
                           int v, int full)
{
    return enum_name(d, prefix, v, full);
}

/* Labels as "k=v,k=v" into buf (cap bytes), truncated safely by display(). */
static void labels_text(const Warden__V1__Device *d, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < d->n_labels && off + 1 < cap; i++) {
        int n = snprintf(buf + off, cap - off, "%s%s=%s", i ? "," : "",
                         d->labels[i]->key, d->labels[i]->value);
        if (n < 0) {
            break;
        }
        off += (size_t)n;
    }
}

#define LINE_MAX_CHARS 4096u

static void kv(FILE *f, const char *k, const char *v)
{
    static char buf[4 * LINE_MAX_CHARS + 4];
    display(v, buf, LINE_MAX_CHARS);
    fprintf(f, "%-20s%s\n", k, buf);
}

static void kv_hex(FILE *f, const char *k, const ProtobufCBinaryData *b)
{
    char hex[2 * CLI_PUBKEY_MAX + 1];
    if (cli_hex_encode(b->data, b->len, hex, sizeof hex) != 0) {
        snprintf(hex, sizeof hex, "(%zu bytes)", b->len);
    }
    kv(f, k, hex);
}

static void kv_u64(FILE *f, const char *k, uint64_t v)
{
    fprintf(f, "%-20s%" PRIu64 "\n", k, v);
}

void cli_fmt_device(FILE *f, const Warden__V1__Device *d, int json)
{
    if (json) {
        json_device(f, d);
        fputc('\n', f);
        return;
    }
    char labels[LINE_MAX_CHARS];
    labels_text(d, labels, sizeof labels);
    kv(f, "device_id", d->device_id);
    kv(f, "state", cli_state_name((int)d->state, 0));
    kv(f, "key_algorithm", cli_key_alg_name((int)d->key_algorithm, 0));
    kv_hex(f, "public_key", &d->public_key);
    kv_hex(f, "key_fingerprint", &d->key_fingerprint);
    kv_u64(f, "key_epoch", d->key_epoch);
    kv_hex(f, "attestation_digest", &d->attestation_digest);
    kv(f, "hardware_model", d->hardware_model);
    kv(f, "firmware_version", d->firmware_version);
    kv(f, "gateway_id", d->gateway_id);
    kv(f, "labels", labels);
    kv_u64(f, "identity_epoch", d->identity_epoch);
    kv_u64(f, "created_index", d->created_index);
    kv_u64(f, "updated_index", d->updated_index);
    kv_u64(f, "created_time_ms", d->created_time_ms);
    kv_u64(f, "updated_time_ms", d->updated_time_ms);
    kv(f, "enrolled_by", d->enrolled_by);
}

enum { COL_ID, COL_STATE, COL_ALG, COL_GW, COL_FW, COL_MODEL, COL_LABELS, NCOLS };
static const char *const col_hdr[NCOLS] = {"DEVICE_ID", "STATE",    "KEY_ALG",
                                           "GATEWAY",   "FIRMWARE", "MODEL",
                                           "LABELS"};

/* Display text and width of one cell; buf holds 4*CLI_CELL_MAX+4 bytes. */
static size_t cell(const Warden__V1__Device *d, int col, char *buf)
{
    char labels[4 * CLI_CELL_MAX + 4];
    switch (col) {
    case COL_ID:
        return display(d->device_id, buf, CLI_CELL_MAX);
    case COL_STATE:
        return display(cli_state_name((int)d->state, 0), buf, CLI_CELL_MAX);
    case COL_ALG:
        return display(cli_key_alg_name((int)d->key_algorithm, 0), buf,
                       CLI_CELL_MAX);
    case COL_GW:
        return display(d->gateway_id, buf, CLI_CELL_MAX);
    case COL_FW:
        return display(d->firmware_version, buf, CLI_CELL_MAX);
    case COL_MODEL:
        return display(d->hardware_model, buf, CLI_CELL_MAX);
    default:
        labels_text(d, labels, sizeof labels);
        return display(labels, buf, CLI_CELL_MAX);
    }
}

void cli_fmt_devices(FILE *f, Warden__V1__Device *const *devs, size_t n,
                     const char *next_token, int json)
{
    if (n > CLI_TABLE_ROWS_MAX) {
        n = CLI_TABLE_ROWS_MAX;
    }
    if (json) {
        fputs("{\"devices\":[", f);
        for (size_t i = 0; i < n; i++) {
            if (i) {
                fputc(',', f);
            }
            json_device(f, devs[i]);
        }
        fputs("],\"next_page_token\":", f);
        json_cstr(f, next_token);
        fputs("}\n", f);
        return;
    }
    size_t width[NCOLS];
    char buf[4 * CLI_CELL_MAX + 4];
    for (int c = 0; c < NCOLS; c++) {
        width[c] = strlen(col_hdr[c]);
        for (size_t i = 0; i < n; i++) {
            size_t w = cell(devs[i], c, buf);
            if (w > width[c]) {
                width[c] = w;
            }
        }
    }
    for (int c = 0; c < NCOLS; c++) {
        fputs(col_hdr[c], f);
        if (c + 1 < NCOLS) {
            pad(f, width[c] - strlen(col_hdr[c]) + 2);
        }
    }
    fputc('\n', f);
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < NCOLS; c++) {
            size_t w = cell(devs[i], c, buf);
            fputs(buf, f);
            if (c + 1 < NCOLS) {
                pad(f, width[c] - w + 2);
            }
        }
        fputc('\n', f);
    }
    if (next_token != NULL && next_token[0] != '\0') {
        char tok[4 * CLI_CELL_MAX * 4 + 4];
        display(next_token, tok, CLI_CELL_MAX * 4);
        fprintf(f, "(more: --page-token %s, or --all)\n", tok);
    }
}

void cli_fmt_health(FILE *f, int serving_status, int json)
{
    static const char *const names[] = {"UNKNOWN", "SERVING", "NOT_SERVING",
                                        "SERVICE_UNKNOWN"};
    const char *name = serving_status >= 0 && serving_status <= 3
                           ? names[serving_status]
                           : "UNKNOWN";
    if (json) {
        fprintf(f, "{\"status\":\"%s\"}\n", name);
    } else {
        fprintf(f, "%s\n", name);
    }
}

void cli_fmt_error(FILE *f, int grpc_status, const char *msg)
{
    static char buf[4 * 1024 + 4];
    if (msg == NULL || msg[0] == '\0') {
        fprintf(f, "wardenctl: %s\n", grpc_status_name(grpc_status));
        return;
    }
    /* Server-supplied text: no terminal control bytes. */
    size_t w = display(msg, buf, 1024);
    (void)w;
    fprintf(f, "wardenctl: %s: %s\n", grpc_status_name(grpc_status), buf);
}

/* ---- cluster ------------------------------------------------------------------ */

static void json_member(FILE *f, const Warden__V1__Member *m)
{
    fprintf(f, "{\"id\":%" PRIu32 ",\"peer_address\":", m->id);
    json_cstr(f, m->peer_address);
    fputs(",\"client_address\":", f);
    json_cstr(f, m->client_address);
    fputs(",\"role\":", f);
    json_cstr(f, cli_member_role_name((int)m->role, 1));
    fprintf(f, ",\"has_progress\":%s,\"match_index\":%" PRIu64 "}",
            m->has_progress ? "true" : "false", m->match_index);
}

static void json_members(FILE *f, Warden__V1__Member *const *m, size_t n)
{
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        if (i) {
            fputc(',', f);
        }
        json_member(f, m[i]);
    }
    fputc(']', f);
}

enum { MC_ID, MC_ROLE, MC_PEER, MC_CLIENT, MC_MATCH, MNCOLS };
static const char *const mcol_hdr[MNCOLS] = {"ID", "ROLE", "PEER", "CLIENT",
                                             "MATCH_INDEX"};

/* Display text and width of one member cell; buf as for cell(). */
static size_t member_cell(const Warden__V1__Member *m, int col, char *buf)
{
    char num[24];
    switch (col) {
    case MC_ID:
        snprintf(num, sizeof num, "%" PRIu32, m->id);
        return display(num, buf, CLI_CELL_MAX);
    case MC_ROLE:
        return display(cli_member_role_name((int)m->role, 0), buf,
                       CLI_CELL_MAX);
    case MC_PEER:
        return display(m->peer_address, buf, CLI_CELL_MAX);
    case MC_CLIENT:
        return display(m->client_address, buf, CLI_CELL_MAX);
    default:
        if (!m->has_progress) {
            return display("", buf, CLI_CELL_MAX);
        }
        snprintf(num, sizeof num, "%" PRIu64, m->match_index);
        return display(num, buf, CLI_CELL_MAX);
    }
}

static void members_table(FILE *f, Warden__V1__Member *const *m, size_t n)
{
    size_t width[MNCOLS];
    char buf[4 * CLI_CELL_MAX + 4];
    if (n > CLI_TABLE_ROWS_MAX) {
        n = CLI_TABLE_ROWS_MAX;
    }
    for (int c = 0; c < MNCOLS; c++) {
        width[c] = strlen(mcol_hdr[c]);
        for (size_t i = 0; i < n; i++) {
            size_t w = member_cell(m[i], c, buf);
            if (w > width[c]) {
                width[c] = w;
            }
        }
    }
    for (int c = 0; c < MNCOLS; c++) {
        fputs(mcol_hdr[c], f);
        if (c + 1 < MNCOLS) {
            pad(f, width[c] - strlen(mcol_hdr[c]) + 2);
        }
    }
    fputc('\n', f);
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < MNCOLS; c++) {
            size_t w = member_cell(m[i], c, buf);
            fputs(buf, f);
            if (c + 1 < MNCOLS) {
                pad(f, width[c] - w + 2);
            }
        }
        fputc('\n', f);
    }
}

void cli_fmt_cluster_status(FILE *f, const Warden__V1__ClusterStatusResponse *s,
                            int json)
{
    if (json) {
        fprintf(f, "{\"id\":%" PRIu32 ",\"state\":", s->id);
        json_cstr(f, s->state);
        fprintf(f, ",\"term\":%" PRIu64 ",\"leader_id\":%" PRIu32
                   ",\"leader_address\":",
                s->term, s->leader_id);
        json_cstr(f, s->leader_address);
        fprintf(f,
                ",\"commit_index\":%" PRIu64 ",\"applied_index\":%" PRIu64
                ",\"fsm_applied_index\":%" PRIu64 ",\"last_index\":%" PRIu64
                ",\"snapshot_index\":%" PRIu64 ",\"snapshot_term\":%" PRIu64
                ",\"cluster_time_ms\":%" PRIu64
                ",\"wall_offset_known\":%s,\"wall_offset_ms\":%" PRId64
                ",\"proposals\":%" PRIu64 ",\"flushes\":%" PRIu64
                ",\"restores\":%" PRIu64 ",\"restores_skipped\":%" PRIu64
                ",\"snapshots\":%" PRIu64 ",\"tls_refused\":%" PRIu64
                ",\"members\":",
                s->commit_index, s->applied_index, s->fsm_applied_index,
                s->last_index, s->snapshot_index, s->snapshot_term,
                s->cluster_time_ms, s->wall_offset_known ? "true" : "false",
                s->wall_offset_ms, s->proposals, s->flushes, s->restores,
                s->restores_skipped, s->snapshots, s->tls_refused);
        json_members(f, s->members, s->n_members);
        fputs("}\n", f);
        return;
    }
    char lbuf[4 * CLI_CELL_MAX + 4], line[sizeof lbuf + 64];
    kv_u64(f, "id", s->id);
    kv(f, "state", s->state);
    if (s->leader_id == 0) {
        kv(f, "leader", "");
    } else {
        display(s->leader_address, lbuf, CLI_CELL_MAX);
        snprintf(line, sizeof line, "%" PRIu32 " at %s", s->leader_id, lbuf);
        kv(f, "leader", line);
    }
    kv_u64(f, "term", s->term);
    kv_u64(f, "commit_index", s->commit_index);
    kv_u64(f, "applied_index", s->applied_index);
    kv_u64(f, "fsm_applied_index", s->fsm_applied_index);
    kv_u64(f, "last_index", s->last_index);
    if (s->snapshot_index == 0) {
        kv(f, "snapshot", "");
    } else {
        snprintf(line, sizeof line, "index %" PRIu64 ", term %" PRIu64,
                 s->snapshot_index, s->snapshot_term);
        kv(f, "snapshot", line);
    }
    /* Cluster time counts from the cluster's first command, not from the
     * Unix epoch (consensus/node.h), so it is shown as a count, not a
     * date. */
    snprintf(line, sizeof line, "%" PRIu64 " ms", s->cluster_time_ms);
    kv(f, "cluster_time", line);
    if (!s->wall_offset_known) {
        kv(f, "wall_offset", "unknown");
    } else {
        snprintf(line, sizeof line, "%+" PRId64 " ms", s->wall_offset_ms);
        kv(f, "wall_offset", line);
    }
    kv_u64(f, "proposals", s->proposals);
    kv_u64(f, "flushes", s->flushes);
    kv_u64(f, "snapshots", s->snapshots);
    kv_u64(f, "restores", s->restores);
    kv_u64(f, "restores_skipped", s->restores_skipped);
    kv_u64(f, "tls_refused", s->tls_refused);
    fputc('\n', f);
    members_table(f, s->members, s->n_members);
}

void cli_fmt_members(FILE *f, Warden__V1__Member *const *m, size_t n, int json)
{
    if (json) {
        fputs("{\"members\":", f);
        json_members(f, m, n);
        fputs("}\n", f);
        return;
    }
    members_table(f, m, n);
}

void cli_fmt_transfer(FILE *f, uint32_t leader_id, int json)
{
    if (json) {
        fprintf(f, "{\"leader_id\":%" PRIu32 "}\n", leader_id);
    } else if (leader_id == 0) {
        kv(f, "leader_id", "");
    } else {
        kv_u64(f, "leader_id", leader_id);
    }
}

/* ---- audit ------------------------------------------------------------------ */

void cli_fmt_audit_entry(FILE *f, const Warden__V1__AuditEntry *en, int json)
{
    static struct audit_rec r;
    struct werr e;
    if (audit_rec_from_proto(en, &r, &e) != 0) {
        /* Out of the ledger's own bounds: show that, not a guess. */
        fprintf(f, json ? "{\"seq\":%" PRIu64 ",\"malformed\":true}\n"
                        : "seq %" PRIu64 "  (malformed entry)\n", en->seq);
        return;
    }
    if (json) {
        (void)cli_audit_write_entry(f, &r);
        return;
    }
    fprintf(f, "seq %" PRIu64 "  raft_index %" PRIu64 "  time_ms %" PRIu64
            "  principal ", r.seq, r.raft_index, r.time_ms);
    cli_json_string(f, r.principal, strlen(r.principal));
    fprintf(f, " role %" PRIu32 "  %s  target ", r.role,
            enum_name(&warden__v1__audit_action__descriptor, "AUDIT_ACTION_",
                      (int)r.action, 0));
    cli_json_string(f, r.target, strlen(r.target));
    fprintf(f, "  %s  code %" PRId32 "  count %" PRIu64 "  detail ",
            enum_name(&warden__v1__audit_outcome__descriptor, "AUDIT_OUTCOME_",
                      (int)r.outcome, 0),
            r.code, r.count);
    cli_json_string(f, r.detail, strlen(r.detail));
    fputs("  hash ", f);
    for (size_t i = 0; i < AUDIT_HASH_LEN; i++) {
        fprintf(f, "%02x", r.hash[i]);
    }
    fputc('\n', f);
}
