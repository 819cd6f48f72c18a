/* fuzz_grpc_frame.c - the Length-Prefixed-Message decoder, fed in chunks.
 *
 * Input: byte 0 picks the chunk size (1..256), the rest is the stream.
 * Invariants: consumed never exceeds what was offered, a message never
 * exceeds max_msg, and nothing leaks. */
#include <stdlib.h>
#include <string.h>

#include "grpc/grpc.h"

/* Small so the fuzzer reaches the oversize path easily. */
#define FUZZ_MAX_MSG 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct grpc_frame_dec d;
    if (size < 1) {
        return 0;
    }
    size_t chunk = (size_t)data[0] + 1;
    data++, size--;
    grpc_frame_dec_init(&d, FUZZ_MAX_MSG);
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk, used;
        int rv = grpc_frame_dec_feed(&d, data + off, n, &used);
        if (used > n) {
            abort();
        }
        off += used;
        if (rv < 0) {
            break;
        }
        if (rv == 1) {
            uint8_t *msg;
            size_t len;
            int comp;
            grpc_frame_dec_take(&d, &msg, &len, &comp);
            if (len > FUZZ_MAX_MSG || (len > 0 && msg == NULL)) {
                abort();
            }
            free(msg);
        } else if (used < n) {
            abort(); /* 0 means "need more": all offered bytes were taken */
        }
    }
    (void)grpc_frame_dec_partial(&d);
    grpc_frame_dec_close(&d);
    return 0;
}
