/* frame.c - gRPC Length-Prefixed-Message framing.
 *
 * PROTOCOL-HTTP2: Length-Prefixed-Message → Compressed-Flag Message-Length
 * Message, where Compressed-Flag is one octet (0 or 1) and Message-Length a
 * four-octet big-endian unsigned integer. The decoder is incremental: DATA
 * frames split messages anywhere, down to one byte at a time. */
#include "grpc.h"

#include <stdlib.h>
#include <string.h>

/* First allocation for a message body. The prefix only *claims* a length;
 * the buffer grows (doubling) as bytes actually arrive, so a peer that
 * announces 4 MiB and sends nothing costs us this much, not 4 MiB. */
#define FRAME_BUF_INITIAL ((size_t)16 << 10)

void grpc_frame_hdr_encode(uint8_t out[GRPC_FRAME_HDR_LEN], int compressed,
                           uint32_t len)
{
    out[0] = compressed ? 1 : 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

void grpc_frame_dec_init(struct grpc_frame_dec *d, size_t max_msg)
{
    memset(d, 0, sizeof *d);
    d->max_msg = max_msg;
}

void grpc_frame_dec_close(struct grpc_frame_dec *d)
{
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
    d->hdr_have = 0;
    d->need = 0;
    d->have = 0;
}

int grpc_frame_dec_feed(struct grpc_frame_dec *d, const uint8_t *data,
                        size_t len, size_t *consumed)
{
    size_t used = 0;

    *consumed = 0;
    if (d->hdr_have < GRPC_FRAME_HDR_LEN) {
        while (d->hdr_have < GRPC_FRAME_HDR_LEN && used < len) {
            d->hdr[d->hdr_have++] = data[used++];
        }
        *consumed = used;
        if (d->hdr_have < GRPC_FRAME_HDR_LEN) {
            return 0;
        }
        uint32_t n = (uint32_t)d->hdr[1] << 24 | (uint32_t)d->hdr[2] << 16 |
                     (uint32_t)d->hdr[3] << 8 | (uint32_t)d->hdr[4];
        /* Decide at the prefix: never buffer a message we will refuse. */
        if ((size_t)n > d->max_msg) {
            return WERR_LIMIT;
        }
        d->compressed = d->hdr[0] != 0;
        d->need = n;
        d->have = 0;
    }
    while (d->have < d->need && used < len) {
        if (d->have == d->cap) {
            size_t want = d->cap ? d->cap * 2 : FRAME_BUF_INITIAL;
            if (want > d->need) {
                want = d->need;
            }
            uint8_t *nb = realloc(d->buf, want);
            if (nb == NULL) {
                *consumed = used;
                return WERR_NOMEM;
            }
            d->buf = nb;
            d->cap = want;
        }
        size_t room = d->cap - d->have;
        size_t take = len - used < room ? len - used : room;
        memcpy(d->buf + d->have, data + used, take);
        d->have += take;
        used += take;
    }
    *consumed = used;
    return d->have == d->need ? 1 : 0;
}

void grpc_frame_dec_take(struct grpc_frame_dec *d, uint8_t **msg, size_t *len,
                         int *compressed)
{
    *msg = d->buf;
    *len = d->have;
    *compressed = d->compressed;
    d->buf = NULL;
    d->cap = 0;
    d->hdr_have = 0;
    d->need = 0;
    d->have = 0;
    d->compressed = 0;
}

int grpc_frame_dec_partial(const struct grpc_frame_dec *d)
{
    return d->hdr_have > 0;
}
