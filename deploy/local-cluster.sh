#!/usr/bin/env bash
# local-cluster.sh - a 3- or 5-node warden cluster on loopback, for
# development and fault tests (docs/operations-cluster.md).
#
#   deploy/local-cluster.sh up     [N] [--dir DIR]   N = 3 (default) or 5
#   deploy/local-cluster.sh status     [--dir DIR]
#   deploy/local-cluster.sh down       [--dir DIR]
#
# Node i listens on its own address 127.0.0.(10+i): clients on :7443, Raft
# peers on :7444, so a fault test can cut the link between two nodes with
# iptables by address. It builds nothing: it runs ${WARDEN_BUILD:-build}/wardend.
#
# DIR (default ./warden-cluster) holds:
#   certs/          cluster CA, node-<i> certs, <role>.pem/<role>-key.pem
#   n<i>/           node i's data dir (db/, raft/)
#   n<i>.log        node i's JSON log (the previous run's is n<i>.log.1)
#   cluster.json    {"certs", "nodes": [{"id","client","peer","pid","data_dir"}]}
#
# WARDEN_EXTRA_ARGS (env, word-split, no globbing) is appended to every
# node's wardend command line, e.g. WARDEN_EXTRA_ARGS="--rate-limit-rps 0".
#
# `up` on a DIR that already has data restarts the same cluster (--peers is
# ignored once a node has a raft log). `down` signals only the PIDs recorded
# in DIR/cluster.json, and only while they still are wardend processes.
set -euo pipefail

CLIENT_PORT=7443
PEER_PORT=7444
# Bounded waits: a leader within this many seconds of start, and a node's
# exit within this many seconds of SIGTERM before SIGKILL.
UP_WAIT_S=30
DOWN_WAIT_S=15

BUILD=${WARDEN_BUILD:-build}
WARDEND=$BUILD/wardend
WARDENCTL=$BUILD/wardenctl
# Extra wardend flags for every node: word-split, globbing off.
EXTRA_ARGS=()
if [ -n "${WARDEN_EXTRA_ARGS:-}" ]; then
    set -f
    # shellcheck disable=SC2206 # word splitting is the interface
    EXTRA_ARGS=($WARDEN_EXTRA_ARGS)
    set +f
fi

usage() {
    sed -n '4,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
n=3
dir=./warden-cluster
while [ $# -gt 0 ]; do
    case $1 in
    --dir) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
    --dir=*) dir=${1#--dir=}; shift ;;
    3|5) n=$1; shift ;;
    *) echo "local-cluster: unexpected argument: $1 (N must be 3 or 5)" >&2; usage ;;
    esac
done

ip_of() { echo "127.0.0.$((10 + $1))"; }

json_pids() {
    # "id pid" per node from cluster.json; python3 is the JSON parser every
    # warden dev box has (the integration tests need it).
    /usr/bin/python3 - "$dir/cluster.json" <<'EOF'
import json, sys
for nd in json.load(open(sys.argv[1]))["nodes"]:
    print(nd["id"], nd["pid"], nd["client"])
EOF
}

# A recorded PID is ours only while it still runs wardend.
is_wardend() {
    local comm
    comm=$(ps -o comm= -p "$1" 2>/dev/null || true)
    [ "$comm" = "wardend" ]
}

running_pids() {
    [ -f "$dir/cluster.json" ] || return 0
    json_pids | while read -r id pid client; do
        if is_wardend "$pid"; then echo "$pid"; fi
    done
}

cmd_up() {
    [ -x "$WARDEND" ] || { echo "local-cluster: no wardend at $WARDEND (set WARDEN_BUILD)" >&2; exit 1; }
    if [ -n "$(running_pids)" ]; then
        echo "local-cluster: already up in $dir (run down first)" >&2
        exit 1
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local certs=$dir/certs
    local gen=("$WARDEND" gen-certs --out "$certs")
    local peers="" i
    for ((i = 1; i <= n; i++)); do
        gen+=(--node "$i=$(ip_of "$i")")
        peers+="${peers:+,}$i=$(ip_of "$i"):$PEER_PORT/$(ip_of "$i"):$CLIENT_PORT"
    done
    "${gen[@]}" >"$dir/gen-certs.log" 2>&1 || { cat "$dir/gen-certs.log" >&2; exit 1; }

    local pids=() json sep=""
    json="{\"certs\": \"$certs\", \"nodes\": ["
    for ((i = 1; i <= n; i++)); do
        local ip data log
        ip=$(ip_of "$i")
        data=$dir/n$i
        log=$dir/n$i.log
        [ -f "$log" ] && mv -f "$log" "$log.1"
        "$WARDEND" --node-id "$i" --peers "$peers" \
            --listen "$ip:$CLIENT_PORT" --peer-listen "$ip:$PEER_PORT" \
            --data-dir "$data" --tls-ca "$certs/ca.pem" \
            --tls-cert "$certs/node-$i.pem" --tls-key "$certs/node-$i-key.pem" \
            ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"} </dev/null >"$log" 2>&1 &
        pids+=("$!")
        json+="$sep{\"id\": $i, \"client\": \"$ip:$CLIENT_PORT\", \"peer\": \"$ip:$PEER_PORT\", \"pid\": $!, \"data_dir\": \"$data\"}"
        sep=", "
    done
    json+="]}"
    echo "$json" >"$dir/cluster.json.tmp"
    mv -f "$dir/cluster.json.tmp" "$dir/cluster.json"

    # Bounded wait for a leader (each node logs "raft leadership changed"
    # with its state; health is SERVING once a leader is known).
    local deadline=$((SECONDS + UP_WAIT_S)) leader=""
    while [ $SECONDS -lt $deadline ]; do
        for ((i = 1; i <= n; i++)); do
            if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then
                echo "local-cluster: node $i exited during start; its log:" >&2
                tail -n 20 "$dir/n$i.log" >&2
                exit 1
            fi
            if grep -q '"state":"leader"' "$dir/n$i.log" 2>/dev/null; then
                leader=$i
            fi
        done
        [ -n "$leader" ] && break
        sleep 0.2
    done
    if [ -z "$leader" ]; then
        echo "local-cluster: no leader within ${UP_WAIT_S}s; logs in $dir" >&2
        exit 1
    fi
    echo "local-cluster: $n nodes up in $dir; leader n$leader at $(ip_of "$leader"):$CLIENT_PORT"
    echo "  certs:   $certs (ca.pem, <role>.pem, <role>-key.pem)"
    echo "  try:     $WARDENCTL --endpoint $(ip_of "$leader"):$CLIENT_PORT --dev-certs $certs --role admin health"
}

cmd_down() {
    if [ ! -f "$dir/cluster.json" ]; then
        echo "local-cluster: no $dir/cluster.json; nothing to stop"
        return 0
    fi
    local pids
    pids=$(running_pids)
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
    local deadline=$((SECONDS + DOWN_WAIT_S))
    while [ $SECONDS -lt $deadline ]; do
        local left=""
        for pid in $pids; do is_wardend "$pid" && left+=" $pid"; done
        [ -z "$left" ] && break
        sleep 0.2
    done
    for pid in $pids; do
        if is_wardend "$pid"; then
            echo "local-cluster: pid $pid ignored SIGTERM for ${DOWN_WAIT_S}s; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    echo "local-cluster: down ($dir)"
}

cmd_status() {
    [ -f "$dir/cluster.json" ] || { echo "local-cluster: no $dir/cluster.json" >&2; exit 1; }
    local certs has_cluster=0
    certs=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["certs"])' "$dir/cluster.json")
    if [ -x "$WARDENCTL" ] && "$WARDENCTL" --help 2>&1 | grep -q 'cluster'; then
        has_cluster=1
    fi
    json_pids | while read -r id pid client; do
        if ! is_wardend "$pid"; then
            echo "n$id pid=$pid client=$client: not running"
            continue
        fi
        if [ $has_cluster = 1 ]; then
            echo "n$id pid=$pid client=$client:"
            "$WARDENCTL" --endpoint "$client" --dev-certs "$certs" --role admin cluster status 2>&1 |
                sed 's/^/    /' || true
        elif [ -x "$WARDENCTL" ]; then
            echo "n$id pid=$pid client=$client: running, health $("$WARDENCTL" --endpoint "$client" --dev-certs "$certs" --role admin health 2>&1 | tr '\n' ' ')"
        else
            echo "n$id pid=$pid client=$client: running"
        fi
    done
}

case $cmd in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*) usage ;;
esac
