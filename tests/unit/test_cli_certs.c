/* test_cli_certs.c - `wardenctl certs` and `top` on the command line:
 * parsing, usage errors, and the certs commands' files, output and exit
 * codes (cli/cmd_certs.c over pki/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/cmd.h"
#include "unit.h"

static struct cli_args a;
static struct werr e;
static char tmpdir[256];

static int parse(const char *line)
{
    static char buf[2048];
    static char *argv[64];
    int argc = 0;
    snprintf(buf, sizeof buf, "wardenctl %s", line);
    for (char *t = strtok(buf, " "); t != NULL && argc < 63; t = strtok(NULL, " ")) {
        argv[argc++] = t;
    }
    argv[argc] = NULL;
    return cli_args_parse(argc, argv, &a, &e);
}

/* Run a parsed certs command; its stdout in out (cap), stderr in errbuf. */
static int run(char *out, size_t cap, char *errbuf, size_t ecap)
{
    FILE *o = fmemopen(out, cap, "w"), *x = fmemopen(errbuf, ecap, "w");
    int rc = cli_cmd_run(&a, o, x);
    fclose(o);
    fclose(x);
    return rc;
}

TEST(parse_certs)
{
    CHECK_EQ_INT(parse("certs init-ca --out /tmp/ca --cn Plant-CA --days 3650"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_CERTS_INIT_CA);
    CHECK_EQ_STR(a.out, "/tmp/ca");
    CHECK_EQ_STR(a.cn, "Plant-CA");
    CHECK_EQ_INT(a.days, 3650);
    CHECK(cli_cmd_offline(a.cmd)); /* no TLS flags needed */

    CHECK_EQ_INT(parse("certs issue --ca-dir /ca --role peer --name n3 --ip 10.0.0.3 "
                       "--ip ::1 --dns n3.warden --out /x/node-3"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_CERTS_ISSUE);
    CHECK_EQ_STR(a.role, "peer");
    CHECK_EQ_STR(a.name, "n3");
    CHECK_EQ_INT(a.n_ips, 2);
    CHECK_EQ_STR(a.ips[1], "::1");
    CHECK_EQ_INT(a.n_dns, 1);
    CHECK_EQ_STR(a.out, "/x/node-3");

    CHECK_EQ_INT(parse("certs init-ca"), WERR_INVALID);
    CHECK(strstr(e.msg, "--out DIR is required") != NULL);
    CHECK_EQ_INT(parse("certs issue --ca-dir /ca --role admin --out x"), WERR_INVALID);
    CHECK(strstr(e.msg, "--name") != NULL);
    CHECK_EQ_INT(parse("certs rotate"), WERR_INVALID);
    CHECK_EQ_INT(parse("certs"), WERR_INVALID);
    CHECK_EQ_INT(parse("certs init-ca --out d --ip 1.2.3.4"), WERR_INVALID);
    CHECK(strstr(e.msg, "--ip does not apply") != NULL);
    CHECK_EQ_INT(parse("certs init-ca --out d --days 0"), WERR_INVALID);
    CHECK_EQ_INT(parse("certs issue --ca-dir c --role peer --name n1 --out o --ip 1 --ip 2 "
                       "--ip 3 --ip 4 --ip 5 --ip 6 --ip 7 --ip 8 --ip 9"), WERR_INVALID);
    CHECK(strstr(e.msg, "--ip: at most 8") != NULL);
}

TEST(parse_top)
{
    CHECK_EQ_INT(parse("top --ca c --cert x --key k --endpoint 127.0.0.1:1,127.0.0.2:1 "
                       "--once"), 0);
    CHECK_EQ_INT(a.cmd, CLI_CMD_TOP);
    CHECK_EQ_INT(a.iterations, 1);
    CHECK_EQ_INT(a.interval_ms, 1000);
    CHECK_EQ_INT(a.n_endpoints, 2);
    CHECK_EQ_INT(parse("top --ca c --cert x --key k --interval 250ms --iterations 3 "
                       "--metrics http://127.0.0.1:9100"), 0);
    CHECK_EQ_INT(a.interval_ms, 250);
    CHECK_EQ_INT(a.iterations, 3);
    CHECK_EQ_INT(a.n_endpoints, 1); /* the default */
    CHECK_EQ_INT(parse("top --ca c --cert x --key k --cluster-json /d/cluster.json"), 0);
    CHECK_EQ_INT(a.n_endpoints, 0); /* taken from the file */
    CHECK_EQ_INT(parse("top --ca c --cert x --key k --interval 100ms"), WERR_INVALID);
    CHECK(strstr(e.msg, "250ms") != NULL);
    CHECK_EQ_INT(parse("top --ca c --cert x --key k --once --iterations 2"), WERR_INVALID);
    CHECK_EQ_INT(parse("top --ca c --cert x --key k --endpoint a:1 --cluster-json f"),
                 WERR_INVALID);
    CHECK_EQ_INT(parse("top --once"), WERR_INVALID); /* TLS is required */
    CHECK_EQ_INT(parse("health --once --ca c --cert x --key k"), WERR_INVALID);
}

TEST(certs_run)
{
    char cmd[1024], out[2048], err[1024];
    snprintf(cmd, sizeof cmd, "certs init-ca --out %s/ca --cn Test-CA", tmpdir);
    CHECK_EQ_INT(parse(cmd), 0);
    CHECK_EQ_INT(run(out, sizeof out, err, sizeof err), 0);
    char want[1024];
    snprintf(want, sizeof want,
             "wrote %s/ca/ca.pem and %s/ca/ca-key.pem (mode 0600)\n"
             "keep ca-key.pem offline; nodes and clients need only ca.pem\n",
             tmpdir, tmpdir);
    CHECK_EQ_STR(out, want);
    /* again: refused, exit 73 */
    CHECK_EQ_INT(run(out, sizeof out, err, sizeof err), 73);
    CHECK(strstr(err, "refusing to overwrite") != NULL);

    snprintf(cmd, sizeof cmd,
             "certs issue --ca-dir %s/ca --role peer --name n1 --ip 127.0.0.1 --out %s/node-1",
             tmpdir, tmpdir);
    CHECK_EQ_INT(parse(cmd), 0);
    CHECK_EQ_INT(run(out, sizeof out, err, sizeof err), 0);
    snprintf(want, sizeof want,
             "wrote %s/node-1.pem and %s/node-1-key.pem (mode 0600)\n"
             "  identity  warden://role/peer/n1\n"
             "  usage     serverAuth,clientAuth\n"
             "  serial    ",
             tmpdir, tmpdir);
    CHECK(strncmp(out, want, strlen(want)) == 0);
    CHECK(strstr(out, "\n  expires   ") != NULL);
    char key[512];
    struct stat st;
    snprintf(key, sizeof key, "%s/node-1-key.pem", tmpdir);
    CHECK_EQ_INT(stat(key, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);

    /* a bad name is a usage error (64), and writes nothing */
    snprintf(cmd, sizeof cmd,
             "certs issue --ca-dir %s/ca --role gateway --name gw/1 --out %s/gw", tmpdir,
             tmpdir);
    CHECK_EQ_INT(parse(cmd), 0);
    CHECK_EQ_INT(run(out, sizeof out, err, sizeof err), CLI_EXIT_USAGE);
    CHECK(strstr(err, "wardenctl: certs: name \"gw/1\"") != NULL);
    snprintf(key, sizeof key, "%s/gw-key.pem", tmpdir);
    CHECK(stat(key, &st) != 0);
    /* a missing CA is an I/O error (1) */
    snprintf(cmd, sizeof cmd,
             "certs issue --ca-dir %s/none --role admin --name a --out %s/a", tmpdir, tmpdir);
    CHECK_EQ_INT(parse(cmd), 0);
    CHECK_EQ_INT(run(out, sizeof out, err, sizeof err), 1);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/warden-test-clicerts-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(parse_certs);
    RUN(parse_top);
    RUN(certs_run);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cleanup of %s failed\n", tmpdir);
    }
    return unit_done();
}
