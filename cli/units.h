/* units.h - the small value syntaxes of wardenctl's access and rollout
 * commands: durations, ratios, stage shares, role lists and enum names, in
 * both directions (parse a flag, format a value for people).
 *
 * Pure: no I/O, no allocation, no floating point (ratios are integer basis
 * points, as in rollout.proto, so what a person types is exactly what the
 * state machine compares). tests/unit/test_cli_units.c. */
#ifndef WARDEN_CLI_UNITS_H
#define WARDEN_CLI_UNITS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"

/* ---- bounds (client side; the server applies its own, docs/access.md and
 * docs/rollouts.md) --------------------------------------------------------- */
/* Longest duration any flag takes: 30 days. The policy caps grants and
 * pending requests at 7 days; bake periods and device timeouts are the
 * only longer ones a person plausibly wants. Also keeps ms far from u64
 * overflow. */
#define CLI_DURATION_MAX_MS (30ull * 24 * 3600 * 1000)
/* Access policy and request bounds (domain/access.h hard caps, repeated so
 * a typo is a usage error before it is a server round trip). */
#define CLI_ACC_DURATION_MIN_MS 1000ull                    /* 1 s */
#define CLI_ACC_DURATION_MAX_MS (7ull * 24 * 3600 * 1000)  /* 7 days */
#define CLI_ACC_TTL_MIN_MS (60ull * 1000)                  /* 1 min */
#define CLI_ACC_APPROVALS_MAX 8u
#define CLI_ACC_USES_MAX 1000u
/* Basis points: 10000 = 100% (rollout.proto). */
#define CLI_BP 10000u
/* Characters in a progress bar between the brackets. */
#define CLI_BAR_WIDTH 10u
/* Longest formatted duration ("123456h59m59s999ms") plus NUL. */
#define CLI_DURATION_FMT_MAX 32
/* Longest formatted basis-point percentage ("100.00%") plus NUL. */
#define CLI_BP_FMT_MAX 16

/* Duration: digits followed by ms, s, m or h; a bare number is seconds (as
 * for --timeout). Returns 0 with *ms set, or WERR_INVALID when the syntax is
 * wrong or the value is outside min_ms..max_ms (max_ms at most
 * CLI_DURATION_MAX_MS). */
int cli_duration_parse(const char *s, uint64_t min_ms, uint64_t max_ms,
                       uint64_t *ms);

/* Format ms as the largest exact units, e.g. 0 → "0ms", 1500 → "1s500ms",
 * 5400000 → "1h30m", 90061001 → "25h1m1s1ms". buf holds
 * CLI_DURATION_FMT_MAX bytes. Returns buf. */
const char *cli_duration_fmt(uint64_t ms, char *buf);

/* Ratio into basis points 0..10000: "95%", "99.5%", "0.01%" (at most two
 * decimals of a percent), "0.95" / "1" (a fraction, at most four decimals)
 * or "9500bp". 0 or WERR_INVALID. */
int cli_ratio_parse(const char *s, uint32_t *bp);

/* Format basis points as a percentage without trailing zeros: 9500 →
 * "95%", 9550 → "95.5%", 1 → "0.01%". buf holds CLI_BP_FMT_MAX bytes. */
const char *cli_bp_fmt(uint32_t bp, char *buf);

/* One rollout stage from --stage: "[NAME=]SHARE" where SHARE is a percent
 * of the eligible devices ("1%", "0.5%", "100%": percent_bp) or a plain
 * count ("50": max_devices, over the whole fleet). NAME is at most
 * CLI_STAGE_NAME_MAX bytes of [A-Za-z0-9._-]. */
#define CLI_STAGE_NAME_MAX 32
struct cli_stage {
    char name[CLI_STAGE_NAME_MAX + 1];
    uint32_t percent_bp;  /* 0 for a count stage (the server reads 10000) */
    uint32_t max_devices; /* 0 for a percent stage */
};
int cli_stage_parse(const char *s, struct cli_stage *out, struct werr *e);

/* Reviewer roles "admin,operator,auditor" (any order, no repeats) into the
 * WROLE_* mask; only those three may review (docs/access.md). 0 or
 * WERR_INVALID. */
int cli_roles_parse(const char *s, uint32_t *mask);
/* The mask as "admin,operator" into buf (cap bytes). Returns buf. */
const char *cli_roles_fmt(uint32_t mask, char *buf, size_t cap);

/* Enum values from user text: the short lowercase name or the full proto
 * name, any case ("incident", "ACCESS_PURPOSE_INCIDENT"). Return the value
 * (>= 1), or WERR_INVALID. */
int cli_purpose_parse(const char *s);       /* warden.v1.AccessPurpose */
int cli_grant_state_parse(const char *s);   /* warden.v1.AccessGrantState */
int cli_phase_parse(const char *s);         /* warden.v1.UpdatePhase, not TIMED_OUT */

/* "[#####.....] 50%": done/total of CLI_BAR_WIDTH cells, rounded down (a
 * bar is full only when everything is done); total 0 gives
 * "[..........] -". buf holds at least CLI_BAR_WIDTH + 16 bytes. */
#define CLI_BAR_BUF (CLI_BAR_WIDTH + 16)
const char *cli_progress_bar(uint64_t done, uint64_t total, char *buf);

#endif
