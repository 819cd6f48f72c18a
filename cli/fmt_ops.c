#include "fmt_ops.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../common/principal.h"
#include "args.h"
#include "fmt.h"
#include "units.h"

/* ---- generic JSON ---------------------------------------------------------- */

static void json_value(FILE *f, const ProtobufCFieldDescriptor *fd,
                       const void *p, int depth);

static void json_msg(FILE *f, const ProtobufCMessage *m, int depth)
{
    if (m == NULL || depth >= CLI_JSON_MSG_DEPTH_MAX) {
        fputs("null", f);
        return;
    }
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    int first = 1;
    fputc('{', f);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0 &&
            *(const uint32_t *)(const void *)(base + fd->quantifier_offset) !=
                fd->id) {
            continue; /* another member of the oneof is set */
        }
        fputs(first ? "" : ",", f);
        first = 0;
        cli_json_string(f, fd->name, strlen(fd->name));
        fputc(':', f);
        const void *p = base + fd->offset;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(const void *)(base + fd->quantifier_offset);
            const char *arr = *(const char *const *)p;
            size_t sz;
            switch (fd->type) {
            case PROTOBUF_C_TYPE_INT64:
            case PROTOBUF_C_TYPE_SINT64:
            case PROTOBUF_C_TYPE_SFIXED64:
            case PROTOBUF_C_TYPE_UINT64:
            case PROTOBUF_C_TYPE_FIXED64:
            case PROTOBUF_C_TYPE_DOUBLE:
                sz = 8;
                break;
            case PROTOBUF_C_TYPE_BOOL:
                sz = sizeof(protobuf_c_boolean);
                break;
            case PROTOBUF_C_TYPE_STRING:
            case PROTOBUF_C_TYPE_MESSAGE:
                sz = sizeof(void *);
                break;
            case PROTOBUF_C_TYPE_BYTES:
                sz = sizeof(ProtobufCBinaryData);
                break;
            default:
                sz = 4;
                break;
            }
            fputc('[', f);
            for (size_t k = 0; k < n && arr != NULL; k++) {
                fputs(k ? "," : "", f);
                json_value(f, fd, arr + k * sz, depth);
            }
            fputc(']', f);
        } else {
            json_value(f, fd, p, depth);
        }
    }
    fputc('}', f);
}

static void json_value(FILE *f, const ProtobufCFieldDescriptor *fd,
                       const void *p, int depth)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        fprintf(f, "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        fprintf(f, "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        fprintf(f, "%" PRId64, *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        fprintf(f, "%" PRIu64, *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        fprintf(f, "%.9g", (double)*(const float *)p);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        fprintf(f, "%.17g", *(const double *)p);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        fputs(*(const protobuf_c_boolean *)p ? "true" : "false", f);
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = fd->descriptor;
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);
        if (ev != NULL) {
            cli_json_string(f, ev->name, strlen(ev->name));
        } else {
            fprintf(f, "%d", v); /* a value this build does not know */
        }
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)p;
        cli_json_string(f, s ? s : "", s ? strlen(s) : 0);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        fputc('"', f);
        for (size_t i = 0; i < b->len; i++) {
            fprintf(f, "%02x", b->data[i]);
        }
        fputc('"', f);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        json_msg(f, *(const ProtobufCMessage *const *)p, depth + 1);
        break;
    }
}

void cli_json_message(FILE *f, const ProtobufCMessage *m)
{
    json_msg(f, m, 0);
}

/* ---- human helpers ------------------------------------------------------- */

/* Longest value printed on a "field  value" line. */
#define KV_MAX_CHARS 1024u
/* Raw cell text before display(); the widest cells are device lists. */
#define CELL_RAW 512u
/* Stages shown from one response: the server allows 8 (RO_STAGES_MAX); a
 * response with more is shown only that far. */
#define STAGES_SHOWN_MAX 64u

static void kv(FILE *f, const char *k, const char *v)
{
    static char buf[4 * KV_MAX_CHARS + 4];
    cli__display(v, buf, KV_MAX_CHARS);
    fprintf(f, "%-20s%s\n", k, buf);
}

static void kv_u64(FILE *f, const char *k, uint64_t v)
{
    fprintf(f, "%-20s%" PRIu64 "\n", k, v);
}

static void kv_hex(FILE *f, const char *k, const ProtobufCBinaryData *b)
{
    fprintf(f, "%-20s", k);
    if (b->len == 0) {
        fputc('-', f);
    }
    for (size_t i = 0; i < b->len; i++) {
        fprintf(f, "%02x", b->data[i]);
    }
    fputc('\n', f);
}

static const char *yesno(int v)
{
    return v ? "yes" : "no";
}

/* Append s to buf (cap bytes) after sep when buf is not empty; cut short
 * silently (display() marks long cells anyway). */
static void join(char *buf, size_t cap, const char *sep, const char *s)
{
    size_t off = strlen(buf);
    if (off + 1 >= cap) {
        return;
    }
    snprintf(buf + off, cap - off, "%s%s", off ? sep : "", s ? s : "");
}

static const char *strs(char *const *v, size_t n, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        join(buf, cap, ",", v[i]);
    }
    return buf;
}

static const char *labels(Warden__V1__Label *const *l, size_t n, char *buf,
                          size_t cap)
{
    char one[CLI_LABEL_KEY_MAX + CLI_LABEL_VALUE_MAX + 2];
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        snprintf(one, sizeof one, "%s=%s", l[i]->key ? l[i]->key : "",
                 l[i]->value ? l[i]->value : "");
        join(buf, cap, ",", one);
    }
    return buf;
}

/* A table: hdr[ncols], cells row-major (nrows * ncols strings of CELL_RAW),
 * each cell cut at max_chars characters. */
static void table(FILE *f, const char *const *hdr, size_t ncols,
                  char (*cells)[CELL_RAW], size_t nrows, size_t max_chars)
{
    size_t width[16];
    char *buf = malloc(4 * max_chars + 4);
    if (buf == NULL || ncols > 16) {
        free(buf);
        return;
    }
    for (size_t c = 0; c < ncols; c++) {
        width[c] = strlen(hdr[c]);
        for (size_t r = 0; r < nrows; r++) {
            size_t w = cli__display(cells[r * ncols + c], buf, max_chars);
            width[c] = w > width[c] ? w : width[c];
        }
    }
    for (size_t r = 0; r <= nrows; r++) {
        for (size_t c = 0; c < ncols; c++) {
            size_t w;
            if (r == 0) {
                snprintf(buf, 4 * max_chars + 4, "%s", hdr[c]);
                w = strlen(hdr[c]);
            } else {
                w = cli__display(cells[(r - 1) * ncols + c], buf, max_chars);
            }
            fputs(buf, f);
            for (size_t k = 0; c + 1 < ncols && k < width[c] - w + 2; k++) {
                fputc(' ', f);
            }
        }
        fputc('\n', f);
    }
    free(buf);
}

static const char *purpose_name(int v, int full)
{
    return cli__enum_name(&warden__v1__access_purpose__descriptor,
                          "ACCESS_PURPOSE_", v, full);
}

/* "ssh,https ports 22,443 class reboot", "-" for an empty scope. */
static const char *scope_text(const Warden__V1__AccessScope *s, char *buf,
                              size_t cap)
{
    char part[CELL_RAW];
    buf[0] = '\0';
    if (s == NULL) {
        return buf;
    }
    if (s->n_protocols > 0) {
        join(buf, cap, " ", strs(s->protocols, s->n_protocols, part, sizeof part));
    }
    if (s->n_ports > 0) {
        size_t off = (size_t)snprintf(part, sizeof part, "ports ");
        for (size_t i = 0; i < s->n_ports && off < sizeof part; i++) {
            off += (size_t)snprintf(part + off, sizeof part - off, "%s%" PRIu32,
                                    i ? "," : "", s->ports[i]);
        }
        join(buf, cap, " ", part);
    }
    if (s->command_class != NULL && s->command_class[0] != '\0') {
        snprintf(part, sizeof part, "class %s", s->command_class);
        join(buf, cap, " ", part);
    }
    return buf;
}

/* ---- access --------------------------------------------------------------- */

void cli_fmt_access_policy(FILE *f, const Warden__V1__AccessPolicy *p, int json)
{
    if (json) {
        cli_json_message(f, &p->base);
        fputc('\n', f);
        return;
    }
    static const char *const hdr[] = {"PURPOSE",  "APPROVALS", "REVIEWERS",
                                      "MAX_DURATION", "MAX_USES", "PENDING_TTL"};
    enum { NC = sizeof hdr / sizeof hdr[0] };
    size_t n = p->n_rules < CLI_OPS_ROWS_MAX ? p->n_rules : CLI_OPS_ROWS_MAX;
    char (*cells)[CELL_RAW] = calloc(n * NC + 1, CELL_RAW);
    if (cells == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const Warden__V1__AccessPurposeRule *r = p->rules[i];
        char d[CLI_DURATION_FMT_MAX];
        snprintf(cells[i * NC + 0], CELL_RAW, "%s", purpose_name((int)r->purpose, 0));
        snprintf(cells[i * NC + 1], CELL_RAW, "%" PRIu32, r->approvals_required);
        cli_roles_fmt(r->reviewer_roles, cells[i * NC + 2], CELL_RAW);
        snprintf(cells[i * NC + 3], CELL_RAW, "%s", cli_duration_fmt(r->max_duration_ms, d));
        snprintf(cells[i * NC + 4], CELL_RAW, "%" PRIu32, r->max_uses);
        snprintf(cells[i * NC + 5], CELL_RAW, "%s", cli_duration_fmt(r->pending_ttl_ms, d));
    }
    table(f, hdr, NC, cells, n, CLI_CELL_MAX);
    free(cells);
    fputc('\n', f);
    kv_u64(f, "lock_view_max_lag", p->lock_view_max_lag);
    kv_u64(f, "revlog_retention", p->revlog_retention);
    kv_u64(f, "updated_index", p->updated_index);
    kv(f, "updated_by", p->updated_by);
}

static void request_lines(FILE *f, const Warden__V1__AccessRequest *r)
{
    char buf[CELL_RAW * 4], d[CLI_DURATION_FMT_MAX];
    kv(f, "request_id", r->request_id);
    kv(f, "state", cli__enum_name(&warden__v1__access_request_state__descriptor,
                                  "ACCESS_REQUEST_STATE_", (int)r->state, 0));
    snprintf(buf, sizeof buf, "%s (%s)", r->requester ? r->requester : "",
             principal_role_name(r->requester_role));
    kv(f, "requester", buf);
    kv(f, "purpose", purpose_name((int)r->purpose, 0));
    kv(f, "devices", strs(r->device_ids, r->n_device_ids, buf, sizeof buf));
    kv(f, "selector", labels(r->selector, r->n_selector, buf, sizeof buf));
    kv(f, "reason", r->reason);
    kv(f, "scope", scope_text(r->scope, buf, sizeof buf));
    kv(f, "duration", cli_duration_fmt(r->duration_ms, d));
    kv_u64(f, "max_sessions", r->max_sessions);
    kv_u64(f, "created_index", r->created_index);
    kv_u64(f, "created_time_ms", r->created_time_ms);
    kv_u64(f, "expires_time_ms", r->expires_time_ms);
    for (size_t i = 0; i < r->n_votes; i++) {
        const Warden__V1__AccessVote *v = r->votes[i];
        snprintf(buf, sizeof buf, "%s %s (%s) at index %" PRIu64 ": %s",
                 v->approve ? "APPROVE" : "DENY", v->reviewer ? v->reviewer : "",
                 principal_role_name(v->reviewer_role), v->index,
                 v->comment && v->comment[0] ? v->comment : "-");
        kv(f, "vote", buf);
    }
    kv(f, "grant_id", r->grant_id);
    kv_u64(f, "decided_index", r->decided_index);
}

void cli_fmt_access_request(FILE *f, const Warden__V1__AccessRequest *r,
                            const Warden__V1__AccessGrant *grant, int json)
{
    if (json) {
        fputs("{\"request\":", f);
        cli_json_message(f, r ? &r->base : NULL);
        fputs(",\"grant\":", f);
        cli_json_message(f, grant ? &grant->base : NULL);
        fputs("}\n", f);
        return;
    }
    if (r != NULL) {
        request_lines(f, r);
    }
    if (grant != NULL) {
        fputc('\n', f);
        cli_fmt_access_grant(f, grant, 0);
    }
}

static const char *deny_name(int v)
{
    return cli__enum_name(&warden__v1__access_deny_reason__descriptor,
                          "ACCESS_DENY_REASON_", v, 0);
}

void cli_fmt_access_check(FILE *f, const Warden__V1__CheckAccessResponse *c,
                          int json)
{
    if (json) {
        cli_json_message(f, &c->base);
        fputc('\n', f);
        return;
    }
    char d[CLI_DURATION_FMT_MAX], buf[64];
    if (c->decision == WARDEN__V1__ACCESS_DECISION__ACCESS_DECISION_ALLOW) {
        fputs("ALLOW\n", f);
        kv(f, "grant_id", c->grant_id);
        snprintf(buf, sizeof buf, "%s (%" PRIu64 " ms)",
                 cli_duration_fmt(c->remaining_ms, d), c->remaining_ms);
        kv(f, "remaining", buf);
        kv_u64(f, "remaining_uses", c->remaining_uses);
        kv_u64(f, "revision", c->revision);
        return;
    }
    if (c->decision == WARDEN__V1__ACCESS_DECISION__ACCESS_DECISION_DENY) {
        fprintf(f, "DENY %s\n", deny_name((int)c->reason));
    } else {
        fprintf(f, "%s\n", cli__enum_name(&warden__v1__access_decision__descriptor,
                                          "ACCESS_DECISION_", (int)c->decision, 0));
    }
    kv(f, "grant_id", c->grant_id);
    kv(f, "lock_id", c->lock_id);
    kv_u64(f, "revision", c->revision);
}

static const char *grant_state(int v)
{
    return cli__enum_name(&warden__v1__access_grant_state__descriptor,
                          "ACCESS_GRANT_STATE_", v, 0);
}

void cli_fmt_access_grant(FILE *f, const Warden__V1__AccessGrant *g, int json)
{
    if (json) {
        cli_json_message(f, &g->base);
        fputc('\n', f);
        return;
    }
    char buf[CELL_RAW * 4];
    kv(f, "grant_id", g->grant_id);
    kv(f, "state", grant_state((int)g->state));
    kv(f, "principal", g->principal);
    kv(f, "request_id", g->request_id);
    kv(f, "devices", strs(g->device_ids, g->n_device_ids, buf, sizeof buf));
    kv(f, "purpose", purpose_name((int)g->purpose, 0));
    kv(f, "scope", scope_text(g->scope, buf, sizeof buf));
    kv_u64(f, "valid_from_ms", g->valid_from_ms);
    kv_u64(f, "expires_ms", g->expires_ms);
    snprintf(buf, sizeof buf, "%" PRIu32 " of %" PRIu32 " left", g->uses_left,
             g->max_uses);
    kv(f, "uses", buf);
    kv_u64(f, "created_index", g->created_index);
    if (g->revoked_index != 0) {
        snprintf(buf, sizeof buf, "by %s at index %" PRIu64 ": %s",
                 g->revoked_by ? g->revoked_by : "", g->revoked_index,
                 g->revoke_reason ? g->revoke_reason : "");
        kv(f, "revoked", buf);
    } else {
        kv(f, "revoked", "");
    }
}

void cli_fmt_access_grants(FILE *f, Warden__V1__AccessGrant *const *g, size_t n,
                           const char *next_token, int json)
{
    if (n > CLI_TABLE_ROWS_MAX) {
        n = CLI_TABLE_ROWS_MAX;
    }
    if (json) {
        fputs("{\"grants\":[", f);
        for (size_t i = 0; i < n; i++) {
            fputs(i ? "," : "", f);
            cli_json_message(f, &g[i]->base);
        }
        fputs("],\"next_page_token\":", f);
        cli_json_string(f, next_token ? next_token : "",
                        next_token ? strlen(next_token) : 0);
        fputs("}\n", f);
        return;
    }
    static const char *const hdr[] = {"GRANT_ID", "STATE",   "PRINCIPAL", "PURPOSE",
                                      "DEVICES",  "USES_LEFT", "EXPIRES_MS"};
    enum { NC = sizeof hdr / sizeof hdr[0] };
    char (*cells)[CELL_RAW] = calloc(n * NC + 1, CELL_RAW);
    if (cells == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char(*row)[CELL_RAW] = cells + i * NC;
        snprintf(row[0], CELL_RAW, "%s", g[i]->grant_id ? g[i]->grant_id : "");
        snprintf(row[1], CELL_RAW, "%s", grant_state((int)g[i]->state));
        snprintf(row[2], CELL_RAW, "%s", g[i]->principal ? g[i]->principal : "");
        snprintf(row[3], CELL_RAW, "%s", purpose_name((int)g[i]->purpose, 0));
        strs(g[i]->device_ids, g[i]->n_device_ids, row[4], CELL_RAW);
        snprintf(row[5], CELL_RAW, "%" PRIu32 "/%" PRIu32, g[i]->uses_left,
                 g[i]->max_uses);
        snprintf(row[6], CELL_RAW, "%" PRIu64, g[i]->expires_ms);
    }
    table(f, hdr, NC, cells, n, CLI_CELL_MAX);
    free(cells);
    if (next_token != NULL && next_token[0] != '\0') {
        char tok[4 * CLI_CELL_MAX * 4 + 4];
        cli__display(next_token, tok, CLI_CELL_MAX * 4);
        fprintf(f, "(more: --page-token %s, or --all)\n", tok);
    }
}

static const char *lock_kind(int v)
{
    return cli__enum_name(&warden__v1__lock_target_kind__descriptor,
                          "LOCK_TARGET_KIND_", v, 0);
}

/* What a lock (or a LOCK event) targets: the value, the selector, or "*". */
static const char *lock_target(int kind, const char *value,
                               Warden__V1__Label *const *sel, size_t nsel,
                               char *buf, size_t cap)
{
    if (kind == WARDEN__V1__LOCK_TARGET_KIND__LOCK_TARGET_KIND_ALL) {
        snprintf(buf, cap, "*");
    } else if (kind == WARDEN__V1__LOCK_TARGET_KIND__LOCK_TARGET_KIND_LABEL_SELECTOR) {
        labels(sel, nsel, buf, cap);
    } else {
        snprintf(buf, cap, "%s", value ? value : "");
    }
    return buf;
}

void cli_fmt_access_lock(FILE *f, const Warden__V1__AccessLock *l, int json)
{
    if (json) {
        cli_json_message(f, &l->base);
        fputc('\n', f);
        return;
    }
    char buf[CELL_RAW * 4];
    kv(f, "lock_id", l->lock_id);
    kv(f, "kind", lock_kind((int)l->kind));
    kv(f, "target", lock_target((int)l->kind, l->value, l->selector, l->n_selector,
                                buf, sizeof buf));
    kv(f, "reason", l->reason);
    kv(f, "created_by", l->created_by);
    kv_u64(f, "created_index", l->created_index);
    kv_u64(f, "created_time_ms", l->created_time_ms);
    if (l->expires_ms == 0) {
        kv(f, "expires_ms", "none (until unlock)");
    } else {
        kv_u64(f, "expires_ms", l->expires_ms);
    }
    kv(f, "lazy", yesno(l->lazy));
    kv(f, "unlocked", yesno(l->unlocked));
    kv_u64(f, "revoked_now", l->revoked_now);
}

void cli_fmt_revocations(FILE *f, const Warden__V1__WatchRevocationsResponse *w,
                         int json)
{
    if (json) {
        cli_json_message(f, &w->base);
        fputc('\n', f);
        return;
    }
    if (w->n_events == 0) {
        fprintf(f, "progress  revision %" PRIu64 "\n", w->revision);
        return;
    }
    static char line[4 * CELL_RAW * 4], shown[4 * sizeof line + 4];
    char part[CELL_RAW * 2], list[CELL_RAW];
    for (size_t i = 0; i < w->n_events; i++) {
        const Warden__V1__RevocationEvent *ev = w->events[i];
        snprintf(line, sizeof line, "revision %" PRIu64 "  index %" PRIu64
                 "  time_ms %" PRIu64 "  %s", ev->revision, ev->index, ev->time_ms,
                 cli__enum_name(&warden__v1__revocation_kind__descriptor,
                                "REVOCATION_KIND_", (int)ev->kind, 0));
        if (ev->n_gateways > 0) {
            snprintf(part, sizeof part, "gateways %s",
                     strs(ev->gateways, ev->n_gateways, list, sizeof list));
            join(line, sizeof line, "  ", part);
        }
        if (ev->n_device_ids > 0) {
            snprintf(part, sizeof part, "devices %s",
                     strs(ev->device_ids, ev->n_device_ids, list, sizeof list));
            join(line, sizeof line, "  ", part);
        }
        if (ev->principal && ev->principal[0]) {
            snprintf(part, sizeof part, "principal %s", ev->principal);
            join(line, sizeof line, "  ", part);
        }
        if (ev->grant_id && ev->grant_id[0]) {
            snprintf(part, sizeof part, "grant %s", ev->grant_id);
            join(line, sizeof line, "  ", part);
        }
        if (ev->lock_id && ev->lock_id[0]) {
            snprintf(part, sizeof part, "lock %s %s %s", ev->lock_id,
                     lock_kind((int)ev->lock_kind),
                     lock_target((int)ev->lock_kind, ev->lock_value, ev->selector,
                                 ev->n_selector, list, sizeof list));
            join(line, sizeof line, "  ", part);
            if (ev->expires_ms != 0) {
                snprintf(part, sizeof part, "expires_ms %" PRIu64, ev->expires_ms);
                join(line, sizeof line, "  ", part);
            }
        }
        cli__display(line, shown, sizeof line);
        fprintf(f, "%s\n", shown);
    }
}

/* ---- rollouts --------------------------------------------------------------- */

void cli_fmt_release_key(FILE *f, const Warden__V1__ReleaseKey *k, int json)
{
    if (json) {
        cli_json_message(f, &k->base);
        fputc('\n', f);
        return;
    }
    char buf[CELL_RAW];
    kv(f, "key_id", k->key_id);
    kv_hex(f, "public_key", &k->public_key);
    kv_u64(f, "created_index", k->created_index);
    kv(f, "created_by", k->created_by);
    if (k->revoked) {
        snprintf(buf, sizeof buf, "yes, by %s at index %" PRIu64 ": %s",
                 k->revoked_by ? k->revoked_by : "", k->revoked_index,
                 k->revoke_reason ? k->revoke_reason : "");
        kv(f, "revoked", buf);
    } else {
        kv(f, "revoked", "no");
    }
}

void cli_fmt_release(FILE *f, const Warden__V1__Release *r, int json)
{
    if (json) {
        cli_json_message(f, &r->base);
        fputc('\n', f);
        return;
    }
    char buf[CELL_RAW * 4];
    kv_u64(f, "release_id", r->release_id);
    kv(f, "version", r->version);
    kv_u64(f, "release_counter", r->release_counter);
    kv_hex(f, "artifact_sha256", &r->artifact_sha256);
    kv_u64(f, "artifact_size", r->artifact_size);
    kv(f, "hardware_models", strs(r->hardware_models, r->n_hardware_models, buf,
                                  sizeof buf));
    kv(f, "key_id", r->key_id);
    snprintf(buf, sizeof buf, "%zu bytes", r->manifest.len);
    kv(f, "manifest", buf);
    kv_hex(f, "signature", &r->signature);
    if (r->rollback_of != 0) {
        snprintf(buf, sizeof buf, "%" PRIu64 " (%s)", r->rollback_of,
                 r->reason ? r->reason : "");
        kv(f, "rollback_of", buf);
    } else {
        kv(f, "rollback_of", "");
    }
    kv_u64(f, "created_index", r->created_index);
    kv_u64(f, "created_time_ms", r->created_time_ms);
    kv(f, "created_by", r->created_by);
}

static const char *ro_state(int v)
{
    return cli__enum_name(&warden__v1__rollout_state__descriptor, "ROLLOUT_STATE_",
                          v, 0);
}

/* "1%", "50 devices", "50 devices of 10%". */
static const char *share_text(const Warden__V1__RolloutStage *s, char *buf,
                              size_t cap)
{
    char p[CLI_BP_FMT_MAX];
    if (s->max_devices == 0) {
        snprintf(buf, cap, "%s", cli_bp_fmt(s->percent_bp, p));
    } else if (s->percent_bp == 0 || s->percent_bp >= CLI_BP) {
        snprintf(buf, cap, "%" PRIu32 " device%s", s->max_devices,
                 s->max_devices == 1 ? "" : "s");
    } else {
        snprintf(buf, cap, "%" PRIu32 " device%s of %s", s->max_devices,
                 s->max_devices == 1 ? "" : "s", cli_bp_fmt(s->percent_bp, p));
    }
    return buf;
}

static uint64_t terminal(const Warden__V1__StageCounters *c)
{
    return c->succeeded + c->failed + c->rejected + c->rolled_back + c->timed_out;
}

/* Where stage i stands in rollout r. */
static const char *stage_status(const Warden__V1__Rollout *r, uint32_t i)
{
    switch ((int)r->state) {
    case WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_DRAFT:
        return "waiting";
    case WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_COMPLETED:
        return "done";
    default:
        break;
    }
    if (i < r->current_stage) {
        return "done";
    }
    if (i > r->current_stage) {
        return "waiting";
    }
    switch ((int)r->state) {
    case WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_RUNNING:
        return "current";
    case WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_PAUSED:
        return "paused";
    case WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_ABORTED:
        return "aborted";
    default:
        return "?";
    }
}

static void rollout_header(FILE *f, const Warden__V1__Rollout *r,
                           const Warden__V1__Release *rel)
{
    char buf[CELL_RAW * 4], part[CELL_RAW * 2], scratch[CELL_RAW];
    snprintf(buf, sizeof buf, "%" PRIu64 "%s%s", r->rollout_id,
             r->name && r->name[0] ? "  " : "", r->name ? r->name : "");
    kv(f, "rollout", buf);
    if (r->state == WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_RUNNING ||
        r->state == WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_PAUSED ||
        r->state == WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_ABORTED) {
        const char *share = "";
        if (r->current_stage < r->n_stages) {
            share = share_text(r->stages[r->current_stage], part, sizeof part);
        }
        snprintf(buf, sizeof buf, "%s, stage %" PRIu32 " of %zu (%s)",
                 ro_state((int)r->state), r->current_stage, r->n_stages, share);
    } else {
        snprintf(buf, sizeof buf, "%s", ro_state((int)r->state));
    }
    kv(f, "state", buf);
    if (rel != NULL) {
        snprintf(buf, sizeof buf, "%" PRIu64 "  version %s  counter %" PRIu64,
                 rel->release_id, rel->version ? rel->version : "",
                 rel->release_counter);
    } else {
        snprintf(buf, sizeof buf, "%" PRIu64 "  counter %" PRIu64, r->release_id,
                 r->release_counter);
    }
    kv(f, "release", buf);
    buf[0] = '\0';
    if (r->selector != NULL) {
        const Warden__V1__RolloutSelector *s = r->selector;
        if (s->n_labels > 0) {
            snprintf(part, sizeof part, "labels %s",
                     labels(s->labels, s->n_labels, scratch, sizeof scratch));
            join(buf, sizeof buf, "  ", part);
        }
        if (s->hardware_model && s->hardware_model[0]) {
            snprintf(part, sizeof part, "model %s", s->hardware_model);
            join(buf, sizeof buf, "  ", part);
        }
        if (s->gateway_id && s->gateway_id[0]) {
            snprintf(part, sizeof part, "gateway %s", s->gateway_id);
            join(buf, sizeof buf, "  ", part);
        }
    }
    kv(f, "selector", buf[0] ? buf : "every compatible device");
    if (r->only_installed_release != 0) {
        snprintf(buf, sizeof buf, "only devices with release %" PRIu64 " installed",
                 r->only_installed_release);
        kv(f, "rollback_for", buf);
    }
    kv(f, "reason", r->reason);
    snprintf(buf, sizeof buf, "index %" PRIu64 "  time_ms %" PRIu64 "  by %s",
             r->created_index, r->created_time_ms,
             r->created_by && r->created_by[0] ? r->created_by : "-");
    kv(f, "created", buf);
    snprintf(buf, sizeof buf, "index %" PRIu64 "  time_ms %" PRIu64,
             r->updated_index, r->updated_time_ms);
    kv(f, "updated", buf);
    if (r->rollback_rollout_id != 0) {
        kv_u64(f, "rollback_rollout", r->rollback_rollout_id);
    }
    kv_u64(f, "refused_transitions", r->refused_transitions);
}

static void stage_table(FILE *f, const Warden__V1__Rollout *r)
{
    static const char *const hdr[] = {
        "STAGE",     "NAME",   "SHARE",    "STATUS",      "PROGRESS",
        "ASSIGNED",  "PENDING", "DOWNLOADING", "INSTALLING", "SUCCEEDED",
        "FAILED",    "REJECTED", "ROLLED_BACK", "TIMED_OUT"};
    enum { NC = sizeof hdr / sizeof hdr[0] };
    size_t n = r->n_stages < STAGES_SHOWN_MAX ? r->n_stages : STAGES_SHOWN_MAX;
    char (*cells)[CELL_RAW] = calloc(n * NC + 1, CELL_RAW);
    if (cells == NULL) {
        return;
    }
    static const Warden__V1__StageCounters zero = WARDEN__V1__STAGE_COUNTERS__INIT;
    for (size_t i = 0; i < n; i++) {
        char(*row)[CELL_RAW] = cells + i * NC;
        const Warden__V1__RolloutStage *s = r->stages[i];
        const Warden__V1__StageCounters *c =
            i < r->n_counters && r->counters[i] ? r->counters[i] : &zero;
        uint64_t term = terminal(c);
        uint64_t busy = term + c->downloading + c->installing;
        char bar[CLI_BAR_BUF];
        snprintf(row[0], CELL_RAW, "%zu", i);
        snprintf(row[1], CELL_RAW, "%s", s->name ? s->name : "");
        share_text(s, row[2], CELL_RAW);
        snprintf(row[3], CELL_RAW, "%s", stage_status(r, (uint32_t)i));
        snprintf(row[4], CELL_RAW, "%s", cli_progress_bar(term, c->assigned, bar));
        snprintf(row[5], CELL_RAW, "%" PRIu64, c->assigned);
        snprintf(row[6], CELL_RAW, "%" PRIu64,
                 c->assigned > busy ? c->assigned - busy : 0);
        snprintf(row[7], CELL_RAW, "%" PRIu64, c->downloading);
        snprintf(row[8], CELL_RAW, "%" PRIu64, c->installing);
        snprintf(row[9], CELL_RAW, "%" PRIu64, c->succeeded);
        snprintf(row[10], CELL_RAW, "%" PRIu64, c->failed);
        snprintf(row[11], CELL_RAW, "%" PRIu64, c->rejected);
        snprintf(row[12], CELL_RAW, "%" PRIu64, c->rolled_back);
        snprintf(row[13], CELL_RAW, "%" PRIu64, c->timed_out);
    }
    table(f, hdr, NC, cells, n, CLI_CELL_MAX);
    free(cells);
}

/* The gate table: each threshold of the stage against the actual value. */
static void gate_table(FILE *f, const Warden__V1__Rollout *r,
                       Warden__V1__StageGate *const *g, size_t ng)
{
    static const char *const hdr[] = {"GATE",    "REPORTED", "MIN_REPORTED",
                                      "SUCCESS", "FAILURE",  "BAKE",
                                      "ADVANCE", "EXPLAIN"};
    enum { NC = sizeof hdr / sizeof hdr[0] };
    if (ng > STAGES_SHOWN_MAX) {
        ng = STAGES_SHOWN_MAX;
    }
    char (*cells)[CELL_RAW] = calloc(ng * NC + 1, CELL_RAW);
    if (cells == NULL) {
        return;
    }
    size_t rows = 0;
    for (size_t i = 0; i < ng; i++) {
        const Warden__V1__StageGate *x = g[i];
        if (x == NULL || x->stage >= r->n_stages) {
            continue;
        }
        const Warden__V1__RolloutStage *s = r->stages[x->stage];
        char(*row)[CELL_RAW] = cells + rows * NC;
        char a[CLI_BP_FMT_MAX], b[CLI_BP_FMT_MAX], d[CLI_DURATION_FMT_MAX],
            d2[CLI_DURATION_FMT_MAX];
        snprintf(row[0], CELL_RAW, "%" PRIu32, x->stage);
        snprintf(row[1], CELL_RAW, "%" PRIu64, x->reported);
        snprintf(row[2], CELL_RAW, "%s (%" PRIu64 " %s %" PRIu32 ")",
                 x->min_reported_ok ? "pass" : "FAIL", x->reported,
                 x->min_reported_ok ? ">=" : "<", s->min_reported);
        if (x->reported == 0) {
            snprintf(row[3], CELL_RAW, "%s (no reports; need %s)",
                     x->success_ok ? "pass" : "FAIL",
                     cli_bp_fmt(s->success_ratio_bp, b));
        } else {
            snprintf(row[3], CELL_RAW, "%s (%s %s %s)",
                     x->success_ok ? "pass" : "FAIL", cli_bp_fmt(x->success_bp, a),
                     x->success_ok ? ">=" : "<", cli_bp_fmt(s->success_ratio_bp, b));
        }
        uint64_t need = s->min_reported > 0 ? s->min_reported : 1;
        if (x->failure_exceeded) {
            snprintf(row[4], CELL_RAW, "EXCEEDED (%s, abort above %s)",
                     cli_bp_fmt(x->failure_bp, a),
                     s->failure_ratio_bp >= CLI_BP ? "per-type limits"
                                                   : cli_bp_fmt(s->failure_ratio_bp, b));
        } else if (x->reported < need) {
            snprintf(row[4], CELL_RAW, "not judged (%" PRIu64 " of %" PRIu64
                     " reports)", x->reported, need);
        } else if (s->failure_ratio_bp >= CLI_BP) {
            snprintf(row[4], CELL_RAW, "ok (%s, total check off)",
                     cli_bp_fmt(x->failure_bp, a));
        } else {
            snprintf(row[4], CELL_RAW, "ok (%s <= %s)", cli_bp_fmt(x->failure_bp, a),
                     cli_bp_fmt(s->failure_ratio_bp, b));
        }
        const Warden__V1__StageCounters *c =
            x->stage < r->n_counters ? r->counters[x->stage] : NULL;
        if (x->bake_ok) {
            snprintf(row[5], CELL_RAW, "pass (%s)", cli_duration_fmt(s->bake_ms, d));
        } else if (c == NULL || c->started_time_ms == 0) {
            snprintf(row[5], CELL_RAW, "FAIL (not started; %s)",
                     cli_duration_fmt(s->bake_ms, d));
        } else {
            snprintf(row[5], CELL_RAW, "FAIL (%s of %s left)",
                     cli_duration_fmt(x->bake_remaining_ms, d),
                     cli_duration_fmt(s->bake_ms, d2));
        }
        snprintf(row[6], CELL_RAW, "%s",
                 x->advance_ready ? (s->auto_advance ? "ready (auto)" : "ready (manual)")
                                  : "no");
        snprintf(row[7], CELL_RAW, "%s", x->explain ? x->explain : "");
        rows++;
    }
    table(f, hdr, NC, cells, rows, CLI_EXPLAIN_MAX);
    free(cells);
}

void cli_fmt_rollout_status(FILE *f, const Warden__V1__GetRolloutResponse *s,
                            int json)
{
    if (json) {
        cli_json_message(f, &s->base);
        fputc('\n', f);
        return;
    }
    if (s->rollout == NULL) {
        fputs("(no rollout in the response)\n", f);
        return;
    }
    rollout_header(f, s->rollout, s->release);
    fputc('\n', f);
    stage_table(f, s->rollout);
    if (s->n_gates > 0) {
        fputc('\n', f);
        gate_table(f, s->rollout, s->gates, s->n_gates);
    }
}

void cli_fmt_rollout_resp(FILE *f, const Warden__V1__RolloutResponse *r, int json)
{
    if (json) {
        cli_json_message(f, &r->base);
        fputc('\n', f);
        return;
    }
    if (r->rollout != NULL) {
        rollout_header(f, r->rollout, NULL);
        fputc('\n', f);
        stage_table(f, r->rollout);
    }
    if (r->rollback_release_id != 0 || r->rollback_rollout_id != 0) {
        fputc('\n', f);
        kv_u64(f, "rollback_release", r->rollback_release_id);
        kv_u64(f, "rollback_rollout", r->rollback_rollout_id);
    }
}

void cli_fmt_desired(FILE *f, const Warden__V1__GetDesiredStateResponse *d,
                     int json)
{
    if (json) {
        cli_json_message(f, &d->base);
        fputc('\n', f);
        return;
    }
    char buf[CELL_RAW];
    if (d->has_target && d->release != NULL) {
        snprintf(buf, sizeof buf, "release %" PRIu64 "  version %s  counter %" PRIu64
                 "  (rollout %" PRIu64 ")", d->release->release_id,
                 d->release->version ? d->release->version : "",
                 d->release->release_counter, d->rollout_id);
        kv(f, "target", buf);
    } else {
        kv(f, "target", "none");
    }
    kv_u64(f, "installed_counter", d->installed_counter);
    kv(f, "key_id", d->key_id);
    kv_u64(f, "seq", d->seq);
    kv_u64(f, "key_epoch", d->key_epoch);
    kv_hex(f, "envelope", &d->envelope);
    kv_hex(f, "signature", &d->signature);
}

void cli_fmt_report(FILE *f, const Warden__V1__ReportUpdateStatusResponse *r,
                    int json)
{
    if (json) {
        cli_json_message(f, &r->base);
        fputc('\n', f);
        return;
    }
    kv(f, "result", cli__enum_name(&warden__v1__report_result__descriptor,
                                   "REPORT_RESULT_", (int)r->result, 0));
    kv_u64(f, "highest_counter", r->highest_counter);
    kv(f, "rollout_state", ro_state((int)r->rollout_state));
    kv_u64(f, "current_stage", r->current_stage);
}
