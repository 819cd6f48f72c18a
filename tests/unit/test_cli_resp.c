/* Tests for cli/resp.c: the client's reading of a unary gRPC response
 * (PROTOCOL-HTTP2 "Responses"): headers, Trailers-Only, HTTP errors,
 * resets, framing and limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/resp.h"
#include "unit.h"

static struct cli_resp r;

static void hdr(const char *n, const char *v, int trailer)
{
    cli_resp_on_header(&r, n, strlen(n), v, strlen(v), trailer);
}

static void ok_headers(void)
{
    hdr(":status", "200", 0);
    hdr("content-type", "application/grpc", 0);
}

static int data_msg(const char *payload, size_t len)
{
    uint8_t buf[64];
    grpc_frame_hdr_encode(buf, 0, (uint32_t)len);
    memcpy(buf + GRPC_FRAME_HDR_LEN, payload, len);
    return cli_resp_on_data(&r, buf, GRPC_FRAME_HDR_LEN + len);
}

TEST(ok_with_message)
{
    cli_resp_init(&r, 0);
    ok_headers();
    /* Split the frame across DATA chunks, as the wire may. */
    uint8_t buf[8];
    grpc_frame_hdr_encode(buf, 0, 3);
    memcpy(buf + 5, "abc", 3);
    CHECK_EQ_INT(cli_resp_on_data(&r, buf, 2), 0);
    CHECK_EQ_INT(cli_resp_on_data(&r, buf + 2, 6), 0);
    hdr("grpc-status", "0", 1);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 0);
    uint8_t *p;
    size_t n;
    cli_resp_take_payload(&r, &p, &n);
    CHECK_EQ_INT(n, 3);
    CHECK(memcmp(p, "abc", 3) == 0);
    free(p);
    cli_resp_close(&r);
}

TEST(error_in_trailers_pct_decoded)
{
    cli_resp_init(&r, 0);
    ok_headers();
    hdr("grpc-status", "5", 1);
    hdr("grpc-message", "device %22x%22 not found%", 1);
    hdr("warden-leader", "127.0.0.11:7443", 1);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 5);
    CHECK_EQ_STR(r.status_msg, "device \"x\" not found%");
    CHECK_EQ_STR(r.leader, "127.0.0.11:7443");
    cli_resp_close(&r);
}

TEST(trailers_only)
{
    cli_resp_init(&r, 0);
    hdr(":status", "200", 0);
    hdr("content-type", "application/grpc", 0);
    hdr("grpc-status", "7", 0);
    hdr("grpc-message", "role auditor may not call EnrollDevice", 0);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 7);
    CHECK_EQ_STR(r.status_msg, "role auditor may not call EnrollDevice");
    cli_resp_close(&r);
}

TEST(http_errors)
{
    static const int cases[][2] = {{400, 13}, {401, 16}, {403, 7}, {404, 12},
                                   {429, 14}, {502, 14}, {503, 14}, {504, 14},
                                   {500, 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char s[8];
        snprintf(s, sizeof s, "%d", cases[i][0]);
        cli_resp_init(&r, 0);
        hdr(":status", s, 0);
        hdr("content-type", "text/html", 0);
        cli_resp_on_close(&r, 0);
        CHECK_EQ_INT(r.status, cases[i][1]);
        CHECK(strstr(r.status_msg, s) != NULL);
        cli_resp_close(&r);
    }
    /* grpc-status wins over the HTTP status when both are present. */
    cli_resp_init(&r, 0);
    hdr(":status", "503", 0);
    hdr("grpc-status", "14", 0);
    hdr("grpc-message", "draining", 0);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 14);
    CHECK_EQ_STR(r.status_msg, "draining");
    cli_resp_close(&r);
    /* ...but OK over a non-200 is not believed. */
    cli_resp_init(&r, 0);
    hdr(":status", "404", 0);
    hdr("grpc-status", "0", 0);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 12);
    cli_resp_close(&r);
}

TEST(resets)
{
    static const uint32_t codes[][2] = {{0x7, 14}, {0x8, 1}, {0xb, 8}, {0xc, 7},
                                        {0x1, 13}, {0x2, 13}};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        cli_resp_init(&r, 0);
        ok_headers();
        cli_resp_on_close(&r, codes[i][0]);
        CHECK_EQ_INT(r.status, codes[i][1]);
        cli_resp_close(&r);
    }
}

TEST(malformed_responses)
{
    /* No grpc-status at all. */
    cli_resp_init(&r, 0);
    ok_headers();
    CHECK_EQ_INT(data_msg("x", 1), 0);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 13);
    CHECK(strstr(r.status_msg, "grpc-status") != NULL);
    cli_resp_close(&r);
    /* Non-numeric grpc-status, and one out of range. */
    cli_resp_init(&r, 0);
    ok_headers();
    hdr("grpc-status", "OK", 1);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 2);
    cli_resp_close(&r);
    cli_resp_init(&r, 0);
    ok_headers();
    hdr("grpc-status", "17", 1);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 2);
    cli_resp_close(&r);
    /* OK without a message. */
    cli_resp_init(&r, 0);
    ok_headers();
    hdr("grpc-status", "0", 1);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 13);
    cli_resp_close(&r);
    /* OK with a wrong content-type. */
    cli_resp_init(&r, 0);
    hdr(":status", "200", 0);
    hdr("content-type", "application/grpcx", 0);
    CHECK_EQ_INT(data_msg("x", 1), 0);
    hdr("grpc-status", "0", 1);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 13);
    CHECK(strstr(r.status_msg, "content-type") != NULL);
    cli_resp_close(&r);
    /* +proto is fine. */
    cli_resp_init(&r, 0);
    hdr(":status", "200", 0);
    hdr("content-type", "application/grpc+proto", 0);
    CHECK_EQ_INT(data_msg("x", 1), 0);
    hdr("grpc-status", "0", 1);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 0);
    cli_resp_close(&r);
    /* Truncated message at end of stream. */
    cli_resp_init(&r, 0);
    ok_headers();
    uint8_t buf[8];
    grpc_frame_hdr_encode(buf, 0, 10);
    CHECK_EQ_INT(cli_resp_on_data(&r, buf, 7), 0);
    hdr("grpc-status", "0", 1);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 13);
    CHECK(strstr(r.status_msg, "truncated") != NULL);
    cli_resp_close(&r);
    /* Two messages in a unary response. */
    cli_resp_init(&r, 0);
    ok_headers();
    CHECK_EQ_INT(data_msg("a", 1), 0);
    CHECK(data_msg("b", 1) < 0);
    hdr("grpc-status", "0", 1);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 13);
    cli_resp_close(&r);
    /* A compressed message we never negotiated. */
    cli_resp_init(&r, 0);
    ok_headers();
    grpc_frame_hdr_encode(buf, 1, 1);
    buf[5] = 'z';
    CHECK(cli_resp_on_data(&r, buf, 6) < 0);
    cli_resp_on_close(&r, 0x8);
    CHECK_EQ_INT(r.status, 13);
    cli_resp_close(&r);
}

TEST(size_limit)
{
    cli_resp_init(&r, 16);
    ok_headers();
    uint8_t buf[5];
    grpc_frame_hdr_encode(buf, 0, 17);
    CHECK_EQ_INT(cli_resp_on_data(&r, buf, 5), WERR_LIMIT);
    /* The local error sticks over what the server says afterwards. */
    hdr("grpc-status", "0", 1);
    cli_resp_on_close(&r, 0x8);
    CHECK_EQ_INT(r.status, 8);
    CHECK(strstr(r.status_msg, "16") != NULL);
    cli_resp_close(&r);
    /* Exactly at the limit is fine. */
    cli_resp_init(&r, 16);
    ok_headers();
    CHECK_EQ_INT(data_msg("0123456789abcdef", 16), 0);
    hdr("grpc-status", "0", 1);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_INT(r.payload_len, 16);
    cli_resp_close(&r);
}

TEST(long_message_and_leader_bounded)
{
    static char big[4000];
    memset(big, 'm', sizeof big - 1);
    cli_resp_init(&r, 0);
    ok_headers();
    hdr("grpc-status", "13", 1);
    hdr("grpc-message", big, 1);
    hdr("warden-leader", big, 1);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 13);
    CHECK(strlen(r.status_msg) <= CLI_RESP_MESSAGE_MAX);
    CHECK_EQ_INT(strlen(r.leader), CLI_RESP_LEADER_MAX);
    cli_resp_close(&r);
}

TEST(no_status_header)
{
    cli_resp_init(&r, 0);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 13);
    CHECK(strstr(r.status_msg, ":status") != NULL);
    cli_resp_close(&r);
}

TEST(leader_trailers_and_delivery)
{
    /* A follower's refusal: definite, with the leader's address and id. */
    cli_resp_init(&r, 0);
    ok_headers();
    hdr("grpc-status", "14", 1);
    hdr("grpc-message", "not the leader; leader is 1 at 127.0.0.11:7443", 1);
    hdr("warden-leader", "127.0.0.11:7443", 1);
    hdr("warden-leader-id", "1", 1);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.status, 14);
    CHECK_EQ_STR(r.leader, "127.0.0.11:7443");
    CHECK_EQ_INT(r.leader_id, 1);
    CHECK_EQ_INT(cli_resp_delivery(&r), CLI_DELIVERY_ANSWERED);
    cli_resp_close(&r);

    /* Leadership lost with the command in flight: the server says the
     * outcome is unknown. A malformed id is ignored. */
    cli_resp_init(&r, 0);
    hdr(":status", "200", 0);
    hdr("content-type", "application/grpc", 0);
    hdr("grpc-status", "14", 0);
    hdr("warden-leader", "127.0.0.13:7443", 0);
    hdr("warden-leader-id", "4294967296", 0);
    hdr("warden-outcome", "unknown", 0);
    cli_resp_on_close(&r, 0);
    CHECK_EQ_INT(r.leader_id, 0);
    CHECK_EQ_INT(cli_resp_delivery(&r), CLI_DELIVERY_UNKNOWN);
    cli_resp_close(&r);

    cli_resp_init(&r, 0);
    hdr("warden-leader-id", "4294967295", 1);
    hdr("warden-outcome", "applied?", 1);
    CHECK_EQ_INT(r.leader_id, 4294967295u);
    CHECK_EQ_INT(r.outcome_unknown, 0);
    hdr("warden-leader-id", "1x", 1);
    CHECK_EQ_INT(r.leader_id, 0);
    cli_resp_close(&r);

    /* REFUSED_STREAM without a status: not processed (RFC 9113 §8.7). */
    cli_resp_init(&r, 0);
    cli_resp_on_close(&r, 0x7);
    CHECK_EQ_INT(r.status, 14);
    CHECK_EQ_INT(cli_resp_delivery(&r), CLI_DELIVERY_REFUSED);
    cli_resp_close(&r);

    /* Any other reset, or no status at all: unknown. */
    cli_resp_init(&r, 0);
    ok_headers();
    cli_resp_on_close(&r, 0x2);
    CHECK_EQ_INT(cli_resp_delivery(&r), CLI_DELIVERY_UNKNOWN);
    cli_resp_close(&r);
}

int main(void)
{
    RUN(ok_with_message);
    RUN(error_in_trailers_pct_decoded);
    RUN(trailers_only);
    RUN(http_errors);
    RUN(resets);
    RUN(malformed_responses);
    RUN(size_limit);
    RUN(long_message_and_leader_bounded);
    RUN(no_status_header);
    RUN(leader_trailers_and_delivery);
    return unit_done();
}
