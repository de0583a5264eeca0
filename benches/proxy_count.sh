#!/usr/bin/env bash
# Instructions per request through a running smproxy, counted by callgrind: a figure that does
# not drift with what else the machine does, for changes too small for benches/load.sh to see.
# One binary per call; run it for a before and an after build and compare.
#
#   bash benches/proxy_count.sh target/release/smproxy pages     # every corpus page, ROUNDS times
#   bash benches/proxy_count.sh target/release/smproxy beacons   # N first-visit page-view beacons
#   INJECT=false bash benches/proxy_count.sh ... pages           # passthrough
#   CG_OUT=/tmp/cg.out bash benches/proxy_count.sh ...             # keep the measured run's
#                                                   profile, for callgrind_annotate
#
# The proxy runs under valgrind with an nginx origin serving the corpus; a client (Python,
# one keep-alive connection) sends one warm-up round, then the measured requests. The figure is
# (instructions of that run − instructions of a run with the warm-up only) ÷ measured requests,
# so start-up and warm-up cancel out. Beacons are stored in a fresh SQLite file, their writing
# included. Callgrind counts a `rep movsb` copy byte by byte, so `memcpy` weighs more here
# than on the CPU: compare builds with each other, not with wall-clock figures.
#
# Needs valgrind, Debian's nginx and python3; takes a few minutes (valgrind runs ~50× slower).
set -euo pipefail

bin=$(realpath "${1:?usage: proxy_count.sh SMPROXY_BINARY pages|beacons}")
what=${2:?usage: proxy_count.sh SMPROXY_BINARY pages|beacons}
ROUNDS=${ROUNDS:-2}
BEACONS=${BEACONS:-3000}
INJECT=${INJECT:-true}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
corpus=$(realpath "${SMPROXY_CORPUS:-$here/../../shared/corpus/pages}")
[ -d "$corpus" ] || { echo "corpus not found at $corpus (set SMPROXY_CORPUS)" >&2; exit 1; }
case $what in pages|beacons) ;; *) echo "pages or beacons, not $what" >&2; exit 2 ;; esac

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

origin=$(free_port)
mkdir -p "$tmp/nginx/logs" "$tmp/nginx/tmp"
user=""
if [ "$(id -u)" = 0 ]; then user="user root;"; fi
cat >"$tmp/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
$user
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    types { text/html html; }
    client_body_temp_path $tmp/nginx/tmp;
    proxy_temp_path $tmp/nginx/tmp;
    fastcgi_temp_path $tmp/nginx/tmp;
    uwsgi_temp_path $tmp/nginx/tmp;
    scgi_temp_path $tmp/nginx/tmp;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$origin;
        location /p/ { alias $corpus/; }
    }
}
EOF
nginx -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" >"$tmp/nginx/logs/stdout" 2>&1 &
pids+=($!)

cat >"$tmp/client.py" <<'EOF'
import http.client, os, sys
port, what, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
if what == "pages":
    names = sorted(n for n in os.listdir(sys.argv[4]) if n.endswith(".html"))
    todo = [("GET", "/p/" + n, None, {"Accept": "text/html"}) for n in names] * count
else:
    body = ('{"type":"pageview","url":"http://127.0.0.1/p/page.html","referrer":"",'
            '"title":"A page","screen":"1920x1080","lang":"en-GB"}')
    h = {"Content-Type": "text/plain;charset=UTF-8", "Origin": "http://127.0.0.1",
         "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                       "(KHTML, like Gecko) Chrome/126.0 Safari/537.36"}
    todo = [("POST", "/_sm/collect", body, h)] * count
for method, path, body, headers in todo:
    c.request(method, path, body, headers)
    r = c.getresponse()
    r.read()
    if r.status >= 300:
        sys.exit(f"{method} {path}: {r.status}")
print(len(todo))
EOF

# run_once MEASURED: instructions of one callgrind run with a warm-up and MEASURED requests
# (pages: rounds over the corpus; beacons: beacons).
run_once() {
    local measured=$1 port admin out
    port=$(free_port)
    admin=$(free_port)
    rm -rf "$tmp/run" && mkdir -p "$tmp/run"
    cat >"$tmp/run/smproxy.yaml" <<EOF
listen: "127.0.0.1:$port"
client_id: "benchclient"
threads: 1
grace_period_seconds: 0
sites:
  - name: bench
    hosts: ["*"]
    upstream: "127.0.0.1:$origin"
inject:
  enabled: $INJECT
collect:
  rate_per_minute: 0
admin:
  listen: "127.0.0.1:$admin"
  token: "proxy-count-admin-token"
store:
  sqlite: "$tmp/run/smproxy.db"
EOF
    valgrind --tool=callgrind --callgrind-out-file="$tmp/run/cg.out" \
        "$bin" -c "$tmp/run/smproxy.yaml" >"$tmp/run/log" 2>&1 &
    local vg=$!
    for _ in $(seq 120); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/_sm/sm.js" && break
        kill -0 "$vg" 2>/dev/null || { cat "$tmp/run/log" >&2; exit 1; }
        sleep 0.5
    done
    if [ "$what" = pages ]; then
        python3 "$tmp/client.py" "$port" pages 1 "$corpus" >/dev/null
        [ "$measured" -gt 0 ] && out=$(python3 "$tmp/client.py" "$port" pages "$measured" "$corpus")
    else
        python3 "$tmp/client.py" "$port" beacons 200 >/dev/null
        [ "$measured" -gt 0 ] && out=$(python3 "$tmp/client.py" "$port" beacons "$measured")
    fi
    # Let the writer store what it was given, then stop the proxy (SIGINT: a clean exit).
    sleep 2
    kill -INT "$vg"
    wait "$vg" || true
    awk '/^summary:/ {print $2}' "$tmp/run/cg.out"
    if [ -n "${CG_OUT:-}" ] && [ "$measured" -gt 0 ]; then cp "$tmp/run/cg.out" "$CG_OUT"; fi
    echo "${out:-0}" >"$tmp/requests"
}

if [ "$what" = pages ]; then measured=$ROUNDS; else measured=$BEACONS; fi
base=$(run_once 0)
total=$(run_once "$measured")
requests=$(cat "$tmp/requests")
echo "$what through $(basename "$bin") (inject: $INJECT): $requests requests," \
    "$(( (total - base) / requests )) instructions per request" \
    "(runs: $total with, $base without)"
