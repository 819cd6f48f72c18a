/* test_grpc_pct.c - grpc-message percent-encoding (PROTOCOL-HTTP2). */
#include "grpc/grpc.h"

#include "unit.h"

TEST(encode_basic)
{
    char out[64];
    CHECK_EQ_INT(grpc_pct_encode("a b", 3, out, sizeof out), 3);
    CHECK_EQ_STR(out, "a b");
    CHECK_EQ_INT(grpc_pct_encode("50%\n\xc3\xa9", 6, out, sizeof out), 14);
    CHECK_EQ_STR(out, "50%25%0A%C3%A9");
    CHECK_EQ_INT(grpc_pct_encode("~\x7f", 2, out, sizeof out), 4);
    CHECK_EQ_STR(out, "~%7F");
}

TEST(encode_truncates_at_whole_escape)
{
    char out[6];
    /* "ab" fits (2), "%0A" would need 5 + NUL = 6: fits exactly. */
    CHECK_EQ_INT(grpc_pct_encode("ab\n\n", 4, out, sizeof out), 5);
    CHECK_EQ_STR(out, "ab%0A");
    char small[4];
    CHECK_EQ_INT(grpc_pct_encode("a\n", 2, small, sizeof small), 1);
    CHECK_EQ_STR(small, "a");
    CHECK_EQ_INT(grpc_pct_encode("abc", 3, small, 0), 0);
}

TEST(decode)
{
    char out[64];
    CHECK_EQ_INT(grpc_pct_decode("50%25%0a", 8, out, sizeof out), 4);
    CHECK_EQ_STR(out, "50%\n");
    /* Invalid escapes are kept verbatim. */
    CHECK_EQ_INT(grpc_pct_decode("%zz%4", 5, out, sizeof out), 5);
    CHECK_EQ_STR(out, "%zz%4");
    CHECK_EQ_INT(grpc_pct_decode("%", 1, out, sizeof out), 1);
    CHECK_EQ_STR(out, "%");
    CHECK_EQ_INT(grpc_pct_decode("abcdef", 6, out, 4), 3);
    CHECK_EQ_STR(out, "abc");
}

TEST(round_trip_all_bytes)
{
    char in[256], enc[256 * 3 + 1], dec[257];
    for (int i = 0; i < 256; i++) {
        in[i] = (char)(255 - i);
    }
    size_t n = grpc_pct_encode(in, 256, enc, sizeof enc);
    CHECK_EQ_INT(strlen(enc), n);
    for (size_t i = 0; i < n; i++) {
        CHECK(enc[i] >= 0x20 && enc[i] <= 0x7e);
    }
    /* NUL inside the input decodes back too; compare bytes. */
    CHECK_EQ_INT(grpc_pct_decode(enc, n, dec, sizeof dec), 256);
    CHECK(memcmp(in, dec, 256) == 0);
}

int main(void)
{
    RUN(encode_basic);
    RUN(encode_truncates_at_whole_escape);
    RUN(decode);
    RUN(round_trip_all_bytes);
    return unit_done();
}
