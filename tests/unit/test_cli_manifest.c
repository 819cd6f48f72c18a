/* Tests for cli/manifest.c: the bytes `wardenctl rollout release manifest`
 * writes are the canonical manifest of docs/rollouts.md, byte for byte:
 * against a hand-written golden encoding, against the domain encoder fed
 * a hand-built struct, and through the domain's strict decoder. */
#include <stdint.h>
#include <string.h>

#include "cli/manifest.h"
#include "unit.h"

static const char *sha_hex =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

TEST(golden_bytes)
{
    static struct ro_manifest m;
    static uint8_t buf[RO_MANIFEST_MAX];
    struct werr e;
    /* Models given out of order: the writer sorts them. */
    const char *models[] = {"plc-x", "gw-a"};
    CHECK_EQ_INT(cli_manifest_build("2.1.0", 210, sha_hex, 1048576, models, 2, &m, &e),
                 0);
    size_t n = cli_manifest_encode(&m, buf, sizeof buf);
    static const uint8_t want[] = {
        0, 0, 0, 17, 'w', 'a', 'r', 'd', 'e', 'n', '.', 'r', 'e', 'l', 'e', 'a',
        's', 'e', '.', 'v', '1',                          /* str tag */
        0, 0, 0, 5, '2', '.', '1', '.', '0',              /* str version */
        0, 0, 0, 0, 0, 0, 0, 210,                         /* u64 counter */
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
        21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,       /* sha256 */
        0, 0, 0, 0, 0, 0x10, 0, 0,                        /* u64 size */
        0, 0, 0, 2,                                       /* u32 n_models */
        0, 0, 0, 4, 'g', 'w', '-', 'a',                   /* ascending */
        0, 0, 0, 5, 'p', 'l', 'c', '-', 'x',
    };
    CHECK_EQ_INT(n, sizeof want);
    CHECK(memcmp(buf, want, n) == 0);
}

TEST(equals_domain_encoder_and_decodes)
{
    static struct ro_manifest m, hand, back;
    static uint8_t a[RO_MANIFEST_MAX], b[RO_MANIFEST_MAX];
    struct werr e;
    const char *models[] = {"z-9", "A", "m"};
    CHECK_EQ_INT(cli_manifest_build("v7 rc1", 1, sha_hex, 1, models, 3, &m, &e), 0);
    memset(&hand, 0, sizeof hand);
    strcpy(hand.version, "v7 rc1");
    hand.counter = 1;
    for (int i = 0; i < 32; i++) {
        hand.sha256[i] = (uint8_t)i;
    }
    hand.size = 1;
    hand.n_models = 3;
    strcpy(hand.models[0], "A");
    strcpy(hand.models[1], "m");
    strcpy(hand.models[2], "z-9");
    size_t na = cli_manifest_encode(&m, a, sizeof a);
    size_t nb = ro_manifest_encode(&hand, b, sizeof b);
    CHECK(na > 0);
    CHECK_EQ_INT(na, nb);
    CHECK(memcmp(a, b, na) == 0);
    CHECK_EQ_INT(ro_manifest_decode(a, na, &back, &e), 0);
    CHECK_EQ_STR(back.version, "v7 rc1");
    CHECK_EQ_INT(back.n_models, 3);
    CHECK_EQ_STR(back.models[0], "A");
    CHECK_EQ_STR(back.models[2], "z-9");
}

TEST(errors)
{
    static struct ro_manifest m;
    struct werr e;
    const char *one[] = {"plc-x"};
    const char *dup[] = {"plc-x", "gw", "plc-x"};
    const char *ctl[] = {"plc\x01"};
    static const char *many[17];
    for (int i = 0; i < 17; i++) {
        many[i] = "m";
    }
    CHECK_EQ_INT(cli_manifest_build(NULL, 1, sha_hex, 1, one, 1, &m, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "--version") != NULL);
    CHECK_EQ_INT(cli_manifest_build("", 1, sha_hex, 1, one, 1, &m, &e), WERR_INVALID);
    CHECK_EQ_INT(cli_manifest_build("1\n", 1, sha_hex, 1, one, 1, &m, &e),
                 WERR_INVALID);
    CHECK_EQ_INT(cli_manifest_build("1", 0, sha_hex, 1, one, 1, &m, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "--counter") != NULL);
    CHECK_EQ_INT(cli_manifest_build("1", 1, "abcd", 1, one, 1, &m, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "--artifact-sha256") != NULL);
    CHECK_EQ_INT(cli_manifest_build("1", 1, NULL, 1, one, 1, &m, &e), WERR_INVALID);
    CHECK_EQ_INT(cli_manifest_build("1", 1, sha_hex, 0, one, 1, &m, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "--artifact-size") != NULL);
    CHECK_EQ_INT(cli_manifest_build("1", 1, sha_hex, 1, one, 0, &m, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "--model") != NULL);
    CHECK_EQ_INT(cli_manifest_build("1", 1, sha_hex, 1, many, 17, &m, &e), WERR_INVALID);
    CHECK_EQ_INT(cli_manifest_build("1", 1, sha_hex, 1, dup, 3, &m, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "given twice") != NULL);
    CHECK_EQ_INT(cli_manifest_build("1", 1, sha_hex, 1, ctl, 1, &m, &e), WERR_INVALID);
    char longv[RO_VERSION_MAX + 2];
    memset(longv, 'v', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    CHECK_EQ_INT(cli_manifest_build(longv, 1, sha_hex, 1, one, 1, &m, &e),
                 WERR_INVALID);
    longv[RO_VERSION_MAX] = '\0'; /* exactly the bound is fine */
    CHECK_EQ_INT(cli_manifest_build(longv, 1, sha_hex, 1, one, 1, &m, &e), 0);
}

int main(void)
{
    RUN(golden_bytes);
    RUN(equals_domain_encoder_and_decodes);
    RUN(errors);
    return unit_done();
}
