/* test_pki_issue.c - pki/pki.c: spec checks, SAN text, and a real CA
 * issuing node and client certificates that verify against it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "pki/pki.h"
#include "unit.h"

static char tmpdir[256];

static void path(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", tmpdir, rel);
}

static X509 *read_cert(const char *rel)
{
    char p[512];
    path(p, sizeof p, rel);
    FILE *f = fopen(p, "r");
    if (f == NULL) {
        return NULL;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

static int mode_of(const char *rel)
{
    char p[512];
    struct stat st;
    path(p, sizeof p, rel);
    return stat(p, &st) == 0 ? (int)(st.st_mode & 0777) : -1;
}

/* 1 if leaf verifies against ca for purpose (X509_PURPOSE_SSL_SERVER/CLIENT). */
static int verifies(X509 *ca, X509 *leaf, int purpose)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_add_cert(st, ca);
    X509_STORE_CTX_init(ctx, st, leaf, NULL);
    X509_STORE_CTX_set_purpose(ctx, purpose);
    int ok = X509_verify_cert(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    ERR_clear_error();
    return ok == 1;
}

/* The SAN entries as "TYPE:value" joined by ",". */
static void san_text(X509 *x, char *buf, size_t cap)
{
    buf[0] = '\0';
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    size_t len = 0;
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char v[128] = "?";
        const char *t = "?";
        if (g->type == GEN_URI || g->type == GEN_DNS) {
            t = g->type == GEN_URI ? "URI" : "DNS";
            snprintf(v, sizeof v, "%.*s", ASN1_STRING_length(g->d.ia5),
                     (const char *)ASN1_STRING_get0_data(g->d.ia5));
        } else if (g->type == GEN_IPADD) {
            t = "IP";
            const unsigned char *d = ASN1_STRING_get0_data(g->d.ip);
            if (ASN1_STRING_length(g->d.ip) == 4) {
                snprintf(v, sizeof v, "%u.%u.%u.%u", d[0], d[1], d[2], d[3]);
            } else {
                snprintf(v, sizeof v, "v6");
            }
        }
        len += (size_t)snprintf(buf + len, cap - len, "%s%s:%s", i ? "," : "", t, v);
    }
    GENERAL_NAMES_free(gens);
}

TEST(node_name)
{
    unsigned long id = 0;
    CHECK_EQ_INT(pki_node_name_parse("n1", &id), 0);
    CHECK_EQ_INT(id, 1);
    CHECK_EQ_INT(pki_node_name_parse("n4294967295", &id), 0);
    CHECK_EQ_INT(id, 4294967295ul);
    CHECK(pki_node_name_parse("n4294967296", NULL) != 0);
    CHECK(pki_node_name_parse("n0", NULL) != 0);
    CHECK(pki_node_name_parse("n01", NULL) != 0);
    CHECK(pki_node_name_parse("n", NULL) != 0);
    CHECK(pki_node_name_parse("N1", NULL) != 0);
    CHECK(pki_node_name_parse("n1a", NULL) != 0);
    CHECK(pki_node_name_parse("node1", NULL) != 0);
}

TEST(spec_checks)
{
    struct werr e;
    struct pki_leaf_spec s = {.role = "peer", .name = "n2", .ips = {"10.0.0.2", "::1"},
                              .n_ips = 2, .dns = {"n2.warden.svc"}, .n_dns = 1};
    char san[PKI_SAN_MAX];
    CHECK_EQ_INT(pki_san_format(&s, san, sizeof san, &e), 0);
    CHECK_EQ_STR(san, "IP:10.0.0.2,IP:::1,DNS:n2.warden.svc,URI:warden://role/peer/n2");
    CHECK_EQ_STR(pki_leaf_eku("peer"), "serverAuth,clientAuth");
    CHECK_EQ_STR(pki_leaf_eku("operator"), "clientAuth");

    struct pki_leaf_spec c = {.role = "operator", .name = "op-1.site_a"};
    CHECK_EQ_INT(pki_san_format(&c, san, sizeof san, &e), 0);
    CHECK_EQ_STR(san, "URI:warden://role/operator/op-1.site_a");

    struct pki_leaf_spec bad = c;
    bad.role = "root";
    CHECK_EQ_INT(pki_leaf_check(&bad, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "role \"root\"") != NULL);
    bad.role = "Admin"; /* matched byte for byte */
    CHECK_EQ_INT(pki_leaf_check(&bad, &e), WERR_INVALID);
    bad = c;
    bad.name = "op 1";
    CHECK_EQ_INT(pki_leaf_check(&bad, &e), WERR_INVALID);
    bad.name = "op/1";
    CHECK_EQ_INT(pki_leaf_check(&bad, &e), WERR_INVALID);
    bad.name = "";
    CHECK_EQ_INT(pki_leaf_check(&bad, &e), WERR_INVALID);
    char longname[80];
    memset(longname, 'a', 65);
    longname[65] = '\0';
    bad.name = longname;
    CHECK_EQ_INT(pki_leaf_check(&bad, &e), WERR_INVALID);
    longname[64] = '\0';
    CHECK_EQ_INT(pki_leaf_check(&bad, &e), 0);
    /* client certs carry no addresses */
    bad = c;
    bad.ips[0] = "10.0.0.1";
    bad.n_ips = 1;
    CHECK_EQ_INT(pki_leaf_check(&bad, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "role peer only") != NULL);
    /* peers: n<ID>, at least one IP, valid IP/DNS */
    bad = s;
    bad.name = "node2";
    CHECK_EQ_INT(pki_leaf_check(&bad, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "n<ID>") != NULL);
    bad = s;
    bad.n_ips = 0; /* a DNS name alone will do (Kubernetes: pod IPs unknown) */
    CHECK_EQ_INT(pki_leaf_check(&bad, &e), 0);
    bad.n_dns = 0;
    CHECK_EQ_INT(pki_leaf_check(&bad, &e), WERR_INVALID);
    bad = s;
    bad.ips[0] = "10.0.0.300";
    CHECK_EQ_INT(pki_leaf_check(&bad, &e), WERR_INVALID);
    const char *bad_dns[] = {"-a.b", "a-.b", "a..b", ".a", "a.", "*.warden", "a_b", ""};
    for (size_t i = 0; i < sizeof bad_dns / sizeof bad_dns[0]; i++) {
        bad = s;
        bad.dns[0] = bad_dns[i];
        CHECK_EQ_INT(pki_leaf_check(&bad, &e), WERR_INVALID);
    }
    bad = s;
    bad.days = PKI_LEAF_DAYS_MAX + 1;
    CHECK_EQ_INT(pki_leaf_check(&bad, &e), WERR_INVALID);
    /* SAN buffer too small is a limit, not a truncation */
    CHECK_EQ_INT(pki_san_format(&s, san, 20, &e), WERR_LIMIT);
}

TEST(ca_and_leaves)
{
    struct werr e;
    char ca_dir[512], prefix[512];
    path(ca_dir, sizeof ca_dir, "ca");
    CHECK_EQ_INT(pki_ca_init(ca_dir, "test CA", 30, &e), 0);
    CHECK_EQ_INT(mode_of("ca/ca-key.pem"), 0600);
    CHECK_EQ_INT(mode_of("ca"), 0700);
    /* refuse to overwrite */
    CHECK_EQ_INT(pki_ca_init(ca_dir, NULL, 0, &e), WERR_EXISTS);
    CHECK(strstr(e.msg, "refusing to overwrite") != NULL);
    CHECK_EQ_INT(pki_ca_init(ca_dir, "", 0, &e), WERR_INVALID);

    struct pki_leaf_spec node = {.role = "peer", .name = "n1", .ips = {"127.0.0.1"},
                                 .n_ips = 1, .dns = {"localhost"}, .n_dns = 1,
                                 .days = 10};
    struct pki_issued is;
    path(prefix, sizeof prefix, "node-1");
    CHECK_EQ_INT(pki_issue(ca_dir, &node, prefix, &is, &e), 0);
    CHECK_EQ_STR(is.uri, "warden://role/peer/n1");
    CHECK_EQ_INT(strlen(is.serial_hex), 32); /* 128 bits, top bit set */
    CHECK_EQ_INT(mode_of("node-1-key.pem"), 0600);
    CHECK_EQ_INT(pki_issue(ca_dir, &node, prefix, &is, &e), WERR_EXISTS);

    struct pki_leaf_spec adm = {.role = "admin", .name = "alice", .days = 10};
    path(prefix, sizeof prefix, "admin");
    CHECK_EQ_INT(pki_issue(ca_dir, &adm, prefix, NULL, &e), 0);
    /* a leaf may not outlive the CA (30 days) */
    adm.days = 31;
    path(prefix, sizeof prefix, "admin-long");
    CHECK_EQ_INT(pki_issue(ca_dir, &adm, prefix, NULL, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "outlive") != NULL);
    CHECK_EQ_INT(mode_of("admin-long-key.pem"), -1);

    X509 *ca = read_cert("ca/ca.pem");
    X509 *n1 = read_cert("node-1.pem");
    X509 *a = read_cert("admin.pem");
    CHECK(ca != NULL && n1 != NULL && a != NULL);
    CHECK(verifies(ca, n1, X509_PURPOSE_SSL_SERVER));
    CHECK(verifies(ca, n1, X509_PURPOSE_SSL_CLIENT));
    CHECK(verifies(ca, a, X509_PURPOSE_SSL_CLIENT));
    CHECK(!verifies(ca, a, X509_PURPOSE_SSL_SERVER));
    char san[512];
    san_text(n1, san, sizeof san);
    CHECK_EQ_STR(san, "IP:127.0.0.1,DNS:localhost,URI:warden://role/peer/n1");
    san_text(a, san, sizeof san);
    CHECK_EQ_STR(san, "URI:warden://role/admin/alice");
    /* serials differ */
    CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(n1), X509_get0_serialNumber(a)) != 0);

    /* another CA's leaf does not verify against this CA */
    char other[512];
    path(other, sizeof other, "other");
    CHECK_EQ_INT(pki_ca_init(other, NULL, 0, &e), 0);
    path(prefix, sizeof prefix, "evil");
    CHECK_EQ_INT(pki_issue(other, &(struct pki_leaf_spec){.role = "admin", .name = "x", .days = 10},
                           prefix, NULL, &e), 0);
    X509 *evil = read_cert("evil.pem");
    CHECK(evil != NULL && !verifies(ca, evil, X509_PURPOSE_SSL_CLIENT));
    X509_free(evil);

    /* a CA dir whose key does not match its certificate is refused */
    char cmd[4096], mix[512];
    path(mix, sizeof mix, "mix");
    snprintf(cmd, sizeof cmd, "mkdir '%s' && cp '%s/ca.pem' '%s/' && cp '%s/ca-key.pem' '%s/'",
             mix, ca_dir, mix, other, mix);
    CHECK_EQ_INT(system(cmd), 0);
    path(prefix, sizeof prefix, "mixed");
    CHECK_EQ_INT(pki_issue(mix, &(struct pki_leaf_spec){.role = "admin", .name = "x", .days = 10},
                           prefix, NULL, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "does not match") != NULL);
    X509_free(ca);
    X509_free(n1);
    X509_free(a);
}

TEST(missing_ca)
{
    struct werr e;
    char nodir[512], prefix[512];
    path(nodir, sizeof nodir, "nope");
    path(prefix, sizeof prefix, "x");
    struct pki_leaf_spec adm = {.role = "admin", .name = "a"};
    CHECK_EQ_INT(pki_issue(nodir, &adm, prefix, NULL, &e), WERR_IO);
    CHECK(strstr(e.msg, "ca.pem") != NULL);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/warden-test-pki-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(node_name);
    RUN(spec_checks);
    RUN(ca_and_leaves);
    RUN(missing_ca);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cleanup of %s failed\n", tmpdir);
    }
    return unit_done();
}
