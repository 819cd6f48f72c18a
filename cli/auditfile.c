#include "auditfile.h"

#include <inttypes.h>
#include <string.h>

#include "args.h"
#include "fmt.h"
#include "json.h"

/* ---- writing ------------------------------------------------------------- */

static void put_hex(FILE *f, const char *key, const uint8_t *b, size_t n)
{
    char hex[2 * AUDIT_HASH_LEN + 1];
    (void)cli_hex_encode(b, n, hex, sizeof hex);
    fprintf(f, ",\"%s\":\"%s\"", key, hex);
}

/* "key":"text", or "key_hex":"..." when the bytes are not valid UTF-8 (a
 * JSON string could not carry them unchanged, and they are hashed). */
static void put_str(FILE *f, const char *key, const char *s)
{
    size_t n = strlen(s);
    if (cli_utf8_valid(s, n)) {
        fprintf(f, ",\"%s\":", key);
        cli_json_string(f, s, n);
        return;
    }
    fprintf(f, ",\"%s_hex\":\"", key);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%02x", (unsigned char)s[i]);
    }
    fputc('"', f);
}

static void put_enum(FILE *f, const char *key, const ProtobufCEnumDescriptor *d,
                     uint32_t v)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, (int)v);
    if (ev != NULL && (uint32_t)ev->value == v) {
        fprintf(f, ",\"%s\":\"%s\"", key, ev->name);
    } else {
        fprintf(f, ",\"%s\":%" PRIu32, key, v); /* unknown to this build */
    }
}

int cli_audit_write_header(FILE *f, const struct cli_audit_header *h)
{
    fprintf(f,
            "{\"format\":\"%s\",\"version\":%d,\"hash\":\"%s\","
            "\"encoding\":\"%s\",\"from_seq\":%" PRIu64 ",\"to_seq\":%" PRIu64
            ",\"count\":%" PRIu64 ",\"head_seq\":%" PRIu64,
            CLI_AUDIT_FORMAT, CLI_AUDIT_FORMAT_VERSION, CLI_AUDIT_HASH_ALG,
            AUDIT_DOMAIN_TAG, h->from_seq, h->to_seq, h->count, h->head_seq);
    put_hex(f, "head_hash", h->head_hash, AUDIT_HASH_LEN);
    fputs("}\n", f);
    return ferror(f) ? WERR_IO : 0;
}

int cli_audit_write_entry(FILE *f, const struct audit_rec *r)
{
    fprintf(f,
            "{\"seq\":%" PRIu64 ",\"raft_index\":%" PRIu64
            ",\"cluster_time_ms\":%" PRIu64,
            r->seq, r->raft_index, r->time_ms);
    put_str(f, "principal_name", r->principal);
    fprintf(f, ",\"principal_role\":%" PRIu32, r->role);
    put_enum(f, "action", &warden__v1__audit_action__descriptor, r->action);
    put_str(f, "target", r->target);
    put_enum(f, "outcome", &warden__v1__audit_outcome__descriptor, r->outcome);
    fprintf(f, ",\"code\":%" PRId32 ",\"count\":%" PRIu64, r->code, r->count);
    put_str(f, "detail", r->detail);
    put_hex(f, "request_digest", r->request_digest, AUDIT_HASH_LEN);
    put_hex(f, "prev_hash", r->prev_hash, AUDIT_HASH_LEN);
    put_hex(f, "entry_hash", r->hash, AUDIT_HASH_LEN);
    fputs("}\n", f);
    return ferror(f) ? WERR_IO : 0;
}

/* ---- parsing --------------------------------------------------------------- */

struct obj {
    struct cli_json_field f[CLI_JSON_FIELDS_MAX];
    size_t n;
};

static int get_u64(const struct obj *o, const char *key, uint64_t *v,
                   struct werr *e)
{
    const struct cli_json_field *f = cli_json_find(o->f, o->n, key);
    if (f == NULL) {
        return werr_set(e, WERR_INVALID, "missing \"%s\"", key);
    }
    if (cli_json_u64(f, v) != 0) {
        return werr_set(e, WERR_INVALID, "\"%s\": want an unsigned integer", key);
    }
    return 0;
}

static int get_u32(const struct obj *o, const char *key, uint32_t *v,
                   struct werr *e)
{
    uint64_t x;
    if (get_u64(o, key, &x, e) != 0) {
        return WERR_INVALID;
    }
    if (x > UINT32_MAX) {
        return werr_set(e, WERR_INVALID, "\"%s\": above 2^32-1", key);
    }
    *v = (uint32_t)x;
    return 0;
}

static int get_hash(const struct obj *o, const char *key,
                    uint8_t out[AUDIT_HASH_LEN], struct werr *e)
{
    const struct cli_json_field *f = cli_json_find(o->f, o->n, key);
    char hex[2 * AUDIT_HASH_LEN + 1];
    size_t hl, n = 0;
    if (f == NULL) {
        return werr_set(e, WERR_INVALID, "missing \"%s\"", key);
    }
    if (cli_json_str(f, hex, sizeof hex, &hl) != 0 ||
        cli_hex_decode(hex, out, AUDIT_HASH_LEN, &n) != 0 || n != AUDIT_HASH_LEN) {
        return werr_set(e, WERR_INVALID, "\"%s\": want %d bytes of hex", key,
                        AUDIT_HASH_LEN);
    }
    return 0;
}

/* "key" as text, or "key_hex" as hex bytes (exactly one of them). */
static int get_text(const struct obj *o, const char *key, char *out,
                    size_t max, struct werr *e)
{
    char hexkey[CLI_JSON_KEY_MAX + 1];
    snprintf(hexkey, sizeof hexkey, "%s_hex", key);
    const struct cli_json_field *t = cli_json_find(o->f, o->n, key);
    const struct cli_json_field *h = cli_json_find(o->f, o->n, hexkey);
    size_t len = 0;
    if ((t == NULL) == (h == NULL)) {
        return werr_set(e, WERR_INVALID, "want exactly one of \"%s\" and \"%s\"",
                        key, hexkey);
    }
    if (t != NULL) {
        if (cli_json_str(t, out, max + 1, &len) != 0) {
            return werr_set(e, WERR_INVALID,
                            "\"%s\": not a string of at most %zu bytes", key, max);
        }
        return 0;
    }
    char hex[2 * AUDIT_DETAIL_MAX + 2];
    size_t hl;
    if (cli_json_str(h, hex, sizeof hex, &hl) != 0 ||
        cli_hex_decode(hex, (uint8_t *)out, max, &len) != 0 ||
        memchr(out, '\0', len) != NULL) {
        return werr_set(e, WERR_INVALID,
                        "\"%s\": want hex of at most %zu non-NUL bytes", hexkey,
                        max);
    }
    out[len] = '\0';
    return 0;
}

static int get_enum(const struct obj *o, const char *key,
                    const ProtobufCEnumDescriptor *d, uint32_t *v,
                    struct werr *e)
{
    const struct cli_json_field *f = cli_json_find(o->f, o->n, key);
    if (f == NULL) {
        return werr_set(e, WERR_INVALID, "missing \"%s\"", key);
    }
    if (f->type == CLI_JSON_NUMBER) {
        return get_u32(o, key, v, e);
    }
    char name[64];
    size_t nl;
    const ProtobufCEnumValue *ev = NULL;
    if (cli_json_str(f, name, sizeof name, &nl) == 0) {
        ev = protobuf_c_enum_descriptor_get_value_by_name(d, name);
    }
    if (ev == NULL) {
        return werr_set(e, WERR_INVALID, "\"%s\": unknown value", key);
    }
    *v = (uint32_t)ev->value;
    return 0;
}

/* Every member must be one we know: a v1 file has nothing else, and an
 * unknown member would be unverified data riding along. */
static int only_known(const struct obj *o, const char *const *known,
                      struct werr *e)
{
    for (size_t i = 0; i < o->n; i++) {
        size_t k = 0;
        for (; known[k] != NULL; k++) {
            if (strcmp(o->f[i].key, known[k]) == 0) {
                break;
            }
        }
        if (known[k] == NULL) {
            return werr_set(e, WERR_INVALID, "unknown member \"%s\"", o->f[i].key);
        }
    }
    return 0;
}

static int get_word(const struct obj *o, const char *key, const char *want,
                    struct werr *e)
{
    const struct cli_json_field *f = cli_json_find(o->f, o->n, key);
    char v[64];
    size_t vl;
    if (f == NULL || cli_json_str(f, v, sizeof v, &vl) != 0 || strcmp(v, want) != 0) {
        return werr_set(e, WERR_INVALID, "\"%s\": want \"%s\"", key, want);
    }
    return 0;
}

int cli_audit_parse_header(const char *line, size_t len,
                           struct cli_audit_header *h, struct werr *e)
{
    static const char *const known[] = {"format", "version", "hash", "encoding",
                                        "from_seq", "to_seq", "count",
                                        "head_seq", "head_hash", NULL};
    static struct obj o;
    memset(h, 0, sizeof *h);
    if (cli_json_object_parse(line, len, o.f, CLI_JSON_FIELDS_MAX, &o.n, e) != 0) {
        return WERR_INVALID;
    }
    uint64_t version = 0;
    if (get_word(&o, "format", CLI_AUDIT_FORMAT, e) != 0 ||
        get_u64(&o, "version", &version, e) != 0) {
        return WERR_INVALID;
    }
    if (version != CLI_AUDIT_FORMAT_VERSION) {
        return werr_set(e, WERR_INVALID, "format version %" PRIu64
                        " (this wardenctl reads version %d)", version,
                        CLI_AUDIT_FORMAT_VERSION);
    }
    if (get_word(&o, "hash", CLI_AUDIT_HASH_ALG, e) != 0 ||
        get_word(&o, "encoding", AUDIT_DOMAIN_TAG, e) != 0 ||
        get_u64(&o, "from_seq", &h->from_seq, e) != 0 ||
        get_u64(&o, "to_seq", &h->to_seq, e) != 0 ||
        get_u64(&o, "count", &h->count, e) != 0 ||
        get_u64(&o, "head_seq", &h->head_seq, e) != 0 ||
        get_hash(&o, "head_hash", h->head_hash, e) != 0 ||
        only_known(&o, known, e) != 0) {
        return WERR_INVALID;
    }
    if (h->from_seq == 0 || h->to_seq + 1 < h->from_seq ||
        h->count != h->to_seq + 1 - h->from_seq) {
        return werr_set(e, WERR_INVALID,
                        "range from_seq %" PRIu64 " to_seq %" PRIu64
                        " count %" PRIu64 " is inconsistent",
                        h->from_seq, h->to_seq, h->count);
    }
    return 0;
}

int cli_audit_parse_entry(const char *line, size_t len, struct audit_rec *r,
                          struct werr *e)
{
    static const char *const known[] = {
        "seq", "raft_index", "cluster_time_ms", "principal_name",
        "principal_name_hex", "principal_role", "action", "target",
        "target_hex", "outcome", "code", "count", "detail", "detail_hex",
        "request_digest", "prev_hash", "entry_hash", NULL};
    static struct obj o;
    memset(r, 0, sizeof *r);
    if (cli_json_object_parse(line, len, o.f, CLI_JSON_FIELDS_MAX, &o.n, e) != 0) {
        return WERR_INVALID;
    }
    const struct cli_json_field *code = cli_json_find(o.f, o.n, "code");
    if (get_u64(&o, "seq", &r->seq, e) != 0 ||
        get_u64(&o, "raft_index", &r->raft_index, e) != 0 ||
        get_u64(&o, "cluster_time_ms", &r->time_ms, e) != 0 ||
        get_text(&o, "principal_name", r->principal, PRINCIPAL_NAME_MAX, e) != 0 ||
        get_u32(&o, "principal_role", &r->role, e) != 0 ||
        get_enum(&o, "action", &warden__v1__audit_action__descriptor, &r->action,
                 e) != 0 ||
        get_text(&o, "target", r->target, AUDIT_TARGET_MAX, e) != 0 ||
        get_enum(&o, "outcome", &warden__v1__audit_outcome__descriptor,
                 &r->outcome, e) != 0 ||
        get_u64(&o, "count", &r->count, e) != 0 ||
        get_text(&o, "detail", r->detail, AUDIT_DETAIL_MAX, e) != 0 ||
        get_hash(&o, "request_digest", r->request_digest, e) != 0 ||
        get_hash(&o, "prev_hash", r->prev_hash, e) != 0 ||
        get_hash(&o, "entry_hash", r->hash, e) != 0 ||
        only_known(&o, known, e) != 0) {
        return WERR_INVALID;
    }
    if (code == NULL || cli_json_i32(code, &r->code) != 0) {
        return werr_set(e, WERR_INVALID, "\"code\": want a 32-bit integer");
    }
    return 0;
}

/* ---- verifying --------------------------------------------------------------- */

static int verdict(struct cli_audit_report *rep, enum cli_audit_verdict v,
                   const char *check, uint64_t seq, uint64_t line,
                   const char *msg)
{
    rep->verdict = v;
    rep->check = check;
    rep->bad_seq = seq;
    rep->bad_line = line;
    snprintf(rep->msg, sizeof rep->msg, "%s", msg);
    return (int)v;
}

/* Read one '\n'-terminated line into buf. 1 = a line (*len without '\n'),
 * 0 = end of file, -1 = too long, unterminated or a NUL byte. */
static int read_line(FILE *in, char *buf, size_t cap, size_t *len)
{
    if (fgets(buf, (int)cap, in) == NULL) {
        return 0;
    }
    size_t n = strlen(buf);
    if (n == 0 || buf[n - 1] != '\n') {
        return -1; /* longer than cap, last line cut short, or a NUL */
    }
    buf[n - 1] = '\0';
    *len = n - 1;
    return 1;
}

int cli_audit_verify_file(FILE *in, struct cli_audit_report *rep)
{
    static char line[CLI_AUDIT_LINE_MAX + 2];
    /* pair[0] is the previous (verified) entry, pair[1] the current one, so
     * audit_verify_chain checks the link between them. */
    static struct audit_rec pair[2];
    struct werr e = {0};
    size_t len = 0;
    uint64_t lineno = 1;

    memset(rep, 0, sizeof *rep);
    int rl = read_line(in, line, sizeof line, &len);
    if (rl <= 0) {
        return verdict(rep, CLI_AUDIT_MALFORMED, "format", 0, lineno,
                       rl == 0 ? "empty file: no header line"
                               : "header line too long or unterminated");
    }
    if (cli_audit_parse_header(line, len, &rep->hdr, &e) != 0) {
        char msg[WERR_MSG_MAX + 16];
        snprintf(msg, sizeof msg, "header: %s", e.msg);
        return verdict(rep, CLI_AUDIT_MALFORMED, "format", 0, lineno, msg);
    }
    rep->hdr_ok = 1;

    for (;;) {
        lineno++;
        rl = read_line(in, line, sizeof line, &len);
        if (rl == 0) {
            break;
        }
        if (rl < 0) {
            return verdict(rep, CLI_AUDIT_MALFORMED, "format", 0, lineno,
                           "line too long, cut short, or holding a NUL byte");
        }
        if (rep->entries == rep->hdr.count) {
            return verdict(rep, CLI_AUDIT_MALFORMED, "format", 0, lineno,
                           "more entries than the header's count");
        }
        struct audit_rec *cur = &pair[rep->entries == 0 ? 0 : 1];
        if (cli_audit_parse_entry(line, len, cur, &e) != 0) {
            char msg[WERR_MSG_MAX + 16];
            snprintf(msg, sizeof msg, "entry: %s", e.msg);
            return verdict(rep, CLI_AUDIT_MALFORMED, "format", 0, lineno, msg);
        }
        /* Classify first (the same checks, in audit_verify_chain's order:
         * hash, then seq, then link), then let the domain verifier decide. */
        uint8_t h[AUDIT_HASH_LEN];
        struct werr he = {0};
        const char *check = "prev_hash";
        if (audit_hash(cur, h, &he) != 0 || memcmp(h, cur->hash, AUDIT_HASH_LEN) != 0) {
            check = "entry_hash";
        } else if (rep->entries == 0 ? cur->seq != rep->hdr.from_seq
                                     : cur->seq != pair[0].seq + 1) {
            check = "seq";
        }
        size_t bad = 0;
        int rc;
        if (rep->entries == 0) {
            /* A range that starts after seq 1 has no previous entry here:
             * its prev_hash is taken as given (anchor NULL) and reported. */
            rc = audit_verify_chain(cur, 1, NULL, &bad, &e);
            if (rc == 0 && cur->seq != rep->hdr.from_seq) {
                rc = werr_set(&e, WERR_CORRUPT,
                              "entry seq %" PRIu64 " but the header's from_seq"
                              " is %" PRIu64, cur->seq, rep->hdr.from_seq);
            }
        } else {
            rc = audit_verify_chain(pair, 2, NULL, &bad, &e);
        }
        if (rc != 0) {
            return verdict(rep, CLI_AUDIT_BROKEN, check, cur->seq, lineno, e.msg);
        }
        if (rep->hdr.head_seq == cur->seq) {
            rep->head_checked = 1;
            if (memcmp(cur->hash, rep->hdr.head_hash, AUDIT_HASH_LEN) != 0) {
                return verdict(rep, CLI_AUDIT_BROKEN, "head", cur->seq, lineno,
                               "entry_hash differs from the head_hash the "
                               "server reported at export");
            }
        }
        if (rep->entries == 0) {
            rep->first_seq = cur->seq;
            memcpy(rep->first_prev, cur->prev_hash, AUDIT_HASH_LEN);
        } else {
            pair[0] = pair[1];
        }
        rep->last_seq = cur->seq;
        memcpy(rep->last_hash, cur->hash, AUDIT_HASH_LEN);
        rep->entries++;
    }
    if (rep->entries != rep->hdr.count) {
        char msg[128];
        snprintf(msg, sizeof msg,
                 "truncated: %" PRIu64 " of the header's %" PRIu64 " entries",
                 rep->entries, rep->hdr.count);
        return verdict(rep, CLI_AUDIT_MALFORMED, "format", 0, lineno, msg);
    }
    rep->verdict = CLI_AUDIT_INTACT;
    return CLI_AUDIT_INTACT;
}
