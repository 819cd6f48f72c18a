#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum wlog_level log_level = WLOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void wlog_set_level(enum wlog_level lvl)
{
    log_level = lvl;
}

int wlog_level_parse(const char *s, enum wlog_level *out)
{
    for (unsigned i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum wlog_level)i;
            return 0;
        }
    }
    return -1;
}

unsigned long wlog_json_escape(const char *s, char *out, unsigned long cap)
{
    unsigned long n = 0;
    if (cap == 0) {
        return 0;
    }
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[8];
        size_t elen;
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            elen = 2;
        } else if (ch == '\n') {
            memcpy(esc, "\\n", 2);
            elen = 2;
        } else if (ch < 0x20 || ch == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            elen = 6;
        } else {
            esc[0] = (char)ch;
            elen = 1;
        }
        if (n + elen + 1 > cap) {
            break;
        }
        memcpy(out + n, esc, elen);
        n += elen;
    }
    out[n] = '\0';
    return n;
}

void wlog(enum wlog_level lvl, const char *msg, ...)
{
    if (lvl < log_level) {
        return;
    }
    char line[WLOG_LINE_MAX];
    size_t n = 0;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts); /* display only */
    gmtime_r(&ts.tv_sec, &tm);
    char tbuf[32];
    strftime(tbuf, sizeof tbuf, "%Y-%m-%dT%H:%M:%S", &tm);
    int w = snprintf(line, sizeof line, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":\"",
                     tbuf, ts.tv_nsec / 1000000L, level_names[lvl]);
    n = (size_t)w;
    n += wlog_json_escape(msg, line + n, sizeof line - n - 3);
    line[n++] = '"';

    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (k == NULL) {
            break;
        }
        const char *v = va_arg(ap, const char *);
        if (v == NULL) {
            v = "";
        }
        /* Reserve room for the closing "}\n". */
        if (n + 8 >= sizeof line - 3) {
            break;
        }
        line[n++] = ',';
        line[n++] = '"';
        n += wlog_json_escape(k, line + n, sizeof line - n - 6);
        memcpy(line + n, "\":\"", 3);
        n += 3;
        n += wlog_json_escape(v, line + n, sizeof line - n - 4);
        line[n++] = '"';
    }
    va_end(ap);
    line[n++] = '}';
    line[n++] = '\n';
    ssize_t r = write(STDERR_FILENO, line, n);
    (void)r;
}
