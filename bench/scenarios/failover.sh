#!/usr/bin/env bash
# failover.sh - issue 8 scenario 4: kill -9 the warden leader under steady
# write load; report the time from the kill to the first successful write
# and the errors seen. Default timeouts (wardend's --election-timeout-ms).
#
#   bench/scenarios/failover.sh [--build DIR] [--out DIR] [--rate 200]
#                               [--before 5] [--after 10]
#
# Load: open loop, --rate EnrollDevice/s (latency from the intended send
# time, so the outage shows in the tail), 4 connections x 16 streams,
# following `warden-leader` redirects. The time to recover is taken from
# warden-loadgen's longest gap between successful calls, whose end is the
# first success after the kill (both clocks are this host's CLOCK_REALTIME).
# wardend also gets WARDEN_EXTRA_ARGS, by default "--rate-limit-rps 0"
# (lib.sh: a benchmark measures raw throughput); the output says so.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RATE=200; BEFORE=5; AFTER=10; OUT=""
while [ $# -gt 0 ]; do
    case $1 in
    --build) WARDEN_BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --before) BEFORE=$2; shift 2 ;;
    --after) AFTER=$2; shift 2 ;;
    *) sed -n '6,7p' "$0" >&2; exit 2 ;;
    esac
done
source "$HERE/lib.sh"
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/warden-failover.XXXXXX")}
mkdir -p "$OUT"
trap stop_all EXIT
warden_up "$OUT/warden"
L=$(warden_wait_leader "$OUT/warden")
log "leader n$L pid ${WARDEN_PIDS[$L]}; load ${RATE}/s for $((BEFORE + AFTER))s"
warden_lg "$L" --call /warden.v1.Inventory/EnrollDevice=warden-enroll --rate "$RATE" \
    --connections 4 --streams 16 --duration $((BEFORE + AFTER)) --warmup 0 \
    --timeout-ms 5000 --label "failover: kill -9 leader at ${BEFORE}s" \
    --out "$OUT/failover.json" --svg "$OUT/failover.svg" &
LGP=$!
sleep "$BEFORE"
KILL_MS=$(date +%s%3N)
kill -KILL "${WARDEN_PIDS[$L]}"
log "killed n$L (pid ${WARDEN_PIDS[$L]}) at $KILL_MS"
wait "$LGP" || true
NEW=$(grep -h '"raft leader' "$OUT"/warden/n*.log | grep '"state":"leader"' | tail -n 1 || true)
/usr/bin/python3 - "$OUT/failover.json" "$KILL_MS" <<'PY'
import json, sys
r, kill = json.load(open(sys.argv[1])), int(sys.argv[2])
a = r["availability"]
rec = a["gap_to_unix_ms"] - kill if a["gap_from_unix_ms"] <= kill <= a["gap_to_unix_ms"] else None
print(f"failover: kill at {kill}; longest gap between successes {a['max_ok_gap_ms']:.0f} ms "
      f"({a['gap_from_unix_ms']}..{a['gap_to_unix_ms']})")
print(f"failover: time from kill -9 to first successful write: "
      f"{'%d ms' % rec if rec is not None else 'n/a (gap does not span the kill)'}")
print(f"failover: errors {r['errors']} redirects {r['conn']['redirects']} "
      f"reconnects {r['conn']['reconnects']} ok {r['ok']} p99 {r['latency_ms']['p99']:.1f} ms "
      f"max {r['latency_ms']['max']:.1f} ms")
print(f"failover: samples {r.get('error_samples')}")
print(f"failover: target < 2000 ms: {'met' if rec is not None and rec < 2000 else 'MISSED'}")
PY
warden_args_note
