/* json.h - a small, strict reader for the one-object-per-line JSON that
 * wardenctl reads back: audit export files (cli/auditfile.h) and
 * `device enroll-batch` input.
 *
 * Pure: no I/O, no allocation. cli_json_object_parse() splits one JSON
 * object (RFC 8259) into its members without copying: each value is a span
 * of the input, decoded on demand (cli_json_str, cli_json_u64, ...). Nested
 * objects and arrays are checked and returned as spans, so a member can be
 * parsed again as an object. Duplicate keys are an error: two readers
 * picking different duplicates is how a verified file would say one thing
 * and mean another. */
#ifndef WARDEN_CLI_JSON_H
#define WARDEN_CLI_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"

/* Members of one object; ours have at most ~20. */
#define CLI_JSON_FIELDS_MAX 48
/* Longest key (decoded bytes). */
#define CLI_JSON_KEY_MAX 64
/* Nesting of objects/arrays inside a value; ours use at most 1. */
#define CLI_JSON_DEPTH_MAX 4

enum cli_json_type {
    CLI_JSON_STRING = 1,
    CLI_JSON_NUMBER,
    CLI_JSON_OBJECT,
    CLI_JSON_ARRAY,
    CLI_JSON_TRUE,
    CLI_JSON_FALSE,
    CLI_JSON_NULL,
};

struct cli_json_field {
    char key[CLI_JSON_KEY_MAX + 1];
    enum cli_json_type type;
    /* Borrowed span of the input: a string's contents between the quotes
     * (still escaped), a number's text, a whole {...} or [...]. Valid as
     * long as the parsed text is. */
    const char *raw;
    size_t raw_len;
};

/* Parse exactly one object from s (len bytes; surrounding whitespace is
 * allowed, anything else after the object is an error) into f (cap
 * entries). Returns 0 with *n set, WERR_INVALID (not JSON, duplicate key,
 * bad escape) or WERR_LIMIT (too many members, key too long, too deep),
 * e saying what and where. */
int cli_json_object_parse(const char *s, size_t len, struct cli_json_field *f,
                          size_t cap, size_t *n, struct werr *e);

/* The member named key, or NULL. */
const struct cli_json_field *cli_json_find(const struct cli_json_field *f,
                                           size_t n, const char *key);

/* Decode a STRING member into out (cap bytes, NUL-terminated), *len its
 * length. \u0000 is refused (our strings are C strings). Returns 0,
 * WERR_INVALID (not a string, bad escape) or WERR_LIMIT (too long). */
int cli_json_str(const struct cli_json_field *f, char *out, size_t cap,
                 size_t *len);

/* A NUMBER member that is a non-negative integer (no sign, fraction or
 * exponent; no leading zeros) fitting uint64_t. 0 or WERR_INVALID. */
int cli_json_u64(const struct cli_json_field *f, uint64_t *v);

/* A NUMBER member that is an integer in int32_t range ("-5" allowed). */
int cli_json_i32(const struct cli_json_field *f, int32_t *v);

#endif
