/* pct.c - grpc-message percent-encoding.
 *
 * PROTOCOL-HTTP2: Status-Message is "Percent-Encoded"; the sender encodes
 * every byte outside 0x20..0x7E and '%' itself as %XX, and a receiver that
 * meets an invalid escape must not fail but keep the text as it is. */
#include "grpc.h"

static const char hexdig[] = "0123456789ABCDEF";

static int must_escape(unsigned char c)
{
    return c < 0x20 || c > 0x7E || c == '%';
}

size_t grpc_pct_encode(const char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;

    if (cap == 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        size_t w = must_escape(c) ? 3 : 1;
        if (o + w > cap - 1) {
            break; /* truncate at a whole escape, keep room for NUL */
        }
        if (w == 3) {
            out[o++] = '%';
            out[o++] = hexdig[c >> 4];
            out[o++] = hexdig[c & 0xF];
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return o;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

size_t grpc_pct_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;

    if (cap == 0) {
        return 0;
    }
    for (size_t i = 0; i < len && o < cap - 1; i++) {
        int hi, lo;
        if (in[i] == '%' && i + 2 < len && (hi = hexval(in[i + 1])) >= 0 &&
            (lo = hexval(in[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = '\0';
    return o;
}
