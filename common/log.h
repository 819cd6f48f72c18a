/* log.h - structured logs: one JSON object per line on stderr.
 *
 *   wlog(WLOG_INFO, "listening", "addr", "127.0.0.1:7443", NULL);
 *   {"ts":"2026-11-26T01:02:03.456Z","level":"info","msg":"listening","addr":"127.0.0.1:7443"}
 *
 * Fields are key/value string pairs terminated by NULL; values are JSON-
 * escaped. The wall clock is read here for display only. Thread-safe (one
 * write(2) per line). */
#ifndef WARDEN_COMMON_LOG_H
#define WARDEN_COMMON_LOG_H

enum wlog_level { WLOG_DEBUG = 0, WLOG_INFO = 1, WLOG_WARN = 2, WLOG_ERROR = 3 };

/* Longest log line; longer field values are truncated. */
#define WLOG_LINE_MAX 2048

void wlog_set_level(enum wlog_level lvl);
/* Parse "debug|info|warn|error". Returns 0 or -1. */
int wlog_level_parse(const char *s, enum wlog_level *out);
void wlog(enum wlog_level lvl, const char *msg, ...);

/* JSON-escape s into out (cap bytes, NUL-terminated). Returns bytes written
 * (excluding NUL). Truncates at a whole escape. */
unsigned long wlog_json_escape(const char *s, char *out, unsigned long cap);

#endif
