# lib.sh - shared helpers for bench/compare-etcd.sh and bench/scenarios/*.sh.
# Sourced, not run. Starts 3-node warden and etcd clusters on loopback, finds
# leaders, and stops exactly the PIDs it started (recorded in $BENCH_PIDS).
#
# Addresses (loopback only; ports are below the ephemeral range so they do
# not collide with test harnesses that bind random ports on 127.0.0.x):
#   warden  127.0.0.${WARDEN_IP_BASE:-41}+i  client :${WARDEN_PORT:-7443}, raft :$((WARDEN_PORT+1))
#   etcd    127.0.0.${ETCD_IP_BASE:-21}+i-1  client :2379, peer :2380

WARDEN_IP_BASE=${WARDEN_IP_BASE:-41}
WARDEN_PORT=${WARDEN_PORT:-7443}
ETCD_IP_BASE=${ETCD_IP_BASE:-21}
ETCD_CLIENT_PORT=${ETCD_CLIENT_PORT:-2379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-2380}
# Bounded waits.
START_WAIT_S=${START_WAIT_S:-30}
STOP_WAIT_S=${STOP_WAIT_S:-15}

# Extra wardend flags for every warden node (word-split, no globbing), as in
# deploy/local-cluster.sh. Default when unset: --rate-limit-rps 0. A
# benchmark measures raw throughput, so wardend's per-principal rate limit
# (default 2,000 calls/s; every loadgen call is one principal, admin) is
# off; set WARDEN_EXTRA_ARGS="" to measure with the default limit.
WARDEN_EXTRA_ARGS=${WARDEN_EXTRA_ARGS---rate-limit-rps 0}
WARDEN_EXTRA=()
if [ -n "$WARDEN_EXTRA_ARGS" ]; then
    set -f
    # shellcheck disable=SC2206 # word splitting is the interface
    WARDEN_EXTRA=($WARDEN_EXTRA_ARGS)
    set +f
fi

BUILD=${WARDEN_BUILD:-build}
WARDEND=$BUILD/wardend
LOADGEN=$BUILD/bench/warden-loadgen
BENCH_PIDS=()

log() { echo "[$(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }

# One line for a benchmark's output: the extra wardend flags, and whether
# the admission rate limit was on.
warden_args_note() {
    local what="rate limit on (wardend default)"
    case " $WARDEN_EXTRA_ARGS " in
    *" --rate-limit-rps 0 "* | *" --rate-limit-rps=0 "*)
        what="rate limit off: a benchmark measures raw throughput" ;;
    *" --rate-limit-rps"*) what="rate limit on (as set)" ;;
    esac
    echo "warden: WARDEN_EXTRA_ARGS=\"$WARDEN_EXTRA_ARGS\" ($what)"
}

warden_ip() { echo "127.0.0.$((WARDEN_IP_BASE + $1 - 1))"; }
etcd_ip() { echo "127.0.0.$((ETCD_IP_BASE + $1 - 1))"; }

# A recorded PID is still ours only while it runs the program we started.
pid_is() { [ "$(ps -o comm= -p "$1" 2>/dev/null)" = "$2" ]; }

stop_pid() { # pid comm: SIGTERM, bounded wait, then SIGKILL
    local pid=$1 comm=$2 i
    pid_is "$pid" "$comm" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_WAIT_S * 5; i++)); do
        pid_is "$pid" "$comm" || return 0
        sleep 0.2
    done
    log "pid $pid ($comm) ignored SIGTERM; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

# forget_pid PID: drop a PID we stopped ourselves from BENCH_PIDS, so a
# later stop_all never signals whatever process reuses the number.
forget_pid() {
    local keep=() entry
    for entry in "${BENCH_PIDS[@]}"; do
        [ "${entry%%:*}" = "$1" ] || keep+=("$entry")
    done
    BENCH_PIDS=(${keep[@]+"${keep[@]}"})
}

stop_all() {
    local entry
    for entry in "${BENCH_PIDS[@]}"; do
        stop_pid "${entry%%:*}" "${entry#*:}"
    done
    BENCH_PIDS=()
}

# ---- warden -----------------------------------------------------------------

# warden_up DIR [extra wardend args...]: 3 nodes; sets WARDEN_PIDS[1..3],
# WARDEN_EP[1..3], WARDEN_CERTS. $WARDEN_EXTRA_ARGS follows the given args.
warden_up() {
    local dir=$1; shift
    local n=3 i peers="" gen=("$WARDEND" gen-certs --out "$dir/certs")
    [ -x "$WARDEND" ] || die "no wardend at $WARDEND (set WARDEN_BUILD)"
    mkdir -p "$dir"
    for ((i = 1; i <= n; i++)); do
        gen+=(--node "$i=$(warden_ip $i)")
        peers+="${peers:+,}$i=$(warden_ip $i):$((WARDEN_PORT + 1))/$(warden_ip $i):$WARDEN_PORT"
    done
    [ -f "$dir/certs/ca.pem" ] || "${gen[@]}" >"$dir/gen-certs.log" 2>&1 ||
        die "gen-certs failed: $(cat "$dir/gen-certs.log")"
    WARDEN_CERTS=$dir/certs
    WARDEN_PEERS=$peers
    WARDEN_ARGS=("$@" ${WARDEN_EXTRA[@]+"${WARDEN_EXTRA[@]}"})
    log "$(warden_args_note)"
    for ((i = 1; i <= n; i++)); do
        warden_start_node "$dir" "$i"
    done
    warden_wait_leader "$dir" >/dev/null
}

warden_start_node() { # dir i
    local dir=$1 i=$2 ip
    ip=$(warden_ip "$i")
    "$WARDEND" --node-id "$i" --peers "$WARDEN_PEERS" \
        --listen "$ip:$WARDEN_PORT" --peer-listen "$ip:$((WARDEN_PORT + 1))" \
        --data-dir "$dir/n$i" --tls-ca "$WARDEN_CERTS/ca.pem" \
        --tls-cert "$WARDEN_CERTS/node-$i.pem" --tls-key "$WARDEN_CERTS/node-$i-key.pem" \
        "${WARDEN_ARGS[@]}" </dev/null >>"$dir/n$i.log" 2>&1 &
    WARDEN_PIDS[$i]=$!
    WARDEN_EP[$i]=$ip:$WARDEN_PORT
    BENCH_PIDS+=("$!:wardend")
}

# Prints the leader's index (1..3): the node whose latest leadership line
# says "leader". Bounded by START_WAIT_S.
warden_wait_leader() {
    local dir=$1 deadline=$((SECONDS + START_WAIT_S)) i
    while [ $SECONDS -lt $deadline ]; do
        for i in 1 2 3; do
            pid_is "${WARDEN_PIDS[$i]}" wardend || continue
            if grep '"raft leader' "$dir/n$i.log" 2>/dev/null | tail -n 1 |
                grep -q '"state":"leader"'; then
                echo "$i"
                return 0
            fi
        done
        sleep 0.2
    done
    die "no warden leader within ${START_WAIT_S}s (logs in $dir)"
}

warden_lg() { # loadgen args against warden (admin identity, leader first)
    local lead=$1; shift
    local eps="${WARDEN_EP[$lead]}" i
    for i in 1 2 3; do [ "$i" = "$lead" ] || eps+=",${WARDEN_EP[$i]}"; done
    "$LOADGEN" --endpoint "$eps" --cacert "$WARDEN_CERTS/ca.pem" \
        --cert "$WARDEN_CERTS/admin.pem" --key "$WARDEN_CERTS/admin-key.pem" "$@"
}

# ---- etcd --------------------------------------------------------------------

etcd_certs() { # dir: a P-256 CA, a server+peer cert per member, a client cert
    local d=$1 i ip
    mkdir -p "$d"
    [ -f "$d/client.pem" ] && return 0
    openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca-key.pem" 2>/dev/null
    openssl req -x509 -new -key "$d/ca-key.pem" -sha256 -days 30 -subj "/CN=bench-etcd-ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
        -out "$d/ca.pem" 2>/dev/null
    for i in 1 2 3 client; do
        local ext
        if [ "$i" = client ]; then
            ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
        else
            ip=$(etcd_ip "$i")
            ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:$ip,IP:127.0.0.1"
        fi
        local name=m$i
        [ "$i" = client ] && name=client
        openssl ecparam -name prime256v1 -genkey -noout -out "$d/$name-key.pem" 2>/dev/null
        openssl req -new -key "$d/$name-key.pem" -subj "/CN=$name" -out "$d/$name.csr" 2>/dev/null
        openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" \
            -CAcreateserial -days 30 -sha256 -out "$d/$name.pem" \
            -extfile <(echo "$ext") 2>/dev/null
    done
}

# etcd_up DIR: 3 members, client and peer mTLS (--client-cert-auth,
# --peer-client-cert-auth), default fsync. Member certs also name
# 127.0.0.1: peers dial from it, and etcd checks a peer cert against the
# remote address. Sets ETCD_EP[1..3], ETCD_PIDS[1..3], ETCD_CERTS.
etcd_up() {
    local dir=$1 i
    command -v etcd >/dev/null || die "no etcd (apt-get install etcd-server etcd-client)"
    ETCD_CERTS=$dir/certs
    etcd_certs "$ETCD_CERTS"
    for i in 1 2 3; do
        etcd_start_member "$dir" "$i"
    done
    etcd_wait_leader >/dev/null
}

# etcd_start_member DIR I: start (or restart, on its existing data dir)
# member I of the cluster etcd_up made; sets ETCD_PIDS[I], ETCD_EP[I].
etcd_start_member() {
    local dir=$1 i=$2 j ip cluster=""
    for j in 1 2 3; do
        cluster+="${cluster:+,}m$j=https://$(etcd_ip $j):$ETCD_PEER_PORT"
    done
    ip=$(etcd_ip "$i")
    etcd --name "m$i" --data-dir "$dir/m$i" \
        --listen-client-urls "https://$ip:$ETCD_CLIENT_PORT" \
        --advertise-client-urls "https://$ip:$ETCD_CLIENT_PORT" \
        --listen-peer-urls "https://$ip:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "https://$ip:$ETCD_PEER_PORT" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --initial-cluster-token warden-bench \
        --cert-file "$ETCD_CERTS/m$i.pem" --key-file "$ETCD_CERTS/m$i-key.pem" \
        --trusted-ca-file "$ETCD_CERTS/ca.pem" --client-cert-auth \
        --peer-cert-file "$ETCD_CERTS/m$i.pem" --peer-key-file "$ETCD_CERTS/m$i-key.pem" \
        --peer-trusted-ca-file "$ETCD_CERTS/ca.pem" --peer-client-cert-auth \
        --logger zap --log-outputs stderr \
        </dev/null >>"$dir/m$i.log" 2>&1 &
    BENCH_PIDS+=("$!:etcd")
    ETCD_PIDS[$i]=$!
    ETCD_EP[$i]=$ip:$ETCD_CLIENT_PORT
}

etcdctl_() {
    ETCDCTL_API=3 etcdctl --cacert "$ETCD_CERTS/ca.pem" --cert "$ETCD_CERTS/client.pem" \
        --key "$ETCD_CERTS/client-key.pem" "$@"
}

# Prints the leader's index (1..3), bounded by START_WAIT_S.
etcd_wait_leader() {
    local deadline=$((SECONDS + START_WAIT_S)) eps="" i
    for i in 1 2 3; do eps+="${eps:+,}https://${ETCD_EP[$i]}"; done
    while [ $SECONDS -lt $deadline ]; do
        local out
        out=$(etcdctl_ --endpoints "$eps" --command-timeout=2s endpoint status -w json 2>/dev/null) || true
        local lead
        lead=$(echo "$out" | /usr/bin/python3 -c '
import json, sys
try:
    st = json.load(sys.stdin)
except Exception:
    sys.exit(0)
for s in st:
    h = s["Status"]["header"]
    if s["Status"].get("leader") and s["Status"]["leader"] == h["member_id"]:
        print(s["Endpoint"].split(":")[1].split(".")[-1])
' 2>/dev/null)
        if [ -n "$lead" ]; then
            echo $((lead - ETCD_IP_BASE + 1))
            return 0
        fi
        sleep 0.3
    done
    die "no etcd leader within ${START_WAIT_S}s (see the m<i>.log files)"
}

etcd_lg() { # loadgen args against etcd (client cert, leader first)
    local lead=$1; shift
    local eps="${ETCD_EP[$lead]}" i
    for i in 1 2 3; do [ "$i" = "$lead" ] || eps+=",${ETCD_EP[$i]}"; done
    "$LOADGEN" --endpoint "$eps" --cacert "$ETCD_CERTS/ca.pem" \
        --cert "$ETCD_CERTS/client.pem" --key "$ETCD_CERTS/client-key.pem" "$@"
}

# JSON field from a loadgen result: jget FILE python-expression-on-r
jget() {
    /usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}
