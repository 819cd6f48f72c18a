/* test_server_config.c - config file parser and precedence (config.h). */
#include <string.h>

#include "../../server/config.h"
#include "unit.h"

static int parse(struct config *c, const char *text, struct werr *e)
{
    return config_parse_buf(c, "w.conf", text, strlen(text), e);
}

TEST(parses_keys_comments_blanks)
{
    static struct config c;
    struct werr e;
    config_init(&c);
    CHECK_EQ_INT(parse(&c, "# comment\n\n  listen = 127.0.0.1:9 \n\tdev=yes\r\n"
                           "max_conns = 7\nlog_level = warn\nrate_limit_rps = 0\n"
                           "peers = 1=1.2.3.4:5#x\n",
                       &e),
                 0);
    CHECK_EQ_STR(c.node.listen, "127.0.0.1:9");
    CHECK_EQ_INT(c.node.dev, 1);
    CHECK_EQ_INT(c.node.max_conns, 7);
    CHECK_EQ_INT(c.log_level, WLOG_WARN);
    CHECK_EQ_INT(c.node.rate_limit_rps, 0);
    CHECK_EQ_STR(c.node.peers, "1=1.2.3.4:5#x"); /* no trailing comments */
    CHECK_EQ_INT(c.src[CONFIG_K_LISTEN], CONFIG_SRC_FILE);
    CHECK_EQ_INT(c.src[CONFIG_K_DATA_DIR], CONFIG_SRC_DEFAULT);
}

TEST(errors_name_file_and_line)
{
    static struct config c;
    struct werr e;
    config_init(&c);
    CHECK_EQ_INT(parse(&c, "dev = true\n# x\nbogus = 1\n", &e), WERR_CONFIG);
    CHECK(strstr(e.msg, "w.conf:3: unknown key \"bogus\"") != NULL);
    config_init(&c);
    CHECK_EQ_INT(parse(&c, "max_conns = 1\nmax_conns = 2\n", &e), WERR_CONFIG);
    CHECK(strstr(e.msg, "w.conf:2: duplicate key \"max_conns\"") != NULL);
    config_init(&c);
    CHECK_EQ_INT(parse(&c, "max_conns = 0\n", &e), WERR_CONFIG);
    CHECK(strstr(e.msg, "w.conf:1") != NULL && strstr(e.msg, "1..65536") != NULL);
    config_init(&c);
    CHECK_EQ_INT(parse(&c, "\nlisten\n", &e), WERR_CONFIG);
    CHECK(strstr(e.msg, "w.conf:2: want key = value") != NULL);
    config_init(&c);
    CHECK_EQ_INT(parse(&c, "dev = maybe\n", &e), WERR_CONFIG);
    config_init(&c);
    CHECK_EQ_INT(parse(&c, "Max_Conns = 3\n", &e), WERR_CONFIG);
    config_init(&c);
    CHECK_EQ_INT(parse(&c, "max-conns = 3\n", &e), WERR_CONFIG); /* file keys use _ */
    config_init(&c);
    CHECK_EQ_INT(parse(&c, "listen =\n", &e), WERR_CONFIG);
    config_init(&c);
    CHECK_EQ_INT(parse(&c, "max_msg_bytes = -1\n", &e), WERR_CONFIG);
    config_init(&c);
    CHECK_EQ_INT(parse(&c, "node_id = 0\n", &e), WERR_CONFIG);
    config_init(&c);
    CHECK_EQ_INT(config_parse_buf(&c, "w.conf", "dev = 1\0x\n", 10, &e), WERR_CONFIG);
    CHECK(strstr(e.msg, "NUL") != NULL);
    /* A line over the cap. */
    static char big[CONFIG_LINE_MAX + 32];
    memset(big, 'a', sizeof big - 1);
    memcpy(big, "peers = ", 8);
    config_init(&c);
    CHECK_EQ_INT(parse(&c, big, &e), WERR_CONFIG);
    CHECK(strstr(e.msg, "w.conf:1: line longer") != NULL);
}

struct fake_env {
    const char *name, *value;
};

static const char *fake_getenv(const char *name, void *arg)
{
    const struct fake_env *f = arg;
    for (; f->name != NULL; f++) {
        if (strcmp(f->name, name) == 0) {
            return f->value;
        }
    }
    return NULL;
}

/* flags > environment > file > defaults. */
TEST(precedence)
{
    static struct config c;
    struct werr e;
    config_init(&c);
    CHECK_EQ_INT(c.node.max_conns, NODE_MAX_CONNS_DEFAULT);
    CHECK_EQ_INT(parse(&c, "max_conns = 10\nidle_timeout_ms = 11\ndata_dir = /f\n", &e), 0);
    const struct fake_env env[] = {{"WARDEN_MAX_CONNS", "20"},
                                   {"WARDEN_DATA_DIR", "/env"},
                                   {"WARDEN_LISTEN", ""}, /* empty = unset */
                                   {"WARDEN_PORT", "99"}, /* not a key: ignored */
                                   {NULL, NULL}};
    CHECK_EQ_INT(config_apply_env(&c, fake_getenv, (void *)env, &e), 0);
    int k = config_key_find("max-conns", 9);
    CHECK_EQ_INT(k, CONFIG_K_MAX_CONNS);
    CHECK_EQ_INT(config_set(&c, (enum config_key)k, "30", CONFIG_SRC_FLAG, &e), 0);
    CHECK_EQ_INT(c.node.max_conns, 30);            /* flag */
    CHECK_EQ_STR(c.node.data_dir, "/env");         /* env over file */
    CHECK_EQ_INT(c.node.idle_timeout_ms, 11);      /* file over default */
    CHECK(c.node.listen == NULL);                  /* default */
    CHECK_EQ_INT(c.node.shutdown_grace_ms, NODE_SHUTDOWN_GRACE_MS_DEFAULT);
    CHECK_EQ_INT(c.src[CONFIG_K_MAX_CONNS], CONFIG_SRC_FLAG);
    CHECK_EQ_INT(c.src[CONFIG_K_DATA_DIR], CONFIG_SRC_ENV);
    CHECK_EQ_INT(c.src[CONFIG_K_IDLE_TIMEOUT_MS], CONFIG_SRC_FILE);

    const struct fake_env bad[] = {{"WARDEN_ELECTION_TIMEOUT_MS", "5"}, {NULL, NULL}};
    CHECK_EQ_INT(config_apply_env(&c, fake_getenv, (void *)bad, &e), WERR_CONFIG);
    CHECK(strstr(e.msg, "WARDEN_ELECTION_TIMEOUT_MS") != NULL);
}

/* Every key has a flag spelling and round-trips through config_key_find. */
TEST(every_key_named)
{
    for (int k = 0; k < CONFIG_K_N; k++) {
        const char *n = config_key_name((enum config_key)k);
        CHECK(n != NULL && n[0] != '?');
        CHECK_EQ_INT(config_key_find(n, strlen(n)), k);
    }
    CHECK_EQ_INT(config_key_find("nope", 4), -1);
    CHECK(config_key_is_bool(CONFIG_K_DEV) && config_key_is_bool(CONFIG_K_JOIN));
    CHECK(!config_key_is_bool(CONFIG_K_LISTEN));
}

/* --max-watchers (issue 8, scenario 7): default, bounds, every source. */
TEST(max_watchers_bounded)
{
    static struct config c;
    struct werr e;
    config_init(&c);
    CHECK_EQ_INT(c.node.max_watchers, SVC_ACCESS_WATCH_MAX_DEFAULT);
    CHECK_EQ_INT(SVC_ACCESS_WATCH_MAX_DEFAULT, 2048);
    CHECK_EQ_INT(parse(&c, "max_watchers = 10064\n", &e), 0);
    CHECK_EQ_INT(c.node.max_watchers, 10064);
    CHECK_EQ_INT(c.src[CONFIG_K_MAX_WATCHERS], CONFIG_SRC_FILE);
    config_init(&c);
    CHECK_EQ_INT(parse(&c, "max_watchers = 0\n", &e), WERR_CONFIG);
    CHECK(strstr(e.msg, "max_watchers") != NULL && strstr(e.msg, "1..65536") != NULL);
    config_init(&c);
    CHECK_EQ_INT(config_set(&c, CONFIG_K_MAX_WATCHERS, "65537", CONFIG_SRC_FLAG, &e),
                 WERR_CONFIG);
    CHECK_EQ_INT(c.node.max_watchers, SVC_ACCESS_WATCH_MAX_DEFAULT);
    CHECK_EQ_INT(config_set(&c, CONFIG_K_MAX_WATCHERS, "65536", CONFIG_SRC_FLAG, &e), 0);
    CHECK_EQ_INT(c.node.max_watchers, SVC_ACCESS_WATCH_MAX_HARD);
    int k = config_key_find("max-watchers", 12);
    CHECK_EQ_INT(k, CONFIG_K_MAX_WATCHERS);
}

int main(void)
{
    RUN(parses_keys_comments_blanks);
    RUN(errors_name_file_and_line);
    RUN(precedence);
    RUN(every_key_named);
    RUN(max_watchers_bounded);
    return unit_done();
}
