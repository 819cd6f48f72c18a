#!/usr/bin/env bash
# restart.sh - issue 8 scenario 5: time to serving after a full restart of a
# 3-node cluster holding N devices (default 1,000,000), warden and etcd side
# by side in one run.
#
#   bench/scenarios/restart.sh [--build DIR] [--out DIR] [--devices N]
#       [--concurrency 8] [--restarts 3] [--systems warden,etcd] [--keep]
#
# For each system, in turn (warden first, then etcd; never both running):
#  1. start 3 members (lib.sh: loopback, client and peer mTLS, default
#     fsync; warden with WARDEN_EXTRA_ARGS, "--rate-limit-rps 0" unless set)
#     and preload N records: warden Inventory/EnrollDevices, 256 devices per
#     call, ids rs0000000.. (restart.py enroll, --concurrency calls in
#     flight); etcd KV/Put of N keys of 16 B with 256 B values
#     (warden-loadgen etcd-put, 16x8). Verified: warden GetDevice of the
#     first and last id through the leader and every node's applied index;
#     etcd `get --prefix --count-only`.
#  2. --restarts times: SIGTERM all 3 by PID and wait for them to exit;
#     record the data dir sizes; start a probe (restart.py probe), then exec
#     all 3 and take, per node and for the cluster, the time from the first
#     exec to: TCP accept on the client port, a serializable read, a
#     linearizable read (warden: GetDevice of the first id, LINEARIZABLE,
#     only the leader serves it, followers redirect: "leader known"; etcd:
#     Range of the first key, any member) and the first successful write
#     (warden EnrollDevice, etcd Put). Plus what each node logged at start
#     and its Cluster/Status (snapshot index, last index, restores).
#  3. print a table and
#       ratio restart <N> time_to_read=<warden/etcd> time_to_write=<w/e>
#     from the medians over the restarts.
# The page cache is warm (a process restart, not a machine reboot).
#
# Addresses: lib.sh's WARDEN_IP_BASE (41) and ETCD_IP_BASE (21), override
# them to keep off other runs. Everything is bounded: the preload by
# restart.py's and warden-loadgen's time caps, each wait by START_WAIT_S /
# PROBE_DEADLINE_S, each stop by STOP_WAIT_S then SIGKILL. Every process is
# stopped by PID on exit or Ctrl-C; the data dirs (GBs at 1M) are removed
# unless --keep; logs and JSON stay in --out.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DEVICES=1000000; CONC=8; RESTARTS=3; SYSTEMS=warden,etcd; OUT=""; KEEP=0
PROBE_DEADLINE_S=${PROBE_DEADLINE_S:-120}
while [ $# -gt 0 ]; do
    case $1 in
    --build) WARDEN_BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --devices) DEVICES=$2; shift 2 ;;
    --concurrency) CONC=$2; shift 2 ;;
    --restarts) RESTARTS=$2; shift 2 ;;
    --systems) SYSTEMS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) sed -n '6,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
[[ $DEVICES =~ ^[0-9]+$ ]] && [ "$DEVICES" -ge 1 ] && [ "$DEVICES" -le 2000000 ] ||
    { echo "--devices: 1..2000000" >&2; exit 2; }
[[ $RESTARTS =~ ^[0-9]+$ ]] && [ "$RESTARTS" -ge 1 ] && [ "$RESTARTS" -le 20 ] ||
    { echo "--restarts: 1..20" >&2; exit 2; }
# shellcheck source=lib.sh
source "$HERE/lib.sh"
PY=/usr/bin/python3
RPY=$HERE/restart.py
BUILD=$(cd "$BUILD" && pwd)
export WARDEN_BUILD=$BUILD WARDEN_SRC=$(cd "$HERE/../.." && pwd)
WARDEND=$BUILD/wardend
LOADGEN=$BUILD/bench/warden-loadgen
[ -x "$LOADGEN" ] || die "no warden-loadgen at $LOADGEN (cmake --build $BUILD)"
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/warden-restart.XXXXXX")}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

cleanup() {
    stop_all
    if [ "$KEEP" = 0 ]; then
        rm -rf "$OUT"/warden/n[123] "$OUT"/etcd/m[123]
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log "output in $OUT; $DEVICES records, $RESTARTS restarts, systems $SYSTEMS"

# sizes SYSTEM DIR: one JSON object of per-member data dir sizes (bytes).
sizes() {
    local sys=$1 dir=$2 i
    echo -n "{"
    for i in 1 2 3; do
        local m
        if [ "$sys" = warden ]; then
            m=$dir/n$i
            printf '"%s": {"lmdb_file": %s, "lmdb_alloc": %s, "raft_dir": %s, "raft_segments": %s, "raft_snapshots": "%s", "raft_snapshot_bytes": %s}' \
                "$i" "$(stat -c %s "$m/db/data.mdb")" "$(du -sB1 "$m/db/data.mdb" | cut -f1)" \
                "$(du -sB1 "$m/raft" | cut -f1)" \
                "$(find "$m/raft" -maxdepth 1 \( -name '[0-9]*-[0-9]*' -o -name 'open-*' \) | wc -l)" \
                "$(cd "$m/raft" && ls snapshot-*[0-9] 2>/dev/null | tr '\n' ' ')" \
                "$(cd "$m/raft" && cat snapshot-*[0-9] 2>/dev/null | wc -c)"
        else
            m=$dir/m$i/member
            printf '"%s": {"bbolt_db": %s, "wal_dir": %s, "snap_dir": %s}' "$i" \
                "$(stat -c %s "$m/snap/db")" "$(du -sB1 "$m/wal" | cut -f1)" \
                "$(du -sB1 --exclude=db "$m/snap" | cut -f1)"
        fi
        [ "$i" = 3 ] || echo -n ", "
    done
    echo "}"
}

# stop_members SYSTEM: SIGTERM all three at once, then wait for each
# (bounded, SIGKILL after STOP_WAIT_S); STOP_S = the seconds it took.
stop_members() {
    local sys=$1 i t0 pids=()
    if [ "$sys" = warden ]; then pids=("${WARDEN_PIDS[@]:1:3}"); else pids=("${ETCD_PIDS[@]:1:3}"); fi
    local comm=$sys; [ "$sys" = warden ] && comm=wardend
    t0=$EPOCHREALTIME
    for i in "${pids[@]}"; do pid_is "$i" "$comm" && kill -TERM "$i" 2>/dev/null || true; done
    for i in "${pids[@]}"; do stop_pid "$i" "$comm"; forget_pid "$i"; done
    STOP_S=$(echo "$t0 $EPOCHREALTIME" | awk '{printf "%.3f", $2 - $1}')
}

# restart_once SYSTEM DIR R KEY: stop, measure sizes, probe + exec.
restart_once() {
    local sys=$1 dir=$2 r=$3 key=$4 i eps="" offs=() execs=()
    log "$sys restart $r: stopping"
    stop_members "$sys"
    sizes "$sys" "$dir" >"$OUT/$sys-sizes-$r.json"
    for i in 1 2 3; do
        if [ "$sys" = warden ]; then
            eps+="${eps:+,}$(warden_ip "$i"):$WARDEN_PORT"
            offs[$i]=$(stat -c %s "$dir/n$i.log")
        else
            eps+="${eps:+,}$(etcd_ip "$i"):$ETCD_CLIENT_PORT"
            offs[$i]=$(stat -c %s "$dir/m$i.log")
        fi
    done
    local certs=${WARDEN_CERTS:-}; [ "$sys" = etcd ] && certs=$ETCD_CERTS
    rm -f "$OUT/probe.ready"
    "$PY" "$RPY" probe --system "$sys" --endpoints "$eps" --certs "$certs" --key "$key" \
        --write-prefix "rp$r" --deadline "$PROBE_DEADLINE_S" --ready "$OUT/probe.ready" \
        >"$OUT/$sys-probe-$r.json" 2>"$OUT/$sys-probe-$r.err" &
    local probe=$!
    for ((i = 0; i < 300; i++)); do [ -s "$OUT/probe.ready" ] && break; sleep 0.1; done
    [ -s "$OUT/probe.ready" ] || die "probe did not start (see $OUT/$sys-probe-$r.err)"
    log "$sys restart $r: exec"
    for i in 1 2 3; do
        execs[$i]=$EPOCHREALTIME
        if [ "$sys" = warden ]; then warden_start_node "$dir" "$i"; else etcd_start_member "$dir" "$i"; fi
    done
    wait "$probe" || true
    local st=""
    if [ "$sys" = warden ]; then
        st=$("$PY" "$RPY" status --endpoints "$eps" --certs "$certs" 2>/dev/null || echo '{}')
    else
        st=$(etcdctl_ --endpoints "https://${eps//,/,https://}" --command-timeout=5s \
            endpoint status -w json 2>/dev/null || echo '[]')
    fi
    # What each member logged from exec until now.
    for i in 1 2 3; do
        local lf=$dir/n$i.log; [ "$sys" = etcd ] && lf=$dir/m$i.log
        tail -c +"$((offs[$i] + 1))" "$lf" >"$OUT/$sys-startlog-$r-$i.log"
    done
    printf '{"stop_s": %s, "exec": [%s, %s, %s], "status": %s}\n' "$STOP_S" \
        "${execs[1]}" "${execs[2]}" "${execs[3]}" "$st" >"$OUT/$sys-restart-$r.json"
}

run_warden() {
    local dir=$OUT/warden L eps="" i first last
    warden_up "$dir"
    L=$(warden_wait_leader "$dir")
    eps=${WARDEN_EP[$L]}
    for i in 1 2 3; do [ "$i" = "$L" ] || eps+=",${WARDEN_EP[$i]}"; done
    first=rs0000000; last=$(printf 'rs%07d' $((DEVICES - 1)))
    log "warden: leader n$L; enrolling $DEVICES devices, $CONC batches of 256 in flight"
    "$PY" "$RPY" enroll --endpoints "$eps" --certs "$WARDEN_CERTS" --devices "$DEVICES" \
        --concurrency "$CONC" >"$OUT/warden-enroll.json" || log "warden: enroll reported errors"
    cat "$OUT/warden-enroll.json" >&2
    "$PY" "$RPY" status --endpoints "$eps" --certs "$WARDEN_CERTS" --wait-applied 300 \
        --device "$first" --device "$last" >"$OUT/warden-verify.json"
    log "warden: verify $(cat "$OUT/warden-verify.json")"
    for ((r = 1; r <= RESTARTS; r++)); do
        restart_once warden "$dir" "$r" "$first"
    done
    "$PY" "$RPY" status --endpoints "$eps" --certs "$WARDEN_CERTS" \
        --device "$first" --device "$last" >"$OUT/warden-verify-after.json" || true
    local k
    for k in 1 2 3; do stop_pid "${WARDEN_PIDS[$k]}" wardend; forget_pid "${WARDEN_PIDS[$k]}"; done
}

run_etcd() {
    local dir=$OUT/etcd EL key0 n
    etcd_up "$dir"
    EL=$(etcd_wait_leader)
    log "etcd: leader m$EL; putting $DEVICES keys (16 B key, 256 B value, 16x8)"
    etcd_lg "$EL" --method /etcdserverpb.KV/Put --body-template etcd-put --key-prefix k \
        --key-size 16 --value-size 256 --max-requests "$DEVICES" --duration 3600 --warmup 0 \
        --connections 16 --streams 8 --label "etcd preload $DEVICES" \
        --out "$OUT/etcd-preload.json" 2>"$OUT/etcd-preload.err" || true
    n=$(etcdctl_ --endpoints "https://${ETCD_EP[$EL]}" --command-timeout=60s \
        get k --prefix --limit 1 -w json | /usr/bin/python3 -c \
        'import json,sys; print(json.load(sys.stdin).get("count", 0))' || echo 0)
    echo "{\"keys\": $n}" >"$OUT/etcd-verify.json"
    log "etcd: $n keys under prefix k (wanted $DEVICES)"
    key0=k$(printf '%015d' 0)
    for ((r = 1; r <= RESTARTS; r++)); do
        restart_once etcd "$dir" "$r" "$key0"
    done
    local k
    for k in 1 2 3; do stop_pid "${ETCD_PIDS[$k]}" etcd; forget_pid "${ETCD_PIDS[$k]}"; done
}

IFS=, read -r -a SYS <<<"$SYSTEMS"
for s in "${SYS[@]}"; do
    case $s in
    warden) run_warden ;;
    etcd) run_etcd ;;
    *) die "unknown system $s" ;;
    esac
done

"$PY" - "$OUT" "$DEVICES" "$RESTARTS" "$SYSTEMS" <<'PY'
import json, os, statistics, sys
out, n, restarts, systems = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")

def load(p):
    try:
        return json.load(open(os.path.join(out, p)))
    except Exception:
        return None

def ms(t_ns, t0):
    return None if t_ns is None else round((t_ns - t0) / 1e6, 1)

def fmt(v):
    return "-" if v is None else "%.0f" % v

import datetime, re
# Start-up lines worth showing, per system (JSON lines: wardend's "ts"/"msg",
# etcd's zap "ts" (RFC 3339 or epoch seconds) and "msg").
KEEP = {"warden": re.compile(r"listening|raft node started|snapshot|restor|replay|raft leader|"
                             r"health status|\"level\":\"(warn|error)\""),
        "etcd": re.compile(r"snapshot|restor|recover|replay|backend|WAL|wal|became leader|"
                           r"elected leader|ready to serve|published|starting an etcd server|"
                           r"\"level\":\"(warn|error)\"")}
SKIP = re.compile(r"metrics listener disabled|connection (accepted|closed)|rejected connection|"
                  r"prober|lost TCP streaming|peer became inactive")

def ts_of(j):
    t = j.get("ts")
    if isinstance(t, (int, float)):
        return float(t)
    try:
        return datetime.datetime.fromisoformat(str(t).replace("Z", "+00:00")).timestamp()
    except Exception:
        return None

def digest(sys_, path, limit=25):
    out = []
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        return out
    for ln in lines:
        if not KEEP[sys_].search(ln) or SKIP.search(ln):
            continue
        try:
            j = json.loads(ln)
        except ValueError:
            continue
        t = ts_of(j)
        rest = {k: v for k, v in j.items() if k not in ("ts", "level", "msg", "caller")}
        txt = "%s %s" % (j.get("msg"), json.dumps(rest)[:300])
        out.append(lambda te, t=t, txt=txt: "%6s ms %s" % (
            "?" if t is None else "%.0f" % ((t - te) * 1000), txt))
        if len(out) >= limit:
            break
    return out

STEPS = ("accept", "health_serving", "read_serializable", "leader_known", "read_linearizable", "write")
res = {}
for s in systems:
    pre = load("%s-enroll.json" % s) if s == "warden" else load("etcd-preload.json")
    if s == "warden" and pre:
        v = load("warden-verify.json") or {}
        print("warden preload: %d of %d devices in %.1fs (%.0f/s), batch p50 %s ms p99 %s ms, "
              "errors %d; GetDevice first/last: %s" % (
                  pre["enrolled"], n, pre["elapsed_s"], pre["devices_per_s"] or 0,
                  pre["batch_p50_ms"], pre["batch_p99_ms"], pre["errors"], v.get("get")))
    if s == "etcd" and pre:
        v = load("etcd-verify.json") or {}
        print("etcd preload: %d puts ok in %.1fs (%.0f/s), errors %d; keys counted %s" % (
            pre["ok"], pre["ok"] / pre["throughput_rps"] if pre["throughput_rps"] else 0,
            pre["throughput_rps"], pre["error_count"], v.get("keys")))
    cl_read, cl_write = [], []
    for r in range(1, restarts + 1):
        p, rr, sz = load("%s-probe-%d.json" % (s, r)), load("%s-restart-%d.json" % (s, r)), \
            load("%s-sizes-%d.json" % (s, r))
        if not p or not rr:
            print("%s restart %d: no result" % (s, r))
            continue
        t0 = int(min(rr["exec"]) * 1e9)
        print("%s restart %d (stop took %.2fs)%s" % (s, r, rr["stop_s"],
              " PROBE TIMED OUT" if p["timed_out"] else ""))
        print("  %-5s %8s %8s %8s %8s %8s %8s   (ms from that node's exec)" % (
            "node", "accept", "health", "ser.read", "leader", "lin.read", "write"))
        for i in ("1", "2", "3"):
            nd, te = p["nodes"][i], int(rr["exec"][int(i) - 1] * 1e9)
            print("  %-5s %s" % (i, " ".join("%8s" % fmt(ms(nd["t_ns"].get(k), te)) for k in STEPS)))
            if sz and i in sz:
                print("        data: %s" % json.dumps(sz[i]))
        c = p["cluster"]["t_ns"]
        rd, wr = ms(c.get("read_linearizable"), t0), ms(c.get("write"), t0)
        print("  cluster (from first exec): first linearizable read %s ms (node %s), "
              "first write %s ms (node %s)" % (fmt(rd), p["cluster"]["read_by"], fmt(wr),
                                               p["cluster"]["write_by"]))
        acc = [ms(p["nodes"][i]["t_ns"].get("accept"), t0) for i in ("1", "2", "3")]
        if rd is not None and all(x is not None for x in acc):
            print("  split: last member accepting at %.0f ms, then %.0f ms to the first "
                  "linearizable read (election + barrier)" % (max(acc), rd - max(acc)))
        if rd is not None:
            cl_read.append(rd)
        if wr is not None:
            cl_write.append(wr)
        for i in ("1", "2", "3"):
            te = rr["exec"][int(i) - 1]
            for line in digest(s, os.path.join(out, "%s-startlog-%d-%s.log" % (s, r, i))):
                print("  log %s +%s" % (i, line(te)))
        st = rr.get("status")
        if s == "warden" and isinstance(st, dict):
            for nid, x in sorted(st.get("nodes", {}).items()):
                print("  status %s: %s" % (nid, json.dumps(x)))
                if "last_index" in x:
                    # What raft_start loaded: the newest snapshot (if any) and
                    # every log entry after it (the probe's own writes are a
                    # few entries at the end); restores says whether the fsm
                    # restored it or skipped it (LMDB already newer).
                    print("  start %s: snapshot at index %d, log entries %d..%d (%d) loaded and "
                          "re-applied (skipped when <= LMDB's applied index), restores %d "
                          "(skipped %d)" % (nid, x["snapshot_index"], x["snapshot_index"] + 1,
                                            x["last_index"], x["last_index"] - x["snapshot_index"],
                                            x["restores"], x["restores_skipped"]))
    res[s] = {"read_ms": cl_read, "write_ms": cl_write,
              "read_med": statistics.median(cl_read) if cl_read else None,
              "write_med": statistics.median(cl_write) if cl_write else None}
    print("%s: time to first linearizable read %s ms (median of %s), first write %s ms (median of %s)" % (
        s, fmt(res[s]["read_med"]), cl_read, fmt(res[s]["write_med"]), cl_write))
w, e = res.get("warden"), res.get("etcd")
if w and e and w["read_med"] and e["read_med"]:
    print("ratio restart %d time_to_read=%.2f time_to_write=%s (warden %.0f ms / etcd %.0f ms read; "
          "warden %s / etcd %s ms write)" % (
              n, w["read_med"] / e["read_med"],
              "%.2f" % (w["write_med"] / e["write_med"]) if w["write_med"] and e["write_med"] else "nan",
              w["read_med"], e["read_med"], fmt(w["write_med"]), fmt(e["write_med"])))
if w and w["read_med"] is not None:
    print("target: restart to serving (linearizable read) with %d devices under 1000 ms: %s" % (
        n, "met" if w["read_med"] < 1000 else "MISSED"))
json.dump(res, open(os.path.join(out, "summary.json"), "w"), indent=1)
PY
warden_args_note
