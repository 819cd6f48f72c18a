#include "manifest.h"

#include <stdlib.h>
#include <string.h>

#include "args.h"

static int printable(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int model_cmp(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

int cli_manifest_build(const char *version, uint64_t counter,
                       const char *sha256_hex, uint64_t size,
                       const char *const *models, size_t n,
                       struct ro_manifest *m, struct werr *e)
{
    memset(m, 0, sizeof *m);
    size_t vl = version ? strlen(version) : 0;
    if (vl == 0 || vl > RO_VERSION_MAX || !printable(version)) {
        return werr_set(e, WERR_INVALID,
                        "--version: want 1..%d printable bytes", RO_VERSION_MAX);
    }
    memcpy(m->version, version, vl + 1);
    if (counter == 0) {
        return werr_set(e, WERR_INVALID, "--counter: release counters start at 1");
    }
    m->counter = counter;
    size_t sl = 0;
    if (sha256_hex == NULL ||
        cli_hex_decode(sha256_hex, m->sha256, sizeof m->sha256, &sl) != 0 ||
        sl != RO_SHA256_LEN) {
        return werr_set(e, WERR_INVALID,
                        "--artifact-sha256: want %d bytes of hex", RO_SHA256_LEN);
    }
    if (size == 0) {
        return werr_set(e, WERR_INVALID, "--artifact-size: want 1 or more bytes");
    }
    m->size = size;
    if (n == 0 || n > RO_MODELS_MAX) {
        return werr_set(e, WERR_INVALID, "--model: want 1..%d hardware models",
                        RO_MODELS_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        size_t ml = strlen(models[i]);
        if (ml == 0 || ml > INV_MODEL_MAX || !printable(models[i])) {
            return werr_set(e, WERR_INVALID,
                            "--model \"%s\": want 1..%d printable bytes", models[i],
                            INV_MODEL_MAX);
        }
        memcpy(m->models[i], models[i], ml + 1);
    }
    /* One list, one encoding: ascending by bytes (docs/rollouts.md). */
    qsort(m->models, n, sizeof m->models[0], model_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(m->models[i - 1], m->models[i]) == 0) {
            return werr_set(e, WERR_INVALID, "--model \"%s\" given twice",
                            m->models[i]);
        }
    }
    m->n_models = n;
    return 0;
}

size_t cli_manifest_encode(const struct ro_manifest *m, uint8_t *buf, size_t cap)
{
    return ro_manifest_encode(m, buf, cap);
}
