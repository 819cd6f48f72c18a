/* report.c - results: a text summary on stderr, JSON (summary plus a
 * per-second time series) and an SVG plot of latency percentiles and
 * throughput over time. Output only; no measurement happens here. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "grpc/grpc.h"
#include "lg.h"

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static double window_s(const struct lg *lg)
{
    uint64_t end = lg->t_end < lg->t_done ? lg->t_end : lg->t_done;
    return end > lg->t_measure ? (double)(end - lg->t_measure) / 1e9 : 0.0;
}

static uint64_t n_err(const uint64_t *by)
{
    uint64_t n = 0;
    for (int i = 1; i < LG_ST_N; i++) {
        n += by[i];
    }
    return n;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            fprintf(f, "\\%c", ch);
        } else if (ch < 0x20 || ch >= 0x7f) {
            fprintf(f, "\\u%04x", ch);
        } else {
            fputc(ch, f);
        }
    }
    fputc('"', f);
}

static void json_lat(FILE *f, const struct lg_hist *h)
{
    fprintf(f, "{\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, "
               "\"max\": %.3f, \"mean\": %.3f, \"n\": %llu}",
            ms(lg_hist_quantile(h, 0.5)), ms(lg_hist_quantile(h, 0.9)),
            ms(lg_hist_quantile(h, 0.99)), ms(lg_hist_quantile(h, 0.999)),
            ms(h->max), lg_hist_mean(h) / 1e6, (unsigned long long)h->n);
}

static void json_status(FILE *f, const uint64_t *by)
{
    fputc('{', f);
    const char *sep = "";
    for (int i = 1; i < LG_ST_N; i++) {
        if (by[i]) {
            fprintf(f, "%s\"%s\": %llu", sep, lg_status_name(i), (unsigned long long)by[i]);
            sep = ", ";
        }
    }
    fputc('}', f);
}

static size_t last_sec(const struct lg *lg)
{
    size_t n = (size_t)((lg->t_done - lg->t_start) / 1000000000u) + 1;
    return n < lg->n_secs ? n : lg->n_secs;
}

int lg_report_json(struct lg *lg, const char *path)
{
    FILE *f = path ? fopen(path, "w") : stdout;
    if (f == NULL) {
        perror(path);
        return -1;
    }
    const struct lg_opts *o = &lg->o;
    double w = window_s(lg);
    fprintf(f, "{\n  \"tool\": \"warden-loadgen\",\n  \"label\": ");
    json_str(f, o->label ? o->label : "");
    fprintf(f, ",\n  \"endpoints\": [");
    for (size_t i = 0; i < o->n_endpoints; i++) {
        fprintf(f, "%s", i ? ", " : "");
        json_str(f, o->endpoints[i]);
    }
    fprintf(f, "],\n  \"leader_followed\": ");
    json_str(f, lg->leader);
    fprintf(f, ",\n  \"mode\": \"%s\", \"connections\": %u, \"active_connections\": %u, "
               "\"streams\": %u, \"rate\": %.1f,\n",
            o->rate > 0 ? "open" : "closed", o->conns, lg->n_active, o->streams, o->rate);
    fprintf(f, "  \"key_size\": %zu, \"value_size\": %zu, \"warmup_s\": %.3f, "
               "\"duration_s\": %.3f,\n",
            o->tc.key_size, o->tc.value_size, o->warmup_s, w);
    fprintf(f, "  \"start_unix_ms\": %llu, \"measure_unix_ms\": %llu, \"end_unix_ms\": %llu,\n",
            (unsigned long long)lg_unix_ms(lg, lg->t_start),
            (unsigned long long)lg_unix_ms(lg, lg->t_measure),
            (unsigned long long)lg_unix_ms(lg, lg->t_done));
    uint64_t errs = n_err(lg->by_status);
    fprintf(f, "  \"requests\": %llu, \"ok\": %llu, \"error_count\": %llu, "
               "\"throughput_rps\": %.1f,\n  \"latency_ms\": ",
            (unsigned long long)(lg->ok + errs), (unsigned long long)lg->ok,
            (unsigned long long)errs, w > 0 ? (double)lg->ok / w : 0.0);
    json_lat(f, &lg->hist);
    fprintf(f, ",\n  \"errors\": ");
    json_status(f, lg->by_status);
    fprintf(f, ",\n  \"error_samples\": {");
    const char *sep = "";
    for (int i = 1; i < LG_ST_N; i++) {
        if (lg->first_msg[i][0]) {
            fprintf(f, "%s\"%s\": ", sep, lg_status_name(i));
            json_str(f, lg->first_msg[i]);
            sep = ", ";
        }
    }
    fprintf(f, "},\n  \"calls\": [");
    for (size_t i = 0; i < o->n_calls; i++) {
        const struct lg_call_spec *cs = &o->calls[i];
        fprintf(f, "%s\n    {\"path\": ", i ? "," : "");
        json_str(f, cs->path);
        fprintf(f, ", \"template\": \"%s\", \"weight\": %u, \"sent_total\": %llu, "
                   "\"ok\": %llu, \"throughput_rps\": %.1f, \"errors\": ",
                lg_tmpl_name(cs->tmpl), cs->weight, (unsigned long long)cs->sent,
                (unsigned long long)cs->ok, w > 0 ? (double)cs->ok / w : 0.0);
        json_status(f, cs->by_status);
        fprintf(f, ", \"latency_ms\": ");
        json_lat(f, &cs->hist);
        fputc('}', f);
    }
    double hs_span = lg->hs_last > lg->hs_first ? (double)(lg->hs_last - lg->hs_first) / 1e9 : 0;
    fprintf(f, "],\n  \"conn\": {\"handshakes\": %llu, \"handshake_failures\": %llu, "
               "\"connect_failures\": %llu, \"lost\": %llu, \"reconnects\": %llu, "
               "\"redirects\": %llu, \"goaways\": %llu, \"handshakes_per_s\": %.1f, "
               "\"handshake_span_s\": %.3f, \"max_inflight\": %u, \"handshake_ms\": ",
            (unsigned long long)lg->handshakes, (unsigned long long)lg->handshake_fail,
            (unsigned long long)lg->connect_fail, (unsigned long long)lg->conn_lost,
            (unsigned long long)lg->reconnects, (unsigned long long)lg->redirects,
            (unsigned long long)lg->goaways,
            hs_span > 0 ? (double)lg->handshakes / hs_span : 0.0, hs_span,
            lg->max_inflight_seen);
    json_lat(f, &lg->hs_hist);
    fprintf(f, ", \"first_failure\": ");
    json_str(f, lg->conn_fail_msg);
    fprintf(f, "},\n  \"availability\": {\"max_ok_gap_ms\": %.1f, \"gap_from_unix_ms\": %llu, "
               "\"gap_to_unix_ms\": %llu, \"first_error_unix_ms\": %llu, "
               "\"last_error_unix_ms\": %llu},\n",
            ms(lg->max_gap), (unsigned long long)lg_unix_ms(lg, lg->gap_from),
            (unsigned long long)lg_unix_ms(lg, lg->gap_to),
            (unsigned long long)lg_unix_ms(lg, lg->first_err),
            (unsigned long long)lg_unix_ms(lg, lg->last_err));
    fprintf(f, "  \"bytes_in\": %llu, \"bytes_out\": %llu,\n  \"timeseries\": [",
            (unsigned long long)lg->bytes_in, (unsigned long long)lg->bytes_out);
    size_t ns = last_sec(lg);
    for (size_t i = 0; i < ns; i++) {
        const struct lg_second *s = &lg->secs[i];
        const struct lg_hist *h = s->hist;
        fprintf(f, "%s\n    {\"t\": %zu, \"ok\": %llu, \"err\": %llu, \"handshakes\": %llu",
                i ? "," : "", i, (unsigned long long)s->ok, (unsigned long long)s->err,
                (unsigned long long)s->handshakes);
        if (h) {
            fprintf(f, ", \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, "
                       "\"p999_ms\": %.3f, \"max_ms\": %.3f",
                    ms(lg_hist_quantile(h, 0.5)), ms(lg_hist_quantile(h, 0.9)),
                    ms(lg_hist_quantile(h, 0.99)), ms(lg_hist_quantile(h, 0.999)),
                    ms(h->max));
        }
        fputc('}', f);
    }
    fprintf(f, "\n  ]\n}\n");
    if (f != stdout) {
        fclose(f);
    }
    return 0;
}

void lg_report_text(struct lg *lg)
{
    double w = window_s(lg);
    const struct lg_hist *h = &lg->hist;
    fprintf(stderr,
            "warden-loadgen: %s %llu ok in %.2fs = %.1f/s; latency ms p50 %.3f p90 %.3f "
            "p99 %.3f p99.9 %.3f max %.3f; errors %llu",
            lg->o.label ? lg->o.label : "", (unsigned long long)lg->ok, w,
            w > 0 ? (double)lg->ok / w : 0.0, ms(lg_hist_quantile(h, 0.5)),
            ms(lg_hist_quantile(h, 0.9)), ms(lg_hist_quantile(h, 0.99)),
            ms(lg_hist_quantile(h, 0.999)), ms(h->max),
            (unsigned long long)n_err(lg->by_status));
    for (int i = 1; i < LG_ST_N; i++) {
        if (lg->by_status[i]) {
            fprintf(stderr, " %s=%llu", lg_status_name(i), (unsigned long long)lg->by_status[i]);
        }
    }
    fprintf(stderr, "; handshakes %llu (failed %llu)\n", (unsigned long long)lg->handshakes,
            (unsigned long long)(lg->handshake_fail + lg->connect_fail));
    if (lg->conn_fail_msg[0]) {
        fprintf(stderr, "  first connection failure: %s\n", lg->conn_fail_msg);
    }
    for (int i = 1; i < LG_ST_N; i++) {
        if (lg->first_msg[i][0]) {
            fprintf(stderr, "  first %s: %s\n", lg_status_name(i), lg->first_msg[i]);
        }
    }
}

/* ---- SVG: two panels sharing the time axis ------------------------------------ */

#define SVG_W 960
#define SVG_H 560
#define PAD_L 70
#define PAD_R 150
#define PANEL_H 200
#define TOP1 40
#define TOP2 (TOP1 + PANEL_H + 70)

int lg_report_svg(struct lg *lg, const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    size_t ns = last_sec(lg);
    if (ns == 0) {
        ns = 1;
    }
    double pw = SVG_W - PAD_L - PAD_R;
    double xstep = pw / (double)ns;
    /* Latency on a log10 axis, from the smallest p50 to the largest max. */
    double lo = 1e9, hi = 0, tmax = 1;
    for (size_t i = 0; i < ns; i++) {
        const struct lg_second *s = &lg->secs[i];
        if (s->hist) {
            double a = ms(lg_hist_quantile(s->hist, 0.5)), b = ms(s->hist->max);
            lo = a < lo ? a : lo;
            hi = b > hi ? b : hi;
        }
        double t = (double)(s->ok + s->err);
        tmax = t > tmax ? t : tmax;
    }
    if (hi <= 0) {
        lo = 0.1;
        hi = 1;
    }
    double llo = floor(log10(lo > 0.001 ? lo : 0.001)), lhi = ceil(log10(hi));
    if (lhi <= llo) {
        lhi = llo + 1;
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            SVG_W, SVG_H);
    fprintf(f, "<text x=\"%d\" y=\"20\" font-size=\"14\">", PAD_L);
    fputs(lg->o.label ? lg->o.label : "warden-loadgen", f);
    fprintf(f, " (%s loop, %u conns x %u streams; shaded: warmup)</text>\n",
            lg->o.rate > 0 ? "open" : "closed", lg->o.conns, lg->o.streams);
    double wx = lg->o.warmup_s * xstep;
    for (int p = 0; p < 2; p++) {
        int top = p ? TOP2 : TOP1;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"none\" "
                   "stroke=\"#888\"/>\n", PAD_L, top, pw, PANEL_H);
        if (wx > 0) {
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"#eee\"/>\n",
                    PAD_L, top, wx, PANEL_H);
        }
        for (size_t i = 0; i <= ns; i += (ns + 9) / 10) {
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%zu</text>\n",
                    PAD_L + (double)i * xstep, top + PANEL_H + 15, i);
        }
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">seconds</text>\n",
            PAD_L + pw / 2, TOP2 + PANEL_H + 32);
    fprintf(f, "<text x=\"15\" y=\"%d\" transform=\"rotate(-90 15 %d)\" "
               "text-anchor=\"middle\">latency ms (log)</text>\n",
            TOP1 + PANEL_H / 2, TOP1 + PANEL_H / 2);
    fprintf(f, "<text x=\"15\" y=\"%d\" transform=\"rotate(-90 15 %d)\" "
               "text-anchor=\"middle\">calls/s</text>\n",
            TOP2 + PANEL_H / 2, TOP2 + PANEL_H / 2);
    for (double d = llo; d <= lhi; d += 1) {
        double y = TOP1 + PANEL_H - (d - llo) / (lhi - llo) * PANEL_H;
        fprintf(f, "<line x1=\"%d\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                PAD_L, PAD_L + pw, y, y, PAD_L - 4, y + 4, pow(10, d));
    }
    static const struct {
        double q;
        const char *name, *color;
    } lines[] = {{0.5, "p50", "#1f77b4"}, {0.99, "p99", "#ff7f0e"},
                 {0.999, "p99.9", "#d62728"}, {1.0, "max", "#7f7f7f"}};
    for (size_t l = 0; l < sizeof lines / sizeof lines[0]; l++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                lines[l].color);
        for (size_t i = 0; i < ns; i++) {
            const struct lg_hist *h = lg->secs[i].hist;
            if (!h) {
                continue;
            }
            double v = ms(lg_hist_quantile(h, lines[l].q));
            double lv = log10(v > 0.001 ? v : 0.001);
            double y = TOP1 + PANEL_H - (lv - llo) / (lhi - llo) * PANEL_H;
            fprintf(f, "%.1f,%.1f ", PAD_L + ((double)i + 0.5) * xstep, y);
        }
        fprintf(f, "\"/>\n<text x=\"%.1f\" y=\"%zu\" fill=\"%s\">%s</text>\n",
                PAD_L + pw + 10, TOP1 + 15 + l * 16, lines[l].color, lines[l].name);
    }
    for (int k = 0; k <= 4; k++) {
        double y = TOP2 + PANEL_H - k * PANEL_H / 4.0;
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n", PAD_L - 4,
                y + 4, tmax * k / 4);
    }
    static const char *const tl[] = {"ok/s", "errors/s"}, *const tc[] = {"#2ca02c", "#d62728"};
    for (int l = 0; l < 2; l++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", tc[l]);
        for (size_t i = 0; i < ns; i++) {
            double v = (double)(l ? lg->secs[i].err : lg->secs[i].ok);
            fprintf(f, "%.1f,%.1f ", PAD_L + ((double)i + 0.5) * xstep,
                    TOP2 + PANEL_H - v / tmax * PANEL_H);
        }
        fprintf(f, "\"/>\n<text x=\"%.1f\" y=\"%d\" fill=\"%s\">%s</text>\n", PAD_L + pw + 10,
                TOP2 + 15 + l * 16, tc[l], tl[l]);
    }
    fprintf(f, "</svg>\n");
    fclose(f);
    return 0;
}
