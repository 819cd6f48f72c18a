/* Tests for `wardenctl verify-command` (cli/offline.c over ctl_verify):
 * argv in, exit code and output out, no server and no TLS files. The
 * envelope is built with the domain's encoder and signed here with a fresh
 * Ed25519 command key. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cli/args.h"
#include "cli/offline.h"
#include "domain/ctl_envelope.h"
#include "unit.h"

static char env_hex[2 * CTL_ENVELOPE_MAX + 1], sig_hex[129], pk_hex[65];
static uint8_t env[CTL_ENVELOPE_MAX], sig[64];
static size_t env_len;
static char out_text[8192], err_text[8192];

static void tohex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", b[i]);
    }
    out[2 * n] = '\0';
}

/* Envelope for plc-1, key epoch 3, seq 7, signed by a new command key. */
static void setup(void)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    uint8_t pub[32];
    size_t pl = sizeof pub, sl = sizeof sig;
    EVP_PKEY_get_raw_public_key(pk, pub, &pl);
    static const uint8_t payload[] = "reboot";
    struct ctl_envelope ce = {.key_epoch = 3, .seq = 7, .time_ms = 123456,
                              .payload = payload, .payload_len = 6};
    strcpy(ce.device_id, "plc-1");
    strcpy(ce.key_id, "k1");
    env_len = ctl_envelope_encode(&ce, env, sizeof env);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestSignInit(md, NULL, NULL, NULL, pk);
    EVP_DigestSign(md, sig, &sl, env, env_len);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pk);
    tohex(env, env_len, env_hex);
    tohex(sig, 64, sig_hex);
    tohex(pub, 32, pk_hex);
}

/* Run verify-command with the given overrides; returns the exit code. */
static int run(const char *envh, const char *sigh, const char *pkh,
               const char *device, const char *epoch, const char *last)
{
    static struct cli_args a;
    struct werr e;
    char *argv[] = {"wardenctl", "verify-command", "--envelope-hex", (char *)envh,
                    "--signature-hex", (char *)sigh, "--pubkey-hex", (char *)pkh,
                    "--device", (char *)device, "--key-epoch", (char *)epoch,
                    "--last-seq", (char *)last};
    if (cli_args_parse(14, argv, &a, &e) != 0) {
        snprintf(err_text, sizeof err_text, "%s", e.msg);
        return CLI_EXIT_USAGE;
    }
    FILE *out = fmemopen(out_text, sizeof out_text, "w");
    FILE *err = fmemopen(err_text, sizeof err_text, "w");
    int rc = cli_offline_run(&a, out, err);
    fclose(out);
    fclose(err);
    return rc;
}

TEST(accepts_and_prints_envelope)
{
    CHECK_EQ_INT(run(env_hex, sig_hex, pk_hex, "plc-1", "3", "6"), 0);
    CHECK(strstr(out_text, "ACCEPTED") != NULL);
    CHECK(strstr(out_text, "\"k1\"") != NULL);
    CHECK(strstr(out_text, "seq                 7") != NULL);
    CHECK(strstr(out_text, "7265626f6f74") != NULL); /* "reboot" */
    CHECK_EQ_INT(run(env_hex, sig_hex, pk_hex, "plc-1", "3", "0"), 0);
}

TEST(rejects_each_way)
{
    char bad[sizeof sig_hex];
    strcpy(bad, sig_hex);
    bad[10] = bad[10] == '0' ? '1' : '0';
    CHECK_EQ_INT(run(env_hex, bad, pk_hex, "plc-1", "3", "6"), 1);
    CHECK(strstr(out_text, "REJECTED  BAD_SIGNATURE") != NULL);

    CHECK_EQ_INT(run(env_hex, sig_hex, pk_hex, "plc-2", "3", "6"), 1);
    CHECK(strstr(out_text, "REJECTED  WRONG_DEVICE") != NULL);

    CHECK_EQ_INT(run(env_hex, sig_hex, pk_hex, "plc-1", "4", "6"), 1);
    CHECK(strstr(out_text, "REJECTED  STALE_EPOCH") != NULL);

    CHECK_EQ_INT(run(env_hex, sig_hex, pk_hex, "plc-1", "3", "7"), 1);
    CHECK(strstr(out_text, "REJECTED  REPLAY") != NULL);
    CHECK_EQ_INT(run(env_hex, sig_hex, pk_hex, "plc-1", "3", "100"), 1);
    CHECK(strstr(out_text, "REJECTED  REPLAY") != NULL);

    /* A tampered envelope (the seq byte) fails the signature, not replay. */
    char tampered[sizeof env_hex];
    strcpy(tampered, env_hex);
    size_t seq_hex = 2 * (env_len - 4 - 6 - 8 - 1); /* last byte of the u64 seq */
    tampered[seq_hex + 1] = tampered[seq_hex + 1] == '7' ? '8' : '7';
    CHECK_EQ_INT(run(tampered, sig_hex, pk_hex, "plc-1", "3", "6"), 1);
    CHECK(strstr(out_text, "BAD_SIGNATURE") != NULL);

    /* Trailing byte: malformed. */
    char longer[sizeof env_hex + 2];
    snprintf(longer, sizeof longer, "%s00", env_hex);
    CHECK_EQ_INT(run(longer, sig_hex, pk_hex, "plc-1", "3", "6"), 1);
    CHECK(strstr(out_text, "REJECTED  MALFORMED") != NULL);

    /* Another command key. */
    char otherpk[sizeof pk_hex];
    strcpy(otherpk, pk_hex);
    otherpk[0] = otherpk[0] == 'a' ? 'b' : 'a';
    CHECK_EQ_INT(run(env_hex, sig_hex, otherpk, "plc-1", "3", "6"), 1);
}

TEST(usage_and_file_errors)
{
    CHECK_EQ_INT(run(env_hex, sig_hex, "abcd", "plc-1", "3", "6"), CLI_EXIT_USAGE);
    CHECK_EQ_INT(run("xyz", sig_hex, pk_hex, "plc-1", "3", "6"), CLI_EXIT_USAGE);
    CHECK_EQ_INT(run(env_hex, sig_hex, pk_hex, "plc-1", "-1", "6"), CLI_EXIT_USAGE);

    /* --envelope-file: the same bytes from a file; a missing file is 2. */
    char path[] = "/tmp/test_cli_verify_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK_EQ_INT(write(fd, env, env_len), (long long)env_len);
    close(fd);
    static struct cli_args a;
    struct werr e;
    char *argv[] = {"wardenctl", "verify-command", "--envelope-file", path,
                    "--signature-hex", sig_hex, "--pubkey-hex", pk_hex,
                    "--device", "plc-1", "--key-epoch", "3", "--last-seq", "6",
                    "--json"};
    CHECK_EQ_INT(cli_args_parse(15, argv, &a, &e), 0);
    FILE *out = fmemopen(out_text, sizeof out_text, "w");
    FILE *err = fmemopen(err_text, sizeof err_text, "w");
    CHECK_EQ_INT(cli_offline_run(&a, out, err), 0);
    fclose(out);
    fclose(err);
    CHECK(strstr(out_text, "{\"accepted\":true,\"verdict\":\"OK\"") != NULL);
    unlink(path);
    out = fmemopen(out_text, sizeof out_text, "w");
    err = fmemopen(err_text, sizeof err_text, "w");
    CHECK_EQ_INT(cli_offline_run(&a, out, err), 2);
    fclose(out);
    fclose(err);
}

int main(void)
{
    setup();
    RUN(accepts_and_prints_envelope);
    RUN(rejects_each_way);
    RUN(usage_and_file_errors);
    return unit_done();
}
