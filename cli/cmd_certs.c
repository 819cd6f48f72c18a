/* cmd_certs.c - `wardenctl certs init-ca | issue` (offline; pki/pki.h).
 *
 * Exit codes (docs/cli.md): 0 written; 64 (EX_USAGE) for a bad role, name,
 * address or --days; 73 (EX_CANTCREAT) when an output file already exists
 * (nothing is overwritten); 1 for anything else (I/O, OpenSSL), with the
 * reason on stderr. */
#include "cmd_int.h"

#include <string.h>

#include "../pki/pki.h"

_Static_assert(CLI_CERT_SAN_MAX <= PKI_SAN_IPS_MAX && CLI_CERT_SAN_MAX <= PKI_SAN_DNS_MAX,
               "--ip/--dns bounds fit the pki spec");

#define CERTS_EXIT_EXISTS 73 /* EX_CANTCREAT */

static int certs_exit(FILE *err, const struct werr *e)
{
    fprintf(err, "wardenctl: certs: %s\n", e->msg);
    switch (e->code) {
    case WERR_INVALID:
        return CLI_EXIT_USAGE;
    case WERR_EXISTS:
        return CERTS_EXIT_EXISTS;
    default:
        return 1;
    }
}

int cli__cmd_certs(const struct cli_args *a, FILE *out, FILE *err)
{
    struct werr e;
    werr_clear(&e);
    if (a->cmd == CLI_CMD_CERTS_INIT_CA) {
        if (pki_ca_init(a->out, a->cn, a->days, &e) != 0) {
            return certs_exit(err, &e);
        }
        fprintf(out, "wrote %s/ca.pem and %s/ca-key.pem (mode 0600)\n", a->out, a->out);
        fprintf(out, "keep ca-key.pem offline; nodes and clients need only ca.pem\n");
        return 0;
    }
    struct pki_leaf_spec s = {.role = a->role, .name = a->name, .days = a->days};
    for (size_t i = 0; i < a->n_ips; i++) {
        s.ips[s.n_ips++] = a->ips[i];
    }
    for (size_t i = 0; i < a->n_dns; i++) {
        s.dns[s.n_dns++] = a->dns[i];
    }
    static struct pki_issued is; /* two path buffers: not the stack */
    if (pki_issue(a->ca_dir, &s, a->out, &is, &e) != 0) {
        return certs_exit(err, &e);
    }
    fprintf(out, "wrote %s and %s (mode 0600)\n", is.cert_path, is.key_path);
    fprintf(out, "  identity  %s\n", is.uri);
    fprintf(out, "  usage     %s\n", pki_leaf_eku(a->role));
    fprintf(out, "  serial    %s\n", is.serial_hex);
    fprintf(out, "  expires   %s\n", is.not_after);
    return 0;
}
