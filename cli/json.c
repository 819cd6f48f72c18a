#include "json.h"

#include <string.h>

/* A cursor over the input, {p, end}: reading past end is a parse error. */
struct cur {
    const char *p, *end, *start;
};

static void skip_ws(struct cur *c)
{
    while (c->p < c->end &&
           (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) {
        c->p++;
    }
}

static int fail(struct cur *c, struct werr *e, int code, const char *what)
{
    return werr_set(e, code, "%s at byte %zu", what, (size_t)(c->p - c->start));
}

/* A string starting at '"': leaves c after the closing quote, *raw and *len the
 * contents. Escapes are checked here for shape, decoded by cli_json_str. */
static int scan_string(struct cur *c, const char **raw, size_t *len,
                       struct werr *e)
{
    c->p++; /* the opening quote */
    const char *b = c->p;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            *raw = b;
            *len = (size_t)(c->p - b);
            c->p++;
            return 0;
        }
        if (ch < 0x20) {
            return fail(c, e, WERR_INVALID, "control byte in string");
        }
        if (ch == '\\') {
            if (c->end - c->p < 2) {
                break;
            }
            char x = c->p[1];
            if (x == 'u') {
                if (c->end - c->p < 6) {
                    break;
                }
                for (int i = 2; i < 6; i++) {
                    char h = c->p[i];
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
                          (h >= 'A' && h <= 'F'))) {
                        return fail(c, e, WERR_INVALID, "bad \\u escape");
                    }
                }
                c->p += 6;
                continue;
            }
            if (strchr("\"\\/bfnrt", x) == NULL || x == '\0') {
                return fail(c, e, WERR_INVALID, "bad escape");
            }
            c->p += 2;
            continue;
        }
        c->p++;
    }
    return fail(c, e, WERR_INVALID, "unterminated string");
}

static int scan_number(struct cur *c)
{
    const char *b = c->p;
    if (c->p < c->end && *c->p == '-') {
        c->p++;
    }
    const char *d = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        c->p++;
    }
    if (c->p == d) {
        return -1;
    }
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        const char *f = c->p;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            c->p++;
        }
        if (c->p == f) {
            return -1;
        }
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) {
            c->p++;
        }
        const char *x = c->p;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            c->p++;
        }
        if (c->p == x) {
            return -1;
        }
    }
    return c->p > b ? 0 : -1;
}

static int scan_value(struct cur *c, int depth, enum cli_json_type *type,
                      const char **raw, size_t *len, struct werr *e);

/* An object or array starting at c->p, only checked (members not kept). */
static int scan_container(struct cur *c, int depth, struct werr *e)
{
    char open = *c->p;
    char close = open == '{' ? '}' : ']';
    if (depth >= CLI_JSON_DEPTH_MAX) {
        return fail(c, e, WERR_LIMIT, "nested too deep");
    }
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 0;
    }
    for (;;) {
        enum cli_json_type t;
        const char *r;
        size_t l;
        skip_ws(c);
        if (open == '{') {
            if (c->p >= c->end || *c->p != '"') {
                return fail(c, e, WERR_INVALID, "want a key");
            }
            if (scan_string(c, &r, &l, e) != 0) {
                return WERR_INVALID;
            }
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':') {
                return fail(c, e, WERR_INVALID, "want ':'");
            }
            c->p++;
        }
        int rc = scan_value(c, depth + 1, &t, &r, &l, e);
        if (rc != 0) {
            return rc;
        }
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return 0;
        }
        return fail(c, e, WERR_INVALID, "want ',' or a closing bracket");
    }
}

static int scan_value(struct cur *c, int depth, enum cli_json_type *type,
                      const char **raw, size_t *len, struct werr *e)
{
    skip_ws(c);
    if (c->p >= c->end) {
        return fail(c, e, WERR_INVALID, "want a value");
    }
    const char *b = c->p;
    char ch = *c->p;
    if (ch == '"') {
        *type = CLI_JSON_STRING;
        return scan_string(c, raw, len, e);
    }
    if (ch == '{' || ch == '[') {
        int rc = scan_container(c, depth, e);
        if (rc != 0) {
            return rc;
        }
        *type = ch == '{' ? CLI_JSON_OBJECT : CLI_JSON_ARRAY;
    } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
        if (scan_number(c) != 0) {
            return fail(c, e, WERR_INVALID, "bad number");
        }
        *type = CLI_JSON_NUMBER;
    } else {
        static const struct {
            const char *word;
            enum cli_json_type t;
        } words[] = {{"true", CLI_JSON_TRUE},
                     {"false", CLI_JSON_FALSE},
                     {"null", CLI_JSON_NULL}};
        size_t i;
        for (i = 0; i < sizeof words / sizeof words[0]; i++) {
            size_t wl = strlen(words[i].word);
            if ((size_t)(c->end - c->p) >= wl &&
                memcmp(c->p, words[i].word, wl) == 0) {
                c->p += wl;
                *type = words[i].t;
                break;
            }
        }
        if (i == sizeof words / sizeof words[0]) {
            return fail(c, e, WERR_INVALID, "want a value");
        }
    }
    *raw = b;
    *len = (size_t)(c->p - b);
    return 0;
}

int cli_json_object_parse(const char *s, size_t len, struct cli_json_field *f,
                          size_t cap, size_t *n, struct werr *e)
{
    struct cur c = {.p = s, .end = s + len, .start = s};
    *n = 0;
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{') {
        return fail(&c, e, WERR_INVALID, "want a JSON object");
    }
    c.p++;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}') {
        c.p++;
    } else {
        for (;;) {
            skip_ws(&c);
            if (c.p >= c.end || *c.p != '"') {
                return fail(&c, e, WERR_INVALID, "want a key");
            }
            const char *kraw;
            size_t klen;
            if (scan_string(&c, &kraw, &klen, e) != 0) {
                return WERR_INVALID;
            }
            if (*n == cap) {
                return fail(&c, e, WERR_LIMIT, "too many members");
            }
            struct cli_json_field *fl = &f[*n];
            struct cli_json_field kf = {.type = CLI_JSON_STRING, .raw = kraw,
                                        .raw_len = klen};
            size_t kl;
            int rc = cli_json_str(&kf, fl->key, sizeof fl->key, &kl);
            if (rc != 0) {
                return fail(&c, e, rc, rc == WERR_LIMIT ? "key too long"
                                                        : "bad key");
            }
            if (cli_json_find(f, *n, fl->key) != NULL) {
                return werr_set(e, WERR_INVALID, "duplicate key \"%s\"",
                                fl->key);
            }
            skip_ws(&c);
            if (c.p >= c.end || *c.p != ':') {
                return fail(&c, e, WERR_INVALID, "want ':'");
            }
            c.p++;
            rc = scan_value(&c, 0, &fl->type, &fl->raw, &fl->raw_len, e);
            if (rc != 0) {
                return rc;
            }
            (*n)++;
            skip_ws(&c);
            if (c.p < c.end && *c.p == ',') {
                c.p++;
                continue;
            }
            if (c.p < c.end && *c.p == '}') {
                c.p++;
                break;
            }
            return fail(&c, e, WERR_INVALID, "want ',' or '}'");
        }
    }
    skip_ws(&c);
    if (c.p != c.end) {
        return fail(&c, e, WERR_INVALID, "trailing bytes after the object");
    }
    return 0;
}

const struct cli_json_field *cli_json_find(const struct cli_json_field *f,
                                           size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(f[i].key, key) == 0) {
            return &f[i];
        }
    }
    return NULL;
}

static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        v <<= 4;
        v |= (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
    }
    return v;
}

int cli_json_str(const struct cli_json_field *f, char *out, size_t cap,
                 size_t *len)
{
    if (f->type != CLI_JSON_STRING || cap == 0) {
        return WERR_INVALID;
    }
    size_t o = 0;
    const char *p = f->raw, *end = f->raw + f->raw_len;
    while (p < end) {
        uint8_t buf[4];
        size_t bl = 0;
        if (*p != '\\') {
            buf[bl++] = (uint8_t)*p++;
        } else {
            char x = p[1]; /* scan_string checked the shape */
            p += 2;
            if (x != 'u') {
                static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
                buf[bl++] = (uint8_t)to[strchr(from, x) - from];
            } else {
                unsigned cp = hex4(p);
                p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    /* RFC 8259 §7: a surrogate pair, as two escapes. */
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u') {
                        return WERR_INVALID;
                    }
                    unsigned lo = hex4(p + 2);
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        return WERR_INVALID;
                    }
                    p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return WERR_INVALID;
                }
                if (cp == 0) {
                    return WERR_INVALID;
                }
                if (cp < 0x80) {
                    buf[bl++] = (uint8_t)cp;
                } else if (cp < 0x800) {
                    buf[bl++] = (uint8_t)(0xC0 | (cp >> 6));
                    buf[bl++] = (uint8_t)(0x80 | (cp & 0x3F));
                } else if (cp < 0x10000) {
                    buf[bl++] = (uint8_t)(0xE0 | (cp >> 12));
                    buf[bl++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                    buf[bl++] = (uint8_t)(0x80 | (cp & 0x3F));
                } else {
                    buf[bl++] = (uint8_t)(0xF0 | (cp >> 18));
                    buf[bl++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
                    buf[bl++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                    buf[bl++] = (uint8_t)(0x80 | (cp & 0x3F));
                }
            }
        }
        if (o + bl >= cap) {
            return WERR_LIMIT;
        }
        memcpy(out + o, buf, bl);
        o += bl;
    }
    out[o] = '\0';
    *len = o;
    return 0;
}

int cli_json_u64(const struct cli_json_field *f, uint64_t *v)
{
    if (f->type != CLI_JSON_NUMBER || f->raw_len == 0 || f->raw_len > 20 ||
        (f->raw_len > 1 && f->raw[0] == '0')) {
        return WERR_INVALID;
    }
    uint64_t x = 0;
    for (size_t i = 0; i < f->raw_len; i++) {
        char d = f->raw[i];
        if (d < '0' || d > '9') {
            return WERR_INVALID;
        }
        unsigned dv = (unsigned)(d - '0');
        if (x > (UINT64_MAX - dv) / 10) {
            return WERR_INVALID;
        }
        x = x * 10 + dv;
    }
    *v = x;
    return 0;
}

int cli_json_i32(const struct cli_json_field *f, int32_t *v)
{
    if (f->type != CLI_JSON_NUMBER || f->raw_len == 0) {
        return WERR_INVALID;
    }
    struct cli_json_field mag = *f;
    int neg = f->raw[0] == '-';
    if (neg) {
        mag.raw++;
        mag.raw_len--;
    }
    uint64_t x;
    if (cli_json_u64(&mag, &x) != 0 || x > (neg ? 2147483648u : 2147483647u)) {
        return WERR_INVALID;
    }
    *v = neg ? (int32_t)(-(int64_t)x) : (int32_t)x;
    return 0;
}
