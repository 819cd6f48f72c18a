#!/usr/bin/env bash
# storm.sh - issue 8 scenario 6: a reconnect storm. N (10,000) mutual-TLS
# client connections opened at once against one wardend (the leader), held
# idle; meanwhile a light probe load on established connections shows
# whether their latency holds. Reports handshakes/s, failures, the node's
# peak RSS (VmHWM from /proc/PID/status) and probe p99 before/during/after.
#
#   bench/scenarios/storm.sh [--build DIR] [--out DIR] [--conns 10000]
#                            [--hold 15] [--probe-rate 200]
#
# File descriptors: the script raises its soft limit (inherited by wardend
# and warden-loadgen) to the hard limit and needs conns + 1024; wardend
# gets --max-conns conns + 64 (its default, 1024, would refuse the storm).
# wardend also gets WARDEN_EXTRA_ARGS, by default "--rate-limit-rps 0"
# (lib.sh: a benchmark measures raw throughput); the output says so.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CONNS=10000; HOLD=15; PROBE_RATE=200; OUT=""
while [ $# -gt 0 ]; do
    case $1 in
    --build) WARDEN_BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --hold) HOLD=$2; shift 2 ;;
    --probe-rate) PROBE_RATE=$2; shift 2 ;;
    *) sed -n '8,9p' "$0" >&2; exit 2 ;;
    esac
done
source "$HERE/lib.sh"
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=1048576
ulimit -n "$HARD"
if [ "$HARD" -lt $((CONNS + 1024)) ]; then
    CONNS=$((HARD - 1024))
    log "fd hard limit $HARD: storm reduced to $CONNS connections"
fi
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/warden-storm.XXXXXX")}
mkdir -p "$OUT"
trap stop_all EXIT
warden_up "$OUT/warden" --max-conns $((CONNS + 64))
L=$(warden_wait_leader "$OUT/warden")
P=${WARDEN_PIDS[$L]}
rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$P/status"; }
RSS0=$(rss VmRSS)
PRE=5
TOTAL=$((PRE + HOLD + 5))
log "leader n$L pid $P, RSS ${RSS0} kB; probe ${PROBE_RATE}/s for ${TOTAL}s, storm of $CONNS at ${PRE}s"
warden_lg "$L" --method /grpc.health.v1.Health/Check --body-template health \
    --rate "$PROBE_RATE" --connections 2 --streams 16 --duration "$TOTAL" --warmup 0 \
    --label "probe during a storm of $CONNS at ${PRE}s" \
    --out "$OUT/probe.json" --svg "$OUT/probe.svg" 2>"$OUT/probe.err" &
PROBE=$!
sleep "$PRE"
warden_lg "$L" --method /grpc.health.v1.Health/Check --body-template health --idle \
    --connections "$CONNS" --duration "$HOLD" --warmup 0 --connect-timeout-ms 60000 \
    --label "storm $CONNS" --out "$OUT/storm.json" 2>"$OUT/storm.err" &
STORM=$!
PEAK_RSS=0
for ((i = 0; i < HOLD * 2 + 4; i++)); do
    r=$(rss VmRSS || echo 0)
    [ "${r:-0}" -gt "$PEAK_RSS" ] && PEAK_RSS=$r
    kill -0 "$STORM" 2>/dev/null || break  # our background job
    sleep 0.5
done
wait "$STORM" || true
HWM=$(rss VmHWM)
wait "$PROBE" || true
cat "$OUT/storm.err" "$OUT/probe.err" >&2
/usr/bin/python3 - "$OUT" "$PRE" "$HOLD" "$RSS0" "$PEAK_RSS" "$HWM" <<'PY'
import json, sys
out, pre, hold, rss0, peak, hwm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *map(int, sys.argv[4:])
s = json.load(open(f"{out}/storm.json")); p = json.load(open(f"{out}/probe.json"))
c = s["conn"]
print(f"storm: {c['handshakes']} handshakes in {c['handshake_span_s']:.2f}s = "
      f"{c['handshakes_per_s']:.0f}/s; failures {c['handshake_failures'] + c['connect_failures']} "
      f"({c['first_failure'] or 'none'}); handshake ms p50 {c['handshake_ms']['p50']:.0f} "
      f"p99 {c['handshake_ms']['p99']:.0f} max {c['handshake_ms']['max']:.0f}; lost while held {c['lost']}")
print(f"storm: wardend RSS {rss0/1024:.0f} MiB before, {peak/1024:.0f} MiB peak sampled, "
      f"VmHWM {hwm/1024:.0f} MiB (target < 1024 MiB: {'met' if hwm < 1048576 else 'MISSED'})")
ts = p["timeseries"]
def p99(lo, hi):
    v = [x.get("p99_ms", 0) for x in ts[lo:hi] if "p99_ms" in x]
    return max(v) if v else float("nan")
print(f"storm: probe p99 (worst second) before {p99(0, pre):.2f} ms, during "
      f"{p99(pre, pre + hold):.2f} ms, after {p99(pre + hold, len(ts)):.2f} ms; "
      f"probe errors {p['errors']}")
PY
warden_args_note
