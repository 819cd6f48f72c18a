"""report: results.edn and report.html (timeline per process with nemesis
windows shaded, latency over time, throughput over time; inline SVG made
here, no external assets)."""

import html
import math

from . import edn
from .edn import Keyword as K

COLORS = {"ok": "#2e9e44", "fail": "#d23c3c", "info": "#f0a030"}
# Ops drawn on the timeline and latency plot (the rest are counted only),
# and process lanes drawn: keeps the HTML small for long runs.
MAX_DRAWN = 30000
MAX_LANES = 120
W = 1100


def to_edn(v):
    if isinstance(v, dict):
        return {K(k) if isinstance(k, str) else k: to_edn(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [to_edn(x) for x in v]
    if isinstance(v, float) and (math.isinf(v) or math.isnan(v)):
        return None
    if isinstance(v, bytes):
        return v.hex()
    return v


def write_results(path, results):
    with open(path, "w") as f:
        f.write(edn.dumps(to_edn(results)) + "\n")


def pairs(ops):
    """[(process, f, invoke time, complete time or None, type)] for client ops."""
    open_ = {}
    out = []
    for o in ops:
        p = o["process"]
        if not isinstance(p, int):
            continue
        if o["type"] == "invoke":
            open_[p] = o
        else:
            i = open_.pop(p, None)
            if i is not None:
                out.append((p, o["f"], i["time"], o["time"], o["type"]))
    for p, i in open_.items():
        out.append((p, i["f"], i["time"], None, "info"))
    return out


def _svg(w, h, body):
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
            'font-family="sans-serif" font-size="11">%s</svg>' % (w, h, "".join(body)))


def _shade(windows, x, top, h):
    out = []
    for kind, t0, t1, desc in windows:
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#8888cc" '
                   'fill-opacity="0.18"><title>%s %s</title></rect>'
                   % (x(t0), top, max(1.0, x(t1) - x(t0)), h, html.escape(kind),
                      html.escape(str(desc))))
        out.append('<text x="%.1f" y="%d" fill="#555">%s</text>' % (x(t0) + 2, top + 10,
                                                                   html.escape(kind)))
    return out


def _axis(x, tmax, y, left, right):
    out = ['<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>' % (left, y, right, y)]
    step = max(1, int(tmax / 1e9 / 10) or 1)
    s = 0
    while s * 1e9 <= tmax and s < 100000:
        out.append('<text x="%.1f" y="%d" fill="#555">%ds</text>' % (x(s * 1e9), y + 12, s))
        s += step
    return out


def timeline(ops, windows, tmax):
    ps = pairs(ops)
    procs = sorted({p[0] for p in ps})
    lanes = procs[:MAX_LANES]
    lane = {p: k for k, p in enumerate(lanes)}
    lh = 10 if len(lanes) < 60 else 5
    left, right = 50, W - 10
    h = 20 + lh * len(lanes) + 20

    def x(t):
        return left + (right - left) * t / max(1, tmax)
    body = _shade(windows, x, 0, h - 20)
    for p in lanes:
        body.append('<text x="2" y="%d" fill="#333">%d</text>' % (20 + lane[p] * lh + lh - 1, p)
                    if lh >= 8 else "")
    drawn = 0
    for p, f, t0, t1, typ in ps:
        if p not in lane or drawn >= MAX_DRAWN:
            continue
        drawn += 1
        end = t1 if t1 is not None else tmax
        body.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>p%d %s '
                    '%s %.1f ms</title></rect>'
                    % (x(t0), 20 + lane[p] * lh, max(0.8, x(end) - x(t0)), lh - 1,
                       COLORS[typ], p, html.escape(f), typ, (end - t0) / 1e6))
    body += _axis(x, tmax, h - 18, left, right)
    return _svg(W, h, body), len(procs) - len(lanes)


def latency(ops, windows, tmax):
    ps = [p for p in pairs(ops) if p[3] is not None]
    left, right, top, h = 60, W - 10, 10, 300
    lat = [(t1 - t0) / 1e6 for _, _, t0, t1, _ in ps] or [1.0]
    lo = max(0.1, min(lat))
    hi = max(lat) * 1.2

    def x(t):
        return left + (right - left) * t / max(1, tmax)

    def y(ms):
        ms = max(lo, ms)
        return top + h - h * (math.log10(ms) - math.log10(lo)) / max(1e-9, math.log10(hi) - math.log10(lo))
    body = _shade(windows, x, top, h)
    d = 10 ** math.floor(math.log10(lo))
    while d <= hi:
        body.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>'
                    '<text x="2" y="%.1f" fill="#555">%g ms</text>' % (left, right, y(d), y(d), y(d) + 4, d))
        d *= 10
    for k, (_, f, t0, t1, typ) in enumerate(ps[:MAX_DRAWN]):
        body.append('<circle cx="%.1f" cy="%.1f" r="1.6" fill="%s"/>' % (x(t1), y((t1 - t0) / 1e6), COLORS[typ]))
    body += _axis(x, tmax, top + h + 2, left, right)
    return _svg(W, h + 30, body)


def throughput(ops, windows, tmax):
    ps = [p for p in pairs(ops) if p[3] is not None]
    left, right, top, h = 60, W - 10, 10, 200
    nb = max(1, int(math.ceil(tmax / 1e9)))
    buckets = {t: [0] * nb for t in COLORS}
    for _, _, t0, t1, typ in ps:
        buckets[typ][min(nb - 1, int(t1 / 1e9))] += 1
    peak = max([max(b) for b in buckets.values()] + [1])

    def x(t):
        return left + (right - left) * t / max(1, tmax)

    def y(v):
        return top + h - h * v / peak
    body = _shade(windows, x, top, h)
    body.append('<text x="2" y="%d" fill="#555">%d/s</text><text x="2" y="%d" fill="#555">0</text>'
                % (top + 10, peak, top + h))
    for typ, b in buckets.items():
        pts = " ".join("%.1f,%.1f" % (x((k + 0.5) * 1e9), y(v)) for k, v in enumerate(b))
        body.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>' % (COLORS[typ], pts))
    body += _axis(x, tmax, top + h + 2, left, right)
    return _svg(W, h + 30, body)


def write_html(path, title, results, ops, windows):
    tmax = max([o["time"] for o in ops] + [1])
    tl, hidden = timeline(ops, windows, tmax)
    valid = results.get("valid?")
    verdict = {True: ("VALID", "#2e9e44"), False: ("INVALID", "#d23c3c")}.get(valid, ("UNKNOWN", "#f0a030"))
    rows = []
    for name, r in results.get("checkers", {}).items():
        v = r.get("valid?")
        rows.append("<tr><td>%s</td><td style='color:%s'><b>%s</b></td><td><pre>%s</pre></td></tr>"
                    % (html.escape(name), "#2e9e44" if v else "#d23c3c", v,
                       html.escape(edn.dumps(to_edn({k: x for k, x in r.items() if k != "valid?"})))))
    counts = {}
    for p in pairs(ops):
        counts[p[4]] = counts.get(p[4], 0) + 1
    legend = " ".join("<span style='background:%s;color:#fff;padding:1px 6px'>%s %d</span>"
                      % (c, t, counts.get(t, 0)) for t, c in COLORS.items())
    nem = "".join("<li>%s %.1f-%.1fs %s</li>" % (html.escape(k), t0 / 1e9, t1 / 1e9, html.escape(str(d)))
                  for k, t0, t1, d in windows)
    doc = """<!doctype html><html><head><meta charset="utf-8"><title>%(title)s</title>
<style>body{font-family:sans-serif;margin:20px;color:#222}td,th{border-bottom:1px solid #ddd;
padding:4px 8px;vertical-align:top;text-align:left}pre{margin:0;white-space:pre-wrap;max-width:800px}
h2{margin-top:28px}</style></head><body>
<h1>%(title)s <span style="color:%(vc)s">%(verdict)s</span></h1>
<p>%(meta)s</p><p>%(legend)s &nbsp; nemesis windows shaded</p>
<table><tr><th>checker</th><th>valid?</th><th>details</th></tr>%(rows)s</table>
<h2>Timeline (one lane per process%(hidden)s)</h2>%(tl)s
<h2>Latency (log scale, by completion time)</h2>%(lat)s
<h2>Throughput (completions per second)</h2>%(thr)s
<h2>Nemesis</h2><ul>%(nem)s</ul>
</body></html>""" % {
        "title": html.escape(title), "vc": verdict[1], "verdict": verdict[0],
        "meta": html.escape(edn.dumps(to_edn(results.get("test", {})))),
        "legend": legend, "rows": "".join(rows), "tl": tl,
        "hidden": "; %d more processes not drawn" % hidden if hidden else "",
        "lat": latency(ops, windows, tmax), "thr": throughput(ops, windows, tmax), "nem": nem}
    with open(path, "w") as f:
        f.write(doc)
