/* timeout.c - the grpc-timeout header.
 *
 * PROTOCOL-HTTP2: Timeout → "grpc-timeout" TimeoutValue TimeoutUnit;
 * TimeoutValue → {positive integer as ASCII string of at most 8 digits};
 * TimeoutUnit → Hour / Minute / Second / Millisecond / Microsecond /
 * Nanosecond = "H" / "M" / "S" / "m" / "u" / "n". */
#include "grpc.h"

#include <stdio.h>

/* PROTOCOL-HTTP2: "at most 8 digits". Also keeps the arithmetic below far
 * from overflow: 99,999,999 hours is ~3.6e14 ms. */
#define TIMEOUT_DIGITS_MAX 8
/* Saturation point promised by grpc.h: leaves room for now_ms + timeout. */
#define TIMEOUT_MS_SAT (UINT64_MAX / 2)

int grpc_timeout_parse(const char *s, size_t len, uint64_t *ms)
{
    if (s == NULL || len < 2 || len > TIMEOUT_DIGITS_MAX + 1) {
        return WERR_INVALID;
    }
    uint64_t v = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return WERR_INVALID;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    uint64_t out;
    switch (s[len - 1]) {
    case 'H': out = v * 3600000u; break;
    case 'M': out = v * 60000u; break;
    case 'S': out = v * 1000u; break;
    case 'm': out = v; break;
    /* Sub-millisecond units round up: a 1us deadline must not become "no
     * time at all", nor (worse) 0 = "no deadline". */
    case 'u': out = (v + 999u) / 1000u; break;
    case 'n': out = (v + 999999u) / 1000000u; break;
    default: return WERR_INVALID;
    }
    *ms = out > TIMEOUT_MS_SAT ? TIMEOUT_MS_SAT : out;
    return 0;
}

int grpc_timeout_format(uint64_t ms, char *buf, size_t cap)
{
    static const struct {
        uint64_t div;
        char unit;
    } units[] = {{1, 'm'}, {1000, 'S'}, {60000, 'M'}, {3600000, 'H'}};
    const uint64_t max_val = 99999999u; /* TIMEOUT_DIGITS_MAX digits */
    uint64_t v = max_val;
    char unit = 'H';

    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        /* Round up so a formatted deadline is never shorter than asked. */
        uint64_t q = ms / units[i].div + (ms % units[i].div != 0);
        if (q <= max_val) {
            v = q;
            unit = units[i].unit;
            break;
        }
    }
    int n = snprintf(buf, cap, "%llu%c", (unsigned long long)v, unit);
    if (n < 0 || (size_t)n >= cap) {
        return WERR_LIMIT;
    }
    return 0;
}
