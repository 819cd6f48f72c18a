/* test_grpc_frame.c - Length-Prefixed-Message encode/decode. */
#include "grpc/grpc.h"

#include "unit.h"

TEST(hdr_encode)
{
    uint8_t h[GRPC_FRAME_HDR_LEN];
    grpc_frame_hdr_encode(h, 0, 0x01020304u);
    CHECK(h[0] == 0 && h[1] == 1 && h[2] == 2 && h[3] == 3 && h[4] == 4);
    grpc_frame_hdr_encode(h, 7, 0);
    CHECK(h[0] == 1 && h[1] == 0 && h[4] == 0);
}

static size_t mk(uint8_t *buf, int comp, const char *body, size_t len)
{
    grpc_frame_hdr_encode(buf, comp, (uint32_t)len);
    memcpy(buf + GRPC_FRAME_HDR_LEN, body, len);
    return GRPC_FRAME_HDR_LEN + len;
}

TEST(whole_message)
{
    struct grpc_frame_dec d;
    uint8_t buf[64], *msg;
    size_t n = mk(buf, 0, "hello", 5), used, len;
    int comp;
    grpc_frame_dec_init(&d, 100);
    CHECK_EQ_INT(grpc_frame_dec_feed(&d, buf, n, &used), 1);
    CHECK_EQ_INT(used, n);
    grpc_frame_dec_take(&d, &msg, &len, &comp);
    CHECK_EQ_INT(len, 5);
    CHECK_EQ_INT(comp, 0);
    CHECK(memcmp(msg, "hello", 5) == 0);
    free(msg);
    CHECK_EQ_INT(grpc_frame_dec_partial(&d), 0);
    grpc_frame_dec_close(&d);
}

TEST(split_one_byte_at_a_time_two_messages)
{
    struct grpc_frame_dec d;
    uint8_t buf[64], *msg;
    size_t n = mk(buf, 0, "abc", 3);
    n += mk(buf + n, 1, "", 0);
    size_t used, len, got = 0;
    int comp;
    grpc_frame_dec_init(&d, 100);
    for (size_t i = 0; i < n; i++) {
        int rv = grpc_frame_dec_feed(&d, buf + i, 1, &used);
        CHECK_EQ_INT(used, 1);
        if (rv == 1) {
            grpc_frame_dec_take(&d, &msg, &len, &comp);
            if (got == 0) {
                CHECK_EQ_INT(len, 3);
                CHECK(memcmp(msg, "abc", 3) == 0);
                CHECK_EQ_INT(comp, 0);
            } else {
                CHECK_EQ_INT(len, 0);
                CHECK_EQ_INT(comp, 1);
            }
            free(msg);
            got++;
        } else {
            CHECK_EQ_INT(rv, 0);
            CHECK(grpc_frame_dec_partial(&d));
        }
    }
    CHECK_EQ_INT(got, 2);
    grpc_frame_dec_close(&d);
}

TEST(stops_after_complete_message)
{
    struct grpc_frame_dec d;
    uint8_t buf[64], *msg;
    size_t n = mk(buf, 0, "xy", 2);
    n += mk(buf + n, 0, "z", 1);
    size_t used, len;
    int comp;
    grpc_frame_dec_init(&d, 100);
    CHECK_EQ_INT(grpc_frame_dec_feed(&d, buf, n, &used), 1);
    CHECK_EQ_INT(used, 7); /* the second message is left for the next feed */
    grpc_frame_dec_take(&d, &msg, &len, &comp);
    free(msg);
    CHECK_EQ_INT(grpc_frame_dec_feed(&d, buf + used, n - used, &used), 1);
    grpc_frame_dec_take(&d, &msg, &len, &comp);
    CHECK_EQ_INT(len, 1);
    CHECK(msg[0] == 'z');
    free(msg);
    grpc_frame_dec_close(&d);
}

TEST(oversize_prefix_refused_without_body)
{
    struct grpc_frame_dec d;
    uint8_t h[GRPC_FRAME_HDR_LEN];
    size_t used;
    grpc_frame_dec_init(&d, 10);
    grpc_frame_hdr_encode(h, 0, 11);
    CHECK_EQ_INT(grpc_frame_dec_feed(&d, h, 4, &used), 0);
    CHECK_EQ_INT(grpc_frame_dec_feed(&d, h + 4, 1, &used), WERR_LIMIT);
    CHECK(d.buf == NULL); /* decided at the prefix: nothing allocated */
    grpc_frame_dec_close(&d);

    grpc_frame_dec_init(&d, 10);
    grpc_frame_hdr_encode(h, 0, 0xFFFFFFFFu);
    CHECK_EQ_INT(grpc_frame_dec_feed(&d, h, 5, &used), WERR_LIMIT);
    grpc_frame_dec_close(&d);

    grpc_frame_dec_init(&d, 10);
    grpc_frame_hdr_encode(h, 0, 10); /* exactly the limit is fine */
    CHECK_EQ_INT(grpc_frame_dec_feed(&d, h, 5, &used), 0);
    grpc_frame_dec_close(&d);
}

TEST(large_message_grows_buffer)
{
    struct grpc_frame_dec d;
    size_t big = 200000, used, len;
    uint8_t *buf = malloc(big + GRPC_FRAME_HDR_LEN), *msg;
    int comp;
    CHECK(buf != NULL);
    grpc_frame_hdr_encode(buf, 0, (uint32_t)big);
    for (size_t i = 0; i < big; i++) {
        buf[GRPC_FRAME_HDR_LEN + i] = (uint8_t)(i * 7);
    }
    grpc_frame_dec_init(&d, big);
    size_t off = 0;
    int rv = 0;
    while (off < big + GRPC_FRAME_HDR_LEN) {
        size_t chunk = 1000 < big + GRPC_FRAME_HDR_LEN - off
                           ? 1000 : big + GRPC_FRAME_HDR_LEN - off;
        rv = grpc_frame_dec_feed(&d, buf + off, chunk, &used);
        off += used;
        if (rv != 0) {
            break;
        }
        CHECK(d.cap <= big);
    }
    CHECK_EQ_INT(rv, 1);
    grpc_frame_dec_take(&d, &msg, &len, &comp);
    CHECK_EQ_INT(len, big);
    CHECK(memcmp(msg, buf + GRPC_FRAME_HDR_LEN, big) == 0);
    free(msg);
    free(buf);
    grpc_frame_dec_close(&d);
}

TEST(truncated_is_partial)
{
    struct grpc_frame_dec d;
    uint8_t buf[16];
    size_t n = mk(buf, 0, "abcd", 4), used;
    grpc_frame_dec_init(&d, 100);
    CHECK_EQ_INT(grpc_frame_dec_feed(&d, buf, n - 1, &used), 0);
    CHECK(grpc_frame_dec_partial(&d));
    CHECK_EQ_INT(d.have, 3);
    CHECK_EQ_INT(d.need, 4);
    grpc_frame_dec_close(&d); /* frees the half message */
}

int main(void)
{
    RUN(hdr_encode);
    RUN(whole_message);
    RUN(split_one_byte_at_a_time_two_messages);
    RUN(stops_after_complete_message);
    RUN(oversize_prefix_refused_without_body);
    RUN(large_message_grows_buffer);
    RUN(truncated_is_partial);
    return unit_done();
}
