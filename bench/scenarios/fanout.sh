#!/usr/bin/env bash
# fanout.sh - issue 8 scenario 7: revocation fan-out to 1,000 and 10,000
# watchers, warden vs etcd side by side. Latency of one event = the moment
# the LAST watcher received it minus the moment the writer got its
# acknowledgement (CLOCK_MONOTONIC, shared by all processes on the host).
#
#   bench/scenarios/fanout.sh [--build DIR] [--out DIR] [--sizes 1000,10000]
#       [--events 30] [--placement spread|leader] [--procs 2] [--streams 100]
#       [--gap-ms 200] [--systems warden,etcd]
#
# warden: 3 nodes (scenarios/lib.sh, WARDEN_EXTRA_ARGS default
#   "--rate-limit-rps 0"), started with --max-watchers and --max-inflight
#   sized for the largest run (a watch stream holds an in-flight slot).
#   Watchers: /warden.v1.Access/WatchRevocations as the `gateway` principal
#   (gen-certs), from_revision 0. Writer: RevokeGrant as admin, on the
#   leader, of grants made beforehand by fanout_setup.py (untimed).
# etcd 3.4: 3 members, mutual TLS (lib.sh). Watchers: /etcdserverpb.Watch/
#   Watch, one stream each, one WatchCreateRequest on a fresh prefix per
#   run. Writer: KV/Put of a new key under that prefix (value 128 B), on the
#   leader.
# Placement: spread (default) = watcher connections round-robin over the 3
#   nodes (a real gateway fleet connects to any node); leader = all on the
#   leader. Both: one watch stream per watcher, --streams per HTTP/2
#   connection (warden allows 128), over --procs client processes
#   (warden-fanout, C: epoll + OpenSSL + nghttp2).
# Events are written one after another: the next only after every watcher
# got the previous one (or 10 s), plus --gap-ms. Order per size: warden,
# then etcd, back to back.
#
# Prints a table and `ratio fanout <watchers> p99=<warden/etcd>
# p50=<warden/etcd>` lines; JSON per run in the output dir. Needs etcd and
# etcdctl on PATH (apt-get install etcd-server etcd-client) and Debian's
# /usr/bin/python3 with python3-grpcio (fanout_setup.py).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SIZES=1000,10000; EVENTS=30; PLACEMENT=spread; PROCS=2; STREAMS=100; GAP_MS=200
SYSTEMS=warden,etcd; OUT=""
# Bound on one warden-fanout run (ready + events), seconds.
RUN_TIMEOUT_S=${RUN_TIMEOUT_S:-900}
while [ $# -gt 0 ]; do
    case $1 in
    --build) WARDEN_BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --events) EVENTS=$2; shift 2 ;;
    --placement) PLACEMENT=$2; shift 2 ;;
    --procs) PROCS=$2; shift 2 ;;
    --streams) STREAMS=$2; shift 2 ;;
    --gap-ms) GAP_MS=$2; shift 2 ;;
    --systems) SYSTEMS=$2; shift 2 ;;
    *) sed -n '7,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
case $PLACEMENT in spread | leader) ;; *) echo "--placement spread|leader" >&2; exit 2 ;; esac
[ "$EVENTS" -ge 1 ] && [ "$EVENTS" -le 60 ] || { echo "--events: 1..60" >&2; exit 2; }
# Grants come from two requesters (operator, admin) in turn, each holding at
# most 64 recent grants (ACC_PRINCIPAL_LIVE_MAX; revoked ones count for 24 h).
NSIZES=$(echo "$SIZES" | tr ',' '\n' | grep -c .)
[ $(( (NSIZES + 1) / 2 * EVENTS )) -le 60 ] ||
    { echo "--events x ceil(sizes / 2) must be <= 60 (grants per requester)" >&2; exit 2; }
# shellcheck source=lib.sh
source "$HERE/lib.sh"
FANOUT=$BUILD/bench/warden-fanout
[ -x "$FANOUT" ] || die "no warden-fanout at $FANOUT (cmake --build $BUILD)"
MAXW=0
for n in ${SIZES//,/ }; do
    [ "$n" -ge 1 ] && [ "$n" -le 60000 ] || die "--sizes: 1..60000 each"
    [ "$n" -gt "$MAXW" ] && MAXW=$n
done
# Descriptors: each client process holds watchers/streams connections, each
# node one socket per connection; raise the soft limit to the hard one.
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=1048576
ulimit -n "$HARD"
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/warden-fanout.XXXXXX")}
mkdir -p "$OUT"
trap stop_all EXIT
trap 'exit 130' INT TERM
log "output in $OUT; sizes $SIZES, $EVENTS events each, placement $PLACEMENT, $PROCS client procs x $STREAMS streams/conn, cpu_count $(nproc)"

want() { case ",$SYSTEMS," in *",$1,"*) return 0 ;; esac; return 1; }
if want warden; then
    warden_up "$OUT/warden" --max-watchers $((MAXW + 64)) --max-inflight $((MAXW + 2048))
    WL=$(warden_wait_leader "$OUT/warden")
    log "warden leader n$WL (${WARDEN_EP[$WL]}, pid ${WARDEN_PIDS[$WL]}; pids ${WARDEN_PIDS[*]})"
fi
if want etcd; then
    etcd_up "$OUT/etcd"
    EL=$(etcd_wait_leader)
    log "etcd leader m$EL (${ETCD_EP[$EL]})"
fi

RUN_NO=0
run_warden() { # watchers
    local n=$1 eps i req=operator
    [ $((RUN_NO % 2)) -eq 1 ] && req=admin
    RUN_NO=$((RUN_NO + 1))
    WL=$(warden_wait_leader "$OUT/warden")
    if [ "$PLACEMENT" = leader ]; then eps=${WARDEN_EP[$WL]}; else
        eps=""; for i in 1 2 3; do eps+="${eps:+,}${WARDEN_EP[$i]}"; done
    fi
    WARDEN_BUILD=$BUILD /usr/bin/python3 "$HERE/fanout_setup.py" --leader "${WARDEN_EP[$WL]}" \
        --certs "$WARDEN_CERTS" --grants "$EVENTS" --requester "$req" --out "$OUT/grants-$n.txt" ||
        die "fanout_setup.py failed"
    timeout "$RUN_TIMEOUT_S" "$FANOUT" --system warden --endpoints "$eps" \
        --cacert "$WARDEN_CERTS/ca.pem" --cert "$WARDEN_CERTS/gateway.pem" \
        --key "$WARDEN_CERTS/gateway-key.pem" --writer "${WARDEN_EP[$WL]}" \
        --writer-cert "$WARDEN_CERTS/admin.pem" --writer-key "$WARDEN_CERTS/admin-key.pem" \
        --watchers "$n" --streams "$STREAMS" --procs "$PROCS" --events "$EVENTS" \
        --ids "$OUT/grants-$n.txt" --gap-ms "$GAP_MS" \
        --label "warden $n watchers ($PLACEMENT), leader n$WL" --out "$OUT/warden-$n.json" ||
        log "warden-fanout (warden, $n) exited $?"
    for i in 1 2 3; do
        echo "n$i $(awk '$1 == "VmHWM:" {print $2}' "/proc/${WARDEN_PIDS[$i]}/status" 2>/dev/null)"
    done >"$OUT/warden-$n.vmhwm"
}

run_etcd() { # watchers
    local n=$1 eps i
    EL=$(etcd_wait_leader)
    if [ "$PLACEMENT" = leader ]; then eps=${ETCD_EP[$EL]}; else
        eps=""; for i in 1 2 3; do eps+="${eps:+,}${ETCD_EP[$i]}"; done
    fi
    timeout "$RUN_TIMEOUT_S" "$FANOUT" --system etcd --endpoints "$eps" \
        --cacert "$ETCD_CERTS/ca.pem" --cert "$ETCD_CERTS/client.pem" \
        --key "$ETCD_CERTS/client-key.pem" --writer "${ETCD_EP[$EL]}" \
        --writer-cert "$ETCD_CERTS/client.pem" --writer-key "$ETCD_CERTS/client-key.pem" \
        --watchers "$n" --streams "$STREAMS" --procs "$PROCS" --events "$EVENTS" \
        --prefix "/fanout/$n-$$/" --value-size 128 --gap-ms "$GAP_MS" \
        --label "etcd $n watchers ($PLACEMENT), leader m$EL" --out "$OUT/etcd-$n.json" ||
        log "warden-fanout (etcd, $n) exited $?"
}

for n in ${SIZES//,/ }; do
    if want warden; then log "warden: $n watchers"; run_warden "$n"; fi
    if want etcd; then log "etcd: $n watchers"; run_etcd "$n"; fi
done

/usr/bin/python3 - "$OUT" "$SIZES" "$PLACEMENT" <<'PY'
import json, os, sys
out, sizes, placement = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], sys.argv[3]
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
print(f"fan-out, placement {placement}: latency = last watcher's receive - write ack, ms")
print("| system | watchers | events ok | every watcher got every event | min reached "
      "| p50 | p99 | max | first watcher p50 | per-node last p50 | write ack p50 / max "
      "| send to last p50 / p99 | ready s | client cpu s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
ratios, e2e = [], {}
for n in sizes:
    r, e2e = {}, {}
    for sysname in ("warden", "etcd"):
        j = load(f"{sysname}-{n}.json")
        r[sysname] = j
        if j is None:
            continue
        lw = j["last_watcher_ms"]
        ok = [e for e in j["events"] if e["ok"] and e["received"] > 0]
        per_node = []
        for k in range(len(j["endpoints"])):
            xs = sorted(e["last_ms_by_endpoint"][k] for e in ok)
            per_node.append(f"{xs[len(xs) // 2]:.1f}" if xs else "-")
        ws = sorted(e["write_ms"] for e in ok) or [float("nan")]
        # End to end: the revoker's send to the last watcher (write + fan-out).
        ee = sorted(e["write_ms"] + e["last_ms"] for e in ok) or [float("nan")]
        e2e[sysname] = (ee[len(ee) // 2], ee[min(len(ee) - 1, round(0.99 * (len(ee) - 1)))])
        print(f"| {sysname} | {n} | {j['writes_ok']}/{len(j['events'])} "
              f"| {'yes' if j['all_watchers_got_every_event'] else 'NO'} "
              f"| {j['min_watchers_reached']} | {lw['p50']:.2f} | {lw['p99']:.2f} | {lw['max']:.2f} "
              f"| {j['first_watcher_ms']['p50']:.2f} | {' / '.join(per_node)} "
              f"| {ws[len(ws) // 2]:.1f} / {ws[-1]:.1f} "
              f"| {e2e[sysname][0]:.1f} / {e2e[sysname][1]:.1f} "
              f"| {j['ready_s']:.1f} | {j['client_cpu_s']:.1f} |")
    w, e = r["warden"], r["etcd"]
    if w and e and e["last_watcher_ms"]["p99"] > 0 and e["last_watcher_ms"]["p50"] > 0:
        ratios.append("ratio fanout %d p99=%.2f p50=%.2f" % (
            n, w["last_watcher_ms"]["p99"] / e["last_watcher_ms"]["p99"],
            w["last_watcher_ms"]["p50"] / e["last_watcher_ms"]["p50"]))
        ratios.append("ratio fanout-send-to-last %d p99=%.2f p50=%.2f" % (
            n, e2e["warden"][1] / e2e["etcd"][1], e2e["warden"][0] / e2e["etcd"][0]))
    else:
        ratios.append("ratio fanout %d p99=nan p50=nan" % n)
    hwm = os.path.join(out, f"warden-{n}.vmhwm")
    if os.path.exists(hwm):
        print(f"warden VmHWM after {n} watchers (kB): " + open(hwm).read().replace("\n", "  "))
print("\n".join(ratios))
print("(ratio fanout: from the write's ack, the issue's definition; "
      "fanout-send-to-last: from the write's send, i.e. write latency included)")
PY
want warden && warden_args_note
log "results in $OUT"
