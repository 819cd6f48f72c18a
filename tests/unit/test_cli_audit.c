/* Tests for cli/auditfile.c (the audit export file and its offline
 * verifier) and cli/json.c (the strict reader under it). The chains are
 * built here with domain/audit_chain.h's own encoder and hash, so the test
 * checks the file format and the verifier's verdicts, not a second copy of
 * the hash. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/auditfile.h"
#include "cli/json.h"
#include "cli/offline.h"
#include "domain/audit_chain.h"
#include "unit.h"

#define NCHAIN 6

/* Entries seq 1..n, linked from genesis, with varied fields (a denial, a
 * negative code, a detail that needs escaping, a non-UTF-8 target). */
static void build_chain(struct audit_rec *r, size_t n)
{
    uint8_t prev[AUDIT_HASH_LEN] = {0};
    for (size_t i = 0; i < n; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].seq = i + 1;
        r[i].raft_index = 10 + 3 * i;
        r[i].time_ms = 1000 * i + 7;
        snprintf(r[i].principal, sizeof r[i].principal, "operator-%zu", i);
        r[i].role = 1u << (i % 4);
        r[i].action = (uint32_t)(1 + i % 10);
        snprintf(r[i].target, sizeof r[i].target, "plc-%04zu", i);
        r[i].outcome = (uint32_t)(1 + i % 3);
        r[i].code = i % 2 ? -12 : 0;
        r[i].count = i == 3 ? 4096 : 1;
        snprintf(r[i].detail, sizeof r[i].detail,
                 i == 2 ? "quote \" backslash \\ tab \t ctl \x01 \xc3\xa9" : "d%zu", i);
        if (i == 4) {
            strcpy(r[i].target, "bad\xff\xfeutf8"); /* must round-trip as _hex */
        }
        for (size_t k = 0; k < AUDIT_HASH_LEN; k++) {
            r[i].request_digest[k] = (uint8_t)(i * 31 + k);
        }
        memcpy(r[i].prev_hash, prev, AUDIT_HASH_LEN);
        struct werr e;
        if (audit_hash(&r[i], r[i].hash, &e) != 0) {
            abort();
        }
        memcpy(prev, r[i].hash, AUDIT_HASH_LEN);
    }
}

/* The export text of entries [from, to] (1-based seqs) of r, with the head
 * at head_seq. Returns a malloc'd NUL-terminated string. */
static char *export_text(const struct audit_rec *r, uint64_t from, uint64_t to,
                         uint64_t head_seq)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct cli_audit_header h = {.from_seq = from, .to_seq = to,
                                 .count = to + 1 - from, .head_seq = head_seq};
    if (head_seq > 0) {
        memcpy(h.head_hash, r[head_seq - 1].hash, AUDIT_HASH_LEN);
    }
    cli_audit_write_header(f, &h);
    for (uint64_t s = from; s <= to; s++) {
        cli_audit_write_entry(f, &r[s - 1]);
    }
    fclose(f);
    return buf;
}

static int verify_text(const char *text, struct cli_audit_report *rep)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    int v = cli_audit_verify_file(f, rep);
    fclose(f);
    return v;
}

/* Offset of the start of line `line` (1-based) in text. */
static size_t line_start(const char *text, uint64_t line)
{
    size_t off = 0;
    for (uint64_t l = 1; l < line; l++) {
        off = (size_t)(strchr(text + off, '\n') - text) + 1;
    }
    return off;
}

static struct audit_rec chain[NCHAIN];
static struct cli_audit_report rep;

TEST(export_roundtrip_fields)
{
    build_chain(chain, NCHAIN);
    char *text = export_text(chain, 1, NCHAIN, NCHAIN);
    CHECK(strstr(text, "\"format\":\"warden.audit.export\",\"version\":1,"
                       "\"hash\":\"sha-256\",\"encoding\":\"warden.audit.entry.v1\"") != NULL);
    CHECK(strstr(text, "\"target_hex\":\"626164fffe75746638\"") != NULL);
    struct cli_audit_header h;
    struct werr e;
    size_t hl = (size_t)(strchr(text, '\n') - text);
    CHECK_EQ_INT(cli_audit_parse_header(text, hl, &h, &e), 0);
    CHECK_EQ_INT(h.from_seq, 1);
    CHECK_EQ_INT(h.to_seq, NCHAIN);
    CHECK_EQ_INT(h.count, NCHAIN);
    CHECK(memcmp(h.head_hash, chain[NCHAIN - 1].hash, AUDIT_HASH_LEN) == 0);
    for (uint64_t i = 0; i < NCHAIN; i++) {
        size_t off = line_start(text, i + 2);
        size_t len = (size_t)(strchr(text + off, '\n') - (text + off));
        struct audit_rec back;
        CHECK_EQ_INT(cli_audit_parse_entry(text + off, len, &back, &e), 0);
        CHECK_EQ_INT(back.seq, chain[i].seq);
        CHECK_EQ_INT(back.raft_index, chain[i].raft_index);
        CHECK_EQ_INT(back.time_ms, chain[i].time_ms);
        CHECK_EQ_STR(back.principal, chain[i].principal);
        CHECK_EQ_INT(back.role, chain[i].role);
        CHECK_EQ_INT(back.action, chain[i].action);
        CHECK_EQ_STR(back.target, chain[i].target);
        CHECK_EQ_INT(back.outcome, chain[i].outcome);
        CHECK_EQ_INT(back.code, chain[i].code);
        CHECK_EQ_INT(back.count, chain[i].count);
        CHECK_EQ_STR(back.detail, chain[i].detail);
        CHECK(memcmp(back.request_digest, chain[i].request_digest, 32) == 0);
        CHECK(memcmp(back.prev_hash, chain[i].prev_hash, 32) == 0);
        CHECK(memcmp(back.hash, chain[i].hash, 32) == 0);
    }
    free(text);
}

TEST(verify_intact_chain)
{
    build_chain(chain, NCHAIN);
    char *text = export_text(chain, 1, NCHAIN, NCHAIN);
    CHECK_EQ_INT(verify_text(text, &rep), CLI_AUDIT_INTACT);
    CHECK_EQ_INT(rep.entries, NCHAIN);
    CHECK_EQ_INT(rep.first_seq, 1);
    CHECK_EQ_INT(rep.last_seq, NCHAIN);
    CHECK(rep.head_checked);
    CHECK(memcmp(rep.last_hash, chain[NCHAIN - 1].hash, 32) == 0);
    free(text);
}

TEST(verify_mid_ledger_range_takes_first_prev_as_given)
{
    build_chain(chain, NCHAIN);
    char *text = export_text(chain, 3, 5, NCHAIN); /* head outside the range */
    CHECK_EQ_INT(verify_text(text, &rep), CLI_AUDIT_INTACT);
    CHECK_EQ_INT(rep.entries, 3);
    CHECK_EQ_INT(rep.first_seq, 3);
    CHECK(memcmp(rep.first_prev, chain[1].hash, 32) == 0); /* reported */
    CHECK(!rep.head_checked);
    free(text);
}

TEST(empty_range_is_intact)
{
    build_chain(chain, NCHAIN);
    char *text = export_text(chain, 1, 0, 0);
    CHECK_EQ_INT(verify_text(text, &rep), CLI_AUDIT_INTACT);
    CHECK_EQ_INT(rep.entries, 0);
    free(text);
}

/* Flip every byte (XOR 1) of every entry line: verification must fail, at
 * exactly that entry's line, as BROKEN (the hash or link) or MALFORMED
 * (the JSON no longer parses): never INTACT, never at another entry. */
TEST(flip_any_byte_fails_at_that_entry)
{
    build_chain(chain, NCHAIN);
    char *text = export_text(chain, 1, NCHAIN, NCHAIN);
    size_t total = strlen(text);
    size_t body = line_start(text, 2);
    int broken = 0, malformed = 0;
    for (size_t off = body; off < total; off++) {
        uint64_t line = 1;
        for (size_t k = 0; k < off; k++) {
            line += text[k] == '\n';
        }
        text[off] ^= 1;
        int v = verify_text(text, &rep);
        text[off] ^= 1;
        if (v == CLI_AUDIT_INTACT || rep.bad_line != line) {
            fprintf(stderr, "flip at offset %zu (line %llu): verdict %d at line %llu (%s)\n",
                    off, (unsigned long long)line, v,
                    (unsigned long long)rep.bad_line, rep.msg);
        }
        CHECK(v != CLI_AUDIT_INTACT);
        CHECK_EQ_INT(rep.bad_line, line);
        broken += v == CLI_AUDIT_BROKEN;
        malformed += v == CLI_AUDIT_MALFORMED;
        if (v == CLI_AUDIT_BROKEN) {
            CHECK_EQ_INT(rep.entries, line - 2); /* all before it verified */
        }
    }
    CHECK(broken > 100 && malformed > 100); /* both paths exercised */
    /* And the header: no flip there passes, except in head_seq when it
     * moves the head out of the file's range (the head is then reported as
     * not checked; it is a note from the server, not part of the chain). */
    size_t hs = (size_t)(strstr(text, "\"head_seq\":") - text) + 11;
    for (size_t off = 0; off < body; off++) {
        text[off] ^= 1;
        int v = verify_text(text, &rep);
        text[off] ^= 1;
        if (off == hs) {
            CHECK(v != CLI_AUDIT_INTACT || !rep.head_checked);
            continue;
        }
        if (v == CLI_AUDIT_INTACT) {
            fprintf(stderr, "header flip at %zu passed\n", off);
        }
        CHECK(v != CLI_AUDIT_INTACT);
    }
    free(text);
}

TEST(broken_checks_are_named)
{
    build_chain(chain, NCHAIN);
    struct audit_rec c2[NCHAIN];
    struct werr e;

    /* Entry 3 rewritten and re-hashed by the forger: 3 is self-consistent,
     * so the break shows at 4, whose prev_hash no longer links. */
    memcpy(c2, chain, sizeof c2);
    strcpy(c2[2].detail, "forged");
    CHECK_EQ_INT(audit_hash(&c2[2], c2[2].hash, &e), 0);
    char *text = export_text(c2, 1, NCHAIN, 0);
    CHECK_EQ_INT(verify_text(text, &rep), CLI_AUDIT_BROKEN);
    CHECK_EQ_INT(rep.bad_seq, 4);
    CHECK_EQ_STR(rep.check, "prev_hash");
    free(text);

    /* A deleted entry (header still claims the full range): seq gap. */
    memcpy(c2, chain, sizeof c2);
    char *full = export_text(chain, 1, NCHAIN, 0);
    size_t a = line_start(full, 4), b = line_start(full, 5); /* entry seq 3 */
    memmove(full + a, full + b, strlen(full + b) + 1);
    CHECK_EQ_INT(verify_text(full, &rep), CLI_AUDIT_BROKEN);
    CHECK_EQ_INT(rep.bad_seq, 4);
    CHECK_EQ_STR(rep.check, "seq");
    free(full);

    /* Head at export that the last entry does not match. */
    text = export_text(chain, 1, NCHAIN, NCHAIN);
    char *hh = strstr(text, "\"head_hash\":\"") + 13;
    *hh = *hh == '0' ? '1' : '0';
    CHECK_EQ_INT(verify_text(text, &rep), CLI_AUDIT_BROKEN);
    CHECK_EQ_STR(rep.check, "head");
    CHECK_EQ_INT(rep.bad_seq, NCHAIN);
    free(text);

    /* Genesis: seq 1 must link to zeros even if re-hashed. */
    memcpy(c2, chain, sizeof c2);
    c2[0].prev_hash[0] = 1;
    CHECK_EQ_INT(audit_hash(&c2[0], c2[0].hash, &e), 0);
    text = export_text(c2, 1, 1, 0);
    CHECK_EQ_INT(verify_text(text, &rep), CLI_AUDIT_BROKEN);
    CHECK_EQ_STR(rep.check, "prev_hash");
    CHECK_EQ_INT(rep.bad_seq, 1);
    free(text);
}

TEST(truncated_and_malformed_files)
{
    build_chain(chain, NCHAIN);
    char *text = export_text(chain, 1, NCHAIN, NCHAIN);
    size_t last = line_start(text, NCHAIN + 1);

    /* The last entry dropped at a line boundary: the header's count says. */
    char c = text[last];
    text[last] = '\0';
    CHECK_EQ_INT(verify_text(text, &rep), CLI_AUDIT_MALFORMED);
    CHECK(strstr(rep.msg, "truncated") != NULL);
    text[last] = c;

    /* Cut in the middle of the last line. */
    c = text[last + 20];
    text[last + 20] = '\0';
    CHECK_EQ_INT(verify_text(text, &rep), CLI_AUDIT_MALFORMED);
    CHECK_EQ_INT(rep.bad_line, NCHAIN + 1);
    text[last + 20] = c;

    CHECK_EQ_INT(verify_text("", &rep), CLI_AUDIT_MALFORMED);
    CHECK_EQ_INT(verify_text("not json\n", &rep), CLI_AUDIT_MALFORMED);

    /* Another version, another encoding tag, an unknown member. */
    char *v2 = strdup(text);
    *strstr(v2, "\"version\":1") = ' ';
    CHECK_EQ_INT(verify_text(v2, &rep), CLI_AUDIT_MALFORMED);
    free(v2);
    v2 = strdup(text);
    strstr(v2, "entry.v1")[7] = '2';
    CHECK_EQ_INT(verify_text(v2, &rep), CLI_AUDIT_MALFORMED);
    CHECK(strstr(rep.msg, "encoding") != NULL);
    free(v2);
    v2 = strdup(text);
    memcpy(strstr(v2, "\"count\":1,"), "\"extra\":1,", 10);
    CHECK_EQ_INT(verify_text(v2, &rep), CLI_AUDIT_MALFORMED);
    free(v2);

    /* An extra entry past the header's count. */
    size_t n = strlen(text);
    char *more = malloc(n + (n - last) + 1);
    memcpy(more, text, n);
    memcpy(more + n, text + last, n - last + 1);
    CHECK_EQ_INT(verify_text(more, &rep), CLI_AUDIT_MALFORMED);
    free(more);
    free(text);
}

/* The command's exit codes through a real file: 0, 1, 2; 2 for a
 * missing file. */
TEST(verify_command_exit_codes)
{
    build_chain(chain, NCHAIN);
    char path[] = "/tmp/test_cli_audit_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    char *text = export_text(chain, 1, NCHAIN, NCHAIN);
    static struct cli_args a;
    struct werr e;
    char *argv[] = {"wardenctl", "audit", "verify", path};
    CHECK_EQ_INT(cli_args_parse(4, argv, &a, &e), 0); /* no TLS flags needed */
    CHECK_EQ_INT(a.cmd, CLI_CMD_AUDIT_VERIFY);

    char *obuf = NULL, *ebuf = NULL;
    size_t olen = 0, elen = 0;
    int codes[3];
    for (int round = 0; round < 3; round++) {
        if (round == 1) {
            text[line_start(text, 4) + 7] ^= 1; /* seq 3 -> 2, in entry seq 3 */
        } else if (round == 2) {
            text[strlen(text) / 2] = '\0';
        }
        FILE *f = fopen(path, "w");
        fputs(text, f);
        fclose(f);
        FILE *out = open_memstream(&obuf, &olen), *err = open_memstream(&ebuf, &elen);
        codes[round] = cli_offline_run(&a, out, err);
        fclose(out);
        fclose(err);
        if (round == 1) {
            CHECK(strstr(obuf, "BROKEN at seq") != NULL);
        }
        free(obuf);
        free(ebuf);
    }
    CHECK_EQ_INT(codes[0], 0);
    CHECK_EQ_INT(codes[1], 1);
    CHECK_EQ_INT(codes[2], 2);
    unlink(path);
    FILE *out = open_memstream(&obuf, &olen), *err = open_memstream(&ebuf, &elen);
    CHECK_EQ_INT(cli_offline_run(&a, out, err), 2); /* file gone */
    fclose(out);
    fclose(err);
    free(obuf);
    free(ebuf);
    close(fd);
    free(text);
}

TEST(json_reader_is_strict)
{
    struct cli_json_field f[8];
    size_t n;
    struct werr e;
    const char *ok = " {\"a\":\"x\\u00e9\\ud83d\\ude00\\n\",\"b\":18446744073709551615,"
                     "\"c\":{\"k\":[1,2]},\"d\":-5} ";
    CHECK_EQ_INT(cli_json_object_parse(ok, strlen(ok), f, 8, &n, &e), 0);
    CHECK_EQ_INT(n, 4);
    char s[32];
    size_t sl;
    CHECK_EQ_INT(cli_json_str(cli_json_find(f, n, "a"), s, sizeof s, &sl), 0);
    CHECK_EQ_STR(s, "x\xc3\xa9\xf0\x9f\x98\x80\n");
    uint64_t u;
    CHECK_EQ_INT(cli_json_u64(cli_json_find(f, n, "b"), &u), 0);
    CHECK(u == UINT64_MAX);
    CHECK_EQ_INT(cli_json_find(f, n, "c")->type, CLI_JSON_OBJECT);
    int32_t i;
    CHECK_EQ_INT(cli_json_i32(cli_json_find(f, n, "d"), &i), 0);
    CHECK_EQ_INT(i, -5);
    CHECK(cli_json_u64(cli_json_find(f, n, "d"), &u) != 0);

    static const char *const bad[] = {
        "{\"a\":1,\"a\":2}",           /* duplicate key */
        "{\"a\":1} x",                 /* trailing bytes */
        "{\"a\":\"\\u0000\"}",         /* NUL is refused on decode: see below */
        "{\"a\":01}",                  /* leading zero: parses, u64 refuses */
        "{\"a\":\"\\x\"}",             /* bad escape */
        "{\"a\":\"x}",                 /* unterminated */
        "{\"a\":[[[[[1]]]]]}",         /* too deep */
        "[1]",                         /* not an object */
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        int rc = cli_json_object_parse(bad[k], strlen(bad[k]), f, 8, &n, &e);
        if (k == 2) {
            CHECK_EQ_INT(rc, 0);
            CHECK(cli_json_str(&f[0], s, sizeof s, &sl) != 0);
        } else if (k == 3) {
            CHECK_EQ_INT(rc, 0);
            CHECK(cli_json_u64(&f[0], &u) != 0);
        } else {
            CHECK(rc != 0);
        }
    }
    /* 2^64 overflows. */
    const char *big = "{\"a\":18446744073709551616}";
    CHECK_EQ_INT(cli_json_object_parse(big, strlen(big), f, 8, &n, &e), 0);
    CHECK(cli_json_u64(&f[0], &u) != 0);
}

int main(void)
{
    RUN(export_roundtrip_fields);
    RUN(verify_intact_chain);
    RUN(verify_mid_ledger_range_takes_first_prev_as_given);
    RUN(empty_range_is_intact);
    RUN(flip_any_byte_fails_at_that_entry);
    RUN(broken_checks_are_named);
    RUN(truncated_and_malformed_files);
    RUN(verify_command_exit_codes);
    RUN(json_reader_is_strict);
    return unit_done();
}
