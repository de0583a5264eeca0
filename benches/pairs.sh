#!/usr/bin/env bash
# Two smproxy builds side by side, in alternating short runs: a before/after figure for changes
# of a few per cent, which benches/load.sh's medians of separate runs cannot resolve on a
# machine whose speed drifts by more than that between runs.
#
#   bash benches/pairs.sh BEFORE_BINARY AFTER_BINARY
#   PAIRS=20 SECONDS_EACH=2 PAGES=rotation|median|beacons INJECT=true|false bash benches/pairs.sh A B
#
# Both run at once on CPU 1 (only the one under load works), an nginx origin serving the
# corpus and wrk on CPU 0. Each pair is a run of A and a run of B, each first in turn (after a
# 1 s warm-up each); the figure is each build's CPU time per request (from /proc/PID/stat)
# over that run, and the ratio B ÷ A within each pair, so that drift between pairs cancels. With
# PAGES=beacons the load is the tracker's page-view beacon from first visits (as in load.sh),
# each build storing into its own SQLite file, and a run's CPU time goes from a settled event
# writer to a settled writer again, so it includes storing every beacon. Prints every pair,
# then the median and mean of the ratios and how many pairs B was cheaper in. It fails on any
# wrk error or non-2xx answer but does not check the pages themselves: benches/load.sh and
# the tests do.
#
# Needs Debian's nginx and wrk, python3, taskset, curl.
set -euo pipefail

before=$(realpath "${1:?usage: pairs.sh BEFORE_BINARY AFTER_BINARY}")
after=$(realpath "${2:?usage: pairs.sh BEFORE_BINARY AFTER_BINARY}")
PAIRS=${PAIRS:-20}
SECONDS_EACH=${SECONDS_EACH:-2}
PAGES=${PAGES:-rotation}
INJECT=${INJECT:-true}
CONNS=${CONNS:-64}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
corpus=$(realpath "${SMPROXY_CORPUS:-$here/../../shared/corpus/pages}")
[ -d "$corpus" ] || { echo "corpus not found at $corpus (set SMPROXY_CORPUS)" >&2; exit 1; }
case $PAGES in rotation|median|beacons) ;; *) echo "PAGES is rotation, median or beacons, not $PAGES" >&2; exit 2 ;; esac
for tool in nginx wrk python3 taskset curl; do
    command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/smproxy-pairs.XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

mkdir -p "$tmp/www/p" "$tmp/o/logs" "$tmp/o/tmp"
cp "$corpus"/*.html "$tmp/www/p/"
chmod -R a+rX "$tmp/www"
(cd "$tmp/www/p" && ls -- *.html) | sort | sed 's|^|/p/|' >"$tmp/rotation.txt"
median=$(cd "$tmp/www/p" && ls -S -r -- *.html | sed -n "$(( ($(wc -l <"$tmp/rotation.txt") + 1) / 2 ))p")
echo "/p/$median" >"$tmp/median.txt"

origin=$(free_port)
user=""
if [ "$(id -u)" = 0 ]; then user="user root;"; fi
cat >"$tmp/o/nginx.conf" <<EOF
daemon off;
worker_processes 1;
$user
pid $tmp/o/logs/nginx.pid;
error_log $tmp/o/logs/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    types { text/html html; }
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_body_temp_path $tmp/o/tmp/body;
    proxy_temp_path $tmp/o/tmp/proxy;
    fastcgi_temp_path $tmp/o/tmp/fastcgi;
    uwsgi_temp_path $tmp/o/tmp/uwsgi;
    scgi_temp_path $tmp/o/tmp/scgi;
    server { listen 127.0.0.1:$origin; location / { root $tmp/www; } }
}
EOF
taskset -c 0 nginx -p "$tmp/o/" -c "$tmp/o/nginx.conf" -e "$tmp/o/logs/error.log" &
pids+=($!)

# start NAME BINARY: an smproxy with its own store and ports on CPU 1; sets PORT_<NAME>.
declare -A PORT PID ADMIN
start() {
    local name=$1 bin=$2 port admin
    port=$(free_port)
    admin=$(free_port)
    mkdir -p "$tmp/$name"
    cp "$bin" "$tmp/$name/smproxy"
    cat >"$tmp/$name/smproxy.yaml" <<EOF
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
  token: "pairs-benchmark-admin-token"
store:
  sqlite: "$tmp/$name/smproxy.db"
EOF
    (cd "$tmp/$name" && exec taskset -c 1 ./smproxy -c smproxy.yaml) >"$tmp/$name/log" 2>&1 &
    PID[$name]=$!
    pids+=($!)
    PORT[$name]=$port
    ADMIN[$name]=$admin
}
start a "$before"
start b "$after"
for name in a b; do
    for _ in $(seq 100); do
        python3 - "${PORT[$name]}" <<'EOF' && break
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
except OSError:
    sys.exit(1)
EOF
        sleep 0.1
    done
done

ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
clk=$(getconf CLK_TCK)
# settle NAME: with beacons, waits until NAME's event writer has committed every event it
# accepted (as load.sh's wait_stored).
settle() {
    local name=$1 state=""
    [ "$PAGES" = beacons ] || return 0
    for _ in $(seq 600); do
        state=$(curl -sf -H "Authorization: Bearer pairs-benchmark-admin-token" \
            "http://127.0.0.1:${ADMIN[$name]}/metrics" | awk '
                $1 == "smproxy_events_enqueued_total" {e = $2}
                $1 == "smproxy_events_written_total" {w = $2}
                $1 == "smproxy_events_abandoned_total" {a = $2}
                END {print (e != "" && w + a == e) ? "settled" : e " accepted, " w " written"}')
        [ "$state" = settled ] && return 0
        sleep 0.1
    done
    echo "$name: the event writer did not settle ($state)" >&2
    exit 1
}

# run NAME SECONDS: CPU µs per request of NAME over one wrk run of SECONDS.
run() {
    local name=$1 secs=$2 t0 t1 out n
    settle "$name"
    t0=$(ticks "${PID[$name]}")
    if [ "$PAGES" = beacons ]; then
        out=$(WRK_BEACON=1 taskset -c 0 wrk -t 1 -c "$CONNS" -d "${secs}s" \
            -s "$here/load/wrk.lua" "http://127.0.0.1:${PORT[$name]}/_sm/collect")
    else
        out=$(WRK_PATHS=$tmp/$PAGES.txt taskset -c 0 wrk -t 1 -c "$CONNS" -d "${secs}s" \
            -s "$here/load/wrk.lua" "http://127.0.0.1:${PORT[$name]}/")
    fi
    settle "$name"
    t1=$(ticks "${PID[$name]}")
    n=$(sed -n 's/^WRK requests=\([0-9]*\).*/\1/p' <<<"$out")
    grep -q ' connect=0 read=0 write=0 status=0 timeout=0 ' <<<"$out" || { echo "errors from $name: $out" >&2; exit 1; }
    python3 -c "print(f'{($t1 - $t0) * 1e6 / $clk / $n:.1f}')"
}

echo "pairs: $PAIRS x ${SECONDS_EACH}s, $PAGES, inject $INJECT, wrk -c $CONNS; A=$before B=$after"
results=()
for i in $(seq "$PAIRS"); do
    # A first in odd pairs, B first in even ones: a drift within a pair favours neither.
    if [ $((i % 2)) = 1 ]; then order="a b"; else order="b a"; fi
    for name in $order; do
        run "$name" 1 >/dev/null
        declare "$name=$(run "$name" "$SECONDS_EACH")"
    done
    echo "pair $i: A $a µs/req, B $b µs/req"
    results+=("$a $b")
done
printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
pairs = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
r = [b / a for a, b in pairs]
print(f"A median {statistics.median(a for a, _ in pairs):.1f} µs/req, "
      f"B median {statistics.median(b for _, b in pairs):.1f} µs/req")
print(f"B / A per pair: median {statistics.median(r):.3f}, mean {statistics.mean(r):.3f}, "
      f"B cheaper in {sum(x < 1 for x in r)} of {len(r)}")
'
