#!/usr/bin/env bash
# Memory per idle keep-alive connection, two smproxy binaries side by side (A/B), with the
# method of benches/load.sh: a fresh server, three warm-up requests, then benches/load/hold.py
# opens N connections, sends one request for the median corpus page on each, keeps them idle,
# and reads VmRSS; the figure is RSS held minus RSS before. The servers take turns in each
# repeat, so background load hits both alike. Medians of REPEATS.
#
#   A=/path/to/old/smproxy B=target/release/smproxy bash benches/hold_ab.sh
#
# Needs Debian's nginx (the origin), python3 and taskset. The server under test runs on CPU 1,
# the origin and the client on CPU 0.
set -euo pipefail

A=${A:?A=path of the first smproxy binary}
B=${B:?B=path of the second smproxy binary}
CONNS=${CONNS:-1000}
REPEATS=${REPEATS:-3}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
corpus=${SMPROXY_CORPUS:-$here/../../shared/corpus/pages}
[ -d "$corpus" ] || { echo "corpus not found at $corpus (set SMPROXY_CORPUS)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}

# The origin: nginx serving the median-size corpus page.
mkdir -p "$tmp/www/p" "$tmp/nginx/logs" "$tmp/nginx/tmp"
n=$(find "$corpus" -name '*.html' | wc -l)
page=$(cd "$corpus" && ls -S -r -- *.html | sed -n "$(( (n + 1) / 2 ))p")
cp "$corpus/$page" "$tmp/www/p/"
chmod -R a+rX "$tmp/www"
origin=$(free_port)
user=""
if [ "$(id -u)" = 0 ]; then user="user root;"; fi
cat >"$tmp/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
$user
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    types { text/html html; }
    client_body_temp_path $tmp/nginx/tmp;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    server { listen 127.0.0.1:$origin; root $tmp/www; }
}
EOF
taskset -c 0 nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" &
pids+=($!)
wait_port "$origin"

# run_one BIN: prints "idle_kb held_kb alive" for one fresh server.
run_one() {
    local bin=$1 port admin dir pid out
    port=$(free_port)
    admin=$(free_port)
    dir=$(mktemp -d -p "$tmp")
    cat >"$dir/smproxy.yaml" <<EOF
listen: "127.0.0.1:$port"
client_id: "benchclient"
threads: 1
grace_period_seconds: 0
sites:
  - name: bench
    hosts: ["*"]
    upstream: "127.0.0.1:$origin"
admin:
  listen: "127.0.0.1:$admin"
store:
  sqlite: "$dir/smproxy.db"
EOF
    taskset -c 1 "$bin" -c "$dir/smproxy.yaml" >"$dir/stderr.log" 2>&1 &
    pid=$!
    wait_port "$port"
    for _ in 1 2 3; do python3 - "$port" "/p/$page" <<'PY'
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{sys.argv[2]}").read()
PY
    done
    out=$(taskset -c 0 python3 "$here/load/hold.py" --addr "127.0.0.1:$port" --path "/p/$page" \
        --pid "$pid" --conns "$CONNS")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    local conns alive idle_kb held_kb closed_kb
    eval "$(grep '^HOLD ' <<<"$out" | sed 's/^HOLD //')"
    echo "$idle_kb $held_kb $alive"
}

median() { sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

echo "page /p/$page, $CONNS connections, $REPEATS repeats, load $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$tmp/a" ; : >"$tmp/b"
for rep in $(seq "$REPEATS"); do
    for side in a b; do
        bin=$A; [ "$side" = b ] && bin=$B
        read -r idle held alive <<<"$(run_one "$bin")"
        echo "repeat $rep $side: idle ${idle} kB, held ${held} kB, +$((held - idle)) kB, $alive of $CONNS open"
        echo $((held - idle)) >>"$tmp/$side"
    done
done
echo "median growth per $CONNS idle keep-alive connections: A $(median <"$tmp/a") kB, B $(median <"$tmp/b") kB"
